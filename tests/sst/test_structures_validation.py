"""Bad input raises ValueError naming the argument; sst.checks(False) skips the value checks; no device names."""

from __future__ import annotations

import pathlib

import pytest
import torch

import sst


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        sst.TopK(k)
    with pytest.raises(ValueError, match="k"):
        sst.CorrelatedTopK(k)


def test_k_larger_than_n():
    with pytest.raises(ValueError, match=r"k=5 must be <= n"):
        sst.TopK(5).relax(torch.randn(2, 3), 1.0)
    with pytest.raises(ValueError, match=r"k=5 must be <= n"):
        sst.TopK(5).argmax(torch.randn(3))
    with pytest.raises(ValueError, match=r"k=4 must be <= n=3"):
        sst.CorrelatedTopK(4).relax(torch.randn(5), 1.0)


def test_wrong_last_dimension():
    with pytest.raises(ValueError, match="last dimension of w must be 2n - 1"):
        sst.CorrelatedTopK(2).relax(torch.randn(3, 6), 1.0)
    for S in (sst.SpanningTree(), sst.Arborescence(), sst.Permutation()):
        with pytest.raises(ValueError, match="w must be square"):
            S.relax(torch.randn(3, 4), 1.0)
        with pytest.raises(ValueError, match="theta must be square"):
            S.perturb(torch.randn(3, 4))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        sst.Categorical().relax(torch.tensor(1.0), 1.0)


def test_non_symmetric_spanning_tree_weights():
    w = torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match="w must be symmetric"):
        sst.SpanningTree().relax(w, 1.0)
    with pytest.raises(ValueError, match="w must be symmetric"):
        sst.SpanningTree().argmax(w)
    with sst.checks(False):  # skipped: the input is symmetrised
        x = sst.SpanningTree().relax(w, 1.0)
    torch.testing.assert_close(x, sst.SpanningTree().relax(0.5 * (w + w.mT), 1.0))


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), "a", torch.tensor([0.5, -1.0])])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        sst.TopK(2).relax(torch.randn(4), tau)
    with pytest.raises(ValueError, match="tau"):
        sst.sample(sst.Categorical(), torch.randn(4), tau=tau)


def test_tensor_tau_broadcasts():
    w = torch.randn(3, 5)
    tau = torch.tensor([[0.5], [1.0], [2.0]])
    torch.testing.assert_close(sst.Categorical().relax(w, tau), torch.softmax(w / tau, -1))


@pytest.mark.parametrize("S,shape", [(sst.Categorical(), (3,)), (sst.TopK(1), (3,)), (sst.CorrelatedTopK(1), (3,)),
                                     (sst.SpanningTree(), (3, 3)), (sst.Arborescence(), (3, 3)),
                                     (sst.Permutation(), (3, 3)), (sst.Binary(), (3,))])
def test_nan_in_w(S, shape):
    w = torch.zeros(shape)
    w[..., 0] = float("nan")
    with pytest.raises(ValueError, match="w contains NaN"):
        S.relax(w, 1.0)
    with pytest.raises(ValueError, match="w contains NaN"):
        S.argmax(w)
    with sst.checks(False):
        S.argmax(w)  # no check, no error (garbage in, garbage out)
    assert sst.validation.checks_enabled()


def test_unknown_regularizer_lists_legal_ones():
    with pytest.raises(ValueError, match="regularizer must be one of 'exp_family_entropy', 'euclidean'"):
        sst.TopK(2).relax(torch.randn(4), 1.0, "entropy")
    with pytest.raises(ValueError, match="'entropy', 'euclidean'"):
        sst.sample(sst.Categorical(), torch.randn(4), regularizer="sparsemax")


def test_non_float_weights():
    with pytest.raises(ValueError, match="floating-point"):
        sst.TopK(1).relax(torch.ones(3, dtype=torch.long), 1.0)


def test_arborescence_root_out_of_range():
    with pytest.raises(ValueError, match="root=5"):
        sst.Arborescence(root=5).relax(torch.randn(3, 3), 1.0)


def test_checks_context_is_scoped():
    assert sst.validation.checks_enabled()
    with sst.checks(False):
        assert not sst.validation.checks_enabled()
        with sst.checks(True):
            assert sst.validation.checks_enabled()
        assert not sst.validation.checks_enabled()
    assert sst.validation.checks_enabled()


def test_no_device_names_in_library_source():
    root = pathlib.Path(sst.__file__).parent
    files = [root / "noise.py", root / "sample.py", root / "validation.py", *sorted((root / "structures").glob("*.py"))]
    for f in files:
        assert "cuda" not in f.read_text(), f


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_device_kept():
    for S, w in [(sst.TopK(3), torch.randn(4, 10)), (sst.CorrelatedTopK(2), torch.randn(4, 9)),
                 (sst.SpanningTree(), torch.randn(4, 5, 5)), (sst.Categorical(), torch.randn(4, 5))]:
        w = w.cuda()
        if isinstance(S, sst.SpanningTree):
            w = w + w.mT
        for out in (S.relax(w, 0.5), S.argmax(w), sst.sample(S, w, 0.5, hard=True)):
            assert out.device == w.device and out.dtype == w.dtype
