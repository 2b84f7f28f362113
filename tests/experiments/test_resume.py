"""Resuming a run (issue 41, items 3, 4, 7, 8): the config must match, a damaged checkpoint is named with the way
out, each step is recorded once, and a resumed run sees the batches (and losses) of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.common.checkpoint import RESUMABLE_KEYS, config_differences
from experiments.common.data import TensorBatches
from experiments.common.errors import ResumeError
from experiments.common.task import Task
from experiments.common.trainer import fit
from tests.conftest import compose_cfg


class NoisyRegression(Task):
    """y = x @ w; shuffled batches from the run's generator and input noise from torch's global RNG, so that both
    sources of randomness must continue across a resume."""

    monitor = "valid/mse"
    interrupt_at: int | None = None

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(96, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.net = torch.nn.Linear(4, 1)

    def module(self) -> torch.nn.Module:
        return self.net

    def train_batches(self, generator):
        return iter(TensorBatches([self.x, self.y], 16, generator))

    def training_step(self, batch, step):
        if step == self.interrupt_at:
            raise KeyboardInterrupt  # as Ctrl-C between two steps
        x, y = batch
        loss = (self.net(x + 0.1 * torch.randn_like(x)).squeeze(-1) - y).pow(2).mean()
        return loss, {}

    def evaluate(self, split):
        return {f"{split}/mse": (self.net(self.x).squeeze(-1) - self.y).pow(2).mean()}


class InterruptedAt13(NoisyRegression):
    interrupt_at = 13


def _cfg(steps: int = 30, *overrides: str) -> DictConfig:
    cfg = compose_cfg([f"trainer.max_steps={steps}", "trainer.eval_every=10", "trainer.log_every=1", "logger=none",
                       "device=cpu", "trainer.progress=false", "optim.schedule=constant", "optim.lr=0.05",
                       *overrides])
    OmegaConf.set_struct(cfg, False)
    return cfg


def _history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def _train_losses(folder: Path) -> dict[int, float]:
    rows = [h for h in _history(folder) if "train/loss" in h]
    steps = [h["step"] for h in rows]
    assert len(steps) == len(set(steps)), f"steps logged twice: {steps}"
    return {h["step"]: h["train/loss"] for h in rows}


def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(tmp_path: Path, one_thread):
    fit(_cfg(), NoisyRegression, out_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(), InterruptedAt13, out_dir=tmp_path / "b")
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]["step"] == 13
    fit(_cfg(), NoisyRegression, out_dir=tmp_path / "b")
    a, b = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert sorted(b) == list(range(1, 31))
    assert [b[s] for s in sorted(b)] == pytest.approx([a[s] for s in sorted(a)], rel=1e-6, abs=0)


def test_resume_after_a_kill_drops_the_replayed_lines_of_history(tmp_path: Path, one_thread):
    fit(_cfg(20), NoisyRegression, out_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    with open(tmp_path / "history.jsonl", "a") as fh:  # as if killed at step 24, after its last checkpoint at 20
        for step in range(21, 25):
            fh.write(json.dumps({"step": step, "train/loss": 1.0}) + "\n")
    assert ckpt["state"]["step"] == 20
    fit(_cfg(30), NoisyRegression, out_dir=tmp_path)
    losses = _train_losses(tmp_path)
    assert sorted(losses) == list(range(1, 31)) and losses[21] != 1.0
    assert sum("test/mse" in h for h in _history(tmp_path)) == 1  # the 20-step run's final test line is gone


def test_resume_under_another_config_is_refused_naming_the_keys(tmp_path: Path, one_thread):
    fit(_cfg(10), NoisyRegression, out_dir=tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(ResumeError, match=r"optim\.lr: 0\.05 -> 0\.01.*seed: 0 -> 3") as err:
        fit(_cfg(20, "optim.lr=0.01", "seed=3"), NoisyRegression, out_dir=tmp_path)
    assert "trainer.resume=false" in str(err.value)
    assert (tmp_path / "last.pt").read_bytes() == before
    # only keys that may change on resume: it resumes
    fit(_cfg(20, "trainer.log_every=5", "trainer.eval_every=5", "device=auto", "logger.name=none"),
        NoisyRegression, out_dir=tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["step"] == 20
    # and trainer.resume=false starts again from step 0 under the new config
    fit(_cfg(10, "optim.lr=0.01", "trainer.resume=false"), NoisyRegression, out_dir=tmp_path)
    assert min(_train_losses(tmp_path)) == 1


def test_config_differences_ignore_only_the_resumable_keys():
    saved = {"trainer": {"max_steps": 10, "grad_clip": None, "compile": False}, "logger": {"name": "wandb"},
             "device": "cpu", "model": {"hidden": 8}}
    now = {"trainer": {"max_steps": 20, "grad_clip": 1.0, "tf32": True}, "logger": {"name": "none", "mode": "x"},
           "device": "cuda", "model": {"hidden": 8, "extra": 1}}
    assert [k for k, _, _ in config_differences(saved, now)] == ["model.extra", "trainer.grad_clip"]
    for key in ("trainer.max_steps", "trainer.eval_every", "trainer.log_every", "trainer.progress", "logger",
                "device", "trainer.max_minutes", "trainer.compile", "trainer.tf32"):
        assert key in RESUMABLE_KEYS


def test_corrupt_last_pt_names_the_file_and_the_way_out(tmp_path: Path, one_thread):
    fit(_cfg(10), NoisyRegression, out_dir=tmp_path)
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ResumeError, match="truncated or corrupt") as err:
        fit(_cfg(20), NoisyRegression, out_dir=tmp_path)
    assert str(path) in str(err.value) and "trainer.resume=false" in str(err.value) and "delete" in str(err.value)
    fit(_cfg(20, "trainer.resume=false"), NoisyRegression, out_dir=tmp_path)
    assert torch.load(path, weights_only=False)["state"]["step"] == 20


def test_partial_first_checkpoint_is_reported_not_silently_ignored(tmp_path: Path, capsys, one_thread):
    tmp_path.joinpath("last.pt.tmp").write_bytes(b"PK\x03\x04 cut short by SIGKILL")
    fit(_cfg(10), NoisyRegression, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert "last.pt.tmp" in out and "nothing to resume" in out and "step 0" in out
    assert not tmp_path.joinpath("last.pt.tmp").exists()


def test_record_keeps_training_and_process_time(tmp_path: Path, one_thread):
    fit(_cfg(10), NoisyRegression, out_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < record["wall_time_s"] <= record["process_time_s"]


def test_no_empty_run_log_in_run_folders():
    logging_cfg = compose_cfg(return_hydra_config=True).hydra.job_logging
    assert "file" not in logging_cfg.handlers and logging_cfg.root.handlers == ["console"]


@pytest.mark.usefixtures("fake_mnist")
def test_vae_resumed_run_continues_the_data_order(tmp_path: Path, one_thread):
    """The issue's case: a VAE run (dynamic binarisation, Gumbel noise) killed and resumed ends where its
    uninterrupted twin does, step for step."""
    from experiments.vae.task import VAETask

    class VAEInterruptedAt7(VAETask):
        def training_step(self, batch, step):
            if step == 7:
                raise KeyboardInterrupt
            return super().training_step(batch, step)

    cfg = _cfg(12, "experiment=vae", "model.hidden=[16,8]", "data.batch_size=20", "data.num_valid=50",
               "eval.iw_samples=2", "eval.artifacts=false", "trainer.eval_every=5", "optim.lr=1e-3")
    fit(cfg, VAETask, out_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, VAEInterruptedAt7, out_dir=tmp_path / "b")
    fit(cfg, VAETask, out_dir=tmp_path / "b")
    a, b = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert sorted(b) == list(range(1, 13))
    assert [b[s] for s in sorted(b)] == pytest.approx([a[s] for s in sorted(a)], rel=1e-6, abs=0)
