"""NRI at CPU scale, end to end: the paper's three rows searched, seeded and compared on a CPU, then the table.

    python -m experiments.nri.cpu_table                 # run what is missing (two at a time), then write the table
    python -m experiments.nri.cpu_table --dry-run       # what would run now, and the campaign's size
    python -m experiments.nri.cpu_table --table-only    # the table from the committed records

The protocol is ``experiment=nri_cpu`` (configs/experiment/nri_cpu.yaml; docs/nri.md "NRI at CPU scale"):

1. Search, per row: the 12 random trials of ``experiment=nri_cpu_search_<row>`` (lr, tau, and eps for the top-k
   row; a seed per trial), the same budget and sampler for every row.
2. Seeds: the row's best trial by best validation ELBO fixes its setting; then :data:`TABLE_SEEDS` table runs,
   each the best of :data:`RESTARTS` restarts (fresh seeds) by best validation ELBO: a seed falls into the tree's
   negative code now and then, and the validation ELBO tells (results/nri/cpu_exploration.md). Never selected by
   a test metric.
3. Extras at the chosen settings: the exact top-k gradient (``ef_topk`` at the top-k row's lr and tau) and the
   unclipped exact spanning tree (``model.max_range=null`` at the tree row's), as the rows are run; and the
   paper's nine-step prediction at the tree row's setting (:data:`MULTISTEP_SEEDS` seeds, one run each, at the
   protocol's 2,000 steps and at :data:`MULTISTEP_LONG_STEPS`, up to the 20-minute limit of a run), the check
   that decides the protocol's one-step prediction.

Runs live in ``--workdir`` (default ``outputs/nri_cpu/<name>``); a finished run is skipped, a run cut short
resumes from its ``last.pt`` (the trainer's resume), a failed run is recorded and not retried unless
``--retry-failed``. Each finished run's record goes to ``results/nri/cpu/<name>.json`` (``"table": false``: the
paper's cells never read it; the CPU table does). The table is written to ``results/nri/cpu/table.md``;
``make tables`` puts it in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "nri" / "cpu"
STUDY = "nri_cpu"
TABLE_SEEDS = 5
RESTARTS = 3
MULTISTEP_SEEDS = 3
MULTISTEP_LONG_STEPS = 10_000  # the nine-step check up to the time limit: about 10 minutes a run on one thread
SEED_BASE = 10_000  # table and extra runs' seeds start here: fresh, outside the search's seed range [0, 9999]
OBJECTIVE = "best/valid/elbo"
FAILED = "FAILED"  # a file in a run folder: the run exited with an error (its reason inside)
LOCK = "campaign.lock"  # in the work folder while a campaign runs there (its pid inside)


@dataclass(frozen=True)
class Row:
    """A row of the table: its key (in run names), the relaxation, how its setting is found, and its label."""

    key: str
    relaxation: str
    label: str
    search: str | None = None          # search config (configs/experiment) for a searched row
    base: str | None = None            # else: the searched row whose setting it takes
    overrides: tuple[str, ...] = ()    # extra Hydra overrides of every run of the row
    drop: tuple[str, ...] = ()         # setting keys of the base row it does not take
    seeds: int = TABLE_SEEDS
    restarts: int = RESTARTS
    in_table: bool = True


ROWS = (
    Row("indep", "indep", "Indep. edges", search="nri_cpu_search_indep"),
    Row("topk", "ef_topk_fd", "E.F. Ent. Top |V|-1", search="nri_cpu_search_topk"),
    Row("tree", "spanning_tree", "Spanning tree", search="nri_cpu_search_tree"),
    # the check that decides the protocol's one-step prediction, before the extras
    Row("tree_multistep", "spanning_tree", "Spanning tree, nine-step prediction (check)", base="tree",
        overrides=("model.prediction_steps=9",), seeds=MULTISTEP_SEEDS, restarts=1, in_table=False),
    Row("tree_multistep_long", "spanning_tree", "Spanning tree, nine-step prediction, 10,000 steps (check)",
        base="tree", overrides=("model.prediction_steps=9", f"trainer.max_steps={MULTISTEP_LONG_STEPS}"),
        seeds=MULTISTEP_SEEDS, restarts=1, in_table=False),
    Row("topk_exact", "ef_topk", "E.F. Ent. Top |V|-1, exact gradient (extra)", base="topk",
        drop=("relaxation.eps",)),
    Row("tree_unclipped", "spanning_tree", "Spanning tree, unclipped (extra)", base="tree",
        overrides=("model.max_range=null",)),
)


@dataclass(frozen=True)
class Job:
    """One run: its name (folder and record), its Hydra overrides, its row and what it is for."""

    name: str
    overrides: tuple[str, ...]
    row: str
    kind: str                 # "search" | "seed"
    seed_index: int = -1      # table seed (kind "seed")
    restart: int = -1


@dataclass
class Campaign:
    """The state read from disk: finished records by run name, failed runs with their reason."""

    records: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def ended(self, name: str) -> bool:
        return name in self.records or name in self.failed


def search_jobs(row: Row) -> list[Job]:
    """The row's search trials: those ``python -m experiments.nri.sweep -m experiment=<search>`` would run."""
    from experiments.nri.search import compose_search, draw_trials

    trials = draw_trials(compose_search(str(row.search)))
    return [Job(f"{row.search}_t{i:02d}", (f"experiment={row.search}", *(f"{k}={v}" for k, v in t.items())),
                row.key, "search") for i, t in enumerate(trials)]


def objective(record: dict) -> float | None:
    """A finished run's best validation ELBO (higher is better), or None."""
    value = (record.get("metrics") or {}).get(OBJECTIVE)
    return float(value) if isinstance(value, (int, float)) and value == value else None


def best_of(names: Iterable[str], state: Campaign) -> str | None:
    """The finished run among ``names`` with the best validation ELBO (None when none has finished)."""
    scored = [(objective(state.records[n]), n) for n in names if n in state.records]
    scored = [(v, n) for v, n in scored if v is not None]
    return max(scored)[1] if scored else None


def setting(record: dict) -> dict[str, Any]:
    """The searched keys (lr, tau, eps where set) of a run's resolved config."""
    cfg = record.get("config") or {}
    from experiments.nri.search import SETTING_KEYS, dotted

    out = {k: dotted(cfg, k) for k in SETTING_KEYS}
    return {k: v for k, v in out.items() if v is not None}


def chosen_setting(row: Row, state: Campaign, searches: Mapping[str, list[Job]]) -> dict[str, Any] | None:
    """The setting of a searched row once every trial has ended (its best trial's), else None; for a row built
    on another, that row's setting less ``drop``."""
    if row.base is not None:
        base = next(r for r in ROWS if r.key == row.base)
        chosen = chosen_setting(base, state, searches)
        return None if chosen is None else {k: v for k, v in chosen.items() if k not in row.drop}
    trials = [j.name for j in searches[row.key]]
    if not all(state.ended(n) for n in trials):
        return None
    best = best_of(trials, state)
    return None if best is None else setting(state.records[best])


def run_seed(seed_index: int, restart: int, restarts: int) -> int:
    """The training seed of table seed ``seed_index``, restart ``restart``: fresh and distinct."""
    return SEED_BASE + seed_index * restarts + restart


def seed_jobs(row: Row, chosen: Mapping[str, Any]) -> list[Job]:
    """The row's table runs at its chosen setting: ``seeds`` x ``restarts`` runs."""
    jobs = []
    for s in range(row.seeds):
        for r in range(row.restarts):
            ov = ("experiment=nri_cpu", f"relaxation={row.relaxation}", *row.overrides,
                  *(f"{k}={v}" for k, v in chosen.items()), f"seed={run_seed(s, r, row.restarts)}")
            jobs.append(Job(f"{row.key}_s{s}_r{r}", ov, row.key, "seed", s, r))
    return jobs


def plan(state: Campaign, searches: Mapping[str, list[Job]]) -> list[Job]:
    """Every job known now: all search trials, and the seed runs of rows whose setting is chosen."""
    jobs = [j for row in ROWS if row.search for j in searches[row.key]]
    for row in ROWS:
        chosen = chosen_setting(row, state, searches)
        if chosen is not None:
            jobs += seed_jobs(row, chosen)
    return jobs


def campaign_size() -> int:
    """Runs in the whole campaign (the progress bar's total)."""
    from experiments.nri.search import compose_search

    n = 0
    for row in ROWS:
        if row.search:
            n += int(compose_search(row.search).hydra.sweeper.n_trials)
        n += row.seeds * row.restarts
    return n


# ------------------------------------------------------------------------------------------------- state on disk
def read_state(workdir: Path, results: Path) -> Campaign:
    """Finished runs from the committed records (``results``) and from run folders (``workdir``); failures."""
    state = Campaign()
    if results.is_dir():
        for path in sorted(results.glob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("study") == STUDY and rec.get("finished", True) is not False:
                state.records[path.stem] = rec
    if workdir.is_dir():
        for run in sorted(p for p in workdir.iterdir() if p.is_dir()):
            metrics = run / "metrics.json"
            if run.name not in state.records and metrics.is_file():
                rec = json.loads(metrics.read_text())
                if rec.get("finished", True) is not False:
                    state.records[run.name] = rec
            if (run / FAILED).is_file() and run.name not in state.records:
                state.failed[run.name] = (run / FAILED).read_text().strip()
    return state


def valid_curve(run_dir: Path) -> list[dict[str, float]]:
    """The run's validation points (step, ELBO, both precisions) from its history.jsonl."""
    out = []
    path = run_dir / "history.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        if "valid/elbo" in row:
            out.append({"step": row["step"], "elbo": round(row["valid/elbo"], 1),
                        "precision": round(row.get("valid/edge_precision", float("nan")), 3),
                        "precision_released": round(row.get("valid/edge_precision_released", float("nan")), 3)})
    return out


def collect(job: Job, run_dir: Path, results: Path) -> Path:
    """Write the finished run's record to ``results/<name>.json``: its metrics.json without machine paths, marked
    ``"table": false`` and ``"study": "nri_cpu"``, with its row, role and validation curve."""
    from experiments.common.data import cache_dir, resolve_data_root
    from experiments.report.records import to_schema

    rec = json.loads((run_dir / "metrics.json").read_text())
    rec.update(table=False, study=STUDY, run=job.name, row=job.row, role=job.kind, seed_index=job.seed_index,
               restart=job.restart, valid=valid_curve(run_dir))
    results.mkdir(parents=True, exist_ok=True)
    dest = results / f"{job.name}.json"
    dest.write_text(json.dumps(to_schema(rec, resolve_data_root(), cache_dir()), indent=1) + "\n")
    return dest


# ---------------------------------------------------------------------------------------------------- the runner
def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _default_sigint() -> None:
    """In a run's process before it starts: SIGINT back to its default, so that the run saves ``last.pt`` on it
    even when the campaign was started in the background (``nohup ... &`` ignores SIGINT, and children inherit
    that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def campaign_lock(workdir: Path) -> Iterator[None]:
    """Hold ``workdir/campaign.lock`` for the call: a second campaign in the same folder would start the same
    runs, so it is refused (RuntimeError naming the holder's pid); a lock left by a process that is gone is taken
    over."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK
    if path.is_file():
        text = path.read_text().split()
        pid = int(text[0]) if text and text[0].isdigit() else None
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise RuntimeError(f"another campaign (pid {pid}) is running in {workdir}: wait for it, or stop it "
                               "(Ctrl-C, or kill -INT the pid) and run again")
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def command(job: Job, run_dir: Path) -> list[str]:
    """``python run.py`` for one job, in its own folder, one CPU thread, no logger, no progress bar."""
    return [sys.executable, str(REPO / "run.py"), *job.overrides, f"hydra.run.dir={run_dir}",
            "trainer.progress=false", "logger=none", "device=cpu"]


def run_campaign(workdir: Path, results: Path, jobs: int, retry_failed: bool = False,
                 max_runs: int | None = None, rows: Sequence[str] | None = None,
                 make_command: Callable[[Job, Path], list[str]] = command, poll_s: float = 2.0) -> Campaign:
    """Run every missing job, ``jobs`` at a time (one thread each), collecting records as runs finish, until the
    plan has nothing left (or ``max_runs`` runs were started; ``rows``: only these rows' jobs); returns the final
    state. ``make_command`` builds a job's command line (tests replace the training). Refused while another
    campaign runs in ``workdir`` (:func:`campaign_lock`). SIGINT or SIGTERM stops it: the runs get SIGINT, save
    their ``last.pt`` and the next call resumes them."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even in the background: kill -INT stops it
    signal.signal(signal.SIGTERM, _interrupt)  # kill -TERM stops it the same way: the runs save last.pt
    try:
        with campaign_lock(workdir):
            return _run(workdir, results, jobs, retry_failed, max_runs, rows, make_command, poll_s)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _run(workdir: Path, results: Path, jobs: int, retry_failed: bool, max_runs: int | None,
         rows: Sequence[str] | None, make_command: Callable[[Job, Path], list[str]], poll_s: float) -> Campaign:
    from tqdm import tqdm

    searches = {row.key: search_jobs(row) for row in ROWS if row.search}
    state = read_state(workdir, results)
    if retry_failed:
        for name in state.failed:
            (workdir / name / FAILED).unlink(missing_ok=True)
        state.failed.clear()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    running: dict[str, tuple[Job, subprocess.Popen, Any]] = {}
    started = 0
    total = campaign_size()
    done0 = len(state.records) + len(state.failed)
    bar = tqdm(total=total, initial=min(done0, total), desc="NRI CPU campaign", unit="run", smoothing=0.0)
    try:
        while True:
            planned = plan(state, searches)
            for job in planned:  # finished in an earlier call (or by hand) and not yet collected
                if job.name in state.records and (workdir / job.name / "metrics.json").is_file() \
                        and not (results / f"{job.name}.json").is_file():
                    collect(job, workdir / job.name, results)
            todo = [j for j in planned if not state.ended(j.name) and j.name not in running
                    and (rows is None or j.row in rows)]
            while todo and len(running) < jobs and (max_runs is None or started < max_runs):
                job = todo.pop(0)
                run_dir = workdir / job.name
                run_dir.mkdir(parents=True, exist_ok=True)
                log = open(run_dir / "campaign.log", "a")
                proc = subprocess.Popen(make_command(job, run_dir.resolve()), cwd=REPO, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=_default_sigint)
                running[job.name] = (job, proc, log)
                started += 1
                bar.set_postfix_str(", ".join(sorted(running)))
            if not running:
                break
            time.sleep(poll_s)
            for name, (job, proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                run_dir = workdir / name
                metrics = run_dir / "metrics.json"
                rec = json.loads(metrics.read_text()) if metrics.is_file() else None
                if proc.returncode == 0 and rec is not None and rec.get("finished", True) is not False:
                    collect(job, run_dir, results)
                    state.records[name] = rec
                else:
                    lines = (run_dir / "campaign.log").read_text().strip().splitlines()
                    reason = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"
                    (run_dir / FAILED).write_text(reason + "\n")
                    state.failed[name] = reason
                    tqdm.write(f"{name} failed ({reason}); see {run_dir / 'campaign.log'}")
                bar.update(1)
                bar.set_postfix_str(", ".join(sorted(running)))
    except KeyboardInterrupt:
        for _, proc, _log in running.values():  # on SIGINT a run saves last.pt and exits (Ctrl-C reached it too)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, log in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        bar.close()
        print("\ninterrupted: run the same command again to resume (finished runs are kept)")
        raise SystemExit(130) from None
    bar.close()
    return state


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default 2)")
    p.add_argument("--workdir", type=Path, default=REPO / "outputs" / "nri_cpu", help="run folders")
    p.add_argument("--results", type=Path, default=RESULTS, help="records and table (default results/nri/cpu)")
    p.add_argument("--dry-run", action="store_true", help="print what would run now and the campaign's size")
    p.add_argument("--table-only", action="store_true", help="write the table from the records; run nothing")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--max-runs", type=int, default=None, help="start at most this many runs, then stop")
    p.add_argument("--rows", nargs="+", choices=[r.key for r in ROWS], default=None,
                   help="run only these rows' jobs (default: all)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    from experiments.report.nri_cpu import write_table

    if a.dry_run:
        searches = {row.key: search_jobs(row) for row in ROWS if row.search}
        state = read_state(a.workdir, a.results)
        todo = [j for j in plan(state, searches) if not state.ended(j.name)]
        print(f"campaign: {campaign_size()} runs; finished {len(state.records)}, failed {len(state.failed)}; "
              f"startable now: {len(todo)}")
        for j in todo:
            print(" ", j.name, " ".join(j.overrides))
        return 0
    if not a.table_only:
        t0 = time.perf_counter()
        try:
            run_campaign(a.workdir, a.results, a.jobs, a.retry_failed, a.max_runs, a.rows)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"campaign call: {(time.perf_counter() - t0) / 60:.1f} minutes of wall time")
    path = write_table(a.results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
