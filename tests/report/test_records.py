"""Loading records: table and side runs, the schema, unfinished runs, and the committed results/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments.report.records import RESULTS, SCHEMA, flatten, is_record, read_records, to_schema
from tests.report.helpers import _write

RUN = {"experiment": "vae", "relaxation": "gumbel_softmax", "estimator": "relaxed", "metrics": {"test/neg_elbo": 1.0}}
# Absolute paths of a machine (a record's data paths are relative to the data root) and prose fields.
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users|mnt|scratch)/")
PROSE = {"table_note", "superseded_note", "note", "commit_note"}


def test_side_runs_are_left_out():
    assert is_record(RUN) and not is_record({**RUN, "table": False})
    assert is_record({**RUN, "table": False}, side=True) and not is_record({"metrics": {}})


def test_unfinished_runs_are_in_no_table(tmp_path: Path):
    _write(tmp_path / "done.json", **RUN)
    _write(tmp_path / "old.json", **{k: v for k, v in RUN.items()})  # no "finished": counts as finished
    _write(tmp_path / "stopped.json", **RUN, finished=False)
    _write(tmp_path / "stopped_side.json", **RUN, finished=False, table=False)
    _write(tmp_path / "done_side.json", **RUN, finished=True, table=False)
    records, side = read_records([tmp_path])
    assert len(records) == 2 and len(side) == 1


def test_a_record_of_another_schema_is_refused(tmp_path: Path):
    _write(tmp_path / "a.json", **RUN, schema=SCHEMA)
    assert len(read_records([tmp_path])[0]) == 1
    _write(tmp_path / "b.json", **RUN, schema=SCHEMA + 1)
    with pytest.raises(ValueError, match=r"b\.json: schema must be 1, got 2"):
        read_records([tmp_path])


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1]}) == {"a.b": 1, "a.c.d": None, "e": [1]}


def test_committed_results_are_schema_1_without_machine_paths_or_prose():
    files = sorted(RESULTS.rglob("*.json"))
    assert files, f"no records under {RESULTS}"
    for f in files:
        text = f.read_text()
        obj = json.loads(text)
        assert obj.get("schema") == SCHEMA, f"{f}: no \"schema\": {SCHEMA}"
        assert not MACHINE_PATH.search(text), f"{f}: an absolute machine path: {MACHINE_PATH.search(text).group()}"
        runs = obj.get("runs", [obj]) if isinstance(obj, dict) else []
        assert not any(PROSE & set(r) for r in runs if isinstance(r, dict)), f"{f}: a prose field"
    assert not list(RESULTS.rglob("history.jsonl")) and not list(RESULTS.rglob("*.html"))


def test_to_schema_makes_paths_portable(tmp_path: Path):
    data, cache, repo = tmp_path / "data", tmp_path / "cache", tmp_path / "repo"
    record = {"schema": 1, "experiment": "l2x",
              "data": {"train_files": [f"{data}/beer/a.txt.gz"], "embeddings": f"{cache}/w2v.txt"},
              "command": f"python run.py data.embeddings={cache}/w2v.txt data.root={data}/ out={repo}/outputs/x",
              "run_dir": f"{repo}/outputs/x"}
    saved = to_schema(record, data, cache, repo)
    assert list(saved)[0] == "schema" and saved["schema"] == SCHEMA
    assert saved["data"] == {"train_files": ["beer/a.txt.gz"], "embeddings": "cache/w2v.txt"}
    assert saved["command"] == "python run.py data.embeddings=cache/w2v.txt data.root= out=outputs/x"
    assert saved["run_dir"] == "outputs/x" and not MACHINE_PATH.search(json.dumps(saved).replace(str(tmp_path), "/tmp"))
