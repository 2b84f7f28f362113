"""Time one Adam step on the discrete VAE's parameters: PyTorch's per-tensor loop, its foreach variant, and the
trainer's ``adam()`` (fused where the device has it).

    python benchmarks/bench_adam.py [--device cpu] [--threads 1] [--reps 200]

Prints one JSON object: median milliseconds per ``optimizer.step()`` for each variant (gradients are fixed random
tensors, so only the update is timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from experiments.common.runtime import hardware
from experiments.common.task import adam
from experiments.vae.model import DiscreteVAE


def time_step(opt: torch.optim.Optimizer, device: torch.device, reps: int, warmup: int = 20) -> float:
    """Median wall time (ms) of ``opt.step()``."""
    times = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = {
        "per_tensor": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
        "foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "adam()": lambda ps: adam(ps, 1e-3),
    }
    out: dict = {"model": "DiscreteVAE() (categorical 20x10)", "threads": args.threads, "ms_per_step": {}}
    for name, make in variants.items():
        model = DiscreteVAE().to(device)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        out["ms_per_step"][name] = round(time_step(make(params), device, args.reps), 3)
    out["parameters"] = sum(p.numel() for p in params)
    out["hardware"] = hardware(device)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
