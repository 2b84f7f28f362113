"""One clear message for a user's mistake or an interrupt, and no empty run folder left behind (torch-free).

Hydra creates the run folder (with ``.hydra/``) before the task function runs, so a run that fails on its config
would leave an empty folder; :func:`user_errors` removes it. In a folder that already holds a run (a resume), the
``.hydra/*.yaml`` files that Hydra has just overwritten are put back from the copy the trainer keeps next to
``last.pt`` (``.hydra/last/``), so the folder still describes the run it holds.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from experiments.common.config import ConfigError

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
SAVED_HYDRA = "last"  # .hydra/last/: the .hydra files of the run that wrote last.pt


class ResumeError(RuntimeError):
    """A run folder whose checkpoint cannot be resumed: another config, or a corrupt ``last.pt``."""


# Errors whose message says all a user needs (the key, the file, the way out): printed alone, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ResumeError, FileNotFoundError, FloatingPointError)


def full_error() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def _hydra_run() -> tuple[Path | None, bool, str]:
    """(the job's output folder, whether it is a multirun job, the command's overrides) when Hydra runs, else
    (None, False, "")."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None, False, ""
    if not HydraConfig.initialized():
        return None, False, ""
    hc = HydraConfig.get()
    overrides = " ".join(o for o in hc.overrides.task if not o.startswith("hydra.run.dir="))
    return Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN, overrides


def is_empty_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing but what Hydra wrote at start (``.hydra/`` and an empty job log)."""
    for entry in run_dir.iterdir():
        if entry.name == ".hydra" and entry.is_dir():
            continue
        if entry.suffix == ".log" and entry.is_file() and entry.stat().st_size == 0:
            continue
        return False
    return True


def tidy_run_dir(run_dir: Path | None, multirun: bool = False) -> bool:
    """After a failure: remove ``run_dir`` when nothing was written to it (and its parents up to the working
    directory when they are left empty; a sweep folder holding only ``multirun.yaml``), else put back the
    ``.hydra`` files of the run it holds. Returns whether the folder was removed."""
    if run_dir is None or not run_dir.is_dir():
        return False
    cwd = Path.cwd().resolve()
    if not is_empty_run(run_dir) or run_dir.resolve() == cwd or run_dir.resolve() in cwd.parents:
        restore_hydra_files(run_dir)
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    stop = cwd
    parent = run_dir.resolve().parent
    while parent != stop and stop in parent.parents:
        entries = [e.name for e in parent.iterdir()]
        if entries and not (multirun and entries == ["multirun.yaml"]):
            break
        shutil.rmtree(parent, ignore_errors=True)
        parent = parent.parent
    return True


def save_hydra_files(run_dir: Path) -> None:
    """Copy ``.hydra/{config,hydra,overrides}.yaml`` to ``.hydra/last/`` (called when ``last.pt`` is written)."""
    src = Path(run_dir) / ".hydra"
    if not src.is_dir():
        return
    dst = src / SAVED_HYDRA
    dst.mkdir(exist_ok=True)
    for name in HYDRA_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def restore_hydra_files(run_dir: Path) -> bool:
    """Put ``.hydra/last/*.yaml`` back over the files Hydra wrote for the failed command; whether any were."""
    saved = Path(run_dir) / ".hydra" / SAVED_HYDRA
    if not saved.is_dir():
        return False
    for name in HYDRA_FILES:
        if (saved / name).is_file():
            shutil.copyfile(saved / name, Path(run_dir) / ".hydra" / name)
    return True


@contextmanager
def user_errors() -> Iterator[None]:
    """Run the body; under Hydra, a user error (:data:`USER_ERRORS`) or Ctrl-C prints one message to stderr and
    exits (status 2, or 130 for an interrupt), without a traceback unless ``HYDRA_FULL_ERROR=1``. Any failure
    removes the run folder when nothing was written to it. Outside Hydra (tests, scripts) errors pass through."""
    run_dir, multirun, overrides = _hydra_run()
    try:
        yield
    except KeyboardInterrupt:
        removed = tidy_run_dir(run_dir, multirun)
        if run_dir is None or full_error():
            raise
        if run_dir is not None and (run_dir / "last.pt").is_file():
            print(f"[sst] interrupted; to resume from {run_dir / 'last.pt'}:\n"
                  f"    python run.py {overrides} hydra.run.dir={run_dir}", file=sys.stderr)
        else:
            print("[sst] interrupted before the first checkpoint; nothing to resume"
                  + (" (the empty run folder was removed)" if removed else ""), file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as err:
        tidy_run_dir(run_dir, multirun)
        if run_dir is None or full_error():
            raise
        print(f"error: {err}\n(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception:
        tidy_run_dir(run_dir, multirun)
        raise
