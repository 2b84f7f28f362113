"""Metric loggers: W&B (offline by default) or none. Every run also keeps history.jsonl in its folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from experiments.common.summary import metrics_lines

ECHOED = "valid"  # the validation metrics, printed when the progress bar is off (run.py's summary has the test's)


class RunningMeans:
    """Detached scalar tensors summed on their device step after step (no host sync); :meth:`pop` takes their
    means to the host, one sync for all of them, and starts again."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        for k, v in values.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {k: float(v) / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


class Logger:
    """Writes every logged dict as one JSON line to ``<out_dir>/history.jsonl``; with ``echo``, also prints each
    validation to stdout, for runs without a progress bar (a log file, the quick start's ``seed<N>.log``)."""

    def __init__(self, out_dir: Path, echo: bool = False) -> None:
        self.path = Path(out_dir) / "history.jsonl"
        self.echo = echo

    def log(self, metrics: dict[str, float], step: int) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        lines = metrics_lines(f"[sst] step {step} {ECHOED}", metrics, f"{ECHOED}/", "") if self.echo else []
        if lines:
            print("\n".join(lines), flush=True)

    def finish(self) -> None:
        pass


def trim_history(out_dir: Path, step: int) -> int:
    """Cut ``<out_dir>/history.jsonl`` back to a resumed run's ``step``: drop the lines of later steps (the
    interrupted run logged them; the resumed one logs them again) and the final test lines of a finished run
    that is being extended; ``step=0`` clears it. Returns the number of lines kept."""
    path = Path(out_dir) / "history.jsonl"
    if not path.is_file():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if int(row.get("step", 0)) <= step and step > 0 and not any(k.startswith("test/") for k in row):
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
    return len(kept)


class WandbLogger(Logger):
    """Weights & Biases; ``mode=offline`` (the default) writes under ``<out_dir>/wandb`` and needs no network."""

    def __init__(self, out_dir: Path, cfg: DictConfig, run_id: str | None = None, echo: bool = False) -> None:
        super().__init__(out_dir, echo=echo)
        mode = str(cfg.logger.get("mode", "offline"))
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        config: Any = OmegaConf.to_container(cfg, resolve=True)
        self.run = wandb.init(
            project=cfg.logger.get("project", "sst"),
            entity=cfg.logger.get("entity"),
            tags=list(cfg.logger.get("tags") or []),
            mode=mode,
            dir=str(out_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(init_timeout=60, silent=True, console="off", x_disable_stats=True),
        )

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        super().log(metrics, step)
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()


def build_logger(cfg: DictConfig, out_dir: Path, run_id: str | None = None) -> Logger:
    """The logger named by ``cfg.logger.name`` (``wandb`` or ``none``); it prints each evaluation when
    ``trainer.progress`` is false (no progress bar: the output is a log)."""
    name = cfg.logger.name
    echo = not bool(OmegaConf.select(cfg, "trainer.progress", default=True))
    if name == "none":
        return Logger(out_dir, echo=echo)
    if name == "wandb":
        return WandbLogger(out_dir, cfg, run_id=run_id, echo=echo)
    raise ValueError(f"logger must be wandb or none, got {name!r}")
