"""Import time of the library: ``import sst`` against ``import torch`` alone, each in fresh interpreters.

Each sample is one new ``python -c`` process that times its import (interpreter start-up excluded): wall time
(``time.perf_counter``) and CPU time (``time.process_time``, less sensitive to other jobs on a shared machine), and
reports which heavy optional modules the import loaded (``torch._dynamo``, ``numba``). The series alternate so all
see the same machine load; the record holds every sample and the medians. ``--baseline-tree`` adds ``import sst``
from another checkout (e.g. ``git worktree add /tmp/before <commit>``) for a before/after comparison.

    python benchmarks/bench_import.py                   # 9 samples each; writes results/bench/import_cpu.json
    python benchmarks/bench_import.py --baseline-tree /tmp/before --repeats 15
    python benchmarks/bench_import.py --repeats 3 --quick   # a smoke run that writes nothing

The import of ``sst`` must not load ``torch._dynamo`` or numba (issue 54): they come with ``sst.estimators`` /
``sst.diagnostics`` (lazy attributes) and with the first numba kernel call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "bench" / "import_cpu.json"
WATCHED = ("torch._dynamo", "numba")

_PROBE = (
    "import json, sys, time\n"
    "t, c = time.perf_counter(), time.process_time()\n"
    "{statement}\n"
    "wall, cpu = time.perf_counter() - t, time.process_time() - c\n"
    "print(json.dumps({{'wall': wall, 'cpu': cpu, 'loaded': [m for m in {watched!r} if m in sys.modules]}}))\n"
)


def series(baseline_tree: Path | None = None) -> dict[str, tuple[Path, str]]:
    """The measured series: name -> (working directory, which puts its ``sst`` first on sys.path; statement)."""
    out = {"torch": (ROOT, "import torch"), "sst": (ROOT, "import sst")}
    if baseline_tree is not None:
        out["sst_baseline_tree"] = (Path(baseline_tree), "import sst")
    return out


def time_import(statement: str, cwd: Path = ROOT, python: str = sys.executable) -> dict[str, Any]:
    """One fresh interpreter's wall and CPU seconds for ``statement`` run in ``cwd``, and the watched modules it
    loaded."""
    code = _PROBE.format(statement=statement, watched=WATCHED)
    out = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repeats: int, baseline_tree: Path | None = None, python: str = sys.executable) -> dict[str, Any]:
    """``repeats`` alternating samples of every series: samples, medians (wall and CPU seconds), modules loaded."""
    runs = series(baseline_tree)
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in runs}
    loaded: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, (cwd, statement) in runs.items():
            result = time_import(statement, cwd, python)
            for kind in ("wall", "cpu"):
                samples[name][kind].append(result[kind])
            loaded[name] = result["loaded"]
    medians = {name: {kind: statistics.median(v) for kind, v in by_kind.items()} for name, by_kind in samples.items()}
    return {
        "repeats": repeats,
        "baseline_tree": None if baseline_tree is None else "<baseline checkout>",  # its commit: baseline_commit
        "samples_s": samples,
        "median_s": medians,
        "modules_loaded": loaded,
    }


def tree_commit(tree: Path) -> str:
    """The HEAD commit of the checkout at ``tree`` (``unknown`` when it is none)."""
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="fresh interpreters per series")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another checkout whose import sst is timed too (before/after)")
    parser.add_argument("--out", default=None, help=f"record path (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="smoke run: write no record unless --out is given")
    args = parser.parse_args(argv)

    from experiments.common.runtime import git_commit, hardware, write_bench_record

    result = measure(args.repeats, args.baseline_tree)
    for name, median in result["median_s"].items():
        print(f"{name:17s}: median wall {median['wall'] * 1000:6.0f} ms, CPU {median['cpu'] * 1000:6.0f} ms over "
              f"{args.repeats} processes; loads "
              f"{', '.join(result['modules_loaded'][name]) or 'none of ' + ', '.join(WATCHED)}")
    baseline_commit = None if args.baseline_tree is None else tree_commit(args.baseline_tree)
    argv_shown = ["<baseline checkout>" if a == str(args.baseline_tree) else a for a in sys.argv]  # no machine path
    record = {"benchmark": "import", "command": " ".join(["python", *argv_shown]), "commit": git_commit(),
              "baseline_commit": baseline_commit,
              "hardware": {k: v for k, v in hardware().items() if k != "torch_threads"}, **result}
    write_bench_record(args.out, DEFAULT_OUT, record, args.quick)
    return record


if __name__ == "__main__":
    main()
