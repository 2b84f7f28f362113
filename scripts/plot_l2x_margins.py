"""Corr. Top k's lead in subset precision over each other L2X row, seed for seed, against the paper's lead.

    python scripts/plot_l2x_margins.py                  # results/l2x/*.json -> results/l2x/margins.png

One panel per k. Ours: the mean over the seeds both rows ran of Corr. Top k's precision minus the row's, with its
95% Student-t interval (the seed-by-seed table's last interval column); the paper's: the difference of its two
means (a cross). Only the table's runs on the default embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.figures import plot_l2x_margins
from experiments.report.records import RESULTS, load_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS / "l2x", help="folder of JSON records")
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "l2x" / "margins.png")
    args = ap.parse_args(argv)
    print(plot_l2x_margins(load_records([args.results]), args.out, args.aspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
