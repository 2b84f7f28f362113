"""The compile guard (issue 50): the first compiled step is checked against an eager step on the same batch,
parameters and noise; a compile that raises or a compiled step with another gradient makes ``trainer.compile=auto``
warn once and continue eagerly (and ``true`` fail), and the check itself leaves the run exactly as without it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from experiments import task_class
from experiments.common import trainer
from experiments.common.compile_guard import (
    RTOL,
    CompileFallbackWarning,
    CompileMismatchError,
    StepOutcome,
    compare,
    gradient_vector,
)
from experiments.common.precision import tf32_matmuls
from experiments.common.runtime import seed_everything
from experiments.common.trainer import TrainStep, batch_generator, compile_guard, fit
from tests.conftest import compose_cfg
from tests.experiments.test_gpu_training import NRI, VAE
from tests.experiments.test_trainer import Regression, _cfg

Forward = Callable[[Any, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class NoisyRegression(Regression):
    """Regression with noise drawn in the step (the guard must not consume any) and a buffer the step updates (the
    guard must put it back)."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.net.register_buffer("running", torch.zeros(()))

    def training_step(self, batch, step):
        x, y = batch
        noise = 0.3 * torch.randn_like(y)
        loss = (self.net(x).squeeze(-1) - y + noise).pow(2).mean()
        with torch.no_grad():
            self.net.running.mul_(0.5).add_(0.5 * loss.detach())
        return loss, {"train/mse": loss.detach()}


def _run(task_type: type[Regression], steps: int, compiled: bool, guard: str | None
         ) -> tuple[list[float], TrainStep, Regression, torch.Tensor]:
    """``steps`` steps of a freshly seeded task: losses, the step, the task and torch's RNG state after."""
    seed_everything(0)
    task = task_type(_cfg(steps), torch.device("cpu"))
    optimizer, scheduler = task.configure_optimizers()
    step_fn = TrainStep(task, task.module(), optimizer, scheduler, compiled=compiled, guard=guard)
    batches = iter(task.train_batches(batch_generator(0, 0)))
    losses = [float(step_fn(next(batches), step)[0].detach()) for step in range(steps)]
    return losses, step_fn, task, torch.get_rng_state()


def _state(step_fn: TrainStep) -> list[torch.Tensor]:
    """Parameters, buffers and every optimizer state tensor, in a fixed order."""
    tensors = [t.detach() for t in step_fn.module.state_dict().values()]
    for state in step_fn.optimizer.state.values():
        tensors += [v for _, v in sorted(state.items()) if torch.is_tensor(v)]
    return tensors


def _assert_same_run(a: tuple, b: tuple) -> None:
    """Bitwise the same losses, parameters, buffers, optimizer state and RNG state."""
    assert a[0] == b[0]
    for x, y in zip(_state(a[1]), _state(b[1]), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a[3], b[3])


def test_the_check_leaves_the_run_as_without_it(monkeypatch, one_thread):
    """Same RNG consumption, parameters, buffer and optimizer state as an unguarded compiled run; the check's eager
    reference runs once (no extra cost after the first step)."""
    calls = {"n": 0}
    twin = NoisyRegression.eager_twin_step

    def counted(self, batch, step):
        calls["n"] += 1
        return twin(self, batch, step)

    unguarded = _run(NoisyRegression, 6, compiled=True, guard=None)
    monkeypatch.setattr(NoisyRegression, "eager_twin_step", counted)
    guarded = _run(NoisyRegression, 6, compiled=True, guard="strict")
    _assert_same_run(guarded, unguarded)
    step_fn = guarded[1]
    assert calls["n"] == 1 and step_fn.fallback is None and step_fn.compiled
    assert step_fn.check["loss_rel"] < 1e-5 and step_fn.check["grad_rel"] < 1e-5 and step_fn.check["rtol"] == RTOL


def _fake_compile(make: Callable[[Forward], Forward]) -> Callable[[Forward, bool], Forward]:
    """A stand-in for ``trainer.compile_step`` that returns ``make(forward)``."""
    return lambda forward, cudagraphs: make(forward)


def _raising(forward: Forward) -> Forward:
    def step(batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.randn(7)  # consumes noise before failing: the fallback must put the generator back
        raise RuntimeError("inductor exploded\nsecond line")
    return step


def _other_gradient(forward: Forward) -> Forward:
    """The same loss value with a gradient 5 % larger: only the gradient check can see it."""
    def step(batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, logs = forward(batch, step)
        return loss + 0.05 * (loss - loss.detach()), logs
    return step


@pytest.mark.parametrize("make, cause", [(_raising, "compilation failed: RuntimeError: inductor exploded"),
                                         (_other_gradient, "relative gradient difference 0.05")])
def test_a_bad_compiled_step_falls_back_to_the_eager_run(monkeypatch, make, cause):
    eager = _run(NoisyRegression, 6, compiled=False, guard=None)
    monkeypatch.setattr(trainer, "compile_step", _fake_compile(make))
    with pytest.warns(CompileFallbackWarning) as caught:
        fallen = _run(NoisyRegression, 6, compiled=True, guard="fallback")
    assert len(caught) == 1 and cause in str(caught[0].message)
    assert cause in fallen[1].fallback and not fallen[1].compiled
    _assert_same_run(fallen, eager)  # the fallen-back run is the eager run, first step included


@pytest.mark.parametrize("make, cause", [(_raising, "inductor exploded"), (_other_gradient, "gradient difference")])
def test_compile_true_fails_loudly(tmp_path: Path, monkeypatch, make, cause):
    cfg = _cfg(6)
    OmegaConf.update(cfg, "trainer.compile", True)
    monkeypatch.setattr(trainer, "compile_step", _fake_compile(make))
    with pytest.raises(CompileMismatchError, match=f"trainer.compile=true: .*{cause}"):
        fit(cfg, NoisyRegression, out_dir=tmp_path)


def test_compile_auto_records_the_fallback(tmp_path: Path, monkeypatch):
    cfg = _cfg(12)  # trainer.compile=auto; the CPU would stay eager, so use_compile is told it is on CUDA
    monkeypatch.setattr(trainer, "use_compile", lambda value, device: True)
    monkeypatch.setattr(trainer, "compile_step", _fake_compile(_raising))
    with pytest.warns(CompileFallbackWarning, match="inductor exploded"):
        fit(cfg, NoisyRegression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["finished"] and record["compile"] == "fell back: compilation failed: RuntimeError: inductor exploded"


def test_fit_compiled_records_the_check(tmp_path: Path, one_thread):
    cfg = _cfg(12)
    OmegaConf.update(cfg, "trainer.compile", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        fit(cfg, NoisyRegression, out_dir=tmp_path)
    check = json.loads((tmp_path / "metrics.json").read_text())["compile"]["check"]
    assert check["grad_rel"] < 1e-5 and check["loss_rel"] < 1e-5


def test_guard_modes():
    assert compile_guard("auto") == "fallback" and compile_guard("false") == "fallback"
    assert compile_guard(True) == "strict"
    with pytest.raises(ValueError, match="fallback, strict"):
        TrainStep(*_pieces(), guard="maybe")


def _pieces() -> tuple:
    task = Regression(_cfg(2), torch.device("cpu"))
    return (task, task.module(), *task.configure_optimizers())


def _outcome(loss: float, gradient: list[float]) -> StepOutcome:
    return StepOutcome(torch.tensor(loss), {}, torch.tensor(gradient, dtype=torch.float64))


def test_compare():
    same, reason = compare(_outcome(2.0, [3.0, 4.0]), _outcome(2.0 * (1 + 1e-6), [3.0, 4.0 + 1e-5]))
    assert reason is None and same["grad_rel"] == pytest.approx(2e-6)
    # a gradient pointing elsewhere with the same norm and loss: only grad_rel sees it
    stats, reason = compare(_outcome(2.0, [3.0, 4.0]), _outcome(2.0, [4.0, 3.0]))
    assert stats["grad_norm_rel"] == 0 and stats["grad_rel"] == pytest.approx(2 ** 0.5 / 5) and "gradient" in reason
    _, reason = compare(_outcome(2.0, [3.0, 4.0]), _outcome(2.02 * (1 + RTOL), [3.0, 4.0]))
    assert "loss 2.0402 against 2" in reason
    _, reason = compare(_outcome(2.0, [3.0, 4.0]), _outcome(float("nan"), [3.0, 4.0]))
    assert "non-finite values on one side only" in reason
    assert compare(_outcome(float("inf"), [0.0]), _outcome(float("inf"), [0.0]))[1] is None
    assert compare(_outcome(0.0, [0.0, 0.0]), _outcome(0.0, [0.0, 0.0]))[1] is None


def _one_step_outcome(overrides: list[str], tf32: str | bool) -> StepOutcome:
    """The first step's loss and gradient of a freshly seeded task (eager), under ``trainer.tf32=tf32``."""
    cfg = compose_cfg([*overrides, "logger=none", "device=cpu", "trainer.progress=false"])
    seed_everything(0)
    task = task_class(str(cfg.experiment.name))(cfg, torch.device("cpu"))
    batch = next(iter(task.train_batches(batch_generator(0, 0))))
    with tf32_matmuls(tf32, torch.device("cpu")):
        loss, _ = task.training_step(batch, 0)
        loss.backward()
    return StepOutcome(loss.detach(), {}, gradient_vector(task.module()))


@pytest.mark.parametrize("overrides", [VAE, NRI], ids=["vae", "nri"])
def test_tf32_rounding_stays_well_inside_the_tolerance(fake_mnist, one_thread, overrides):
    """The tolerance's margin (compile_guard.RTOL): one step with TF32's rounding of every matrix product's operands
    against full float32, the same batch, parameters and noise, differs by far less than RTOL; a compiled and an
    eager step that both run under the same TF32 setting differ by less still."""
    stats, reason = compare(_one_step_outcome(overrides, False), _one_step_outcome(overrides, "emulate"))
    assert reason is None and stats["loss_rel"] < RTOL / 10 and stats["grad_rel"] < RTOL / 10, stats


def test_l2x_eager_twin_step_keeps_the_traced_width(tmp_path: Path, monkeypatch, one_thread):
    """L2X's compiled step keeps batches at data.max_len (a static shape); its eager twin must too, or its noise
    would have another shape than the compiled step's; its plain training step still cuts them."""
    from tests.experiments.test_l2x_run import make_tiny_beer

    root = make_tiny_beer(tmp_path / "data")
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    cfg = compose_cfg(["experiment=l2x", "relaxation=corr_topk", f"data.root={root}", "logger=none", "device=cpu",
                       "data.train_files=[beer/train.txt.gz]", "data.test_file=beer/annotations.json",
                       "data.embedding_dim=16", "data.w2v.epochs=2", "data.w2v.workers=1", "trainer.progress=false"])
    task = task_class("l2x")(cfg, torch.device("cpu"))
    widths: list[int] = []
    embed = task.model.embed
    monkeypatch.setattr(task.model, "embed", lambda ids: widths.append(ids.shape[1]) or embed(ids))
    batch = next(iter(task.train_batches(batch_generator(0, 0))))
    task.eager_twin_step(batch, 0)
    task.training_step(batch, 0)
    assert widths[0] == int(cfg.data.max_len) > widths[1]
