"""Graph-layout trajectories with a latent spanning tree (PROTOCOLS.md section 1), generated in batch.

The reference procedure (Paulus et al.'s released generator) draws one tree per simulation with a Python
Kruskal over i.i.d. Gumbel edge weights and then calls ``networkx.spring_layout(G, pos=pos, iterations=1,
threshold=1e-10, center=(0, 0))`` once per frame. Here the same computation runs on all simulations of a chunk
at once:

* tree: the maximum spanning tree of the complete graph under i.i.d. Gumbel(0, 1) weights, by a batched Prim
  (n steps of (batch, n) array work). With continuous i.i.d. weights the maximum spanning tree is unique almost
  surely, so Prim and Kruskal return the same tree and the distribution over trees is the reference one.
* one frame: exactly networkx's ``_fruchterman_reingold`` with ``iterations=1`` followed by ``rescale_layout``
  (see :func:`spring_step`), in float64 as networkx computes it.

``threshold`` plays no role with ``iterations=1``: networkx checks it only after the (single) update, to decide
whether to stop the loop early, so every frame is exactly one update.

Stored layout: positions ``(N, T, n, 2)`` float32 (raw, as networkx returns them), trees ``(N, n, n)`` uint8
symmetric 0/1 adjacency with zero diagonal. Training-time normalisation to [-1, 1] uses the training split's
global min and max (one scalar each, as the released code does).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")
_SPLIT_ID = {"train": 0, "valid": 1, "test": 2}
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------------------


def max_spanning_tree(weights: np.ndarray) -> np.ndarray:
    """Maximum spanning trees of complete graphs by batched Prim's algorithm.

    Args:
        weights: ``(B, n, n)`` symmetric edge weights (diagonal ignored), distinct off-diagonal values.

    Returns:
        ``(B, n, n)`` uint8 symmetric adjacency matrices with ``n - 1`` edges each.
    """
    b, n, _ = weights.shape
    rows = np.arange(b)
    in_tree = np.zeros((b, n), dtype=bool)
    in_tree[:, 0] = True
    best = weights[:, 0, :].astype(np.float64, copy=True)  # best weight linking each vertex to the tree
    parent = np.zeros((b, n), dtype=np.int64)
    adj = np.zeros((b, n, n), dtype=np.uint8)
    for _ in range(n - 1):
        cand = np.where(in_tree, -np.inf, best)
        v = cand.argmax(axis=1)
        p = parent[rows, v]
        adj[rows, v, p] = 1
        adj[rows, p, v] = 1
        in_tree[rows, v] = True
        w_v = weights[rows, v, :]
        better = (w_v > best) & ~in_tree
        best = np.where(better, w_v, best)
        parent = np.where(better, v[:, None], parent)
    return adj


def spring_step(pos: np.ndarray, adj: np.ndarray) -> np.ndarray:
    """One ``networkx.spring_layout(G, pos=pos, iterations=1, center=(0, 0))`` frame, batched.

    Mirrors ``networkx.drawing.layout._fruchterman_reingold`` (one iteration, no fixed nodes, k = 1/sqrt(n),
    temperature t = 0.1 * the larger side of the bounding box, distances clipped below at 0.01, displacement
    lengths clipped below at 0.01) followed by ``rescale_layout(pos, scale=1) + center``: subtract the mean
    and divide by the largest absolute coordinate (when positive).

    Args:
        pos: ``(B, n, 2)`` float64 positions.
        adj: ``(B, n, n)`` 0/1 adjacency (the graph's unweighted edges).

    Returns:
        ``(B, n, 2)`` float64 positions of the next frame.
    """
    n = pos.shape[1]
    a = adj.astype(pos.dtype, copy=False)
    k = np.sqrt(1.0 / n)
    x, y = pos[..., 0], pos[..., 1]  # coordinates apart: cheaper than norms over a trailing axis of 2
    t = 0.1 * np.maximum(x.max(1) - x.min(1), y.max(1) - y.min(1))  # (B,) initial temperature
    dx = x[:, :, None] - x[:, None, :]  # (B, n, n): delta[i, j] = pos[i] - pos[j]
    dy = y[:, :, None] - y[:, None, :]
    distance = np.sqrt(dx * dx + dy * dy)
    np.maximum(distance, 0.01, out=distance)
    force = k * k / (distance * distance) - a * distance / k
    disp_x = (dx * force).sum(2)
    disp_y = (dy * force).sum(2)
    length = np.sqrt(disp_x * disp_x + disp_y * disp_y)
    np.maximum(length, 0.01, out=length)
    step = t[:, None] / length
    x = x + disp_x * step
    y = y + disp_y * step
    x = x - x.mean(1, keepdims=True)  # rescale_layout: centre, then divide by the largest |coordinate|
    y = y - y.mean(1, keepdims=True)
    lim = np.maximum(np.abs(x).max(1), np.abs(y).max(1))
    scale = np.where(lim > 0, 1.0 / np.where(lim > 0, lim, 1.0), 1.0)[:, None]
    return np.stack([x * scale, y * scale], axis=-1)


def simulate(adj: np.ndarray, init_pos: np.ndarray, timesteps: int) -> np.ndarray:
    """``timesteps`` recorded spring-layout frames from ``init_pos`` (the initial positions are not recorded).

    Args:
        adj: ``(B, n, n)`` adjacency. init_pos: ``(B, n, 2)``.

    Returns:
        ``(B, T, n, 2)`` float64 positions.
    """
    pos = np.asarray(init_pos, dtype=np.float64)
    frames = []
    for _ in range(timesteps):
        pos = spring_step(pos, adj)
        frames.append(pos)
    return np.stack(frames, axis=1)


def split_rngs(seed: int, split: str) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent streams per split (trees, initial positions): a split's simulations do not depend on
    the other splits' sizes, and a smaller set is a prefix of a larger one with the same seed."""
    sid = _SPLIT_ID[split]
    return (np.random.default_rng([seed, sid, 0]), np.random.default_rng([seed, sid, 1]))


def generate_split(num: int, num_vertices: int, timesteps: int, seed: int, split: str,
                   chunk: int = 5000, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``num`` simulations of one split.

    Returns:
        positions ``(num, T, n, 2)`` float32 and trees ``(num, n, n)`` uint8.
    """
    from tqdm.auto import tqdm

    n = num_vertices
    rng_tree, rng_pos = split_rngs(seed, split)
    iu = np.triu_indices(n, k=1)
    locs = np.empty((num, timesteps, n, 2), dtype=np.float32)
    trees = np.empty((num, n, n), dtype=np.uint8)
    with tqdm(total=num, desc=f"nri data {split} (T={timesteps})", disable=not progress, unit="sim") as bar:
        for start in range(0, num, chunk):
            b = min(chunk, num - start)
            g = rng_tree.gumbel(size=(b, iu[0].size))
            w = np.zeros((b, n, n))
            w[:, iu[0], iu[1]] = g
            w[:, iu[1], iu[0]] = g
            adj = max_spanning_tree(w)
            init = rng_pos.standard_normal((b, n, 2))
            locs[start:start + b] = simulate(adj, init, timesteps)
            trees[start:start + b] = adj
            bar.update(b)
    return locs, trees


# ----------------------------------------------------------------------------------------------------------
# The reference procedure (one networkx call per frame), for tests and the benchmark
# ----------------------------------------------------------------------------------------------------------


def networkx_trajectory(adj: np.ndarray, init_pos: np.ndarray, timesteps: int,
                        threshold: float = 1e-10) -> np.ndarray:
    """The reference: ``networkx.spring_layout(G, pos=..., iterations=1, threshold=..., center=(0, 0))`` per
    frame on one graph, as Paulus et al.'s generator does. Returns ``(T, n, 2)`` float64."""
    import networkx as nx

    n = adj.shape[0]
    g = nx.Graph()
    g.add_edges_from(zip(*np.nonzero(adj)))
    pos = {i: np.asarray(init_pos[i], dtype=np.float64) for i in range(n)}
    frames = []
    for _ in range(timesteps):
        pos = nx.spring_layout(g, pos=pos, iterations=1, threshold=threshold, center=(0, 0))
        frames.append([pos[i] for i in range(n)])
    return np.asarray(frames, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# Cache and loading
# ----------------------------------------------------------------------------------------------------------


@dataclass
class GraphLayoutData:
    """Normalised splits. ``locs[split]``: ``(N, T, n, 2)`` float32 in [-1, 1] (train); ``trees[split]``:
    ``(N, n, n)`` uint8. ``loc_min``/``loc_max``: the training split's raw min and max."""

    locs: dict[str, np.ndarray]
    trees: dict[str, np.ndarray]
    loc_min: float
    loc_max: float
    generation_s: dict[str, float]
    files: dict[str, str]


def cache_file(folder: Path, split: str, num: int, num_vertices: int, timesteps: int, seed: int) -> Path:
    key = f"nri_layout_v{FORMAT_VERSION}_n{num_vertices}_T{timesteps}_seed{seed}_{split}{num}"
    return Path(folder) / f"{key}.npz"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def load_or_generate_split(folder: Path, split: str, num: int, num_vertices: int, timesteps: int, seed: int,
                           progress: bool = True) -> tuple[np.ndarray, np.ndarray, float, Path]:
    """Load a cached split, or generate and cache it. Returns (locs, trees, generation seconds, file)."""
    path = cache_file(folder, split, num, num_vertices, timesteps, seed)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                locs, trees = z["locs"], z["trees"]
                meta = json.loads(str(z["meta"]))
            if meta.get("sha256") != _digest({"locs": locs, "trees": trees}):
                raise ValueError("checksum mismatch")
            return locs, trees, float(meta.get("generation_s", 0.0)), path
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
            print(f"[nri] cached file {path} is unreadable or corrupt ({err}); regenerating it")
    t0 = time.perf_counter()
    locs, trees = generate_split(num, num_vertices, timesteps, seed, split, progress=progress)
    elapsed = time.perf_counter() - t0
    meta = {"sha256": _digest({"locs": locs, "trees": trees}), "generation_s": elapsed, "split": split,
            "num": num, "num_vertices": num_vertices, "timesteps": timesteps, "seed": seed,
            "format_version": FORMAT_VERSION}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npz")  # concurrent runs: no clash
    np.savez(tmp, locs=locs, trees=trees, meta=np.array(json.dumps(meta)))
    tmp.replace(path)
    return locs, trees, elapsed, path


def load_graph_layout(folder: Path, sizes: dict[str, int], num_vertices: int, timesteps: int, seed: int,
                      progress: bool = True) -> GraphLayoutData:
    """All three splits, normalised to [-1, 1] with the training split's min and max."""
    raw, trees, gen_s, files = {}, {}, {}, {}
    for split in SPLITS:
        raw[split], trees[split], gen_s[split], path = load_or_generate_split(
            folder, split, int(sizes[split]), num_vertices, timesteps, seed, progress)
        files[split] = str(path)
    lo, hi = float(raw["train"].min()), float(raw["train"].max())
    scale = 2.0 / (hi - lo)
    locs = {s: ((raw[s] - lo) * scale - 1.0).astype(np.float32) for s in SPLITS}
    return GraphLayoutData(locs=locs, trees=trees, loc_min=lo, loc_max=hi, generation_s=gen_s, files=files)
