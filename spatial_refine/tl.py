"""Tools (``sr.tl``): one-call functions that compute and store results in an AnnData."""

from spatial_refine.scgpt._anndata import scgpt_embed

__all__ = ["scgpt_embed"]
