"""The batched PyTorch hard solvers (Permutation's Hungarian, Arborescence's Chu-Liu/Edmonds) against SciPy / the
NumPy solver: random and tied weights, batch 1 to 512, n up to 50, both loop modes; the SciPy-less Permutation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import sst
from sst.structures._assignment import max_assignment
from sst.structures._edmonds import max_arborescence, max_arborescence_batched

try:
    from scipy.optimize import linear_sum_assignment as _LSA  # bound now: some tests hide SciPy
except ImportError:  # pragma: no cover
    _LSA = None

CASES = [(1, 1), (3, 2), (5, 3), (16, 7), (512, 10), (64, 20), (512, 50)]


def _weights(kind: str, b: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(b, n, n, generator=gen, dtype=torch.float64)
    if kind == "tied":  # many optimal solutions
        return torch.randint(0, 3, (b, n, n), generator=gen).to(torch.float64)
    return torch.zeros(b, n, n, dtype=torch.float64)


def _lsa_value(w: torch.Tensor) -> np.ndarray:
    if _LSA is None:
        pytest.skip("needs SciPy for the reference values")
    out = []
    for m in w.reshape(-1, w.shape[-1], w.shape[-1]).double().numpy():
        r, c = _LSA(m, maximize=True)
        out.append(m[r, c].sum())
    return np.array(out)


def _assignment_value(w: torch.Tensor, cols: torch.Tensor) -> np.ndarray:
    n = w.shape[-1]
    w, cols = w.reshape(-1, n, n).double(), cols.reshape(-1, n)
    assert torch.equal(cols.sort(dim=-1).values, torch.arange(n).expand_as(cols))  # permutations
    return w.gather(2, cols[:, :, None]).sum(dim=(1, 2)).numpy()


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("kind", ["random", "tied", "zeros"])
@pytest.mark.parametrize("b,n", CASES)
def test_assignment_matches_scipy(b, n, kind, sync_free):
    if sync_free and n == 50 and b > 64:
        b = 64  # the fixed-length loop is the slow one on a CPU
    w = _weights(kind, b, n, seed=1000 * n + b)
    cols = max_assignment(w, sync_free=sync_free)
    assert cols.shape == (b, n) and cols.dtype == torch.long
    np.testing.assert_allclose(_assignment_value(w, cols), _lsa_value(w), rtol=1e-12, atol=1e-12)


def test_assignment_batch_shape_empty_and_huge():
    w = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cols = max_assignment(w)
    assert cols.shape == (2, 3, 6)
    np.testing.assert_allclose(_assignment_value(w, cols), _lsa_value(w), rtol=1e-12)
    assert max_assignment(torch.randn(0, 4, 4)).shape == (0, 4)
    assert max_assignment(torch.randn(0, 5, 4, 4)).shape == (0, 5, 4)
    # weights near the float64 limit: scaled by a power of two inside, so the potentials cannot overflow
    huge = max_assignment(w * 2.0**1020)
    np.testing.assert_allclose(_assignment_value(w, huge), _lsa_value(w), rtol=1e-12)


@pytest.fixture
def no_scipy(monkeypatch):
    """SciPy absent: ``from scipy.optimize import ...`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError):
        from scipy.optimize import linear_sum_assignment  # noqa: F401


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_permutation_argmax_without_scipy(no_scipy, dtype):
    w = torch.randn(40, 8, 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    x = sst.Permutation().argmax(w)
    assert x.dtype == dtype and x.shape == w.shape
    assert torch.equal(x.sum(-1), torch.ones(40, 8, dtype=dtype)) and torch.equal(x.sum(-2), x.sum(-1))
    value = (w.double() * x.double()).sum(dim=(-2, -1)).numpy()
    np.testing.assert_allclose(value, _lsa_value(w.double()), rtol=1e-12)


def test_permutation_sample_hard_and_empty_without_scipy(no_scipy):
    S = sst.Permutation()
    theta = torch.randn(6, 5, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    x = sst.sample(S, theta, 1.0, hard=True, generator=torch.Generator().manual_seed(9))
    assert set(x.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x.detach().sum(-1), torch.ones(6, 5)) and torch.equal(x.detach().sum(-2), torch.ones(6, 5))
    x.sum().backward()  # straight-through: the relaxed sample's gradient
    assert theta.grad is not None
    assert S.argmax(torch.randn(0, 3, 3)).shape == (0, 3, 3)
    assert sst.sample(S, torch.randn(0, 3, 3), 1.0, hard=True).shape == (0, 3, 3)


def test_permutation_unchecked_infinities_as_the_scipy_path(no_scipy):
    """With checks off, NaN / +-inf reach the solver: both paths read them as -+1e300 (a permutation avoiding -inf
    where one exists)."""
    w = torch.randn(20, 5, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    w[:, 0, :4] = float("-inf")
    w[:, 1, 2] = float("nan")
    w[:, 3, 1] = float("inf")
    with sst.checks(False):
        x = sst.Permutation().argmax(w)
    assert not x[:, 0, :4].any() and x[:, 3, 1].all() and torch.equal(x.sum(-2), torch.ones(20, 5, dtype=w.dtype))


def test_permutation_argmax_paths_agree():
    """With SciPy on the CPU the SciPy path runs; both give optimal permutations of the same value."""
    pytest.importorskip("scipy")
    w = _weights("tied", 50, 9, seed=11).float()
    x = sst.Permutation().argmax(w)
    cols = max_assignment(w)
    torch.testing.assert_close((w * x).sum(dim=(-2, -1)).double(),
                               torch.from_numpy(_assignment_value(w, cols)), rtol=0, atol=0)


# Arborescence -----------------------------------------------------------------------------------------------------

def _is_arborescence(parent: np.ndarray, root: int) -> bool:
    n = len(parent)
    if parent[root] != -1:
        return False
    for v in range(n):
        for _ in range(n):
            if v == root:
                break
            v = parent[v]
        if v != root:
            return False
    return True


def _tree_value(m: np.ndarray, parent: np.ndarray, root: int) -> float:
    return float(sum(m[parent[v], v] for v in range(len(parent)) if v != root))


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("kind", ["random", "tied", "zeros", "absent"])
@pytest.mark.parametrize("b,n", [(1, 1), (3, 2), (5, 3), (16, 6), (512, 10), (32, 20), (64, 50)])
def test_arborescence_matches_numpy(b, n, kind, sync_free):
    if sync_free and n == 50:
        b = 16
    w = _weights("random" if kind == "absent" else kind, b, n, seed=77 * n + b)
    if kind == "absent":  # -inf: absent edges, taken only where every arborescence needs one
        w[torch.rand(b, n, n, generator=torch.Generator().manual_seed(n)) < 0.6] = float("-inf")
    root = (b + n) % n
    parent = max_arborescence_batched(w, root, sync_free=sync_free)
    assert parent.shape == (b, n) and parent.dtype == torch.long
    flat = np.nan_to_num(w.numpy(), neginf=-1e300)
    for m, p in zip(flat, parent.numpy()):
        assert _is_arborescence(p, root)
        ref = _tree_value(m, max_arborescence(m, root), root)
        assert _tree_value(m, p, root) == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_arborescence_batched_shapes():
    w = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    assert max_arborescence_batched(w, 2).shape == (2, 3, 5)
    assert max_arborescence_batched(torch.randn(0, 5, 5), 0).shape == (0, 5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_arborescence_batched_dtypes(dtype):
    w = torch.randn(30, 7, 7, generator=torch.Generator().manual_seed(4)).to(dtype)
    parent = max_arborescence_batched(w, 0)
    m64 = w.double().numpy()
    for m, p in zip(m64, parent.numpy()):
        assert _is_arborescence(p, 0)
        assert _tree_value(m, p, 0) == pytest.approx(_tree_value(m, max_arborescence(m, 0), 0), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_arborescence_device_path_on_cpu(dtype):
    """The device path of Arborescence.argmax (batched PyTorch), run on CPU tensors: the same trees' values as the
    NumPy path, 0/1 matrices of w's dtype with one parent per non-root node."""
    S = sst.Arborescence(root=-1)
    w = _weights("tied", 64, 6, seed=8).to(dtype)
    x = S._argmax_batched(w)
    assert x.dtype == dtype and x.shape == w.shape
    assert torch.equal(x.sum(-2)[:, :-1], torch.ones(64, 5, dtype=dtype)) and not x[..., -1].any()
    torch.testing.assert_close(S.score(w.double(), x.double()), S.score(w.double(), S.argmax(w).double()),
                               rtol=0, atol=0)
    assert S._argmax_batched(torch.randn(0, 4, 4)).shape == (0, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("S", [sst.Permutation(), sst.Arborescence(root=1)], ids=repr)
def test_device_argmax_matches_cpu(S):
    """On a device the batched PyTorch solvers run (no host round trip); values equal the CPU solvers'."""
    w = _weights("tied", 128, 12, seed=3).float()
    x_dev = S.argmax(w.cuda())
    assert x_dev.device.type == "cuda" and x_dev.dtype == torch.float32
    x_cpu = S.argmax(w)
    torch.testing.assert_close(S.score(w, x_dev.cpu()), S.score(w, x_cpu), rtol=0, atol=0)
    hard = sst.sample(S, torch.randn(0, 4, 4, device="cuda"), 1.0, hard=True)
    assert hard.shape == (0, 4, 4) and hard.device.type == "cuda"
