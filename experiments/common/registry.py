"""Which Task a config runs: ``experiment._target_`` when the experiment config sets it, else the repository's
``experiments.<experiment.name>`` package.

``_target_`` is the dotted path of a :class:`experiments.common.task.Task` subclass in any importable package (one
installed with ``pip install -e``, or on ``PYTHONPATH``), so an experiment can live outside this repository and
register itself from its own experiment config, without an edit to ``experiments/__init__.py``
(docs/task_interface.md). Its checks are the class's ``validate(cfg)``: by default the ``validate`` function of
the class's package.
"""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig

from experiments.common.config import ConfigError, value_of

TARGET_KEY = "experiment._target_"
_LEGAL = "the dotted path of a Task subclass (experiments.common.task.Task) in an importable package"


def target_of(cfg: DictConfig) -> str | None:
    """``experiment._target_``, or None when the config does not set it (a repository experiment)."""
    target = value_of(cfg, TARGET_KEY, None)
    if target is not None and not (isinstance(target, str) and target.strip()):
        raise ConfigError(f"{TARGET_KEY}={target!r} is not legal: it must be {_LEGAL}")
    return target


def task_from_target(target: str) -> type:
    """The Task subclass at the dotted path ``target`` (``package.module.Class``); ConfigError naming the key and
    what it must be when the module cannot be imported or the attribute is not a Task subclass."""
    from experiments.common.task import Task

    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError as err:
        raise ConfigError(f"{TARGET_KEY}={target!r} cannot be imported ({err}); it must be {_LEGAL}: install the "
                          f"package (pip install -e <its folder>) or put its folder on PYTHONPATH") from None
    found: Any = getattr(module, attr, None)
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise ConfigError(f"{TARGET_KEY}={target!r} is not legal: it must be {_LEGAL}")
    return found


def validate_target(cfg: DictConfig) -> bool:
    """Run the checks of the Task that ``experiment._target_`` names (``validate(cfg)``); False when the config
    names none (the repository's experiment packages are checked by
    :func:`experiments.common.config.validate_config`)."""
    target = target_of(cfg)
    if target is None:
        return False
    task_from_target(target).validate(cfg)
    return True


def task_for(cfg: DictConfig) -> type:
    """The Task class that runs ``cfg``: ``experiment._target_``'s, else ``experiments.<experiment.name>``'s."""
    target = target_of(cfg)
    if target is not None:
        return task_from_target(target)
    from experiments import task_class

    return task_class(str(value_of(cfg, "experiment.name")))
