"""The figures the docs show: the L2X table, Corr. Top k's margins, its pairwise heads and the learning curves, the
VAE's training curves, and a temperature sweep. Each ``plot_*`` writes one PNG and returns its path."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from experiments.report.cells import paired_interval
from experiments.report.l2x import (
    L2X_KS,
    L2X_ROWS,
    L2X_W2V_EPOCHS,
    PAPER_L2X,
    l2x_corr_margins,
    l2x_groups,
    l2x_same_build,
    l2x_seed_runs,
    l2x_side_pairs,
    paper_value,
)
from experiments.report.vae import VAE_LATENTS, VAE_ROWS, load_run

MSE_METRIC = "test/mse_heldout_aspect_file"


def save_figure(fig, out: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    """Lay ``fig`` out tightly within ``rect`` (figure fractions: left, bottom, right, top; room outside it for a
    figure legend), write it to ``out`` (folders made as needed) at 120 dpi, close it, return ``out``."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def l2x_series(records: list[dict], aspect: int = 1,
           w2v_epochs: int = L2X_W2V_EPOCHS) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    """{relaxation: {"precision"|"mse"|"paper_precision"|"paper_mse": [(k, mean, sd), ...]}}, in % and MSE x100;
    our entries only where a record on word2vec embeddings of ``w2v_epochs`` exists."""
    groups = l2x_groups(records, w2v_epochs)
    out: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    for rel, _ in L2X_ROWS:
        s: dict[str, list[tuple[int, float, float]]] = {"precision": [], "mse": [], "paper_precision": [],
                                                        "paper_mse": []}
        for k in L2X_KS:
            ms = groups.get((rel, k, aspect), [])
            for key, metric in (("precision", "test/subset_precision"), ("mse", MSE_METRIC)):
                vals = [100 * m[metric] for m in ms if metric in m]
                if vals:
                    s[key].append((k, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0))
            pm, pp = PAPER_L2X[rel][k]
            s["paper_mse"].append((k, *paper_value(pm)))
            s["paper_precision"].append((k, *paper_value(pp)))
        out[rel] = s
    return out


def plot_l2x_table(records: list[dict], out: Path, aspect: int = 1, w2v_epochs: int = L2X_W2V_EPOCHS) -> Path:
    """Write the two-panel figure to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = l2x_series(records, aspect, w2v_epochs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for i, (rel, label) in enumerate(L2X_ROWS):
        for ax, key, ylabel in ((axes[0], "precision", "subset precision (%)"),
                                (axes[1], "mse", "MSE x100 (held-out aspect-1 reviews)")):
            for kind, style in ((key, "-o"), ("paper_" + key, "--")):
                pts = data[rel][kind]
                if not pts:
                    continue
                ks, mean, sd = zip(*pts)
                ax.errorbar(ks, mean, yerr=sd, fmt=style, color=colors(i), capsize=3, alpha=1.0 if kind == key
                            else 0.5, label=label if kind == key or not data[rel][key] else None)
            ax.set_xlabel("k (words selected)")
            ax.set_ylabel(ylabel)
            ax.set_xticks(list(L2X_KS))
    axes[0].set_title(f"Subset precision (solid: ours, word2vec {w2v_epochs} epochs; dashed: paper)", fontsize=10)
    axes[1].set_title("Aroma-score MSE (solid: ours, dashed: paper)")
    axes[0].legend(fontsize=8, loc="best")
    return save_figure(fig, out)


def l2x_margins(records: list[dict], aspect: int = 1) -> dict[int, list[tuple[str, tuple[float, float, float] | None,
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


def plot_l2x_margins(records: list[dict], out: Path, aspect: int = 1) -> Path:
    """Write the one-panel-per-k figure to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = l2x_margins(records, aspect)
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


PAIRWISE_METRICS = (("test/subset_precision", "subset precision (%)"),
                    ("best/valid/mse", "validation MSE x100 (selection)"))
TABLE_HEAD = "conv (table)"
NO_PAIRWISE = "E.F. Ent. Top k"


def _order(head: str) -> tuple[int, float]:
    """E.F. first, then the fixed heads by offset, then the other heads, the table's conv head last."""
    if head == NO_PAIRWISE:
        return 0, 0.0
    if head.startswith("fixed, offset "):
        return 1, float(head.rsplit(" ", 1)[1])
    return (3, 0.0) if head == TABLE_HEAD else (2, 0.0)


def pairwise_columns(records: list[dict], side_records: list[dict], k: int = 10,
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


def plot_l2x_pairwise(records: list[dict], side_records: list[dict], out: Path, k: int = 10,
                      aspect: int = 1) -> Path:
    """Write the two-panel figure to ``out`` and return it; ValueError when no head is paired at this k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = pairwise_columns(records, side_records, k, aspect)
    if len(cols) < 2:
        raise ValueError(f"no Corr. Top k run with another pairwise head is paired with a table run at k={k}")
    heads = list(cols)
    seeds = sorted({s for runs in cols.values() for s in runs})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = plt.get_cmap("tab10")
    for ax, (metric, ylabel) in zip(axes, PAIRWISE_METRICS):
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


def plot_learning_curve(summary: list[dict], out: Path, k: int = 10) -> Path:
    """MSE ×100 and precision % against training reviews (log axis), one line per curve (means ± sd over seeds),
    the power laws' mean at the target as an open square joined by a dotted line to the largest size, the paper's
    values as horizontal lines; written to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mse, ax_prec) = plt.subplots(1, 2, figsize=(10, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, entry in enumerate(summary):
        colour = colours[i % len(colours)]
        label = f"{entry['row']}, {entry['train_files']}, {entry['epochs']} epochs"
        ns = [s["num_train"] for s in entry["sizes"]]
        for ax, name in ((ax_mse, "mse_x100"), (ax_prec, "precision_pct")):
            means = [s[f"{name}_mean"] for s in entry["sizes"]]
            sds = [s[f"{name}_sd"] or 0.0 for s in entry["sizes"]]
            ax.errorbar(ns, means, yerr=sds, fmt="o-", color=colour, capsize=3, label=label)
        ext = entry["extrapolation"]
        if ext["mse_x100_mean"] is not None:
            target = ext["target_num_train"]
            ax_mse.errorbar([target], [ext["mse_x100_mean"]], yerr=[ext["mse_x100_sd"] or 0.0], fmt="s",
                            mfc="none", color=colour, capsize=3)
            ax_mse.plot([ns[-1], target], [entry["sizes"][-1]["mse_x100_mean"], ext["mse_x100_mean"]], ":",
                        color=colour)
    rows = {e["relaxation"] for e in summary}
    every_n = sorted({s["num_train"] for e in summary for s in e["sizes"]}
                     | {e["extrapolation"]["target_num_train"] for e in summary})
    # ticks: powers of two times 1,000 within the sizes' range, and the target
    ticks = sorted({1000 * 2 ** i for i in range(12) if every_n[0] <= 1000 * 2 ** i < every_n[-1] / 1.5}
                   | {every_n[-1]})
    for ax, (i, ylabel) in ((ax_mse, (0, "held-out aspect-file MSE ×100")), (ax_prec, (1, "subset precision %"))):
        for rel, label in L2X_ROWS:
            if rel in rows:
                value = paper_value(PAPER_L2X[rel][k][i])[0]
                ax.axhline(value, color="grey", ls="--", lw=0.8)
                ax.text(0.01, value, f"paper, {label}", fontsize=7, va="bottom", transform=ax.get_yaxis_transform())
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{n / 1000:g}k" for n in ticks])
        ax.minorticks_off()
        ax.set_xlim(every_n[0] / 1.3, every_n[-1] * 1.3)
        ax.set_xlabel("training reviews")
        ax.set_ylabel(ylabel)
    ax_mse.set_title("MSE (squares: power law per seed at the paper's size)", fontsize=9)
    ax_prec.set_title("Subset precision", fontsize=9)
    fig.legend(*ax_prec.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(f"L2X, aroma, k = {k}: training-set size", fontsize=11)
    return save_figure(fig, out, rect=(0, 0.1, 1, 1))


def plot_vae_curves(paths: Iterable[Path], out: Path, title: str = "Discrete VAE on MNIST") -> Path:
    """Valid (solid) and train (dashed) negative ELBO against steps: one panel per latent (relaxation), one colour
    per estimator (the same in every panel, in the table's row order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(Path(p)) for p in paths]
    latent_order = [rel for rel, _ in VAE_LATENTS]
    latents = sorted({r["relaxation"] for r in runs},
                     key=lambda rel: (latent_order.index(rel) if rel in latent_order else len(latent_order), rel))
    names = dict(VAE_LATENTS)
    est_order = [est for est, _ in VAE_ROWS]
    extra = sorted({r["estimator"] for r in runs} - set(est_order))
    colour = {est: f"C{i % 10}" for i, est in enumerate(est_order + extra)}
    fig, axes = plt.subplots(1, max(1, len(latents)), figsize=(6.2 * max(1, len(latents)), 4.6), squeeze=False)
    for ax, rel in zip(axes[0], latents):
        mine = [r for r in runs if r["relaxation"] == rel]
        rank = {est: i for i, est in enumerate(est_order + extra)}
        for run in sorted(mine, key=lambda r: (rank[r["estimator"]], r["label"])):
            c, col = run["curve"], colour[run["estimator"]]
            ax.plot(c["step"], c["valid/neg_elbo"], "-", color=col, label=run["label"].split(" / ", 1)[-1])
            train = [math.nan if v is None else v for v in c["train/neg_elbo"]]
            ax.plot(c["step"], train, "--", color=col, alpha=0.55)
        lo = min(min(r["curve"]["valid/neg_elbo"]) for r in mine)
        ax.set_ylim(lo - 5, lo + 45)
        ax.set_title(names.get(rel, rel), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("negative ELBO (nats); solid: valid, dashed: train")
    fig.suptitle(title, fontsize=11)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


DEFAULT_METRIC = {"nri": "test/elbo", "l2x": "test/subset_precision", "vae": "test/neg_elbo"}


def sweep_series(root: Path, metric: str | None) -> tuple[str, dict[str, dict[float, list[float]]]]:
    """{relaxation: {tau: [metric per seed]}} from every metrics.json under ``root``."""
    series: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    chosen = metric
    for path in sorted(root.rglob("metrics.json")):
        rec = json.loads(path.read_text())
        chosen = chosen or DEFAULT_METRIC.get(rec.get("experiment"), "")
        tau = rec.get("config", {}).get("relaxation", {}).get("tau")
        if tau is None or chosen not in rec.get("metrics", {}):
            continue
        label = rec["relaxation"]
        if rec.get("estimator") not in (None, "relaxed"):
            label += f"/{rec['estimator']}"
        series[label][float(tau)].append(float(rec["metrics"][chosen]))
    if not series:
        raise ValueError(f"no metrics.json with a temperature and metric {chosen!r} under {root}")
    return chosen or "", series


def plot_sweep(metric: str, series: dict[str, dict[float, list[float]]], out: Path) -> Path:
    """``metric`` against the temperature (log axis), one line per relaxation (mean ± sd over seeds), to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, by_tau in sorted(series.items()):
        taus = sorted(by_tau)
        means = [statistics.fmean(by_tau[t]) for t in taus]
        stds = [statistics.stdev(by_tau[t]) if len(by_tau[t]) > 1 else 0.0 for t in taus]
        ax.errorbar(taus, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
