"""A PNG of a few test trajectories with the true tree and the predicted one (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.nri.model import EdgeIndex


def plot_predictions(locs: np.ndarray, true_edges: np.ndarray, pred_edges: np.ndarray, index: EdgeIndex,
                     path: Path, title: str = "") -> Path:
    """Two rows per column: top, the trajectories (faint to dark over time) with the true tree drawn on the last
    frame; bottom, the last frame with the predicted edges (green: in the true tree, red: not).

    Args:
        locs: ``(K, T, n, 2)`` trajectories. true_edges, pred_edges: ``(K, M)`` 0/1 undirected edges.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iu, ju = index.iu.cpu().numpy(), index.ju.cpu().numpy()
    k, t, n, _ = locs.shape
    fig, axes = plt.subplots(2, k, figsize=(3.2 * k, 6.4), squeeze=False)
    colors = plt.cm.tab10(np.arange(n) % 10)
    for c in range(k):
        last = locs[c, -1]
        for row, edges, label in ((0, true_edges[c], "true tree"), (1, pred_edges[c], "predicted")):
            ax = axes[row, c]
            for v in range(n):
                ax.plot(locs[c, :, v, 0], locs[c, :, v, 1], "-", color=colors[v], alpha=0.35, lw=1)
                ax.scatter(locs[c, :, v, 0], locs[c, :, v, 1], s=6, color=colors[v],
                           alpha=np.linspace(0.15, 0.9, t))
            for e in np.nonzero(edges > 0.5)[0]:
                a, b = iu[e], ju[e]
                ok = row == 0 or true_edges[c, e] > 0.5
                ax.plot([last[a, 0], last[b, 0]], [last[a, 1], last[b, 1]], "-",
                        color="k" if row == 0 else ("tab:green" if ok else "tab:red"), lw=1.6)
            ax.scatter(last[:, 0], last[:, 1], s=30, color=colors, edgecolors="k", zorder=3)
            if row == 1:
                hits = int(((edges > 0.5) & (true_edges[c] > 0.5)).sum())
                label = f"predicted ({hits}/{int((true_edges[c] > 0.5).sum())} correct)"
            ax.set_title(f"test {c}: {label}", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
