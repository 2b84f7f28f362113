"""Everything checkable from the config fails before any work, naming the key and its legal values (issue 41,
item 5), through the shared checks and each experiment's own ``validate(cfg)`` hook (issue 40)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments.common.config import ConfigError, validate_config
from tests.conftest import REPO, compose_cfg

BAD = [
    (["experiment=l2x", "k=400"], r"k=400 is not legal: it must be an integer in \[1, 350\].*data.max_len=350"),
    (["experiment=l2x", "k=0"], r"k=0 is not legal"),
    (["experiment=l2x", "aspect=7"], r"aspect=7 is unknown; legal choices: 0, 1, 2, 3, 4"),
    (["experiment=l2x", "data.w2v.epochs=0"], r"data.w2v.epochs=0"),
    (["experiment=l2x", "model.dropout=1.5"], r"model.dropout=1.5 .* in \[0, 1\)"),
    (["optim.lr=-1"], r"optim.lr=-1 is not legal: it must be a number > 0"),
    (["optim.lr=fast"], r"optim.lr='fast' is not legal: it must be a number > 0"),
    (["seed=abc"], r"seed='abc' is not legal: it must be an integer"),
    (["trainer.max_steps=abc"], r"trainer.max_steps='abc' is not legal: it must be an integer >= 1"),
    (["trainer.eval_every=0"], r"trainer.eval_every=0"),
    (["trainer.progress=maybe"], r"trainer.progress='maybe' .* true or false"),
    (["logger=wandb", "logger.mode=cloud"], r"logger.mode='cloud' is unknown; legal choices: offline, online"),
    (["experiment=nri", "model.prediction_steps=10"], r"model.prediction_steps=10 .* \[1, 9\]"),
    (["experiment=nri", "model.kl_edges=both"], r"model.kl_edges='both' is unknown; legal choices: directed, "
     r"undirected"),
    (["experiment=nri", "data.batch_size=60000"], r"data.batch_size=60000 .*\[1, 50000\] \(at most data.num_train\)"),
    (["experiment=nri_quick", "data.num_vertices=1"], r"data.num_vertices=1"),
    (["experiment=vae", "anneal.tau_min=0"], r"anneal.tau_min=0 .* > 0"),
    (["experiment=vae", "data.binarize=otsu"], r"data.binarize='otsu' is unknown; legal choices: dynamic"),
    (["experiment=vae", "data.num_valid=60000"], r"data.num_valid=60000"),
    # the estimator's and relaxation's options (experiments/common/option_checks.py; issue 54)
    (["experiment=vae", "estimator=reinforce", "estimator.baseline=loo0"],
     r"estimator.baseline='loo0' is unknown; legal choices: none, ema, batch, loo"),
    (["experiment=vae", "estimator=reinforce", "estimator.baseline=loo", "estimator.num_samples=1"],
     r"estimator.baseline=loo needs estimator.num_samples >= 2, got 1; legal choices with one sample: none, ema"),
    (["experiment=vae", "estimator=reinforce", "estimator.num_samples=0"], r"estimator.num_samples=0 .* integer >= 1"),
    (["experiment=vae", "estimator=muprop", "estimator.ema_decay=1.0"], r"estimator.ema_decay=1.0 .* in \[0, 1\)"),
    (["experiment=vae", "estimator=nvil", "estimator.hidden=0"], r"estimator.hidden=0 .* integer >= 1"),
    (["experiment=vae", "estimator=nvil", "estimator.normalize=maybe"],
     r"estimator.normalize='maybe' .* true or false"),
    (["experiment=vae", "estimator=rebar", "+estimator.eta=inf"], r"estimator.eta=inf .* a number"),
    (["experiment=vae", "estimator=relax", "+estimator.learn_tau=2"], r"estimator.learn_tau=2 .* true or false"),
    (["experiment=vae", "estimator=relaxed", "estimator.structures=[tree]"],
     r"estimator.structures=.*tree.* list of the structures: categorical, binary, topk"),
    (["experiment=vae", "+estimator.tau=0.5"], r"estimator.tau is not an estimator option; legal keys: name, "
     r"structures, num_samples, baseline.*\(tau, regularizer, event_shape, context_dim come from"),
    (["experiment=l2x", "relaxation=ef_topk_fd", "relaxation.eps=0"], r"relaxation.eps=0 .* number > 0"),
    (["experiment=nri", "relaxation=indep", "relaxation.directed=yes"],
     r"relaxation.directed='yes' .* true or false"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_names_the_key_and_the_legal_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(overrides))


@pytest.mark.parametrize("experiment", ["vae", "l2x", "nri", "nri_quick"])
def test_defaults_pass(experiment):
    validate_config(compose_cfg([f"experiment={experiment}"]))


def test_integral_floats_are_integers():
    validate_config(compose_cfg(["trainer.max_steps=5e4", "seed=1.0"]))


@pytest.mark.parametrize("name", ["l2x", "nri"])
def test_each_task_validates_its_own_config(name):
    """``Task.validate`` is the experiment's hook; the shared module names no experiment."""
    from experiments import task_class

    cfg = compose_cfg([f"experiment={name}", "k=400" if name == "l2x" else "model.prediction_steps=99"])
    with pytest.raises(ConfigError):
        task_class(name).validate(cfg)
    source = (REPO / "experiments" / "common" / "config.py").read_text()
    for experiment in ("vae", "l2x", "nri"):
        assert f'"{experiment}"' not in source and f"'{experiment}'" not in source


def test_validation_imports_no_torch():
    """So a bad config fails in a second or two: torch alone takes seconds to import."""
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from experiments.common.config import ConfigError, validate_config\n"
        f"with initialize_config_dir(config_dir={str(REPO / 'configs')!r}, version_base='1.3'):\n"
        "    for ov in (['experiment=l2x', 'k=400'], ['experiment=nri'], ['experiment=vae']):\n"
        "        try:\n"
        "            validate_config(compose(config_name='config', overrides=ov))\n"
        "        except ConfigError:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'gensim') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
