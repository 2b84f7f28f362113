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
        x = F.elu(self.fc1(x))
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
        return torch.cat([x[:, self.index.send], x[:, self.index.recv]], dim=-1)

    def edge2node(self, x: Tensor) -> Tensor:
        n = self.index.n
        return x.view(x.shape[0], n, n - 1, x.shape[-1]).sum(2) / n  # NRI divides the sum by n

    def forward(self, locs: Tensor) -> Tensor:
        b, t, n, d = locs.shape
        x = locs.permute(0, 2, 1, 3).reshape(b, n, t * d)
        x = self.mlp1(x)
        x = self.mlp2(self.node2edge(x))
        skip = x
        x = self.mlp3(self.edge2node(x))
        x = self.mlp4(torch.cat([self.node2edge(x), skip], dim=-1))
        y = self.fc_out(x)
        return y.squeeze(-1) if self.out == 1 else y


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
        self.msg_fc1 = nn.Linear(2 * dims, used * hidden)  # the used types' first layers, fused
        self.msg_fc2 = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(used)])
        self.out_fc1 = nn.Linear(dims + hidden, hidden)
        self.out_fc2 = nn.Linear(hidden, hidden)
        self.out_fc3 = nn.Linear(hidden, dims)
        self.dropout = dropout

    def type_weights(self, x: Tensor) -> Tensor:
        """``(..., E)`` edge indicator/probability -> ``(..., E, used types)`` message weights."""
        if self.edge_types == 1:
            return x.unsqueeze(-1)
        types = torch.stack([1.0 - x, x], dim=-1)
        return types[..., self.first:]

    def step(self, x: Tensor, rel: Tensor) -> Tensor:
        """One prediction step. ``x``: ``(B, S, n, D)``; ``rel``: ``(B, 1, E, types)``. Returns ``(B, S, n, D)``."""
        idx = self.index
        pre = torch.cat([x[..., idx.send, :], x[..., idx.recv, :]], dim=-1)  # (B, S, E, 2D)
        h = F.relu(self.msg_fc1(pre)).split(self.hidden, dim=-1)
        msgs = None
        for k, fc2 in enumerate(self.msg_fc2):
            hk = F.dropout(h[k], self.dropout, training=self.training)
            m = F.relu(fc2(hk)) * rel[..., k:k + 1]
            msgs = m if msgs is None else msgs + m
        n = idx.n
        agg = msgs.view(*msgs.shape[:-2], n, n - 1, self.hidden).sum(-2)  # into receivers
        out = F.dropout(F.relu(self.out_fc1(torch.cat([x, agg], dim=-1))), self.dropout, training=self.training)
        out = F.dropout(F.relu(self.out_fc2(out)), self.dropout, training=self.training)
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
        rel = self.type_weights(edges).unsqueeze(1)
        if pred_steps <= 1:
            return self.step(locs[:, :-1], rel)
        x = locs[:, 0:t - 1:pred_steps]  # (B, S, n, D)
        preds = []
        for _ in range(pred_steps):
            x = self.step(x, rel)
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
