"""Corr. Top k's lead in subset precision over each other L2X row, seed for seed, against the paper's lead.

    python scripts/plot_l2x_margins.py                  # results/l2x/*.json -> results/l2x/margins.png
    python scripts/plot_l2x_margins.py --results results -o fig.png

One panel per k. Ours: the mean over the seeds both rows ran of Corr. Top k's precision minus the row's, with its
95% Student-t interval (make_tables.l2x_corr_margins and paired_interval, the seed-by-seed table's last interval
column); the paper's: the difference of its two means (a cross). Only the table's runs on the default embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_tables import L2X_KS, L2X_ROWS, PAPER_L2X, REPO, l2x_corr_margins, load_records, paired_interval  # noqa: E402
from plot_l2x import paper_value, save_figure  # noqa: E402


def margins(records: list[dict], aspect: int = 1) -> dict[int, list[tuple[str, tuple[float, float, float] | None,
                                                                          float]]]:
    """{k: [(row label, (mean, low, high) of our margin or None without shared seeds, the paper's margin), ...]} in
    points, for every row but Corr. Top k, in the table's order."""
    ours = l2x_corr_margins(records, aspect)
    out = {}
    for k in L2X_KS:
        corr_paper = paper_value(PAPER_L2X["corr_topk"][k][1])[0]
        out[k] = [(label, paired_interval(ours[(rel, k)]) if (rel, k) in ours else None,
                   corr_paper - paper_value(PAPER_L2X[rel][k][1])[0]) for rel, label in L2X_ROWS if rel != "corr_topk"]
    return out


def plot(records: list[dict], out: Path, aspect: int = 1) -> Path:
    """Write the one-panel-per-k figure to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = margins(records, aspect)
    fig, axes = plt.subplots(1, len(L2X_KS), figsize=(4 * len(L2X_KS), 3.7), sharey=True, sharex=True)
    for ax, k in zip(axes, L2X_KS):
        rows = data[k]
        ys = range(len(rows))
        for y, (_, ours, paper) in zip(ys, rows):
            if ours is not None:
                mean, low, high = ours
                ax.errorbar([mean], [y], xerr=[[mean - low], [high - mean]], fmt="o", color="tab:pink", capsize=3,
                            label="ours: mean over seeds, 95% CI" if y == 0 else None)
            ax.plot([paper], [y], "x", color="black", label="paper" if y == 0 else None)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(list(ys), [label for label, _, _ in rows])
        ax.invert_yaxis()
        ax.set_title(f"k = {k}")
        ax.set_xlabel("Corr. Top k minus row (points)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=9)
    fig.suptitle("Subset precision: Corr. Top k's lead over each row, same seeds", fontsize=11)
    return save_figure(fig, out, rect=(0, 0.08, 1, 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "results" / "l2x", help="folder of JSON records")
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, default=REPO / "results" / "l2x" / "margins.png")
    args = ap.parse_args(argv)
    print(plot(load_records([args.results]), args.out, args.aspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
