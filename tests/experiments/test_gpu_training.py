"""trainer.compile / tf32 / max_minutes (issue 37): the compiled step gives the eager losses without recompiling as
the step and the temperature change; a time budget stops a run resumably; TF32 is scoped to the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments import task_class
from experiments.common import trainer
from experiments.common.config import ConfigError, validate_config
from experiments.common.precision import tf32_matmuls
from experiments.common.runtime import seed_everything
from experiments.common.task import adam
from experiments.common.trainer import TrainStep, batch_generator, fit, use_compile
from tests.conftest import compose_cfg
from tests.experiments.test_trainer import Regression, _cfg

VAE = ["experiment=vae", "relaxation=gumbel_softmax", "data.batch_size=16", "data.num_valid=40", "data.limit_eval=24",
       "model.hidden=[32,16]", "anneal.every=1", "anneal.rate=0.01", "anneal.kl_warmup=10"]
NRI = ["experiment=nri", "data.num_train=256", "data.num_valid=128", "data.num_test=128", "data.batch_size=32",
       "model.encoder_hidden=32", "model.decoder_hidden=32"]


def _losses(overrides: list[str], compiled: bool, steps: int = 30) -> tuple[list[float], dict[str, int]]:
    """``steps`` training steps of a freshly seeded task, eager or compiled: the losses and dynamo's counts."""
    cfg = compose_cfg([*overrides, "logger=none", "device=cpu", "trainer.progress=false"])
    seed_everything(0)
    task = task_class(str(cfg.experiment.name))(cfg, torch.device("cpu"))
    module = task.module()
    optimizer, scheduler = task.configure_optimizers()
    step_fn = TrainStep(task, module, optimizer, scheduler, cfg.trainer.get("grad_clip"), compiled=compiled)
    batches = iter(task.train_batches(batch_generator(0, 0)))
    losses = [float(step_fn(next(batches), step)[0]) for step in range(steps)]
    return losses, step_fn.counts


def _check_same_losses_few_recompiles(overrides: list[str], monkeypatch=None) -> None:
    if monkeypatch is not None:  # eager as traced code runs it (L2X: full-width batches), then restored
        with monkeypatch.context() as m:
            m.setattr("experiments.l2x.task.full_width", lambda: True)
            eager, _ = _losses(overrides, compiled=False)
    else:
        eager, _ = _losses(overrides, compiled=False)
    compiled, counts = _losses(overrides, compiled=True)
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert counts["frames"] >= 1
    # the step and the annealed temperature change every step here: at most one recompile for each of them
    assert counts["recompiles"] <= 3, counts


@pytest.mark.parametrize("estimator", ["relaxed", "nvil", "rebar"])
def test_vae_compiled_matches_eager_with_few_recompiles(fake_mnist, one_thread, estimator):
    # nvil: running statistics updated in the step; rebar: tunes itself by a double backward (kept eager)
    _check_same_losses_few_recompiles([*VAE, f"estimator={estimator}"])


@pytest.mark.slow
def test_nri_compiled_matches_eager_with_few_recompiles(one_thread):
    _check_same_losses_few_recompiles(NRI)


@pytest.mark.slow
def test_l2x_compiled_matches_eager_with_few_recompiles(tmp_path, monkeypatch, one_thread):
    """Compiled, L2X keeps batches at their full width (a static shape), so its noise and dropout masks have other
    shapes than in the default eager run (which cuts each batch to its longest review): the eager reference here
    runs at full width too."""
    from tests.experiments.test_l2x_run import make_tiny_beer

    root = make_tiny_beer(tmp_path / "data")
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    _check_same_losses_few_recompiles(["experiment=l2x", "relaxation=corr_topk", f"data.root={root}",
                                       "data.train_files=[beer/train.txt.gz]", "data.test_file=beer/annotations.json",
                                       "data.embedding_dim=16", "data.w2v.epochs=2", "data.w2v.workers=1",
                                       "data.batch_size=16"], monkeypatch)


def test_cuda_graph_path_runs_on_cpu_tensors_with_the_eager_losses(one_thread):
    """The CUDA branch of TrainStep (reduce-overhead, cudagraph_mark_step_begin, the scalars copied out) as far as
    a machine without CUDA can take it: Inductor skips the graphs for CPU tensors, the rest of the path runs."""
    def losses(compiled: bool, device: str) -> tuple[list[float], dict[str, int], bool]:
        seed_everything(0)
        task = Regression(_cfg(12), torch.device("cpu"))
        optimizer, scheduler = task.configure_optimizers()
        step_fn = TrainStep(task, task.module(), optimizer, scheduler, compiled=compiled, device=torch.device(device))
        batches = iter(task.train_batches(batch_generator(0, 0)))
        out = [step_fn(next(batches), step) for step in range(12)]
        if compiled:  # copied out of (what would be) graph memory: detached, the same keys
            assert all(not loss.requires_grad and set(logs) == {"train/mse"} for loss, logs in out)
        return [float(loss) for loss, _ in out], step_fn.counts, step_fn.cudagraphs

    eager, _, _ = losses(False, "cpu")
    graphed, counts, cudagraphs = losses(True, "cuda")
    assert cudagraphs and counts["frames"] >= 1 and counts["recompiles"] <= 2
    assert graphed == pytest.approx(eager, rel=1e-5)


def test_compile_setting_and_validation():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_compile("auto", cpu) and use_compile("auto", cuda)
    assert use_compile(True, cpu) and not use_compile(False, cuda) and use_compile("true", cpu)
    with pytest.raises(ValueError, match="auto, true, false"):
        use_compile("yes", cpu)
    for bad, match in (("trainer.compile=sometimes", "auto, true, false"), ("trainer.max_minutes=0", "max_minutes"),
                       ("trainer.max_minutes=-3", "max_minutes"), ("trainer.tf32=maybe", "tf32")):
        with pytest.raises(ConfigError, match=match):
            validate_config(compose_cfg([bad, "logger=none"]))
    for good in ("trainer.compile=true", "trainer.compile=false", "trainer.max_minutes=2.5"):
        validate_config(compose_cfg([good, "logger=none"]))


def test_tf32_is_scoped_to_the_run():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    with tf32_matmuls(True, torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == "high"
    with tf32_matmuls(False, torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    with tf32_matmuls(True, torch.device("cpu")):
        assert torch.get_float32_matmul_precision() == before[0]


def test_adam_is_fused_on_cpu_and_foreach_elsewhere():
    opt = adam([torch.nn.Parameter(torch.zeros(3))], 1e-3)
    assert opt.defaults["fused"] and not opt.defaults["foreach"]


class _Clock:
    """A perf_counter that advances one second per call: a time budget runs out after a fixed number of calls."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        self.t += 1.0
        return self.t


def test_max_minutes_stops_resumably_and_the_rerun_finishes(tmp_path: Path, monkeypatch, capsys):
    cfg = _cfg(40)
    cfg.trainer.max_minutes = 0.25  # 15 fake seconds: a few steps
    monkeypatch.setattr(trainer, "time", _Clock())
    metrics = fit(cfg, Regression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["finished"] is False and 0 < record["step"] < 40
    assert not any(k.startswith("test/") for k in record["metrics"]) and "test/mse" not in metrics
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["step"] == record["step"]
    out = capsys.readouterr().out
    assert "reached at step" in out and f"hydra.run.dir={tmp_path}" in out
    assert record["compile"] == {"enabled": False, "mode": None, "frames": 0, "graphs": 0, "recompiles": 0}

    cfg.trainer.max_minutes = None
    metrics = fit(cfg, Regression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["finished"] is True and record["step"] == 40 and "test/mse" in metrics


def test_fit_compiled_records_its_counts(tmp_path: Path, one_thread):
    cfg = _cfg(12)
    OmegaConf.update(cfg, "trainer.compile", True)
    fit(cfg, Regression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["finished"] is True and record["compile"]["enabled"] and record["compile"]["mode"] == "default"
    assert record["compile"]["recompiles"] <= 2
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert any("compile/recompiles" in h for h in history)


def test_bench_training_table_puts_compiled_beside_eager():
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_training", REPO / "benchmarks" / "bench_training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"experiment": "vae", "relaxation": "gumbel_softmax", "estimator": "relaxed", "batch_size": 100,
           "ms_per_iter": 10.0, "steps_per_s": 100.0, "paper_run_steps": 100000, "paper_run_minutes": 16.7,
           "compiled_step": {"steps_per_s": 150.0, "compile_s": 12.3, "recompiles": 1}, "compiled_speedup": 1.5}
    table = bench.markdown([row], "cpu", 1)
    assert "compiled steps/s | compile (s) | recompiles | speed-up" in table
    assert "| 150 | 12.3 | 1 | x1.50 |" in table
    with pytest.raises(ValueError, match="off, on, both"):
        bench.bench_row("vae", "gumbel_softmax", "cpu", [], 1, 0, compile_mode="maybe")
