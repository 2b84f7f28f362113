"""Plot a metric against the temperature, one line per relaxation, from a Hydra multirun folder.

Usage:
    python run.py -m experiment=nri relaxation=indep,spanning_tree relaxation.tau=0.5,1,2,5 seed=0,1
    python scripts/plot_sweep.py multirun/nri/<date> --metric test/elbo --out sweep.png

Each run folder's metrics.json gives the relaxation, its temperature and the metric; seeds are averaged
(error bars: one standard deviation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT_METRIC = {"nri": "test/elbo", "l2x": "test/subset_precision", "vae": "test/neg_elbo"}


def collect(root: Path, metric: str | None) -> tuple[str, dict[str, dict[float, list[float]]]]:
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
        raise SystemExit(f"no metrics.json with a temperature and metric {chosen!r} under {root}")
    return chosen or "", series


def plot(metric: str, series: dict[str, dict[float, list[float]]], out: Path) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--metric", default=None, help="metric key (default: the experiment's main metric)")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: <multirun>/sweep.png)")
    args = parser.parse_args(argv)
    metric, series = collect(args.multirun, args.metric)
    out = args.out or args.multirun / "sweep.png"
    plot(metric, series, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
