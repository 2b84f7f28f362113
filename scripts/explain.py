"""Print the words a trained L2X model selects in new text, and its predicted score.

    python scripts/explain.py --run outputs/l2x/corr_topk-relaxed/<date> "Pours hazy gold. Smells of citrus."

Loads ``<run>/best.pt`` (or ``--checkpoint``) and the run's config (``<run>/.hydra/config.yaml``, else the
``config`` of ``<run>/metrics.json``). The checkpoint holds the frozen embedding matrix and the vocabulary, so no
data files are needed. New text is lower-cased and tokenised with nltk's Treebank tokenizer (no downloaded data),
which matches the tokenisation of Lei et al.'s files (``it 's``, ``does n't``); unknown words map to <unk>.
Selection is the model's test-time selection: the exact argmax (top-k, or the chain DP for corr_topk).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from experiments.common.relaxations import build_relaxation
from experiments.l2x.data import ASPECTS, PAD_ID, UNK_ID
from experiments.l2x.model import L2XModel
from experiments.l2x.task import Sampler


def tokenize(text: str) -> list[str]:
    """Lower-cased Treebank tokens (nltk.tokenize.TreebankWordTokenizer needs no downloaded data).

    The Treebank tokenizer splits off only a text-final period (it expects one sentence), so periods before
    whitespace are split off first, as in Lei et al.'s files ("poured the 12 oz . bottle").
    """
    from nltk.tokenize import TreebankWordTokenizer

    text = re.sub(r"(?<!\.)\.(?=\s)", " . ", text.lower())
    return TreebankWordTokenizer().tokenize(text)


def load_run(run: Path, checkpoint: Path | None = None):
    """(config, model in eval mode, sampler) of a finished or running L2X run folder."""
    from omegaconf import OmegaConf

    hydra_cfg = run / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        cfg = OmegaConf.load(hydra_cfg)
    elif (run / "metrics.json").is_file():
        cfg = OmegaConf.create(json.loads((run / "metrics.json").read_text())["config"])
    else:
        raise FileNotFoundError(f"{run}: no .hydra/config.yaml or metrics.json; is this an l2x run folder?")
    ckpt_path = checkpoint or run / "best.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no checkpoint (best.pt is written at the first validation)")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["module"]
    table = state["embeddings"]
    m = cfg.model
    sampler = Sampler(build_relaxation(cfg.relaxation, k=int(cfg.k), masked=True))
    model = L2XModel(torch.zeros_like(table), [""] * table.shape[0], filters=int(m.filters),
                     kernel_size=int(m.kernel_size), dropout=float(m.dropout), hidden=int(m.hidden),
                     pairwise=str(m.pairwise) if sampler.correlated else None,
                     pairwise_offset=float(m.get("pairwise_offset", 0.0)))
    model.load_state_dict(state)
    model.eval()
    return cfg, model, sampler


@torch.no_grad()
def explain(text: str, cfg, model: L2XModel, sampler: Sampler) -> tuple[list[str], list[int], float]:
    """(tokens, indices of the selected tokens, predicted score) for ``text``."""
    tokens = tokenize(text)
    max_len = int(cfg.data.max_len)
    if not tokens:
        raise ValueError("the text has no tokens")
    index = {w: i for i, w in enumerate(model.words)}
    ids = torch.full((1, max_len), PAD_ID, dtype=torch.long)
    row = [index.get(t, UNK_ID) for t in tokens[:max_len]]
    ids[0, : len(row)] = torch.tensor(row)
    mask = ids != PAD_ID
    emb = model.embed(ids)
    unary, pairwise = model.selector(emb, mask)
    z = sampler.mode(unary, pairwise, mask)
    score = float(model.predictor(emb, z.to(emb.dtype), sampler.k)[0])
    chosen = [j for j in range(len(row)) if z[0, j] > 0.5]
    return tokens, chosen, score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", help="the review to explain (quoted)")
    parser.add_argument("--run", required=True, type=Path, help="an l2x run folder (holds best.pt)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint other than <run>/best.pt")
    args = parser.parse_args(argv)
    cfg, model, sampler = load_run(args.run, args.checkpoint)
    tokens, chosen, score = explain(args.text, cfg, model, sampler)
    aspect = ASPECTS[int(cfg.aspect)]
    vocab = set(model.words)
    unknown = sum(1 for t in tokens if t not in vocab)
    print(f"relaxation={cfg.relaxation.name} k={cfg.k} aspect={aspect}; {len(tokens)} tokens ({unknown} unknown)")
    if len(tokens) < int(cfg.k):
        print(f"note: fewer than k={cfg.k} tokens, so padding fills the rest of the selection")
    print("selected: " + " ".join(tokens[j] for j in chosen))
    print("in context: " + " ".join(f"[{t}]" if j in set(chosen) else t for j, t in enumerate(tokens)))
    print(f"predicted {aspect} score: {score:.3f} (on the files' [0, 1] scale; x5 for stars)")


if __name__ == "__main__":
    main()
