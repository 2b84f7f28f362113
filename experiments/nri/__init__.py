"""NRI graph layout with a latent spanning tree (Paulus et al. 2020; PROTOCOLS.md section 1)."""

from __future__ import annotations

from experiments.nri.checks import validate  # torch-free config checks, run before any work

__all__ = ["task_class", "validate"]


def task_class() -> type:
    """The Task class this experiment hands to the shared trainer (imported on demand: torch)."""
    from experiments.nri.task import NRITask

    return NRITask
