"""NRI's config checks (torch-free: run before data are generated or models built); ``NRITask.validate``."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.common.config import (
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_step_schedule,
    value_of,
)

KL_EDGES = ("directed", "undirected")  # experiments.nri.edges uses this tuple too
EDGE_TYPES = (1, 2)  # experiments.nri.model: type 0 "no edge" (weight 1 - x), type 1 "edge" (weight x)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (naming the key and the legal values) for an NRI setting the task cannot run with."""
    check_int(cfg, "data.num_vertices", low=2)
    timesteps = check_int(cfg, "data.timesteps", low=2)
    for split in ("train", "valid", "test"):
        check_int(cfg, f"data.num_{split}", low=1)
    check_int(cfg, "data.batch_size", low=1, high=check_int(cfg, "data.num_train", low=1),
              why="at most data.num_train")
    check_int(cfg, "data.seed")
    check_int(cfg, "model.prediction_steps", low=1, high=timesteps - 1, optional=True,
              why=f"at most data.timesteps - 1 = {timesteps - 1}; null: min(T - 1, 10)")
    check_int(cfg, "model.encoder_hidden", low=1)
    check_int(cfg, "model.decoder_hidden", low=1)
    check_choice(cfg, "model.edge_types", EDGE_TYPES, default=2)
    check_bool(cfg, "model.skip_first", default=False)
    check_number(cfg, "model.variance", low=0, low_open=True)
    check_number(cfg, "model.max_range", low=0, low_open=True, optional=True)
    kl = check_choice(cfg, "model.kl_edges", KL_EDGES, default="directed")
    if value_of(cfg, "relaxation.directed", False) and kl != "directed":
        raise ConfigError("model.kl_edges=undirected needs symmetrised logits; relaxation=indep (as released) has 2 "
                          "logits per directed edge: use model.kl_edges=directed or relaxation=indep_sym")
    if value_of(cfg, "relaxation.regularizer", None) == "ef_topk_fd":
        check_number(cfg, "relaxation.eps", low=0, low_open=True, optional=True)
    check_int(cfg, "eval.num_plot", low=0, optional=True)
    # the step schedule's period is in epochs here (NRITask.configure_optimizers)
    check_step_schedule(cfg, "optim.lr_decay_epochs")
