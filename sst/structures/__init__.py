"""The discrete structures: one module per structure, each an :class:`~sst.structures.base.Structure`."""

from sst.structures.arborescence import Arborescence
from sst.structures.base import Structure
from sst.structures.binary import Binary
from sst.structures.categorical import Categorical
from sst.structures.correlated_topk import CorrelatedTopK
from sst.structures.permutation import Permutation
from sst.structures.spanning_tree import SpanningTree
from sst.structures.topk import TopK

__all__ = ["Structure", "Categorical", "Binary", "TopK", "CorrelatedTopK", "SpanningTree", "Arborescence",
           "Permutation"]
