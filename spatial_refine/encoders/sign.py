"""SIGN residual encoder: learned maps of precomputed multi-hop neighbour aggregates."""

from __future__ import annotations

import torch
from torch import nn


class SIGNEncoder(nn.Module):
    """SIGN (Frasca et al., 2020, "Scalable Inception Graph Neural Networks") over precomputed hops.

    The input row of a cell is ``[x, P x, P^2 x, ..., P^L x]`` (its own features, then the mean over its
    1..L-hop neighbourhoods, computed once with sparse products; see
    :func:`spatial_refine.refine.neighbors.neighbor_aggregate`). Each hop block gets its own
    ``Linear -> ReLU -> Dropout`` (the inception module) and the outputs are concatenated, so the cell's
    own signal keeps its own path next to its neighbourhood. Message passing is done before training:
    a training step costs as much as an MLP on the labelled cells only, whatever the size of the graph.

    With ``hidden=None`` the encoder is the identity on the hop features: REFINE's linear head then
    contains logistic regression on ``[x, P x, ..., P^L x]`` (the neighbour-aggregation baseline)
    exactly, next to the linear probe on the frozen representation.

    Parameters
    ----------
    in_dim
        Features per hop block (genes).
    n_hops
        ``L``: hop blocks after the cell's own (the input has ``(L + 1) * in_dim`` columns).
    hidden
        Width of each hop's projection, or ``None`` for the identity.
    dropout
        Dropout after each projection.
    """

    def __init__(self, in_dim: int, *, n_hops: int = 2, hidden: int | None = 64, dropout: float = 0.2) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be positive, got {in_dim}.")
        if n_hops < 0:
            raise ValueError(f"n_hops must be >= 0, got {n_hops}.")
        if hidden is not None and hidden < 1:
            raise ValueError(f"hidden must be positive or None, got {hidden}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.in_dim, self.n_hops, self.hidden = in_dim, n_hops, hidden
        self.projections = nn.ModuleList() if hidden is None else nn.ModuleList(
            nn.Linear(in_dim, hidden) for _ in range(n_hops + 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = (n_hops + 1) * (in_dim if hidden is None else hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.n_hops + 1) * self.in_dim
        if x.shape[-1] != expected:
            raise ValueError(
                f"SIGNEncoder expects {expected} columns ({self.n_hops + 1} hop blocks of {self.in_dim}), got "
                f"{x.shape[-1]}: pass neighbor_aggregate(x, adjacency, n_hops)."
            )
        if self.hidden is None:
            return x
        blocks = x.split(self.in_dim, dim=-1)
        return torch.cat([self.dropout(torch.relu(p(b))) for p, b in zip(self.projections, blocks, strict=True)], -1)
