"""Run records: loading them from results folders, Hydra run folders and W&B offline runs, and checking them.

A record is a JSON object with top-level ``"experiment"``, ``"relaxation"``, ``"estimator"`` and ``"metrics"`` (and
``"k"``, ``"aspect"``, ``"timesteps"`` where they apply), as every run's ``metrics.json`` is. Records kept under
``results/`` carry ``"schema": 1``; a run folder's ``metrics.json`` may predate the key and is read as schema 1.
``"table": false`` marks a side run (an ablation, a check) that no table cell uses but the paired tables may;
``"finished": false`` marks a run that stopped before its last step, which no table uses at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
SCHEMA = 1


def check_schema(record: dict, source: str = "record") -> None:
    """Raise ``ValueError`` naming ``source`` when ``record`` carries a ``"schema"`` other than :data:`SCHEMA`."""
    schema = record.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ValueError(f"{source}: schema must be {SCHEMA}, got {schema!r}; this version reads schema {SCHEMA}")


def is_record(obj: object, side: bool = False) -> bool:
    """A run record meant for the tables (``side=True``: a side run's, ``"table": false``)."""
    return (isinstance(obj, dict) and {"experiment", "relaxation", "metrics"} <= obj.keys()
            and bool(obj.get("table", True)) != side)


def finished(record: dict) -> bool:
    """The run reached its last step: ``"finished"`` is not false (records without the key count as finished)."""
    return record.get("finished", True) is not False


def from_wandb_run(run_dir: Path) -> dict | None:
    """A record from a W&B offline run folder (files/config.yaml + files/wandb-summary.json); None when it is not
    one."""
    summary, config = run_dir / "files" / "wandb-summary.json", run_dir / "files" / "config.yaml"
    if not (summary.is_file() and config.is_file()):
        return None
    import yaml

    cfg = {k: v.get("value") if isinstance(v, dict) else v for k, v in yaml.safe_load(config.read_text()).items()}
    try:
        exp = cfg["experiment"]["name"]
        rel, est = cfg["relaxation"]["name"], cfg["estimator"]["name"]
    except (KeyError, TypeError):
        return None
    metrics = {k: v for k, v in json.loads(summary.read_text()).items() if k.startswith("test/")}
    record = {"experiment": exp, "relaxation": rel, "estimator": est, "metrics": metrics, "config": cfg,
              "run_dir": str(run_dir)}  # the whole config: the tables check it against their protocols
    if exp == "l2x":
        record.update(k=cfg.get("k"), aspect=cfg.get("aspect"))
    if exp == "nri":
        record["timesteps"] = (cfg.get("data") or {}).get("timesteps")
    return record


def read_records(paths: Iterable[Path]) -> tuple[list[dict], list[dict]]:
    """(table records, side records) under ``paths`` in one pass: *.json records, ``metrics.json`` in run folders,
    W&B offline runs (table records). Runs marked ``"finished": false`` are in neither.

    Raises:
        ValueError: a record carries a schema this version does not read, naming its file.
    """
    records, side, seen = [], [], set()
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for f in files:
            try:
                obj = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue
            if f.resolve() in seen or not (is_record(obj) or is_record(obj, side=True)):
                continue
            check_schema(obj, str(f))
            seen.add(f.resolve())
            if finished(obj):
                (records if is_record(obj) else side).append(obj)
        if root.is_dir():
            for run in sorted(root.rglob("offline-run-*")):
                if not (run.parent.parent / "metrics.json").exists():
                    rec = from_wandb_run(run)
                    if rec is not None:
                        records.append(rec)
    return records, side


def load_records(paths: Iterable[Path], side: bool = False) -> list[dict]:
    """Every table record under ``paths`` (:func:`read_records`); ``side=True``: the side runs' records instead."""
    return read_records(paths)[int(side)]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_name(record: dict) -> str:
    """A record's run, for messages: its ``run_dir``, else its command, else "?"."""
    return str(record.get("run_dir") or record.get("command") or "?")


def portable(obj: object, data_root: Path, cache: Path, repo: Path = REPO) -> object:
    """``obj`` (a record, or any JSON value) with every absolute path under ``cache`` written as ``cache/<path in
    it>``, under ``data_root`` relative to it and under ``repo`` relative to the repository, wherever it occurs in a
    string (a command's overrides too): a record that names no folder of the machine it ran on."""
    prefixes = sorted({(f"{Path(cache).resolve()}/", "cache/"), (f"{Path(data_root).resolve()}/", ""),
                       (f"{Path(repo).resolve()}/", "")}, key=lambda p: -len(p[0]))
    if isinstance(obj, dict):
        return {k: portable(v, data_root, cache, repo) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v, data_root, cache, repo) for v in obj]
    if isinstance(obj, str):
        for prefix, replacement in prefixes:
            obj = obj.replace(prefix, replacement)
    return obj


def to_schema(record: dict, data_root: Path, cache: Path, repo: Path = REPO) -> dict:
    """A run's ``metrics.json`` as a record to keep under ``results/``: ``"schema"`` first, machine paths made
    :func:`portable`."""
    return {"schema": SCHEMA, **portable({k: v for k, v in record.items() if k != "schema"}, data_root, cache, repo)}
