"""Hand-made records and the report scripts, for the tests of experiments.report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO


def _write(path: Path, **record) -> None:
    """``record`` as JSON at ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _records(tmp_path: Path) -> Path:
    """A results folder: two NRI runs, one L2X, one VAE run and a JSON that is no record."""
    res = tmp_path / "results"
    for seed, elbo in enumerate([-1000.0, -1100.0]):
        _write(res / "nri" / f"st{seed}.json", experiment="nri", relaxation="spanning_tree", estimator="relaxed",
               timesteps=10, metrics={"test/elbo": elbo, "test/edge_precision": 0.8, "test/edge_recall": 0.8,
                                      "test/edge_precision_released": 0.9, "test/edge_recall_released": 0.9},
               config={"relaxation": {"tau": 1.0}, "model": {"kl_edges": "directed"}})
    _write(res / "l2x" / "c.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/mse": 0.025, "test/subset_precision": 0.6})
    _write(res / "vae" / "g.json", experiment="vae", relaxation="gumbel_softmax", estimator="relaxed",
           metrics={"test/neg_elbo": 100.25})
    _write(res / "bench" / "x.json", name="not a record")
    return res


def script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (its ``main`` takes an argv list)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
