"""trainer.tf32 = true | false | emulate: the emulated TF32 rounding is exact, reaches every product (forward and
backward) and nothing else, and the setting is validated and scoped to the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.common.config import ConfigError, tf32_setting, validate_config
from experiments.common.precision import EmulatedTF32, round_to_tf32, tf32_matmuls
from experiments.common.trainer import fit
from tests.conftest import compose_cfg
from tests.experiments.test_trainer import Regression, _cfg


def _reference(x: torch.Tensor) -> np.ndarray:
    """TF32 rounding by another route: 11 significant bits, half to even, in float64."""
    mantissa, exponent = np.frexp(x.numpy().astype(np.float64))
    return np.ldexp(np.round(mantissa * 2.0**11) / 2.0**11, exponent)


def test_round_to_tf32_matches_the_reference_and_keeps_special_values():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20000, generator=g) * 10.0 ** torch.randint(-30, 30, (20000,), generator=g),
                   torch.tensor([1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11), 2.0**-130, 0.0])])
    r = round_to_tf32(x)
    assert r.dtype == torch.float32
    np.testing.assert_array_equal(r.numpy().astype(np.float64), _reference(x))
    assert r[-5:-2].tolist() == [1.0, 1 + 4 * 2.0**-11, -1.0]  # ties to even
    assert (r.view(torch.int32) & 0x1FFF).eq(0).all()  # 10 explicit mantissa bits left
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), -float("nan"), 0.0, -0.0])
    out = round_to_tf32(special)
    assert out[:2].tolist() == [float("inf"), -float("inf")] and out[2:4].isnan().all()
    assert torch.equal(out[4:].view(torch.int32), special[4:].view(torch.int32))  # signed zeros kept
    x64 = torch.randn(5, dtype=torch.float64)
    assert round_to_tf32(x64) is x64  # TF32 concerns float32 only


@pytest.mark.kernel_sensitive
def test_emulation_rounds_the_operands_of_every_product_forward_and_backward():
    g = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(33, 17)
    x = torch.randn(9, 33, generator=g, requires_grad=True)
    with EmulatedTF32() as mode:
        y = lin(x)
        y.square().sum().backward()
    assert mode.calls == 3  # addmm forward; mm for the input's and the weight's gradient
    w, b = lin.weight.detach(), lin.bias.detach()
    tf = round_to_tf32
    # products of TF32 operands (11-bit significands) are exact in float32; only the order of the sums may differ
    # (addmm against mm + add, MKL's kernels), a few ulp of values ~1. Measured: the same bits on AVX-512, AVX2
    # (MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2) and default kernels
    torch.testing.assert_close(y.detach(), tf(x.detach()) @ tf(w).T + b, rtol=1e-6, atol=1e-6)
    grad_y = 2 * y.detach()
    torch.testing.assert_close(x.grad, tf(grad_y) @ tf(w), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lin.weight.grad, tf(grad_y).T @ tf(x.detach()), rtol=1e-6, atol=1e-6)
    # batched products, einsum and convolutions are rounded too; elementwise work and float64 are not
    a, c = torch.randn(3, 5, 7, generator=g), torch.randn(3, 7, 2, generator=g)
    with EmulatedTF32() as mode:
        ab = torch.einsum("bij,bjk->bik", a, c)
        conv = torch.nn.functional.conv1d(torch.ones(1, 1, 4) * (1 + 2.0**-12), torch.ones(1, 1, 1))
        s = (a * 1.0001).sum()
        d = a.double() @ c.double()
    assert mode.calls == 3
    torch.testing.assert_close(ab, tf(a) @ tf(c), rtol=1e-6, atol=1e-6)
    assert conv.eq(1.0).all() and s == (a * 1.0001).sum()
    torch.testing.assert_close(d, a.double() @ c.double(), rtol=0, atol=0)
    rel = ((ab - a @ c).norm() / (a @ c).norm()).item()
    assert 0 < rel < 2.0**-9


def test_tf32_setting_is_validated_and_scoped_to_the_run():
    assert [tf32_setting(v) for v in (True, False, "emulate", "TRUE")] == ["true", "false", "emulate", "true"]
    with pytest.raises(ConfigError, match="true, false, emulate"):
        tf32_setting("maybe")
    validate_config(compose_cfg(["trainer.tf32=emulate", "logger=none"]))
    with pytest.raises(ConfigError, match=r"trainer.tf32=emulate runs eagerly.*compile=auto or false"):
        validate_config(compose_cfg(["trainer.tf32=emulate", "trainer.compile=true", "logger=none"]))
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    with tf32_matmuls("emulate", torch.device("cuda")):  # real TF32 off, so the emulated rounding is the only one
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    with tf32_matmuls("emulate", torch.device("cpu")):
        x = torch.ones(2, 2) * (1 + 2.0**-12)
        assert (x @ x).eq(2.0).all()  # operands rounded to 1
    assert ((x @ x) > 2.0).all()  # and not after the block


def test_fit_with_emulated_tf32_runs_eagerly_close_to_float32(tmp_path):
    cfg = _cfg(20)
    exact = fit(cfg, Regression, tmp_path / "exact")
    cfg.trainer.tf32, cfg.trainer.compile = "emulate", "auto"
    emulated = fit(cfg, Regression, tmp_path / "emulated")
    tests = [k for k in exact if k.startswith("test/")]
    assert tests and all(emulated[k] == pytest.approx(exact[k], rel=1e-2, abs=1e-4) for k in tests)
    assert any(emulated[k] != exact[k] for k in tests)  # the rounding was in force
    record = json.loads((tmp_path / "emulated" / "metrics.json").read_text())
    assert record["config"]["trainer"]["tf32"] == "emulate" and not record["compile"]["enabled"]
