"""Every estimator under ``torch.compile`` (as the trainer compiles a training step) gives eager mode's losses,
gradients (logits and the estimator's own parameters) and running statistics, in training mode, over steps that
update those statistics. On the CPU with ``fallback_random`` the noise is torch's, so the two must agree to float
rounding."""

from __future__ import annotations

import pytest
import torch

import sst
import sst.estimators as E

CASES = [
    ("relaxed", {}),
    ("straight_through", {}),
    ("reinforce", {"baseline": "ema"}),
    ("reinforce", {"baseline": "loo", "num_samples": 2}),
    ("nvil", {"context_dim": 4, "normalize": False}),
    ("nvil", {"context_dim": 4, "normalize": True}),
    ("muprop", {"baseline": "ema"}),
    ("rebar", {}),
    ("relax", {"event_shape": (5,), "hidden": 8}),
]
STEPS = 3


def _run(name: str, opts: dict, compiled: bool) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    ctx, w, target = torch.randn(6, 4), torch.randn(6, 5), torch.rand(5)
    est = E.build(name, **opts)
    if name in ("rebar", "relax"):
        with torch.no_grad():  # away from the zero-initialised network, so that its gradient is not trivial
            for p in est.parameters():
                p.add_(0.1 * torch.randn_like(p))

    def step(logits: torch.Tensor) -> torch.Tensor:
        return est(sst.Binary(), logits, lambda z: ((z - target) ** 2).sum(-1) * 10.0, context=ctx).loss

    fn = torch.compile(step, options={"fallback_random": True}) if compiled else step
    out = []
    for s in range(STEPS):
        logits = w.clone().requires_grad_(True)
        torch.manual_seed(100 + s)
        loss = fn(logits)
        loss.backward()
        out.append({"loss": loss.detach(), "logits.grad": logits.grad,
                    **{f"{k}.grad": p.grad.clone() for k, p in est.named_parameters() if p.grad is not None},
                    **{k: b.clone() for k, b in est.named_buffers()}})
        est.zero_grad()
    return out


@pytest.mark.parametrize("name, opts", CASES, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_compiled_estimator_matches_eager(name, opts, one_thread):
    torch._dynamo.reset()
    eager, compiled = _run(name, opts, False), _run(name, opts, True)
    for s, (e, c) in enumerate(zip(eager, compiled)):
        assert e.keys() == c.keys()
        for key in e:
            torch.testing.assert_close(c[key], e[key], rtol=1e-5, atol=1e-5,
                                       msg=lambda m, s=s, key=key: f"step {s}, {key}: {m}")
