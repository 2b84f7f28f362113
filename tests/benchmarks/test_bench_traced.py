"""benchmarks/bench_traced.py --quick: every structure timed eagerly, compiled and vmapped, the record written
(slow: six compiles, the trees' taking 15-50 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_traced


@pytest.mark.slow
def test_bench_traced_quick_writes_its_record(tmp_path: Path):
    out = tmp_path / "traced.json"
    record = bench_traced.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["results"] == record["results"]
    assert len(record["results"]) == 6
    for row in record["results"]:
        assert set(row["ms"]) == {"eager", "compiled", "vmap"}
        assert all(v["best_ms"] > 0 for v in row["ms"].values())
