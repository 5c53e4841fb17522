"""Multilayer perceptron residual encoder for vector inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLPEncoder(nn.Module):
    """``Linear -> ReLU -> Dropout`` blocks; the last hidden layer is the representation ``h(x)``.

    Parameters
    ----------
    in_dim
        Number of input features.
    hidden_sizes
        Widths of the hidden layers; ``out_dim`` is the last one. Empty means the identity (``h(x) = x``).
    dropout
        Dropout probability after each hidden layer.
    """

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int] = (128,), dropout: float = 0.1) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be positive, got {in_dim}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden_sizes:
            if size < 1:
                raise ValueError(f"hidden sizes must be positive, got {tuple(hidden_sizes)}.")
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
