"""What the graph-layout data allows, before blaming an estimator: two supervised probes on the real task.

    python -m experiments.nri.diagnose [--steps 1000] [--eval-every 250] [hydra overrides, e.g. device=cuda]

1. *Encoder probe*: the NRI encoder trained by logistic regression on the true edges; reports the precision of
   its top ``n - 1`` undirected edges on the validation split. High precision after a few hundred steps means
   the trajectories identify the tree and an unsupervised run that does not find it is stuck, not starved.
2. *Decoder probe*: the NRI decoder trained with the true tree as its edges, and again with every edge weight
   set to ``(n - 1) / M`` (no graph information); reports the validation one-step NLL (teacher forcing, the
   evaluation's NLL) of both. The gap is what a perfect edge posterior can gain in the ELBO.

Both use the composed config's model sizes, batch size, learning rate, variance and prediction steps, and print
one JSON line with the curves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.common.task import adam

REPO = Path(__file__).resolve().parents[2]


def _fresh_model(task):
    """A newly initialised NRIModel with the task's sizes (the probes train one part of it from scratch)."""
    from experiments.nri.model import NRIModel

    m = task.cfg.model
    return NRIModel(task.n, task.timesteps, encoder_hidden=int(m.encoder_hidden),
                    decoder_hidden=int(m.decoder_hidden), edge_types=int(m.edge_types),
                    skip_first=bool(m.skip_first)).to(task.device)


def _encoder_probe(task, steps: int, every: int, lr: float, gen: torch.Generator) -> list[dict]:
    model = _fresh_model(task)
    opt = adam(model.encoder.parameters(), lr)
    locs, edges = task.locs["train"], task.edges["train"]
    v_locs, v_edges = task.locs["valid"], task.edges["valid"]
    curve = []
    for step in range(1, steps + 1):
        i = torch.randint(0, locs.shape[0], (task.batch_size,), generator=gen, device=gen.device)
        loss = F.binary_cross_entropy_with_logits(model.edge_logits(locs[i]), edges[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                top = model.edge_logits(v_locs).topk(task.n - 1, dim=-1).indices
                prec = v_edges.gather(-1, top).mean()
            curve.append({"step": step, "train_bce": round(float(loss.detach()), 5),
                          "valid_precision": round(float(prec), 4)})
    return curve


def _decoder_probe(task, steps: int, every: int, lr: float, gen: torch.Generator, informed: bool) -> list[dict]:
    from experiments.nri.model import gaussian_nll

    model = _fresh_model(task)
    opt = adam(model.decoder.parameters(), lr)
    idx = model.index

    def weights(true: torch.Tensor) -> torch.Tensor:
        return true if informed else torch.full_like(true, (task.n - 1) / true.shape[-1])

    locs, edges = task.locs["train"], task.edges["train"]
    v_locs, v_edges = task.locs["valid"], task.edges["valid"]
    curve = []
    for step in range(1, steps + 1):
        i = torch.randint(0, locs.shape[0], (task.batch_size,), generator=gen, device=gen.device)
        preds = model.decoder(locs[i], idx.to_directed(weights(edges[i])), task.pred_steps)
        loss = gaussian_nll(preds, locs[i][:, 1:], task.variance).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                total = 0.0
                for s in range(0, v_locs.shape[0], 500):
                    b_locs = v_locs[s:s + 500]
                    p = model.decoder(b_locs, idx.to_directed(weights(v_edges[s:s + 500])), 1)
                    total += float(gaussian_nll(p, b_locs[:, 1:], task.variance).sum())
            curve.append({"step": step, "train_nll": round(float(loss.detach()), 2),
                          "valid_nll_one_step": round(total / v_locs.shape[0], 2)})
    return curve


def diagnose(cfg, steps: int = 1000, every: int = 250) -> dict:
    from experiments.common.runtime import hardware, resolve_device, seed_everything
    from experiments.nri.task import NRITask

    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps}, {every}")
    seed_everything(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    task = NRITask(cfg, device)
    lr = float(cfg.optim.lr)
    gen = torch.Generator(device=device)
    out = {"num_vertices": task.n, "timesteps": task.timesteps, "batch_size": task.batch_size, "lr": lr,
           "encoder_hidden": int(cfg.model.encoder_hidden), "decoder_hidden": int(cfg.model.decoder_hidden),
           "num_valid": int(task.locs["valid"].shape[0]),
           "random_tree_precision": round((task.n - 1) / task.edges["valid"].shape[-1], 4)}
    gen.manual_seed(0)
    out["encoder_probe"] = _encoder_probe(task, steps, every, lr, gen)
    for name, informed in (("decoder_true_edges", True), ("decoder_no_edge_information", False)):
        gen.manual_seed(0)
        out[name] = _decoder_probe(task, steps, every, lr, gen, informed)
    out["device"], out["hardware"] = str(device), hardware(device)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    args, overrides = ap.parse_known_args(argv)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=nri", "logger=none", "trainer.progress=false",
                                                       *overrides])
    out = diagnose(cfg, args.steps, args.eval_every)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
