"""benchmarks/bench_distributions.py --quick: exact and relaxed draws timed per structure, the record written."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_distributions


def test_bench_distributions_quick_writes_its_record(tmp_path: Path):
    out = tmp_path / "dist.json"
    record = bench_distributions.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["results"] == record["results"]
    assert [r["structure"] for r in record["results"]] == ["TopK(3)", "CorrelatedTopK(3)", "SpanningTree",
                                                           "Arborescence"]
    for row in record["results"]:
        assert set(row["ms"]) == {"exact_sample", "relaxed_sample"} and row["exact_over_relaxed_best"] > 0
    assert record["hardware"]["device"] == "cpu" and record["commit"]
