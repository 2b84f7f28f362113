"""benchmarks/bench_hard_solvers.py --quick: every solver timed for both structures, the record written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_hard_solvers


def test_bench_hard_solvers_quick_writes_its_record(tmp_path: Path):
    pytest.importorskip("scipy")
    out = tmp_path / "hard.json"
    record = bench_hard_solvers.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["results"] == record["results"]
    assert {(r["structure"], r["n"]) for r in record["results"]} == {
        (s, n) for s in ("permutation", "arborescence") for n in (4, 6)}
    for row in record["results"]:
        assert set(row["ms"]) == {"host", "torch_sync_free", "torch_early_exit"} and row["ops_sync_free"] > 0
    assert record["hardware"]["device"] == "cpu" and record["commit"]
