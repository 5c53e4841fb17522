"""``sr.tl.scgpt_embed``: frozen scGPT cell embeddings for an AnnData, from an official checkpoint folder."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .config import N_BINS
from .embed import Precision, embed_matrix, resolve_device, resolve_precision, scan_expression
from .pretrained import CheckpointFiles, PretrainedScGPT, load_pretrained
from .tokenize import CellTokenizer, GeneMatch, GeneSymbolCase, match_genes
from .vocab import GeneVocab

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from anndata import AnnData

__all__ = ["scgpt_embed"]

#: Below this fraction of matched genes a warning is issued.
MIN_MATCHED_FRACTION = 0.5
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")


def scgpt_embed(
    adata: AnnData,
    model_dir: str | os.PathLike[str],
    *,
    gene_key: str | None = None,
    layer: str | None = None,
    gene_symbol_case: GeneSymbolCase = "exact",
    key_added: str = "X_scGPT",
    batch_size: int = 64,
    max_length: int = 1200,
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    random_state: int = 0,
    length_bucketing: bool = True,
    chunk_size: int | None = None,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Frozen scGPT cell embeddings from an official checkpoint folder, without the ``scgpt`` package.

    Computes what scGPT's ``embed_data`` computes (exact gene matching, per-cell 51-bin quantile binning
    with random tie-breaks, ``<cls>`` first, random subsampling to ``max_length``, post-norm transformer,
    ``<cls>`` output, L2 normalisation) with one deliberate deviation: every random draw comes from a
    generator seeded by ``random_state`` and the cell's own genes and values, so the result is
    reproducible and does not depend on ``batch_size``, on the cell order or on the other cells (scGPT's
    own draws are unseeded). The matrix is streamed in chunks, never densified; backed AnnData works.

    The expression is used as given, like scGPT does: raw counts or normalised/log1p values (official
    tutorials restrict to 1,200-3,000 highly variable genes; the genes you keep become the tokens).

    Parameters
    ----------
    adata
        Cells x genes; may be backed (``anndata.read_h5ad(path, backed="r")``).
    model_dir
        Folder of an official checkpoint holding ``args.json``, ``vocab.json`` and ``best_model.pt``
        (whole-human or an organ / continual-pretrained model).
    gene_key
        Column of ``adata.var`` with gene symbols; ``None`` uses ``adata.var_names``.
    layer
        Layer holding the expression; ``None`` uses ``adata.X``.
    gene_symbol_case
        ``"exact"``: case-sensitive lookup, as scGPT does. ``"upper"``: look up upper-cased symbols, the
        usual convention for mouse data with the human vocabulary. It is lossy: it assumes a mouse gene
        and its upper-cased human namesake are orthologs, which holds for most genes but not all (340 of
        the 351 genes of the seqFISH mouse embryo panel match this way, none exactly). The numbers of
        matched genes are logged and stored in ``uns[key_added]["genes"]``.
    key_added
        Key of the embedding in ``obsm`` and of the provenance in ``uns``.
    batch_size
        Cells per forward pass.
    max_length
        Longest token sequence, ``<cls>`` included (1,200 in scGPT); cells with more expressed genes keep
        a random subset of ``max_length - 1``.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision
        ``"auto"`` (fp16 autocast on CUDA as in scGPT, fp32 elsewhere), ``"fp32"``, ``"fp16"`` or
        ``"bf16"``; mixed precision is CUDA only.
    random_state
        Seed of the binning tie-breaks and of the subsampling.
    length_bucketing
        Batch cells of similar length (sorted within chunks of ``chunk_size`` cells, order restored), so
        little compute goes to padding. ``False`` pads batches of consecutive cells to their longest.
    chunk_size
        Cells read from the matrix at once; default ``32 * batch_size``. Memory grows with it, not with
        the number of cells.
    progress
        Show a progress bar.
    copy
        Return a new AnnData instead of writing into ``adata`` (not for backed AnnData).

    Returns
    -------
    ``None``, or a new AnnData when ``copy=True``. Writes:

    ``obsm[key_added]``
        ``(n_obs, embsize)`` float32 L2-normalised ``<cls>`` embeddings.
    ``uns[key_added]``
        ``params`` (every option, resolved device and precision, the seed), ``checkpoint`` (sha256 of
        ``best_model.pt``, sizes), ``genes`` (``n_matched``, ``n_total``, ``unmatched``),
        ``cells_without_genes`` (names of cells with no expressed matched gene: they are embedded as the
        ``<cls>``-only sequence, which is the same vector for all of them) and ``n_cells_subsampled``.

    Nothing else of ``adata`` is modified.

    Examples
    --------
    Download the whole-human checkpoint folder (scGPT model zoo on Google Drive, folder id
    ``1oWh_-ZRdhtoGQ2Fw24HP41FgLoomVo-y``, or a Hugging Face hub mirror), then:

    >>> import scanpy as sc
    >>> import spatial_refine as sr
    >>> adata = sc.read_h5ad("mouse_slice.h5ad")  # doctest: +SKIP
    >>> sr.tl.scgpt_embed(adata, model_dir="path/to/scGPT_human", gene_symbol_case="upper")  # doctest: +SKIP
    >>> adata.obsm["X_scGPT"].shape  # doctest: +SKIP
    (n_obs, 512)
    >>> adata.uns["X_scGPT"]["genes"]["n_matched"]  # doctest: +SKIP
    """
    _check_options(key_added, batch_size, max_length, random_state, gene_symbol_case, chunk_size)
    if copy and adata.isbacked:
        raise ValueError(
            "copy=True is not possible for a backed AnnData (it would load the whole matrix); use "
            "copy=False: only obsm and uns are written, in memory, the file is not touched."
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"adata is empty ({adata.n_obs} cells x {adata.n_vars} genes); nothing to embed.")
    symbols = _gene_symbols(adata, gene_key)
    X, where = _expression(adata, layer)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)

    files = CheckpointFiles.from_dir(model_dir)
    config = files.read_config()
    vocab = files.read_vocab(config)
    match = match_genes(symbols, vocab, gene_symbol_case)
    _report_matching(match, symbols, vocab, gene_symbol_case, gene_key, adata)

    chunk = chunk_size or 32 * batch_size
    if getattr(X, "format", None) == "csc" and not sp.issparse(X):
        warnings.warn(
            f"{where} is a backed CSC matrix: reading it by rows is slow. Store it as CSR for speed.",
            UserWarning,
            stacklevel=2,
        )
    n_genes = scan_expression(
        X, match.columns, chunk_size=chunk, name=where, row_names=adata.obs_names, progress=progress
    )
    empty = np.flatnonzero(n_genes == 0)
    if len(empty):
        warnings.warn(
            f"{len(empty)} cell(s) express none of the matched genes; they are embedded as the <cls>-only "
            f"sequence (the same vector for all). Their names are in adata.uns[{key_added!r}]"
            "['cells_without_genes'].",
            UserWarning,
            stacklevel=2,
        )

    pretrained = load_pretrained(files.directory)
    tokenizer = CellTokenizer(vocab.cls_id, config.pad_value, max_length, random_state)
    result = embed_matrix(
        pretrained.model, X, match.columns, match.token_ids, tokenizer,
        pad_id=vocab.pad_id, batch_size=batch_size, device=dev, precision=prec,
        length_bucketing=length_bucketing, chunk_size=chunk, n_genes=n_genes, progress=progress,
    )  # fmt: skip

    _log_info(
        f"scGPT: embedded {adata.n_obs} cells with {match.n_matched}/{match.n_total} genes; "
        f"padding overhead {result.n_positions / max(result.n_tokens, 1) - 1:.1%}; "
        f"stored in .obsm[{key_added!r}]"
    )

    provenance = _provenance(
        model_dir, files, pretrained, match, adata.obs_names[empty], n_genes,
        gene_key=gene_key, layer=layer, gene_symbol_case=gene_symbol_case, batch_size=batch_size,
        max_length=max_length, device=str(dev), precision=prec, random_state=random_state,
        length_bucketing=length_bucketing,
    )  # fmt: skip
    out = adata.copy() if copy else adata
    out.obsm[key_added] = result.embeddings
    out.uns[key_added] = provenance
    return out if copy else None


def _provenance(
    model_dir: str | os.PathLike[str],
    files: CheckpointFiles,
    pretrained: PretrainedScGPT,
    match: GeneMatch,
    cells_without_genes: pd.Index,
    n_genes: np.ndarray,
    **options: Any,
) -> dict[str, Any]:
    """``uns[key_added]``: options, checkpoint identity, gene matching, flagged cells (h5ad-writable)."""
    config = pretrained.config
    params = {
        "model_dir": str(Path(model_dir).expanduser().resolve()),
        "gene_key": options.pop("gene_key") or "var_names",
        "layer": options.pop("layer") or "X",
        **{k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()},
        "n_bins": N_BINS,
        "pooling": "cls",
    }
    return {
        "params": params,
        "checkpoint": {
            "file": files.weights.name,
            "sha256": pretrained.checkpoint_sha256,
            "embsize": config.embsize,
            "nlayers": config.nlayers,
            "nheads": config.nheads,
            "d_hid": config.d_hid,
            "n_tokens": len(pretrained.vocab),
        },
        "genes": {
            "n_matched": int(match.n_matched),
            "n_total": int(match.n_total),
            "unmatched": np.asarray(match.unmatched, dtype=object),
        },
        "cells_without_genes": np.asarray(cells_without_genes, dtype=object),
        "n_cells_subsampled": int((n_genes > params["max_length"] - 1).sum()),
    }


def _check_options(
    key_added: str,
    batch_size: int,
    max_length: int,
    random_state: int,
    gene_symbol_case: str,
    chunk_size: int | None,
) -> None:
    def is_int(x: Any) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not is_int(max_length) or max_length < 2:
        raise ValueError(
            f"max_length must be an integer >= 2 (<cls> plus at least one gene), got {max_length!r}; "
            "scGPT uses 1200."
        )
    if not is_int(random_state) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}.")
    if gene_symbol_case not in ("exact", "upper"):
        raise ValueError(
            f"gene_symbol_case must be 'exact' or 'upper' (mouse symbols), got {gene_symbol_case!r}."
        )
    if chunk_size is not None and (not is_int(chunk_size) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")


def _gene_symbols(adata: AnnData, gene_key: str | None) -> list[object]:
    if gene_key is None:
        return list(adata.var_names)
    if gene_key not in adata.var.columns:
        raise ValueError(
            f"gene_key={gene_key!r} is not a column of adata.var (columns: {list(adata.var.columns)}); "
            "pass the column holding gene symbols, or gene_key=None to use adata.var_names."
        )
    return [s if isinstance(s, str) else None for s in adata.var[gene_key].tolist()]


def _expression(adata: AnnData, layer: str | None) -> tuple[Any, str]:
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is None; pass layer= naming the layer that holds expression.")
        return adata.X, "adata.X"
    if layer not in adata.layers:
        raise ValueError(f"layer={layer!r} is not in adata.layers (layers: {list(adata.layers)}).")
    return adata.layers[layer], f"adata.layers[{layer!r}]"


def _matching_hint(
    symbols: list[object], vocab: GeneVocab, case: str, gene_key: str | None, adata: AnnData
) -> str:
    hints = []
    if case == "exact":
        n_upper = match_genes(symbols, vocab, "upper").n_matched
        if n_upper > match_genes(symbols, vocab, "exact").n_matched:
            hints.append(
                f"with gene_symbol_case='upper' (the convention for mouse symbols) {n_upper} genes match"
            )
    strings = [s for s in symbols[:200] if isinstance(s, str)]
    if strings and sum(bool(_ENSEMBL.match(s)) for s in strings) > len(strings) / 2:
        hints.append("the genes look like Ensembl ids; pass gene_key= naming a column of gene symbols")
    if gene_key is None:
        cols = [
            c
            for c in adata.var.columns
            if adata.var[c].dtype == object or str(adata.var[c].dtype) == "category"
        ]
        if cols:
            hints.append(f"a column of adata.var may hold symbols (gene_key=, one of {cols})")
    return ("Hint: " + "; ".join(hints) + ".") if hints else ""


def _report_matching(
    match: GeneMatch,
    symbols: list[object],
    vocab: GeneVocab,
    case: str,
    gene_key: str | None,
    adata: AnnData,
) -> None:
    source = f"adata.var[{gene_key!r}]" if gene_key is not None else "adata.var_names"
    if match.n_matched == 0:
        raise ValueError(
            f"None of the {match.n_total} genes of {source} is in the scGPT vocabulary (human gene "
            f"symbols, e.g. 'CD3E'; matching is case-sensitive). "
            + _matching_hint(symbols, vocab, case, gene_key, adata)
        )
    _log_info(f"scGPT: matched {match.n_matched}/{match.n_total} genes of {source} (case={case!r})")
    if match.n_matched < MIN_MATCHED_FRACTION * match.n_total:
        warnings.warn(
            f"Only {match.n_matched}/{match.n_total} genes of {source} are in the scGPT vocabulary; the "
            "others are ignored. " + _matching_hint(symbols, vocab, case, gene_key, adata),
            UserWarning,
            stacklevel=3,
        )
    if match.duplicated:
        warnings.warn(
            f"{len(match.duplicated)} columns share a vocabulary token with another column "
            f"({match.duplicated[:6]}...); each becomes its own token, as in scGPT.",
            UserWarning,
            stacklevel=3,
        )


def _log_info(message: str) -> None:
    from scanpy import logging as logg

    logg.info(message)
