"""Checks on a composed config that must fail before any work starts (torch-free, so they run in well under 2 s).

:func:`validate_config` checks what every experiment shares (seed, device, logger, trainer, optimiser, the
relaxation/estimator pairing), then calls the experiment's own hook, ``experiments.<name>.validate(cfg)``
(each experiment's ``checks.py``; ``Task.validate`` is the same function). The ``check_*`` helpers give every
message the same shape: the key, the value given, and the legal values.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

DEVICES = ("auto", "cpu", "cuda")
LOGGERS = ("wandb", "none")
COMPILE_CHOICES = ("auto", "true", "false")  # trainer.compile: auto = on for CUDA, off for CPU
TF32_CHOICES = ("true", "false", "emulate")  # trainer.tf32: emulate = TF32's rounding on any device (eager only)
LOGGER_MODES = ("offline", "online", "disabled")
SCHEDULES = ("constant", "cosine", "step")  # experiments.common.task.LR_SCHEDULES (kept torch-free here)
_ABSENT = object()


class ConfigError(ValueError):
    """A config that names an illegal choice or combination, or a value of the wrong type or range."""


def _choices(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def value_of(cfg: DictConfig, key: str, default: Any = _ABSENT) -> Any:
    """``cfg``'s value at the dotted ``key`` (interpolations resolved); ``default`` when absent, else ConfigError."""
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"{key} cannot be resolved: {err}") from None
    if value is _ABSENT:
        if default is _ABSENT:
            raise ConfigError(f"{key} is missing from the config")
        return default
    return value


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_int(cfg: DictConfig, key: str, low: int | None = None, high: int | None = None, optional: bool = False,
              why: str = "") -> int | None:
    """The integer at ``key`` within [low, high] (None when ``optional`` and null or absent), else ConfigError
    naming the key, the value and the legal range (``why`` explains a bound that comes from another key)."""
    value = value_of(cfg, key, None if optional else _ABSENT)
    if value is None and optional:
        return None
    legal = " ".join(p for p in ("an integer", _range_text(low, high)) if p) + (f" ({why})" if why else "")
    if optional:
        legal += " or null"
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is not legal: it must be {legal}")
    return int(value)


def check_number(cfg: DictConfig, key: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, optional: bool = False,
                 why: str = "") -> float | None:
    """The finite number at ``key`` within the given bounds (open with ``low_open``/``high_open``), else
    ConfigError naming the key, the value and the legal range."""
    value = value_of(cfg, key, None if optional else _ABSENT)
    if value is None and optional:
        return None
    legal = " ".join(p for p in ("a number", _range_text(low, high, low_open, high_open)) if p)
    legal += (f" ({why})" if why else "") + (" or null" if optional else "")
    bad = not _is_number(value)
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value >= high if high_open else value > high
    if bad:
        raise ConfigError(f"{key}={value!r} is not legal: it must be {legal}")
    return float(value)


def check_choice(cfg: DictConfig, key: str, choices: Sequence[Any], default: Any = _ABSENT) -> Any:
    """The value at ``key`` if it is one of ``choices`` (``default`` when absent), else ConfigError listing them."""
    value = value_of(cfg, key, default)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is unknown; legal choices: {_choices(choices)}")
    return value


def check_bool(cfg: DictConfig, key: str, default: Any = _ABSENT) -> bool:
    """The boolean at ``key`` (``default`` when absent), else ConfigError."""
    value = value_of(cfg, key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not legal: it must be true or false")
    return value


def check_step_schedule(cfg: DictConfig, key: str = "optim.lr_decay_steps") -> None:
    """With ``optim.schedule=step`` the period at ``key`` must be an integer >= 1 (steps, or another unit that the
    experiment's key names)."""
    if value_of(cfg, "optim.schedule", "constant") == "step" and value_of(cfg, key, None) is None:
        raise ConfigError(f"optim.schedule=step needs a period: set {key} to an integer >= 1")
    check_int(cfg, key, low=1, optional=True)


def experiment_names() -> list[str]:
    """The experiment packages under ``experiments/`` (those with ``task_class`` and ``validate``)."""
    import experiments

    names = []
    for info in pkgutil.iter_modules(experiments.__path__):
        if info.ispkg and info.name != "common":
            try:
                module = importlib.import_module(f"experiments.{info.name}")
            except ImportError:
                continue
            if hasattr(module, "task_class") and hasattr(module, "validate"):
                names.append(info.name)
    return names


def experiment_module(name: Any):
    """``experiments.<name>`` (torch-free to import), or ConfigError listing the experiments."""
    module = None
    if isinstance(name, str) and name.isidentifier() and name != "common":
        try:
            module = importlib.import_module(f"experiments.{name}")
        except ModuleNotFoundError:
            module = None
    if module is None or not (hasattr(module, "task_class") and hasattr(module, "validate")):
        raise ConfigError(f"experiment={name!r} is unknown; legal choices: {_choices(experiment_names())} (an "
                          f"experiment outside this package names its Task in experiment._target_: "
                          f"docs/task_interface.md)")
    return module


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError, naming the key and its legal values, for anything wrong that the config alone shows:
    the shared keys here, then the experiment's own hook ``experiments.<name>.validate(cfg)`` (or, for a Task
    named by ``experiment._target_``, its ``validate``: :mod:`experiments.common.registry`)."""
    if value_of(cfg, "experiment._target_", None) is not None:
        from experiments.common.registry import validate_target  # it imports this module's helpers

        validate_common(cfg)
        validate_target(cfg)
        return
    module = experiment_module(value_of(cfg, "experiment.name"))
    validate_common(cfg)
    module.validate(cfg)


def check_relaxation(cfg: DictConfig) -> None:
    """``relaxation.structure`` is one :func:`experiments.common.relaxations.build_relaxation` knows and
    ``relaxation.regularizer`` (when set) one that structure has (:func:`~experiments.common.relaxations.
    check_structure`, its message as a ConfigError)."""
    from experiments.common.relaxations import check_structure

    reg = value_of(cfg, "relaxation.regularizer", None)
    try:
        check_structure(str(value_of(cfg, "relaxation.structure", None)), None if reg is None else str(reg))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _setting(key: str, value: Any, choices: Sequence[str]) -> str:
    """A trainer switch's ``value`` as one of ``choices`` (YAML gives booleans for true/false); ConfigError naming
    ``key`` and listing them otherwise."""
    text = str(value).lower() if isinstance(value, (bool, str)) else repr(value)
    if text not in choices:
        raise ConfigError(f"{key}={value!r} is unknown; legal choices: {_choices(choices)}")
    return text


def compile_setting(value: Any) -> str:
    """``trainer.compile`` as one of :data:`COMPILE_CHOICES`."""
    return _setting("trainer.compile", value, COMPILE_CHOICES)


def tf32_setting(value: Any) -> str:
    """``trainer.tf32`` as one of :data:`TF32_CHOICES`."""
    return _setting("trainer.tf32", value, TF32_CHOICES)


def validate_common(cfg: DictConfig) -> None:
    """The keys every experiment shares."""
    name = cfg.experiment.name
    relax = value_of(cfg, "relaxation.name")
    legal_relax = list(cfg.experiment.relaxations)
    if relax not in legal_relax:
        raise ConfigError(f"relaxation={relax!r} is not available for experiment={name}; "
                          f"legal choices: {_choices(legal_relax)}")
    est = value_of(cfg, "estimator.name")
    legal_est = list(cfg.experiment.estimators)
    if est not in legal_est:
        raise ConfigError(f"estimator={est!r} is not available for experiment={name}; legal choices: "
                          f"{_choices(legal_est)}")
    check_relaxation(cfg)
    from experiments.common.option_checks import check_options  # it imports this module's helpers

    check_options(cfg)
    supported = cfg.estimator.get("structures")
    if supported is not None and cfg.relaxation.structure not in supported:
        ok = [r for r in legal_relax if _structure_of(r) in supported]
        raise ConfigError(
            f"estimator={est} supports only structures {_choices(supported)}, but relaxation={relax} "
            f"is a {cfg.relaxation.structure}; legal relaxations for it here: {_choices(ok) or 'none'}"
        )
    check_int(cfg, "seed")
    check_choice(cfg, "device", DEVICES)
    if check_choice(cfg, "logger.name", LOGGERS) == "wandb":
        check_choice(cfg, "logger.mode", LOGGER_MODES, default="offline")
    check_number(cfg, "relaxation.tau", low=0, low_open=True, optional=True)
    check_int(cfg, "trainer.max_steps", low=1)
    check_int(cfg, "trainer.eval_every", low=1)
    check_int(cfg, "trainer.log_every", low=1, optional=True)
    check_number(cfg, "trainer.grad_clip", low=0, low_open=True, optional=True)
    check_number(cfg, "trainer.loss_limit", low=0, low_open=True, optional=True,
                 why="null stops on non-finite losses only")
    for key in ("flush_denormal", "progress", "resume"):
        check_bool(cfg, f"trainer.{key}", default=True)
    compiled = compile_setting(value_of(cfg, "trainer.compile", "auto"))
    if tf32_setting(value_of(cfg, "trainer.tf32", True)) == "emulate" and compiled == "true":
        raise ConfigError("trainer.tf32=emulate runs eagerly: it cannot be combined with trainer.compile=true; "
                          "legal choices with it: trainer.compile=auto or false")
    check_number(cfg, "trainer.max_minutes", low=0, low_open=True, optional=True, why="null: no time budget")
    check_number(cfg, "optim.lr", low=0, low_open=True)
    check_choice(cfg, "optim.schedule", SCHEDULES, default="constant")
    check_number(cfg, "optim.lr_min", low=0, optional=True)
    check_number(cfg, "optim.lr_gamma", low=0, high=1, low_open=True, optional=True)
    check_int(cfg, "data.batch_size", low=1, optional=True)
    check_int(cfg, "eval.batch_size", low=1, optional=True)


def _structure_of(relaxation: str) -> str:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "relaxation" / f"{relaxation}.yaml"
    return str(OmegaConf.load(path).get("structure"))
