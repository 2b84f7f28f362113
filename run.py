"""Hydra entry point: `python run.py experiment=<vae|l2x|nri> relaxation=<name> estimator=<name>`."""

import hydra
from omegaconf import DictConfig

from experiments import run_experiment


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> dict:
    return run_experiment(cfg)


if __name__ == "__main__":
    main()
