"""Every legal experiment x relaxation x estimator composes; illegal ones fail before any work."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.common.config import ConfigError, validate_config
from tests.conftest import REPO, compose_cfg

RELAXATIONS = sorted(p.stem for p in (REPO / "configs" / "relaxation").glob("*.yaml"))
ESTIMATORS = sorted(p.stem for p in (REPO / "configs" / "estimator").glob("*.yaml"))
EXPERIMENTS = ["vae", "l2x", "nri"]


def _legal(experiment: str) -> tuple[list[str], list[str]]:
    cfg = OmegaConf.load(REPO / "configs" / "experiment" / f"{experiment}.yaml")
    return list(cfg.experiment.relaxations), list(cfg.experiment.estimators)


def _combos():
    for exp in EXPERIMENTS:
        for rel, est in itertools.product(RELAXATIONS, ESTIMATORS):
            yield exp, rel, est


def test_names_match_the_issue():
    assert set(RELAXATIONS) == {
        "gumbel_softmax", "binary_concrete", "indep", "ef_topk", "euclid_topk", "cat_ent_topk",
        "bin_ent_topk", "corr_topk", "l2x", "softsub", "spanning_tree", "ef_topk_fd", "indep_sym",
    }
    assert set(ESTIMATORS) == {"relaxed", "straight_through", "reinforce", "nvil", "muprop", "rebar", "relax"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_combination_composes_or_is_rejected(experiment):
    rels, ests = _legal(experiment)
    n_ok = 0
    for exp, rel, est in _combos():
        if exp != experiment:
            continue
        cfg = compose_cfg([f"experiment={exp}", f"relaxation={rel}", f"estimator={est}"])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert cfg.relaxation.name == rel and cfg.estimator.name == est
        supported = cfg.estimator.structures
        legal = rel in rels and est in ests and (supported is None or cfg.relaxation.structure in supported)
        if legal:
            validate_config(cfg)
            n_ok += 1
        else:
            with pytest.raises(ConfigError, match="legal"):
                validate_config(cfg)
    assert n_ok > 0


@pytest.mark.parametrize("experiment,relaxation", [("nri", "spanning_tree"), ("vae", "gumbel_softmax"),
                                                   ("l2x", "corr_topk")])
def test_experiment_picks_its_default_relaxation(experiment, relaxation):
    assert compose_cfg([f"experiment={experiment}"]).relaxation.name == relaxation


def test_defaults_are_nri_spanning_tree():
    cfg = compose_cfg()
    assert cfg.experiment.name == "nri" and cfg.relaxation.name == "spanning_tree"
    assert cfg.logger.name == "wandb" and cfg.logger.mode == "offline"


def test_illegal_relaxation_message_lists_choices():
    cfg = compose_cfg(["experiment=vae", "relaxation=spanning_tree"])
    with pytest.raises(ConfigError, match="gumbel_softmax, binary_concrete"):
        validate_config(cfg)


def test_rebar_on_topk_rejected():
    cfg = compose_cfg(["experiment=nri", "relaxation=ef_topk", "estimator=rebar"])
    with pytest.raises(ConfigError):
        validate_config(cfg)


def test_bad_batch_settings_rejected():
    with pytest.raises(ConfigError, match="data.bucket_batches"):
        validate_config(compose_cfg(["experiment=l2x", "data.bucket_batches=-1"]))
    with pytest.raises(ConfigError, match="data.batch_size"):
        validate_config(compose_cfg(["experiment=vae", "data.batch_size=0"]))
    validate_config(compose_cfg(["experiment=l2x", "data.bucket_batches=50"]))
    with pytest.raises(ConfigError, match="data.train_fraction"):
        validate_config(compose_cfg(["experiment=l2x", "data.train_fraction=1.5"]))
    validate_config(compose_cfg(["experiment=l2x", "data.train_fraction=0.5"]))
    with pytest.raises(ConfigError, match="data.w2v.epochs"):
        validate_config(compose_cfg(["experiment=l2x", "data.w2v.epochs=0"]))


def test_bad_lr_schedule_rejected():
    from experiments.common.config import SCHEDULES
    from experiments.common.task import LR_SCHEDULES

    assert SCHEDULES == LR_SCHEDULES
    with pytest.raises(ConfigError, match="constant, cosine, step"):
        validate_config(compose_cfg(["experiment=vae", "optim.schedule=linear"]))
    with pytest.raises(ConfigError, match="lr_decay_steps"):
        validate_config(compose_cfg(["experiment=vae", "optim.schedule=step"]))
    with pytest.raises(ConfigError, match="lr_min"):
        validate_config(compose_cfg(["experiment=l2x", "optim.schedule=cosine", "optim.lr_min=-1"]))
    validate_config(compose_cfg(["experiment=vae", "optim.schedule=cosine", "optim.lr_min=1e-4"]))
    validate_config(compose_cfg(["experiment=nri"]))  # step, with its period in epochs
    with pytest.raises(ConfigError, match="lr_decay_epochs"):
        validate_config(compose_cfg(["experiment=nri", "optim.lr_decay_epochs=0"]))
    validate_config(compose_cfg(["experiment=vae", "optim.schedule=step", "optim.lr_decay_steps=1000"]))


def test_bad_pairwise_head_rejected():
    from experiments.l2x.checks import PAIRWISE_HEADS
    from experiments.l2x.model import PAIRWISE_KINDS

    assert PAIRWISE_HEADS == tuple(kind for kind in PAIRWISE_KINDS if kind is not None)
    with pytest.raises(ConfigError, match="conv, attract, scalar, fixed"):
        validate_config(compose_cfg(["experiment=l2x", "model.pairwise=repel"]))
    for head in PAIRWISE_HEADS:
        validate_config(compose_cfg(["experiment=l2x", f"model.pairwise={head}"]))
    validate_config(compose_cfg(["experiment=l2x", "relaxation=ef_topk", "model.pairwise=repel"]))  # unused there


def test_bad_vae_init_rejected():
    from experiments.vae.checks import INITS as VAE_INITS
    from experiments.vae.model import INITS

    assert VAE_INITS == INITS
    with pytest.raises(ConfigError, match="model.init.*torch, xavier"):
        validate_config(compose_cfg(["experiment=vae", "model.init=glorot"]))
    for init in VAE_INITS:
        validate_config(compose_cfg(["experiment=vae", f"model.init={init}"]))


def test_bad_loss_limit_and_stray_pairwise_offset_rejected():
    with pytest.raises(ConfigError, match="trainer.loss_limit"):
        validate_config(compose_cfg(["trainer.loss_limit=-1"]))
    validate_config(compose_cfg(["trainer.loss_limit=null"]))
    with pytest.raises(ConfigError, match="trainer.flush_denormal"):
        validate_config(compose_cfg(["trainer.flush_denormal=sometimes"]))
    validate_config(compose_cfg(["trainer.flush_denormal=false"]))
    with pytest.raises(ConfigError, match="pairwise_offset"):
        validate_config(compose_cfg(["experiment=l2x", "relaxation=ef_topk", "model.pairwise_offset=4"]))
    validate_config(compose_cfg(["experiment=l2x", "relaxation=corr_topk", "model.pairwise_offset=4"]))


def test_bad_tau_and_device_rejected():
    with pytest.raises(ConfigError, match="tau"):
        validate_config(compose_cfg(["relaxation.tau=0"]))
    with pytest.raises(ConfigError, match="auto, cpu, cuda"):
        validate_config(compose_cfg(["device=tpu"]))


@pytest.mark.parametrize("launcher", ["joblib", "submitit_slurm", "slurm_gpu"])
def test_launchers_compose(launcher):
    cfg = compose_cfg([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


def test_cli_cfg_job_composes():
    out = subprocess.run(
        [sys.executable, "run.py", "experiment=l2x", "relaxation=corr_topk", "--cfg", "job"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "corr_topk" in out.stdout


def test_cli_illegal_combination_fails_fast(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "run.py", "experiment=l2x", "relaxation=spanning_tree", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0
    assert "legal choices" in out.stderr and "corr_topk" in out.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_task_class_names_each_experiments_task(name):
    from experiments import task_class
    from experiments.common.task import Task

    assert issubclass(task_class(name), Task)


def test_task_class_rejects_an_unknown_experiment_listing_the_choices():
    from experiments import task_class

    with pytest.raises(ValueError, match="experiment='mnist' is unknown; legal choices: l2x, nri, vae"):
        task_class("mnist")
