"""Seeding, device choice and facts about the run (commit, hardware, command) for the records."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("auto", "cpu", "cuda")
_IMPORTED_AT = time.perf_counter()  # fallback origin of process_seconds() where /proc is missing


def process_seconds() -> float:
    """Wall-clock seconds since this process started (Linux: from /proc; elsewhere since this module's import)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        return float(Path("/proc/uptime").read_text().split()[0]) - start
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but torch.cuda.is_available() is False; use device=auto or cpu")
    return torch.device(name)


def flush_denormal_enabled() -> bool:
    """Whether the CPU treats subnormal floats as zero now (probed: torch has no getter for the flag)."""
    return float(torch.tensor([1e-39]) * 1.0) == 0.0


@contextmanager
def flush_denormal(enabled: bool) -> Iterator[bool]:
    """Within the block, CPU float arithmetic treats subnormal numbers (below 1.2e-38 in float32) as zero when
    ``enabled`` (``torch.set_flush_denormal``); the previous setting comes back on exit. Yields whether the flag
    is on inside (False also where the CPU does not support it). Subnormals are slow on x86 CPUs, and trained
    models at a low temperature make many of them (trained L2X models of the L2X (t = 0.1) and SoftSub (t = 0.5)
    rows take 1.5 to 2.4 times as many steps per second with the flag on, the top-k rows at t = 1 1.04 to 1.11
    times, the VAE at t = 0.5 1.45 to 1.85 times; ``benchmarks/bench_flush_denormal.py``). CUDA kernels are not
    affected."""
    before = flush_denormal_enabled()
    active = bool(torch.set_flush_denormal(bool(enabled))) and bool(enabled)
    try:
        yield active
    finally:
        torch.set_flush_denormal(before)


def git_commit() -> str:
    """The repository's HEAD commit, with ``-dirty`` when tracked files have changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | None = None) -> dict[str, Any]:
    """CPU, core count, GPU (when used), torch and Python versions."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def command_line() -> str:
    """The command that started this run, rebuilt from Hydra's overrides when Hydra is running."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = list(HydraConfig.get().overrides.task)
            return " ".join(["python", "run.py", *overrides])
    except ImportError:
        pass
    return " ".join(["python", *sys.argv])


def provenance(device: torch.device | None, wall_time_s: float) -> dict[str, Any]:
    """The keys every saved record carries besides its numbers: command, commit, hardware, wall time."""
    return {"command": command_line(), "commit": git_commit(), "hardware": hardware(device),
            "wall_time_s": float(wall_time_s)}


def write_record(path: Path | None, record: dict[str, Any]) -> None:
    """Write ``record`` as indented JSON to ``path`` (parents created), marked with the records' schema version
    (``experiments.report.records.SCHEMA``); nothing when ``path`` is None."""
    from experiments.report.records import SCHEMA

    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"schema": SCHEMA, **record}, indent=2) + "\n")


def write_bench_record(out: str | Path | None, default: Path, record: dict[str, Any], quick: bool) -> None:
    """A benchmark script's record: to ``out`` when given, else to ``default`` unless the run was ``--quick``
    (a smoke test that must not overwrite the committed numbers)."""
    if out is None and quick:
        return
    path = Path(out) if out is not None else default
    write_record(path, record)
    print(f"\nwrote {path}")



def write_device_bench_record(benchmark: str, device: torch.device, default: Path, out: str | Path | None,
                              quick: bool, **fields: Any) -> dict[str, Any]:
    """A benchmark's record (name, command, commit, ``device``'s hardware, ``fields``), written by
    :func:`write_bench_record` to ``out`` or ``default`` (on another device than the CPU: ``<benchmark>_<type>.json``
    beside it); returns the record."""
    record = {"benchmark": benchmark, "command": " ".join(["python", *sys.argv]), "commit": git_commit(),
              "hardware": hardware(device), **fields}
    if device.type != "cpu":
        default = default.with_name(f"{benchmark}_{device.type}.json")
    write_bench_record(out, default, record, quick)
    return record

def parse_with_overrides(parser: argparse.ArgumentParser,
                         argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """A benchmark's ``(options, Hydra overrides)``: the parser's options, and every other argument taken as an
    override; an unknown ``-option`` is an error (``parser.error``, exit status 2)."""
    args, overrides = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if bad := [o for o in overrides if o.startswith("-")]:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    return args, overrides
