"""Residual encoders ``h(x)``: trainable networks on the raw target input.

Each encoder exposes ``out_dim`` (the width of ``h(x)``). Graph encoders take ``(x, edge_index)``.
"""

from .cnn import BigCNN, ResNet, SmallCNN
from .mlp import MLPEncoder
from .text import HashingTokenizer, TextSourceFeatures, TextTransformer

__all__ = ["BigCNN", "HashingTokenizer", "MLPEncoder", "ResNet", "SmallCNN", "TextSourceFeatures", "TextTransformer"]
