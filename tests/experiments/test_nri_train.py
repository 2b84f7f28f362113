"""NRI end to end: a 20-step run writes metrics.json with the table's metric names, a PNG and checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_cfg

METRICS = ("test/elbo", "test/edge_precision", "test/edge_recall")
TINY = ["data.num_train=256", "data.num_valid=128", "data.num_test=128", "device=cpu"]
SMALL = ["data.batch_size=32", "model.encoder_hidden=32", "model.decoder_hidden=32", "eval.batch_size=128",
         "trainer.progress=false"]


def _structures_ready() -> bool:
    import sst

    return all(hasattr(sst, name) for name in ("Binary", "TopK", "SpanningTree", "sample"))


pytestmark = pytest.mark.skipif(not _structures_ready(), reason="sst structures not available yet")


def _check_record(out: Path, relaxation: str, estimator: str = "relaxed") -> dict:
    record = json.loads((out / "metrics.json").read_text())
    assert record["experiment"] == "nri" and record["relaxation"] == relaxation
    assert record["estimator"] == estimator and record["timesteps"] == 10
    for key in METRICS:
        assert key in record["metrics"], sorted(record["metrics"])
    assert 0.0 <= record["metrics"]["test/edge_precision"] <= 1.0
    assert 0.0 <= record["metrics"]["test/edge_recall"] <= 1.0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert (out / "nri_test_trajectories.png").stat().st_size > 1000
    return record


def test_run_py_spanning_tree_with_default_logger(tmp_path: Path):
    """The outside check's command (shrunk model for speed), through run.py and the default logger (W&B
    offline)."""
    out = tmp_path / "run"
    env = {**os.environ, "SST_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2",
           "WANDB_BASE_URL": "http://127.0.0.1:9"}  # nothing listens there: offline mode must not need it
    cmd = [sys.executable, "run.py", "experiment=nri", "relaxation=spanning_tree", "trainer.max_steps=20",
           "trainer.eval_every=10", *TINY, *SMALL, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = _check_record(out, "spanning_tree")
    assert record["metrics"]["test/edge_precision"] == pytest.approx(record["metrics"]["test/edge_recall"])
    assert list((out / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.npz")) == sorted(
        f"nri_layout_v1_n10_T10_seed42_{s}.npz" for s in ("train256", "valid128", "test128"))


@pytest.mark.parametrize("relaxation", ["indep", "ef_topk"])
def test_other_rows_train(tmp_path: Path, monkeypatch, relaxation):
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    cfg = compose_cfg(["experiment=nri", f"relaxation={relaxation}", "trainer.max_steps=6", "trainer.eval_every=3",
                       "logger=none", *TINY, *SMALL])
    from experiments.common.trainer import fit
    from experiments.nri.task import NRITask

    metrics = fit(cfg, NRITask, out_dir=tmp_path / "run")
    record = _check_record(tmp_path / "run", relaxation)
    assert record["metrics"]["test/elbo"] == pytest.approx(metrics["test/elbo"])
    if relaxation == "ef_topk":
        assert record["metrics"]["test/num_edges"] == pytest.approx(9.0)


def test_illegal_relaxation_fails_early():
    from experiments import run_experiment
    from experiments.common.config import ConfigError

    cfg = compose_cfg(["experiment=nri", "relaxation=gumbel_softmax", "logger=none", *TINY])
    with pytest.raises(ConfigError, match="indep, ef_topk, spanning_tree"):
        run_experiment(cfg)


@pytest.mark.slow
def test_outside_check_command(tmp_path: Path):
    """Exactly the documented check command (paper-size model and batch), 20 steps on CPU."""
    out = tmp_path / "run"
    env = {**os.environ, "SST_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "run.py", "experiment=nri", "relaxation=spanning_tree", "trainer.max_steps=20",
           "trainer.eval_every=10", *TINY, "logger=none", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_record(out, "spanning_tree")


def test_diagnose_probes_run_and_report_curves():
    from experiments.nri.diagnose import diagnose

    cfg = compose_cfg(["experiment=nri", "logger=none", *TINY, *SMALL])
    out = diagnose(cfg, steps=3, every=2)
    assert out["random_tree_precision"] == 0.2
    assert [p["step"] for p in out["encoder_probe"]] == [2, 3]
    assert all(0.0 <= p["valid_precision"] <= 1.0 for p in out["encoder_probe"])
    for key in ("decoder_true_edges", "decoder_no_edge_information"):
        assert len(out[key]) == 2 and all(p["valid_nll_one_step"] > 0 for p in out[key])
    with pytest.raises(ValueError, match="steps"):
        diagnose(cfg, steps=0)


def test_diagnose_probes_a_checkpoints_code(tmp_path):
    import torch

    from experiments.nri.diagnose import diagnose
    from experiments.nri.task import NRITask

    cfg = compose_cfg(["experiment=nri", "logger=none", *TINY, *SMALL])
    ckpt = tmp_path / "last.pt"
    torch.save({"module": NRITask(cfg, torch.device("cpu")).module().state_dict()}, ckpt)
    out = diagnose(cfg, steps=2, every=2, code_from=ckpt)
    assert 0.0 <= out["code_precision_valid"] <= 1.0
    assert len(out["decoder_checkpoint_code"]) == 1 and out["decoder_checkpoint_code"][0]["valid_nll_one_step"] > 0
    with pytest.raises(ValueError, match="no such checkpoint"):
        diagnose(cfg, steps=2, every=2, code_from=tmp_path / "missing.pt")
    bigger = compose_cfg(["experiment=nri", "logger=none", *TINY, *SMALL, "model.decoder_hidden=24"])
    with pytest.raises(ValueError, match="does not fit the composed config"):
        diagnose(bigger, steps=2, every=2, code_from=ckpt)
