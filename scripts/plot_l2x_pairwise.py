"""Corr. Top k's pairwise heads side by side, per seed: subset precision and validation MSE at one k.

    python scripts/plot_l2x_pairwise.py                     # results/l2x -> results/l2x/pairwise_heads.png
    python scripts/plot_l2x_pairwise.py --k 15 -o fig.png

Columns: E.F. Ent. Top k (no pairwise term at all), the fixed heads by offset, the attract head, and the learned
conv head of the table's runs; one line per seed paired with a table run, the mean over those seeds in black.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.figures import plot_l2x_pairwise
from experiments.report.records import RESULTS, read_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS / "l2x", help="folder of JSON records")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "l2x" / "pairwise_heads.png")
    args = ap.parse_args(argv)
    records, side = read_records([args.results])
    print(plot_l2x_pairwise(records, side, args.out, args.k, args.aspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
