"""L2X learning curves: how the held-out MSE and subset precision move with the number of training reviews.

    python scripts/l2x_learning_curve.py                 # results/l2x/*.json -> learning_curve.{json,png} there
    python scripts/l2x_learning_curve.py --k 10 --target 70000 -o results/l2x/learning_curve

A curve is a set of runs (table and side records) that differ only in the size of the training set
(``data.train_fraction``) and in the steps that keep the number of epochs the same (``trainer.max_steps``,
``trainer.eval_every``), with the same relaxation, k, aspect, training files, embeddings file (sha256) and every
other setting. Per curve and size: the mean and sd over seeds of the held-out aspect-file MSE
(``experiments.report.l2x.aspect_file_mse``, the MSE comparable with the paper's) and of the subset precision.
Per seed with two sizes or more: a power law ``MSE = A n^-b`` fitted by least squares on log MSE against log n,
evaluated at ``--target`` training reviews (the paper's training file holds about 70,000). The extrapolation is a
measurement's trend, not a measurement: it says how far more reviews of the same kind would go if the trend held.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.report.cells import MISSING
from experiments.report.figures import plot_learning_curve
from experiments.report.l2x import PAPER_TRAIN_REVIEWS, curves, summarise
from experiments.report.records import RESULTS, read_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS / "l2x", help="folder of JSON records")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("--target", type=int, default=PAPER_TRAIN_REVIEWS,
                    help="training reviews to extrapolate to (the paper's file: about 70,000)")
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "l2x" / "learning_curve",
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
    record = {"schema": 1, "k": args.k, "aspect": args.aspect, "curves": summary}
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    for entry in summary:
        ext = entry["extrapolation"]
        sizes = "; ".join(f"{s['num_train']}: {s['mse_x100_mean']:.2f} / {s['precision_pct_mean']:.1f}% "
                          f"(n={len(s['seeds'])})" for s in entry["sizes"])
        at = f"{ext['mse_x100_mean']:.2f}" if ext["mse_x100_mean"] is not None else MISSING
        print(f"{entry['row']} on {entry['train_files']} ({entry['epochs']} epochs): {sizes}; "
              f"at {ext['target_num_train']}: {at}")
    print(json_path, plot_learning_curve(summary, args.out.with_suffix(".png"), args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
