"""Convolutional networks of the REFINE vision protocol.

- :class:`BigCNN`: the paper's source feature extractor (six 3x3 convolutions 3-80-160-320-640-640-768,
  ReLU, 2x2 max-pooling after the first five, then ``Linear(768 -> 2560)``, ReLU, dropout 0.5). Its output
  is ``f_rep``; the source model is ``Linear(2560 -> C)`` on top.
- :class:`SmallCNN`: the target / no-transfer trunk (convolutions 3-32-64-64 with max-pooling after each,
  then ``Linear(1024 -> 512)``, ReLU, dropout 0.5); REFINE's residual encoder ``h``.

Both take ``(n, 3, 32, 32)`` images and expose ``out_dim``. Widths are parameters so that the quick
benchmark protocol can use narrow versions of the same architectures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PAPER_BIG_CHANNELS", "PAPER_SMALL_CHANNELS", "BigCNN", "SmallCNN"]

PAPER_BIG_CHANNELS = (80, 160, 320, 640, 640, 768)
PAPER_SMALL_CHANNELS = (32, 64, 64)


def _conv_trunk(in_channels: int, channels: Sequence[int], n_pooled: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_channels
    for i, out in enumerate(channels):
        layers += [nn.Conv2d(width, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        if i < n_pooled:
            layers.append(nn.MaxPool2d(2))
        width = out
    return nn.Sequential(*layers)


def _check(channels: Sequence[int], image_size: int, n_pooled: int) -> None:
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"channels must be positive integers, got {tuple(channels)}.")
    if image_size % (2**n_pooled):
        raise ValueError(f"image_size {image_size} must be divisible by 2**{n_pooled}.")


class BigCNN(nn.Module):
    """The paper's source CNN up to its penultimate features ``f_rep`` (post-ReLU, dropout in training).

    Parameters
    ----------
    channels
        Output channels of the six convolutions (paper: 80, 160, 320, 640, 640, 768).
    feature_dim
        Width of ``f_rep`` (paper: 2560).
    image_size
        Side of the square input images (32).
    in_channels
        Input channels (3).
    dropout
        Dropout after the feature layer (0.5).
    """

    def __init__(
        self,
        channels: Sequence[int] = PAPER_BIG_CHANNELS,
        feature_dim: int = 2560,
        *,
        image_size: int = 32,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        n_pooled = min(5, len(channels))
        _check(channels, image_size, n_pooled)
        self.trunk = _conv_trunk(in_channels, channels, n_pooled)
        flat = channels[-1] * (image_size // 2**n_pooled) ** 2
        self.fc = nn.Linear(flat, feature_dim)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.fc(self.trunk(x).flatten(1))))


class SmallCNN(nn.Module):
    """The paper's target CNN trunk up to its 512-d features (REFINE's ``h``; NoTrans adds a linear head).

    Parameters
    ----------
    channels
        Output channels of the convolutions, each followed by ReLU and 2x2 max-pooling (paper: 32, 64, 64).
    hidden
        Width of the feature layer (paper: 512).
    image_size, in_channels, dropout
        As in :class:`BigCNN`.
    """

    def __init__(
        self,
        channels: Sequence[int] = PAPER_SMALL_CHANNELS,
        hidden: int = 512,
        *,
        image_size: int = 32,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check(channels, image_size, len(channels))
        self.trunk = _conv_trunk(in_channels, channels, len(channels))
        flat = channels[-1] * (image_size // 2 ** len(channels)) ** 2
        self.fc = nn.Linear(flat, hidden)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.fc(self.trunk(x).flatten(1))))
