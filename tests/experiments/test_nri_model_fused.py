"""The NRI encoder's per-node edge products and the decoder's fused message passing against plain formulas.

The references below are the released model written out directly (edge inputs as concatenations of gathered
vertex states, one message MLP per edge type, messages summed into receivers with ``index_add``); the model must
give the same values and gradients (float32: 1e-5 relative to each tensor's largest entry; float64: 1e-12), keep
its parameter names and shapes (checkpoints of the earlier model load), and train the real task to the same
losses over 30 steps.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.nri.model import MLP, Decoder, Encoder, NRIModel, _Messages, messages

N, T, B = 10, 10, 4


# ------------------------------------------------------------------------------------------------ references
def ref_mlp(m: MLP, x: Tensor) -> Tensor:
    y = F.elu(m.fc2(F.elu(m.fc1(x))))
    return m.bn(y.reshape(-1, y.shape[-1])).view(y.shape)


def ref_encoder(enc: Encoder, locs: Tensor) -> Tensor:
    """``(B, T, n, D)`` -> ``(B, E)`` or ``(B, E, 2)``: NRI's factor-graph MLP encoder, edges (receiver, sender)."""
    idx = enc.index
    b, t, n, d = locs.shape
    x = ref_mlp(enc.mlp1, locs.permute(0, 2, 1, 3).reshape(b, n, t * d))
    x = ref_mlp(enc.mlp2, torch.cat([x[:, idx.send], x[:, idx.recv]], dim=-1))
    skip = x
    nodes = torch.zeros(b, n, x.shape[-1], dtype=x.dtype).index_add(1, idx.recv, x) / n
    x = ref_mlp(enc.mlp3, nodes)
    x = ref_mlp(enc.mlp4, torch.cat([x[:, idx.send], x[:, idx.recv], skip], dim=-1))
    y = enc.fc_out(x)
    return y.squeeze(-1) if enc.out == 1 else y


def ref_step(dec: Decoder, x: Tensor, edges: Tensor) -> Tensor:
    """One step ``(B, S, n, D)`` -> ``(B, S, n, D)`` with directed edge weights ``(B, E)``."""
    idx = dec.index
    pre = torch.cat([x[:, :, idx.send], x[:, :, idx.recv]], dim=-1)  # (B, S, E, 2D)
    weights = ([1.0 - edges, edges] if dec.edge_types == 2 else [edges])[dec.first:]
    hidden = F.relu(dec.msg_fc1(pre)).split(dec.hidden, dim=-1)
    agg = torch.zeros(*x.shape[:-1], dec.hidden, dtype=x.dtype)
    for k, fc2 in enumerate(dec.msg_fc2):
        msg = F.relu(fc2(hidden[k])) * weights[k][:, None, :, None]
        agg = agg.index_add(2, idx.recv, msg)
    out = F.relu(dec.out_fc2(F.relu(dec.out_fc1(torch.cat([x, agg], dim=-1)))))
    return x + dec.out_fc3(out)


def ref_decoder(dec: Decoder, locs: Tensor, edges: Tensor, pred_steps: int = 1) -> Tensor:
    """Frames 1..T-1, a Python loop over time: teacher forcing at every multiple of ``pred_steps``."""
    preds, cur = [], None
    for t in range(locs.shape[1] - 1):
        if t % pred_steps == 0:
            cur = locs[:, t:t + 1]
        cur = ref_step(dec, cur, edges)
        preds.append(cur[:, 0])
    return torch.stack(preds, 1)


def _close(got: Tensor, want: Tensor, rtol: float) -> None:
    scale = want.abs().max().clamp_min(1e-30)
    err = ((got - want).abs().max() / scale).item()
    assert err <= rtol, f"max |diff| / max |ref| = {err:.3g} > {rtol:g}"


# fused against the plain formulas: other orders of the same sums. Measured at most 0.24 of TOL (the encoder's,
# ATEN_CPU_CAPABILITY=default), 0.08 of the training losses' 1e-5, on AVX-512, AVX2 and default kernels
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _grads_of(model: torch.nn.Module, out: Tensor, g: Tensor, *inputs: Tensor) -> list[Tensor]:
    model.zero_grad(set_to_none=True)
    grads = torch.autograd.grad(out, [*inputs, *model.parameters()], g, allow_unused=True)
    return [torch.zeros(()) if x is None else x for x in grads]


# ------------------------------------------------------------------------------------------------ decoder
@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pred_steps,edge_types,skip_first", [(1, 2, False), (9, 2, False), (3, 2, True),
                                                               (1, 1, False), (1, 2, True)])
def test_decoder_matches_reference(one_thread, dtype, pred_steps, edge_types, skip_first):
    torch.manual_seed(0)
    m = NRIModel(N, T, encoder_hidden=16, decoder_hidden=24, edge_types=edge_types, skip_first=skip_first).to(dtype)
    locs = torch.randn(B, T, N, 2, dtype=dtype)
    edges = torch.rand(B, N * (N - 1), dtype=dtype, requires_grad=True)
    g = torch.randn(B, T - 1, N, 2, dtype=dtype)
    out = m.decoder(locs, edges, pred_steps)
    ref = ref_decoder(m.decoder, locs, edges, pred_steps)
    _close(out, ref, TOL[dtype])
    for a, b in zip(_grads_of(m.decoder, out, g, edges), _grads_of(m.decoder, ref, g, edges), strict=True):
        _close(a, b, TOL[dtype])


def test_decoder_step_api_and_eval(one_thread):
    """``step`` with ``message_weights`` is one step of the reference; no_grad/eval give the same values."""
    torch.manual_seed(1)
    m = NRIModel(N, T, encoder_hidden=16, decoder_hidden=16).eval()
    x, edges = torch.randn(B, 3, N, 2), torch.rand(B, N * (N - 1))
    with torch.no_grad():
        _close(m.decoder.step(x, m.decoder.message_weights(edges)), ref_step(m.decoder, x, edges), 1e-5)


def test_decoder_dropout_path(one_thread):
    """With dropout the decoder trains through :func:`messages` (autograd); in eval it is the plain model."""
    torch.manual_seed(2)
    m = NRIModel(N, T, encoder_hidden=16, decoder_hidden=16, decoder_dropout=0.5)
    locs, edges = torch.randn(B, T, N, 2), torch.rand(B, N * (N - 1), requires_grad=True)
    out = m.decoder(locs, edges, 1)
    out.square().sum().backward()
    assert torch.isfinite(edges.grad).all() and edges.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        _close(m.decoder(locs, edges, 1), ref_decoder(m.decoder, locs, edges, 1), 1e-5)


@pytest.mark.kernel_sensitive
def test_messages_function_gradients():
    """:class:`_Messages` (hand-written backward) against :func:`messages` (autograd): values, gradcheck,
    double backward (REBAR/RELAX's create_graph), and a second backward through a retained graph."""
    torch.manual_seed(3)
    b, n, s, d, h, u = 2, 4, 3, 2, 5, 2
    dt = torch.float64
    args = (torch.randn(b, n * (n - 1), s, 2 * d, dtype=dt), torch.rand(u, b, n, n - 1, dtype=dt),
            torch.randn(u * h, 2 * d, dtype=dt), torch.randn(u * h, dtype=dt), torch.randn(u, h, h, dtype=dt),
            torch.randn(u, h, dtype=dt))
    args = tuple(a.requires_grad_(True) for a in args)
    assert torch.allclose(_Messages.apply(*args), messages(*args), rtol=1e-13, atol=0)
    # gradcheck's reentrancy check runs each backward twice: MKL's products may differ in the last bit with the
    # buffers' alignment (no MKL_CBWR), measured up to 1.8e-15 (AVX-512) and 5.3e-15 (MKL_ENABLE_INSTRUCTIONS=AVX2)
    # on entries up to 79 (ulp 1.4e-14), so the default 0 held on one CPU only; 1e-12 ~ 70 ulp
    assert torch.autograd.gradcheck(_Messages.apply, args, nondet_tol=1e-12)
    assert torch.autograd.gradgradcheck(_Messages.apply, args, nondet_tol=1e-12)
    g = torch.randn(b, n, s, h, dtype=dt)
    want = torch.autograd.grad(messages(*args), args, g)
    out = _Messages.apply(*args)
    first = torch.autograd.grad(out, args, g, retain_graph=True)
    second = torch.autograd.grad(out, args, g)
    for a, b_, c in zip(want, first, second, strict=True):
        assert torch.allclose(a, b_, rtol=1e-12, atol=1e-14) and torch.allclose(a, c, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------ encoder
@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logits_per_edge", [1, 2])
def test_encoder_matches_reference(one_thread, dtype, logits_per_edge):
    torch.manual_seed(4)
    m = NRIModel(N, T, encoder_hidden=24, decoder_hidden=16, logits_per_edge=logits_per_edge).to(dtype)
    locs = torch.randn(B, T, N, 2, dtype=dtype, requires_grad=True)
    out = m.encoder(locs)
    ref = ref_encoder(m.encoder, locs)
    _close(out, ref, TOL[dtype])
    g = torch.randn_like(out)
    for a, b in zip(_grads_of(m.encoder, out, g, locs), _grads_of(m.encoder, ref, g, locs), strict=True):
        _close(a, b, TOL[dtype])


# ------------------------------------------------------------------------------------------------ checkpoints
def test_parameter_names_and_shapes_unchanged():
    """Checkpoints of the earlier model (per-type ``msg_fc2`` list, fused ``msg_fc1``) load as they are."""
    h, he = 64, 32
    m = NRIModel(N, T, encoder_hidden=he, decoder_hidden=h, logits_per_edge=2)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    want_decoder = {"msg_fc1.weight": (2 * h, 4), "msg_fc1.bias": (2 * h,), "msg_fc2.0.weight": (h, h),
                    "msg_fc2.0.bias": (h,), "msg_fc2.1.weight": (h, h), "msg_fc2.1.bias": (h,),
                    "out_fc1.weight": (h, 2 + h), "out_fc1.bias": (h,), "out_fc2.weight": (h, h),
                    "out_fc2.bias": (h,), "out_fc3.weight": (2, h), "out_fc3.bias": (2,)}
    assert {k[len("decoder."):]: v for k, v in shapes.items() if k.startswith("decoder.")} == want_decoder
    ins = {"mlp1": T * 2, "mlp2": 2 * he, "mlp3": he, "mlp4": 3 * he}
    for name, n_in in ins.items():
        assert shapes[f"encoder.{name}.fc1.weight"] == (he, n_in)
        assert shapes[f"encoder.{name}.fc2.weight"] == (he, he)
        assert shapes[f"encoder.{name}.bn.running_mean"] == (he,)
    assert shapes["encoder.fc_out.weight"] == (2, he)
    assert len([k for k in shapes if k.startswith("encoder.")]) == 4 * 9 + 2


# ------------------------------------------------------------------------------------------------ training
def _train_losses(cfg, reference: bool, steps: int) -> list[float]:
    from experiments.common.runtime import seed_everything
    from experiments.common.trainer import TrainStep, batch_generator
    from experiments.nri.task import NRITask

    seed_everything(int(cfg.seed))
    task = NRITask(cfg, torch.device("cpu"))
    if reference:  # the same weights, the plain formulas
        model = copy.deepcopy(task.model)
        model.encoder.forward = types.MethodType(ref_encoder, model.encoder)
        model.decoder.forward = types.MethodType(ref_decoder, model.decoder)
        task.model = model
    module = task.module()
    module.train()
    opt, sched = task.configure_optimizers()
    step = TrainStep(task, module, opt, sched, cfg.trainer.get("grad_clip"))
    batches = task.train_batches(batch_generator(int(cfg.seed), 0))
    torch.manual_seed(123)
    return [float(step(next(batches), i)[0].detach()) for i in range(steps)]


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("relaxation", ["spanning_tree", "ef_topk_fd", "indep"])
def test_training_losses_match_reference(one_thread, tmp_path_factory, monkeypatch, relaxation):
    """30 steps of the real task at the CPU-scale settings (10 vertices, T = 10, 64 hidden units, batch 32,
    one-step prediction; tiny data sets): the losses of the model and of the plain formulas agree to 1e-5."""
    pytest.importorskip("sst")
    from tests.conftest import compose_cfg

    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nri_cache"))
    cfg = compose_cfg(["experiment=nri", f"relaxation={relaxation}", "logger=none", "device=cpu",
                       "data.num_train=256", "data.num_valid=128", "data.num_test=128", "data.batch_size=32",
                       "model.encoder_hidden=64", "model.decoder_hidden=64", "model.prediction_steps=1",
                       "trainer.progress=false"])
    new, ref = _train_losses(cfg, False, 30), _train_losses(cfg, True, 30)
    assert len(new) == 30 and all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(new, ref, strict=True)), \
        max(abs(a - b) / abs(b) for a, b in zip(new, ref, strict=True))
