"""The few lines ``python run.py`` prints when a run ends: what ran, its final metrics, where they are, and the next
command (collect the record of a finished run, resume a run that ``trainer.max_minutes`` cut short). Torch-free:
it reads the run's ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COLLECT_SCRIPT = "scripts/collect_run.py"
WIDTH = 116


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (the commands below run from there),
    else absolute."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def duration(seconds: float) -> str:
    """``42 s`` under two minutes, else ``3.5 minutes``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_lines(label: str, metrics: dict[str, Any], prefix: str, indent: str = "  ") -> list[str]:
    """``label: key value, key value, ...`` for the metrics under ``prefix``, after ``indent``, wrapped between
    entries (continued lines indented two more spaces)."""
    items = [f"{k[len(prefix):]} {_number(v)}" for k, v in metrics.items() if k.startswith(prefix)]
    if not items:
        return []
    lines = [f"{indent}{label}: {items[0]}"]
    for item in items[1:]:
        if len(lines[-1]) + 2 + len(item) > WIDTH:
            lines[-1] += ","
            lines.append(f"{indent}  {item}")
        else:
            lines[-1] += f", {item}"
    return lines


def collect_command(out_dir: Path) -> str:
    """The command that copies the run's record into ``results/`` (scripts/collect_run.py), from the working
    directory."""
    return f"python {shown_path(REPO / COLLECT_SCRIPT)} {shown_path(out_dir)}"


def run_summary(out_dir: Path, record: dict[str, Any], resume_command: str) -> str:
    """The closing lines of a run from its ``metrics.json`` ``record`` in ``out_dir``; ``resume_command`` is the
    command that continues it in the same folder (shown when the run stopped before ``trainer.max_steps``)."""
    metrics = record.get("metrics", {})
    what = (f"{record.get('experiment')} / {record.get('relaxation')} / {record.get('estimator')}, "
            f"seed {record.get('seed')}")
    took = duration(float(record.get("wall_time_s") or 0.0))
    rate = metrics.get("train/steps_per_s")
    speed = f" ({rate:.3g} steps/s)" if isinstance(rate, float) and rate < 1000 else (
        f" ({rate:.0f} steps/s)" if isinstance(rate, float) else "")
    folder = shown_path(out_dir)
    max_steps = (record.get("config") or {}).get("trainer", {}).get("max_steps")
    best_step = metrics.get("best/step")
    if record.get("finished", True):
        lines = [f"[sst] finished {what}: {record.get('step', max_steps)} steps, {took} of training{speed}"]
        lines += metrics_lines("test", metrics, "test/")
        if best_step is not None:
            lines.append(f"  (test metrics of the weights best on validation, step {_number(best_step)})")
        lines += [f"  output folder: {folder}",
                  f"  record into results/: {collect_command(out_dir)}"]
    else:
        lines = [f"[sst] stopped {what} at step {record.get('step')} of {max_steps}: trainer.max_minutes ran out",
                 f"  after {took} of training{speed}; no test evaluation yet"]
        lines += metrics_lines(f"best validation, step {_number(best_step)}", metrics, "best/valid/")
        lines += [f"  output folder: {folder}",
                  f"  resume: {resume_command}"]
    return "\n".join(lines)


def summary_from_folder(out_dir: Path, metrics: dict[str, Any], resume_command: str) -> str:
    """:func:`run_summary` from ``out_dir/metrics.json``; from ``metrics`` alone when the file cannot be read."""
    try:
        record = json.loads((Path(out_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        record = {"metrics": metrics}
    return run_summary(Path(out_dir), record, resume_command)


def print_run_summary(metrics: dict[str, Any]) -> None:
    """Print :func:`summary_from_folder` for the run that just ended in Hydra's output folder."""
    from experiments.common.trainer import continue_command, output_dir

    out_dir = output_dir()
    print(summary_from_folder(out_dir, metrics, continue_command(out_dir)), flush=True)
