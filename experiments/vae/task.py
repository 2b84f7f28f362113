"""The discrete VAE as a Task of the shared trainer (PROTOCOLS.md section 3)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from experiments.common.data import TensorBatches, resolve_data_root
from experiments.common.relaxations import build_relaxation
from experiments.common.task import Task
from experiments.report.vae import read_curve
from experiments.vae.data import BINARIZE, binarize, load_mnist_images, split_train_valid
from experiments.vae.model import DiscreteVAE, iw_neg_elbo, neg_elbo
from sst.estimators import tile
from sst.schedules import exponential_decay

# relaxation.structure -> (latent kind, default number of latent variables)
LATENT_OF = {"categorical": ("categorical", 20), "binary": ("bernoulli", 200)}


#: Jang et al.'s schedule tau = max(tau_min, tau0 * exp(-rate * t)), t = step rounded down to ``every``
temperature = exponential_decay


class VAETask(Task):
    """MNIST discrete VAE: 20x10 categorical (gumbel_softmax) or 200 Bernoulli (binary_concrete) latents."""

    monitor = "valid/neg_elbo"
    monitor_mode = "min"

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.relaxation = build_relaxation(cfg.relaxation)
        if self.relaxation.kind not in LATENT_OF:
            raise ValueError(f"relaxation.structure must be one of {', '.join(LATENT_OF)} for the VAE, got "
                             f"{self.relaxation.kind}")
        self.mode = str(cfg.data.get("binarize", "dynamic"))
        if self.mode not in BINARIZE:
            raise ValueError(f"data.binarize must be one of {', '.join(BINARIZE)}, got {self.mode!r}")

        # data: uint8 grey levels for dynamic binarisation, fixed floats otherwise (0/1, or grey/255 for grey);
        # eval sets fixed once
        train, test = load_mnist_images(resolve_data_root(cfg), bool(cfg.data.get("download", True)))
        split_seed = int(cfg.data.get("split_seed", 0))
        train, valid = split_train_valid(train, int(cfg.data.num_valid), split_seed)
        limit = cfg.data.get("limit_eval")
        if limit:
            valid, test = valid[: int(limit)], test[: int(limit)]
        fixed = torch.Generator().manual_seed(split_seed + 1)
        self.eval_data = {"valid": binarize(valid, self.mode, fixed).to(device),
                          "test": binarize(test, self.mode, fixed).to(device)}
        if self.mode == "dynamic":
            self.train_data = train.to(device)
        else:
            self.train_data = binarize(train, self.mode, torch.Generator().manual_seed(split_seed + 2)).to(device)

        kind, default_vars = LATENT_OF[self.relaxation.kind]
        mcfg = cfg.get("model", {})
        self.init = str(mcfg.get("init", "torch"))
        self.model = DiscreteVAE(
            latent=kind,
            num_vars=int(mcfg.get("num_vars") or default_vars),
            num_classes=int(mcfg.get("num_classes", 10)),
            hidden=tuple(int(h) for h in mcfg.get("hidden", (512, 256))),
            init=self.init,
        )
        self.structure = self.relaxation.structure
        acfg = cfg.get("anneal", {})
        self.anneal = {
            "tau0": self.relaxation.tau,
            "rate": float(acfg.get("rate", 1e-4)),
            "tau_min": float(acfg.get("tau_min", 0.5)),
            "every": int(acfg.get("every", 1000)),
        }
        self.kl_warmup = int(acfg.get("kl_warmup", 0))
        if self.kl_warmup < 0:
            raise ValueError(f"anneal.kl_warmup must be a number of steps >= 0, got {self.kl_warmup}")
        self.estimator = self.relaxation.estimator_from_config(cfg.estimator, event_shape=self.model.event_shape,
                                                               context_dim=self.model.data_dim)
        self.net = nn.ModuleDict({"model": self.model, "estimator": self.estimator}).to(device)
        ecfg = cfg.get("eval", {})
        self.eval_batch = int(ecfg.get("batch_size", 1000))
        self.iw_samples = int(ecfg.get("iw_samples", 100))
        self.iw_batch = int(ecfg.get("iw_batch_size", 100))
        self.artifacts = bool(ecfg.get("artifacts", True))
        self.tau = self.anneal["tau0"]
        self._out_dir: pathlib.Path | None = None

    # -- trainer interface -------------------------------------------------------------------------
    def module(self) -> nn.Module:
        return self.net

    def train_batches(self, generator: torch.Generator) -> Iterator[Tensor]:
        gen = generator if generator.device == self.train_data.device else None
        for (x,) in TensorBatches([self.train_data], int(self.cfg.data.batch_size), gen):
            yield binarize(x, "dynamic", gen) if self.mode == "dynamic" else x

    def temperature_at(self, step: int) -> float:
        """The annealed temperature max(tau_min, tau0 exp(-rate t)) at ``step`` (see ``temperature``)."""
        return temperature(step, **self.anneal)

    def set_temperature(self, step: int) -> float:
        """Anneal the estimator's temperature for ``step`` and return it."""
        self.tau = self.temperature_at(step)
        if hasattr(self.estimator, "tau"):
            self.estimator.tau = self.tau
        return self.tau

    def kl_weight(self, step: int) -> float:
        """The KL term's weight in the training loss at ``step``: min(1, step / anneal.kl_warmup), 1 without a
        warm-up. Evaluation always weighs it 1 (the ELBO)."""
        return 1.0 if self.kl_warmup == 0 else min(1.0, step / self.kl_warmup)

    def training_step(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = batch
        tau, beta = self.step_scalars(step)
        logits = self.model.encode(x)
        # f gets sample-major rows (m * B, *event); row r belongs to image r % B
        out = self.estimator(self.structure, logits, lambda z: self.model.recon_nll(tile(x, z.shape[0]), z),
                             context=x)
        kl = self.model.kl(logits).mean()
        nll = out.value.detach().mean()
        logs = {"train/neg_elbo": nll + kl.detach(), "train/recon": nll, "train/kl": kl.detach(),
                "train/tau": tau, **{f"estimator/{k}": v.detach() for k, v in out.stats.items()}}
        if self.kl_warmup:
            logs["train/kl_weight"] = beta
        return out.loss + beta * kl, logs

    @torch.compiler.disable
    def step_scalars(self, step: int) -> tuple[Tensor, Tensor]:
        """Anneal the temperature for ``step`` (:meth:`set_temperature`) and return it and the KL weight as new 0-dim
        float32 tensors on the task's device (a fill kernel each, no host-to-device copy). Eager even inside a
        compiled training step: the Python arithmetic on ``step`` stays out of the graph, which sees the new
        temperature as data, so annealing does not recompile the step."""
        tau, beta = self.set_temperature(step), self.kl_weight(step)
        return torch.full((), tau, device=self.device), torch.full((), beta, device=self.device)

    def hard_sampler(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """logits (B, ...) -> one exact sample (B, ...) of the latent (the argmax of Gumbel-perturbed logits), the
        sampler of evaluation."""
        return lambda logits: self.structure.argmax(self.structure.perturb(logits, generator=generator))

    def relaxed_sampler(self, generator: torch.Generator, tau: float) -> Callable[[Tensor], Tensor]:
        """logits (B, ...) -> one relaxed sample (B, ...) at temperature ``tau``, the sampler of training."""
        reg = self.relaxation.regularizer
        return lambda logits: self.structure.relax(self.structure.perturb(logits, generator=generator), tau=tau,
                                                   regularizer=reg)

    def _eval_generator(self, split: str) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(int(self.cfg.seed) * 7919 + (0 if split == "valid" else 1))
        return g

    def evaluate(self, split: str) -> dict[str, float]:
        if split not in self.eval_data:
            raise ValueError(f"split must be valid or test, got {split!r}")
        x_all = self.eval_data[split]
        sample = self.hard_sampler(self._eval_generator(split))
        total = torch.zeros(3, dtype=torch.float64, device=self.device)
        for x in x_all.split(self.eval_batch):
            elbo, nll, kl = neg_elbo(self.model, x, sample)
            total += torch.stack([elbo.sum(), nll.sum(), kl.sum()]).double()
        n = x_all.shape[0]
        metrics = {f"{split}/neg_elbo": float(total[0]) / n, f"{split}/recon": float(total[1]) / n,
                   f"{split}/kl": float(total[2]) / n}
        if split == "test" and self.iw_samples > 0:
            iw = torch.zeros((), dtype=torch.float64, device=self.device)
            for x in x_all.split(self.iw_batch):
                iw += iw_neg_elbo(self.model, x, sample, self.iw_samples).sum().double()
            metrics["test/iw_neg_elbo"] = float(iw) / n
        return metrics

    def record_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {
            "latent": f"{self.model.latent} {'x'.join(map(str, self.model.event_shape))}",
            "binarize": self.mode,
            "anneal": dict(self.anneal),
        }
        if self.kl_warmup:
            extras["kl_warmup"] = self.kl_warmup
        if self.init != "torch":
            extras["init"] = self.init
        if self._out_dir is not None:
            extras["curve"] = read_curve(self._out_dir / "history.jsonl")
        return extras

    def save_artifacts(self, out_dir: pathlib.Path) -> None:
        self._out_dir = pathlib.Path(out_dir)
        if not self.artifacts:
            return
        from experiments.vae.plots import plot_prior_samples, plot_reconstructions

        self.model.eval()
        with torch.no_grad():
            g = self._eval_generator("test")
            x = self.eval_data["test"][:16]
            z = self.hard_sampler(g)(self.model.encode(x))
            recon = torch.sigmoid(self.model.decode(z))
            prior = torch.sigmoid(self.model.decode(self.model.sample_prior(64, generator=g)))
        title = f"{self.cfg.relaxation.name} / {self.cfg.estimator.name}"
        plot_reconstructions(x.cpu(), recon.cpu(), out_dir / "reconstructions.png", title)
        plot_prior_samples(prior.cpu(), out_dir / "prior_samples.png", title)

