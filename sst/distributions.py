"""The structures as ``torch.distributions``: the exact Gibbs law and the stochastic softmax trick (issue 53).

- :class:`Gibbs` ``(structure, logits, temperature)``: ``p(x) ∝ exp(<logits, x> / temperature)`` over the
  structure's vertices, with ``log_prob``, ``log_partition``, ``mean`` (the exponential-family marginals),
  ``entropy``, ``mode`` (the argmax), an exact ``sample`` and ``kl_divergence`` between two Gibbs laws of one
  structure. Supported: :class:`~sst.Categorical`, :class:`~sst.Binary`, :class:`~sst.TopK`,
  :class:`~sst.CorrelatedTopK`, :class:`~sst.SpanningTree`, :class:`~sst.Arborescence` (and their subclasses);
  Permutation raises ``NotImplementedError`` (its partition function is a permanent, #P-hard), as does a user's
  own structure ("not implemented yet").
- :class:`SoftmaxTrick` ``(structure, logits, temperature, regularizer, hard)``: the relaxed sample of
  :func:`sst.sample` as a reparameterised distribution (``rsample``); it has no density (``log_prob`` raises),
  but ``perturbation_log_prob(u)`` gives the density of the perturbed logits it relaxes.

Both follow ``torch.distributions``: ``batch_shape`` (the logits' leading dims), ``event_shape`` (the structure's
layout), ``arg_constraints``, ``support``, ``expand``, ``sample(sample_shape)`` / ``rsample(sample_shape)`` and
``validate_args``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

from sst.sample import sample as sst_sample
from sst.structures import _ksubset
from sst.structures._laplacian import MAX_SPREAD, fast_tolerance, log_partition_eliminate, one_inverse_marginals
from sst.structures._logspace import neg
from sst.structures.arborescence import Arborescence
from sst.structures.base import Structure
from sst.structures.binary import Binary
from sst.structures.categorical import Categorical
from sst.structures.correlated_topk import CorrelatedTopK
from sst.structures.permutation import Permutation
from sst.structures.spanning_tree import SpanningTree
from sst.structures.topk import TopK
from sst.validation import checks, checks_enabled

__all__ = ["Gibbs", "SoftmaxTrick", "Arborescences", "ChainKHot", "KHot", "SpanningTrees", "Vertices"]

_SUPPORTED = (Categorical, Binary, TopK, CorrelatedTopK, SpanningTree, Arborescence)


class KHot(constraints.Constraint):
    """Vectors in ``{0, 1}^n`` with exactly ``k`` ones (the last dim): ``(..., n) -> (...)`` bool."""

    is_discrete = True
    event_dim = 1

    def __init__(self, k: int) -> None:
        self.k = k
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return ((value == 0) | (value == 1)).all(-1) & (value.sum(-1) == self.k)

    def __repr__(self) -> str:
        return f"KHot(k={self.k})"


class SpanningTrees(constraints.Constraint):
    """Symmetric 0/1 adjacency matrices of spanning trees (zero diagonal, n - 1 edges, connected):
    ``(..., n, n) -> (...)`` bool."""

    is_discrete = True
    event_dim = 2

    def check(self, value: Tensor) -> Tensor:
        n = value.shape[-1]
        binary = ((value == 0) | (value == 1)).flatten(-2).all(-1)
        sym = (value == value.transpose(-1, -2)).flatten(-2).all(-1)
        diag = (value.diagonal(dim1=-2, dim2=-1) == 0).all(-1)
        edges = value.flatten(-2).sum(-1) == 2 * (n - 1)
        reach = ((value != 0) | torch.eye(n, dtype=torch.bool, device=value.device)).to(torch.float64)
        for _ in range(max(1, (n - 1).bit_length())):  # paths of length up to 2^steps >= n - 1
            reach = (reach @ reach).clamp_max(1.0)
        return binary & sym & diag & edges & (reach > 0).flatten(-2).all(-1)

    def __repr__(self) -> str:
        return "SpanningTrees()"


class Arborescences(constraints.Constraint):
    """0/1 matrices ``x[i, j] = 1`` when i is the parent of j, of arborescences rooted at ``root``: one parent per
    non-root node, none for the root, a zero diagonal, every node reaching the root: ``(..., n, n) -> (...)``."""

    is_discrete = True
    event_dim = 2

    def __init__(self, root: int) -> None:
        self.root = root
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        n = value.shape[-1]
        r = self.root % n
        binary = ((value == 0) | (value == 1)).flatten(-2).all(-1)
        diag = (value.diagonal(dim1=-2, dim2=-1) == 0).all(-1)
        indeg = value.sum(-2)  # (..., n)
        nonroot = torch.arange(n, device=value.device) != r
        one_parent = torch.where(nonroot, indeg == 1, indeg == 0).all(-1)
        parent = torch.where(nonroot, value.argmax(-2), torch.full_like(indeg, r, dtype=torch.long))
        node = torch.arange(n, device=value.device).expand(parent.shape)
        for _ in range(n):  # follow the parents n times: every node ends at the root unless there is a cycle
            node = parent.gather(-1, node)
        return binary & diag & one_parent & (node == r).all(-1)

    def __repr__(self) -> str:
        return f"Arborescences(root={self.root})"


class ChainKHot(KHot):
    """CorrelatedTopK vertices ``(..., 2n - 1)``: a k-hot unary part, then the products of neighbours."""

    def check(self, value: Tensor) -> Tensor:
        n = (value.shape[-1] + 1) // 2
        u, pair = value[..., :n], value[..., n:]
        return super().check(u) & (pair == u[..., :-1] * u[..., 1:]).all(-1)

    def __repr__(self) -> str:
        return f"ChainKHot(k={self.k})"


class Vertices(constraints.Constraint):
    """0/1 tensors with the structure's ``event_ndim`` trailing dims (a necessary condition for a vertex; exact
    for Categorical, Binary and TopK): ``(..., *event) -> (...)`` bool."""

    is_discrete = True

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        self.event_dim = structure.event_ndim
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return ((value == 0) | (value == 1)).flatten(-self.event_dim).all(-1)

    def __repr__(self) -> str:
        return f"Vertices({self.structure!r})"


def _support(structure: Structure) -> constraints.Constraint:
    if isinstance(structure, TopK):
        return KHot(structure.k)
    if isinstance(structure, Categorical):
        return constraints.one_hot
    if isinstance(structure, Binary):
        return constraints.independent(constraints.boolean, 1)
    if isinstance(structure, SpanningTree):
        return SpanningTrees()
    if isinstance(structure, Arborescence):
        return Arborescences(structure.root)
    if isinstance(structure, CorrelatedTopK):
        return ChainKHot(structure.k)
    return Vertices(structure)


def _check_structure(structure: object) -> Structure:
    if not isinstance(structure, Structure):
        hint = " (a class: instantiate it)" if isinstance(structure, type) else ""
        raise ValueError(f"structure must be an sst structure instance such as sst.TopK(k=3), got "
                         f"{type(structure).__name__} {structure!r}{hint}")
    return structure


def _check_temperature(temperature: float | Tensor, logits: Tensor, batch_shape: torch.Size) -> Tensor:
    """``temperature`` as a tensor of ``batch_shape`` (logits' dtype and device); ValueError unless > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (numbers.Real, Tensor)):
        raise ValueError(f"temperature must be a number > 0 or a tensor broadcastable to the batch shape "
                         f"{tuple(batch_shape)}, got {type(temperature).__name__}")
    t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    if isinstance(temperature, numbers.Real):
        bad = not (math.isfinite(temperature) and temperature > 0)
    else:  # a tensor's values: one host sync, with checks on (sst.checks, validate_args)
        bad = checks_enabled() and not (bool((t > 0).all()) and bool(torch.isfinite(t).all()))
    if bad:
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    try:
        return t.expand(batch_shape)
    except RuntimeError:
        raise ValueError(f"temperature of shape {tuple(t.shape)} does not broadcast to the batch shape "
                         f"{tuple(batch_shape)} of logits") from None


def _validating(validate_args: bool | None) -> bool:
    """Whether a distribution validates: ``validate_args`` when given; None: when :func:`sst.checks` is on (so
    ``with sst.checks(False)`` turns off both kinds of check; off under ``torch.compile`` and ``torch.func``).
    Not ``torch.distributions``' global default: importing ``torch._dynamo`` (any ``torch.compile``) turns that
    off for the whole process."""
    if validate_args is None:
        return checks_enabled()
    return bool(validate_args)


def _check_logits(structure: Structure, logits: object) -> Tensor:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point torch.Tensor, got {type(logits).__name__}")
    structure._check(logits, "logits")
    return logits


def _inner(a: Tensor, x: Tensor, structure: Structure) -> Tensor:
    """``<a, x>`` over the event dims with ``0 * (+-inf) = 0``, each undirected edge once for SpanningTree:
    ``(..., *event), (..., *event) -> (...)``."""
    ax = torch.where(x != 0, a * x, torch.zeros((), dtype=a.dtype, device=a.device))
    if isinstance(structure, SpanningTree):
        return torch.triu(ax, diagonal=1).sum(dim=(-2, -1))
    return ax.flatten(-structure.event_ndim).sum(-1)


def _tree_theta(theta: Tensor) -> Tensor:
    """Symmetrised ``theta`` with a zero diagonal (never read): ``(..., n, n) -> (..., n, n)``."""
    n = theta.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=theta.device)
    return torch.where(eye, torch.zeros((), dtype=theta.dtype, device=theta.device),
                       0.5 * (theta + theta.transpose(-1, -2)))


def _tree_log_partition(theta: Tensor) -> Tensor:
    """``log sum_T exp(sum_{ij in T} theta_ij)`` by subtraction-free log-space elimination of the Laplacian
    (:func:`sst.structures._laplacian.log_partition_eliminate`): ``(..., n, n) -> (...)``, differentiable. A
    ``-inf`` edge counts as ``MAX_SPREAD`` (1e6) below the graph's largest weight (weight exp(-1e6) = 0)."""
    t = _tree_theta(theta)
    n = t.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=t.device)
    mx = t.detach().masked_fill(~off, float("-inf")).amax(dim=(-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    x = torch.maximum(t - mx, torch.full((), -MAX_SPREAD, dtype=t.dtype, device=t.device))
    x = torch.where(off, x, torch.zeros((), dtype=t.dtype, device=t.device))
    return log_partition_eliminate(x) + (n - 1) * mx.squeeze(-1).squeeze(-1)


def _arb_theta(theta: Tensor, root: int) -> tuple[Tensor, Tensor]:
    """``theta`` with ``-inf`` off the edges (the diagonal, the edges into the root), and the edge mask ``(n, n)``."""
    n = theta.shape[-1]
    valid = ~torch.eye(n, dtype=torch.bool, device=theta.device)
    valid[:, root] = False
    return theta.masked_fill(~valid, float("-inf")), valid


def _arb_log_partition(theta: Tensor, root: int) -> Tensor:
    """``log sum_T exp(sum_{i->j in T} theta_ij)`` over arborescences rooted at ``root`` by log-space
    elimination of the in-degree Laplacian (root moved last): ``(..., n, n) -> (...)``, differentiable. A
    ``-inf`` edge counts as ``MAX_SPREAD`` (1e6) below the graph's largest weight."""
    n = theta.shape[-1]
    t, valid = _arb_theta(theta, root)
    mx = t.detach().amax(dim=(-2, -1), keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    x = torch.maximum(t - mx, torch.full((), -MAX_SPREAD, dtype=t.dtype, device=t.device))
    x = torch.where(valid, x, torch.zeros((), dtype=t.dtype, device=t.device))
    perm = (torch.arange(n, device=t.device) + root + 1) % n  # the root last
    x = x.index_select(-2, perm).index_select(-1, perm)
    return log_partition_eliminate(x) + (n - 1) * mx.squeeze(-1).squeeze(-1)


def _arb_mean(theta: Tensor, root: int) -> Tensor:
    """Edge marginals ``mu[i, j] = P(i -> j)`` by the exact path of ``Arborescence.relax``: ``(..., n, n)``."""
    n = theta.shape[-1]
    if n == 1:
        return torch.zeros_like(theta)
    t, valid = _arb_theta(theta.double(), root)
    return one_inverse_marginals(t, valid, root, tol=fast_tolerance(torch.float64)).to(theta.dtype)


def _sample_arborescence(theta: Tensor, root: int, generator: torch.Generator | None) -> Tensor:
    """Exact draws of arborescences rooted at ``root``: ``(..., n, n) -> (..., n, n)`` 0/1.

    Sequential conditioning on the parents, node by node (vectorised over the batch): node j's parent is drawn
    from the column ``mu[:, j]`` of the edge marginals of the current weights (exact path of relax), then j's
    other incoming edges are removed (weight -inf), which conditions the law on that choice."""
    shape, n = theta.shape, theta.shape[-1]
    if n == 1:
        return torch.zeros_like(theta)
    t, valid = _arb_theta(theta.reshape(-1, n, n).double(), root)
    rows = t.shape[0]
    tol = fast_tolerance(torch.float64)
    u = torch.rand((rows, n), dtype=t.dtype, device=t.device, generator=generator)
    nodes = torch.arange(n, device=t.device)
    for j in range(n):
        if j == root:
            continue
        p = one_inverse_marginals(t, valid, root, tol=tol)[:, :, j].clamp_min(0.0)  # (rows, n) over parents
        cdf = p.cumsum(-1)
        parent = (cdf < u[:, j:j + 1] * cdf[:, -1:]).sum(-1).clamp_max(n - 1)
        parent = torch.where(p.gather(-1, parent.unsqueeze(-1)).squeeze(-1) > 0, parent, p.argmax(-1))
        t[:, :, j] = t[:, :, j].masked_fill(nodes != parent.unsqueeze(-1), float("-inf"))
    out = torch.isfinite(t) & valid
    return out.to(theta.dtype).reshape(shape)


def _chain_suffix(a: Tensor, b: Tensor, k: int) -> Tensor:
    """CorrelatedTopK's suffix DP: ``L[..., i, r, s] = log sum exp(score of x[i:])`` over the configurations of
    positions i..n-1 with r ones, given ``x[i - 1] = s`` (the pair term ``b[i - 1] s x_i`` included):
    ``a`` (..., n), ``b`` (..., n - 1) -> (..., n + 1, k + 1, 2), differentiable."""
    n = a.shape[-1]
    # "log 0" finite (sst.structures._logspace.neg), so that autograd never meets -inf - (-inf)
    ninf = torch.full((*a.shape[:-1], 1, 2), neg(a.dtype, 4 * n * (k + 2)), dtype=a.dtype, device=a.device)
    last = torch.cat([torch.zeros_like(ninf[..., :1, :]), ninf.expand(*a.shape[:-1], k, 2)], -2)
    out = [last]
    zero = torch.zeros_like(a[..., :1])
    bb = torch.cat([zero, b], -1)  # bb[i] = b[i - 1], the pair (i - 1, i); none before position 0
    for i in range(n - 1, -1, -1):
        nxt = out[-1]  # (..., k + 1, 2)
        off = nxt[..., :, 0]  # x_i = 0: r ones left after it, x_i = 0 seen next
        on_next = torch.cat([ninf[..., 0], nxt[..., :-1, 1]], -1)  # x_i = 1: r - 1 left, x_i = 1 seen next
        gain = a[..., i:i + 1].unsqueeze(-1) + bb[..., i:i + 1].unsqueeze(-1) * torch.tensor(
            [0.0, 1.0], dtype=a.dtype, device=a.device)  # (..., 1, 2): the score of x_i = 1 given s
        out.append(torch.logaddexp(off.unsqueeze(-1).expand(*off.shape, 2), on_next.unsqueeze(-1) + gain))
    return torch.stack(out[::-1], -3)


def _chain_log_partition(theta: Tensor, k: int) -> Tensor:
    """CorrelatedTopK's ``log Z``: ``(..., 2n - 1) -> (...)``, differentiable (a loop over the n positions)."""
    n = (theta.shape[-1] + 1) // 2
    return _chain_suffix(theta[..., :n], theta[..., n:], k)[..., 0, k, 0]


def _sample_chain(theta: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Exact CorrelatedTopK draws by forward sampling with the suffix DP: ``(..., 2n - 1) -> (..., 2n - 1)``."""
    shape, n = theta.shape, (theta.shape[-1] + 1) // 2
    t = theta.reshape(-1, theta.shape[-1]).double()
    a, b = t[:, :n], t[:, n:]
    L = _chain_suffix(a, b, k)  # (rows, n + 1, k + 1, 2)
    rows = t.shape[0]
    u = torch.rand((rows, n), dtype=t.dtype, device=t.device, generator=generator)
    left = torch.full((rows,), k, dtype=torch.long, device=t.device)
    prev = torch.zeros(rows, dtype=torch.long, device=t.device)
    r = torch.arange(rows, device=t.device)
    x = torch.zeros(rows, n, dtype=t.dtype, device=t.device)
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    for i in range(n):
        pair = b[:, i - 1] * prev.to(t.dtype) if i > 0 else zero
        p = torch.exp(a[:, i] + pair + L[r, i + 1, (left - 1).clamp_min(0), 1] - L[r, i, left, prev])
        p = torch.where(left > 0, p.nan_to_num(0.0), zero)
        took = u[:, i] < p
        x[:, i] = took.to(t.dtype)
        left = left - took.long()
        prev = took.long()
    out = torch.cat([x, x[:, :-1] * x[:, 1:]], -1)
    return out.to(theta.dtype).reshape(shape)


def _tree_mean(theta: Tensor) -> Tensor:
    """Edge marginals (both directions) by the exact path of ``SpanningTree.relax``: ``(..., n, n)``."""
    t = _tree_theta(theta)
    n = t.shape[-1]
    if n == 1:
        return torch.zeros_like(t)
    off = ~torch.eye(n, dtype=torch.bool, device=t.device)
    return one_inverse_marginals(t.double(), off, tol=fast_tolerance(torch.float64)).to(theta.dtype)


class _Base(Distribution):
    """What :class:`Gibbs` and :class:`SoftmaxTrick` share: structure, logits, temperature, shapes, expand."""

    arg_constraints = {"logits": constraints.real, "temperature": constraints.positive}

    def __init__(self, structure: Structure, logits: Tensor, temperature: float | Tensor = 1.0,
                 validate_args: bool | None = None) -> None:
        validate = _validating(validate_args)
        self.structure = _check_structure(structure)
        with checks(validate):  # the structure's value checks (NaN, symmetry, ...) follow validate_args
            self.logits = _check_logits(self.structure, logits)
            nd = self.structure.event_ndim
            batch_shape, event_shape = logits.shape[:-nd], logits.shape[-nd:]
            self.temperature = _check_temperature(temperature, logits, batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate)

    def _copy_into(self, new: _Base, batch_shape: torch.Size) -> _Base:
        new.structure = self.structure
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.temperature = self.temperature.expand(batch_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def theta(self) -> Tensor:
        """``logits / temperature``: ``(*batch, *event)``."""
        return self.logits / self.temperature.reshape(self.batch_shape + (1,) * self.structure.event_ndim)

    @property
    def mode(self) -> Tensor:
        """The vertex maximising ``<logits, x>`` (``structure.argmax``): ``(*batch, *event)``."""
        return self.structure.argmax(self.logits)


class Gibbs(_Base):
    """``p(x) ∝ exp(<logits, x> / temperature)`` over the vertices x of ``structure``.

    Args:
        structure: Categorical, Binary, TopK, CorrelatedTopK, SpanningTree or Arborescence (or a subclass);
            SpanningTree and Arborescence use their exact paths whatever ``max_range`` says.
        logits: ``(*batch, *event)`` weights with the structure's layout; ``-inf`` means "never selected" (an
            absent edge) where the structure accepts it.
        temperature: a number > 0 or a tensor broadcastable to ``batch`` (default 1).
        validate_args: as in ``torch.distributions`` (checks the parameters with the structure's own checks,
            and ``log_prob``'s value against :attr:`support`); None: on unless :func:`sst.checks` is off.

    Raises:
        ValueError: ``structure`` is not a structure instance, ``logits`` do not fit its layout, ``temperature``
            is not > 0.
        NotImplementedError: a structure without an exact Gibbs law here (Permutation: its partition function is a
            permanent, #P-hard; a structure this module does not know: not yet).
    """

    has_rsample = False
    has_enumerate_support = False

    def __init__(self, structure: Structure, logits: Tensor, temperature: float | Tensor = 1.0,
                 validate_args: bool | None = None) -> None:
        s = _check_structure(structure)
        if isinstance(s, Permutation):
            raise NotImplementedError("Gibbs(Permutation()): the partition function of exp(<theta, P>) over "
                                      "permutation matrices is a permanent, #P-hard; no exact law is offered")
        if not isinstance(s, _SUPPORTED):
            raise NotImplementedError(f"Gibbs({s!r}) is not implemented yet; supported: Categorical, Binary, TopK, "
                                      "CorrelatedTopK, SpanningTree, Arborescence")
        super().__init__(s, logits, temperature, validate_args)

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: Gibbs | None = None) -> Gibbs:
        new = self._get_checked_instance(Gibbs, _instance)
        return self._copy_into(new, torch.Size(batch_shape))

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self) -> constraints.Constraint:
        return _support(self.structure)

    # exact quantities ------------------------------------------------------------------------------------------
    @property
    def log_partition(self) -> Tensor:
        """``log Z = log sum_x exp(<logits, x> / temperature)``: ``(*batch,)``, differentiable."""
        theta, s = self.theta, self.structure
        if isinstance(s, TopK):
            return _ksubset.log_partition(theta, s.k)
        if isinstance(s, Categorical):
            return torch.logsumexp(theta, -1)
        if isinstance(s, SpanningTree):
            return _tree_log_partition(theta)
        if isinstance(s, Arborescence):
            return _arb_log_partition(theta, s.root % theta.shape[-1])
        if isinstance(s, CorrelatedTopK):
            return _chain_log_partition(theta, s.k)
        return torch.logaddexp(torch.zeros_like(theta), theta).sum(-1)  # Binary (softplus cuts off at 20)

    @property
    def mean(self) -> Tensor:
        """``E[X]``, the exponential-family marginals: ``(*batch, *event)``, differentiable."""
        theta, s = self.theta, self.structure
        if isinstance(s, TopK):
            return _ksubset.marginals(theta, s.k, s.backend)
        if isinstance(s, Categorical):
            return torch.softmax(theta, -1)
        if isinstance(s, SpanningTree):
            return _tree_mean(theta)
        if isinstance(s, Arborescence):
            return _arb_mean(theta, s.root % theta.shape[-1])
        if isinstance(s, CorrelatedTopK):
            return s.relax(theta, 1.0)
        return torch.sigmoid(theta)  # Binary

    def log_prob(self, value: Tensor) -> Tensor:
        """``<logits, x> / temperature - log Z``: ``(*sample, *batch, *event) -> (*sample, *batch)``."""
        if self._validate_args:
            self._validate_sample(value)
        return _inner(self.theta, value, self.structure) - self.log_partition

    def entropy(self) -> Tensor:
        """``log Z - <logits, E[X]> / temperature``: ``(*batch,)``."""
        return self.log_partition - _inner(self.theta, self.mean, self.structure)

    # exact sampling --------------------------------------------------------------------------------------------
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (),
               generator: torch.Generator | None = None) -> Tensor:
        """Exact draws: ``(*sample_shape, *batch, *event)``, no gradient.

        Categorical and Binary: ``argmax(theta + noise)`` (Gumbel-max, Logistic-max). TopK: sequential
        conditioning, item by item, with the suffix DP ``L[i, j] = log e_j(exp(theta[i:]))``: item i is taken
        with probability ``exp(theta_i + L[i + 1, r - 1] - L[i, r])`` when r items remain to be taken (one loop
        over the n items, vectorised over the batch and the draws). CorrelatedTopK: the same with the previous
        bit in the DP's state. Arborescence: sequential conditioning on each node's parent
        (:func:`_sample_arborescence`); SpanningTree: the same, rooted at node 0
        (:func:`_sample_tree`). SpanningTree and Arborescence need the finite edges to connect the graph.
        """
        shape = self._extended_shape(sample_shape)
        s = self.structure
        with torch.no_grad():
            theta = self.theta.detach().expand(shape)
            if isinstance(s, TopK):
                return _sample_ksubset(theta, s.k, generator)
            if isinstance(s, SpanningTree):
                return _sample_tree(theta, generator)
            if isinstance(s, Arborescence):
                return _sample_arborescence(theta, s.root % theta.shape[-1], generator)
            if isinstance(s, CorrelatedTopK):
                return _sample_chain(theta, s.k, generator)
            return s.argmax(s.perturb(theta, generator=generator))

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        raise NotImplementedError("Gibbs has no reparameterised sample; use SoftmaxTrick for a relaxed, "
                                  "differentiable one, or the score-function estimators of sst.estimators")


def _sample_ksubset(theta: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Exact draws from ``p(x) ∝ exp(<theta, x>)`` over k-hot x: ``(..., n) -> (..., n)`` 0/1 in theta's dtype."""
    shape, n = theta.shape, theta.shape[-1]
    t = theta.reshape(-1, n).double()
    rows = t.shape[0]
    ninf = torch.tensor(float("-inf"), dtype=t.dtype, device=t.device)
    # suffix DP, L[:, i, j] = log e_j(exp(t[:, i:])), j = 0..k
    suffix = [torch.full((rows, k + 1), float("-inf"), dtype=t.dtype, device=t.device)]
    suffix[0][:, 0] = 0.0
    for i in range(n - 1, -1, -1):
        nxt = suffix[-1]
        take = torch.cat([ninf.expand(rows, 1), nxt[:, :-1] + t[:, i:i + 1]], -1)
        suffix.append(torch.logaddexp(nxt, take))
    L = torch.stack(suffix[::-1], 1)  # (rows, n + 1, k + 1)
    u = torch.rand((rows, n), dtype=t.dtype, device=t.device, generator=generator)
    left = torch.full((rows, 1), k, dtype=torch.long, device=t.device)
    out = torch.zeros_like(t)
    for i in range(n):
        here = L[:, i].gather(-1, left).squeeze(-1)
        after = L[:, i + 1].gather(-1, (left - 1).clamp_min(0)).squeeze(-1)
        p = torch.exp(t[:, i] + after - here)
        p = torch.where(left.squeeze(-1) > 0, p.nan_to_num(0.0), torch.zeros((), dtype=t.dtype, device=t.device))
        took = u[:, i] < p
        out[:, i] = took.to(t.dtype)
        left = left - took.long().unsqueeze(-1)
    return out.to(theta.dtype).reshape(shape)


def _sample_tree(theta: Tensor, generator: torch.Generator | None) -> Tensor:
    """Exact draws from ``p(T) ∝ exp(sum_{ij in T} theta_ij)``: ``(..., n, n) -> (..., n, n)`` 0/1 symmetric.

    Rooting a spanning tree at node 0 is a bijection onto the arborescences rooted at 0, with the same score under
    the symmetric weights, so a tree is an arborescence drawn by :func:`_sample_arborescence` (sequential
    conditioning on each node's parent with the exact marginals), made symmetric. ``-inf`` edges are never taken;
    the finite edges must connect the graph.
    """
    x = _sample_arborescence(_tree_theta(theta), 0, generator)
    return x + x.transpose(-1, -2)


@register_kl(Gibbs, Gibbs)
def _kl_gibbs(p: Gibbs, q: Gibbs) -> Tensor:
    """``KL(p || q) = <theta_p - theta_q, E_p[X]> - log Z_p + log Z_q`` (theta = logits / temperature):
    ``(*batch,)``. ValueError unless both are laws of one structure with the same event shape."""
    if type(p.structure) is not type(q.structure) or repr(p.structure) != repr(q.structure) \
            or p.event_shape != q.event_shape:
        raise ValueError(f"kl_divergence needs two Gibbs laws of one structure and event shape, got "
                         f"{p.structure!r} {tuple(p.event_shape)} and {q.structure!r} {tuple(q.event_shape)}")
    return _inner(p.theta - q.theta, p.mean, p.structure) - p.log_partition + q.log_partition


class SoftmaxTrick(_Base):
    """The stochastic softmax trick as a reparameterised distribution: ``rsample`` is
    :func:`sst.sample` ``(structure, logits, temperature, regularizer, hard)``.

    Args:
        structure: any sst structure. logits: ``(*batch, *event)``. temperature: a number > 0 (or a tensor
            broadcastable to ``batch``, passed to the relaxation). regularizer: one of
            ``structure.regularizers`` (None: the first). hard: True for the straight-through variant (the exact
            vertex forward, the relaxation's gradient backward).

    ``log_prob`` raises NotImplementedError: a relaxed sample has no tractable density in general (for
    Categorical and Binary with the entropy regularizer, torch's ``RelaxedOneHotCategorical`` /
    ``RelaxedBernoulli`` have one).
    """

    has_rsample = True

    def __init__(self, structure: Structure, logits: Tensor, temperature: float | Tensor = 1.0,
                 regularizer: str | None = None, hard: bool = False, validate_args: bool | None = None) -> None:
        s = _check_structure(structure)
        if regularizer is not None and regularizer not in s.regularizers:
            raise ValueError(f"regularizer must be one of {s.regularizers} for {s!r}, got {regularizer!r}")
        if not isinstance(hard, bool):
            raise ValueError(f"hard must be a bool, got {hard!r}")
        self.regularizer = regularizer
        self.hard = hard
        self._scalar_tau = float(temperature) if isinstance(temperature, numbers.Real) else None
        super().__init__(s, logits, temperature, validate_args)

    def expand(self, batch_shape: torch.Size | tuple[int, ...],
               _instance: SoftmaxTrick | None = None) -> SoftmaxTrick:
        new = self._get_checked_instance(SoftmaxTrick, _instance)
        new.regularizer, new.hard, new._scalar_tau = self.regularizer, self.hard, self._scalar_tau
        return self._copy_into(new, torch.Size(batch_shape))

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        if self.hard:
            return _support(self.structure)
        return constraints.independent(constraints.unit_interval, self.structure.event_ndim)

    def _tau(self) -> float | Tensor:
        """The number given as temperature, else the tensor shaped to broadcast over the event dims."""
        if self._scalar_tau is not None:
            return self._scalar_tau
        return self.temperature.reshape(self.batch_shape + (1,) * self.structure.event_ndim)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = (),
                generator: torch.Generator | None = None) -> Tensor:
        """:func:`sst.sample` with ``sample_shape``: ``(*sample_shape, *batch, *event)``, differentiable in
        ``logits`` (and a tensor ``temperature``)."""
        return sst_sample(self.structure, self.logits, self._tau(), self.regularizer, hard=self.hard,
                          generator=generator, sample_shape=tuple(sample_shape))

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (),
               generator: torch.Generator | None = None) -> Tensor:
        """:meth:`rsample` without gradient."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def perturbation_log_prob(self, u: Tensor) -> Tensor:
        """``log p(U = u)`` for the perturbed logits ``U = logits + noise`` that :meth:`rsample` relaxes:
        ``(*sample, *batch, *event) -> (*sample, *batch)``, differentiable in ``logits`` (for score-function use:
        ``E_U[f(U) d/dlogits log p(U)]`` is the gradient of ``E_U[f(U)]``).

        The noise is the structure's declared ``noise`` (Gumbel(0, 1) per coordinate; Logistic(0, 1) for
        Binary), summed over its ``perturbed_coordinates``: every coordinate, or, for SpanningTree
        (``"symmetric"``), each unordered pair once (its gradient split evenly between ``logits[i, j]`` and
        ``logits[j, i]``), for Arborescence the edges ``i -> j``, ``i != j``, ``j != root``. It is the density
        the score-function estimators of :mod:`sst.estimators` differentiate
        (``StructureInfo.perturbation_log_density``), not a density of the relaxed sample. The temperature does
        not enter: it only scales the relaxation.

        Raises:
            NotImplementedError: the structure declares no noise (``noise = None``).
            ValueError: ``u``'s trailing dims are not the event shape.
        """
        from sst.estimators.structinfo import structure_info  # sst.estimators loads on first use

        info = structure_info(self.structure)
        if info.noise is None:
            raise NotImplementedError(f"{self.structure!r} declares no noise, so its perturbation has no known "
                                      "density")
        nd = self.structure.event_ndim
        if not isinstance(u, Tensor) or u.dim() < nd or u.shape[u.dim() - nd:] != self.event_shape:
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"u must be a tensor of shape (*sample, *batch, {', '.join(map(str, self.event_shape))})"
                             f", got {shape}")
        shape = torch.broadcast_shapes(u.shape, self.logits.shape)
        u, logits = u.expand(shape), self.logits.expand(shape)
        flat = (-1,) + tuple(self.event_shape)
        lp = info.perturbation_log_density(logits.reshape(flat), u.reshape(flat))
        return lp.reshape(shape[:len(shape) - nd])

    def log_prob(self, value: Tensor) -> Tensor:
        s = self.structure
        hint = ""
        if isinstance(s, Categorical):
            hint = " (for Categorical, torch.distributions.RelaxedOneHotCategorical has the Concrete density)"
        elif isinstance(s, Binary):
            hint = " (for Binary, torch.distributions.RelaxedBernoulli has the binary Concrete density)"
        raise NotImplementedError(f"SoftmaxTrick({s!r}) has no tractable density{hint}; for score-function "
                                  "estimators use Gibbs (an exact law) or perturbation_log_prob (the density of the "
                                  "perturbed logits)")
