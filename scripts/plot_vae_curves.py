"""Training curves of several discrete-VAE runs on one figure.

    python scripts/plot_vae_curves.py outputs/vae/*/* -o results/vae/curves.png
    python scripts/plot_vae_curves.py results/vae/*.json -o results/vae/curves.png

Each argument is a run folder (reads history.jsonl, so it also works while the run is going) or a metrics.json
record (reads its "curve").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.figures import plot_vae_curves


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders or metrics.json records")
    ap.add_argument("-o", "--out", type=Path, default=Path("results/vae/curves.png"))
    ap.add_argument("--title", default="Discrete VAE on MNIST")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(plot_vae_curves(args.runs, args.out, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
