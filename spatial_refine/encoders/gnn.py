"""Graph neural network residual encoders over the spatial neighbour graph (torch-geometric)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ConvType = Literal["sage", "gcn", "gat"]
CONV_TYPES = ("sage", "gcn", "gat")


def _conv(kind: ConvType, width: int, heads: int) -> nn.Module:
    from torch_geometric.nn import GATConv, GCNConv, SAGEConv

    if kind == "sage":
        return SAGEConv(width, width, aggr="mean", root_weight=True)
    if kind == "gcn":
        return GCNConv(width, width, add_self_loops=True, normalize=True)
    if kind == "gat":
        if width % heads:
            raise ValueError(f"GAT needs hidden ({width}) divisible by heads ({heads}).")
        return GATConv(width, width // heads, heads=heads, add_self_loops=True)
    raise ValueError(f"Unknown conv {kind!r}: choose one of {', '.join(CONV_TYPES)}.")


class GNNEncoder(nn.Module):
    """A residual encoder that keeps each cell's own signal next to its neighbourhood.

    ``x0 = dropout(relu(W_in x))`` is the cell's own representation (the self path); ``n_layers``
    message-passing layers give ``x1 .. xL`` (1..L-hop context, each with a residual connection to the
    layer below); the output concatenates them all (jumping knowledge): ``h = [x0, x1, ..., xL]``,
    ``out_dim = hidden * (n_layers + 1)``. Smoothing over neighbours therefore never erases the cell's
    own identity: a linear head can weigh self and context per class.

    Parameters
    ----------
    in_dim
        Number of input features (genes).
    hidden
        Width of every layer.
    n_layers
        Message-passing layers (hops of context).
    conv
        ``"sage"`` (GraphSAGE mean aggregation with a root weight; default), ``"gcn"`` or ``"gat"``.
    dropout
        Dropout after each layer.
    heads
        Attention heads for GAT.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden: int = 64,
        n_layers: int = 2,
        conv: ConvType = "sage",
        dropout: float = 0.2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError("in_dim and hidden must be positive.")
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.input = nn.Linear(in_dim, hidden)
        self.convs = nn.ModuleList(_conv(conv, hidden, heads) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.n_layers = n_layers
        self.out_dim = hidden * (n_layers + 1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor | None = None) -> torch.Tensor:
        if edge_index is None and self.n_layers > 0:
            raise ValueError("GNNEncoder needs edge_index (the neighbour graph).")
        h = self.dropout(torch.relu(self.input(x)))
        outputs = [h]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + self.dropout(torch.relu(norm(conv(h, edge_index))))
            outputs.append(h)
        return torch.cat(outputs, dim=1)
