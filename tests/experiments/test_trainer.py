"""The shared trainer on a tiny dummy task: metrics.json, best/last checkpoints, resume, W&B offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.common.data import TensorBatches
from experiments.common.runtime import flush_denormal, flush_denormal_enabled
from experiments.common.task import Task, adam, lr_scheduler
from experiments.common.trainer import fit
from tests.conftest import compose_cfg


class Regression(Task):
    """y = x @ w_true; one linear layer learns it."""

    monitor = "valid/mse"
    monitor_mode = "min"

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 4, generator=g).to(device)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0], device=device)
        self.net = torch.nn.Linear(4, 1)

    def module(self) -> torch.nn.Module:
        return self.net

    def train_batches(self, generator):
        return iter(TensorBatches([self.x, self.y], 32, generator))

    def training_step(self, batch, step):
        x, y = batch
        loss = (self.net(x).squeeze(-1) - y).pow(2).mean()
        return loss, {"train/mse": loss.detach()}

    def evaluate(self, split):
        return {f"{split}/mse": (self.net(self.x).squeeze(-1) - self.y).pow(2).mean()}

    def record_extras(self):
        return {"k": 3}


def _cfg(steps: int, logger: str = "none") -> DictConfig:
    cfg = compose_cfg([f"trainer.max_steps={steps}", "trainer.eval_every=10", "trainer.log_every=5",
                       f"logger={logger}", "device=cpu", "trainer.progress=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.optim.lr = 0.05
    cfg.optim.schedule = "constant"
    return cfg


def test_fit_writes_record_and_checkpoints(tmp_path: Path):
    metrics = fit(_cfg(40), Regression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("experiment", "relaxation", "estimator", "metrics", "command", "commit", "hardware",
                "wall_time_s", "config", "seed"):
        assert key in record
    assert record["k"] == 3
    assert record["metrics"]["test/mse"] == pytest.approx(metrics["test/mse"])
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert any("valid/mse" in h for h in history) and any("train/mse" in h for h in history)
    assert record["metrics"]["test/mse"] < history[0]["train/mse"]


def test_resume_continues_from_last_checkpoint(tmp_path: Path):
    fit(_cfg(20), Regression, out_dir=tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=False)["state"]
    assert state["step"] == 20
    fit(_cfg(40), Regression, out_dir=tmp_path)
    steps = [json.loads(line)["step"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 40
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["step"] == 40


def test_resume_matches_uninterrupted_run(tmp_path: Path):
    a = fit(_cfg(40), Regression, out_dir=tmp_path / "a")
    fit(_cfg(20), Regression, out_dir=tmp_path / "b")
    b = fit(_cfg(40), Regression, out_dir=tmp_path / "b")
    assert b["test/mse"] == pytest.approx(a["test/mse"], rel=0.5)


class Exploding(Regression):
    def training_step(self, batch, step):
        loss, logs = super().training_step(batch, step)
        return loss * float("nan"), logs


def test_nan_loss_raises_not_silent(tmp_path: Path):
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit(_cfg(20), Exploding, out_dir=tmp_path)


class Diverging(Regression):
    def training_step(self, batch, step):
        loss, logs = super().training_step(batch, step)
        return loss * (1e12 if step >= 10 else 1.0), logs


def test_diverged_finite_loss_raises(tmp_path: Path):
    with pytest.raises(FloatingPointError, match="loss_limit"):
        fit(_cfg(20), Diverging, out_dir=tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["step"] == 10  # the last good one
    cfg = _cfg(20)
    cfg.trainer.loss_limit = None  # opt out: only non-finite losses stop the run
    fit(cfg, Diverging, out_dir=tmp_path / "off")


def test_wandb_offline_writes_files_without_network(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: any network use would fail
    fit(_cfg(10, logger="wandb"), Regression, out_dir=tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, list(tmp_path.rglob("*"))
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())


@pytest.mark.kernel_sensitive
def test_adam_is_fused_and_matches_the_reference_update():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    fast, ref = adam(list(a.parameters()), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2, foreach=False)
    assert fast.defaults["fused"]
    x = torch.randn(16, 5)
    for _ in range(5):
        for net, opt in ((a, fast), (b, ref)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    # the same float32 arithmetic in another order (one vectorised kernel against per-tensor ops): a few ulp
    # (~1e-7) apart after 5 steps; measured at most 0.6% of this tolerance on AVX-512, AVX2 and default kernels
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # a checkpoint of the per-tensor optimizer loads into the fused one (runs started before it resume)
    resumed = adam(list(a.parameters()), 1e-2)
    resumed.load_state_dict(ref.state_dict())
    resumed.step()


def test_lr_schedules():
    def run(schedule, steps=10, **kw):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = lr_scheduler(opt, schedule, steps, **kw)
        lrs = []
        for _ in range(steps):
            opt.step()
            if sched is not None:
                sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        return lrs

    assert run("constant") == [1.0] * 10
    cosine = run("cosine", lr_min=0.1)
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] == pytest.approx(0.1)
    assert run("step", decay_every=4, gamma=0.5) == pytest.approx([1.0] * 3 + [0.5] * 4 + [0.25] * 3)
    with pytest.raises(ValueError, match="constant, cosine, step"):
        run("linear")
    with pytest.raises(ValueError, match="decay_every"):
        run("step")


class InterruptedAt20(Regression):
    def training_step(self, batch, step):
        if step == 20:
            raise KeyboardInterrupt
        return super().training_step(batch, step)


def test_cosine_schedule_is_checkpointed_and_resumed(tmp_path: Path):
    cfg = _cfg(40)
    cfg.optim.schedule, cfg.optim.lr_min = "cosine", 0.005

    def lr_in_last():
        return torch.load(tmp_path / "last.pt", weights_only=False)["optimizer"]["param_groups"][0]["lr"]

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, InterruptedAt20, out_dir=tmp_path)
    assert lr_in_last() == pytest.approx(0.005 + (0.05 - 0.005) / 2)  # halfway down the cosine
    fit(cfg, Regression, out_dir=tmp_path)  # a fresh scheduler would be halfway again at step 40
    assert lr_in_last() == pytest.approx(0.005)


class FlushProbe(Regression):
    """Records, at every training step, whether subnormal floats are flushed to zero."""

    seen: list[bool] = []

    def training_step(self, batch, step):
        FlushProbe.seen.append(flush_denormal_enabled())
        return super().training_step(batch, step)


@pytest.mark.parametrize("enabled", [True, False])
def test_flush_denormal_holds_during_fit_and_is_restored(tmp_path: Path, enabled: bool):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    cfg = _cfg(10)
    cfg.trainer.flush_denormal = enabled
    FlushProbe.seen = []
    fit(cfg, FlushProbe, out_dir=tmp_path)
    assert FlushProbe.seen and all(seen == enabled for seen in FlushProbe.seen)
    assert not flush_denormal_enabled()
    with flush_denormal(True) as active:
        assert active and flush_denormal_enabled()
        with flush_denormal(False) as inner:
            assert not inner and not flush_denormal_enabled()
        assert flush_denormal_enabled()
    assert not flush_denormal_enabled()


def test_temperature_at_is_the_configured_tau_unless_the_task_anneals():
    cfg = _cfg(10)
    task = Regression(cfg, torch.device("cpu"))
    assert task.temperature_at(0) == task.temperature_at(10_000) == float(cfg.relaxation.tau)
    cfg.relaxation.tau = None
    assert Regression(cfg, torch.device("cpu")).temperature_at(5) is None
