"""The L2X aroma table as a figure: subset precision and MSE against k, ours beside the paper's, per relaxation.

    python scripts/plot_l2x.py                                   # results/l2x/*.json -> results/l2x/table.png
    python scripts/plot_l2x.py --results results --out fig.png
    python scripts/plot_l2x.py --w2v-epochs 5 -o results/l2x/table_w2v5.png   # the previous default embeddings

Ours: solid lines, the mean over seeds (error bars: one standard deviation when there are several); the paper's:
dashed, with its reported standard deviations. The MSE panel plots our ``test/mse_heldout_aspect_file`` (MSE on
held-out reviews of the aspect-1 file, the paper's kind of test review; ``test/mse`` on the annotated reviews is
not comparable, see the README). Records marked ``"table": false`` are left out, and only the runs on the chosen
word2vec embeddings (``--w2v-epochs``, default the current default's) are plotted, as in make_tables.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_tables import L2X_KS, L2X_ROWS, L2X_W2V_EPOCHS, PAPER_L2X, REPO, l2x_groups, load_records  # noqa: E402

MSE_METRIC = "test/mse_heldout_aspect_file"


def paper_value(cell: str) -> tuple[float, float]:
    """'63.1±5.3' -> (63.1, 5.3)."""
    mean, sd = cell.split("±")
    return float(mean), float(sd)


def series(records: list[dict], aspect: int = 1,
           w2v_epochs: int = L2X_W2V_EPOCHS) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    """{relaxation: {"precision"|"mse"|"paper_precision"|"paper_mse": [(k, mean, sd), ...]}}, in % and MSE x100;
    our entries only where a record on word2vec embeddings of ``w2v_epochs`` exists."""
    groups = l2x_groups(records, w2v_epochs)
    out: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    for rel, _ in L2X_ROWS:
        s: dict[str, list[tuple[int, float, float]]] = {"precision": [], "mse": [], "paper_precision": [],
                                                        "paper_mse": []}
        for k in L2X_KS:
            ms = groups.get((rel, k, aspect), [])
            for key, metric in (("precision", "test/subset_precision"), ("mse", MSE_METRIC)):
                vals = [100 * m[metric] for m in ms if metric in m]
                if vals:
                    s[key].append((k, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0))
            pm, pp = PAPER_L2X[rel][k]
            s["paper_mse"].append((k, *paper_value(pm)))
            s["paper_precision"].append((k, *paper_value(pp)))
        out[rel] = s
    return out


def plot(records: list[dict], out: Path, aspect: int = 1, w2v_epochs: int = L2X_W2V_EPOCHS) -> Path:
    """Write the two-panel figure to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(records, aspect, w2v_epochs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for i, (rel, label) in enumerate(L2X_ROWS):
        for ax, key, ylabel in ((axes[0], "precision", "subset precision (%)"),
                                (axes[1], "mse", "MSE x100 (held-out aspect-1 reviews)")):
            for kind, style in ((key, "-o"), ("paper_" + key, "--")):
                pts = data[rel][kind]
                if not pts:
                    continue
                ks, mean, sd = zip(*pts)
                ax.errorbar(ks, mean, yerr=sd, fmt=style, color=colors(i), capsize=3, alpha=1.0 if kind == key
                            else 0.5, label=label if kind == key or not data[rel][key] else None)
            ax.set_xlabel("k (words selected)")
            ax.set_ylabel(ylabel)
            ax.set_xticks(list(L2X_KS))
    axes[0].set_title(f"Subset precision (solid: ours, word2vec {w2v_epochs} epochs; dashed: paper)", fontsize=10)
    axes[1].set_title("Aroma-score MSE (solid: ours, dashed: paper)")
    axes[0].legend(fontsize=8, loc="best")
    return save_figure(fig, out)


def save_figure(fig, out: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    """Lay ``fig`` out tightly within ``rect`` (figure fractions: left, bottom, right, top; room outside it for a
    figure legend), write it to ``out`` (folders made as needed) at 120 dpi, close it, return ``out``."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "results" / "l2x", help="folder of JSON records")
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("--w2v-epochs", type=int, default=L2X_W2V_EPOCHS,
                    help="runs on word2vec embeddings of this many epochs (default: the current default's)")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "results" / "l2x" / "table.png")
    args = ap.parse_args(argv)
    print(plot(load_records([args.results]), args.out, args.aspect, args.w2v_epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
