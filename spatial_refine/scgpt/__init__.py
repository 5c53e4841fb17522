"""Frozen scGPT embeddings from official checkpoints, without the ``scgpt`` package.

A clean re-implementation of scGPT's embedding forward pass on modern PyTorch (CPU, CUDA or MPS; no
flash-attn): safe loading of ``best_model.pt`` (``weights_only=True``, every key style, strict checks),
the official tokenization with seeded randomness, and a streaming, length-bucketed driver.
Importing this subpackage imports torch; it knows nothing about REFINE.
"""

from ._anndata import scgpt_embed
from .checkpoint import (
    CheckpointError,
    embedding_path_shapes,
    extract_embedding_state,
    load_state_dict,
    normalize_keys,
)
from .config import CLS_TOKEN, N_BINS, ScGPTConfig
from .embed import EmbeddingResult, embed_matrix, resolve_device, resolve_precision, scan_expression
from .model import ScGPTEncoder
from .pretrained import CheckpointFiles, PretrainedScGPT, file_sha256, load_pretrained
from .tokenize import (
    CellTokenizer,
    GeneMatch,
    TokenizedCell,
    bin_expression,
    cell_rng,
    match_genes,
    pad_batch,
)
from .vocab import GeneVocab
from .writer import random_state_dict, to_key_style, write_random_checkpoint

__all__ = [
    "CLS_TOKEN",
    "N_BINS",
    "CellTokenizer",
    "CheckpointError",
    "CheckpointFiles",
    "EmbeddingResult",
    "GeneMatch",
    "GeneVocab",
    "PretrainedScGPT",
    "ScGPTConfig",
    "ScGPTEncoder",
    "TokenizedCell",
    "bin_expression",
    "cell_rng",
    "embed_matrix",
    "embedding_path_shapes",
    "extract_embedding_state",
    "file_sha256",
    "load_pretrained",
    "load_state_dict",
    "match_genes",
    "normalize_keys",
    "pad_batch",
    "random_state_dict",
    "resolve_device",
    "resolve_precision",
    "scan_expression",
    "scgpt_embed",
    "to_key_style",
    "write_random_checkpoint",
]
