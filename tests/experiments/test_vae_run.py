"""The VAE experiment end to end: every estimator for a few steps on fake data, and a 20-step run.py run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.vae import task as vtask
from tests.conftest import tiny_cfg

REPO = Path(__file__).resolve().parents[2]
ESTIMATORS = ["relaxed", "straight_through", "reinforce", "nvil", "muprop", "rebar", "relax"]


def _cfg(relaxation: str, estimator: str, *extra: str):
    return tiny_cfg("vae", f"relaxation={relaxation}", f"estimator={estimator}", *extra)


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "binary_concrete"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_trains(fake_mnist, relaxation, estimator):
    torch.manual_seed(0)
    cfg = _cfg(relaxation, estimator, "model.hidden=[32,16]")
    t = vtask.VAETask(cfg, torch.device("cpu"))
    event = (20, 10) if relaxation == "gumbel_softmax" else (200,)
    assert t.model.event_shape == event
    names = {n for n, _ in t.module().named_parameters()}
    assert any(n.startswith("model.") for n in names)
    if estimator in ("nvil", "rebar", "relax"):  # the estimator's own parameters are optimised and saved
        assert any(n.startswith("estimator.") for n in names)
    opt, _ = t.configure_optimizers()
    opt_params = {id(p) for group in opt.param_groups for p in group["params"]}
    assert all(id(p) in opt_params for p in t.module().parameters() if p.requires_grad)
    batches = iter(t.train_batches(torch.Generator().manual_seed(1)))
    before = [p.detach().clone() for p in t.model.parameters()]
    for step in range(2):
        x = next(batches)
        assert x.shape == (16, 784) and set(x.unique().tolist()) <= {0.0, 1.0}
        loss, logs = t.training_step(x, step)
        assert loss.dim() == 0 and math.isfinite(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    t.module().eval()
    with torch.no_grad():
        m = t.evaluate("test")
    assert set(m) >= {"test/neg_elbo", "test/iw_neg_elbo"}
    assert all(math.isfinite(v) for v in m.values())
    assert m["test/iw_neg_elbo"] < m["test/neg_elbo"] + 20  # noisy with 4 samples; a sanity check only
    with torch.no_grad():
        assert "test/iw_neg_elbo" not in t.evaluate("valid") and "valid/neg_elbo" in t.evaluate("valid")


def test_xavier_init_is_glorot_uniform_with_zero_biases(fake_mnist):
    torch.manual_seed(0)
    t = vtask.VAETask(_cfg("binary_concrete", "relaxed", "model.init=xavier"), torch.device("cpu"))
    linears = [m for m in t.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert torch.count_nonzero(layer.bias) == 0
    assert t.record_extras()["init"] == "xavier"
    plain = vtask.VAETask(_cfg("binary_concrete", "relaxed"), torch.device("cpu"))
    assert "init" not in plain.record_extras()
    assert all(torch.count_nonzero(m.bias) > 0 for m in plain.model.modules() if isinstance(m, torch.nn.Linear))
    with pytest.raises(ValueError, match="init must be one of torch, xavier"):
        vtask.DiscreteVAE(init="glorot")


def test_annealing_sets_estimator_temperature(fake_mnist):
    cfg = _cfg("gumbel_softmax", "straight_through", "anneal.rate=1e-3", "anneal.every=10", "anneal.tau_min=0.3")
    t = vtask.VAETask(cfg, torch.device("cpu"))
    assert t.set_temperature(0) == 1.0 and t.estimator.tau == 1.0
    assert t.set_temperature(25) == pytest.approx(math.exp(-0.02)) and t.estimator.tau == pytest.approx(math.exp(-0.02))
    assert t.set_temperature(10**6) == 0.3


def test_kl_warmup_weighs_the_training_kl_only(fake_mnist):
    t = vtask.VAETask(_cfg("binary_concrete", "relaxed", "model.hidden=[32,16]", "anneal.kl_warmup=100"),
                      torch.device("cpu"))
    assert [t.kl_weight(s) for s in (0, 25, 100, 10**6)] == [0.0, 0.25, 1.0, 1.0]
    x = next(iter(t.train_batches(torch.Generator().manual_seed(1))))
    for step, beta in ((0, 0.0), (25, 0.25), (500, 1.0)):
        torch.manual_seed(3)
        loss, logs = t.training_step(x, step)
        # the relaxed estimator's loss is the mean reconstruction term; the KL enters with the weight
        assert loss.item() == pytest.approx(logs["train/recon"].item() + beta * logs["train/kl"].item(), rel=1e-5)
        assert logs["train/kl_weight"].item() == beta and logs["train/kl"].item() > 0
        assert logs["train/neg_elbo"].item() == pytest.approx((logs["train/recon"] + logs["train/kl"]).item())
    assert t.record_extras()["kl_warmup"] == 100
    plain = vtask.VAETask(_cfg("binary_concrete", "relaxed", "model.hidden=[32,16]"), torch.device("cpu"))
    assert plain.kl_weight(0) == 1.0 and "kl_warmup" not in plain.record_extras()
    with pytest.raises(ValueError, match="anneal.kl_warmup"):
        vtask.VAETask(_cfg("binary_concrete", "relaxed", "anneal.kl_warmup=-5"), torch.device("cpu"))

def test_grey_mode_trains_on_grey_levels(fake_mnist):
    t = vtask.VAETask(_cfg("binary_concrete", "relaxed", "model.hidden=[32,16]", "data.binarize=grey"),
                      torch.device("cpu"))
    x = next(iter(t.train_batches(torch.Generator().manual_seed(1))))
    assert x.shape == (16, 784) and 0.0 <= x.min() and x.max() <= 1.0
    assert not set(x.unique().tolist()) <= {0.0, 1.0}  # unbinarised
    assert torch.equal(t.eval_data["test"], t.eval_data["test"].clamp(0, 1))
    loss, _ = t.training_step(x, 0)
    assert math.isfinite(loss.item())
    with torch.no_grad():
        assert math.isfinite(t.evaluate("test")["test/neg_elbo"])


def test_bad_binarize_mode(fake_mnist):
    with pytest.raises(ValueError, match="data.binarize"):
        vtask.VAETask(_cfg("gumbel_softmax", "relaxed", "data.binarize=otsu"), torch.device("cpu"))


def test_run_py_20_steps(tmp_path):
    """The issue's command (shrunk eval sets), on the staged MNIST files."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "run.py", "experiment=vae", "relaxation=gumbel_softmax", "trainer.max_steps=20",
           "trainer.eval_every=10", "logger=none", "device=cpu", f"hydra.run.dir={tmp_path}",
           "data.limit_eval=100", "trainer.progress=false"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"] == "vae" and record["relaxation"] == "gumbel_softmax"
    assert record["estimator"] == "relaxed" and record["latent"] == "categorical 20x10"
    m = record["metrics"]
    assert 100 < m["test/neg_elbo"] < 600 and 100 < m["test/iw_neg_elbo"] < 600
    assert record["curve"]["step"] == [10, 20] and len(record["curve"]["valid/neg_elbo"]) == 2
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    assert (tmp_path / "prior_samples.png").stat().st_size > 0
    assert (tmp_path / "best.pt").is_file()
