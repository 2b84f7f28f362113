"""Corr. Top k's pairwise heads side by side, per seed: subset precision and validation MSE at one k.

    python scripts/plot_l2x_pairwise.py                     # results/l2x -> results/l2x/pairwise_heads.png
    python scripts/plot_l2x_pairwise.py --k 15 -o fig.png

Columns: E.F. Ent. Top k (no pairwise term at all: the fixed head at offset 0), the fixed heads by offset
(``model.pairwise=fixed model.pairwise_offset=c``), the attract head, and the learned conv head of the table's runs.
Only seeds with a table run of Corr. Top k and at least one other head paired with it (``make_tables``'s pairing:
same build of the embeddings, otherwise the same config) are drawn, one line per seed, the mean over those seeds in
black. A column's mean covers the seeds that have it (their number is in its label).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_tables import REPO, l2x_same_build, l2x_seed_runs, l2x_side_pairs, read_records  # noqa: E402
from plot_l2x import save_figure  # noqa: E402

METRICS = (("test/subset_precision", "subset precision (%)"), ("best/valid/mse", "validation MSE x100 (selection)"))
TABLE_HEAD = "conv (table)"
NO_PAIRWISE = "E.F. Ent. Top k"


def _order(head: str) -> tuple[int, float]:
    """E.F. first, then the fixed heads by offset, then the other heads, the table's conv head last."""
    if head == NO_PAIRWISE:
        return 0, 0.0
    if head.startswith("fixed, offset "):
        return 1, float(head.rsplit(" ", 1)[1])
    return (3, 0.0) if head == TABLE_HEAD else (2, 0.0)


def columns(records: list[dict], side_records: list[dict], k: int = 10,
            aspect: int = 1) -> dict[str, dict[int, dict[str, float]]]:
    """{head: {seed: metrics}} for Corr. Top k at ``k``: each other head paired with a table run, the table's own
    conv head on those seeds, and E.F. Ent. Top k's table runs on the same seeds and build of the embeddings
    (``l2x_same_build``, the pairing's rule)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (rel, kk, asp, head), runs in l2x_side_pairs(records, side_records, "model.pairwise").items():
        if rel != "corr_topk" or kk != k or asp != aspect:
            continue
        for seed, side, table in runs:
            out.setdefault(str(head), {})[seed] = side
            out.setdefault(TABLE_HEAD, {})[seed] = table
    table_runs = l2x_seed_runs(records, aspect)
    corr_runs = table_runs.get(("corr_topk", k), {})
    for seed, r in table_runs.get(("ef_topk", k), {}).items():
        if seed in out.get(TABLE_HEAD, {}) and seed in corr_runs and l2x_same_build(r, corr_runs[seed]):
            out.setdefault(NO_PAIRWISE, {})[seed] = r["metrics"]
    return dict(sorted(out.items(), key=lambda item: _order(item[0])))


def plot(records: list[dict], side_records: list[dict], out: Path, k: int = 10, aspect: int = 1) -> Path:
    """Write the two-panel figure to ``out`` and return it; ValueError when no head is paired at this k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(records, side_records, k, aspect)
    if len(cols) < 2:
        raise ValueError(f"no Corr. Top k run with another pairwise head is paired with a table run at k={k}")
    heads = list(cols)
    seeds = sorted({s for runs in cols.values() for s in runs})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = plt.get_cmap("tab10")
    for ax, (metric, ylabel) in zip(axes, METRICS):
        for i, seed in enumerate(seeds):
            pts = [(x, 100 * cols[h][seed][metric]) for x, h in enumerate(heads)
                   if seed in cols[h] and metric in cols[h][seed]]
            if pts:
                ax.plot(*zip(*pts), "-o", color=colors(i % 10), alpha=0.6, label=f"seed {seed}")
        means = [(x, statistics.fmean(100 * m[metric] for m in cols[h].values() if metric in m))
                 for x, h in enumerate(heads) if any(metric in m for m in cols[h].values())]
        ax.plot(*zip(*means), "-s", color="black", linewidth=2.5, label="mean over the seeds")
        ax.set_xticks(range(len(heads)))
        ax.set_xticklabels([f"{h.replace(', offset ', ' ')} (n={len(cols[h])})" for h in heads], rotation=25,
                           ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    axes[0].set_title(f"Corr. Top k, k = {k}: pairwise heads (fixed c: every adjacent pair's logit is c)",
                      fontsize=10)
    axes[1].set_title("Validation MSE of the best checkpoint (lower is better)", fontsize=10)
    axes[0].legend(fontsize=8, loc="best")
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "results" / "l2x", help="folder of JSON records")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, default=REPO / "results" / "l2x" / "pairwise_heads.png")
    args = ap.parse_args(argv)
    records, side = read_records([args.results])
    print(plot(records, side, args.out, args.k, args.aspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
