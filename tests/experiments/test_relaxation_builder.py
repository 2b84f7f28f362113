"""One way to build a relaxation (experiments.common.relaxations): every experiment's first training steps are
unchanged by it. The fingerprints (relaxation_fingerprints.json) are the losses of ``losses`` below measured on main
before the builder existed (commit 4660bfa; the same bits at 312f677): build the Task at ``torch.manual_seed(0)``
with float64 as the default dtype, train it in float64 for 3 optimizer steps on the batches of ``Generator(0)``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import compose_cfg, tiny_cfg
from tests.experiments.test_l2x_run import make_tiny_beer

STEPS = 3
# experiment -> "relaxation/estimator" -> the float64 losses of the first STEPS steps, measured on main at 4660bfa
FINGERPRINTS = json.loads((Path(__file__).parent / "relaxation_fingerprints.json").read_text())
# Tolerance. The fingerprints check the logic, not the rounding. In float32 they could not be both tight and portable:
# ef_topk_fd's finite-difference backward (eps = 0.01) multiplies the last-bit differences between CPU kernels
# (vectorised or scalar exp/log, MKL's code paths) by 1/eps = 100, and 3 Adam steps carry them into the losses
# (rel 3.2e-6 on another Xeon, against the rel 1e-6 asked then). In float64 a kernel's last bit is 1.1e-16 relative;
# a few hundred operations deep, times 1/eps, through Adam (its update passes a gradient's relative error on about
# unchanged) that stays below 1e-12. Measured: at most 1.6e-13 (l2x ef_topk_fd/relaxed) between
# ATEN_CPU_CAPABILITY=avx512 (this Xeon's own), avx2 and default, and MKL_ENABLE_INSTRUCTIONS=AVX2. REL = 1e-10
# stays 100x above that bound, yet a one-line change moves some step's loss by orders of magnitude more (tried by
# monkeypatching, 2026-12-07; the smallest move over the cases): the KL term x 1.01 moves every VAE case by
# >= 3.9e-6 and every NRI case by >= 3.0e-7; tau x 1.01 moves L2X's ef_topk_fd, softsub and corr_topk by >= 1e-4;
# NRI's finite-difference step 0.01 -> 0.0101 moves ef_topk_fd/relaxed by 1.3e-6. (L2X's step 0.01 -> 0.0101 moves
# it by 4e-13 only: there the step eps * g is so small that the finite differences equal the exact backward to
# 1e-13, so l2x ef_topk_fd/relaxed and ef_topk/relaxed agree to 1.4e-14.)
REL = 1e-10


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """Tensors created without a dtype are float64 inside (parameters at initialisation, noise, constants)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def to_float64(batch: Any) -> Any:
    """``batch`` (a tensor or a list/tuple of them) with its floating tensors in float64."""
    if isinstance(batch, torch.Tensor):
        return batch.double() if batch.is_floating_point() else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_float64(b) for b in batch)
    raise TypeError(f"unexpected batch type {type(batch).__name__}")


def losses(task) -> list[float]:
    """The first ``STEPS`` float64 training losses of ``task`` (seeded: the same noise every run). Call it (and
    build the task) inside :func:`float64_default`: the data stay float32 until each batch is converted."""
    assert torch.get_default_dtype() == torch.float64
    task.module().double()  # buffers too (frozen embeddings, estimator statistics)
    torch.manual_seed(0)
    opt, _ = task.configure_optimizers()
    batches = task.train_batches(torch.Generator(device=task.device).manual_seed(0))
    out = []
    for step in range(STEPS):
        loss, _ = task.training_step(to_float64(next(batches)), step)
        assert loss.dtype == torch.float64
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


# ------------------------------------------------------------------------------------------------------- L2X
@pytest.fixture(scope="module")
def beer(tmp_path_factory):
    """A tiny BeerAdvocate, its config overrides and its data (read once, word2vec in a private cache) with a
    seeded float64 embedding table in place of word2vec's: word2vec trains its float32 vectors with the CPU's BLAS
    kernels (OpenBLAS picks them per CPU: OPENBLAS_CORETYPE=Haswell moved the L2X losses by 3e-8 here). Rows
    that word2vec leaves zero (PAD, UNK) stay zero."""
    import os

    from experiments.l2x.data import load_beer

    tmp = tmp_path_factory.mktemp("beer")
    root = make_tiny_beer(tmp / "data", n_train=80, n_test=10)
    old = os.environ.get("SST_CACHE_DIR")
    os.environ["SST_CACHE_DIR"] = str(tmp / "cache")
    over = ["experiment=l2x", "logger=none", "device=cpu", f"data.root={root}", "data.train_files=[beer/train.txt.gz]",
            "data.test_file=beer/annotations.json", "data.embedding_dim=16", "data.w2v.epochs=1",
            "data.w2v.workers=1", "data.batch_size=8", "trainer.progress=false", "model.filters=16",
            "model.hidden=16", "k=5"]
    data = load_beer(compose_cfg(over), progress=False)
    w2v = data.embeddings
    table = 0.25 * torch.randn(w2v.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    table[w2v.eq(0).all(-1)] = 0.0
    yield over, dataclasses.replace(data, embeddings=table)
    if old is None:
        os.environ.pop("SST_CACHE_DIR", None)
    else:
        os.environ["SST_CACHE_DIR"] = old


def l2x_losses(beer, relaxation: str, estimator: str) -> list[float]:
    from experiments.l2x.task import BeerL2XTask

    over, data = beer
    torch.manual_seed(0)
    cfg = compose_cfg([*over, f"relaxation={relaxation}", f"estimator={estimator}"])
    return losses(BeerL2XTask(cfg, torch.device("cpu"), data=data))


# ------------------------------------------------------------------------------------------------------- VAE


def vae_losses(relaxation: str, estimator: str) -> list[float]:
    from experiments.vae.task import VAETask

    torch.manual_seed(0)
    cfg = tiny_cfg("vae", f"relaxation={relaxation}", f"estimator={estimator}", "model.hidden=[32,16]")
    return losses(VAETask(cfg, torch.device("cpu")))


# ------------------------------------------------------------------------------------------------------- NRI


def nri_losses(relaxation: str, estimator: str) -> list[float]:
    from experiments.nri.task import NRITask

    torch.manual_seed(0)
    return losses(NRITask(tiny_cfg("nri", f"relaxation={relaxation}", f"estimator={estimator}"), torch.device("cpu")))


CASES = [(experiment, case) for experiment in ("l2x", "vae", "nri") for case in sorted(FINGERPRINTS[experiment])]


@pytest.mark.kernel_sensitive
@pytest.mark.parametrize("experiment, case", CASES)
def test_fingerprint(request, experiment, case, one_thread):
    relaxation, estimator = case.split("/")
    beer = request.getfixturevalue("beer") if experiment == "l2x" else None
    if experiment == "vae":
        request.getfixturevalue("fake_mnist")
    with float64_default():
        if experiment == "l2x":
            got = l2x_losses(beer, relaxation, estimator)
        elif experiment == "vae":
            got = vae_losses(relaxation, estimator)
        else:
            got = nri_losses(relaxation, estimator)
    want = FINGERPRINTS[experiment][case]
    assert got == pytest.approx(want, rel=REL, abs=0), (got, want)


# ------------------------------------------------------------------------------------------ the builder itself
def test_torch_free_regularizer_table_agrees_with_sst():
    from experiments.common.relaxations import REGULARIZERS, STRUCTURES, SUBSET_METHODS
    from sst import subset_baselines

    assert SUBSET_METHODS == tuple(subset_baselines.SUBSET_METHODS) and set(REGULARIZERS) == set(STRUCTURES)
    for kind, builder in STRUCTURES.items():
        structure, _ = builder(None, {}, k=1)
        extra = SUBSET_METHODS if kind == "topk" else ()
        assert REGULARIZERS[kind] == (*structure.regularizers, *extra), kind


@pytest.mark.parametrize("experiment, relaxation, kind", [("vae", "gumbel_softmax", "categorical"),
                                                          ("l2x", "softsub", "topk"), ("nri", "spanning_tree",
                                                                                      "spanning_tree")])
def test_every_config_builds(experiment, relaxation, kind):
    """Every relaxation config of every experiment builds (one per experiment spelled out, all of them looped)."""
    from experiments.common.relaxations import build_relaxation

    for name in compose_cfg([f"experiment={experiment}"]).experiment.relaxations:
        cfg = compose_cfg([f"experiment={experiment}", f"relaxation={name}"])
        rel = build_relaxation(cfg.relaxation, k=5, masked=experiment == "l2x", max_range=15.0)
        assert rel.name == name and rel.tau == float(cfg.relaxation.tau)
    rel = build_relaxation(compose_cfg([f"experiment={experiment}", f"relaxation={relaxation}"]).relaxation, k=5,
                           masked=experiment == "l2x", max_range=15.0)
    assert rel.kind == kind


def test_structures_by_config_and_context():
    import sst
    from experiments.common.relaxations import build_relaxation, clipped_spanning_tree, relaxation_config
    from sst.subset_baselines import FiniteDifferenceTopK, SubsetSampler

    def build(name, **context):
        return build_relaxation(relaxation_config(name, tau=0.5), **context)

    assert type(build("ef_topk", k=3).structure) is sst.TopK
    fd = build("ef_topk_fd", k=3)  # unmasked (NRI): a structure every estimator serves, exp-family regularizer
    assert isinstance(fd.structure, FiniteDifferenceTopK) and fd.regularizer == "exp_family_entropy"
    masked = build("ef_topk_fd", k=3, masked=True)  # masked items (L2X): the masked sampler
    assert isinstance(masked.structure, SubsetSampler) and masked.structure.options == {"eps": 0.01}
    assert build("l2x", k=3).structure.method == "l2x" and build("softsub", k=3).structure.options == {}
    assert isinstance(build("corr_topk", k=3).structure, sst.CorrelatedTopK)
    assert isinstance(build("spanning_tree", max_range=15.0).structure, clipped_spanning_tree())
    assert type(build("spanning_tree").structure) is sst.SpanningTree
    assert build("indep").options == {"directed": True} and build("indep_sym").options == {}


def test_bad_relaxation_configs_fail_naming_the_key():
    from experiments.common.relaxations import build_relaxation, relaxation_config

    with pytest.raises(ValueError, match=r"relaxation.regularizer='entropy'.*legal choices: exp_family_entropy"):
        build_relaxation(relaxation_config("ef_topk", tau=1.0, regularizer="entropy"), k=3)
    with pytest.raises(ValueError, match=r"relaxation.structure='tree'.*legal choices: categorical"):
        build_relaxation({"name": "x", "structure": "tree", "tau": 1.0})
    with pytest.raises(ValueError, match="needs the subset size k"):
        build_relaxation(relaxation_config("ef_topk", tau=1.0))
    with pytest.raises(ValueError, match="relaxation.tau"):
        build_relaxation(relaxation_config("binary_concrete", tau=0.0))
    with pytest.raises(ValueError, match="relaxation='nope' is unknown; legal choices: bin_ent_topk"):
        relaxation_config("nope")


def test_estimator_from_its_config_entry():
    from omegaconf import OmegaConf

    from experiments.common.relaxations import build_relaxation, relaxation_config

    rel = build_relaxation(relaxation_config("binary_concrete", tau=0.7))
    entry = OmegaConf.load(Path(__file__).parents[2] / "configs" / "estimator" / "reinforce.yaml")
    est = rel.estimator_from_config(entry)
    assert est.name == "reinforce" and est.baseline == entry.baseline and est.num_samples == entry.num_samples
    assert est.tau == 0.7  # the relaxation's temperature
    assert rel.estimator_from_config({"name": "reinforce", "num_samples": 2}, num_samples=3).num_samples == 3
    with pytest.raises(ValueError, match="an estimator config needs a name, got keys baseline"):
        rel.estimator_from_config({"baseline": "loo"})


@pytest.mark.parametrize("override, match", [
    ("relaxation.regularizer=entropy", r"relaxation.regularizer='entropy' is not available for "
                                       r"relaxation.structure=topk; legal choices: exp_family_entropy"),
    ("relaxation.structure=tree", r"relaxation.structure='tree' is unknown; legal choices: categorical"),
])
def test_bad_relaxation_fails_config_validation(override, match):
    from experiments.common.config import ConfigError, validate_common

    with pytest.raises(ConfigError, match=match):
        validate_common(compose_cfg(["experiment=l2x", "relaxation=softsub", override]))


def test_clipped_spanning_tree_clips_w_over_tau_to_max_range():
    import sst
    from experiments.common.relaxations import clipped_spanning_tree

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 5, generator=g, dtype=torch.float64) * 20
    theta = (a + a.transpose(-1, -2)).requires_grad_(True)
    iu, ju = torch.triu_indices(5, 5, offset=1)
    m = theta[..., iu, ju].amax(-1)[..., None, None]
    want = sst.SpanningTree().relax(torch.maximum(theta, m - 3.0 * 0.5), tau=0.5)
    got = clipped_spanning_tree()(3.0).relax(theta, tau=0.5)
    torch.testing.assert_close(got, want)
    assert (theta < m - 1.5).any()  # the clip acted
