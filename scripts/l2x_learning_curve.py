"""L2X learning curves: how the held-out MSE and subset precision move with the number of training reviews.

    python scripts/l2x_learning_curve.py                 # results/l2x/*.json -> learning_curve.{json,png} there
    python scripts/l2x_learning_curve.py --k 10 --target 70000 -o results/l2x/learning_curve

A curve is a set of runs (table and side records) that differ only in the size of the training set
(``data.train_fraction``) and in the steps that keep the number of epochs the same (``trainer.max_steps``,
``trainer.eval_every``), with the same relaxation, k, aspect, training files, embeddings file (sha256) and every
other setting. Per curve and size: the mean and sd over seeds of the held-out aspect-file MSE
(:func:`aspect_file_mse`, the MSE comparable with the paper's) and of the subset precision. Per seed with
two sizes or more: a power law ``MSE = A n^-b`` fitted by least squares on log MSE against log n, evaluated at
``--target`` training reviews (the paper's training file holds about 70,000). The extrapolation is a measurement's
trend, not a measurement: it says how far more reviews of the same kind would go if the trend held.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_tables import (  # noqa: E402
    L2X_ROWS,
    MISSING,
    PAPER_L2X,
    REPO,
    _cell,
    _finite,
    _flatten,
    l2x_build,
    read_records,
)
from plot_l2x import paper_value, save_figure  # noqa: E402

PRECISION = "test/subset_precision"
# Settings in which the runs of one curve may differ: the training-set size and the steps that keep its epochs,
# and what does not change the training.
_FREE = {"seed", "device", "trainer.progress", "trainer.resume", "data.train_fraction", "trainer.max_steps",
         "trainer.eval_every", "data.embeddings"}
PAPER_TRAIN_REVIEWS = 70_000


def aspect_file_mse(record: dict) -> float | None:
    """The held-out MSE on reviews of the aspect's own file: ``test/mse_heldout_aspect_file``, or
    ``test/mse_heldout`` when every held-out review comes from that file (the run then logs only the latter)."""
    metrics, data = record.get("metrics", {}), record.get("data") or {}
    value = metrics.get("test/mse_heldout_aspect_file")
    if value is None and data.get("num_heldout_test") and \
            data.get("num_heldout_test_aspect_file") == data.get("num_heldout_test"):
        value = metrics.get("test/mse_heldout")
    return float(value) if _finite(value) else None


def _source(record: dict) -> str:
    """The training files of a run, as a label: "four heldout files" (the default) or their names."""
    files = (record.get("config") or {}).get("data", {}).get("train_files")
    return "four heldout files" if not files else ", ".join(Path(f).name for f in files)


def _epochs(record: dict) -> float | None:
    """Training epochs: steps times batch size over training reviews; None when the record lacks one of them."""
    steps = (record["config"].get("trainer") or {}).get("max_steps")
    batch = (record["config"].get("data") or {}).get("batch_size")
    n = (record.get("data") or {}).get("num_train")
    return int(steps) * int(batch) / int(n) if steps and batch and n else None


def curves(records: list[dict], k: int = 10, aspect: int = 1) -> dict[tuple, dict[int, list[dict]]]:
    """{(relaxation, training files, epochs (rounded), embeddings sha256, the other settings): {num_train: [record,
    ...]}} for every group of L2X runs at ``k`` and ``aspect`` with a held-out aspect-file MSE that spans two
    training-set sizes or more."""
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if (r.get("experiment") != "l2x" or int(r.get("k") or 0) != k or int(r.get("aspect", 1)) != aspect
                or not isinstance(r.get("config"), dict) or aspect_file_mse(r) is None or _epochs(r) is None):
            continue
        flat = _flatten(r["config"])
        same = tuple(sorted((name, repr(value)) for name, value in flat.items() if name not in _FREE))
        key = (r["relaxation"], _source(r), round(_epochs(r)), l2x_build(r), same)
        groups[key][int(r["data"]["num_train"])].append(r)
    return {key: dict(sizes) for key, sizes in groups.items() if len(sizes) >= 2}


def power_law(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(A, b) of ``y = A n^-b`` fitted by least squares on log y against log n; ``points``: (n, y), two or more
    distinct n."""
    xs, ys = [math.log(n) for n, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - slope * mx), -slope


def summarise(groups: dict[tuple, dict[int, list[dict]]], target: int = PAPER_TRAIN_REVIEWS) -> list[dict]:
    """One entry per curve: its sizes with mean/sd (MSE ×100, precision %) and the seeds, and the power-law
    extrapolation of each seed's MSE to ``target`` reviews (mean and sd over seeds)."""
    names = dict(L2X_ROWS)
    out = []
    for (rel, source, epochs, build, _), sizes in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        entry: dict = {"relaxation": rel, "row": names.get(rel, rel), "train_files": source, "epochs": epochs,
                       "embeddings_sha256": build, "sizes": []}
        per_seed: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for n in sorted(sizes):
            runs = sorted(sizes[n], key=lambda r: r.get("seed", 0))
            mse = [aspect_file_mse(r) * 100 for r in runs]
            prec = [r["metrics"][PRECISION] * 100 for r in runs if _finite(r["metrics"].get(PRECISION))]
            entry["sizes"].append({
                "num_train": n, "seeds": [r.get("seed") for r in runs],
                "mse_x100": mse, "mse_x100_mean": statistics.fmean(mse),
                "mse_x100_sd": statistics.stdev(mse) if len(mse) > 1 else None,
                "precision_pct": prec, "precision_pct_mean": statistics.fmean(prec) if prec else None,
                "precision_pct_sd": statistics.stdev(prec) if len(prec) > 1 else None})
            for r, m in zip(runs, mse):
                per_seed[int(r.get("seed", 0))].append((n, m))
        fits = {s: power_law(p) for s, p in sorted(per_seed.items()) if len({n for n, _ in p}) >= 2}
        at_target = [a * target ** -b for a, b in fits.values()]
        entry["extrapolation"] = {
            "target_num_train": target, "seeds": list(fits), "exponent_b": [b for _, b in fits.values()],
            "mse_x100": at_target, "mse_x100_mean": statistics.fmean(at_target) if at_target else None,
            "mse_x100_sd": statistics.stdev(at_target) if len(at_target) > 1 else None}
        out.append(entry)
    return out


def table(summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for Markdown: per curve, one row per training-set size (held-out aspect-file MSE ×100 and
    subset precision %, mean ± sd over its seeds) and a last row with the power law's MSE at the target size."""
    header = ["relaxation", "training files", "epochs", "training reviews", "seeds", "aspect-file MSE ×100",
              "precision %"]
    rows = []
    for e in summary:
        head = [e["row"], e["train_files"], str(e["epochs"])]
        for s in e["sizes"]:
            rows.append(head + [f"{s['num_train']:,}", ", ".join(str(x) for x in s["seeds"]),
                                _cell(s["mse_x100"], digits=2, count=False),
                                _cell(s["precision_pct"], digits=1, count=False)])
        ext = e["extrapolation"]
        rows.append(head + [f"{ext['target_num_train']:,} (power law per seed)",
                            ", ".join(str(x) for x in ext["seeds"]) or MISSING,
                            _cell(ext["mse_x100"], digits=2, count=False), MISSING])
    return header, rows


def plot(summary: list[dict], out: Path, k: int = 10) -> Path:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "results" / "l2x", help="folder of JSON records")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("--target", type=int, default=PAPER_TRAIN_REVIEWS,
                    help="training reviews to extrapolate to (the paper's file: about 70,000)")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "results" / "l2x" / "learning_curve",
                    help="output path without suffix: writes .json and .png")
    args = ap.parse_args(argv)
    if args.target <= 0:
        raise ValueError(f"--target must be a positive number of reviews, got {args.target}")
    records, side = read_records([args.results])
    summary = summarise(curves(records + side, args.k, args.aspect), args.target)
    if not summary:
        print(f"no learning curve at k={args.k}: no runs that differ only in the training-set size", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps({"k": args.k, "aspect": args.aspect, "curves": summary}, indent=2) + "\n")
    for entry in summary:
        ext = entry["extrapolation"]
        sizes = "; ".join(f"{s['num_train']}: {s['mse_x100_mean']:.2f} / {s['precision_pct_mean']:.1f}% "
                          f"(n={len(s['seeds'])})" for s in entry["sizes"])
        at = f"{ext['mse_x100_mean']:.2f}" if ext["mse_x100_mean"] is not None else MISSING
        print(f"{entry['row']} on {entry['train_files']} ({entry['epochs']} epochs): {sizes}; "
              f"at {ext['target_num_train']}: {at}")
    print(json_path, plot(summary, args.out.with_suffix(".png"), args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
