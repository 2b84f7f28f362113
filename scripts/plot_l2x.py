"""The L2X aroma table as a figure: subset precision and MSE against k, ours beside the paper's, per relaxation.

    python scripts/plot_l2x.py                                   # results/l2x/*.json -> results/l2x/table.png
    python scripts/plot_l2x.py --w2v-epochs 5 -o results/l2x/table_w2v5.png   # the previous default embeddings

Ours: solid lines, the mean over seeds (error bars: one standard deviation when there are several); the paper's:
dashed, with its reported standard deviations. The MSE panel plots ``test/mse_heldout_aspect_file`` (held-out
reviews of the aspect-1 file, the paper's kind of test review; docs/l2x.md). Only the table's runs on the chosen
word2vec embeddings (``--w2v-epochs``, default the current default's) are plotted, as in make_tables.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.report.figures import plot_l2x_table
from experiments.report.l2x import L2X_W2V_EPOCHS
from experiments.report.records import RESULTS, load_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS / "l2x", help="folder of JSON records")
    ap.add_argument("--aspect", type=int, default=1)
    ap.add_argument("--w2v-epochs", type=int, default=L2X_W2V_EPOCHS,
                    help="runs on word2vec embeddings of this many epochs (default: the current default's)")
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "l2x" / "table.png")
    args = ap.parse_args(argv)
    print(plot_l2x_table(load_records([args.results]), args.out, args.aspect, args.w2v_epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
