"""Training throughput of the three experiments: steps/s of the shared trainer's iteration at the paper settings.

For each experiment and relaxation the script composes the real Hydra config (configs/, as run.py and the tests
do), builds the real Task, draws batches from ``task.train_batches`` and times whole training iterations exactly
as experiments/common/trainer.py runs them: ``task.training_step``, ``zero_grad``, ``backward``, the gradient clip
when ``trainer.grad_clip`` is set, ``optimizer.step``, ``scheduler.step`` and the trainer's on-device sums of the
logged scalars (one host sync every ``trainer.log_every`` steps). The device is synchronised before and after the
timed region only, never per step. Models, batch sizes and relaxations are the configs' (the paper settings); only
the data sets are cut so that set-up takes seconds (a step's cost does not depend on the data set's size):

- NRI: ``data.num_train=512 data.num_valid=128 data.num_test=128`` (generated once, cached under data/cache);
- VAE: MNIST from the data root (``../shared/data``);
- L2X (k = 10): ``data.limit_train=1000`` reviews, embedded with the word2vec vectors of the full training set
  when they are cached (data/cache/beer_word2vec_200d_*.txt); when they are not, they are trained first (minutes,
  and cached for the real runs), except with ``--quick``, which trains tiny 16-d vectors on the 1000 reviews in
  seconds instead (the step is then cheaper than the paper's: the record says so).

For NRI the per-iteration split (data, encoder, sampler, decoder + likelihood, backward, optimizer) comes from
``experiments.nri.profile.profile``, which synchronises around each part and samples with the relaxation directly
rather than through the estimator, so its total is close to, not equal to, the whole-iteration time; this script
adds ``logging``: the trainer's per-step log bookkeeping, timed on its own.

    python benchmarks/bench_training.py                            # --device auto; results/bench/training_<device>.json
    python benchmarks/bench_training.py --device cpu --threads 2   # CPU, 2 torch threads
    python benchmarks/bench_training.py --experiments nri:spanning_tree+indep,vae --iters 50
    python benchmarks/bench_training.py --quick --out /tmp/bench.json   # a few steps each: a smoke test
    python benchmarks/bench_training.py --compile both               # eager and compiled steps/s side by side
    python benchmarks/bench_training.py nri:model.decoder_hidden=128 trainer.log_every=10   # Hydra overrides

``--experiments`` takes ``name`` (default relaxations: nri spanning_tree, indep, ef_topk; vae gumbel_softmax;
l2x corr_topk) or ``name:rel1+rel2``. Positional Hydra overrides apply to every experiment; prefix one with
``<experiment>:`` to apply it to that experiment only. Each record gives ms/iter, steps/s and the minutes a
paper-length run (``experiment.max_steps``: NRI 50,000, VAE 100,000, L2X 15,500 = 20 epochs) would spend in
training steps at that rate (evaluation not included). ``--quick`` times 2 iterations after 1 warm-up and profiles
one NRI iteration, and writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from experiments import task_class
from experiments.common.loggers import RunningMeans
from experiments.common.runtime import (
    flush_denormal,
    git_commit,
    hardware,
    parse_with_overrides,
    resolve_device,
    seed_everything,
    write_bench_record,
    write_record,
)
from experiments.common.trainer import TrainStep, batch_generator, tf32_matmuls

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENTS = ("nri", "vae", "l2x")
DEFAULT_RELAXATIONS: dict[str, tuple[str, ...]] = {
    "nri": ("spanning_tree", "indep", "ef_topk"),
    "vae": ("gumbel_softmax",),
    "l2x": ("corr_topk",),
}
ESTIMATOR = "relaxed"
# small data sets (set-up in seconds); the batch size, model and relaxation stay the paper's
SMALL_DATA: dict[str, tuple[str, ...]] = {
    "nri": ("data.num_train=512", "data.num_valid=128", "data.num_test=128"),
    "vae": (),
    "l2x": ("k=10", "data.limit_train=1000"),
}
# --quick, when the full training set's word2vec vectors are not cached: tiny vectors trained in seconds
QUICK_W2V = ("data.embedding_dim=16", "data.w2v.epochs=1", "data.w2v.workers=1")
NRI_PARTS = ("data", "encoder", "sampler", "decoder", "backward", "optimizer", "logging")
COMPILE_MODES = ("off", "on", "both")
DEFAULT_ITERS = {"cpu": (3, 20), "cuda": (10, 100), "quick": (1, 2)}  # (warmup, timed iterations)


# ------------------------------------------------------------------------------------------------ config


def compose(overrides: list[str]) -> DictConfig:
    """configs/config.yaml composed with ``overrides``, as run.py (and tests/conftest.py) do."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(base: list[str], user: list[str]) -> list[str]:
    """``base`` then ``user``, dropping the base overrides whose key the user sets (the user's choice wins)."""
    keys = {_override_key(o) for o in user}
    return [o for o in base if _override_key(o) not in keys] + list(user)


def split_overrides(overrides: list[str]) -> dict[str, list[str]]:
    """Hydra overrides per experiment: ``nri:model.decoder_hidden=64`` goes to NRI only, ``key=value`` to all."""
    out: dict[str, list[str]] = {name: [] for name in EXPERIMENTS}
    for o in overrides:
        head, sep, rest = o.partition(":")
        if sep and head in EXPERIMENTS and "=" not in head:
            out[head].append(rest)
        else:
            for name in EXPERIMENTS:
                out[name].append(o)
    return out


def parse_experiments(spec: str) -> list[tuple[str, tuple[str, ...]]]:
    """``"nri:spanning_tree+indep,vae"`` -> [("nri", ("spanning_tree", "indep")), ("vae", ("gumbel_softmax",))]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rels = item.partition(":")
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; legal: {', '.join(EXPERIMENTS)}")
        out.append((name, tuple(r for r in rels.split("+") if r) or DEFAULT_RELAXATIONS[name]))
    if not out:
        raise ValueError("no experiment given")
    return out


def l2x_embeddings(overrides: list[str], quick: bool) -> tuple[list[str], str]:
    """Overrides that give L2X its word vectors without retraining them for the cut training set.

    Returns (overrides, note): ``data.embeddings=<cached full-training-set word2vec>``; when that file is missing,
    it is trained first (minutes), or with ``quick`` the tiny :data:`QUICK_W2V` vectors are used instead.
    """
    from experiments.l2x.data import default_embeddings_path, ensure_embeddings, resolve_files, word2vec_files

    cfg = compose([o for o in overrides if _override_key(o) != "data.limit_train"])
    if cfg.data.get("embeddings"):
        return [], f"given: {cfg.data.embeddings}"
    train_files = word2vec_files(cfg, resolve_files(cfg)[0])
    path = default_embeddings_path(cfg, train_files)
    if not path.is_file():
        if quick:
            return list(QUICK_W2V), "quick: tiny 16-d word2vec trained on the cut training set (not the paper's 200-d)"
        print(f"[bench] training the full training set's word2vec first (minutes) -> {path}", file=sys.stderr)
        ensure_embeddings(cfg, train_files, progress=False)
    return [f"data.embeddings='{path}'"], f"cached word2vec of the full training set: {path.name}"


def build_cfg(name: str, relaxation: str, device: str, user: list[str],
              quick: bool) -> tuple[DictConfig, list[str], str | None]:
    """The composed config of one benchmark row, the overrides it was composed with and, for L2X, a note on its
    word vectors."""
    from experiments.common.config import validate_config

    base = [f"experiment={name}", f"relaxation={relaxation}", f"estimator={ESTIMATOR}", "logger=none",
            f"device={device}", "trainer.progress=false", *SMALL_DATA[name]]
    overrides = merge_overrides(base, user)
    note = None
    if name == "l2x":
        extra, note = l2x_embeddings(overrides, quick)
        overrides = merge_overrides(overrides, extra)
    cfg = compose(overrides)
    validate_config(cfg)
    return cfg, overrides, note


# ------------------------------------------------------------------------------------------------ timing


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only; CPU work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LogSums:
    """The trainer's log bookkeeping (:class:`RunningMeans`, one host sync every ``log_every`` steps) and its check
    of the training loss."""

    def __init__(self, log_every: int) -> None:
        self.log_every = max(1, int(log_every))
        self.meter = RunningMeans()

    def add(self, loss: Tensor, logs: dict[str, Tensor], step: int) -> None:
        self.meter.add({"train/loss": loss, **logs})
        if step % self.log_every == 0:
            means = self.meter.pop()
            if not math.isfinite(means["train/loss"]):
                raise FloatingPointError(f"non-finite training loss at step {step}")


def time_training(cfg: DictConfig, iters: int, warmup: int, log_reps: int = 200,
                  compiled: bool = False) -> dict[str, Any]:
    """Build the task as the trainer does and time ``iters`` whole training iterations after ``warmup`` ones,
    with ``trainer.flush_denormal`` and ``trainer.tf32`` as the trainer sets them; ``compiled``: the trainer's
    compiled step (``trainer.compile=true``; at least 3 warm-up iterations, the first one compiles).

    Returns batch size, set-up seconds, ms/iter, steps/s, the logging bookkeeping's ms per step (timed alone over
    ``log_reps`` steps), on CUDA the peak memory and, compiled, the first iteration's seconds (``compile_s``: the
    compilation) and dynamo's counts (``recompiles``: frames compiled after the first iteration).
    """
    device = resolve_device(str(cfg.device))
    with flush_denormal(bool(cfg.trainer.get("flush_denormal", True))), \
            tf32_matmuls(bool(cfg.trainer.get("tf32", True)), device):
        return _time_training(cfg, iters, max(warmup, 3) if compiled else warmup, log_reps, compiled)


def _time_training(cfg: DictConfig, iters: int, warmup: int, log_reps: int, compiled: bool = False) -> dict[str, Any]:
    name = str(cfg.experiment.name)
    tcfg = cfg.trainer
    grad_clip = tcfg.get("grad_clip")
    log = LogSums(int(tcfg.get("log_every", 50)))
    seed_everything(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    t0 = time.perf_counter()
    task = task_class(name)(cfg, device)
    module = task.module().to(device)
    optimizer, scheduler = task.configure_optimizers()
    step_fn = TrainStep(task, module, optimizer, scheduler, grad_clip, compiled=compiled, device=device)
    batches: Iterator[Any] = iter(task.train_batches(batch_generator(int(cfg.seed), 0, device)))
    setup_s = time.perf_counter() - t0
    module.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, t = 0, time.perf_counter()
    loss, logs = torch.zeros(()), {}
    first_s = None
    window_start = time.time()
    for i in range(warmup + iters):  # the trainer's own iteration (TrainStep)
        if i == warmup:
            sync(device)
            t, window_start = time.perf_counter(), time.time()
        loss, logs = step_fn(next(batches), step)
        step += 1
        log.add(loss, logs, step)
        if i == 0:
            sync(device)
            first_s = time.perf_counter() - t
    sync(device)
    elapsed = time.perf_counter() - t
    window = [round(window_start, 3), round(time.time(), 3)]  # wall clock of the timed region (packed runs' overlap)
    # the logging bookkeeping alone, on the last step's scalars (for the per-iteration split)
    loss, logs = loss.detach(), {k: v.detach() for k, v in logs.items()}
    alone = LogSums(log.log_every)
    sync(device)
    t = time.perf_counter()
    for i in range(log_reps):
        alone.add(loss, logs, i + 1)
    sync(device)
    logging_ms = 1e3 * (time.perf_counter() - t) / log_reps
    out = {
        "batch_size": int(cfg.data.batch_size),
        "setup_s": round(setup_s, 2),
        "warmup": warmup,
        "iters": iters,
        "timed_s": round(elapsed, 4),
        "ms_per_iter": round(1e3 * elapsed / iters, 3),
        "steps_per_s": round(iters / elapsed, 3),
        "timed_window_unix": window,
        "logging_ms": round(logging_ms, 4),
        "compiled": compiled,
    }
    if compiled:
        out.update(compile_s=round(first_s or 0.0, 2), **step_fn.counts)
    extras = task.record_extras()
    out.update({k: v for k, v in extras.items() if isinstance(v, (int, float, str))})
    if isinstance(extras.get("data"), dict) and "embedding_dim" in extras["data"]:
        out["embedding_dim"] = int(extras["data"]["embedding_dim"])
    if device.type == "cuda":
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def nri_split(cfg: DictConfig, iters: int, warmup: int, logging_ms: float) -> dict[str, Any]:
    """Milliseconds per part of an NRI iteration from :func:`experiments.nri.profile.profile`, plus ``logging``."""
    from experiments.nri.profile import profile

    p = profile(cfg, iters=iters, warmup=warmup)
    ms = {**p["ms_per_iter"], "logging": round(logging_ms, 4)}
    total = sum(ms.values())
    return {"ms": ms, "total_ms": round(total, 2), "iters_per_s": round(1e3 / total, 3),
            "sampler_share": round(ms["sampler"] / total, 4), "iters": iters, "warmup": warmup,
            "source": "experiments.nri.profile.profile (device synced around each part) + logging timed here"}


def bench_row(name: str, relaxation: str, device: str, user: list[str], iters: int, warmup: int,
              split_iters: tuple[int, int] | None = None, quick: bool = False,
              compile_mode: str = "off", split: bool = True) -> dict[str, Any]:
    """One experiment x relaxation: the config, the whole-iteration timing, the NRI split (``split_iters`` =
    (warmup, iterations) of the profile, default the same as the timing's; none when ``split`` is false), the
    paper-run estimate.
    ``compile_mode``: ``off`` (eager), ``on`` (the compiled step; ``compiled: true`` in the row) or ``both`` (eager
    in the row's main keys, the compiled step's figures under ``compiled_step``, and their ratio)."""
    cfg, overrides, note = build_cfg(name, relaxation, device, user, quick)
    row: dict[str, Any] = {"experiment": name, "relaxation": str(cfg.relaxation.name),
                           "estimator": str(cfg.estimator.name), "tau": float(cfg.relaxation.tau)}
    if note is not None:
        row["embeddings"] = note
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    row.update(time_training(cfg, iters, warmup, compiled=compile_mode == "on"))
    steps = int(cfg.experiment.max_steps)
    row["paper_run_steps"] = steps
    row["paper_run_minutes"] = round(steps / row["steps_per_s"] / 60.0, 1)
    if compile_mode == "both":
        gc.collect()
        c = time_training(cfg, iters, warmup, compiled=True)
        keep = ("warmup", "iters", "timed_s", "ms_per_iter", "steps_per_s", "compile_s", "frames", "graphs",
                "recompiles", "peak_memory_mib")
        row["compiled_step"] = {k: c[k] for k in keep if k in c}
        row["compiled_step"]["paper_run_minutes"] = round(steps / c["steps_per_s"] / 60.0, 1)
        row["compiled_speedup"] = round(c["steps_per_s"] / row["steps_per_s"], 3)
    if name == "nri" and split:
        split_warmup, split_n = split_iters if split_iters is not None else (warmup, iters)
        row["split"] = nri_split(cfg, split_n, split_warmup, row["logging_ms"])
    row["overrides"] = overrides
    return row


# ------------------------------------------------------------------------------------------------ report


def _num(x: float) -> str:
    """Three significant figures, without exponents for the usual range."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def markdown(rows: list[dict[str, Any]], device: str, threads: int) -> str:
    """Two compact tables: throughput of every row, then the NRI per-iteration split."""
    both = any("compiled_step" in r for r in rows)
    extra_head, extra_rule = (" compiled steps/s | compile (s) | recompiles | speed-up |", "---:|---:|---:|---:|") \
        if both else ("", "")
    lines = [f"| experiment | relaxation | estimator | batch | device ({threads} thr) | ms/iter | steps/s "
             f"| paper steps | paper run (min) |{extra_head}",
             f"|---|---|---|---:|---|---:|---:|---:|---:|{extra_rule}"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['experiment']} | {r['relaxation']} | | | {device} | error | | | |"
                         + " |" * (4 if both else 0))
            continue
        mode = " (compiled)" if r.get("compiled") else ""
        line = (f"| {r['experiment']} | {r['relaxation']}{mode} | {r['estimator']} | {r['batch_size']} | {device} "
                f"| {_num(r['ms_per_iter'])} | {_num(r['steps_per_s'])} | {r['paper_run_steps']} "
                f"| {r['paper_run_minutes']:.0f} |")
        if both:
            c = r.get("compiled_step")
            line += (f" {_num(c['steps_per_s'])} | {c['compile_s']:.1f} | {c['recompiles']} "
                     f"| x{r['compiled_speedup']:.2f} |" if c else " | | | |")
        lines.append(line)
    split = [r for r in rows if "split" in r]
    if split:
        lines += ["", "| NRI relaxation | " + " | ".join(NRI_PARTS) + " | total (ms) | sampler share |",
                  "|---|" + "---:|" * (len(NRI_PARTS) + 2)]
        for r in split:
            s = r["split"]
            parts = " | ".join(f"{s['ms'][p]:.2f}" for p in NRI_PARTS)
            lines.append(f"| {r['relaxation']} | {parts} | {s['total_ms']:.1f} | {100 * s['sampler_share']:.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from the command line (see the module docstring); returns the JSON record."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="positional: Hydra overrides, optionally prefixed by '<experiment>:'")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--experiments", default="nri,vae,l2x",
                   help="comma-separated names, each optionally ':rel1+rel2' (default nri,vae,l2x)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 20 CPU, 100 GPU, 2 quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default 3 CPU, 10 GPU, 1 quick)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--quick", action="store_true", help="a few iterations each (a smoke test); writes only with --out")
    p.add_argument("--compile", default="off", choices=COMPILE_MODES,
                   help="off: eager steps (default); on: the compiled step (trainer.compile=true); both: side by side")
    p.add_argument("--no-split", action="store_true", help="skip the NRI per-part profile (e.g. for packed runs)")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/training_<device>.json)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args, overrides = parse_with_overrides(p, argv)
    try:
        plan = parse_experiments(args.experiments)
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    warmup, iters = DEFAULT_ITERS["quick" if args.quick else device.type]
    warmup = warmup if args.warmup is None else args.warmup
    iters = iters if args.iters is None else args.iters
    if iters < 1 or warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    per_exp = split_overrides(overrides)

    t0 = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    default_out = ROOT / "results" / "bench" / f"training_{device.type}.json"

    def record_of(rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        table = markdown(rows, device.type, torch.get_num_threads())
        return {
            "command": "python " + shlex.join(["benchmarks/bench_training.py", *argv]),
            "commit": git_commit(),
            "quick": args.quick,
            "complete": complete,
            "device": device.type,
            "hardware": hardware(device),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_before": [round(x, 2) for x in load_before] if load_before else None,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()] if load_before else None,
            "warmup": warmup,
            "iters": iters,
            "compile": args.compile,
            "wall_time_s": round(time.perf_counter() - t0, 2),
            "notes": ("steps/s: whole trainer iterations (training_step, zero_grad, backward, optimizer.step, "
                      "scheduler.step, log sums), device synced only around the timed region; paper_run_minutes = "
                      "paper_run_steps / steps_per_s / 60, training steps only (no evaluation)"),
            "results": rows,
            "markdown": table,
        }

    rows: list[dict[str, Any]] = []
    todo = [(name, rel) for name, relaxations in plan for rel in relaxations]
    for i, (name, rel) in enumerate(todo):
        try:
            row = bench_row(name, rel, device.type, per_exp[name], iters, warmup,
                            split_iters=(0, 1) if args.quick else None, quick=args.quick,
                            compile_mode=args.compile, split=not args.no_split)
            c = row.get("compiled_step")
            print(f"[bench] {name}/{rel}: {row['ms_per_iter']:.1f} ms/iter, {row['steps_per_s']:.2f} steps/s "
                  f"(set-up {row['setup_s']:.1f} s)" + (f"; compiled {c['steps_per_s']:.2f} steps/s, compile "
                  f"{c['compile_s']:.1f} s, {c['recompiles']} recompiles" if c else ""), file=sys.stderr,
                  flush=True)
        except Exception as e:  # one missing data set must not hide the other rows
            row = {"experiment": name, "relaxation": rel, "error": f"{type(e).__name__}: {e}"}
            print(f"[bench] {name}/{rel} failed: {row['error']}", file=sys.stderr, flush=True)
        rows.append(row)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if i + 1 < len(todo) and args.out is not None:  # a call cut short keeps the rows done ("complete": false)
            write_record(Path(args.out), record_of(rows, complete=False))
    record = record_of(rows, complete=True)
    print(record["markdown"])
    write_bench_record(args.out, default_out, record, args.quick)
    return record


if __name__ == "__main__":
    sys.exit(1 if any("error" in r for r in main()["results"]) else 0)
