"""L2X subset selection on BeerAdvocate (Paulus et al. 2020; PROTOCOLS.md section 2).

``python run.py experiment=l2x relaxation=<l2x|softsub|euclid_topk|cat_ent_topk|bin_ent_topk|ef_topk|corr_topk>``
"""

from __future__ import annotations

from experiments.l2x.checks import validate  # torch-free config checks, run before any work

__all__ = ["task_class", "validate"]


def task_class() -> type:
    """The Task class this experiment hands to the shared trainer (imported on demand: torch)."""
    from experiments.l2x.task import BeerL2XTask

    return BeerL2XTask
