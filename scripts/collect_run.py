"""Copy a finished run's record from its Hydra folder into results/<experiment>/, in the records' schema.

    python scripts/collect_run.py outputs/vae/gumbel_softmax-relaxed/<date>            # name from the record
    python scripts/collect_run.py outputs/l2x/corr_topk-relaxed/<date> --name corr_topk_k10_seed0
    python scripts/collect_run.py outputs/probe/<run> --side --subdir probes   # a probe, kept out of the tables

Writes ``results/<experiment>/<name>.json``: the run's metrics.json with ``"schema": 1`` and ``"run_dir"`` added and
its paths relative to the data root (``experiments.report.records.to_schema``). The default name is
``<relaxation>_<estimator>[_k<k>][_T<timesteps>]_seed<seed>``. Checkpoints, logs, history.jsonl, HTML and PNG files
stay in the run folder (copy a figure the docs show by hand).
``--side`` marks the record ``"table": false`` (a probe or ablation that ``make tables`` leaves out);
``--subdir`` puts it in ``results/<experiment>/<subdir>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.common.data import cache_dir, resolve_data_root
from experiments.report.records import REPO, to_schema


def default_name(record: dict) -> str:
    """``<relaxation>_<estimator>[_k<k>][_T<timesteps>]_seed<seed>`` from a metrics.json record."""
    parts = [str(record["relaxation"]), str(record["estimator"])]
    if "k" in record:
        parts.append(f"k{record['k']}")
    if "timesteps" in record:
        parts.append(f"T{record['timesteps']}")
    parts.append(f"seed{record.get('seed', 0)}")
    return "_".join(parts)


def collect(run_dir: Path, results: Path, name: str | None = None, side: bool = False,
            subdir: str | None = None) -> Path:
    """Copy ``run_dir``'s record under ``results`` (:func:`to_schema`); returns the record's new path."""
    src = run_dir / "metrics.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: the run has not finished (no metrics.json yet)")
    record = json.loads(src.read_text())
    for key in ("experiment", "relaxation", "estimator", "metrics"):
        if key not in record:
            raise ValueError(f"{src} is not a run record: it lacks {key!r}")
    name = name or default_name(record)
    out_dir = results / str(record["experiment"])
    if subdir:
        out_dir = out_dir / subdir
    if side:
        record["table"] = False
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        record["run_dir"] = str(run_dir.resolve().relative_to(REPO))
    except ValueError:
        record["run_dir"] = str(run_dir)
    dest = out_dir / f"{name}.json"
    dest.write_text(json.dumps(to_schema(record, resolve_data_root(), cache_dir()), indent=2) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="Hydra run folders holding metrics.json")
    ap.add_argument("--name", help="record name (only with one run folder)")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--side", action="store_true", help='mark the record "table": false (left out of the tables)')
    ap.add_argument("--subdir", help="put the record in results/<experiment>/<subdir>/")
    args = ap.parse_args(argv)
    if args.name and len(args.run_dirs) > 1:
        ap.error("--name needs exactly one run folder")
    for run_dir in args.run_dirs:
        print(collect(run_dir, args.results, args.name, args.side, args.subdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
