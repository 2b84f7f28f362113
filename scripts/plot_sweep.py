"""Plot a metric against the temperature, one line per relaxation, from a Hydra multirun folder.

Usage:
    python run.py -m experiment=nri relaxation=indep,spanning_tree relaxation.tau=0.5,1,2,5 seed=0,1
    python scripts/plot_sweep.py multirun/nri/<date> --metric test/elbo --out sweep.png

Each run folder's metrics.json gives the relaxation, its temperature and the metric; seeds are averaged
(error bars: one standard deviation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.figures import plot_sweep, sweep_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--metric", default=None, help="metric key (default: the experiment's main metric)")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: <multirun>/sweep.png)")
    args = parser.parse_args(argv)
    metric, series = sweep_series(args.multirun, args.metric)
    out = args.out or args.multirun / "sweep.png"
    plot_sweep(metric, series, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
