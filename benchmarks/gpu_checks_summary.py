"""Summaries of the parts of ``scripts/gpu_checks.sh`` that run several processes: packed runs and TF32 on/off.

    python benchmarks/gpu_checks_summary.py OUTDIR [--device cuda]

Reads, in OUTDIR,

- ``packed/*.json``: records of ``benchmarks/bench_training.py`` run at the same time, one process each (several
  runs on one GPU). Writes ``packed_<device>.json``: each process's steps/s, their sum, and how much their timed
  regions overlap (the sum is the aggregate throughput when the overlap fraction is close to 1);
- ``runs/<experiment>_s<seed>_tf32<on|off>/``: short training runs (``metrics.json``, ``history.jsonl``). Writes
  ``tf32_<device>.json``: per experiment, what TF32 changes (seed 0 off minus on) beside what the seed changes
  (seed 1 minus seed 0, both on) in the mean training loss of the last quarter of the run and in the last validation
  value of the task's monitored metric; ``within_noise`` when TF32's change is no larger than the seed's in both.
  The run folders go into ``runs.tar.gz`` without their checkpoints.

Then removes ``packed/`` and ``runs/``, so that OUTDIR holds a few flat files. Torch-free.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tarfile
from pathlib import Path
from typing import Any

RUN_NAME = re.compile(r"^(?P<experiment>[a-z0-9]+)_s(?P<seed>\d+)_tf32(?P<tf32>on|off)$")
MONITOR = {"nri": "valid/elbo", "vae": "valid/neg_elbo", "l2x": "valid/mse"}


def packed_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate of benchmark records timed at the same time (each the record of one bench_training process).

    Returns per-process steps/s, their sum, the wall-clock overlap of the timed regions in seconds and as a
    fraction of the mean region's length. Raises ValueError when a record has no timed row.
    """
    rows = []
    for rec in records:
        good = [r for r in rec.get("results", []) if "error" not in r and "timed_window_unix" in r]
        if not good:
            raise ValueError(f"benchmark record {rec.get('command', '?')!r} has no timed row")
        rows.append(good[0])
    starts = [r["timed_window_unix"][0] for r in rows]
    ends = [r["timed_window_unix"][1] for r in rows]
    lengths = [e - s for s, e in zip(starts, ends)]
    overlap = max(0.0, min(ends) - max(starts))
    mean_len = statistics.fmean(lengths)
    rates = [float(r["steps_per_s"]) for r in rows]
    first = rows[0]
    return {
        "experiment": first["experiment"], "relaxation": first["relaxation"], "compiled": bool(first.get("compiled")),
        "processes": len(rows), "steps_per_s": rates, "total_steps_per_s": round(sum(rates), 2),
        "timed_s": [round(x, 2) for x in lengths], "overlap_s": round(overlap, 2),
        "overlap_fraction": round(overlap / mean_len, 3) if mean_len > 0 else 0.0,
        "peak_memory_mib": [r.get("peak_memory_mib") for r in rows],
    }


def read_history(path: Path) -> dict[int, dict[str, float]]:
    """{step: merged logged values} of a history.jsonl (a resumed run's repeated steps keep the last values)."""
    rows: dict[int, dict[str, float]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                rows.setdefault(int(rec.pop("step")), {}).update(rec)
    return rows


def run_summary(run_dir: Path, monitor: str) -> dict[str, Any]:
    """The figures of one short run: steps reached, mean ``train/loss`` over the last quarter of its logged steps,
    the last validation value of ``monitor``, the record's steps/s, compile counts, its ``trainer.tf32`` (true,
    false or emulate) and whether it finished."""
    hist = read_history(run_dir / "history.jsonl")
    losses = [(s, v["train/loss"]) for s, v in sorted(hist.items()) if "train/loss" in v]
    valid = [(s, v[monitor]) for s, v in sorted(hist.items()) if monitor in v]
    tail = losses[len(losses) - max(1, len(losses) // 4):] if losses else []
    metrics_path = run_dir / "metrics.json"
    record = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return {
        "step": max(hist) if hist else 0,
        "finished": record.get("finished"),
        "train_loss_tail": statistics.fmean(v for _, v in tail) if tail else None,
        "tail_steps": [tail[0][0], tail[-1][0]] if tail else None,
        "valid": valid[-1][1] if valid else None,
        "valid_step": valid[-1][0] if valid else None,
        "steps_per_s": (record.get("metrics") or {}).get("train/steps_per_s"),
        "wall_time_s": record.get("wall_time_s"),
        "compile": record.get("compile"),
        "tf32": ((record.get("config") or {}).get("trainer") or {}).get("tf32"),
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 6)


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def tf32_summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per experiment, TF32's effect beside the seed's, from run summaries keyed ``<experiment>_s<seed>_tf32<on|off>``.

    Per figure (``train_loss_tail``, ``valid``): ``tf32``: the mean over the seeds run both ways of off minus on;
    ``seed``: seed 1 minus seed 0, both on; ``paired``: n, the per-seed differences, their mean, standard error and
    root mean square; ``seed_sd``: the spread a change of seed makes (the standard deviation over the TF32-off runs'
    seeds, or over the on runs' where only one seed ran off); ``twin_ratio``: rms(off - on) / (sqrt(2) seed_sd),
    near 0 when a run with TF32 tracks its float32 twin, near 1 when it is as far from it as another seed would be
    (the rounding has made it another draw of the same training). ``within_noise``: for both figures, TF32's mean
    shift is within two standard errors of zero, the standard error of a mean of n differences between independent
    runs, sqrt(2) seed_sd / sqrt(n): |tf32| <= 2 sqrt(2) seed_sd / sqrt(n) (one seed off: |tf32| <= 2 |seed|);
    None when runs are missing. Only runs that reached the longest run's step are compared (the others are listed
    under ``short``: a run cut by its time limit). ``on_setting``: the "on" runs' ``trainer.tf32`` (true: the
    hardware's TF32; emulate: its rounding emulated, e.g. on a CPU)."""
    out: dict[str, Any] = {}
    parsed = {name: m for name, m in ((n, RUN_NAME.match(n)) for n in runs) if m}
    for exp in sorted({m["experiment"] for m in parsed.values()}):
        mine = {name: m for name, m in parsed.items() if m["experiment"] == exp}
        steps = {name: runs[name].get("step") or 0 for name in mine}
        last = max(steps.values())  # compare runs at the same length only
        by = {(int(m["seed"]), m["tf32"]): runs[name] for name, m in mine.items() if steps[name] == last}
        entry: dict[str, Any] = {"monitor": MONITOR.get(exp), "runs": {k: runs[k] for k in sorted(mine)},
                                 "short": sorted(k for k in mine if steps[k] != last)}
        on0, on1 = by.get((0, "on")), by.get((1, "on"))
        if on0:
            entry["on_setting"] = on0.get("tf32")
        seeds = sorted({seed for seed, _ in by})
        paired = [s for s in seeds if (s, "on") in by and (s, "off") in by]
        verdict: bool | None = None
        if paired and on0 and on1:
            entry["tf32"], entry["seed"], entry["paired"], entry["seed_sd"], entry["twin_ratio"] = {}, {}, {}, {}, {}
            checks = []
            for key in ("train_loss_tail", "valid"):
                diffs = [by[(s, "off")][key] - by[(s, "on")][key] for s in paired
                         if by[(s, "off")][key] is not None and by[(s, "on")][key] is not None]
                groups = {t: [by[(s, t)][key] for s in seeds if (s, t) in by and by[(s, t)][key] is not None]
                          for t in ("on", "off")}
                seed_sd = _sd(groups["off"]) or _sd(groups["on"])  # the reference's spread where it has two seeds
                entry["seed"][key] = _diff(on0[key], on1[key])
                entry["seed_sd"][key] = None if seed_sd is None else round(seed_sd, 6)
                if not diffs:
                    entry["tf32"][key] = None
                    continue
                n, mean = len(diffs), statistics.fmean(diffs)
                rms = statistics.fmean(d * d for d in diffs) ** 0.5
                entry["tf32"][key] = round(mean, 6)
                sd = _sd(diffs)
                entry["paired"][key] = {"n": n, "diffs": [round(d, 6) for d in diffs], "mean": round(mean, 6),
                                        "rms": round(rms, 6), "se": None if sd is None else round(sd / n ** 0.5, 6)}
                if seed_sd:
                    entry["twin_ratio"][key] = round(rms / (2 ** 0.5 * seed_sd), 3)
                    checks.append(abs(mean) <= 2 * 2 ** 0.5 * seed_sd / n ** 0.5 * (1 + 1e-9))
            verdict = all(checks) if checks else None
        entry["within_noise"] = verdict
        out[exp] = entry
    return out


def markdown(packed: dict[str, Any] | None, tf32: dict[str, Any] | None) -> str:
    """A short human-readable summary of both parts."""
    lines = []
    if packed:
        lines.append(f"packed: {packed['processes']} x {packed['experiment']}/{packed['relaxation']}"
                     f"{' (compiled)' if packed['compiled'] else ''}: {packed['total_steps_per_s']} steps/s in all "
                     f"({', '.join(f'{r:g}' for r in packed['steps_per_s'])}), timed regions overlapping "
                     f"{100 * packed['overlap_fraction']:.0f}%")
    for exp, e in (tf32 or {}).items():
        if "tf32" not in e:
            lines.append(f"tf32 {exp}: runs missing ({', '.join(e['runs']) or 'none'})")
            continue
        emulated = " (emulated)" if e.get("on_setting") == "emulate" else ""
        lines.append(f"tf32{emulated} {exp}: train-loss tail off-on {e['tf32']['train_loss_tail']}, seed1-seed0 "
                     f"{e['seed']['train_loss_tail']}; {e['monitor']} off-on {e['tf32']['valid']}, seed1-seed0 "
                     f"{e['seed']['valid']}; within noise: {e['within_noise']}")
        for key, p in e.get("paired", {}).items():
            sd = e["seed_sd"][key]
            if p["n"] > 1 and sd:
                lines.append(f"  {key}: {p['n']} seeds both ways, off-on mean {p['mean']:g} (bound "
                             f"{2 * 2 ** 0.5 * sd / p['n'] ** 0.5:g}), rms {p['rms']:g}; seed sd {sd:g}; twin ratio "
                             f"{e['twin_ratio'][key]:g}")
    return "\n".join(lines)


def summarize(outdir: Path, device: str, command: str = "") -> dict[str, Any]:
    """Write ``packed_<device>.json``, ``tf32_<device>.json`` and ``runs.tar.gz`` in ``outdir`` from its ``packed/``
    and ``runs/`` folders (those present), then remove the folders. Returns {"packed": ..., "tf32": ...}."""
    outdir = Path(outdir)
    result: dict[str, Any] = {"packed": None, "tf32": None}
    packed_dir, runs_dir = outdir / "packed", outdir / "runs"
    parts = sorted(packed_dir.glob("*.json")) if packed_dir.is_dir() else []
    if parts:
        records = [json.loads(p.read_text()) for p in parts]
        try:
            result["packed"] = packed_summary(records)
        except ValueError as e:
            result["packed"] = {"error": str(e)}
        head = records[0]
        rec = {"schema": 1, "command": command, "part_command": head.get("command"), "commit": head.get("commit"),
               "hardware": head.get("hardware"), **result["packed"]}
        (outdir / f"packed_{device}.json").write_text(json.dumps(rec, indent=1) + "\n")
    if runs_dir.is_dir():
        runs = {d.name: run_summary(d, MONITOR.get(d.name.split("_")[0], "valid/loss"))
                for d in sorted(runs_dir.iterdir()) if d.is_dir()}
        result["tf32"] = tf32_summary(runs)
        first = next((json.loads((d / "metrics.json").read_text()) for d in sorted(runs_dir.iterdir())
                      if (d / "metrics.json").is_file()), {})
        rec = {"schema": 1, "command": command, "commit": first.get("commit"), "hardware": first.get("hardware"),
               "experiments": result["tf32"]}
        (outdir / f"tf32_{device}.json").write_text(json.dumps(rec, indent=1) + "\n")
        with tarfile.open(outdir / "runs.tar.gz", "w:gz") as tar:
            for path in sorted(runs_dir.rglob("*")):
                if path.is_file() and path.suffix != ".pt":
                    tar.add(path, arcname=str(path.relative_to(runs_dir)))
    for d in (packed_dir, runs_dir):
        shutil.rmtree(d, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--device", default="cuda", help="suffix of the files written (default cuda)")
    p.add_argument("--command", default=None,
                   help="the command that made the runs, for the records (scripts/gpu_checks.sh passes its own)")
    args = p.parse_args(argv)
    if not args.outdir.is_dir():
        p.error(f"outdir {args.outdir} is not a folder")
    command = f"python benchmarks/gpu_checks_summary.py OUTDIR --device {args.device}"  # no machine path
    if args.command:
        command = f"{args.command}; then {command}"
    result = summarize(args.outdir, args.device, command)
    print(markdown(result["packed"] if result["packed"] and "error" not in result["packed"] else None,
                   result["tf32"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
