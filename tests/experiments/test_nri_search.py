"""The NRI hyperparameter search: the Optuna sweep at tiny size on CPU, its queue files and stage 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

TINY = ["data.num_train=64", "data.num_valid=32", "data.num_test=32", "data.batch_size=16", "model.encoder_hidden=8",
        "model.decoder_hidden=8", "eval.batch_size=32", "trainer.max_steps=4", "trainer.eval_every=2",
        "device=cpu", "logger=none", "trainer.progress=false"]
# the committed queue files and the generator arguments that make them (they must stay reproducible)
QUEUES = {
    "stage1_tree.queue": ("nri_search_tree", "s1_tree"),
    "stage1_topk.queue": ("nri_search_topk", "s1_topk"),
    "stage1_indep.queue": ("nri_search_indep", "s1_indep"),
    "proxy_tree.queue": ("nri_proxy_tree", "proxy_tree"),
    "proxy_indep.queue": ("nri_proxy_indep", "proxy_indep"),
    "proxy_topk.queue": ("nri_proxy_topk", "proxy_topk"),
}


def _lines(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("config,keys", [("nri_search_tree", {"optim.lr", "relaxation.tau", "seed"}),
                                         ("nri_search_topk", {"optim.lr", "relaxation.tau", "relaxation.eps", "seed"}),
                                         ("nri_search_indep", {"optim.lr", "relaxation.tau", "seed"})])
def test_search_configs_draw_log_uniform_trials(config, keys):
    from experiments.nri.search import compose_search, draw_trials

    cfg = compose_search(config)
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert cfg.trainer.max_steps == 4000  # short horizon
    assert cfg.trainer.eval_every == 500 and cfg.model.kl_edges == "directed"
    trials = draw_trials(cfg, 200)
    assert trials == draw_trials(cfg, 200)  # fixed sampler seed: reproducible
    assert all(set(t) == keys for t in trials)
    lr = [math.log10(t["optim.lr"]) for t in trials]
    tau = [math.log10(t["relaxation.tau"]) for t in trials]
    lo_lr, hi_lr, lo_tau, hi_tau = math.log10(3e-4), math.log10(3e-3), math.log10(0.3), 1.0  # the narrowed box
    assert min(lr) >= lo_lr and max(lr) <= hi_lr and min(tau) >= lo_tau and max(tau) <= hi_tau
    # log-uniform: about half the draws below the log-midpoint
    assert 0.35 < sum(v < (lo_lr + hi_lr) / 2 for v in lr) / 200 < 0.65
    assert 0.35 < sum(v < (lo_tau + hi_tau) / 2 for v in tau) / 200 < 0.65
    if "relaxation.eps" in keys:
        assert {t["relaxation.eps"] for t in trials} == {1.0, 0.1, 0.01, 0.001, 0.0001}


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_committed_queue_files_are_reproducible(name):
    from experiments.nri.search import NAME_RE, stage1_queue

    config, prefix = QUEUES[name]
    path = REPO / "results" / "nri" / "queues" / name
    text = path.read_text()
    assert text == stage1_queue(config, prefix)
    names = [ln[0] for ln in _lines(text)]
    assert len(set(names)) == len(names) and all(NAME_RE.match(n) for n in names)
    assert all("-m" not in ln and f"experiment={config}" in ln for ln in _lines(text))


@pytest.mark.slow
def test_optuna_sweep_at_tiny_size_runs_the_queue_trials(tmp_path: Path):
    """``python -m experiments.nri.sweep -m`` with the Optuna random sampler: two tiny trials on CPU; each returns
    its best validation ELBO, and their parameters are the first two lines of the generated queue."""
    from experiments.nri.search import stage1_queue

    sweep = tmp_path / "sweep"
    env = {**os.environ, "SST_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "experiments.nri.sweep", "-m", "experiment=nri_search_tree",
           "hydra.sweeper.n_trials=2", *TINY, f"hydra.sweep.dir={sweep}",
           "hydra.sweep.subdir=${hydra.job.num}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    runs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(runs) == 2
    values = [json.loads((r / "metrics.json").read_text())["metrics"]["best/valid/elbo"] for r in runs]
    assert result["best_value"] == pytest.approx(max(values))
    queued = _lines(stage1_queue("nri_search_tree", "t", 2, TINY))
    for run, line in zip(sorted(runs, key=lambda r: int(r.name)), queued):
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        searched = {o.split("=")[0]: o.split("=")[1] for o in overrides if o.split("=")[0] in
                    ("optim.lr", "relaxation.tau", "seed")}
        assert searched and all(f"{k}={v}" in line for k, v in searched.items()), (searched, line)


def _record(tmp: Path, name: str, relaxation: str, lr: float, tau: float, value, finished=True, eps=None) -> None:
    cfg = {"optim": {"lr": lr}, "relaxation": {"name": relaxation, "tau": tau}}
    if eps is not None:
        cfg["relaxation"]["eps"] = eps
    rec = {"relaxation": relaxation, "config": cfg, "finished": finished,
           "metrics": {} if value is None else {"best/valid/elbo": value}}
    (tmp / name).mkdir(parents=True)
    (tmp / name / "metrics.json").write_text(json.dumps(rec))


def test_stage2_queue_takes_the_best_finished_settings_on_several_seeds(tmp_path: Path):
    from experiments.nri.search import main, rank_settings, read_records, stage2_queue

    _record(tmp_path, "t0", "ef_topk_fd", 1e-3, 0.5, -1500.0, eps=0.01)
    _record(tmp_path, "t1", "ef_topk_fd", 3e-4, 2.0, -1200.0, eps=1.0)
    _record(tmp_path, "t2", "ef_topk_fd", 2e-4, 0.2, -900.0, finished=False, eps=0.1)  # cut by a slot: skipped
    _record(tmp_path, "t3", "ef_topk_fd", 1e-4, 0.3, float("nan"), eps=0.1)  # diverged: skipped
    _record(tmp_path, "t4", "spanning_tree", 1e-3, 1.0, -800.0)  # another row
    ranked = rank_settings(read_records(tmp_path), "ef_topk_fd")
    assert [r["trial"] for r in ranked] == ["t1", "t0"]
    text = stage2_queue(ranked, "ef_topk_fd", "s2_topk", top=1, seeds=[0, 1, 2])
    lines = _lines(text)
    assert [ln[0] for ln in lines] == ["s2_topk_c0_s0", "s2_topk_c0_s1", "s2_topk_c0_s2"]
    assert lines[0][1:] == ["experiment=nri", "relaxation=ef_topk_fd", "optim.lr=0.0003", "relaxation.tau=2.0",
                            "relaxation.eps=1.0", "seed=0"]
    out = tmp_path / "q" / "s2.queue"
    main(["stage2", str(tmp_path), str(out), "--relaxation", "spanning_tree", "--top", "2", "--seeds", "4"])
    assert _lines(out.read_text()) == [["s2_spanning_tree_c0_s4", "experiment=nri", "relaxation=spanning_tree",
                                        "optim.lr=0.001", "relaxation.tau=1.0", "seed=4"]]
    with pytest.raises(ValueError, match="no finished stage-1 record"):
        stage2_queue([], "indep", "x")


def test_study_summary_is_compact_and_has_no_machine_paths(tmp_path: Path):
    from experiments.nri.search import summarise

    _record(tmp_path, "t0", "spanning_tree", 1e-3, 1.0, -700.0)
    rec = json.loads((tmp_path / "t0" / "metrics.json").read_text())
    rec.update(command="python run.py experiment=nri_proxy_tree", commit="abc", wall_time_s=12.5, seed=3,
               hardware={"cpu": "AMD EPYC", "cpu_cores": 2, "torch_threads": 1, "torch": "2.13.0", "device": "cpu",
                         "platform": "Linux"},
               data={"files": {"train": str(tmp_path / "cache" / "x.npz")}})
    rec["metrics"].update({"test/elbo": -710.123456, "test/edge_precision": 0.9})
    (tmp_path / "t0" / "metrics.json").write_text(json.dumps(rec))
    (tmp_path / "t0" / "history.jsonl").write_text(
        json.dumps({"step": 50, "train/loss": 1.0}) + "\n"
        + json.dumps({"step": 500, "valid/elbo": -720.04, "valid/edge_precision": 0.9,
                      "valid/edge_precision_released": 0.9}) + "\n")
    out = summarise(tmp_path, "s")
    run = out["runs"][0]
    assert run["lr"] == 1e-3 and run["tau"] == 1.0 and run["seed"] == 3 and run["wall_time_s"] == 12.5
    assert run["metrics"]["test/elbo"] == pytest.approx(-710.1235) and run["valid"] == [
        {"step": 500, "elbo": -720.0, "precision": 0.9, "precision_released": 0.9}]
    assert str(tmp_path) not in json.dumps(out) and "platform" not in out["hardware"]


def test_every_queue_file_follows_the_format_and_composes():
    """results/nri/queues/*.queue: ``NAME OVERRIDE ...`` lines, unique names, single runs, and every line composes
    to an NRI config (the hand-written follow-up too)."""
    from experiments.nri.search import NAME_RE, compose_search

    files = sorted((REPO / "results" / "nri" / "queues").glob("*.queue"))
    assert {f.name for f in files} >= set(QUEUES)
    for f in files:
        lines = _lines(f.read_text())
        names = [ln[0] for ln in lines]
        assert lines and len(set(names)) == len(names) and all(NAME_RE.match(n) for n in names), f.name
        for ln in lines if f.name == "proxy_followup.queue" else lines[:1]:
            assert ln[1].startswith("experiment=nri") and "-m" not in ln
            cfg = compose_search(ln[1].split("=", 1)[1], ln[2:])
            assert cfg.experiment.name == "nri"
