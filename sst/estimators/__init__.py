"""Gradient estimators behind one interface.

Usage::

    est = sst.estimators.build("rebar", tau=0.5, event_shape=(20, 10))  # an nn.Module
    out = est(sst.Categorical(), logits, f, context=x)                # logits: (B, 20, 10)
    (out.loss + kl).backward()                                          # logits.grad: the estimate

See :func:`build` for the contract (shapes, the layout of the rows ``f`` receives, the temperature).
"""

from __future__ import annotations

import inspect

from sst.estimators.base import Estimator, EstimatorOutput, tile
from sst.estimators.rebar import Rebar, Relax, binary_conditional, categorical_conditional
from sst.estimators.relaxed import Relaxed, StraightThrough
from sst.estimators.score import BASELINES, NVIL, MuProp, Reinforce
from sst.estimators.structinfo import StructureInfo, structure_info, structure_kind

ESTIMATORS: dict[str, type[Estimator]] = {
    "relaxed": Relaxed,
    "straight_through": StraightThrough,
    "reinforce": Reinforce,
    "nvil": NVIL,
    "muprop": MuProp,
    "rebar": Rebar,
    "relax": Relax,
}

# keys a config may carry that are not options of any estimator (they are ignored)
_IGNORED = ("name", "structures")


def _params(cls: type[Estimator]) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}


OPTIONS: frozenset[str] = frozenset(set().union(*(_params(c) for c in ESTIMATORS.values())) | {"context_dim"})


def _get(name: str) -> type[Estimator]:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}") from None


def build(name: str, **options) -> Estimator:
    """Build the estimator ``name`` (an ``nn.Module``; put it in the optimizer and the checkpoint).

    Args:
        name: one of ``relaxed``, ``straight_through``, ``reinforce``, ``nvil``, ``muprop``, ``rebar``,
            ``relax``.
        **options: any of the shared keys below; keys an estimator does not use are ignored, ``None``
            values mean "default", and an unknown key raises ValueError.

            - ``tau`` (float > 0): relaxation temperature (relaxed, straight_through, rebar/relax base
              temperature, muprop on structures other than Categorical/Binary). Settable later:
              ``est.tau = 0.5`` (annealing); for rebar/relax the learned factor ``exp(log_tau_scale)``
              multiplies it.
            - ``regularizer`` (str): the relaxation's regularizer (default: the structure's first).
            - ``event_shape`` (tuple): per-item shape of the logits, e.g. ``(20, 10)`` or ``(200,)``;
              checked at call time when given, required by relax.
            - ``context_dim`` (int): size of the flattened ``context`` (nvil's baseline network).
            - ``num_samples`` (int): samples per item (all estimators).
            - ``baseline`` (reinforce, muprop: none | ema | batch | loo), ``ema_decay`` (reinforce, nvil, muprop),
              ``hidden`` (nvil, relax), ``normalize`` (nvil), ``eta``, ``learn_eta``, ``learn_tau``
              (rebar, relax).

    The returned module is called as ``out = est(structure, logits, f, context=None, generator=None)``:

    - ``logits``: ``(B, *event_shape)``; the structure's event dims are the trailing ones, any dims
      between the batch dim and them are independent copies (``(B, 20, 10)`` with ``sst.Categorical()``
      is 20 ten-way variables). A per-item log-probability sums over all non-batch dims.
    - ``f``: maps points of conv X, ``(N, *event_shape)``, to per-row losses ``(N,)`` to *minimise*, where
      ``N = m * B`` for an integer ``m >= 1``. **Rows are sample-major: row ``r`` is a point for item
      ``r % B``.** ``m`` is ``num_samples`` for relaxed / straight_through / reinforce / nvil, ``2 *
      num_samples`` for muprop (samples, then expansion points) and ``3 * num_samples`` for rebar/relax
      (hard samples, relaxed, conditional relaxed): ``f`` is called exactly once per call, on the stacked
      rows, and never in a Python loop. An ``f`` closing over per-item data ``x`` of batch ``B`` tiles it
      with :func:`tile`: ``f = lambda z: nll(decoder(z), sst.estimators.tile(x, z.shape[0]))``. ``f`` must
      be differentiable in its input for relaxed, straight_through, muprop, rebar and relax.
    - ``context``: per-item input ``(B, ...)`` of nvil's baseline network (ignored by the others).
    - ``generator``: optional ``torch.Generator`` for the noise.

    ``out.loss``: scalar, value = mean of ``f`` over the forward samples; ``out.loss.backward()`` puts in
    ``logits.grad`` the batch mean of the per-item gradient estimates (each item's estimate averages its
    samples), in the parameters ``f`` closes over the gradient of the mean of ``f`` at the forward samples,
    and in the estimator's own parameters their training signal. ``out.x``: the forward samples, ``(B,
    *event)`` for one sample per item, else ``(num_samples, B, *event)`` (``out.x.reshape(-1, *event)`` are
    the rows ``f`` saw for ``out.value``). ``out.value``: detached ``f`` values, ``(B,)`` or
    ``(num_samples, B)``. ``out.stats``: detached scalars for logging. The KL or prior terms are the
    caller's to add.

    The structures' value checks (NaN in the weights) cost a host sync per call; wrap training steps in
    ``with sst.checks(False):`` to skip them. Raises ValueError when the estimator cannot serve the
    structure (see :func:`supports`).
    """
    cls = _get(name)
    unknown = sorted(set(options) - OPTIONS - set(_IGNORED))
    if unknown:
        raise ValueError(f"unknown estimator option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}")
    accepted = _params(cls)
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    if "event_shape" in kwargs:
        kwargs["event_shape"] = tuple(int(d) for d in kwargs["event_shape"])
    return cls(**kwargs)


def supported_structures(name: str) -> tuple[str, ...] | None:
    """Structure kinds (``Structure.kind``) ``name`` can serve, or None for every structure with a known score function
    (score-function estimators) or relaxation (relaxed, straight_through)."""
    return _get(name).supported


def supports(name: str, structure) -> bool:
    """Whether estimator ``name`` can serve ``structure`` (an instance or a class)."""
    cls = _get(name)
    info = structure_info(structure)
    if cls.supported is not None:
        return info.kind in cls.supported
    return not cls.needs_density or info.exact_log_prob or info.noise is not None


def check_supported(name: str, structure) -> None:
    """Raise ValueError naming the supported structures when ``name`` cannot serve ``structure``."""
    if not supports(name, structure):
        names = supported_structures(name) or StructureInfo.known_kinds()
        cls_name = structure.__name__ if isinstance(structure, type) else type(structure).__name__
        raise ValueError(f"estimator {name!r} supports only the structures {', '.join(names)}; got {cls_name}")


__all__ = [
    "BASELINES",
    "ESTIMATORS",
    "NVIL",
    "OPTIONS",
    "Estimator",
    "EstimatorOutput",
    "MuProp",
    "Rebar",
    "Reinforce",
    "Relax",
    "Relaxed",
    "StraightThrough",
    "StructureInfo",
    "binary_conditional",
    "build",
    "categorical_conditional",
    "check_supported",
    "structure_info",
    "structure_kind",
    "supported_structures",
    "supports",
    "tile",
]
