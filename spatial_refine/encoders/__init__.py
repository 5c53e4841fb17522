"""Residual encoders ``h(x)``: trainable networks on the raw target input.

Each encoder exposes ``out_dim`` (the width of ``h(x)``). Graph encoders take ``(x, edge_index)``.
"""

from .cnn import BigCNN, ResNet, SmallCNN
from .gnn import CONV_TYPES, GNNEncoder
from .mlp import MLPEncoder
from .sign import SIGNEncoder
from .text import HashingTokenizer, TextSourceFeatures, TextTransformer

__all__ = [
    "CONV_TYPES",
    "BigCNN",
    "GNNEncoder",
    "HashingTokenizer",
    "MLPEncoder",
    "ResNet",
    "SIGNEncoder",
    "SmallCNN",
    "TextSourceFeatures",
    "TextTransformer",
]
