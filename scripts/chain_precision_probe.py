"""How accurate CorrelatedTopK's float32 backward pass is, against float64 on the same inputs.

    python scripts/chain_precision_probe.py [--old-chain OLD_CHAIN.py] [-o results/.../chain_precision.json]

Relative error ``|g32 - g64| / |g64|`` of the gradient with respect to the weights, for
- random weights: CorrelatedTopK(10), 8 chains of n = 200, tau = 1, upstream gradients of size 1 and 1e-5;
- the first L2X training batch (k = 15, seed 0, length-bucketed batches, fresh model): the gradient of the
  batch's MSE with respect to the selector's unary and pairwise logits, through one Gumbel perturbation drawn
  in float64 and shared by both precisions.

- large weights (a saturated selector): unary sd 30, 300, 1500 with pairwise weights around -sd/3, marginal
  and gradient errors, with the current centring of the unary part and with the earlier row-maximum one.

``--old-chain`` also measures another implementation of ``sst/structures/_chain.py`` (e.g. the one before the
per-row rescaling of the backward pass: ``git show 362f20a:sst/structures/_chain.py > /tmp/chain_362f20a.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_training import compose  # noqa: E402

import sst  # noqa: E402
from experiments.common.runtime import provenance, seed_everything, write_record  # noqa: E402
from experiments.common.trainer import batch_generator  # noqa: E402
from experiments.l2x.task import BeerL2XTask  # noqa: E402
from sst.structures import correlated_topk  # noqa: E402

DTYPES = (torch.float32, torch.float64)


def _rel_err(g32: torch.Tensor, g64: torch.Tensor) -> float:
    return float((g32.double() - g64).norm() / g64.norm())


def _split_row_max(self: sst.CorrelatedTopK, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CorrelatedTopK's split as of commits 2cdcc2c to b206d85: unary part shifted to row maximum 0."""
    n = (w.shape[-1] + 1) // 2
    a = w[..., :n]
    return a - a.detach().amax(-1, keepdim=True), w[..., n:]


@contextlib.contextmanager
def chain_module(module: ModuleType | None) -> Iterator[None]:
    """CorrelatedTopK uses ``module`` as its chain solver inside the block, with the row-maximum centring it
    was measured with in results/bench/chain_backward_precision.json (None: the current solver and split)."""
    current, split = correlated_topk._chain, correlated_topk.CorrelatedTopK._split
    if module is not None:
        correlated_topk._chain, correlated_topk.CorrelatedTopK._split = module, _split_row_max
    try:
        yield
    finally:
        correlated_topk._chain, correlated_topk.CorrelatedTopK._split = current, split


def random_weights(scales: tuple[float, ...] = (1.0, 1e-5)) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    S = sst.CorrelatedTopK(10)
    w64 = torch.randn(8, 2 * 200 - 1, dtype=torch.float64, generator=gen) * 2
    out = {}
    for scale in scales:
        g64 = torch.randn(w64.shape, dtype=torch.float64, generator=gen) * scale
        grads = {}
        for dtype in DTYPES:
            w = w64.to(dtype).requires_grad_()
            (grads[dtype],) = torch.autograd.grad(S.relax(w, 1.0), w, g64.to(dtype))
        out[f"|g|~{scale:g}"] = _rel_err(grads[torch.float32], grads[torch.float64])
    return out


def _row_max_centred(w: torch.Tensor, k: int) -> torch.Tensor:
    """CorrelatedTopK's marginals with the unary part shifted to row maximum 0 (its centring before the shift
    by the mean of the k largest), through the same chain solver."""
    a, b = _split_row_max(sst.CorrelatedTopK(k), w)
    return torch.cat(correlated_topk._chain.marginals(a, b, k), -1)


def scale_sweep(scales: tuple[float, ...] = (30.0, 300.0, 1500.0)) -> dict[str, dict[str, float]]:
    """float32 errors at large weights: unary sd ``s``, pairwise N(-s/3, (s/9)^2) (a saturated L2X selector's
    shape), CorrelatedTopK(10), 8 chains of n = 200, |g| ~ 1e-5: max |marginal error| and gradient relative
    error, for the current centring (the mean of the k largest) and for the row-maximum one."""
    k, n = 10, 200
    S = sst.CorrelatedTopK(k)
    solvers = {"topk_mean_centring": lambda w: S.relax(w, 1.0), "row_max_centring": lambda w: _row_max_centred(w, k)}
    out: dict[str, dict[str, float]] = {}
    for scale in scales:
        gen = torch.Generator().manual_seed(1)
        a = torch.randn(8, n, dtype=torch.float64, generator=gen) * scale
        b = torch.randn(8, n - 1, dtype=torch.float64, generator=gen) * scale / 9 - scale / 3
        w64 = torch.cat([a, b], -1)
        g64 = torch.randn(w64.shape, dtype=torch.float64, generator=gen) * 1e-5
        for name, solve in solvers.items():
            res = {}
            for dtype in DTYPES:
                w = w64.to(dtype).requires_grad_()
                x = solve(w)
                res[dtype] = (x.detach(), torch.autograd.grad(x, w, g64.to(dtype))[0])
            (x32, d32), (x64, d64) = res[torch.float32], res[torch.float64]
            out[f"unary_sd_{scale:g}/{name}"] = {"marginal_max_abs_error": float((x32.double() - x64).abs().max()),
                                                 "gradient_relative_error": _rel_err(d32, d64)}
    return out


def first_l2x_batch(task: BeerL2XTask) -> dict[str, float]:
    """Gradient error on the first training batch of ``task`` (its model as built, eval-mode selector)."""
    ids, target = next(iter(task.train_batches(batch_generator(int(task.cfg.seed), 0))))
    k = task.k
    with torch.no_grad():
        emb, unary, pairwise, mask = task.selector_logits(ids)
    S = sst.CorrelatedTopK(k)
    w64 = S.masked(torch.cat([unary.double(), pairwise.double()], -1), mask)
    noise = sst.noise.gumbel(w64.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grads = {}
    for dtype in DTYPES:
        u = unary.to(dtype).requires_grad_()
        p = pairwise.to(dtype).requires_grad_()
        w = S.masked(torch.cat([u, p], -1), mask)
        z = S.relax(w + noise.to(dtype), 1.0)[..., : u.shape[-1]]
        pred = task.model.predictor(emb, z.float(), k)
        grads[dtype] = torch.cat(torch.autograd.grad(((pred - target) ** 2).mean(), [u, p]), -1)
    g64 = grads[torch.float64].double()
    return {"relative_error": _rel_err(grads[torch.float32], g64), "logit_gradient_max": float(g64.abs().max())}


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_chain", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--old-chain: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-chain", type=Path, default=None, help="another _chain.py to measure as well")
    ap.add_argument("-o", "--out", type=Path, default=None, help="write the record here (default: print only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cfg = compose(["experiment=l2x", "k=15", "relaxation=corr_topk", "data.bucket_batches=50", "logger=none",
                   "device=cpu", "trainer.progress=false"])
    seed_everything(int(cfg.seed))
    task = BeerL2XTask(cfg, torch.device("cpu"))
    task.model.eval()
    impls = {"current": None}
    if args.old_chain is not None:
        impls["old"] = load_module(args.old_chain)
    rows = {}
    for name, module in impls.items():
        with chain_module(module):
            rows[name] = {"random_weights": random_weights(), "l2x_first_batch_k15": first_l2x_batch(task)}
        print(name, json.dumps(rows[name]), flush=True)
    rows["current"]["large_weights"] = scale_sweep()
    print("large weights", json.dumps(rows["current"]["large_weights"]), flush=True)
    record = {"what": "relative error of CorrelatedTopK's float32 gradient against float64", **rows,
              "old_chain": None if args.old_chain is None else str(args.old_chain),
              **provenance(torch.device("cpu"), time.perf_counter() - t0)}
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
