"""L2X's config checks (torch-free: run before the data are read or word2vec is trained); ``BeerL2XTask.validate``."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.common.config import (
    ConfigError,
    check_choice,
    check_int,
    check_number,
    check_step_schedule,
    value_of,
)

ASPECTS = (0, 1, 2, 3, 4)  # appearance, aroma, palate, taste, overall (experiments.l2x.data.ASPECTS)
# experiments.l2x.model.PAIRWISE_KINDS less None (kept torch-free here)
PAIRWISE_HEADS = ("conv", "attract", "scalar", "fixed")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (naming the key and the legal values) for an L2X setting the task cannot run with."""
    max_len = check_int(cfg, "data.max_len", low=1)
    check_int(cfg, "k", low=1, high=max_len, why=f"at most data.max_len={max_len}, the tokens kept per review")
    check_choice(cfg, "aspect", ASPECTS)
    structure = value_of(cfg, "relaxation.structure")
    if structure == "corr_topk":
        check_choice(cfg, "model.pairwise", PAIRWISE_HEADS, default="conv")
    offset = check_number(cfg, "model.pairwise_offset", optional=True) or 0.0
    if offset != 0.0 and structure != "corr_topk":
        raise ConfigError(f"model.pairwise_offset acts on Corr. Top k's pairwise logits only; relaxation="
                          f"{cfg.relaxation.name} has none (use relaxation=corr_topk or leave the offset at 0)")
    for key in ("filters", "kernel_size", "hidden"):
        check_int(cfg, f"model.{key}", low=1)
    check_number(cfg, "model.dropout", low=0, high=1, high_open=True)
    check_int(cfg, "html_reviews", low=0, optional=True)
    check_int(cfg, "data.eval_batch_size", low=1, optional=True)
    check_int(cfg, "data.bucket_batches", low=1, optional=True, why="null: no length bucketing")
    check_number(cfg, "data.train_fraction", low=0, high=1, low_open=True, optional=True)
    valid = check_number(cfg, "data.valid_fraction", low=0, high=1, high_open=True, optional=True) or 0.0
    check_number(cfg, "data.heldout_test_fraction", low=0, high=1 - valid, high_open=True, optional=True,
                  why=f"below 1 - data.valid_fraction = {1 - valid:g}")
    check_int(cfg, "data.limit_train", low=1, optional=True)
    check_int(cfg, "data.split_seed", optional=True)
    check_int(cfg, "data.embedding_dim", low=1, optional=True)
    if value_of(cfg, "data.w2v", None) is not None:
        check_int(cfg, "data.w2v.epochs", low=1, optional=True, why="word2vec training epochs")
        check_int(cfg, "data.w2v.workers", low=1, optional=True, why="1: a bit-reproducible build")
        check_int(cfg, "data.w2v.window", low=1, optional=True)
        check_int(cfg, "data.w2v.min_count", low=1, optional=True)
        check_int(cfg, "data.w2v.negative", low=0, optional=True)
        check_choice(cfg, "data.w2v.sg", (0, 1), default=1)
    check_step_schedule(cfg)
