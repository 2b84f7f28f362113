"""Run a queue of training runs inside one short, time-limited slot (a lent GPU, a cluster job) and pack what the
next slot needs to continue into a few files.

    python scripts/gpu_campaign.py QUEUE OUTDIR --minutes M [--resume-from DIR] [--jobs N] [--workdir W]

QUEUE (the format is in docs/gpu.md): one run a line,
``NAME OVERRIDE [OVERRIDE ...]`` (``#`` comments and blank lines ignored), or a YAML list of
``{name: NAME, overrides: [...]}``. Every run is ``python run.py <overrides> hydra.run.dir=<workdir>/<NAME>
trainer.max_minutes=<its budget> trainer.progress=false`` plus ``logger=none`` and ``device=auto`` unless the line
sets them. Up to ``--jobs`` runs go at once (default 4 on CUDA, 1 on the CPU); each is started with the minutes
left to the slot less a margin for saving and packing (``--margin-s``), so the trainer saves ``last.pt`` and
writes ``"finished": false`` itself when time is up; a run still alive at the slot's end is interrupted (SIGINT:
the trainer saves ``last.pt``), then killed.

OUTDIR receives at most 8 flat files, each under 16 MiB (the script fails loudly, naming the file, otherwise):
``records.tar.gz`` (every run folder without its checkpoints: metrics.json, history.jsonl, .hydra/, the run's
log ``campaign.log``, plots), ``ckpt_<i>.tar`` (``<NAME>/last.pt`` and ``<NAME>/best.pt`` of the runs that are not
finished, and ``best.pt`` of the finished ones while room is left; what does not fit is listed under ``dropped``),
and ``queue_state.json`` (per run: finished / partial at step S / failed / not started, where its files are, and
``compile_fell_back`` with the reason when the trainer's compile guard made it run eagerly).
``--resume-from DIR`` (a previous call's OUTDIR) unpacks those files into the work folder first; finished runs are
skipped, partial ones resume from their ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
MIB = 2**20
MAX_FILE = 16 * MIB  # every file in OUTDIR stays under this
MAX_FILES = 8
RECORDS = "records.tar.gz"
STATE = "queue_state.json"
CKPT_FILES = ("last.pt", "best.pt")
RESERVED = ("hydra.run.dir", "trainer.max_minutes", "trainer.progress")  # the script sets these
DEFAULTS = {"logger": "logger=none", "device": "device=auto"}  # unless the line sets them
FELL_BACK = "compile_fell_back"  # queue_state.json: the run's compiled step was rejected, it ran eagerly
FALLBACK_PREFIX = "fell back: "  # metrics.json's "compile" entry then (experiments.common.trainer)


@dataclass
class Run:
    """One queue entry."""

    name: str
    overrides: list[str]
    line: int = 0
    state: dict[str, Any] = field(default_factory=dict)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parse_queue(path: Path) -> list[Run]:
    """The runs of a queue file (text or YAML, see the module docstring); ValueError naming the line otherwise."""
    path = Path(path)
    entries: list[tuple[int, str, list[str]]] = []
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if not isinstance(data, list):
            raise ValueError(f"{path}: a YAML queue must be a list of {{name: NAME, overrides: [...]}}")
        for i, item in enumerate(data, 1):
            if not isinstance(item, dict) or "name" not in item or not isinstance(item.get("overrides", []), list):
                raise ValueError(f"{path}: entry {i} must be {{name: NAME, overrides: [...]}}, got {item!r}")
            entries.append((i, str(item["name"]), [str(o) for o in item.get("overrides", [])]))
    else:
        for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, *overrides = line.split()
            entries.append((i, name, overrides))
    runs: list[Run] = []
    seen: set[str] = set()
    for i, name, overrides in entries:
        where = f"{path}:{i}"
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"{where}: run name {name!r} must match [A-Za-z0-9_.-]+")
        if name in seen:
            raise ValueError(f"{where}: run name {name!r} appears twice; names must be unique")
        seen.add(name)
        for o in overrides:
            if o.startswith("-"):
                raise ValueError(f"{where}: {o!r}: a queue line is one single run (Hydra overrides only, no -m)")
            if "=" not in o:
                raise ValueError(f"{where}: {o!r} is not a Hydra override key=value")
            if _key(o) in RESERVED:
                raise ValueError(f"{where}: {o!r}: the campaign sets {', '.join(RESERVED)} itself")
        runs.append(Run(name, list(overrides), i))
    if not runs:
        raise ValueError(f"{path}: the queue has no runs")
    return runs


def command(run: Run, workdir: Path, minutes: float) -> list[str]:
    """The run.py command line of ``run`` with its folder and budget."""
    keys = {_key(o) for o in run.overrides}
    extra = [v for k, v in DEFAULTS.items() if k not in keys]
    return [sys.executable, str(ROOT / "run.py"), *run.overrides, *extra, f"hydra.run.dir={workdir / run.name}",
            f"trainer.max_minutes={minutes:.3f}", "trainer.progress=false"]


def run_status(run_dir: Path) -> dict[str, Any]:
    """``finished`` / ``partial`` (with the step reached) from the run's metrics.json or last.pt; ``new`` when
    neither exists. A run whose compiled step the trainer's compile guard rejected (metrics.json's ``compile`` is
    ``"fell back: <reason>"``: it ran eagerly, docs/gpu.md) also gets ``compile_fell_back: <reason>``."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        record = json.loads(metrics.read_text())
        finished = bool(record.get("finished", True))
        status = {"status": "finished" if finished else "partial", "step": record.get("step")}
        reason = compile_fallback(record)
        return status if reason is None else {**status, FELL_BACK: reason}
    if (run_dir / "last.pt").is_file():  # interrupted before writing its record
        import torch

        ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
        return {"status": "partial", "step": int(ckpt["state"]["step"])}
    return {"status": "new", "step": None}


def compile_fallback(record: dict[str, Any]) -> str | None:
    """The reason the compile guard switched a run to eager mode, from its metrics.json record; None otherwise."""
    entry = record.get("compile")
    if isinstance(entry, str) and entry.startswith(FALLBACK_PREFIX):
        return entry[len(FALLBACK_PREFIX):]
    return None


def carry_fallback(state: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """``state`` with a previous slot's ``compile_fell_back`` kept (a run that fell back in an earlier segment
    stays marked, even when a resumed segment compiled)."""
    if FELL_BACK in previous and FELL_BACK not in state:
        return {**state, FELL_BACK: f"{previous[FELL_BACK]} (in an earlier slot)"}
    return state


def _last_step(run_dir: Path) -> int | None:
    """The latest step in the run's history.jsonl (for progress lines), cheaply from the file's tail."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4096))
        lines = fh.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


# ------------------------------------------------------------------------------------------------ packing


def plan_checkpoints(runs: list[Run], workdir: Path, slots: int, cap: int = MAX_FILE - MIB
                     ) -> tuple[list[list[Path]], list[str]]:
    """Group checkpoint files into at most ``slots`` tarballs of at most ``cap`` bytes each (first fit, largest
    first). Unfinished runs' ``last.pt`` and ``best.pt`` come first (the next slot needs them); finished runs'
    ``best.pt`` fill the room left. Returns the groups (paths relative to ``workdir``) and what was dropped.
    Raises ValueError naming a needed checkpoint that alone exceeds ``cap``."""
    needed, optional = [], []
    for run in runs:
        d = workdir / run.name
        if run.state.get("status") == "finished":
            optional += [d / "best.pt"] if (d / "best.pt").is_file() else []
        else:
            pair = [d / f for f in CKPT_FILES if (d / f).is_file()]
            if pair:
                needed.append(pair)
    bins: list[list[Path]] = []
    sizes: list[int] = []
    dropped: list[str] = []

    def place(files: list[Path]) -> bool:
        size = sum(f.stat().st_size + 1024 for f in files)
        for i in range(len(bins)):
            if sizes[i] + size <= cap:
                bins[i] += files
                sizes[i] += size
                return True
        if len(bins) < slots and size <= cap:
            bins.append(list(files))
            sizes.append(size)
            return True
        return False

    for files in sorted(needed, key=lambda fs: -sum(f.stat().st_size for f in fs)):
        size = sum(f.stat().st_size for f in files)
        if size > cap:
            raise ValueError(f"checkpoints of run {files[0].parent.name} ({size / MIB:.1f} MiB) exceed the "
                             f"{cap / MIB:.0f} MiB a packed file may hold: {', '.join(str(f) for f in files)}")
        if not place(files):
            dropped += [str(f.relative_to(workdir)) for f in files]
    for f in sorted(optional, key=lambda f: -f.stat().st_size):
        if not place([f]):
            dropped.append(str(f.relative_to(workdir)))
    return [[f.relative_to(workdir) for f in b] for b in bins], dropped


def _records_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    if name.endswith(".pt") or name.endswith(".pt.tmp") or "/wandb" in f"/{info.name}":
        return None
    return info


def pack(runs: list[Run], workdir: Path, outdir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write OUTDIR's files (see the module docstring) and return the queue state. Raises ValueError naming a file
    over the limit."""
    outdir.mkdir(parents=True, exist_ok=True)
    for old in list(outdir.glob("ckpt_*.tar")) + [outdir / RECORDS, outdir / STATE]:
        old.unlink(missing_ok=True)
    with tarfile.open(outdir / RECORDS, "w:gz") as tar:
        for run in runs:
            if (workdir / run.name).is_dir():
                tar.add(workdir / run.name, arcname=run.name, filter=_records_filter)
    groups, dropped = plan_checkpoints(runs, workdir, MAX_FILES - 2)
    where: dict[str, list[str]] = {}
    for i, group in enumerate(groups, 1):
        archive = f"ckpt_{i}.tar"
        with tarfile.open(outdir / archive, "w") as tar:
            for rel in group:
                tar.add(workdir / rel, arcname=str(rel))
                where.setdefault(rel.parts[0], []).append(f"{archive}:{rel}")
    state = {**meta, "runs": {}, "dropped": dropped, "files": []}
    for run in runs:
        state["runs"][run.name] = {**run.state, "overrides": run.overrides, "checkpoints": where.get(run.name, [])}
    (outdir / STATE).write_text(json.dumps(state, indent=2) + "\n")
    files = sorted(p for p in outdir.iterdir())
    state["files"] = [p.name for p in files]
    (outdir / STATE).write_text(json.dumps(state, indent=2) + "\n")
    too_big = [f"{p.name} ({p.stat().st_size / MIB:.1f} MiB)" for p in files if p.stat().st_size >= MAX_FILE]
    if too_big or len(files) > MAX_FILES or any(p.is_dir() for p in files):
        raise ValueError(f"{outdir} must hold at most {MAX_FILES} plain files under 16 MiB; over the limit: "
                         f"{', '.join(too_big) or f'{len(files)} files'}")
    return state


def unpack(resume_from: Path, workdir: Path) -> dict[str, Any]:
    """Restore run folders from a previous call's OUTDIR into ``workdir``; return its queue state."""
    state_path = Path(resume_from) / STATE
    if not state_path.is_file():
        raise ValueError(f"--resume-from must be a previous call's OUTDIR; {state_path} is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    for archive in [Path(resume_from) / RECORDS, *sorted(Path(resume_from).glob("ckpt_*.tar"))]:
        if archive.is_file():
            with tarfile.open(archive) as tar:
                tar.extractall(workdir, filter="data")
    return json.loads(state_path.read_text())


# ------------------------------------------------------------------------------------------------ running


def default_jobs() -> int:
    """4 concurrent runs on a CUDA device (small models leave most of a big GPU idle), 1 on the CPU."""
    import torch

    return 4 if torch.cuda.is_available() else 1


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGINT (the trainer saves last.pt), then SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_queue(runs: list[Run], workdir: Path, minutes: float, jobs: int, margin_s: float,
              min_run_s: float = 20.0, poll_s: float = 1.0, report_every_s: float = 30.0) -> None:
    """Run the pending runs, ``jobs`` at a time, each with the slot's remaining minutes less ``margin_s``; a run
    that would get less than ``min_run_s`` is not started. Updates every run's ``state``."""
    t0 = time.monotonic()
    end = t0 + 60.0 * minutes
    pending = [r for r in runs if r.state.get("status") != "finished"]
    active: dict[str, tuple[Run, subprocess.Popen, Any]] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    last_report = t0
    while pending or active:
        now = time.monotonic()
        while pending and len(active) < jobs:
            budget_s = end - now - margin_s
            if budget_s < min_run_s:
                for run in pending:
                    run.state.setdefault("status", "new")
                    run.state["note"] = "not started: too little time left in the slot"
                    print(f"[campaign] {run.name}: not started (too little time left)", flush=True)
                pending = []
                break
            run = pending.pop(0)
            (workdir / run.name).mkdir(parents=True, exist_ok=True)
            cmd = command(run, workdir, budget_s / 60.0)
            log = open(workdir / run.name / "campaign.log", "a")
            log.write(f"$ {' '.join(cmd[1:])}\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            active[run.name] = (run, proc, log)
            print(f"[campaign] start {run.name} (budget {budget_s / 60:.2f} min): {' '.join(run.overrides)}",
                  flush=True)
        for name, (run, proc, log) in list(active.items()):
            if proc.poll() is None and time.monotonic() > end - 5.0:
                print(f"[campaign] {name}: still running at the slot's end; interrupting", flush=True)
                _stop(proc)
            if proc.poll() is not None:
                log.close()
                run.state.update(run_status(workdir / name), returncode=proc.returncode)
                if proc.returncode != 0:
                    run.state["status"] = "failed" if run.state["status"] == "new" else run.state["status"]
                    run.state["note"] = f"exit code {proc.returncode}; see {name}/campaign.log"
                step = run.state.get("step")
                fell_back = (f"; COMPILE FELL BACK, ran eagerly: {run.state[FELL_BACK]}"
                             if FELL_BACK in run.state else "")
                print(f"[campaign] end {name}: {run.state['status']}"
                      f"{'' if step is None else f' at step {step}'} (exit {proc.returncode}){fell_back}", flush=True)
                del active[name]
        if active and time.monotonic() - last_report >= report_every_s:
            last_report = time.monotonic()
            left = (end - last_report) / 60
            print("[campaign] " + ", ".join(f"{n} step {_last_step(workdir / n)}" for n in active)
                  + f" ({left:.1f} min left)", flush=True)
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("queue", type=Path, help="queue file (*.queue / *.txt, or *.yaml)")
    p.add_argument("outdir", type=Path, help="folder for the <= 8 files to bring back")
    p.add_argument("--minutes", type=float, required=True, help="the slot's wall-clock minutes for this call")
    p.add_argument("--resume-from", type=Path, default=None, help="a previous call's OUTDIR to continue from")
    p.add_argument("--jobs", type=int, default=None, help="concurrent runs (default 4 on CUDA, 1 on the CPU)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the run folders live (default: <OUTDIR>.runs beside OUTDIR)")
    p.add_argument("--margin-s", type=float, default=None,
                   help="seconds kept for start-up, saving and packing (default min(60 + 3 M, 18 M))")
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error("--minutes must be > 0")
    try:
        runs = parse_queue(args.queue)
    except (OSError, ValueError) as e:
        p.error(str(e))
    jobs = args.jobs if args.jobs is not None else default_jobs()
    if jobs < 1:
        p.error("--jobs must be >= 1")
    outdir = args.outdir.resolve()
    workdir = (args.workdir or outdir.with_name(outdir.name + ".runs")).resolve()
    margin_s = args.margin_s if args.margin_s is not None else min(60.0 + 3.0 * args.minutes, 18.0 * args.minutes)
    t0 = time.time()
    previous: dict[str, Any] = {}
    if args.resume_from is not None:
        previous = unpack(args.resume_from, workdir).get("runs", {})
    workdir.mkdir(parents=True, exist_ok=True)
    for run in runs:
        run.state = run_status(workdir / run.name)
        if run.name in previous and run.state["status"] == "new" and previous[run.name].get("status") == "finished":
            run.state = {"status": "finished", "step": previous[run.name].get("step")}
        run.state = carry_fallback(run.state, previous.get(run.name, {}))
        if run.state["status"] == "finished":
            print(f"[campaign] {run.name}: finished already; skipped", flush=True)
    print(f"[campaign] {len(runs)} runs, {jobs} at a time, {args.minutes:g} min (margin {margin_s:.0f} s); "
          f"run folders in {workdir}", flush=True)
    run_queue(runs, workdir, args.minutes, jobs, margin_s)
    meta = {"queue": args.queue.name, "minutes": args.minutes, "jobs": jobs, "commit": _git_commit(),
            "resumed_from": args.resume_from.name if args.resume_from else None,
            "wall_time_s": round(time.time() - t0, 1)}
    try:
        state = pack(runs, workdir, outdir, meta)
    except ValueError as e:
        print(f"[campaign] PACKING FAILED: {e}", file=sys.stderr, flush=True)
        return 2
    counts: dict[str, int] = {}
    for r in state["runs"].values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"[campaign] packed {', '.join(state['files'])} into {outdir}; runs: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), flush=True)
    fell_back = [f"{name} ({r[FELL_BACK]})" for name, r in state["runs"].items() if FELL_BACK in r]
    if fell_back:
        print(f"[campaign] COMPILE FELL BACK (these runs ran eagerly; queue_state.json: {FELL_BACK}): "
              f"{'; '.join(fell_back)}", file=sys.stderr, flush=True)
    if state["dropped"]:
        print(f"[campaign] DROPPED (no room in {MAX_FILES} files of 16 MiB): {', '.join(state['dropped'])}",
              file=sys.stderr, flush=True)
    if counts.get("finished", 0) < len(runs):
        print(f"[campaign] to continue in the next slot: python scripts/gpu_campaign.py {args.queue} <NEW_OUTDIR> "
              f"--minutes M --resume-from {args.outdir}", flush=True)
    return 2 if state["dropped"] else 0


def _git_commit() -> str | None:
    """HEAD's commit, or None. Not experiments.common.runtime.git_commit: this script imports nothing from the
    checkout, so that it runs on a GPU machine where the checkout is not installed (no PYTHONPATH needed)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
