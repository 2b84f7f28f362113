"""What the graph-layout data allows, before blaming an estimator: supervised probes on the real task.

    python -m experiments.nri.diagnose [--steps 1000] [--eval-every 250] [--code-from RUN/last.pt] [hydra overrides]

1. *Encoder probe*: the NRI encoder trained by logistic regression on the true edges; reports the precision of
   its top ``n - 1`` undirected edges on the validation split. High precision after a few hundred steps means
   the trajectories identify the tree and an unsupervised run that does not find it is stuck, not starved.
2. *Decoder probe*: the NRI decoder trained with the true tree as its edges, and again with every edge weight
   set to ``(n - 1) / M`` (no graph information); reports the validation one-step NLL (teacher forcing, the
   evaluation's NLL) of both. The gap is what a perfect edge posterior can gain in the ELBO.
3. With ``--code-from`` (a checkpoint of a trained run with the same config): the decoder probe once more, with
   that model's most likely trees (its code) as fixed edges, and the code's precision against the true trees.
   Tells whether a run that settled on a code unrelated to the tree found a better optimum or a trap.

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


def _decoder_probe(task, steps: int, every: int, lr: float, gen: torch.Generator,
                   edges: dict[str, torch.Tensor] | None) -> list[dict]:
    """A fresh decoder trained with fixed ``(N, M)`` edges per split (None: every weight ``(n - 1) / M``)."""
    from experiments.nri.model import gaussian_nll

    model = _fresh_model(task)
    opt = adam(model.decoder.parameters(), lr)
    idx = model.index
    if edges is None:
        edges = {s: torch.full_like(task.edges[s], (task.n - 1) / task.edges[s].shape[-1]) for s in ("train", "valid")}
    locs, edges, v_edges = task.locs["train"], edges["train"], edges["valid"]
    v_locs = task.locs["valid"]
    curve = []
    for step in range(1, steps + 1):
        i = torch.randint(0, locs.shape[0], (task.batch_size,), generator=gen, device=gen.device)
        preds = model.decoder(locs[i], idx.to_directed(edges[i]), task.pred_steps)
        loss = gaussian_nll(preds, locs[i][:, 1:], task.variance).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                total = 0.0
                for s in range(0, v_locs.shape[0], 500):
                    b_locs = v_locs[s:s + 500]
                    p = model.decoder(b_locs, idx.to_directed(v_edges[s:s + 500]), 1)
                    total += float(gaussian_nll(p, b_locs[:, 1:], task.variance).sum())
            curve.append({"step": step, "train_nll": round(float(loss.detach()), 2),
                          "valid_nll_one_step": round(total / v_locs.shape[0], 2)})
    return curve


def _code_of(task, checkpoint: Path) -> dict[str, torch.Tensor]:
    """The most likely trees ``(N, M)`` of a trained run's encoder on the train and valid splits."""
    if not checkpoint.is_file():
        raise ValueError(f"--code-from {checkpoint}: no such checkpoint (a run folder's last.pt or best.pt)")
    state = torch.load(checkpoint, map_location=task.device, weights_only=False)
    try:
        task.module().load_state_dict(state["module"] if "module" in state else state)
    except RuntimeError as err:
        raise ValueError(f"--code-from {checkpoint} does not fit the composed config (pass the run's own model and "
                         f"data overrides): {str(err).splitlines()[0]}") from None
    task.model.eval()
    with torch.no_grad():
        return {s: torch.cat([task.dist.mode(task.logits(chunk)) for chunk in task.locs[s].split(500)])
                for s in ("train", "valid")}


def diagnose(cfg, steps: int = 1000, every: int = 250, code_from: Path | None = None) -> dict:
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
    probes = {"decoder_true_edges": {s: task.edges[s] for s in ("train", "valid")},
              "decoder_no_edge_information": None}
    if code_from is not None:
        code = _code_of(task, Path(code_from))
        out["code_from"] = str(code_from)
        hits = (code["valid"] * task.edges["valid"]).sum(-1).mean()
        out["code_precision_valid"] = round(float(hits) / (task.n - 1), 4)
        probes["decoder_checkpoint_code"] = code
    for name, edges in probes.items():
        gen.manual_seed(0)
        out[name] = _decoder_probe(task, steps, every, lr, gen, edges)
    out["device"], out["hardware"] = str(device), hardware(device)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--code-from", type=Path, help="checkpoint of a trained run: also probe a decoder on its code")
    args, overrides = ap.parse_known_args(argv)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=nri", "logger=none", "trainer.progress=false",
                                                       *overrides])
    out = diagnose(cfg, args.steps, args.eval_every, args.code_from)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
