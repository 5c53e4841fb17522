"""Tools: one-call functions on AnnData (scanpy style)."""

from ._annotate import annotate, refine

__all__ = ["annotate", "refine"]
