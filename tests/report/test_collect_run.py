"""scripts/collect_run.py: a finished run's record lands under results/<experiment>/ in schema 1, its artifacts
stay in the run folder; it never writes an unfinished or off-protocol run as a table record, nor overwrites another
run's record without --force."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.report.helpers import protocol_config

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("collect_run", REPO / "scripts" / "collect_run.py")
collect_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(collect_run)


def test_collect_copies_the_record_not_the_artifacts(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    record = {"experiment": "l2x", "relaxation": "corr_topk", "estimator": "relaxed", "k": 10, "seed": 0,
              "metrics": {"test/mse": 0.02}}
    record["config"] = protocol_config(record)
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


def _vae_run(folder: Path, steps: int, neg_elbo: float, commit: str = "aaa") -> Path:
    """A finished VAE Gumbel-softmax run folder of ``steps`` steps (the protocol's other settings)."""
    record = {"experiment": "vae", "relaxation": "gumbel_softmax", "estimator": "relaxed", "seed": 0,
              "finished": True, "step": steps, "commit": commit, "metrics": {"test/neg_elbo": neg_elbo},
              "config": {"trainer": {"max_steps": steps}}}
    record["config"] = protocol_config(record)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def test_a_short_run_never_replaces_a_table_record(tmp_path: Path, capsys):
    """The issue's reproducer: collect_run on a 600-step VAE run silently overwrote the committed table record
    results/vae/gumbel_softmax_relaxed_seed0.json (test -ELBO 99.62 -> 178.07)."""
    results = tmp_path / "results"
    dest = collect_run.collect(_vae_run(tmp_path / "paper", 100_000, 99.62), results)
    assert dest == results / "vae" / "gumbel_softmax_relaxed_seed0.json"
    committed = dest.read_text()
    short = _vae_run(tmp_path / "short", 600, 178.07)
    for force in (False, True):  # off the protocol: --force does not help
        with pytest.raises(collect_run.Refused, match="trainer.max_steps=600 \\(protocol: 100000\\).*--side"):
            collect_run.collect(short, results, force=force)
    assert collect_run.main([str(short), "--results", str(results), "--force"]) == 1
    assert "refused" in capsys.readouterr().err and dest.read_text() == committed
    # a side record never takes a table record's name; in a subfolder it leaves the table record alone
    with pytest.raises(collect_run.Refused, match="is a table record"):
        collect_run.collect(short, results, side=True, force=True)
    side = collect_run.collect(short, results, side=True, subdir="probes")
    assert side == results / "vae" / "probes" / "gumbel_softmax_relaxed_seed0.json" and dest.read_text() == committed


def test_an_unfinished_run_is_no_table_record(tmp_path: Path):
    run = _vae_run(tmp_path / "cut", 100_000, 120.0)
    record = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**record, "finished": False, "step": 4000}))
    with pytest.raises(collect_run.Refused, match="unfinished \\(step 4000 of 100000\\)"):
        collect_run.collect(run, tmp_path / "results", force=True)


def test_another_run_of_the_protocol_overwrites_only_with_force(tmp_path: Path):
    results = tmp_path / "results"
    first = collect_run.collect(_vae_run(tmp_path / "a", 100_000, 99.62, commit="aaa"), results)
    again = collect_run.collect(tmp_path / "a", results)  # the same run again: rewritten, no refusal
    assert again == first
    other = _vae_run(tmp_path / "b", 100_000, 101.0, commit="bbb")
    with pytest.raises(collect_run.Refused, match="commit aaa -> bbb.*--force"):
        collect_run.collect(other, results)
    assert json.loads(first.read_text())["metrics"]["test/neg_elbo"] == 99.62
    collect_run.collect(other, results, force=True)
    assert json.loads(first.read_text())["metrics"]["test/neg_elbo"] == 101.0
    assert collect_run.run_differences({"config": {"a": {"b": 1}}, "step": 5}, {"config": {"a": {"b": 2}}, "step": 6}) \
        == ["config: a.b 1 -> 2", "step 5 -> 6"]
