"""NRI graph layout as a trainer Task: data on the device, relaxed training, hard-sample evaluation."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

import sst
from experiments.common.data import TensorBatches, cache_dir
from experiments.common.relaxations import build_relaxation
from experiments.common.task import Task, adam
from experiments.nri.data import load_graph_layout
from experiments.nri.edges import EdgeDistribution, edge_counts, released_choice, released_edge_sums
from experiments.nri.model import NRIModel, gaussian_nll
from sst.estimators import tile

EVAL_SEED = 1234  # hard samples at evaluation use their own generator: the same noise at every evaluation


def prediction_steps(cfg: DictConfig, timesteps: int) -> int:
    """``model.prediction_steps``, or by default 9 for T = 10 and 10 for T = 20 (min(T - 1, 10))."""
    p = cfg.model.get("prediction_steps")
    return int(p) if p is not None else min(timesteps - 1, 10)


class NRITask(Task):
    """Paulus et al.'s NRI graph-layout experiment (PROTOCOLS.md section 1)."""

    monitor = "valid/elbo"
    monitor_mode = "max"

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        type(self).validate(cfg)  # the checks run.py runs first (experiments.nri.checks), for direct construction too
        dcfg, mcfg = cfg.data, cfg.model
        self.n = int(dcfg.num_vertices)
        self.timesteps = int(dcfg.timesteps)
        self.batch_size = int(dcfg.batch_size)
        self.pred_steps = prediction_steps(cfg, self.timesteps)
        self.variance = float(mcfg.variance)
        self.kl_edges = str(mcfg.get("kl_edges", "directed"))
        rcfg = cfg.relaxation
        sizes = {"train": dcfg.num_train, "valid": dcfg.num_valid, "test": dcfg.num_test}
        t0 = time.perf_counter()
        data = load_graph_layout(cache_dir(cfg), sizes, self.n, self.timesteps, int(dcfg.seed),
                                 progress=bool(cfg.trainer.get("progress", True)))
        self.data_info = {"loc_min": data.loc_min, "loc_max": data.loc_max, "files": data.files,
                          "generation_s": data.generation_s, "load_s": round(time.perf_counter() - t0, 3)}
        relaxation = build_relaxation(rcfg, k=self.n - 1, max_range=mcfg.get("max_range"))
        per_edge = 2 if relaxation.options.get("directed", False) else 1
        self.model = NRIModel(self.n, self.timesteps, encoder_hidden=int(mcfg.encoder_hidden),
                              decoder_hidden=int(mcfg.decoder_hidden), edge_types=int(mcfg.edge_types),
                              skip_first=bool(mcfg.skip_first), logits_per_edge=per_edge).to(device)
        idx = self.model.index
        self.locs = {s: torch.as_tensor(v, device=device) for s, v in data.locs.items()}
        self.edges = {s: idx.from_matrix(torch.as_tensor(v, device=device)).float() for s, v in data.trees.items()}
        self.dist = EdgeDistribution(relaxation, idx)
        self.estimator = self._build_estimator(cfg)

    # ----------------------------------------------------------------------------------------------- set-up
    def _build_estimator(self, cfg: DictConfig):
        """The relaxation's estimator (:meth:`Relaxation.estimator`) with the config's options and the flattened
        trajectories as NVIL's context."""
        return self.dist.relaxation.estimator_from_config(cfg.estimator,
                                                          context_dim=self.timesteps * self.n * 2).to(self.device)

    def module(self) -> torch.nn.Module:
        return torch.nn.ModuleDict({"model": self.model, "estimator": self.estimator})

    def configure_optimizers(self):
        """The base schedule, with the step schedule's period given in epochs (``optim.lr_decay_epochs``)."""
        params = [p for p in self.module().parameters() if p.requires_grad]
        opt = adam(params, float(self.cfg.optim.lr))
        steps_per_epoch = max(1, int(self.cfg.data.num_train) // self.batch_size)
        return opt, self._scheduler(opt, int(self.cfg.optim.get("lr_decay_epochs", 200)) * steps_per_epoch)

    def train_batches(self, generator: torch.Generator) -> Iterator[Any]:
        return iter(TensorBatches([self.locs["train"]], self.batch_size, generator))

    # ----------------------------------------------------------------------------------------------- training
    def logits(self, locs: Tensor) -> Tensor:
        """``(B, T, n, D)`` -> the edge distribution's u (``(B, M)`` symmetrised, or ``(B, E, 2)`` for indep)."""
        return self.dist.logits(self.model.encoder(locs))

    def kl(self, u: Tensor) -> Tensor:
        """The training KL ``(B,)``: over directed entries (the released ELBO) or, with
        ``model.kl_edges=undirected``, over the undirected pairs."""
        return self.dist.kl(u, self.kl_edges)

    def nll_of(self, locs: Tensor, x: Tensor, pred_steps: int) -> Tensor:
        """Per-item NLL ``(B,)`` of trajectories given edge weights in the distribution's layout."""
        preds = self.model.decoder(locs, self.dist.to_directed(x), pred_steps)
        return gaussian_nll(preds, locs[:, 1:], self.variance)

    def training_step(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        (locs,) = batch
        u = self.logits(locs)
        kl = self.kl(u)

        def nll(z: Tensor) -> Tensor:  # rows are sample-major: row r belongs to item r % B
            return self.nll_of(tile(locs, z.shape[0]), self.dist.to_edges(z), self.pred_steps)

        with sst.checks(False):  # no host syncs for value checks in the hot loop
            out = self.estimator(self.dist.structure, self.dist.theta(u), nll, context=locs.flatten(1))
        nll_mean, kl_mean = out.value.float().mean(), kl.detach().mean()
        logs = {"train/nll": nll_mean, "train/kl": kl_mean, "train/elbo": -(nll_mean + kl_mean),
                **{f"train/{k}": v for k, v in out.stats.items()}}
        return out.loss + kl.mean(), logs

    # ----------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, split: str) -> dict[str, float]:
        """ELBO (teacher forcing, a hard sample per simulation, KL as ``model.kl_edges``: directed by default,
        the released ELBO), both KL variants, and the edge metrics: ours (``edge_precision``/``edge_recall``:
        the sample itself, per graph) and the released complement-aware ones (``edge_*_released``)."""
        locs_all, edges_all = self.locs[split], self.edges[split]
        bs = int(self.cfg.get("eval", {}).get("batch_size", 500))
        gen = torch.Generator(device=self.device)
        gen.manual_seed(EVAL_SEED)
        sums: dict[str, Tensor] = {}
        released = None
        total = locs_all.shape[0]
        idx = self.model.index
        for start in range(0, total, bs):
            locs, true = locs_all[start:start + bs], edges_all[start:start + bs]
            u = self.logits(locs)
            x = self.dist.hard(u, generator=gen)
            nll = self.nll_of(locs, x, 1)  # teacher forcing every step
            kl_dir = self.dist.kl(u, "directed")
            kl = self.kl(u)
            true_d = idx.to_directed(true) if self.dist.directed else true
            prec, rec = edge_counts(x, true_d)
            mprec, mrec = edge_counts(self.dist.mode(u), true_d)
            mse = nll * (2.0 * self.variance / ((locs.shape[1] - 1) * locs.shape[3]))
            batch = {"elbo": -(nll + kl), "nll": nll, "kl": kl, "kl_directed": kl_dir,
                     "elbo_kl_directed": -(nll + kl_dir), "mse": mse,
                     "edge_precision": prec, "edge_recall": rec,
                     "edge_precision_mode": mprec, "edge_recall_mode": mrec,
                     "num_edges": x.sum(-1) / (2.0 if self.dist.directed else 1.0)}
            if not self.dist.directed:
                kl_und = self.dist.kl(u, "undirected")
                batch.update(kl_undirected=kl_und, elbo_kl_undirected=-(nll + kl_und))
            for k, v in batch.items():
                s = v.double().sum()
                sums[k] = sums[k] + s if k in sums else s
            r = released_edge_sums(self.dist.to_directed(x), idx.to_directed(true)).double()
            released = r if released is None else released + r
        out = {f"{split}/{k}": float(v) / total for k, v in sums.items()}
        out.update({f"{split}/{k}": v for k, v in released_choice(released / total).items()})
        return out

    # ----------------------------------------------------------------------------------------------- records
    def record_extras(self) -> dict[str, Any]:
        return {"timesteps": self.timesteps, "num_vertices": self.n, "prediction_steps": self.pred_steps,
                "data": self.data_info}

    def save_artifacts(self, out_dir: pathlib.Path) -> None:
        from experiments.nri.plot import plot_predictions

        k = int(self.cfg.get("eval", {}).get("num_plot", 4))
        locs = self.locs["test"][:k]
        self.model.eval()
        with torch.no_grad():
            pred = self.dist.mode(self.logits(locs))
            if self.dist.directed:  # a pair counts as an edge when either direction is one
                idx = self.model.index
                pred = torch.maximum(pred[:, idx.und_ij], pred[:, idx.und_ji])
        plot_predictions(locs.cpu().numpy(), self.edges["test"][:k].cpu().numpy(), pred.cpu().numpy(),
                         self.model.index, pathlib.Path(out_dir) / "nri_test_trajectories.png",
                         title=f"NRI {self.dist.name}, T={self.timesteps}")
