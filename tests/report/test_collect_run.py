"""scripts/collect_run.py: a finished run's record lands under results/<experiment>/ in schema 1, its artifacts
stay in the run folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("collect_run", REPO / "scripts" / "collect_run.py")
collect_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(collect_run)


def test_collect_copies_the_record_not_the_artifacts(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    record = {"experiment": "l2x", "relaxation": "corr_topk", "estimator": "relaxed", "k": 10, "seed": 0,
              "metrics": {"test/mse": 0.02}}
    (run / "metrics.json").write_text(json.dumps(record))
    (run / "explanations.html").write_text("<html></html>")
    (run / "best.pt").write_bytes(b"x")
    dest = collect_run.collect(run, tmp_path / "results")
    assert dest == tmp_path / "results" / "l2x" / "corr_topk_relaxed_k10_seed0.json"
    saved = json.loads(dest.read_text())
    assert saved["metrics"] == record["metrics"] and "run_dir" in saved and saved["schema"] == 1
    assert not (dest.parent / "corr_topk_relaxed_k10_seed0").exists()


def test_collect_refuses_unfinished_run(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        collect_run.collect(tmp_path, tmp_path / "results")


def test_collect_side_run_goes_to_subdir_and_out_of_tables(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    record = {"experiment": "nri", "relaxation": "spanning_tree", "estimator": "relaxed", "timesteps": 10,
              "seed": 1, "metrics": {"test/elbo": -600.0}}
    (run / "metrics.json").write_text(json.dumps(record))
    dest = collect_run.collect(run, tmp_path / "results", name="probe", side=True, subdir="probes")
    assert dest == tmp_path / "results" / "nri" / "probes" / "probe.json"
    assert json.loads(dest.read_text())["table"] is False
