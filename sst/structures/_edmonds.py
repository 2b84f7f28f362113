"""Chu-Liu/Edmonds maximum spanning arborescence: one dense graph in NumPy (O(n^3)), or a batch in PyTorch."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["max_arborescence", "max_arborescence_batched"]


def _find_cycle(parent: np.ndarray, root: int) -> list[int] | None:
    n = len(parent)
    color = np.zeros(n, dtype=np.int64)  # 0 new, 1 on current path, 2 done
    for start in range(n):
        if color[start]:
            continue
        path = []
        v = start
        while v != root and color[v] == 0:
            color[v] = 1
            path.append(v)
            v = parent[v]
        if v != root and color[v] == 1:  # closed a cycle on the current path
            return path[path.index(v):]
        for u in path:
            color[u] = 2
    return None


def max_arborescence(w: np.ndarray, root: int) -> np.ndarray:
    """Parents ``(n,)`` of the maximum-weight arborescence rooted at ``root`` (``parent[root] = -1``).

    ``w[i, j]`` is the weight of edge i -> j; the diagonal and edges into the root are ignored.
    """
    n = w.shape[0]
    s = w.astype(np.float64, copy=True)
    np.fill_diagonal(s, -np.inf)
    s[:, root] = -np.inf
    if n == 1:
        return np.array([-1])
    parent = s.argmax(axis=0)
    parent[root] = -1
    cycle = _find_cycle(parent, root)
    if cycle is None:
        return parent
    in_cycle = np.zeros(n, dtype=bool)
    in_cycle[cycle] = True
    others = np.flatnonzero(~in_cycle)
    cyc = np.asarray(cycle)
    c = len(others)  # index of the contracted node
    w2 = np.full((c + 1, c + 1), -np.inf)
    w2[:c, :c] = s[np.ix_(others, others)]
    # u -> cycle: enter at the node v maximising s[u, v] - s[parent[v], v]
    gain = s[np.ix_(others, cyc)] - s[parent[cyc], cyc][None, :]
    enter = gain.argmax(axis=1)
    w2[:c, c] = gain[np.arange(c), enter]
    # cycle -> u: leave from the node v maximising s[v, u]
    out = s[np.ix_(cyc, others)]
    leave = out.argmax(axis=0)
    w2[c, :c] = out[leave, np.arange(c)]
    root2 = int(np.flatnonzero(others == root)[0])
    p2 = max_arborescence(w2, root2)
    result = parent.copy()
    for t, u in enumerate(others):
        if u == root:
            continue
        pu = p2[t]
        result[u] = cyc[leave[t]] if pu == c else others[pu]
    t_in = p2[c]  # the node (in others) the cycle is entered from
    result[cyc[enter[t_in]]] = others[t_in]
    return result


def _best_in_edges(s: Tensor, comp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each component's heaviest incoming edge from another component.

    Args:
        s: (B, n, n) float64 adjusted scores of the original edges u -> v, ``-inf`` for the edges that are absent
            (self loops, into the root) or inside a component.
        comp: (B, n) long, the component label of each original node (the smallest node index in it).

    Returns:
        best, src, dst: (B, n) each, indexed by label: the score of the heaviest edge ``src -> dst`` into the
        component (dst in it, src outside it; the first such dst); meaningless for non-labels and the root's label.
    """
    n = s.shape[-1]
    into, frm = s.max(dim=1)  # the best edge into each original node v: (B, n)
    best = torch.full_like(into, float("-inf")).scatter_reduce(1, comp, into, "amax")
    nodes = torch.arange(n, device=s.device)
    first = torch.where(into == best.gather(1, comp), nodes, n)
    dst = torch.full_like(comp, n).scatter_reduce(1, comp, first, "amin").clamp(max=n - 1)
    return best, frm.gather(1, dst), dst


def max_arborescence_batched(w: Tensor, root: int, sync_free: bool | None = None) -> Tensor:
    """Parents of the maximum-weight arborescences rooted at ``root``, Chu-Liu/Edmonds batched in PyTorch:
    ``(..., n, n) -> (..., n)`` long (``parent[root] = -1``) on ``w``'s device.

    ``w[..., i, j]`` is the weight of edge i -> j; the diagonal and edges into the root are ignored; ``-inf`` is an
    absent edge, used only where no arborescence avoids it (as :func:`max_arborescence`, whose contractions this
    follows: every cycle of the current best in-edges is contracted at once, with the entering edges' scores reduced
    by the best in-edge of the node they enter). The graph stays on its original nodes: a component label per node,
    one contraction round of O(n^2) tensor operations per level, at most ``n - 2`` rounds (each removes at least one
    component), then the choices are expanded top down (an edge entering a contracted cycle replaces the cycle edge
    into the node it enters). Solved in float64.

    Args:
        w: (..., n, n) floating weights.
        root: the root node, ``0 <= root < n``.
        sync_free: True: all ``n - 2`` rounds, no host sync (the device default). False: stop once no graph of the
            batch has a cycle left (one host check per round; the CPU default).
    """
    if sync_free is None:
        sync_free = w.device.type != "cpu"
    n = w.shape[-1]
    batch = w.shape[:-2]
    dev = w.device
    s = torch.nan_to_num(w.reshape(-1, n, n).to(torch.float64), nan=-1e300, posinf=1e300, neginf=-1e300)
    b = s.shape[0]
    nodes = torch.arange(n, device=dev)
    absent = nodes[:, None] == nodes[None, :]
    absent[:, root] = True
    s = s.masked_fill(absent, float("-inf"))
    comp = nodes.expand(b, n)
    levels: list[tuple[Tensor, Tensor, Tensor]] = []  # (comp, src, dst) of each level
    jumps = max(1, (n - 1).bit_length())  # 2**jumps >= n
    for _ in range(max(n - 2, 0)):
        best, src, dst = _best_in_edges(s, comp)
        levels.append((comp, src, dst))
        is_label = (comp == nodes) & (nodes != root)
        par = torch.where(is_label, comp.gather(1, src), nodes)  # label -> label of its best in-edge's source
        low, far = nodes.expand(b, n), par
        for _ in range(jumps):  # low: the smallest label within 2**jumps steps; far: par applied 2**jumps times
            low = torch.minimum(low, low.gather(1, far))
            far = far.gather(1, far)
        # after n steps every label is on a cycle or at a fixed point (the root, non-labels)
        cyclic = torch.zeros(b, n, dtype=torch.bool, device=dev).scatter_(1, far, True) & (par != nodes)
        shift = torch.where(cyclic, best, 0.0).gather(1, comp)  # by original node: its component's best in-edge
        s = s - shift[:, None, :]  # edges into a cycle node: their gain over the cycle edge
        comp = torch.where(cyclic, low, nodes).gather(1, comp)
        s = s.masked_fill(comp[:, :, None] == comp[:, None, :], float("-inf"))  # the cycles' inner edges
        if not sync_free and not bool(cyclic.any()):
            break
    best, src, dst = _best_in_edges(s, comp)
    # top down: the edge assigned to a component at level t + 1 goes to the level-t component it enters; the others
    # of a contracted cycle keep their own cycle edge
    up_comp = comp
    for comp_t, src_t, dst_t in reversed(levels):
        big = up_comp  # the level-(t+1) label of each level-t label (labels are node indices)
        s_up, d_up = src.gather(1, big), dst.gather(1, big)
        enters = comp_t.gather(1, d_up) == nodes
        src, dst = torch.where(enters, s_up, src_t), torch.where(enters, d_up, dst_t)
        up_comp = comp_t
    parent = torch.where(nodes == root, -1, src)
    return parent.reshape(*batch, n)
