"""The README's library examples run as written, with the shapes their comments promise."""
from __future__ import annotations

import re
from pathlib import Path

import torch

import sst

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_block(after_heading: str) -> str:
    """The first ```python block after the README heading ``after_heading``."""
    text = README.read_text()
    start = text.index(after_heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {after_heading!r}"
    return match.group(1)


def test_the_one_line_examples_run_and_give_the_promised_shapes():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 6, 6, generator=gen)
    lengths = torch.randint(5, 51, (32, 1), generator=gen)  # every row has at least k=5 real positions
    scope = {"mask": torch.arange(50) < lengths, "chain_mask": torch.arange(50) < lengths[:8],
             "w_sym": w + w.transpose(-1, -2)}
    torch.manual_seed(0)
    exec(_python_block("## The library in one line per structure"), scope)
    theta, x, T, A, P, y, b = (scope[n] for n in ("theta", "x", "T", "A", "P", "y", "b"))
    assert theta.shape == (32, 50)
    assert x.shape == (8, 99)  # the last CorrelatedTopK line: unary and pairwise marginals
    torch.testing.assert_close(x[:, :50].sum(-1), torch.full((8,), 5.0))
    padding = ~scope["chain_mask"]
    torch.testing.assert_close(x[:, :50][padding], torch.zeros(int(padding.sum())))
    torch.testing.assert_close(T.sum((-1, -2)) / 2, torch.full((4,), 5.0))  # n - 1 edges of 6 vertices
    assert A.shape == (16, 6, 6) and P.shape == (4, 5, 5)
    torch.testing.assert_close(P.sum(-1), torch.ones(4, 5), atol=1e-3, rtol=0)
    torch.testing.assert_close(y.sum(-1), torch.ones(100, 20))
    assert b.shape == (100, 200) and bool(((b >= 0) & (b <= 1)).all())
    topk = sst.sample(sst.TopK(k=5), theta, tau=0.5)
    torch.testing.assert_close(topk.sum(-1), torch.full((32,), 5.0))


def test_the_estimator_example_runs_and_fills_the_gradient():
    logits = torch.randn(8, 20, 10, requires_grad=True)
    target = torch.randn(8, 20, 10)
    scope = {"sst": sst, "logits": logits, "x": target, "kl": torch.zeros(()),
             "f": lambda z, context=None: ((z - target.repeat(z.shape[0] // 8, 1, 1)) ** 2).sum((-1, -2))}
    exec(_python_block("### Gradient estimators behind one interface"), scope)
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    assert float(logits.grad.abs().sum()) > 0
