"""benchmarks/bench_flush_denormal.py on a finished (tiny) VAE run: both settings timed, the record written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from experiments.common.runtime import flush_denormal_enabled
from experiments.common.trainer import fit
from experiments.vae import task as vtask
from tests.conftest import REPO
from tests.experiments.test_vae_run import _cfg


def _script():
    path = REPO / "benchmarks" / "bench_flush_denormal.py"
    spec = importlib.util.spec_from_file_location("bench_flush_denormal", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_times_a_finished_run_both_ways(fake_mnist, tmp_path: Path):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    cfg = _cfg("gumbel_softmax", "relaxed", "model.hidden=[32,16]", "trainer.max_steps=4", "trainer.eval_every=2",
               "trainer.progress=false", "eval.artifacts=false", "anneal.rate=1.0", "anneal.every=1")
    run = tmp_path / "run"
    fit(cfg, vtask.VAETask, out_dir=run)
    out = tmp_path / "bench.json"
    record = _script().main([str(run), "--blocks", "2", "--steps", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == {"schema": 1, **record}
    (row,) = record["rows"]
    assert row["experiment"] == "vae" and row["from_step"] == 4
    assert row["tau"] == 0.5  # annealed to tau_min by step 4 at this rate, not the configured initial 1.0
    assert len(row["steps_per_s_off"]) == len(row["steps_per_s_on"]) == 2
    assert row["speedup"] == pytest.approx(row["median_on"] / row["median_off"], rel=1e-2)
    for key in ("command", "commit", "hardware", "wall_time_s"):
        assert key in record
    assert not flush_denormal_enabled()


def test_bench_needs_a_checkpoint(fake_mnist, tmp_path: Path):
    cfg = _cfg("gumbel_softmax", "relaxed", "model.hidden=[32,16]", "trainer.max_steps=2", "trainer.eval_every=2",
               "trainer.progress=false", "eval.artifacts=false")
    run = tmp_path / "run"
    fit(cfg, vtask.VAETask, out_dir=run)
    (run / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match="last.pt"):
        _script().main([str(run), "--out", str(tmp_path / "bench.json")])
