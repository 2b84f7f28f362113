"""``python run.py`` ends with a summary: the final metrics, the output folder, the command that collects the record
or resumes the run (issue 54, item 4); without a progress bar a run prints its validations, so the quick start's
``seed<N>.log`` holds each seed's output (issue 54, item 5)."""

from __future__ import annotations

from pathlib import Path

from experiments import quickstart
from experiments.common.loggers import Logger
from experiments.common.summary import run_summary
from tests.conftest import SHRINK

RECORD = {"experiment": "nri", "relaxation": "spanning_tree", "estimator": "relaxed", "seed": 3, "step": 2000,
          "finished": True, "wall_time_s": 150.0, "config": {"trainer": {"max_steps": 2000}},
          "metrics": {"test/elbo": -633.25, "test/edge_precision": 0.974, "best/valid/elbo": -640.0,
                      "best/step": 1500, "train/steps_per_s": 16.7}}


def test_finished_run_shows_test_metrics_folder_and_collect_command(tmp_path: Path):
    text = run_summary(tmp_path, RECORD, "python run.py seed=3 hydra.run.dir=x")
    assert text.splitlines()[0] == ("[sst] finished nri / spanning_tree / relaxed, seed 3: 2000 steps, 2.5 minutes "
                                    "of training (16.7 steps/s)")
    assert "  test: elbo -633.2, edge_precision 0.974" in text and "step 1500" in text
    assert f"output folder: {tmp_path}" in text
    assert f"scripts/collect_run.py {tmp_path}" in text and "resume" not in text


def test_unfinished_run_shows_best_validation_and_the_resume_command(tmp_path: Path):
    record = {**RECORD, "finished": False, "step": 1700, "metrics": {"best/valid/elbo": -640.0, "best/step": 1500}}
    text = run_summary(tmp_path, record, "python run.py seed=3 hydra.run.dir=x")
    assert "at step 1700 of 2000: trainer.max_minutes ran out" in text and "no test evaluation" in text
    assert "best validation, step 1500: elbo -640" in text
    assert text.splitlines()[-1] == "  resume: python run.py seed=3 hydra.run.dir=x"


def test_logger_echoes_validations_only_when_asked(tmp_path: Path, capsys):
    Logger(tmp_path).log({"valid/elbo": -1.5}, 10)
    assert capsys.readouterr().out == ""
    echo = Logger(tmp_path, echo=True)
    echo.log({"train/loss": 2.0}, 5)
    echo.log({"valid/elbo": -1.5, "valid/edge_precision": 0.5}, 10)
    assert capsys.readouterr().out == "[sst] step 10 valid: elbo -1.5, edge_precision 0.5\n"
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3


def test_quickstart_seed_log_holds_the_seed_s_output(tmp_path: Path):
    """One tiny seed through the quick start: its log has the command, each validation and run.py's summary."""
    out = tmp_path / "qs"
    tiny = [*SHRINK["nri"], "trainer.max_steps=20", "trainer.eval_every=10", "device=cpu"]
    result = quickstart.run([0], 1, out, tiny)
    assert result["selected_seed"] == 0
    log = (out / "seed0.log").read_text()
    assert log.startswith("$ python run.py experiment=nri_quick seed=0 ")
    assert "[sst] step 10 valid: elbo" in log and "[sst] step 20 valid: elbo" in log
    assert "[sst] finished nri / spanning_tree / relaxed, seed 0: 20 steps" in log
    assert f"output folder: {out / 'seed0'}" in log or f"output folder: {(out / 'seed0').resolve()}" in log
    assert "scripts/collect_run.py" in log
