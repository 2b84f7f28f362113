"""benchmarks/bench_import.py: one sample per series, the modules each import loaded, the record's keys."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_import


def test_bench_times_both_imports_and_writes_its_record(tmp_path: Path):
    out = tmp_path / "import.json"
    record = bench_import.main(["--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text())["median_s"] == record["median_s"]
    assert set(record["median_s"]) == {"torch", "sst"}
    assert all(v["cpu"] > 0 and v["wall"] > 0 for v in record["median_s"].values())
    assert record["modules_loaded"]["sst"] == [] and record["baseline_commit"] is None
