from spatial_refine.scgpt._anndata import scgpt_embed

__all__ = ["scgpt_embed"]
