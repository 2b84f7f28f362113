"""NRI encoder/decoder shapes and layouts, the losses, and the three edge distributions."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.nri.model import EdgeIndex, NRIModel, gaussian_nll, gumbel_kl

N, T, B = 10, 10, 3


@pytest.fixture(scope="module")
def model() -> NRIModel:
    torch.manual_seed(0)
    return NRIModel(N, T, encoder_hidden=32, decoder_hidden=32).eval()


def test_edge_index_layouts():
    idx = EdgeIndex(5)
    assert idx.num_directed == 20 and idx.num_undirected == 10
    # directed edges into vertex i are the contiguous block [i(n-1), (i+1)(n-1))
    assert torch.equal(idx.recv, torch.arange(5).repeat_interleave(4))
    assert not (idx.recv == idx.send).any()
    x = torch.randn(2, 10)
    a = idx.to_matrix(x)
    assert torch.equal(a, a.transpose(-1, -2)) and not a.diagonal(dim1=-2, dim2=-1).any()
    assert torch.equal(idx.from_matrix(a), x)
    d = idx.to_directed(x)
    assert torch.equal(d, a[:, idx.recv, idx.send])
    logits = torch.randn(2, 20)
    m = torch.zeros(2, 5, 5)
    m[:, idx.recv, idx.send] = logits
    assert torch.allclose(idx.symmetrise(logits), idx.from_matrix(0.5 * (m + m.transpose(-1, -2))))


def test_encoder_shapes_and_symmetrised_logits(model):
    locs = torch.randn(B, T, N, 2)
    logits = model.encoder(locs)
    assert logits.shape == (B, N * (N - 1))
    u = model.edge_logits(locs)
    assert u.shape == (B, N * (N - 1) // 2)
    assert torch.allclose(u, model.index.symmetrise(logits))
    # relabelling the vertices permutes the logits accordingly (message passing is equivariant)
    perm = torch.randperm(N)
    u_perm = model.edge_logits(locs[:, :, perm])
    a, a_perm = model.index.to_matrix(u), model.index.to_matrix(u_perm)
    assert torch.allclose(a[:, perm][:, :, perm], a_perm, atol=1e-5)


@pytest.mark.parametrize("timesteps,pred_steps", [(10, 9), (20, 10), (10, 1), (20, 3)])
def test_decoder_shapes_and_teacher_forcing(timesteps, pred_steps):
    torch.manual_seed(1)
    m = NRIModel(N, timesteps, encoder_hidden=16, decoder_hidden=16).eval()
    locs = torch.randn(B, timesteps, N, 2)
    x = torch.rand(B, N * (N - 1) // 2)
    edges = m.index.to_directed(x)
    out = m.decoder(locs, edges, pred_steps)
    assert out.shape == (B, timesteps - 1, N, 2)
    rel = m.decoder.message_weights(edges)
    # reference: a Python loop over starts and steps, teacher forcing at every multiple of pred_steps
    ref, cur = [], None
    for t in range(timesteps - 1):
        if t % pred_steps == 0:
            cur = locs[:, t:t + 1]
        cur = m.decoder.step(cur, rel)
        ref.append(cur[:, 0])
    assert torch.allclose(out, torch.stack(ref, 1), atol=1e-5)


def test_decoder_uses_the_edges():
    torch.manual_seed(2)
    m = NRIModel(N, T, encoder_hidden=16, decoder_hidden=16).eval()
    locs = torch.randn(B, T, N, 2)
    zeros, ones = torch.zeros(B, N * (N - 1)), torch.ones(B, N * (N - 1))
    assert not torch.allclose(m.decoder(locs, zeros, 1), m.decoder(locs, ones, 1))


def test_losses():
    preds, target = torch.zeros(2, 9, N, 2), torch.ones(2, 9, N, 2)
    assert torch.allclose(gaussian_nll(preds, target, 5e-5), torch.full((2,), 9 * N * 2 / (2 * 5e-5) / N))
    u = torch.tensor([[0.0, 1.0, -2.0]])
    expect = (0.0 + (1 + math.exp(-1) - 1) + (-2 + math.exp(2) - 1)) / N
    assert torch.allclose(gumbel_kl(u, N), torch.tensor([expect]))
    assert gumbel_kl(torch.zeros(1, 45), N).item() == 0.0


@pytest.mark.parametrize("relaxation", ["indep", "indep_sym", "ef_topk", "ef_topk_fd", "spanning_tree"])
def test_edge_distributions(relaxation):
    import networkx as nx

    sst = pytest.importorskip("sst")
    if not all(hasattr(sst, name) for name in ("Binary", "TopK", "SpanningTree")):
        pytest.skip("sst structures not available yet")
    from experiments.nri.edges import edge_counts, edge_distribution

    idx = EdgeIndex(N)
    dist = edge_distribution(relaxation, idx, tau=5.0, max_range=15.0)
    shape = (B, idx.num_directed, 2) if relaxation == "indep" else (B, idx.num_undirected)
    u = (3 * torch.randn(*shape)).requires_grad_(True)
    x = dist.relaxed(u)
    assert x.shape == shape[:2] and dist.to_directed(x).shape == (B, idx.num_directed)
    assert torch.isfinite(x).all() and (x >= -1e-6).all() and (x <= 1 + 1e-6).all()
    binary = relaxation in ("indep", "indep_sym")
    x.sum().backward() if binary else (x * torch.randn_like(x)).sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    h = dist.hard(u.detach())
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    if not binary:
        assert torch.allclose(x.sum(-1), torch.full((B,), N - 1.0), atol=1e-3)
        assert (h.sum(-1) == N - 1).all()
    if relaxation == "spanning_tree":
        for row in h:
            assert nx.is_tree(nx.from_numpy_array(idx.to_matrix(row).numpy()))
    prec, rec = edge_counts(h, h)
    assert torch.allclose(prec, torch.ones(B)) and torch.allclose(rec, torch.ones(B))
