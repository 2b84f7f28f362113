"""The options of the ``estimator`` and ``relaxation`` config groups, checked from the config alone (torch-free).

``sst.estimators.build`` and :func:`experiments.common.relaxations.build_relaxation` check these too, but only
once data and models are built (seconds to minutes into a run); :func:`check_options` runs with the other config
checks (:func:`experiments.common.config.validate_common`), so that ``estimator.baseline=loo0`` fails at once with
one line naming the key and its legal values. The tables here are torch-free copies of what the library accepts;
tests/experiments/test_option_checks.py compares them with ``sst.estimators``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from experiments.common.config import ConfigError, check_bool, check_choice, check_int, check_number, value_of

BASELINES = ("none", "ema", "batch", "loo")  # sst.estimators.BASELINES (kept torch-free here)

Check = Callable[[DictConfig, str], Any]


def _positive_int(cfg: DictConfig, key: str) -> Any:
    return check_int(cfg, key, low=1)


def _decay(cfg: DictConfig, key: str) -> Any:
    return check_number(cfg, key, low=0, high=1, high_open=True)


def _finite(cfg: DictConfig, key: str) -> Any:
    return check_number(cfg, key)


def _positive(cfg: DictConfig, key: str) -> Any:
    return check_number(cfg, key, low=0, low_open=True)


def _baseline(cfg: DictConfig, key: str) -> Any:
    return check_choice(cfg, key, BASELINES)


def _structures(cfg: DictConfig, key: str) -> Any:
    """null (every structure) or a list of ``relaxation.structure`` values."""
    from omegaconf import ListConfig

    from experiments.common.relaxations import REGULARIZERS

    value = value_of(cfg, key, None)
    legal = ", ".join(REGULARIZERS)
    if value is None:
        return None
    if not isinstance(value, ListConfig | list) or any(v not in REGULARIZERS for v in value):
        raise ConfigError(f"{key}={value!r} is not legal: it must be null (every structure) or a list of the "
                          f"structures: {legal}")
    return list(value)


# estimator group key -> its check; the keys of sst.estimators.OPTIONS that a config may set, besides name
ESTIMATOR_OPTIONS: dict[str, Check] = {
    "structures": _structures,
    "num_samples": _positive_int,
    "baseline": _baseline,
    "ema_decay": _decay,
    "hidden": _positive_int,
    "normalize": check_bool,
    "eta": _finite,
    "learn_eta": check_bool,
    "learn_tau": check_bool,
}
# options of sst.estimators.build that the relaxation and the experiment supply, not the estimator group
SUPPLIED = ("tau", "regularizer", "event_shape", "context_dim")

# relaxation group key -> its check, for the keys that go to Relaxation.options (name, structure, regularizer and
# tau are checked by experiments.common.config)
RELAXATION_OPTIONS: dict[str, Check] = {
    "eps": _positive,
    "directed": check_bool,
}


def check_estimator(cfg: DictConfig) -> None:
    """Every key of ``cfg.estimator``: a known option with a legal value, and ``baseline=loo`` with two samples or
    more; ConfigError naming the key and its legal values otherwise."""
    group = value_of(cfg, "estimator")
    for key in group:
        if key == "name":
            continue
        if key not in ESTIMATOR_OPTIONS:
            raise ConfigError(f"estimator.{key} is not an estimator option; legal keys: name, "
                              f"{', '.join(ESTIMATOR_OPTIONS)} ({', '.join(SUPPLIED)} come from the relaxation "
                              f"and the experiment)")
        ESTIMATOR_OPTIONS[key](cfg, f"estimator.{key}")
    if value_of(cfg, "estimator.baseline", None) == "loo":
        samples = value_of(cfg, "estimator.num_samples", 1)
        if samples < 2:
            raise ConfigError(f"estimator.baseline=loo needs estimator.num_samples >= 2, got {samples}; legal "
                              f"choices with one sample: {', '.join(b for b in BASELINES if b != 'loo')}")


def check_relaxation_options(cfg: DictConfig) -> None:
    """The relaxation group's option keys that are set (``eps``, ``directed``) have legal values."""
    group = value_of(cfg, "relaxation")
    for key, check in RELAXATION_OPTIONS.items():
        if key in group:
            check(cfg, f"relaxation.{key}")


def check_options(cfg: DictConfig) -> None:
    """The estimator and relaxation groups' options (:func:`check_estimator`, :func:`check_relaxation_options`)."""
    check_estimator(cfg)
    check_relaxation_options(cfg)
