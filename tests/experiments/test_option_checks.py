"""Every key of the estimator and relaxation groups and every trainer key fails before any work when given a bad
value, with a message naming the key and its legal values (issue 54, item 4); ``estimator.baseline=loo0`` from the
command line exits with status 2 and one line."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from experiments.common import option_checks
from experiments.common.config import ConfigError, validate_config
from tests.conftest import REPO, compose_cfg

CONFIGS = REPO / "configs"
EXPERIMENTS = ("vae", "l2x", "nri")
BOGUS = "bogus"


def _group(name: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / name).glob("*.yaml"))


def _keys(path: Path) -> list[str]:
    return list(OmegaConf.load(path).keys())


@functools.cache
def _composed(*overrides: str) -> DictConfig:
    return compose_cfg(list(overrides))


def _experiment_for(group: str, choice: str) -> str:
    """An experiment whose config lists ``choice`` among its relaxations or estimators."""
    for name in EXPERIMENTS:
        if choice in _composed(f"experiment={name}").experiment[f"{group}s"]:
            return name
    raise AssertionError(f"no experiment offers {group}={choice}")


def _bad(group: str, choice: str, key: str) -> DictConfig:
    cfg = _composed(f"experiment={_experiment_for(group, choice)}", f"{group}={choice}").copy()
    validate_config(cfg)  # the group entry as written is legal
    OmegaConf.update(cfg, f"{group}.{key}", BOGUS, merge=False)
    return cfg


def _assert_names_key_and_legal_values(cfg: DictConfig, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    message = str(info.value)
    named = f"{key.split('.')[0]}='{BOGUS}'" if key.endswith(".name") else f"{key}='{BOGUS}'"
    assert named in message, message
    assert "legal choices" in message or "must be" in message, message


GROUP_KEYS = [(group, choice, key) for group in ("estimator", "relaxation") for choice in _group(group)
              for key in _keys(CONFIGS / group / f"{choice}.yaml")]


@pytest.mark.parametrize("group,choice,key", GROUP_KEYS, ids=[f"{g}={c}:{k}" for g, c, k in GROUP_KEYS])
def test_every_group_key_with_a_bad_value_fails_up_front(group: str, choice: str, key: str):
    _assert_names_key_and_legal_values(_bad(group, choice, key), f"{group}.{key}")


TRAINER_KEYS = list(OmegaConf.load(CONFIGS / "config.yaml").trainer.keys())


@pytest.mark.parametrize("key", TRAINER_KEYS)
def test_every_trainer_key_with_a_bad_value_fails_up_front(key: str):
    cfg = _composed("experiment=vae").copy()
    OmegaConf.update(cfg, f"trainer.{key}", BOGUS, merge=False)
    _assert_names_key_and_legal_values(cfg, f"trainer.{key}")


def test_legal_options_pass():
    validate_config(compose_cfg(["experiment=vae", "estimator=reinforce", "estimator.baseline=ema",
                                 "estimator.num_samples=1", "estimator.ema_decay=0"]))
    validate_config(compose_cfg(["experiment=vae", "estimator=muprop", "estimator.structures=[categorical]",
                                 "relaxation=gumbel_softmax"]))


def test_tables_match_the_library():
    """The torch-free tables are the library's: every option of sst.estimators.build is checked here or supplied
    by the experiment, the baselines are the same, and every key of a group's YAML files has a check."""
    import sst.estimators

    assert option_checks.BASELINES == sst.estimators.BASELINES
    assert (set(option_checks.ESTIMATOR_OPTIONS) - {"structures"}) | set(option_checks.SUPPLIED) \
        == set(sst.estimators.OPTIONS)
    for name in _group("estimator"):
        assert set(_keys(CONFIGS / "estimator" / f"{name}.yaml")) <= {"name", *option_checks.ESTIMATOR_OPTIONS}
    own = {"name", "structure", "regularizer", "tau"}  # experiments.common.relaxations._OWN_KEYS
    for name in _group("relaxation"):
        assert set(_keys(CONFIGS / "relaxation" / f"{name}.yaml")) <= own | set(option_checks.RELAXATION_OPTIONS)


def test_loo0_from_the_command_line_is_one_line_and_status_2(tmp_path: Path):
    """The issue's case: it used to fail after the data were built, with a traceback and status 1."""
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "run.py", "experiment=vae", "estimator=reinforce",
                          "estimator.baseline=loo0", f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines()[0] == ("error: estimator.baseline='loo0' is unknown; legal choices: none, ema, "
                                          "batch, loo")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 2
    assert not run_dir.exists()

