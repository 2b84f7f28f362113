"""Import time of the library: ``import sst`` against ``import torch`` alone, each in fresh interpreters.

Each sample is one new ``python -c`` process that times its import with ``time.perf_counter`` (interpreter
start-up excluded) and reports which heavy optional modules the import loaded (``torch._dynamo``, ``numba``). The
statements alternate so both see the same machine load; the record holds every sample and the medians.

    python benchmarks/bench_import.py                   # 9 samples each; writes results/bench/import_cpu.json
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
STATEMENTS = {"torch": "import torch", "sst": "import sst"}
WATCHED = ("torch._dynamo", "numba")

_PROBE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "{statement}\n"
    "dt = time.perf_counter() - t\n"
    "print(json.dumps({{'seconds': dt, 'loaded': [m for m in {watched!r} if m in sys.modules]}}))\n"
)


def time_import(statement: str, python: str = sys.executable) -> dict[str, Any]:
    """One fresh interpreter's time for ``statement`` (seconds) and the watched modules it loaded."""
    code = _PROBE.format(statement=statement, watched=WATCHED)
    out = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repeats: int, python: str = sys.executable) -> dict[str, Any]:
    """``repeats`` alternating samples of every statement: samples, median seconds and modules loaded."""
    samples: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    loaded: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, statement in STATEMENTS.items():
            result = time_import(statement, python)
            samples[name].append(result["seconds"])
            loaded[name] = result["loaded"]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "repeats": repeats,
        "samples_s": samples,
        "median_s": medians,
        "sst_over_torch_s": medians["sst"] - medians["torch"],
        "modules_loaded": loaded,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="fresh interpreters per statement")
    parser.add_argument("--out", default=None, help=f"record path (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="smoke run: write no record unless --out is given")
    args = parser.parse_args(argv)

    from experiments.common.runtime import git_commit, hardware, write_bench_record

    result = measure(args.repeats)
    for name, median in result["median_s"].items():
        print(f"import {name:5s}: median {median * 1000:7.0f} ms over {args.repeats} processes; "
              f"loads {', '.join(result['modules_loaded'][name]) or 'none of ' + ', '.join(WATCHED)}")
    print(f"sst on top of torch: {result['sst_over_torch_s'] * 1000:.0f} ms")
    record = {"benchmark": "import", "command": " ".join(["python", *sys.argv]), "commit": git_commit(),
              "hardware": {k: v for k, v in hardware().items() if k != "torch_threads"}, **result}
    write_bench_record(args.out, DEFAULT_OUT, record, args.quick)
    return record


if __name__ == "__main__":
    main()
