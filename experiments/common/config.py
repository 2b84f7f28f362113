"""Checks on a composed config that must fail before any work starts."""

from __future__ import annotations

from omegaconf import DictConfig

EXPERIMENTS = ("vae", "l2x", "nri")
DEVICES = ("auto", "cpu", "cuda")
LOGGERS = ("wandb", "none")
SCHEDULES = ("constant", "cosine", "step")  # experiments.common.task.LR_SCHEDULES (kept torch-free here)
# experiments.l2x.model.PAIRWISE_KINDS less None (kept torch-free here)
PAIRWISE_HEADS = ("conv", "attract", "scalar", "fixed")
VAE_INITS = ("torch", "xavier")  # experiments.vae.model.INITS (kept torch-free here)


class ConfigError(ValueError):
    """A config that names an illegal choice or combination."""


def _choices(values) -> str:
    return ", ".join(str(v) for v in values)


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError, listing the legal choices, for an illegal experiment/relaxation/estimator mix."""
    name = cfg.experiment.name
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment={name!r} is unknown; legal choices: {_choices(EXPERIMENTS)}")
    relax = cfg.relaxation.name
    legal_relax = list(cfg.experiment.relaxations)
    if relax not in legal_relax:
        raise ConfigError(
            f"relaxation={relax!r} is not available for experiment={name}; "
            f"legal choices: {_choices(legal_relax)}"
        )
    est = cfg.estimator.name
    legal_est = list(cfg.experiment.estimators)
    if est not in legal_est:
        raise ConfigError(
            f"estimator={est!r} is not available for experiment={name}; legal choices: {_choices(legal_est)}"
        )
    supported = cfg.estimator.get("structures")
    if supported is not None and cfg.relaxation.structure not in supported:
        ok = [r for r in legal_relax if _structure_of(r) in supported]
        raise ConfigError(
            f"estimator={est} supports only structures {_choices(supported)}, but relaxation={relax} "
            f"is a {cfg.relaxation.structure}; legal relaxations for it here: {_choices(ok) or 'none'}"
        )
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r} is unknown; legal choices: {_choices(DEVICES)}")
    if cfg.logger.name not in LOGGERS:
        raise ConfigError(f"logger={cfg.logger.name!r} is unknown; legal choices: {_choices(LOGGERS)}")
    tau = cfg.relaxation.get("tau")
    if tau is not None and not float(tau) > 0:
        raise ConfigError(f"relaxation.tau must be > 0, got {tau}")
    for key in ("max_steps", "eval_every"):
        if int(cfg.trainer[key]) <= 0:
            raise ConfigError(f"trainer.{key} must be a positive integer, got {cfg.trainer[key]}")
    limit = cfg.trainer.get("loss_limit")
    if limit is not None and not float(limit) > 0:
        raise ConfigError(f"trainer.loss_limit must be null (non-finite losses only) or > 0, got {limit}")
    flush = cfg.trainer.get("flush_denormal", True)
    if not isinstance(flush, bool):
        raise ConfigError(f"trainer.flush_denormal must be true or false, got {flush!r}")
    compile_ = cfg.trainer.get("compile", "auto")
    if not isinstance(compile_, (bool, str)) or str(compile_).lower() not in ("auto", "true", "false"):
        raise ConfigError(f"trainer.compile={compile_!r} is unknown; legal choices: auto, true, false")
    if not isinstance(cfg.trainer.get("tf32", True), bool):
        raise ConfigError(f"trainer.tf32 must be true or false, got {cfg.trainer.tf32!r}")
    budget = cfg.trainer.get("max_minutes")
    if budget is not None and (isinstance(budget, bool) or not float(budget) > 0):
        raise ConfigError(f"trainer.max_minutes must be null (no budget) or a number of minutes > 0, got {budget!r}")
    model = cfg.get("model") or {}
    if cfg.relaxation.structure == "corr_topk" and "pairwise" in model and model.pairwise not in PAIRWISE_HEADS:
        raise ConfigError(f"model.pairwise={model.pairwise!r} is unknown; legal choices: {_choices(PAIRWISE_HEADS)}")
    if float(model.get("pairwise_offset", 0.0) or 0.0) != 0.0 and cfg.relaxation.structure != "corr_topk":
        raise ConfigError(f"model.pairwise_offset acts on Corr. Top k's pairwise logits only; relaxation={relax} "
                          f"has none (use relaxation=corr_topk or leave the offset at 0)")
    if name == "vae" and model.get("init", "torch") not in VAE_INITS:
        raise ConfigError(f"model.init={model.init!r} is unknown; legal choices: {_choices(VAE_INITS)}")
    optim = cfg.get("optim") or {}
    schedule = optim.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule={schedule!r} is unknown; legal choices: {_choices(SCHEDULES)}")
    if schedule == "step":
        # The period is in steps (optim.lr_decay_steps) or, for an experiment whose config has it, in epochs
        # (optim.lr_decay_epochs, NRI's).
        keys = [key for key in ("lr_decay_steps", "lr_decay_epochs") if key in optim] or ["lr_decay_steps"]
        periods = {key: optim.get(key) for key in keys}
        if not any((period or 0) >= 1 for period in periods.values()):
            given = ", ".join(f"optim.{key}={period}" for key, period in periods.items())
            raise ConfigError(f"optim.schedule=step needs a period >= 1 in {' or '.join('optim.' + k for k in keys)}, "
                              f"got {given}")
    if float(optim.get("lr_min", 0.0)) < 0:
        raise ConfigError(f"optim.lr_min must be >= 0, got {optim.get('lr_min')}")
    data = cfg.get("data") or {}
    if data.get("batch_size") is not None and int(data.batch_size) < 1:
        raise ConfigError(f"data.batch_size must be a positive integer, got {data.batch_size}")
    if data.get("train_fraction") is not None and not 0.0 < float(data.train_fraction) <= 1.0:
        raise ConfigError(f"data.train_fraction must lie in (0, 1], got {data.train_fraction}")
    epochs = (data.get("w2v") or {}).get("epochs")
    if epochs is not None and int(epochs) < 1:
        raise ConfigError(f"data.w2v.epochs (word2vec training epochs) must be a positive integer, got {epochs}")
    if data.get("bucket_batches") is not None and int(data.bucket_batches) < 1:
        raise ConfigError(f"data.bucket_batches must be null (no length bucketing) or a positive integer, "
                          f"got {data.bucket_batches}")


def _structure_of(relaxation: str) -> str:
    from pathlib import Path

    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[2] / "configs" / "relaxation" / f"{relaxation}.yaml"
    return str(OmegaConf.load(path).get("structure"))
