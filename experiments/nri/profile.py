"""Per-iteration time split of NRI training: data, encoder, sampler, decoder (+ likelihood), backward, optimiser.

    python -m experiments.nri.profile relaxation=spanning_tree device=cpu [--iters 10] [--warmup 2] [hydra overrides]

Builds the real task from the composed config (small data sets by default, so generation is instant), runs
``--warmup`` untimed iterations then ``--iters`` timed ones, synchronising the device around each part (only
here: the training loop itself never syncs per step), and prints a JSON line with milliseconds per part and
iterations/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile(cfg, iters: int = 10, warmup: int = 2) -> dict:
    from experiments.common.runtime import hardware, resolve_device, seed_everything
    from experiments.nri.model import gaussian_nll
    from experiments.nri.task import NRITask

    seed_everything(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    task = NRITask(cfg, device)
    module = task.module()
    module.train()
    opt, _ = task.configure_optimizers()
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    batches = task.train_batches(gen)
    model, dist = task.model, task.dist
    parts = ("data", "encoder", "sampler", "decoder", "backward", "optimizer")
    tot = dict.fromkeys(parts, 0.0)
    for it in range(warmup + iters):
        marks = []
        _sync(device)
        marks.append(time.perf_counter())
        (locs,) = next(batches)
        _sync(device)
        marks.append(time.perf_counter())
        u = task.logits(locs)
        kl = task.kl(u)
        _sync(device)
        marks.append(time.perf_counter())
        x = dist.relaxed(u)
        _sync(device)
        marks.append(time.perf_counter())
        preds = model.decoder(locs, dist.to_directed(x), task.pred_steps)
        loss = (gaussian_nll(preds, locs[:, 1:], task.variance) + kl).mean()
        _sync(device)
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        marks.append(time.perf_counter())
        opt.step()
        _sync(device)
        marks.append(time.perf_counter())
        if it >= warmup:
            for name, a, b in zip(parts, marks[:-1], marks[1:]):
                tot[name] += b - a
    ms = {k: round(1e3 * v / iters, 2) for k, v in tot.items()}
    total = sum(tot.values()) / iters
    return {"relaxation": dist.name, "batch_size": task.batch_size, "timesteps": task.timesteps,
            "prediction_steps": task.pred_steps, "decoder_hidden": int(cfg.model.decoder_hidden),
            "ms_per_iter": ms, "total_ms": round(1e3 * total, 2), "iters_per_s": round(1.0 / total, 3),
            "sampler_share": round(tot["sampler"] / sum(tot.values()), 4),
            "device": str(device), "hardware": hardware(device)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args, overrides = ap.parse_known_args(argv)
    from hydra import compose, initialize_config_dir

    base = ["experiment=nri", "logger=none", "data.num_train=1024", "data.num_valid=128", "data.num_test=128",
            "trainer.progress=false"]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=base + overrides)
    out = profile(cfg, args.iters, args.warmup)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
