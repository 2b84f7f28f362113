"""Smoke test of benchmarks/bench_relaxations.py (--quick): it runs on the CPU and its baselines agree with sst."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

import sst

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_relaxations.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_relaxations", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_benchmark_writes_json(tmp_path):
    bench = _load()
    out = tmp_path / "bench.json"
    record = bench.main(["--quick", "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["hardware"]["torch"] == torch.__version__
    assert saved["command"].startswith("python ")
    assert {c["name"] for c in record["comparisons"]} >= {"SpanningTree argmax, 10 nodes"}
    assert all(c["speedup"] > 0 for c in record["comparisons"])
    assert "| benchmark |" in saved["markdown"]


def test_baselines_agree_with_library():
    bench = _load()
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 12, dtype=torch.float64, generator=g)
    mu_np = bench.topk_marginals_numpy(theta.numpy(), 4)
    torch.testing.assert_close(torch.from_numpy(mu_np), sst.TopK(4).relax(theta, 1.0))
    w = torch.randn(5, 7, 7, generator=g)
    w = w + w.transpose(-1, -2)
    assert torch.equal(bench.kruskal_torch(w), sst.SpanningTree().argmax(w))
    iu, ju = torch.triu_indices(7, 7, 1)
    edge = w.double()[:, iu, ju].requires_grad_()
    ours = sst.SpanningTree().relax(w.double(), 1.0)[:, iu, ju]
    torch.testing.assert_close(bench.slogdet_marginals(edge, 7).detach(), ours)
