"""How trained L2X models select: contiguity of the k selected words, and what the pairwise term of Corr. Top k
changes.

    python scripts/l2x_selection_probe.py outputs/final/l2x_corr_topk_k10_bucket50 outputs/final/l2x_ef_topk_... \
        [-o results/l2x/selection_probe.json]

For each run folder (its ``.hydra/config.yaml`` and ``best.pt``), on the 994 annotated test reviews:
``precision`` (the test metric, recomputed), ``runs_per_review`` (maximal runs of adjacent selected words; 1 = one
contiguous span of k words, k = all isolated), ``adjacent_share`` (selected words with a selected neighbour).
For Corr. Top k also ``unary_only_precision`` and ``unary_only_changed`` (the top k of its unary logits alone,
pairwise term dropped: precision, and the share of selected words that differ from the correlated argmax) and
the spread of its unary and pairwise logits over real tokens. The gold spans' own numbers (``gold``) are given
for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common.checkpoint import load_finished_run  # noqa: E402
from experiments.common.runtime import provenance, write_record  # noqa: E402
from experiments.l2x.task import BeerL2XTask, subset_precision  # noqa: E402


def load_run(run_dir: Path, device: torch.device) -> BeerL2XTask:
    """The L2X task of a finished run folder with its best weights loaded (eval mode)."""
    return load_finished_run(run_dir, "l2x", BeerL2XTask, device)


def contiguity(sel: Tensor) -> tuple[Tensor, Tensor]:
    """sel (N, L) 0/1 -> runs of adjacent selected positions per row (N,), selected positions with a selected
    neighbour per row (N,)."""
    s = sel.bool()
    starts = s & ~torch.nn.functional.pad(s[:, :-1], (1, 0))
    left = torch.nn.functional.pad(s[:, :-1], (1, 0))
    right = torch.nn.functional.pad(s[:, 1:], (0, 1))
    return starts.sum(-1).float(), (s & (left | right)).sum(-1).float()


@torch.no_grad()
def probe(task: BeerL2XTask) -> dict:
    ids, _ = task.split("test")
    _, sel = task.predict("test")
    k = task.k
    runs, adjacent = contiguity(sel)
    out = {"relaxation": str(task.cfg.relaxation.name), "k": k,
           "precision": float(subset_precision(sel, task.rationale, k).mean()),
           "runs_per_review": float(runs.mean()), "adjacent_share": float((adjacent / k).mean())}
    if task.sampler.correlated:  # the top k of the unary logits alone, in eval batches as predict() does
        unary_sel = torch.zeros_like(sel)
        unaries, pairs = [], []
        for i in range(0, ids.shape[0], task.eval_batch_size):
            _, unary, pairwise, mask = task.selector_logits(ids[i:i + task.eval_batch_size])
            unary_sel[i:i + unary.shape[0]].scatter_(1, unary.topk(k, dim=-1).indices, 1.0)
            unaries.append(unary[mask])
            pairs.append(pairwise[mask[:, 1:] & mask[:, :-1]])
        unary, pairwise = torch.cat(unaries), torch.cat(pairs)
        out["unary_only_precision"] = float(subset_precision(unary_sel, task.rationale, k).mean())
        out["unary_only_changed"] = float(((unary_sel != sel).sum(-1) / (2 * k)).mean())
        out["unary_logits"] = {"mean": float(unary.mean()), "std": float(unary.std())}
        out["pairwise_logits"] = {"mean": float(pairwise.mean()), "std": float(pairwise.std()),
                                  "min": float(pairwise.min()), "max": float(pairwise.max())}
    return out


def gold_contiguity(task: BeerL2XTask) -> dict:
    has = task.has_spans
    runs, adjacent = contiguity(task.rationale[has].float())
    words = task.rationale[has].sum(-1).float()
    return {"reviews_with_spans": int(has.sum()), "words_per_review": float(words.mean()),
            "runs_per_review": float(runs.mean()), "adjacent_share": float((adjacent / words).mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="L2X run folders (with .hydra/config.yaml and best.pt)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-o", "--out", type=Path, default=None, help="write the record here (default: print only)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    rows, gold = [], None
    for run in args.runs:
        task = load_run(run, device)
        gold = gold or gold_contiguity(task)
        rows.append({"run": run.name, **probe(task)})
        print(json.dumps(rows[-1]), flush=True)
    record = {"experiment": "l2x", "what": "contiguity of the selected words; Corr. Top k without its pairwise term",
              "gold": gold, "runs": rows, **provenance(device, time.perf_counter() - t0)}
    print(json.dumps({"gold": gold}))
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
