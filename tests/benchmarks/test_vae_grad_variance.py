"""experiments.vae.gradvar and benchmarks/vae_grad_variance.py: the moments match the draws taken one by one, the
estimator's state is left alone, the bias is measured net of noise, and the script writes its study record."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from omegaconf import OmegaConf

from experiments.common.checkpoint import save_best
from experiments.vae import task as vtask
from experiments.vae.gradvar import encoder_gradient_moments
from sst.diagnostics import GradientMoments
from sst.estimators import tile
from tests.conftest import REPO, tiny_cfg

SCRIPT = REPO / "benchmarks" / "vae_grad_variance.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vae_grad_variance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _task(estimator: str, relaxation: str = "binary_concrete") -> vtask.VAETask:
    torch.manual_seed(0)
    cfg = tiny_cfg("vae", f"relaxation={relaxation}", f"estimator={estimator}", "model.hidden=[32,16]")
    return vtask.VAETask(cfg, torch.device("cpu"))


@pytest.mark.parametrize("estimator", ["relaxed", "nvil", "rebar"])
def test_moments_are_those_of_the_draws_one_by_one(fake_mnist, estimator):
    t = _task(estimator)
    x = t.eval_data["valid"][:8]
    params = list(t.model.encoder.parameters())
    before = {k: v.clone() for k, v in t.estimator.state_dict().items()}
    t.estimator.train()
    m = encoder_gradient_moments(t.model, t.structure, t.estimator, x, 5, generator=torch.Generator().manual_seed(3))
    assert t.estimator.training  # mode restored
    assert all(torch.equal(v, t.estimator.state_dict()[k]) for k, v in before.items())  # running stats untouched

    t.estimator.eval()
    gen, rows = torch.Generator().manual_seed(3), []
    for _ in range(5):
        logits = t.model.encode(x)
        out = t.estimator(t.structure, logits, lambda z: t.model.recon_nll(tile(x, z.shape[0]), z), context=x,
                          generator=gen)
        grads = torch.autograd.grad(out.loss + t.model.kl(logits).mean(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    draws = torch.stack(rows)
    assert m.draws == 5 and m.mean.shape == (sum(p.numel() for p in params),)
    torch.testing.assert_close(m.mean, draws.mean(0), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(m.var, draws.var(0), rtol=1e-6, atol=1e-9)
    s = m.summary()
    assert s["total_var"] > 0 and math.isclose(s["log10_total_var"], math.log10(s["total_var"]))
    assert math.isclose(s["snr"], s["mean_sq_norm"] / s["total_var"])


def test_bad_arguments(fake_mnist):
    t = _task("relaxed")
    x = t.eval_data["valid"][:4]
    with pytest.raises(ValueError, match="draws must be an integer >= 2"):
        encoder_gradient_moments(t.model, t.structure, t.estimator, x, 1)
    with pytest.raises(ValueError, match=r"x must be a \(B, pixels\) minibatch"):
        encoder_gradient_moments(t.model, t.structure, t.estimator, x[0], 3)
    with pytest.raises(ValueError, match="--also must name estimators without parameters of their own"):
        _script().main(["somewhere", "--also", "rebar"])
    with pytest.raises(ValueError, match="--splits must name some of train, valid"):
        _script().main(["somewhere", "--splits", "test"])
    with pytest.raises(ValueError, match="split must be one of train, valid"):
        _script().minibatch(t, "test", 4, 0)
    x1, x2 = _script().minibatch(t, "train", 4, 0), _script().minibatch(t, "train", 4, 0)
    assert x1.shape == (4, 784) and torch.equal(x1, x2) and set(x1.unique().tolist()) <= {0.0, 1.0}


def test_bias_is_net_of_the_draws_noise():
    s = _script()
    truth = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ||E g|| = 5
    exact = GradientMoments(draws=100, mean=truth.clone(), var=torch.zeros(2, dtype=torch.float64))
    ref, noise = s.pooled_mean([exact])
    assert torch.equal(ref, truth) and noise < 1e-200
    shifted = GradientMoments(draws=4, mean=truth + torch.tensor([0.0, 1.5], dtype=torch.float64),
                              var=torch.full((2,), 2.0, dtype=torch.float64))  # noise of its mean: 4 / 4 = 1
    assert math.isclose(s.relative_bias(shifted, truth, 0.0), math.sqrt(2.25 - 1.0) / 5)
    assert s.relative_bias(shifted, truth, 2.0) is None  # the noise explains the whole difference
    # pooling weighs by R / tr Cov
    a = GradientMoments(draws=10, mean=torch.tensor([1.0], dtype=torch.float64), var=torch.tensor([1.0]).double())
    b = GradientMoments(draws=10, mean=torch.tensor([4.0], dtype=torch.float64), var=torch.tensor([2.0]).double())
    ref, noise = s.pooled_mean([a, b])
    assert math.isclose(float(ref), (10 * 1.0 + 5 * 4.0) / 15) and math.isclose(noise, 1 / 15)


def test_script_writes_its_study_record_and_figure(fake_mnist, tmp_path: Path):
    runs = []
    for est in ("rebar", "reinforce", "nvil"):
        t = _task(est)
        run = tmp_path / f"vae_{est}"
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save(t.cfg, run / ".hydra" / "config.yaml")
        save_best(run, t.module(), 7, {"valid/neg_elbo": 1.0})
        runs.append(str(run))
    out, fig = tmp_path / "gv.json", tmp_path / "gv.png"
    _script().main([*runs, "--draws", "3", "--batch", "4", "--also", "relaxed,reinforce", "--splits", "train,valid",
                    "--out", str(out), "--plot", str(fig)])
    record = json.loads(out.read_text())
    assert record["schema"] == 1 and record["study"] == "grad_variance"
    assert [e["split"] for e in record["entries"]] == ["train", "valid"]
    entry = record["entries"][0]
    assert {"command", "commit", "hardware", "wall_time_s"} <= entry.keys()
    rebar, reinforce, nvil = entry["runs"]
    fit = nvil["nvil_baseline"]
    assert fit["samples"] == 200 and fit["signal_sq"] >= 0 and fit["floor_sq"] > 0 and "nvil_baseline" not in rebar
    assert math.isclose(fit["ratio"], fit["signal_sq"] / fit["floor_sq"])
    assert rebar["trained_with"] == "rebar" and rebar["step"] == 7 and rebar["batch"] == 4
    assert rebar["split"] == "train" and record["entries"][1]["runs"][0]["split"] == "valid"
    assert set(rebar["measured"]) == {"rebar", "relaxed", "reinforce"}
    assert set(reinforce["measured"]) == {"reinforce", "relaxed"}  # its own estimator once
    assert "rel_bias" in rebar["measured"]["relaxed"] and "rel_bias" not in rebar["measured"]["rebar"]
    assert all(v["total_var"] > 0 for r in entry["runs"] for v in r["measured"].values())
    assert fig.stat().st_size > 0
