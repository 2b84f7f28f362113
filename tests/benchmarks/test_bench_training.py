"""benchmarks/bench_training.py: the helpers, and a --quick run of NRI, VAE and L2X (shrunk models) writing its JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.experiments.test_l2x_run import make_tiny_beer

SCRIPT = REPO / "benchmarks" / "bench_training.py"
NRI_PARTS = {"data", "encoder", "sampler", "decoder", "backward", "optimizer", "logging"}
ROW_KEYS = {"experiment", "relaxation", "estimator", "batch_size", "iters", "warmup", "ms_per_iter", "steps_per_s",
            "logging_ms", "setup_s", "paper_run_steps", "paper_run_minutes", "overrides"}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mnist_present() -> bool:
    from experiments.common.data import resolve_data_root
    from experiments.vae.data import FILES, locate

    try:
        for key in ("train_images", "test_images"):
            locate(FILES[key], resolve_data_root(), False)
    except Exception:
        return False
    return True


def test_helpers_parse_experiments_and_overrides():
    b = _script()
    assert b.parse_experiments("nri:spanning_tree+indep,vae") == [("nri", ("spanning_tree", "indep")),
                                                                  ("vae", ("gumbel_softmax",))]
    assert b.parse_experiments("l2x") == [("l2x", ("corr_topk",))]
    assert b.parse_experiments("nri")[0][1] == ("spanning_tree", "indep", "ef_topk")
    with pytest.raises(ValueError, match="legal"):
        b.parse_experiments("mnist")
    per = b.split_overrides(["seed=3", "nri:model.decoder_hidden=16", "l2x:data.train_files=[beer/a.txt.gz]"])
    assert per["nri"] == ["seed=3", "model.decoder_hidden=16"]
    assert per["vae"] == ["seed=3"] and per["l2x"] == ["seed=3", "data.train_files=[beer/a.txt.gz]"]
    assert b.merge_overrides(["device=cpu", "data.num_train=512"], ["data.num_train=64", "+x=1"]) == [
        "device=cpu", "data.num_train=64", "+x=1"]


def test_quick_run_writes_the_record(tmp_path: Path):
    """--quick with tiny models (the paper settings are what the script measures by default; here only the
    plumbing is checked): every row times, NRI has its split, the JSON has the documented keys."""
    experiments = ["nri"] + (["vae"] if _mnist_present() else []) + ["l2x"]
    root = make_tiny_beer(tmp_path / "data")
    out = tmp_path / "bench.json"
    env = {**os.environ, "SST_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--experiments", ",".join(experiments),
           "--out", str(out),
           "nri:data.batch_size=16", "nri:model.encoder_hidden=16", "nri:model.decoder_hidden=16",
           "vae:data.batch_size=16", "vae:model.hidden=[32,16]",
           f"l2x:data.root={root}", "l2x:data.train_files=[beer/train.txt.gz]",
           "l2x:data.test_file=beer/annotations.json", "l2x:data.batch_size=8"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| experiment | relaxation |" in proc.stdout and "| NRI relaxation |" in proc.stdout

    record = json.loads(out.read_text())
    for key in ("command", "commit", "hardware", "torch_threads", "device", "quick", "iters", "warmup", "results",
                "markdown", "wall_time_s"):
        assert key in record, key
    assert record["quick"] is True and record["device"] == "cpu" and (record["warmup"], record["iters"]) == (1, 2)
    assert record["torch_threads"] == 1 and record["hardware"]["cpu_cores"] >= 1
    rows = record["results"]
    assert [r["experiment"] for r in rows] == ["nri"] * 3 + experiments[1:]
    for r in rows:
        assert "error" not in r, r
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["iters"] == 2 and r["steps_per_s"] > 0 and r["ms_per_iter"] > 0 and r["paper_run_minutes"] > 0
    by = {(r["experiment"], r["relaxation"]): r for r in rows}
    assert {rel for exp, rel in by if exp == "nri"} == {"spanning_tree", "indep", "ef_topk"}
    for rel in ("spanning_tree", "indep", "ef_topk"):
        r = by["nri", rel]
        assert r["batch_size"] == 16 and r["paper_run_steps"] == 50000 and r["estimator"] == "relaxed"
        assert set(r["split"]["ms"]) == NRI_PARTS and r["split"]["total_ms"] > 0
        assert 0 <= r["split"]["sampler_share"] <= 1
    if "vae" in experiments:
        assert by["vae", "gumbel_softmax"]["paper_run_steps"] == 100000
    l2x = by["l2x", "corr_topk"]
    assert l2x["paper_run_steps"] == 15500 and l2x["k"] == 10 and l2x["batch_size"] == 8
    assert l2x["embedding_dim"] == 16  # --quick, nothing cached: tiny word2vec instead of minutes of training


def test_bench_adam_reports_every_variant():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_adam.py"), "--reps", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["ms_per_step"]) == {"per_tensor", "foreach", "fused", "adam()"}
    assert all(v > 0 for v in out["ms_per_step"].values()) and out["parameters"] > 1_000_000
