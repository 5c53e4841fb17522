"""Convolutional networks of the REFINE vision protocol.

- :class:`BigCNN`: the paper's source feature extractor (six 3x3 convolutions 3-80-160-320-640-640-768,
  ReLU, 2x2 max-pooling after the first five, then ``Linear(768 -> 2560)``, ReLU, dropout 0.5). Its output
  is ``f_rep``; the source model is ``Linear(2560 -> C)`` on top.
- :class:`SmallCNN`: the target / no-transfer trunk (convolutions 3-32-64-64 with max-pooling after each,
  then ``Linear(1024 -> 512)``, ReLU, dropout 0.5); REFINE's residual encoder ``h``.

- :class:`ResNet`: ResNet-18 / ResNet-10 trunks of the paper's Clipart->Sketch task.

All take ``(n, 3, 32, 32)`` images and expose ``out_dim``. Widths are parameters so that the quick
benchmark protocol can use narrow versions of the same architectures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PAPER_BIG_CHANNELS", "PAPER_SMALL_CHANNELS", "BigCNN", "ResNet", "SmallCNN"]

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


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet trunk (3x3 stem, four stages of basic blocks, global average pooling).

    ``blocks=(2, 2, 2, 2)`` is ResNet-18 (the paper's Clipart->Sketch source), ``(1, 1, 1, 1)`` ResNet-10
    (its students). The output is the pooled feature vector, ``out_dim = 8 * width``.

    Parameters
    ----------
    blocks
        Basic blocks per stage.
    width
        Channels of the first stage (64 in the standard ResNets); stages double it.
    in_channels
        Input channels (3).
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), width: int = 64, *, in_channels: int = 3) -> None:
        super().__init__()
        if len(blocks) != 4 or any(b < 1 for b in blocks) or width < 1:
            raise ValueError(f"need four positive block counts and a positive width, got {tuple(blocks)}, {width}.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        channels = width
        for i, n in enumerate(blocks):
            out = width * 2**i
            for j in range(n):
                stages.append(_BasicBlock(channels, out, 2 if (j == 0 and i > 0) else 1))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)
