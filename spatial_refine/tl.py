"""Tools: scanpy-style one-call functions (``sr.tl.*``)."""

from .theory._anndata import transferability

__all__ = ["transferability"]
