"""L2X on BeerAdvocate as a shared-trainer Task (PROTOCOLS.md section 2)."""

from __future__ import annotations

import html
import pathlib
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

import sst
from experiments.common.data import TensorBatches
from experiments.common.relaxations import Relaxation, build_relaxation
from experiments.common.task import Task
from experiments.l2x.data import ASPECTS, PAD_ID, BeerData, load_beer
from experiments.l2x.model import L2XModel
from sst.estimators import tile


def subset_precision(selected: Tensor, rationale: Tensor, k: int) -> Tensor:
    """Per-review share of the k selected tokens that lie inside the gold spans.

    Args:
        selected: (N, L) k-hot (0/1) selections.
        rationale: (N, L) bool, token inside the aspect's spans.
        k: subset size (the denominator; a selected padding position counts as a miss).

    Returns:
        (N,) precisions in [0, 1].
    """
    return (selected.float() * rationale.float()).sum(-1) / k


def _masked_mean_sd(x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    w = m.to(x.dtype)
    count = w.sum().clamp_min(1.0)
    mean = (x * w).sum() / count
    return mean, (((x - mean) ** 2 * w).sum() / count).sqrt()


def logit_stats(unary: Tensor, pairwise: Tensor | None, mask: Tensor) -> dict[str, Tensor]:
    """Scale of the selector's logits over real words (no host sync), logged every step: a run whose logits run
    away (the relaxation saturates and training stalls) shows it in its history. unary (B, n), pairwise (B, n-1)
    or None, mask (B, n)."""
    mean, sd = _masked_mean_sd(unary, mask)
    out = {"train/unary_logit_mean": mean, "train/unary_logit_sd": sd}
    if pairwise is not None:
        out["train/pairwise_logit_mean"], out["train/pairwise_logit_sd"] = _masked_mean_sd(
            pairwise, mask[:, 1:] & mask[:, :-1])
    return out


def full_width() -> bool:
    """Whether batches keep their full ``data.max_len`` width rather than being cut to their longest review: in code
    traced by ``torch.compile`` (``trainer.compile``), where a static shape avoids a host sync and recompiles."""
    return torch.compiler.is_compiling()


class Sampler:
    """The selection distribution of one relaxation over a review's tokens.

    ``relaxed(unary, pairwise, mask)`` gives the training-time sample (B, L) (relaxed, or straight-through
    when ``hard``); ``mode(unary, pairwise, mask)`` the test-time selection (B, L): the exact argmax of the same
    structure at the unperturbed logits (top-k for every top-k row, the chain DP for corr_topk).

    ``relaxation``: from :func:`~experiments.common.relaxations.build_relaxation` with ``k`` and ``masked=True``.
    A ``sst.CorrelatedTopK(k)`` structure works on the token chain with weights ``cat([unary, pairwise], -1)`` of
    shape (B, 2L-1); the selection is the unary part ``x[..., :L]``.
    """

    def __init__(self, relaxation: Relaxation, hard: bool = False):
        self.relaxation, self.hard = relaxation, hard
        self.structure, self.tau, self.regularizer = relaxation.structure, relaxation.tau, relaxation.regularizer
        self.k = int(self.structure.k)
        self.correlated = isinstance(self.structure, sst.CorrelatedTopK)

    def _weights(self, unary: Tensor, pairwise: Tensor | None) -> Tensor:
        if not self.correlated:
            return unary
        if pairwise is None:
            raise ValueError("corr_topk needs pairwise logits from the selector")
        return torch.cat([unary, pairwise], dim=-1)

    def items(self, unary: Tensor, pairwise: Tensor | None, mask: Tensor) -> tuple[sst.Structure, Tensor]:
        """The structure and its weights with padding taken out of every subset (``Relaxation.on_items``; a review
        shorter than k: its words, then the first padding positions as fillers)."""
        return self.relaxation.on_items(self._weights(unary, pairwise), mask)

    def relaxed(self, unary: Tensor, pairwise: Tensor | None, mask: Tensor) -> Tensor:
        structure, w = self.items(unary, pairwise, mask)
        x = sst.sample(structure, w, tau=self.tau, regularizer=self.regularizer, hard=self.hard)
        return x[..., :unary.shape[-1]]

    def mode(self, unary: Tensor, pairwise: Tensor | None, mask: Tensor) -> Tensor:
        w = self.structure.masked(self._weights(unary, pairwise), mask)
        return self.structure.argmax(w)[..., :unary.shape[-1]]


class BeerL2XTask(Task):
    """Select k words of a review with a relaxed k-subset, predict the aspect score from them only."""

    monitor = "valid/mse"
    monitor_mode = "min"

    def __init__(self, cfg: DictConfig, device: torch.device, data: BeerData | None = None) -> None:
        super().__init__(cfg, device)
        self.k = int(cfg.k)
        self.aspect = int(cfg.aspect)
        self.data = data if data is not None else load_beer(cfg, progress=bool(cfg.trainer.get("progress", True)))
        if self.k > int(cfg.data.max_len):
            raise ValueError(f"k={self.k} exceeds data.max_len={cfg.data.max_len}")
        relaxation = build_relaxation(cfg.relaxation, k=self.k, masked=True)
        self.estimator = relaxation.estimator_from_config(cfg.estimator)
        self.sampler = Sampler(relaxation, hard=bool(getattr(self.estimator, "hard", False)))
        m = cfg.model
        pairwise = str(m.pairwise) if self.sampler.correlated else None
        self.model = L2XModel(self.data.embeddings, self.data.words, filters=int(m.filters),
                              kernel_size=int(m.kernel_size), dropout=float(m.dropout),
                              hidden=int(m.hidden), pairwise=pairwise,
                              pairwise_offset=float(m.get("pairwise_offset", 0.0))).to(device)
        self.eval_batch_size = int(cfg.data.get("eval_batch_size", 500))
        d = self.data
        self._splits = {
            "train": (d.train.ids.to(device), d.train.target.to(device)),
            "valid": (d.valid.ids.to(device), d.valid.target.to(device)),
            "test": (d.test.ids.to(device), d.test.target.to(device)),
        }
        if d.heldout is not None:
            self._splits["heldout"] = (d.heldout.ids.to(device), d.heldout.target.to(device))
        # Reviews from Lei et al.'s file for this aspect (reviews.aspect{a}.*), where the aspect's score is
        # decorrelated from the others: the distribution the paper trained and validated on.
        self._own_file = {
            name: torch.tensor([f"aspect{self.aspect}." in r.source for r in split.reviews], dtype=torch.bool,
                               device=device)
            for name, split in (("valid", d.valid), ("heldout", d.heldout)) if split is not None
        }
        self._rationale = d.test.rationale.to(device)
        self._has_spans = self._rationale.any(-1)
        self._as_traced = False  # eager_twin_step: full-width batches outside traced code

    def module(self) -> torch.nn.Module:
        return self.model

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """Token ids (N, L) and [0, 1] targets (N,) of split ``name`` (train, valid, test, heldout when present)."""
        if name not in self._splits:
            raise ValueError(f"split must be one of {', '.join(self._splits)}, got {name!r}")
        return self._splits[name]

    @property
    def rationale(self) -> Tensor:
        """Gold aroma annotation of the test reviews, (N_test, L) bool (all False where a review has none)."""
        return self._rationale

    @property
    def has_spans(self) -> Tensor:
        """(N_test,) bool: the test reviews with at least one annotated word."""
        return self._has_spans

    def train_batches(self, generator: torch.Generator) -> Iterator[Any]:
        ids, target = self._splits["train"]
        bucket = self.cfg.data.get("bucket_batches")
        if not bucket:
            return iter(TensorBatches([ids, target], int(self.cfg.data.batch_size), generator))
        lengths = (ids != PAD_ID).sum(-1)  # batches of similar lengths: each is cut to its longest review
        return iter(TensorBatches([ids, target], int(self.cfg.data.batch_size), generator, lengths=lengths,
                                  bucket_batches=int(bucket)))

    def forward(self, ids: Tensor, train: bool) -> tuple[Tensor, Tensor]:
        """ids (B, L) -> predicted score (B,), selection (B, n) over the first n = max(longest review, k)
        positions. Cutting the all-padding tail changes nothing (padding gets exactly zero weight everywhere:
        masked convs and pooling, PAD_LOGIT in every structure) but saves up to half the compute."""
        pred, z, _ = self._run(ids, train)
        return pred, z

    def _run(self, ids: Tensor, train: bool) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor | None, Tensor]]:
        """:meth:`forward`, also returning the selector's (unary, pairwise, mask)."""
        emb, unary, pairwise, mask = self.selector_logits(ids)
        z = self.sampler.relaxed(unary, pairwise, mask) if train else self.sampler.mode(unary, pairwise, mask)
        return self.model.predictor(emb, z.to(emb.dtype), self.k), z, (unary, pairwise, mask)

    def selector_logits(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """ids (B, L) -> embeddings (B, n, d), unary logits (B, n), pairwise logits of adjacent words (B, n-1) or
        None, mask (B, n) of real words, over the first n = max(longest review, k) positions."""
        if not (self._as_traced or full_width()):
            ids = ids[:, :max(int((ids != PAD_ID).sum(-1).max()), self.k)]
        mask = ids != PAD_ID
        emb = self.model.embed(ids)
        unary, pairwise = self.model.selector(emb, mask)
        return emb, unary, pairwise, mask

    def training_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        ids, target = batch
        emb, unary, pairwise, mask = self.selector_logits(ids)
        structure, w = self.sampler.items(unary, pairwise, mask)
        L = unary.shape[-1]

        def f(z: Tensor) -> Tensor:  # squared errors (N,) of the sample-major rows z (N, n)
            pred = self.model.predictor(tile(emb, z.shape[0]), z[..., :L].to(emb.dtype), self.k)
            return (pred - tile(target, z.shape[0])) ** 2

        loss = self.estimator(structure, w, f).loss
        return loss, logit_stats(unary.detach(), None if pairwise is None else pairwise.detach(), mask)

    def eager_twin_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The training step eagerly at the full ``data.max_len`` width, as traced code runs it (the compile
        guard's reference: the same noise and dropout shapes as the compiled step)."""
        self._as_traced = True
        try:
            return self.training_step(batch, step)
        finally:
            self._as_traced = False

    def predict(self, split: str) -> tuple[Tensor, Tensor]:
        """Test-time (hard) predictions (N,) and selections (N, L) of a split, in eval batches."""
        ids, _ = self._splits[split]
        order = torch.argsort((ids != PAD_ID).sum(-1))  # similar lengths together: less padding per batch
        pred = torch.zeros(ids.shape[0], device=ids.device)
        sel = torch.zeros(ids.shape, device=ids.device)
        for i in range(0, ids.shape[0], self.eval_batch_size):
            idx = order[i:i + self.eval_batch_size]
            p, z = self.forward(ids[idx], train=False)
            pred[idx] = p.to(pred.dtype)
            sel[idx, : z.shape[-1]] = z.to(sel.dtype)
        return pred, sel

    def evaluate(self, split: str) -> dict[str, float]:
        _, target = self._splits[split]
        pred, sel = self.predict(split)
        sq = (pred - target) ** 2
        out = {f"{split}/mse": float(sq.mean())}
        own = self._own_file.get(split)
        if own is not None and own.any() and not own.all():
            out[f"{split}/mse_aspect_file"] = float(sq[own].mean())
        if split == "test":
            prec = subset_precision(sel, self._rationale, self.k)
            out["test/subset_precision"] = float(prec.mean())
            out["test/subset_precision_nonempty"] = float(prec[self._has_spans].mean())
            if "heldout" in self._splits:
                for key, value in self.evaluate("heldout").items():
                    out["test/mse_heldout" + key[len("heldout/mse"):]] = value
        return out

    def record_extras(self) -> dict[str, Any]:
        return {"k": self.k, "aspect": self.aspect, "aspect_name": ASPECTS[self.aspect], "data": self.data.info}

    def save_artifacts(self, out_dir: pathlib.Path) -> None:
        self.model.eval()
        with torch.no_grad():
            pred, sel = self.predict("test")
        path = pathlib.Path(out_dir) / "explanations.html"
        path.write_text(render_html(self.data, pred.cpu(), sel.cpu(), self.k, self.aspect, self.cfg,
                                    num=int(self.cfg.get("html_reviews", 12))))
        (pathlib.Path(out_dir) / "vocab.txt").write_text("\n".join(self.model.words) + "\n")


def render_html(data: BeerData, pred: Tensor, sel: Tensor, k: int, aspect: int, cfg: DictConfig,
                num: int = 12) -> str:
    """A page of the first ``num`` test reviews with gold spans: selected tokens highlighted, gold spans
    underlined, true and predicted scores and the review's subset precision."""
    test = data.test
    L = sel.shape[-1]
    prec = subset_precision(sel, test.rationale, k)
    rows = []
    shown = 0
    for i, review in enumerate(test.reviews):
        if shown >= num:
            break
        if not review.spans.get(aspect):
            continue
        shown += 1
        gold = set()
        for a, b in review.spans[aspect]:
            gold.update(range(a, b))
        parts = []
        for j, tok in enumerate(review.tokens):
            t = html.escape(tok)
            if j in gold:
                t = f"<u>{t}</u>"
            if j < L and sel[i, j] > 0.5:
                t = f"<mark>{t}</mark>"
            if j == L:
                parts.append('<span class="cut">[truncated at data.max_len]</span>')
            parts.append(t)
        rows.append(
            f"<div class='review'><p class='meta'>test review {i}: true {ASPECTS[aspect]} "
            f"{float(test.target[i]):.2f}, predicted {float(pred[i]):.2f}, subset precision "
            f"{float(prec[i]):.2f}</p><p>{' '.join(parts)}</p></div>"
        )
    title = (f"L2X BeerAdvocate, aspect {aspect} ({ASPECTS[aspect]}), k={k}, relaxation={cfg.relaxation.name}, "
             f"estimator={cfg.estimator.name}")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.6}"
             "mark{background:#ffd54f;padding:0 .1em}u{text-decoration:underline 2px #1565c0}"
             ".meta{color:#555;font-size:90%}.review{border-bottom:1px solid #ddd;padding:.5em 0}"
             ".cut{color:#c00;font-size:80%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h2>{html.escape(title)}</h2>"
            f"<p><mark>highlighted</mark>: the model's test-time selection (hard argmax of the structure); "
            f"<u>underlined</u>: gold {ASPECTS[aspect]} spans (annotations.json). Mean test subset precision "
            f"{float(prec.mean()):.3f}.</p>{''.join(rows)}</body></html>\n")
