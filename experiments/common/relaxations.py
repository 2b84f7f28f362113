"""One way to build a relaxation from its config (``configs/relaxation/<name>.yaml``), for every experiment.

An experiment calls :func:`build_relaxation` with ``cfg.relaxation`` and what only it knows (the subset size
``k``, whether its items are padding-masked, the spanning tree's clip range ``max_range``) and gets a
:class:`Relaxation`: the ``sst`` structure, the regularizer name to hand on, the temperature and the config's
other keys (``options``: ``eps``, ``directed``...). The structure is chosen by the config's ``structure`` key
(:data:`STRUCTURES`), the top-k variant by its ``regularizer``: the earlier k-subset samplers (``l2x``,
``softsub``, ``ef_topk_fd`` on masked items) are :class:`sst.subset_baselines.SubsetSampler` structures and go
through :func:`sst.sample` and ``sst.estimators`` like the rest. No experiment dispatches on the relaxation's name.

Torch-free to import (``sst`` is imported when a relaxation is built): the config checks read :data:`REGULARIZERS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    import sst
    import sst.estimators

# the earlier k-subset samplers (sst.subset_baselines.SUBSET_METHODS), legal regularizers of topk
SUBSET_METHODS = ("l2x", "softsub", "ef_topk_fd")
# relaxation.structure -> its legal relaxation.regularizer values: the sst structure's regularizers (first: its
# default) and, for topk, the earlier samplers; kept torch-free for the config checks (a test checks them
# against sst)
REGULARIZERS: dict[str, tuple[str, ...]] = {
    "categorical": ("entropy", "euclidean"),
    "binary": ("binary_entropy",),
    "topk": ("exp_family_entropy", "euclidean", "categorical_entropy", "binary_entropy", *SUBSET_METHODS),
    "corr_topk": ("exp_family_entropy",),
    "spanning_tree": ("exp_family_entropy",),
}

# config keys read by build_relaxation itself; the others go to Relaxation.options
_OWN_KEYS = ("name", "structure", "regularizer", "tau")


@dataclass(frozen=True)
class Relaxation:
    """A relaxation built from its config.

    Attributes:
        name: the config's name (for records). kind: its ``structure`` key (``topk``, ``spanning_tree``...).
        structure: the ``sst`` structure instance. regularizer: the name ``relax`` and the estimators take (None:
            the structure's default). tau: the temperature. options: the config's other keys (``eps``, ...).
    """

    name: str
    kind: str
    structure: sst.Structure
    regularizer: str | None
    tau: float
    options: dict[str, Any] = field(default_factory=dict)

    def on_items(self, w: Tensor, mask: Tensor) -> tuple[sst.Structure, Tensor]:
        """The structure and weights to sample items ``(..., n)`` where ``mask`` (..., n) bool is True (padding
        False): a sampler that takes the mask itself (``SubsetSampler.with_mask``) and ``w`` as it is, else the
        structure and its masked weights ``structure.masked(w, mask)`` (top-k structures)."""
        from sst.subset_baselines import SubsetSampler

        if isinstance(self.structure, SubsetSampler):
            return self.structure.with_mask(mask), w
        return self.structure, self.structure.masked(w, mask)

    def estimator(self, name: str, **options: Any) -> sst.estimators.Estimator:
        """``sst.estimators.build(name)`` at this relaxation's temperature and regularizer (``options`` as there),
        after checking that the estimator serves the structure (ValueError naming the supported ones)."""
        import sst.estimators

        sst.estimators.check_supported(name, self.structure)
        return sst.estimators.build(name, **{"tau": self.tau, "regularizer": self.regularizer, **options})

    def estimator_from_config(self, cfg: Any, **extra: Any) -> sst.estimators.Estimator:
        """:meth:`estimator` from an ``estimator`` config group entry (``configs/estimator/*.yaml``: its ``name``,
        ``structures`` the structures it serves, every other key an option of ``sst.estimators.build``), plus the
        ``extra`` options the experiment supplies (``event_shape``, ``context_dim``), which win over the config's."""
        from omegaconf import OmegaConf

        opts = dict(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)
        if "name" not in opts:
            raise ValueError(f"an estimator config needs a name, got keys {', '.join(sorted(opts)) or 'none'}")
        name = str(opts.pop("name"))
        opts.pop("structures", None)
        return self.estimator(name, **{**opts, **extra})


def _k(k: int | None, kind: str) -> int:
    if k is None:
        raise ValueError(f"relaxation.structure={kind} needs the subset size k from the experiment")
    return int(k)


def _categorical(reg: str | None, opts: dict, **_: Any) -> tuple[sst.Structure, str | None]:
    import sst

    return sst.Categorical(), reg


def _binary(reg: str | None, opts: dict, **_: Any) -> tuple[sst.Structure, str | None]:
    import sst

    return sst.Binary(), reg


def _topk(reg: str | None, opts: dict, k: int | None = None, masked: bool = False,
          **_: Any) -> tuple[sst.Structure, str | None]:
    """``sst.TopK(k)``; an earlier sampler (``SubsetSampler``) for ``l2x`` and ``softsub``, and for
    ``ef_topk_fd`` on masked items; unmasked ``ef_topk_fd`` is ``FiniteDifferenceTopK`` (every estimator)."""
    import sst
    from sst.subset_baselines import FiniteDifferenceTopK, SubsetSampler

    k = _k(k, "topk")
    eps = {"eps": float(opts["eps"])} if "eps" in opts else {}
    if reg == "ef_topk_fd" and not masked:
        return FiniteDifferenceTopK(k, **eps), "exp_family_entropy"
    if reg in SUBSET_METHODS:
        return SubsetSampler(k, reg, **(eps if reg == "ef_topk_fd" else {})), reg
    return sst.TopK(k), reg


def _corr_topk(reg: str | None, opts: dict, k: int | None = None, **_: Any) -> tuple[sst.Structure, str | None]:
    import sst

    return sst.CorrelatedTopK(_k(k, "corr_topk")), reg


@functools.cache
def clipped_spanning_tree() -> type:
    """The class ``ClippedSpanningTree(max_range)``: an ``sst.SpanningTree`` whose relaxation first raises every
    weight to at least ``max(w) - max_range * tau`` (max over the off-diagonal, i.e. ``w / tau`` within
    ``max_range`` of its maximum), as the released NRI code does; any estimator that calls ``relax`` gets the clip.
    Its maximum is not detached, unlike the library's own clip (``SpanningTree(max_range)``, whose maximum is), so
    the gradient also reaches the heaviest edge through the clipped entries. Setting ``max_range`` on the instance
    also selects the library's fast solve, whose clip then changes nothing (the spread is already within range).
    (A function so that this module imports no torch.)"""
    import torch

    import sst

    class ClippedSpanningTree(sst.SpanningTree):
        def __init__(self, max_range: float) -> None:
            super().__init__()
            self.max_range = float(max_range)

        def __repr__(self) -> str:
            return f"ClippedSpanningTree(max_range={self.max_range})"

        def relax(self, w, tau=1.0, regularizer=None):
            n = w.shape[-1]
            iu, ju = torch.triu_indices(n, n, offset=1, device=w.device)
            m = w[..., iu, ju].amax(dim=-1, keepdim=True).unsqueeze(-1)
            return super().relax(torch.maximum(w, m - self.max_range * float(tau)), tau, regularizer)

    return ClippedSpanningTree


def _spanning_tree(reg: str | None, opts: dict, max_range: float | None = None,
                   **_: Any) -> tuple[sst.Structure, str | None]:
    import sst

    if max_range is None or float(max_range) == float("inf"):
        return sst.SpanningTree(), reg
    return clipped_spanning_tree()(float(max_range)), reg


# the config's ``structure`` key -> builder(regularizer, options, **experiment context) -> (structure, regularizer)
STRUCTURES: dict[str, Callable[..., tuple[sst.Structure, str | None]]] = {
    "categorical": _categorical,
    "binary": _binary,
    "topk": _topk,
    "corr_topk": _corr_topk,
    "spanning_tree": _spanning_tree,
}


def check_structure(kind: str, regularizer: str | None) -> None:
    """``relaxation.structure`` must be one of :data:`STRUCTURES` and ``relaxation.regularizer`` (when set) one of
    that structure's :data:`REGULARIZERS`; ValueError naming the key and the legal choices otherwise (the config
    checks, :func:`experiments.common.config.check_relaxation`, raise the same message as a ConfigError)."""
    if kind not in STRUCTURES:
        raise ValueError(f"relaxation.structure={kind!r} is unknown; legal choices: {', '.join(STRUCTURES)}")
    if regularizer is not None and regularizer not in REGULARIZERS[kind]:
        raise ValueError(f"relaxation.regularizer={regularizer!r} is not available for relaxation.structure={kind}; "
                         f"legal choices: {', '.join(REGULARIZERS[kind])}")


def build_relaxation(cfg: Any, *, k: int | None = None, masked: bool = False,
                     max_range: float | None = None) -> Relaxation:
    """The :class:`Relaxation` of ``cfg`` (``cfg.relaxation``: a mapping with name, structure, regularizer, tau and
    options), with the experiment's context: ``k`` (subset size of topk / corr_topk), ``masked`` (its items come
    with a padding mask, which the earlier samplers take), ``max_range`` (spanning-tree clip; None: none).

    Raises ValueError naming the key and the legal choices for an unknown structure or a regularizer the structure
    lacks, or a temperature that is not > 0.
    """
    from omegaconf import DictConfig, OmegaConf

    conf = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    kind = str(conf.get("structure"))
    reg = conf.get("regularizer")
    reg = None if reg is None else str(reg)
    check_structure(kind, reg)
    tau = float(conf.get("tau", 1.0))
    if not tau > 0:
        raise ValueError(f"relaxation.tau must be > 0, got {tau}")
    options = {key: v for key, v in conf.items() if key not in _OWN_KEYS}
    structure, reg = STRUCTURES[kind](reg, options, k=k, masked=masked, max_range=max_range)
    return Relaxation(str(conf.get("name", kind)), kind, structure, reg, tau, options)


def relaxation_config(name: str, **overrides: Any) -> dict[str, Any]:
    """``configs/relaxation/<name>.yaml`` as a dict, unresolved keys (``tau: ${experiment.tau}``) dropped, then
    ``overrides`` (for scripts and tests that build a relaxation without composing a run's config)."""
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[2] / "configs" / "relaxation" / f"{name}.yaml"
    if not path.is_file():
        legal = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"relaxation={name!r} is unknown; legal choices: {', '.join(legal)}")
    conf = OmegaConf.load(path)
    out = {key: conf[key] for key in conf if not OmegaConf.is_interpolation(conf, key)}
    return {**out, **overrides}
