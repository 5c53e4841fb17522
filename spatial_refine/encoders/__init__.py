"""Residual encoders ``h(x)``: trainable networks on the raw target input.

Each encoder exposes ``out_dim`` (the width of ``h(x)``). Graph encoders take ``(x, edge_index)``.
"""

from .gnn import CONV_TYPES, GNNEncoder
from .mlp import MLPEncoder

__all__ = ["CONV_TYPES", "GNNEncoder", "MLPEncoder"]
