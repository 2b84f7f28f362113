"""NRI MLP encoder and decoder (Kipf et al. 2018, as used by Paulus et al. 2020), batched over time.

Edge layouts (n vertices):
    directed  ``E = n(n-1)``: edge ``e`` = (receiver i, sender j), i != j, in row-major order of the off-diagonal
              of an (n, n) matrix, so that the edges into vertex i are the contiguous block ``e in [i(n-1),
              (i+1)(n-1))``; aggregation to receivers is a reshape and a sum, no scatter.
    undirected ``M = n(n-1)/2``: pairs (i, j), i < j, in ``torch.triu_indices(n, n, 1)`` order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EdgeIndex(nn.Module):
    """Index buffers converting between directed, undirected and (n, n) layouts."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        off = ~torch.eye(n, dtype=torch.bool)
        recv, send = off.nonzero(as_tuple=True)
        iu, ju = torch.triu_indices(n, n, offset=1)
        pair = torch.full((n, n), -1, dtype=torch.long)
        pair[iu, ju] = torch.arange(iu.numel())
        pair[ju, iu] = torch.arange(iu.numel())
        directed = torch.full((n, n), -1, dtype=torch.long)
        directed[recv, send] = torch.arange(recv.numel())
        self.register_buffer("recv", recv, persistent=False)
        self.register_buffer("send", send, persistent=False)
        self.register_buffer("iu", iu, persistent=False)
        self.register_buffer("ju", ju, persistent=False)
        self.register_buffer("dir2und", pair[recv, send], persistent=False)  # (E,) undirected index of each edge
        self.register_buffer("und_ij", directed[iu, ju], persistent=False)  # (M,) directed index of (i, j)
        self.register_buffer("und_ji", directed[ju, iu], persistent=False)  # (M,) directed index of (j, i)

    @property
    def num_directed(self) -> int:
        return self.n * (self.n - 1)

    @property
    def num_undirected(self) -> int:
        return self.n * (self.n - 1) // 2

    def symmetrise(self, logits: Tensor) -> Tensor:
        """``(..., E)`` directed logits -> ``(..., M)`` undirected: the mean of i->j and j->i."""
        return 0.5 * (logits[..., self.und_ij] + logits[..., self.und_ji])

    def to_directed(self, x: Tensor) -> Tensor:
        """``(..., M)`` -> ``(..., E)``: each directed edge takes its undirected pair's value."""
        return x[..., self.dir2und]

    def to_matrix(self, x: Tensor) -> Tensor:
        """``(..., M)`` -> ``(..., n, n)`` symmetric, zero diagonal."""
        out = x.new_zeros(*x.shape[:-1], self.n, self.n)
        out[..., self.iu, self.ju] = x
        out[..., self.ju, self.iu] = x
        return out

    def from_matrix(self, a: Tensor) -> Tensor:
        """``(..., n, n)`` -> ``(..., M)``: the upper triangle."""
        return a[..., self.iu, self.ju]


class MLP(nn.Module):
    """Two ELU layers and batch norm over all leading positions (NRI's MLP block)."""

    def __init__(self, n_in: int, n_hid: int, n_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hid)
        self.fc2 = nn.Linear(n_hid, n_out)
        self.bn = nn.BatchNorm1d(n_out)
        self.dropout = dropout
        for m in (self.fc1, self.fc2):
            nn.init.xavier_normal_(m.weight)
            nn.init.constant_(m.bias, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.after_fc1(self.fc1(x))

    def after_fc1(self, x: Tensor) -> Tensor:
        """The block from the first layer's output ``(..., n_hid)`` on (``forward = after_fc1 . fc1``)."""
        x = F.elu(x)
        x = F.dropout(x, self.dropout, training=self.training)
        x = F.elu(self.fc2(x))
        shape = x.shape
        return self.bn(x.reshape(-1, shape[-1])).view(shape)


class Encoder(nn.Module):
    """NRI factor-graph MLP encoder: ``out`` logits per directed edge (1, or 2 for the released Indep. edges).

    Input ``(B, T, n, D)`` trajectories; output ``(B, E)`` logits (``out = 1``) or ``(B, E, out)`` (directed
    layout of :class:`EdgeIndex`).
    """

    def __init__(self, index: EdgeIndex, n_in: int, hidden: int = 256, dropout: float = 0.0, out: int = 1) -> None:
        super().__init__()
        if out not in (1, 2):
            raise ValueError(f"encoder out (logits per directed edge) must be 1 or 2, got {out}")
        self.index = index
        self.out = out
        self.mlp1 = MLP(n_in, hidden, hidden, dropout)
        self.mlp2 = MLP(2 * hidden, hidden, hidden, dropout)
        self.mlp3 = MLP(hidden, hidden, hidden, dropout)
        self.mlp4 = MLP(3 * hidden, hidden, hidden, dropout)
        self.fc_out = nn.Linear(hidden, out)
        nn.init.xavier_normal_(self.fc_out.weight)
        nn.init.constant_(self.fc_out.bias, 0.1)

    def node2edge(self, x: Tensor) -> Tensor:
        """``(B, n, H)`` -> ``(B, E, 2H)``: ``[x_sender, x_receiver]`` on each directed edge."""
        return torch.cat([x[:, self.index.send], x[:, self.index.recv]], dim=-1)

    def edge_linear(self, x: Tensor, fc: nn.Linear, skip: Tensor | None = None) -> Tensor:
        """``fc(cat([node2edge(x), skip]))`` ``(B, E, H_out)`` from nodes ``x`` ``(B, n, H)`` (and edges ``skip``
        ``(B, E, H_skip)``), without forming the edge inputs: ``W [x_s; x_r] = W_s x_s + W_r x_r``, each product
        per node; the sum over all ``(receiver, sender)`` pairs ``(B, n, n, H_out)`` is a broadcast, and its
        off-diagonal entries in row-major order (the directed layout) are the flat positions ``1 .. n^2 - 2`` of
        the rows of an ``(n - 1, n + 1)`` view, less their last column."""
        b, n, hid = x.shape
        w = fc.weight
        xs = F.linear(x, w[:, :hid])  # (B, n, H_out) sender part
        xr = F.linear(x, w[:, hid:2 * hid], fc.bias)  # receiver part and bias
        pairs = (xr.unsqueeze(2) + xs.unsqueeze(1)).view(b, n * n, -1)  # (B, receiver * n + sender, H_out)
        off = pairs[:, 1:].view(b, n - 1, n + 1, -1)[:, :, :n]  # (B, n - 1, n, H_out): the off-diagonal pairs
        if skip is not None:
            return torch.addmm(off.reshape(-1, w.shape[0]), skip.reshape(-1, skip.shape[-1]),
                               w[:, 2 * hid:].t()).view(b, n * (n - 1), -1)
        return off.reshape(b, n * (n - 1), -1)

    def edge2node(self, x: Tensor) -> Tensor:
        n = self.index.n
        return x.view(x.shape[0], n, n - 1, x.shape[-1]).sum(2) / n  # NRI divides the sum by n

    def forward(self, locs: Tensor) -> Tensor:
        b, t, n, d = locs.shape
        x = locs.permute(0, 2, 1, 3).reshape(b, n, t * d)
        x = self.mlp1(x)
        x = self.mlp2.after_fc1(self.edge_linear(x, self.mlp2.fc1))  # mlp2(node2edge(x))
        skip = x
        x = self.mlp3(self.edge2node(x))
        x = self.mlp4.after_fc1(self.edge_linear(x, self.mlp4.fc1, skip))  # mlp4(cat([node2edge(x), skip]))
        y = self.fc_out(x)
        return y.squeeze(-1) if self.out == 1 else y


def messages(pre: Tensor, weights: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
             dropout: float = 0.0) -> Tensor:
    """The decoder's weighted messages summed into receivers, composed of autograd operations.

    ``agg[b, i, s] = sum_k sum_j w[k, b, i, j] relu(W2_k drop(relu(W1_k pre[b, i, j, s] + b1_k)) + b2_k)``

    Args:
        pre: ``(B, E, S, 2D)`` edge inputs ``[x_sender, x_receiver]``, rows in ``(b, receiver i, sender j, s)``
            order (``j`` the ``j``-th edge into ``i``, the directed layout's block of ``i``).
        weights: ``(U, B, n, n - 1)`` the ``U`` used edge types' weights of the edges into each receiver.
        w1: ``(U*H, 2D)``, b1: ``(U*H,)``: the types' first layers side by side (``Decoder.msg_fc1``).
        w2: ``(U, H, H)``, b2: ``(U, H)``: the types' second layers, stacked (``Decoder.msg_fc2``).
        dropout: dropout probability on the hidden layer (applied: call with 0 outside training).

    Returns:
        ``(B, n, S, H)``.
    """
    b, e, s, d2 = pre.shape
    u, n, hid = weights.shape[0], weights.shape[2], w2.shape[-1]
    h = F.relu(F.linear(pre, w1, b1)).view(-1, u, hid).transpose(0, 1)  # (U, B*E*S, H)
    if dropout > 0:
        h = F.dropout(h, dropout, training=True)
    msgs = F.relu(torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2)))  # (U, B*E*S, H)
    agg = torch.matmul(weights.unsqueeze(-2), msgs.view(u, b, n, n - 1, s * hid))  # (U, B, n, 1, S*H)
    return agg.sum(0).view(b, n, s, hid)


class _Messages(torch.autograd.Function):
    """:func:`messages` without dropout, with a hand-written backward: fewer passes over the ``(U, B*E*S, H)``
    hidden and message tensors, and fewer of them allocated.

    Forward: the first layers as one product with the bias as an input column of ones, the second layers as one
    ``addmm`` per type into one ``(U, B*E*S, H)`` buffer, ReLUs in place, and the weighting and the sum into
    receivers as one ``bmm`` of ``(U*B*n, 1, n-1)`` weights with ``(U*B*n, n-1, S*H)`` messages. Backward: the same
    products autograd takes for :func:`messages` (ReLU masks as ``threshold_backward`` or, for the messages, a
    multiplication by their sign, exactly 0 or 1), written into the forward's buffers once they are no longer
    needed, and the buffers are released. A second backward through the same graph (``retain_graph``), and a
    backward with ``create_graph`` (double backward: REBAR/RELAX learning their parameters), differentiate
    :func:`messages` recomputed from the saved inputs instead (differentiable twice).
    """

    @staticmethod
    def forward(ctx, pre: Tensor, weights: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        b, e, s, d2 = pre.shape
        u, bn, nm1 = weights.shape[0], weights.shape[1] * weights.shape[2], weights.shape[3]
        hid = w2.shape[-1]
        rows = b * e * s
        # the first layer's bias as an input column of ones: no bias pass over its (rows, U*H) output
        pre1 = torch.cat([pre.reshape(rows, d2), pre.new_ones(rows, 1)], dim=1)  # (rows, 2D + 1)
        h = torch.mm(pre1, torch.cat([w1, b1.unsqueeze(1)], dim=1).t()).relu_()  # (rows, U*H)
        msgs = pre.new_empty(u, rows, hid)
        for k in range(u):
            torch.addmm(b2[k], h[:, k * hid:(k + 1) * hid], w2[k].t(), out=msgs[k])
        msgs.relu_()
        agg = torch.bmm(weights.reshape(u * bn, 1, nm1), msgs.view(u * bn, nm1, s * hid))  # (U*B*n, 1, S*H)
        agg = agg.view(u, bn * s * hid)
        out = agg[0] + agg[1] if u == 2 else agg[0]
        ctx.save_for_backward(pre, weights, w1, b1, w2, b2)
        ctx.buffers = (pre1, h, msgs)  # intermediates, overwritten by the first backward
        return out.view(b, weights.shape[2], s, hid)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        pre, weights, w1, b1, w2, b2 = inputs = ctx.saved_tensors
        if torch.is_grad_enabled() or ctx.buffers is None:  # create_graph, or the buffers are spent
            return _Messages._recomputed_backward(ctx, grad, inputs)
        pre1, h, msgs = ctx.buffers
        ctx.buffers = None
        b, e, s, d2 = pre.shape
        u, bn, nm1 = weights.shape[0], weights.shape[1] * weights.shape[2], weights.shape[3]
        hid = w2.shape[-1]
        rows = b * e * s
        g = grad.contiguous().view(1, bn, 1, s * hid)
        m4 = msgs.view(u, bn, nm1, s * hid)
        g_weights = None
        if ctx.needs_input_grad[1]:  # d agg / d w[k, b, i, j] = <g[b, i], msgs[k, b, i, j]>
            g_weights = torch.matmul(g, m4.transpose(-1, -2)).view_as(weights)
        # the messages' gradient w (x) g where the message is positive, in the messages' buffer
        g_msgs = m4.sign_().mul_(weights.reshape(u, bn, nm1, 1)).mul_(g).view(u, rows, hid)
        g_b2 = g_msgs.sum(1)
        g_w2 = torch.empty_like(w2)
        g_w1b = pre1.new_empty(u * hid, d2 + 1)  # [d w1, d b1]
        g_h = []
        for k in range(u):
            hk = h[:, k * hid:(k + 1) * hid]
            torch.mm(g_msgs[k].t(), hk, out=g_w2[k])
            # the hidden layer's gradient: type k > 0 into the buffer of type k - 1's (used) message gradient
            ghk = torch.mm(g_msgs[k], w2[k], out=g_msgs[k - 1]) if k > 0 else torch.mm(g_msgs[k], w2[k])
            torch.ops.aten.threshold_backward.grad_input(ghk, hk, 0, grad_input=ghk)
            torch.mm(ghk.t(), pre1, out=g_w1b[k * hid:(k + 1) * hid])
            g_h.append(ghk)
        g_pre = None
        if ctx.needs_input_grad[0]:
            w1k = w1.view(u, hid, d2)
            g_pre = torch.mm(g_h[0], w1k[0])
            for k in range(1, u):
                g_pre.addmm_(g_h[k], w1k[k])
            g_pre = g_pre.view_as(pre)
        return g_pre, g_weights, g_w1b[:, :d2], g_w1b[:, d2], g_w2, g_b2

    @staticmethod
    def _recomputed_backward(ctx, grad: Tensor, inputs: tuple[Tensor, ...]) -> tuple[Tensor | None, ...]:
        """The input gradients by differentiating :func:`messages` recomputed from the inputs; with grad mode on
        (``create_graph``) as a differentiable function of the inputs."""
        create = torch.is_grad_enabled()
        wanted = [i for i, need in enumerate(ctx.needs_input_grad) if need]
        with torch.enable_grad():
            leaves = [x if create and x.requires_grad else x.detach().requires_grad_(ctx.needs_input_grad[i])
                      for i, x in enumerate(inputs)]
            out = messages(*leaves)
            grads = torch.autograd.grad(out, [leaves[i] for i in wanted], grad, create_graph=create,
                                        allow_unused=True)
        result: list[Tensor | None] = [None] * len(inputs)
        for i, g in zip(wanted, grads, strict=True):
            result[i] = g
        return tuple(result)


class Decoder(nn.Module):
    """NRI MLP decoder: one message MLP per edge type, messages summed into receivers, residual output MLP.

    ``edge_types = 2``: type 0 is "no edge" with weight ``1 - x``, type 1 is "edge" with weight ``x``; with
    ``skip_first`` type 0 sends no message (the released code's default is to keep it, which lets the decoder
    model the all-pairs repulsion of the spring layout).
    """

    def __init__(self, index: EdgeIndex, dims: int = 2, hidden: int = 256, edge_types: int = 2,
                 skip_first: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if edge_types not in (1, 2):
            raise ValueError(f"edge_types must be 1 or 2, got {edge_types}")
        self.index = index
        self.edge_types = edge_types
        self.first = 1 if skip_first else 0
        if self.first >= edge_types:
            raise ValueError("skip_first=True needs edge_types=2")
        self.hidden = hidden
        used = edge_types - self.first
        self.used = used
        self.msg_fc1 = nn.Linear(2 * dims, used * hidden)  # the used types' first layers, fused
        self.msg_fc2 = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(used)])
        self.out_fc1 = nn.Linear(dims + hidden, hidden)
        self.out_fc2 = nn.Linear(hidden, hidden)
        self.out_fc3 = nn.Linear(hidden, dims)
        self.dropout = dropout

    def message_weights(self, edges: Tensor) -> Tensor:
        """``(B, E)`` edge indicators/probabilities -> ``(U, B, n, n - 1)`` weights of the ``U`` used types.

        Entry ``(k, b, i, j')`` weighs type ``k``'s message on the ``j'``-th edge into receiver ``i`` (the directed
        layout's block of ``i``); type 0 has weight ``1 - x``, type 1 weight ``x`` (one edge type: ``x``)."""
        w = edges.unsqueeze(0) if self.edge_types == 1 else torch.stack([1.0 - edges, edges])[self.first:]
        n = self.index.n
        return w.reshape(w.shape[0], w.shape[1], n, n - 1)

    def step(self, x: Tensor, weights: Tensor) -> Tensor:
        """One prediction step. ``x``: ``(B, S, n, D)``; ``weights``: ``(U, B, n, n - 1)`` from
        :meth:`message_weights`. Returns ``(B, S, n, D)``.

        The released decoder's step (per type ``k``: ``m_k = relu(fc2_k(relu(fc1_k([x_sender, x_receiver]))))``
        on every directed edge, ``agg_i = sum_k sum_j w_k(i, j) m_k(i, j)``, then the output MLP on ``[x_i,
        agg_i]`` and a residual), computed by :class:`_Messages` on edge rows laid out ``(b, receiver i, sender j,
        s)``, so that the ``S * H`` messages of one edge are contiguous and the weighted sum into receivers is a
        batched matrix product."""
        idx = self.index
        b, s, n, d = x.shape
        xt = x.transpose(1, 2)  # (B, n, S, D)
        pre = torch.cat([xt[:, idx.send], xt[:, idx.recv]], dim=-1)  # (B, E, S, 2D), rows (b, i, j, s)
        w2 = torch.stack([fc.weight for fc in self.msg_fc2])  # (used, H, H)
        b2 = torch.stack([fc.bias for fc in self.msg_fc2])  # (used, H)
        params = (self.msg_fc1.weight, self.msg_fc1.bias, w2, b2)
        if (self.dropout > 0 and self.training) or x.device.type != "cpu" or torch.compiler.is_compiling():
            # autograd's composition: dropout; on GPUs and under torch.compile allocations are cheap
            agg = messages(pre, weights, *params, dropout=self.dropout if self.training else 0.0)
        else:
            agg = _Messages.apply(pre, weights, *params)
        agg = agg.transpose(1, 2)  # (B, S, n, H)
        out = F.relu(self.out_fc1(torch.cat([x, agg], dim=-1)))
        out = F.dropout(out, self.dropout, training=self.training) if self.dropout > 0 else out
        out = F.relu(self.out_fc2(out))
        out = F.dropout(out, self.dropout, training=self.training) if self.dropout > 0 else out
        return x + self.out_fc3(out)

    def forward(self, locs: Tensor, edges: Tensor, pred_steps: int = 1) -> Tensor:
        """Predict frames 1..T-1.

        Args:
            locs: ``(B, T, n, D)`` trajectories.
            edges: ``(B, E)`` directed edge weights in [0, 1] (a relaxed or hard sample).
            pred_steps: steps predicted from each teacher-forced start (starts at 0, P, 2P, ...); 1 = teacher
                forcing every step. All starts (and, for P = 1, all timesteps) run as one batch.

        Returns:
            ``(B, T-1, n, D)`` predictions of ``locs[:, 1:]``.
        """
        t = locs.shape[1]
        weights = self.message_weights(edges)
        if pred_steps <= 1:
            return self.step(locs[:, :-1], weights)
        x = locs[:, 0:t - 1:pred_steps]  # (B, S, n, D)
        preds = []
        for _ in range(pred_steps):
            x = self.step(x, weights)
            preds.append(x)
        return torch.stack(preds, dim=2).flatten(1, 2)[:, : t - 1]


class NRIModel(nn.Module):
    """Encoder + decoder, with the edge index buffers."""

    def __init__(self, n: int, timesteps: int, dims: int = 2, encoder_hidden: int = 256,
                 decoder_hidden: int = 256, edge_types: int = 2, skip_first: bool = False,
                 encoder_dropout: float = 0.0, decoder_dropout: float = 0.0, logits_per_edge: int = 1) -> None:
        super().__init__()
        self.index = EdgeIndex(n)
        self.encoder = Encoder(self.index, timesteps * dims, encoder_hidden, encoder_dropout, logits_per_edge)
        self.decoder = Decoder(self.index, dims, decoder_hidden, edge_types, skip_first, decoder_dropout)

    def edge_logits(self, locs: Tensor) -> Tensor:
        """``(B, T, n, D)`` -> ``(B, M)`` symmetrised undirected logits (one logit per directed edge only)."""
        if self.encoder.out != 1:
            raise ValueError("edge_logits symmetrises one logit per directed edge; this encoder gives "
                             f"{self.encoder.out} (use EdgeDistribution.logits(model.encoder(locs)))")
        return self.index.symmetrise(self.encoder(locs))


def gaussian_nll(preds: Tensor, target: Tensor, variance: float) -> Tensor:
    """Per-item ``sum (pred - target)^2 / (2 var)`` over time, vertices and dims, divided by the number of
    vertices (no log-normaliser, as in NRI). ``(B, T-1, n, D)`` -> ``(B,)``."""
    return (preds - target).pow(2).sum((1, 2, 3)) / (2.0 * variance * target.shape[2])


def gumbel_kl(u: Tensor, num_vertices: int) -> Tensor:
    """KL(Gumbel(u, 1) || Gumbel(0, 1)) = u + exp(-u) - 1, summed over the last dim, divided by n.

    ``(B, M) -> (B,)``."""
    return (u + torch.exp(-u) - 1.0).sum(-1) / num_vertices
