"""Hydra entry point for the NRI hyperparameter search: ``run.py`` that returns a float for the Optuna sweeper.

    python -m experiments.nri.sweep -m experiment=nri_search_tree            # stage 1, one row, on one device
    python -m experiments.nri.sweep -m experiment=nri_search_tree hydra.sweeper.n_trials=4 ...

Each trial is an ordinary run (its folder under ``multirun/`` holds ``metrics.json``); the value handed to the
sweeper is ``search.objective`` of its metrics (default ``best/valid/elbo``, the released ELBO at the best
validation step; the sweeper maximises it). A trial that fails (e.g. a diverged loss) raises, as in ``run.py``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from experiments import run_experiment

OBJECTIVE = "best/valid/elbo"


def objective(metrics: dict, cfg: DictConfig) -> float:
    """The search objective of one finished trial: ``metrics[cfg.search.objective]`` (default best/valid/elbo)."""
    key = str((cfg.get("search") or {}).get("objective", OBJECTIVE))
    if key not in metrics:
        raise ValueError(f"search.objective={key!r} is not among the run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[key])


@hydra.main(version_base="1.3", config_path="../../configs", config_name="config")
def main(cfg: DictConfig) -> float:
    return objective(run_experiment(cfg), cfg)


if __name__ == "__main__":
    main()
