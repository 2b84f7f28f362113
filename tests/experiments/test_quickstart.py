"""`make run`'s driver: its plan, the seed it selects and its closing summary (issue 41, item 1)."""

from __future__ import annotations

from pathlib import Path

from experiments import quickstart
from tests.conftest import compose_cfg


def _record(valid_elbo: float, precision: float) -> dict:
    return {"metrics": {"best/valid/elbo": valid_elbo, "test/elbo": valid_elbo + 5, "test/edge_precision": precision,
                        "best/step": 2000}, "process_time_s": 120.0}


def test_plan_says_what_and_how_long():
    text = quickstart.plan([0, 1, 2, 3], 2)
    assert "5 vertices" in text and "2,000 steps" in text and "minutes" in text and "validation ELBO" in text


def test_selects_the_best_validation_elbo_and_summarises(tmp_path: Path):
    records = {0: _record(-1463, 0.108), 1: _record(-633, 0.974), 3: _record(-1471, 0.023)}
    assert quickstart.select(records) == 1
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "nri_test_trajectories.png").write_bytes(b"")
    text = quickstart.summary(tmp_path, records, {2: "exit 2: error: x"}, 400.0)
    assert "| 1 (selected) | -633 |" in text and "learnt the tree" in text and "| 2 | failed" in text
    assert str(tmp_path) in text and "nri_test_trajectories.png" in text
    assert quickstart.PAPER_COMMAND in text and "GPU" in text


def test_preset_is_the_small_nri_configuration():
    cfg = compose_cfg([f"experiment={quickstart.PRESET}"])
    assert cfg.experiment.name == "nri" and cfg.data.num_vertices == 5 and cfg.model.prediction_steps == 1
    assert cfg.model.kl_edges == "directed" and cfg.trainer.eval_every == 500 and cfg.logger.name == "none"
    assert cfg.trainer.max_steps == 2000 and cfg.relaxation.tau == 1.0 and cfg.optim.lr == 1e-3
    assert compose_cfg(["experiment=nri"]).trainer.max_steps == 50000  # the paper-scale run is untouched
