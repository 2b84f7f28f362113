"""NRI training steps/s: this checkout's model against a baseline revision's, interleaved in one process.

For each row (a relaxation, optionally with ``:P`` prediction steps) the script composes the real Hydra config
(``experiment=nri_cpu`` by default, small data sets so that set-up takes seconds), builds two real NRI tasks, and
gives one of them the model class of ``experiments/nri/model.py`` at ``--baseline`` (read with ``git show``,
loaded as a module) with the other's initial weights. Both train on the same batches and, by swapping torch's
generator state around each step, on the same sampling noise; whole trainer iterations (``TrainStep``:
zero_grad, ``training_step``, backward, optimizer and scheduler steps, under the run's ``flush_denormal``
setting) alternate between the two, one step each (order alternating too), so that both see the same load on a
shared machine. Reports per row the median ms/step and steps/s of each, the speed-up, and the largest relative
difference between the two runs' losses over the first 30 steps and over all (``--steps`` = warm-up + timed, per
model).

    python benchmarks/bench_nri_step.py                      # --threads 1; results/bench/nri_step_cpu.json
    python benchmarks/bench_nri_step.py --rows spanning_tree,indep:9 --steps 40 --out /tmp/b.json
    python benchmarks/bench_nri_step.py --quick              # 4 steps a row, writes only with --out
    python benchmarks/bench_nri_step.py model.decoder_hidden=128   # Hydra overrides for every row
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from experiments.common.runtime import (
    flush_denormal,
    git_commit,
    hardware,
    parse_with_overrides,
    seed_everything,
    write_bench_record,
)
from experiments.common.trainer import TrainStep

ROOT = Path(__file__).resolve().parents[1]

BASELINE = "8fe60c8"  # the last revision of experiments/nri/model.py before the fused message passing
DEFAULT_ROWS = "spanning_tree,ef_topk_fd,indep,spanning_tree:9"
SMALL_DATA = ["data.num_train=1024", "data.num_valid=128", "data.num_test=128", "trainer.progress=false"]


def baseline_module(rev: str) -> ModuleType:
    """``experiments/nri/model.py`` at git revision ``rev``, loaded as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:experiments/nri/model.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="nri_baseline_")) / "nri_model_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("nri_model_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


class Side:
    """One task (model, optimiser, batches, generator state) of the pair."""

    def __init__(self, cfg, model_cls: type | None) -> None:
        from experiments.common.trainer import batch_generator
        from experiments.nri.task import NRITask

        seed_everything(int(cfg.seed))
        self.task = NRITask(cfg, torch.device("cpu"))
        if model_cls is not None:  # the baseline's model, same constructor arguments and weights
            new = self.task.model
            mcfg = cfg.model
            old = model_cls(new.index.n, self.task.timesteps, encoder_hidden=int(mcfg.encoder_hidden),
                            decoder_hidden=int(mcfg.decoder_hidden), edge_types=int(mcfg.edge_types),
                            skip_first=bool(mcfg.skip_first), logits_per_edge=new.encoder.out)
            old.load_state_dict(new.state_dict())
            self.task.model = old
        module = self.task.module()
        module.train()
        opt, sched = self.task.configure_optimizers()
        self.step = TrainStep(self.task, module, opt, sched, cfg.trainer.get("grad_clip"))
        self.batches = self.task.train_batches(batch_generator(int(cfg.seed), 0))
        gen = torch.Generator()
        gen.manual_seed(int(cfg.seed) + 1)
        self.rng = gen.get_state()  # both sides start from the same noise
        self.times: list[float] = []
        self.losses: list[float] = []

    def run(self, i: int, timed: bool) -> None:
        batch = next(self.batches)
        torch.set_rng_state(self.rng)
        t0 = time.perf_counter()
        loss, _ = self.step(batch, i)
        t1 = time.perf_counter()
        self.rng = torch.get_rng_state()
        self.losses.append(float(loss.detach()))
        if timed:
            self.times.append(t1 - t0)


def bench_row(row: str, experiment: str, overrides: list[str], baseline: ModuleType, steps: int,
              warmup: int) -> dict[str, Any]:
    """Time one row: ``relaxation`` or ``relaxation:P``."""
    relaxation, _, p = row.partition(":")
    ov = [f"experiment={experiment}", f"relaxation={relaxation}", "device=cpu", "logger=none", *SMALL_DATA]
    if p:
        ov.append(f"model.prediction_steps={int(p)}")
    cfg = compose(ov + overrides)
    from experiments.nri.task import prediction_steps

    sides = {"baseline": Side(cfg, baseline.NRIModel), "new": Side(cfg, None)}
    with flush_denormal(bool(cfg.trainer.get("flush_denormal", True))):
        for i in range(steps):
            order = ("baseline", "new") if i % 2 == 0 else ("new", "baseline")
            for name in order:
                sides[name].run(i, timed=i >= warmup)
    ms = {k: 1e3 * statistics.median(s.times) for k, s in sides.items()}
    a, b = sides["baseline"].losses, sides["new"].losses
    diffs = [abs(x - y) / max(abs(x), 1e-30) for x, y in zip(a, b, strict=True)]
    return {"row": row, "relaxation": relaxation, "prediction_steps": prediction_steps(cfg, int(cfg.data.timesteps)),
            "batch_size": int(cfg.data.batch_size), "encoder_hidden": int(cfg.model.encoder_hidden),
            "decoder_hidden": int(cfg.model.decoder_hidden),
            "baseline_ms": round(ms["baseline"], 2), "new_ms": round(ms["new"], 2),
            "baseline_steps_per_s": round(1e3 / ms["baseline"], 3), "new_steps_per_s": round(1e3 / ms["new"], 3),
            "speedup": round(ms["baseline"] / ms["new"], 3),
            "baseline_ms_quartiles": [round(1e3 * q, 2) for q in statistics.quantiles(sides["baseline"].times, n=4)],
            "new_ms_quartiles": [round(1e3 * q, 2) for q in statistics.quantiles(sides["new"].times, n=4)],
            "loss_steps": len(a), "loss_max_rel_diff": max(diffs), "loss_max_rel_diff_30": max(diffs[:30]),
            "loss_first": [a[0], b[0]], "loss_last": [a[-1], b[-1]]}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| relaxation | P | baseline steps/s | new steps/s | speed-up | max rel. loss diff (30 steps) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['relaxation']} | {r['prediction_steps']} | {r['baseline_steps_per_s']:.2f} | "
                     f"{r['new_steps_per_s']:.2f} | {r['speedup']:.2f}x | {r['loss_max_rel_diff_30']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"relaxation[:P],... (default {DEFAULT_ROWS})")
    p.add_argument("--experiment", default="nri_cpu", help="experiment config (default nri_cpu)")
    p.add_argument("--baseline", default=BASELINE, help=f"git revision of the baseline model (default {BASELINE})")
    p.add_argument("--steps", type=int, default=60, help="steps per model and row, warm-up included (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quick", action="store_true", help="4 steps a row (a smoke test); writes only with --out")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/nri_step_cpu.json)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args, overrides = parse_with_overrides(p, argv)
    steps, warmup = (4, 1) if args.quick else (args.steps, args.warmup)
    if steps - warmup < 2 or warmup < 0:
        p.error("need --steps >= --warmup + 2 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    baseline = baseline_module(args.baseline)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    rows = []
    for row in args.rows.split(","):
        r = bench_row(row, args.experiment, overrides, baseline, steps, warmup)
        print(f"{r['row']}: baseline {r['baseline_ms']:.1f} ms, new {r['new_ms']:.1f} ms, x{r['speedup']:.2f}, "
              f"loss max rel diff {r['loss_max_rel_diff_30']:.2e} (30 steps), {r['loss_max_rel_diff']:.2e} (all)",
              flush=True)
        rows.append(r)
    table = markdown(rows)
    record = {
        "schema": 1,
        "command": "python " + shlex.join(["benchmarks/bench_nri_step.py", *argv]),
        "commit": git_commit(),
        "baseline": args.baseline,
        "experiment": args.experiment,
        "overrides": overrides,
        "quick": args.quick,
        "hardware": hardware(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "steps": steps,
        "warmup": warmup,
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "notes": ("ms/step: medians of whole trainer iterations (TrainStep), baseline and new alternating step by "
                  "step in one process on the same batches and noise; loss_max_rel_diff(_30) over all (the first 30) "
                  "steps of the pair, warm-up included"),
        "results": rows,
        "markdown": table,
    }
    print("\n" + table)
    write_bench_record(args.out, ROOT / "results" / "bench" / "nri_step_cpu.json", record, args.quick)
    return record


if __name__ == "__main__":
    main()
