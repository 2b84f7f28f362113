"""NRI graph-layout data: the batched generator is networkx's algorithm; splits, trees, normalisation, cache."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from experiments.nri import data as D


def _random_trees(num: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = np.triu(rng.gumbel(size=(num, n, n)), 1)
    w = w + w.transpose(0, 2, 1)
    return w, D.max_spanning_tree(w)


def test_max_spanning_tree_matches_networkx():
    n = 10
    w, adj = _random_trees(20, n, seed=0)
    for b in range(len(w)):
        g = nx.Graph()
        g.add_weighted_edges_from((i, j, w[b, i, j]) for i in range(n) for j in range(i + 1, n))
        ref = nx.to_numpy_array(nx.maximum_spanning_tree(g), nodelist=range(n), weight=None)
        np.testing.assert_array_equal(adj[b], ref)


@pytest.mark.parametrize("n", [10, 6])
def test_batched_spring_layout_equals_networkx(n):
    """Each frame: networkx.spring_layout(G, pos=previous, iterations=1, threshold=1e-10, center=(0, 0))."""
    timesteps = 12
    _, adj = _random_trees(4, n, seed=n)
    init = np.random.default_rng(1).standard_normal((4, n, 2)) * np.array([1.0, 3.0])  # non-square extent
    ours = D.simulate(adj, init, timesteps)
    for b in range(len(adj)):
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from(zip(*np.nonzero(np.triu(adj[b]))))
        pos = {i: init[b, i] for i in range(n)}
        for t in range(timesteps):
            pos = nx.spring_layout(g, pos=pos, iterations=1, threshold=1e-10, center=(0, 0))
            ref = np.array([pos[i] for i in range(n)])
            np.testing.assert_allclose(ours[b, t], ref, atol=1e-6, rtol=0)


def test_generated_split_shapes_trees_and_reproducibility():
    n, t = 10, 10
    locs, trees = D.generate_split(64, n, t, seed=42, split="valid", progress=False)
    assert locs.shape == (64, t, n, 2) and locs.dtype == np.float32
    assert trees.shape == (64, n, n) and trees.dtype == np.uint8
    for a in trees:
        assert (a == a.T).all() and not np.diag(a).any() and a.sum() == 2 * (n - 1)
        assert nx.is_tree(nx.from_numpy_array(a))
    # every frame is a networkx layout with scale=1 around (0, 0): centred, max |coordinate| == 1
    np.testing.assert_allclose(np.abs(locs).max(axis=(2, 3)), 1.0, atol=1e-6)
    np.testing.assert_allclose(locs.mean(axis=2), 0.0, atol=1e-6)
    # a smaller set is a prefix of a larger one; T = 20 extends T = 10; splits differ
    small, small_trees = D.generate_split(16, n, t, seed=42, split="valid", progress=False)
    np.testing.assert_array_equal(small, locs[:16])
    np.testing.assert_array_equal(small_trees, trees[:16])
    longer, _ = D.generate_split(16, n, 20, seed=42, split="valid", progress=False)
    np.testing.assert_allclose(longer[:, :t], locs[:16], atol=1e-6)
    other, _ = D.generate_split(16, n, t, seed=42, split="test", progress=False)
    assert not np.allclose(other, small)


def test_trajectories_follow_their_tree():
    """The data carry the tree: adjacent vertices end up closer than non-adjacent ones on average."""
    locs, trees = D.generate_split(200, 10, 10, seed=0, split="train", progress=False)
    last = locs[:, -1].astype(np.float64)
    dist = np.linalg.norm(last[:, :, None] - last[:, None, :], axis=-1)
    off = ~np.eye(10, dtype=bool)
    assert dist[trees == 1].mean() < 0.6 * dist[(trees == 0) & off].mean()


def test_stored_tree_is_the_graph_that_was_simulated():
    """One spring-layout step from each stored frame under the stored tree gives the next stored frame (to the
    float32 storage precision); the complement graph or another simulation's tree does not."""
    n = 6
    locs, trees = D.generate_split(64, n, 10, seed=3, split="valid", progress=False)
    pos = locs.astype(np.float64)
    complement = (1 - trees) * (1 - np.eye(n, dtype=np.uint8))
    other = trees[np.roll(np.arange(64), 1)]

    def err(adj):
        return max(np.abs(D.spring_step(pos[:, t], adj) - pos[:, t + 1]).max() for t in range(9))

    assert err(trees) < 1e-5
    assert err(complement) > 0.1 and err(other) > 0.1


def test_load_normalises_with_training_min_max_and_caches(tmp_path):
    sizes = {"train": 48, "valid": 24, "test": 24}
    data = D.load_graph_layout(tmp_path, sizes, 10, 10, seed=7, progress=False)
    for split, num in sizes.items():
        assert data.locs[split].shape == (num, 10, 10, 2)
        assert data.trees[split].shape == (num, 10, 10)
    tr = data.locs["train"]
    assert tr.min() == pytest.approx(-1.0, abs=1e-6) and tr.max() == pytest.approx(1.0, abs=1e-6)
    raw, _ = D.generate_split(24, 10, 10, seed=7, split="test", progress=False)
    scale = 2.0 / (data.loc_max - data.loc_min)
    np.testing.assert_allclose(data.locs["test"], (raw - data.loc_min) * scale - 1.0, atol=1e-6)
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(files) == 3 and all("seed7" in f and "T10" in f for f in files)
    again = D.load_graph_layout(tmp_path, sizes, 10, 10, seed=7, progress=False)
    np.testing.assert_array_equal(again.locs["valid"], data.locs["valid"])
    assert again.generation_s == data.generation_s  # read back from the cache, not regenerated
    # a corrupt cache file is regenerated, not trusted
    path = D.cache_file(tmp_path, "test", 24, 10, 10, 7)
    path.write_bytes(b"not an npz")
    fixed = D.load_graph_layout(tmp_path, sizes, 10, 10, seed=7, progress=False)
    np.testing.assert_array_equal(fixed.locs["test"], data.locs["test"])
