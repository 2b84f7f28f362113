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

Refusals (exit code 1, the reason on stderr, nothing written): a table record (without ``--side``) must come from a
finished run (``"finished"`` not false) that follows its table's protocol (``experiments.report.tables.PROTOCOLS``);
``--force`` does not change that (collect such a run with ``--side``), nor lets a side record replace a table
record. A record already at the destination is overwritten only by the same run (same commit, config and step
count) or with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.common.data import cache_dir, resolve_data_root
from experiments.report.protocol import admit
from experiments.report.records import REPO, finished, flatten, is_record, to_schema
from experiments.report.tables import PROTOCOLS


class Refused(ValueError):
    """collect_run will not write this record (the message says why and what to do instead)."""


def default_name(record: dict) -> str:
    """``<relaxation>_<estimator>[_k<k>][_T<timesteps>]_seed<seed>`` from a metrics.json record."""
    parts = [str(record["relaxation"]), str(record["estimator"])]
    if "k" in record:
        parts.append(f"k{record['k']}")
    if "timesteps" in record:
        parts.append(f"T{record['timesteps']}")
    parts.append(f"seed{record.get('seed', 0)}")
    return "_".join(parts)


def check_table_record(record: dict, src: Path) -> None:
    """Raise :class:`Refused` unless ``record`` may be a table record: a finished run that follows its table's
    protocol."""
    if not finished(record):
        raise Refused(f"{src}: the run is unfinished (step {record.get('step')} of "
                      f"{(record.get('config') or {}).get('trainer', {}).get('max_steps')}); finish it (run the "
                      f"same command in the same folder) or collect it with --side")
    off = admit([record], PROTOCOLS)[1]
    if off:
        raise Refused(f"{src} is no table record: {off[0]}; collect it with --side (and --subdir) instead")


def run_differences(old: dict, new: dict) -> list[str]:
    """How the run of record ``new`` differs from that of record ``old``: commit, config (the keys whose values
    differ) and step count; empty for the same run."""
    out = []
    if old.get("commit") != new.get("commit"):
        out.append(f"commit {old.get('commit')} -> {new.get('commit')}")
    before, after = flatten(old.get("config") or {}), flatten(new.get("config") or {})
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        shown = "; ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in changed[:6])
        out.append(f"config: {shown}" + (f" (and {len(changed) - 6} more)" if len(changed) > 6 else ""))
    if old.get("step") != new.get("step"):
        out.append(f"step {old.get('step')} -> {new.get('step')}")
    return out


def check_overwrite(dest: Path, record: dict) -> None:
    """Raise :class:`Refused` when ``dest`` holds a record of another run than ``record`` (:func:`run_differences`)."""
    if not dest.is_file():
        return
    differences = run_differences(json.loads(dest.read_text()), record)
    if differences:
        raise Refused(f"{dest} holds the record of another run ({'; '.join(differences)}); pass --force to "
                      f"overwrite it, or --name to write this run under another name")


def check_table_name(dest: Path, record: dict) -> None:
    """Raise :class:`Refused` when a side record (``"table": false``) would replace the table record at ``dest``."""
    if record.get("table", True) or not dest.is_file():
        return
    if is_record(json.loads(dest.read_text())):
        raise Refused(f"{dest} is a table record; a side record never replaces one (even with --force): give it "
                      f"another --name or a --subdir")


def collect(run_dir: Path, results: Path, name: str | None = None, side: bool = False,
            subdir: str | None = None, force: bool = False) -> Path:
    """Copy ``run_dir``'s record under ``results`` (:func:`to_schema`); returns the record's new path.

    Raises:
        Refused: a table record from an unfinished or off-protocol run (:func:`check_table_record`), or, without
            ``force``, a destination that holds another run's record (:func:`check_overwrite`).
    """
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
    try:
        record["run_dir"] = str(run_dir.resolve().relative_to(REPO))
    except ValueError:
        record["run_dir"] = str(run_dir)
    if side:
        record["table"] = False
    else:
        check_table_record(record, src)
    record = to_schema(record, resolve_data_root(), cache_dir())
    dest = out_dir / f"{name}.json"
    check_table_name(dest, record)
    if not force:
        check_overwrite(dest, record)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="Hydra run folders holding metrics.json")
    ap.add_argument("--name", help="record name (only with one run folder)")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--side", action="store_true", help='mark the record "table": false (left out of the tables)')
    ap.add_argument("--subdir", help="put the record in results/<experiment>/<subdir>/")
    ap.add_argument("--force", action="store_true",
                    help="overwrite a record of another run (another commit, config or step count)")
    args = ap.parse_args(argv)
    if args.name and len(args.run_dirs) > 1:
        ap.error("--name needs exactly one run folder")
    status = 0
    for run_dir in args.run_dirs:
        try:
            print(collect(run_dir, args.results, args.name, args.side, args.subdir, args.force))
        except Refused as refusal:
            print(f"collect_run: refused: {refusal}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
