"""`make run`: a short NRI job that learns the graph on a CPU, with a summary at the end.

    python -m experiments.quickstart                     # seeds 0-3, two at a time, into outputs/quickstart/<time>
    python -m experiments.quickstart --seeds 0 1 --parallel 1 --out outputs/qs relaxation.tau=0.5

Runs ``python run.py experiment=nri_quick seed=<s>`` (configs/experiment/nri_quick.yaml: 5 vertices, one-step
prediction, 64 hidden units, 2,000 steps) for a few seeds, ``--parallel`` at a time with one CPU thread each, and
keeps the seed with the best validation ELBO: a seed learns either the tree or its negative, and the ELBO tells
which (results/nri/cpu_exploration.md). Extra arguments are Hydra overrides passed to every run. Rerun with the
same ``--out`` to resume an interrupted quick start (finished seeds are kept). The paper-scale run is one command,
``python run.py experiment=nri`` (see PAPER_COMMAND).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = "nri_quick"
# Wall seconds per seed, two seeds at a time on a free 2-core CPU (rounded up): `make run` (four seeds, data
# generation included) took 2.0 minutes of wall time on an otherwise idle 2-core AMD EPYC (3.7 CPU-minutes), and
# 9.5 and 19.2 minutes on the same machine shared with other jobs (load 4-8).
SEED_SECONDS = 60
PAPER_COMMAND = "python run.py experiment=nri"
PAPER_NOTE = ("the paper's setting: 10 vertices, 9-step prediction, 256 hidden units, batch 128, 50,000 steps; "
              "a GPU job (about 25 minutes on one H200 without torch.compile; days on a CPU)")
METRICS = (("valid ELBO", "best/valid/elbo", "{:.0f}"), ("test ELBO", "test/elbo", "{:.0f}"),
           ("test edge precision", "test/edge_precision", "{:.3f}"), ("best step", "best/step", "{:.0f}"))


def plan(seeds: list[int], parallel: int) -> str:
    """What the quick start will do and how long it should take (printed first)."""
    rounds = math.ceil(len(seeds) / parallel)
    minutes = rounds * SEED_SECONDS / 60
    return (
        f"[quickstart] NRI graph layout (Paulus et al. 2020) at CPU size: {PRESET} = 5 vertices, one-step prediction,\n"
        f"  64 hidden units, batch 32, lr 1e-3, tau 1, 10k/1k/1k simulated trajectories, 2,000 steps per seed.\n"
        f"  Seeds {', '.join(map(str, seeds))}, {parallel} at a time (one thread each): about {minutes:.0f} minutes "
        f"with {parallel} free CPU core{'s' if parallel != 1 else ''}\n  (about {SEED_SECONDS} s per seed; longer "
        f"when other jobs share the cores). Each seed learns the tree or its negative;\n  the seed with the best "
        f"validation ELBO is kept, as the paper's search does."
    )


def seed_command(seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    """The run.py command of one seed (progress bar off: the quick start prints its own progress)."""
    return [sys.executable, "run.py", f"experiment={PRESET}", f"seed={seed}", f"hydra.run.dir={run_dir}",
            "trainer.progress=false", *overrides]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _history(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return out


def select(records: dict[int, dict[str, Any]]) -> int | None:
    """The seed whose run has the best (highest) validation ELBO, or None when no run finished."""
    scored = {s: r["metrics"].get("best/valid/elbo") for s, r in records.items()}
    scored = {s: v for s, v in scored.items() if v is not None and math.isfinite(v)}
    return max(scored, key=scored.get) if scored else None


def summary(out: Path, records: dict[int, dict[str, Any]], failed: dict[int, str], wall_s: float) -> str:
    """The closing summary: main metrics per seed, the selected seed, the folder, the pictures, the paper command."""
    best = select(records)
    head = "| seed | " + " | ".join(name for name, _, _ in METRICS) + " | minutes |"
    lines = [f"[quickstart] done in {wall_s / 60:.1f} minutes. Results (test metrics at each seed's best "
             f"validation ELBO; a random tree scores 0.40 precision):", "", head,
             "|" + "---|" * (len(METRICS) + 2)]
    for seed in sorted(set(records) | set(failed)):
        if seed in failed:
            lines.append(f"| {seed} | failed: {failed[seed]} |")
            continue
        m = records[seed]["metrics"]
        cells = [fmt.format(m[key]) if key in m else "-" for _, key, fmt in METRICS]
        mark = " (selected)" if seed == best else ""
        minutes = (records[seed].get("process_time_s") or records[seed].get("wall_time_s") or 0) / 60
        lines.append(f"| {seed}{mark} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    lines.append("")
    if best is not None:
        m = records[best]["metrics"]
        verdict = ("learnt the tree" if m.get("test/edge_precision", 0) > 0.8 else
                   "did not learn the tree (try more seeds: --seeds 0 1 2 3 4 5)")
        lines.append(f"Selected: seed {best} by validation ELBO {m['best/valid/elbo']:.0f}: test edge precision "
                     f"{m['test/edge_precision']:.3f}, test ELBO {m['test/elbo']:.0f}; it {verdict}.")
        lines.append("(The paper's 10-vertex result: 91 +- 3% precision, ELBO -1080 +- 110.)")
    lines.append(f"Output folder: {out} (one run folder per seed: metrics.json, history.jsonl, best.pt, last.pt; "
                 f"summary in quickstart.json)")
    pictures = sorted(out.glob("seed*/*.png"))
    if pictures:
        lines.append("Pictures: " + ", ".join(str(p) for p in pictures))
        if best is not None:
            lines.append(f"  selected seed's predicted graphs: {out / f'seed{best}' / 'nri_test_trajectories.png'}")
    lines.append(f"Paper-scale run: {PAPER_COMMAND}\n  ({PAPER_NOTE})")
    return "\n".join(lines)


def _progress(out: Path, seeds: list[int], seen: dict[int, int]) -> None:
    """Print each new validation line of the running seeds' history.jsonl."""
    for seed in seeds:
        for h in _history(out / f"seed{seed}" / "history.jsonl"):
            if "valid/elbo" in h and h["step"] > seen.get(seed, 0):
                seen[seed] = h["step"]
                print(f"  seed {seed} step {h['step']}: valid ELBO {h['valid/elbo']:.0f}, edge precision "
                      f"{h['valid/edge_precision']:.3f}", flush=True)


def _finished(run_dir: Path) -> dict[str, Any] | None:
    return _read_json(run_dir / "metrics.json")


def run(seeds: list[int], parallel: int, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Train every seed (``parallel`` processes at a time), then print and write the summary; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    records: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    pending = []
    for seed in seeds:
        done = _finished(out / f"seed{seed}")
        if done is not None:
            print(f"  seed {seed}: already finished in {out / f'seed{seed}'}")
            records[seed] = done
        else:
            pending.append(seed)
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    seen: dict[int, int] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                seed = pending.pop(0)
                run_dir = out / f"seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                command = seed_command(seed, run_dir.resolve(), overrides)
                log = open(out / f"seed{seed}.log", "a")
                log.write(f"$ python {' '.join(command[1:])}\n")  # then the run's validations and its summary
                log.flush()
                print(f"  seed {seed}: started ({out / f'seed{seed}.log'})", flush=True)
                running[seed] = (subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT), log)
            time.sleep(2.0)
            _progress(out, list(running), seen)
            for seed, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[seed]
                record = _finished(out / f"seed{seed}")
                if proc.returncode == 0 and record is not None:
                    records[seed] = record
                    m = record["metrics"]
                    print(f"  seed {seed}: finished, test edge precision {m['test/edge_precision']:.3f}, "
                          f"valid ELBO {m['best/valid/elbo']:.0f}", flush=True)
                else:
                    tail = (out / f"seed{seed}.log").read_text().strip().splitlines()[-1:] or ["no output"]
                    failed[seed] = f"exit {proc.returncode}: {tail[0]}"
                    print(f"  seed {seed}: failed (exit {proc.returncode}); see {out / f'seed{seed}.log'}", flush=True)
    except KeyboardInterrupt:
        for proc, log in running.values():  # the terminal's Ctrl-C reached them too: let them save last.pt
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        print(f"\n[quickstart] interrupted; rerun with --out {out} to resume (finished seeds are kept)")
        raise SystemExit(130) from None
    wall = time.perf_counter() - t0
    text = summary(out, records, failed, wall)
    print("\n" + text)
    result = {"preset": PRESET, "seeds": seeds, "overrides": overrides, "selected_seed": select(records),
              "wall_time_s": round(wall, 1), "paper_command": PAPER_COMMAND,
              "runs": {str(s): {"metrics": r["metrics"], "command": r.get("command"),
                                "wall_time_s": r.get("wall_time_s"), "process_time_s": r.get("process_time_s")}
                       for s, r in records.items()},
              "failed": {str(s): msg for s, msg in failed.items()}}
    if records:
        result["commit"] = next(iter(records.values())).get("commit")
        result["hardware"] = next(iter(records.values())).get("hardware")
    (out / "quickstart.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="run seeds (default 0 1 2 3)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="runs at a time (default: the number of CPU cores, at most the number of seeds)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/quickstart/<time>)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. relaxation.tau=0.5")
    args = parser.parse_args(argv)
    parallel = args.parallel or max(1, min(len(args.seeds), os.cpu_count() or 1))
    if parallel < 1:
        parser.error(f"--parallel must be >= 1, got {parallel}")
    out = args.out or Path("outputs") / "quickstart" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    print(plan(args.seeds, parallel), flush=True)
    result = run(args.seeds, parallel, out, args.overrides)
    return 0 if result["selected_seed"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
