"""Regenerate the paper's tables from run records, our numbers beside the paper's (experiments.report).

Usage:
    python scripts/make_tables.py                       # Markdown tables of results/**/*.json to stdout
    python scripts/make_tables.py --latex               # LaTeX instead
    python scripts/make_tables.py --runs multirun/      # also Hydra run folders (metrics.json) / W&B offline runs
    python scripts/make_tables.py --readme README.md docs/l2x.md docs/vae.md   # rewrite the tables between markers

Missing cells are shown as missing, never filled. Each table declares its protocol (the config keys and values that
define its cells: ``experiments.report.tables.PROTOCOLS``); a record enters a cell, and so the goals, only when it
follows it. Every record left out is named on stderr with the reason: off its experiment's protocols (the settings
it differs in), or unlike the other runs of its cell in a training setting (the cell keeps the most common value).
Runs marked ``"finished": false`` are left out of everything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.records import RESULTS, read_records
from experiments.report.render import latex, markdown, update_markdown
from experiments.report.tables import all_tables, blocks, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of JSON records")
    parser.add_argument("--runs", type=Path, action="append", default=[], help="Hydra run/multirun folders")
    parser.add_argument("--latex", action="store_true", help="print LaTeX tables")
    parser.add_argument("--readme", type=Path, nargs="+", metavar="FILE",
                        help="rewrite the tables between these Markdown files' markers")
    args = parser.parse_args(argv)
    records, side_records = read_records([args.results, *args.runs])
    tables = all_tables(records, side_records)
    for line in left_out(records, side_records):
        print(f"left out: {line}", file=sys.stderr)
    if args.readme:
        placed = update_markdown(args.readme, {**{n: markdown(*t) for n, (_, t) in tables.items()},
                                               **blocks(side_records)})
        for path, names in placed.items():
            print(f"updated {path} from {len(records)} records: {', '.join(names) or 'no table markers'}")
        if unplaced := [n for n in [*tables, *blocks()] if not any(n in names for names in placed.values())]:
            print(f"no markers for: {', '.join(unplaced)}")
        return 0
    for caption, table in tables.values():
        print(latex(*table, caption) if args.latex else f"### {caption}\n\n{markdown(*table)}\n", end="\n\n")
    if not args.latex:
        for text in blocks(side_records).values():
            print(text, end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
