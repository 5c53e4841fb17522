"""Streaming embedding driver: read rows in chunks, tokenize, batch by length, run the encoder.

Memory is bounded by ``chunk_size`` and ``batch_size``, never by the number of cells (besides the
``(n_cells, embsize)`` result): the matrix is never densified and may be an on-disk (backed) array.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .._device import resolve_device
from .model import ScGPTEncoder
from .tokenize import CellTokenizer, TokenizedCell, pad_batch

__all__ = [
    "EmbeddingResult",
    "embed_matrix",
    "iter_row_blocks",
    "resolve_device",
    "resolve_precision",
    "scan_expression",
]

Precision = Literal["auto", "fp32", "fp16", "bf16"]
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """Effective precision: ``"auto"`` is fp16 autocast on CUDA (as scGPT does) and fp32 elsewhere.

    Parameters
    ----------
    precision
        ``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"``; mixed precision is CUDA only.
    device
        The resolved device.
    """
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {precision!r}.")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(
            f"precision={precision!r} (mixed precision) is used on CUDA only; use 'fp32' on {device}."
        )
    return precision


#: Dense rows are read in slices of about this many values, so a dense chunk never sits in memory whole.
_DENSE_SLICE_VALUES = 2**23


def _dense_rows(X: Any, start: int, stop: int, columns: np.ndarray) -> sp.csr_matrix:
    step = max(1, _DENSE_SLICE_VALUES // max(X.shape[1], 1))
    parts = []
    for a in range(start, stop, step):
        rows = X[a : min(a + step, stop)]
        if hasattr(rows, "compute"):  # dask
            rows = rows.compute()
        parts.append(sp.csr_matrix(np.asarray(rows)[:, columns]))
    return sp.csr_matrix(sp.vstack(parts, format="csr"))


def iter_row_blocks(X: Any, columns: np.ndarray, chunk_size: int) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Yield ``(first_row, block)`` with ``block`` a CSR matrix of ``chunk_size`` rows x ``columns``.

    Parameters
    ----------
    X
        Cells x genes: NumPy array, SciPy sparse matrix, h5py dataset or AnnData backed sparse dataset
        (anything whose ``X[start:stop]`` gives rows).
    columns
        Columns to keep, in output order.
    chunk_size
        Rows read at once.
    """
    n_rows = X.shape[0]
    if sp.issparse(X) and X.format != "csr":
        # In-memory non-CSR: slicing its rows repeatedly would be quadratic; convert the used part once.
        X, columns = X[:, columns].tocsr(), np.arange(len(columns))
    sparse_rows = sp.issparse(X) or hasattr(X, "format")  # SciPy, or an AnnData backed sparse dataset
    for start in range(0, n_rows, chunk_size):
        stop = min(start + chunk_size, n_rows)
        if sparse_rows:
            block = sp.csr_matrix(X[start:stop][:, columns])
        else:
            block = _dense_rows(X, start, stop, columns)
        block.sort_indices()
        yield start, block


def _row_ids(block: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))


def scan_expression(
    X: Any,
    columns: np.ndarray,
    *,
    chunk_size: int = 2048,
    name: str = "X",
    row_names: Sequence[str] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Validate the used columns (finite, non-negative) and count each cell's expressed genes.

    Parameters
    ----------
    X
        Cells x genes matrix (see :func:`iter_row_blocks`).
    columns
        The matched columns.
    chunk_size
        Rows read at once.
    name
        How to call the matrix in error messages (e.g. ``"adata.layers['counts']"``).
    row_names
        Cell names for error messages.
    progress
        Show a progress bar.

    Returns
    -------
    Number of nonzero matched genes per cell (int64).
    """
    counts = np.zeros(X.shape[0], dtype=np.int64)
    bar = tqdm(total=X.shape[0], unit="cell", desc="scGPT input check", disable=not progress, leave=False)
    for start, block in iter_row_blocks(X, columns, chunk_size):
        bar.update(block.shape[0])
        data = block.data
        for bad, what, fix in (
            (~np.isfinite(data), "NaN or infinite", "remove or fill them (e.g. with 0) first"),
            (
                data < 0,
                "negative",
                "scGPT bins non-negative expression: pass raw counts or "
                "normalised/log1p values (layer=...), not scaled or centred data",
            ),
        ):
            if bad.any():
                row = start + int(_row_ids(block)[bad][0])
                cell = f"{row_names[row]!r} (row {row})" if row_names is not None else f"row {row}"
                raise ValueError(
                    f"{name} holds {what} values in the genes used for scGPT (first in cell {cell}); {fix}."
                )
        counts[start : start + block.shape[0]] = np.bincount(
            _row_ids(block)[data != 0], minlength=block.shape[0]
        )
    bar.close()
    return counts


@dataclass
class EmbeddingResult:
    """Output of :func:`embed_matrix`.

    Attributes
    ----------
    embeddings
        ``(n_cells, embsize)`` float32, rows L2-normalised, in the input order.
    n_genes
        Expressed matched genes per cell before subsampling (0: the cell was embedded as ``<cls>`` alone).
    n_tokens
        Real tokens fed to the model (``<cls>`` included).
    n_positions
        Positions computed, padding included (``n_positions / n_tokens - 1`` is the padding overhead).
    """

    embeddings: np.ndarray
    n_genes: np.ndarray
    n_tokens: int
    n_positions: int


def _tokenize_block(
    block: sp.csr_matrix, token_ids: np.ndarray, tokenizer: CellTokenizer
) -> list[TokenizedCell]:
    cells = []
    indptr, indices, data = block.indptr, block.indices, block.data.astype(np.float32, copy=False)
    for i in range(block.shape[0]):
        row = slice(indptr[i], indptr[i + 1])
        vals = data[row]
        nonzero = vals != 0
        cells.append(tokenizer(token_ids[indices[row][nonzero]], vals[nonzero]))
    return cells


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST[precision])


def embed_matrix(
    model: ScGPTEncoder,
    X: Any,
    columns: np.ndarray,
    token_ids: np.ndarray,
    tokenizer: CellTokenizer,
    *,
    pad_id: int,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    length_bucketing: bool = True,
    chunk_size: int | None = None,
    n_genes: np.ndarray | None = None,
    progress: bool = True,
) -> EmbeddingResult:
    """Embed every row of a cells x genes matrix with a frozen scGPT encoder.

    Rows are read ``chunk_size`` at a time. With ``length_bucketing`` the cells of a chunk are sorted by
    length (longest first), cut into batches of similar length, and the results put back in input
    order; without it, batches follow the input order and are padded to their longest cell (scGPT's
    behaviour). Each cell's tokens are independent of batching, so both give the same embeddings.

    Parameters
    ----------
    model
        The encoder; it is moved to ``device``.
    X
        Cells x genes (see :func:`iter_row_blocks`); finite and non-negative in ``columns``.
    columns, token_ids
        Matched columns and their vocabulary ids (:class:`~spatial_refine.scgpt.tokenize.GeneMatch`).
    tokenizer
        Turns a cell's genes and values into tokens.
    pad_id
        Id of the padding token.
    batch_size
        Cells per forward pass.
    device
        See :func:`resolve_device`.
    precision
        See :func:`resolve_precision`.
    length_bucketing
        Batch cells of similar length together (less padding).
    chunk_size
        Cells read from ``X`` at once; default ``32 * batch_size``.
    n_genes
        Result of a previous :func:`scan_expression`; scanned (and validated) here when ``None``.
    progress
        Show a progress bar.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    chunk_size = chunk_size or 32 * batch_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if n_genes is None:
        n_genes = scan_expression(X, columns, chunk_size=chunk_size)
    n_rows = X.shape[0]
    out = np.empty((n_rows, model.config.embsize), dtype=np.float32)
    model = model.to(dev).eval()
    n_tokens = n_positions = 0
    with (
        torch.inference_mode(),
        tqdm(total=n_rows, unit="cell", desc="scGPT embedding", disable=not progress) as bar,
    ):
        for start, block in iter_row_blocks(X, columns, chunk_size):
            cells = _tokenize_block(block, token_ids, tokenizer)
            lengths = np.fromiter((len(c.gene_ids) for c in cells), dtype=np.int64, count=len(cells))
            order = np.argsort(-lengths, kind="stable") if length_bucketing else np.arange(len(cells))
            for b in range(0, len(cells), batch_size):
                idx = order[b : b + batch_size]
                ids, vals, mask = pad_batch([cells[i] for i in idx], pad_id, tokenizer.pad_value)
                with _autocast(dev, prec):
                    emb = model(
                        torch.from_numpy(ids).to(dev),
                        torch.from_numpy(vals).to(dev),
                        torch.from_numpy(mask).to(dev),
                    )
                out[start + idx] = emb.float().cpu().numpy()
                n_tokens += int(lengths[idx].sum())
                n_positions += ids.size
                bar.update(len(idx))
    return EmbeddingResult(out, n_genes, n_tokens, n_positions)
