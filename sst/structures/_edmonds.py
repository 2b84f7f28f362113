"""Chu-Liu/Edmonds maximum spanning arborescence of one dense graph (NumPy, O(n^3))."""

from __future__ import annotations

import numpy as np

__all__ = ["max_arborescence"]


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
