"""The paper's "simple" L2X model: a convolutional selector (explainer) and a predictor on the selected words.

Shapes: B reviews, L = data.max_len token positions, d = embedding dimension, n = L.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

# Logit given to padding positions by the selector: finite (no inf/NaN anywhere) and far below any selector
# logit. The structures do not rely on it: the top-k rows take padding out through ``masked``
# (sst.TopK.masked, sst.CorrelatedTopK.masked: relative to each row's logits, so also when they drift far below
# this value), and the L2X and SoftSub baselines read the mask themselves.
PAD_LOGIT = -1.0e4

# Pairwise heads of the selector (model.pairwise), None for the rows without pairwise logits.
PAIRWISE_KINDS = (None, "conv", "attract", "scalar", "fixed")


class Selector(nn.Module):
    """L2X's convolutional selector (Chen et al. 2018, their IMDB explainer, on frozen embeddings).

    conv1 (k=3, ``filters``, ReLU) -> global branch: max-pool over real tokens -> dense (``filters``, ReLU),
    broadcast to every position; local branch: two more convs (k=3, ReLU); concatenate (2 * filters) ->
    dropout -> 1x1 conv (``filters``, ReLU) -> 1x1 conv to one unary logit per token.
    With ``pairwise="conv"`` a second head (a conv with kernel 2 over the last hidden features, so one output
    per adjacent pair (i, i+1)) gives the pairwise logits of CorrelatedTopK; ``"attract"``: the same head through
    a softplus, so every pairwise logit is positive (adjacent words can only attract each other; the model can
    still switch a pair off, towards 0, but not learn to keep neighbours apart); ``"scalar"``: one learned scalar
    shared by all pairs; ``"fixed"``: no learned pairwise parameter, every real pair's logit is ``pairwise_offset``
    (a fixed attraction between adjacent words when positive); ``None``: no pairwise output. ``pairwise_offset``
    is a constant added to every real pair's logit (a fixed prior towards contiguous selections when positive; 0
    by default).
    Inputs and features at padding positions are zeroed before each conv, so whatever the padding holds never
    reaches a real position.
    """

    def __init__(self, emb_dim: int, filters: int = 100, kernel_size: int = 3, dropout: float = 0.2,
                 pairwise: str | None = None, pairwise_offset: float = 0.0):
        super().__init__()
        if pairwise not in PAIRWISE_KINDS:
            raise ValueError(f"pairwise must be one of {PAIRWISE_KINDS}, got {pairwise!r}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(emb_dim, filters, kernel_size, padding=pad)
        self.global_dense = nn.Linear(filters, filters)
        self.conv2 = nn.Conv1d(filters, filters, 3, padding=1)
        self.conv3 = nn.Conv1d(filters, filters, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.conv_last = nn.Conv1d(2 * filters, filters, 1)
        self.unary = nn.Conv1d(filters, 1, 1)
        self.pairwise_kind = pairwise
        self.pairwise_offset = float(pairwise_offset)
        if pairwise in ("conv", "attract"):
            self.pairwise = nn.Conv1d(filters, 1, 2)
        elif pairwise == "scalar":
            self.pairwise = nn.Parameter(torch.zeros(()))

    def forward(self, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """emb (B, L, d), mask (B, L) bool (True = real token) -> unary logits (B, L) with padding set to
        PAD_LOGIT, and pairwise logits (B, L-1) (0 for pairs that touch padding) or None."""
        m = mask.unsqueeze(1).to(emb.dtype)  # (B, 1, L)
        h1 = torch.relu(self.conv1(emb.transpose(1, 2) * m)) * m  # (B, F, L)
        pooled = h1.masked_fill(~mask.unsqueeze(1), torch.finfo(h1.dtype).min).amax(-1)  # (B, F)
        pooled = torch.where(mask.any(-1, keepdim=True), pooled, torch.zeros_like(pooled))
        glob = torch.relu(self.global_dense(pooled)).unsqueeze(-1).expand_as(h1)
        local = torch.relu(self.conv3(torch.relu(self.conv2(h1)) * m)) * m
        h = torch.relu(self.conv_last(self.dropout(torch.cat([glob, local], 1)))) * m  # (B, F, L)
        unary = self.unary(h).squeeze(1).masked_fill(~mask, PAD_LOGIT)
        pairwise = None
        if self.pairwise_kind is not None:
            both = mask[:, 1:] & mask[:, :-1]
            if self.pairwise_kind == "conv":
                pairwise = self.pairwise(h).squeeze(1)
            elif self.pairwise_kind == "attract":
                pairwise = nn.functional.softplus(self.pairwise(h).squeeze(1))
            elif self.pairwise_kind == "scalar":
                pairwise = self.pairwise.expand(both.shape)
            else:  # fixed: the offset alone
                pairwise = unary.new_zeros(both.shape)
            pairwise = (pairwise + self.pairwise_offset).masked_fill(~both, 0.0)
        return unary, pairwise


class Predictor(nn.Module):
    """Mean of the selected embeddings (sum of z_i e_i divided by k) -> dense ``hidden`` (ReLU) -> sigmoid."""

    def __init__(self, emb_dim: int, hidden: int = 250):
        super().__init__()
        self.hidden = nn.Linear(emb_dim, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, emb: Tensor, z: Tensor, k: int) -> Tensor:
        """emb (B, L, d), z (B, L) selection weights (k-hot or relaxed) -> predicted score (B,) in (0, 1)."""
        pooled = torch.einsum("bl,bld->bd", z, emb) / k
        return torch.sigmoid(self.out(torch.relu(self.hidden(pooled)))).squeeze(-1)


class L2XModel(nn.Module):
    """Frozen embeddings (a buffer, saved in checkpoints) + selector + predictor.

    The vocabulary is kept as the module's extra state, so ``best.pt`` alone suffices to explain new text.
    """

    def __init__(self, embeddings: Tensor, words: list[str], filters: int = 100, kernel_size: int = 3,
                 dropout: float = 0.2, hidden: int = 250, pairwise: str | None = None,
                 pairwise_offset: float = 0.0):
        super().__init__()
        if embeddings.shape[0] != len(words):
            raise ValueError(f"embeddings has {embeddings.shape[0]} rows but the vocabulary {len(words)} words")
        self.register_buffer("embeddings", embeddings.clone())
        self.words = list(words)
        emb_dim = embeddings.shape[1]
        self.selector = Selector(emb_dim, filters, kernel_size, dropout, pairwise, pairwise_offset)
        self.predictor = Predictor(emb_dim, hidden)

    def embed(self, ids: Tensor) -> Tensor:
        return nn.functional.embedding(ids, self.embeddings)

    def get_extra_state(self) -> Any:
        return {"words": self.words}

    def set_extra_state(self, state: Any) -> None:
        self.words = list(state["words"])
