"""From expression to token sequences: gene matching, per-cell binning, subsampling, padding.

Every random draw comes from a generator seeded by ``random_state`` and the cell's own content (its
matched gene ids and values), so a cell's tokens do not depend on batching, on the order or the number
of the other cells, or on the order of the genes. The official scGPT code uses unseeded global random
number generators here, so its embeddings differ run to run; this is the one deliberate deviation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from .config import N_BINS
from .vocab import GeneVocab

__all__ = [
    "CellTokenizer",
    "GeneMatch",
    "TokenizedCell",
    "bin_expression",
    "cell_rng",
    "match_genes",
    "pad_batch",
]

GeneSymbolCase = Literal["exact", "upper"]


@dataclass(frozen=True)
class GeneMatch:
    """Which columns of an expression matrix map to which vocabulary ids.

    Attributes
    ----------
    columns
        Column indices of the matched genes, ordered by token id (ties by column).
    token_ids
        Vocabulary id of each entry of ``columns``.
    unmatched
        Symbols (as given) of the columns without a vocabulary entry.
    n_total
        Number of columns.
    duplicated
        Symbols of matched columns sharing their token with another column.
    """

    columns: np.ndarray
    token_ids: np.ndarray
    unmatched: list[str]
    n_total: int
    duplicated: list[str]

    @property
    def n_matched(self) -> int:
        """Number of matched columns."""
        return len(self.columns)


def match_genes(symbols: Sequence[object], vocab: GeneVocab, case: GeneSymbolCase = "exact") -> GeneMatch:
    """Map gene symbols to vocabulary ids.

    Parameters
    ----------
    symbols
        One symbol per matrix column; non-string entries (e.g. missing values) never match.
    vocab
        The checkpoint vocabulary (human HGNC-style symbols).
    case
        ``"exact"``: case-sensitive lookup, as scGPT does. ``"upper"``: look up the upper-cased symbol,
        the common (lossy) convention for mouse data: it assumes the mouse gene and its upper-cased
        human namesake are orthologs, which holds for most but not all genes.

    Returns
    -------
    The matched columns and what could not be matched.
    """
    if case not in ("exact", "upper"):
        raise ValueError(f"case must be 'exact' or 'upper', got {case!r}.")
    columns, token_ids, unmatched = [], [], []
    for col, symbol in enumerate(symbols):
        key = symbol if isinstance(symbol, str) else None
        if key is not None and case == "upper":
            key = key.upper()
        token = vocab.gene_id(key) if key is not None else None
        if token is None:
            unmatched.append(str(symbol))
        else:
            columns.append(col)
            token_ids.append(token)
    columns_arr = np.asarray(columns, dtype=np.int64)
    tokens_arr = np.asarray(token_ids, dtype=np.int64)
    order = np.lexsort((columns_arr, tokens_arr))
    columns_arr, tokens_arr = columns_arr[order], tokens_arr[order]
    uniq, counts = np.unique(tokens_arr, return_counts=True)
    dup_tokens = set(uniq[counts > 1].tolist())
    duplicated = [str(symbols[c]) for c, t in zip(columns_arr, tokens_arr) if int(t) in dup_tokens]
    return GeneMatch(columns_arr, tokens_arr, unmatched, len(symbols), duplicated)


def cell_rng(random_state: int, gene_ids: np.ndarray, values: np.ndarray) -> np.random.Generator:
    """The generator of one cell: seeded by ``random_state`` and a digest of the cell's tokens and values.

    Parameters
    ----------
    random_state
        Non-negative seed chosen by the user.
    gene_ids
        The cell's token ids (int64).
    values
        The cell's expression values, in the same order (hashed as float64).
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(gene_ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    seq = np.random.SeedSequence([int(random_state), int.from_bytes(digest.digest(), "little")])
    return np.random.Generator(np.random.PCG64(seq))


def bin_expression(
    values: np.ndarray,
    rng: np.random.Generator | Callable[[], np.random.Generator],
    n_bins: int = N_BINS,
) -> np.ndarray:
    """Per-cell quantile binning of positive expression values into ``1 .. n_bins - 1``.

    The ``n_bins - 1`` edges are the quantiles ``0, 1/(n_bins-2), ..., 1`` (NumPy's default linear
    interpolation) of the cell's own values. A value's bin is the number of edges ``<=`` it, except when
    it equals ``k >= 2`` tied edges: then the bin is drawn uniformly from the ``k`` bins of the tied range.

    Parameters
    ----------
    values
        A cell's nonzero expression values (1-d, positive).
    rng
        Generator for the tie-break draws, or a zero-argument factory called only if a draw is needed.
    n_bins
        51 in scGPT.

    Returns
    -------
    int64 bins, same shape as ``values``.
    """
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins - 1))
    n_le = np.searchsorted(edges, values, side="right")  # edges <= value
    n_lt = np.searchsorted(edges, values, side="left")  # edges < value
    bins = n_le.astype(np.int64)
    width = n_le - n_lt
    tied = width > 1
    if tied.any():
        gen = rng if isinstance(rng, np.random.Generator) else rng()
        draws = gen.random(int(tied.sum()))
        bins[tied] = n_lt[tied] + 1 + np.floor(draws * width[tied]).astype(np.int64)
    return bins


class TokenizedCell(NamedTuple):
    """One cell as model input: ``<cls>`` first, then its genes."""

    gene_ids: np.ndarray  # int64
    values: np.ndarray  # float32


@dataclass(frozen=True)
class CellTokenizer:
    """Turns a cell's matched, nonzero genes into a token sequence of at most ``max_length``.

    Parameters
    ----------
    cls_id
        Id of ``<cls>``.
    pad_value
        Value paired with ``<cls>`` (and with padding).
    max_length
        Longest sequence, ``<cls>`` included; longer cells keep a random ``max_length - 1`` genes
        (drawn without replacement after binning, as scGPT does).
    random_state
        Seed for the tie-break and subsampling draws.
    n_bins
        Number of bins (51 in scGPT).
    """

    cls_id: int
    pad_value: float
    max_length: int
    random_state: int = 0
    n_bins: int = N_BINS

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 (<cls> plus one gene), got {self.max_length}.")

    def __call__(self, gene_ids: np.ndarray, values: np.ndarray) -> TokenizedCell:
        """Tokenize one cell.

        Parameters
        ----------
        gene_ids
            Token ids of the cell's expressed (nonzero) matched genes.
        values
            Their expression values (positive, finite).
        """
        gene_ids = np.asarray(gene_ids, dtype=np.int64)
        values = np.asarray(values)
        rng: list[np.random.Generator] = []

        def get_rng() -> np.random.Generator:
            if not rng:
                rng.append(cell_rng(self.random_state, gene_ids, values))
            return rng[0]

        bins = bin_expression(values, get_rng, self.n_bins)
        keep = self.max_length - 1
        if len(gene_ids) > keep:
            chosen = np.sort(get_rng().choice(len(gene_ids), size=keep, replace=False))
            gene_ids, bins = gene_ids[chosen], bins[chosen]
        ids = np.empty(len(gene_ids) + 1, dtype=np.int64)
        ids[0], ids[1:] = self.cls_id, gene_ids
        vals = np.empty(len(gene_ids) + 1, dtype=np.float32)
        vals[0], vals[1:] = self.pad_value, bins
        return TokenizedCell(ids, vals)


def pad_batch(
    cells: Sequence[TokenizedCell], pad_id: int, pad_value: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad cells to the longest one.

    Parameters
    ----------
    cells
        Tokenized cells.
    pad_id, pad_value
        Token and value at padding positions.

    Returns
    -------
    ``gene_ids`` (int64), ``values`` (float32) and ``padding_mask`` (bool, ``True`` at padding), each of
    shape ``(len(cells), longest)``.
    """
    length = max(len(c.gene_ids) for c in cells)
    ids = np.full((len(cells), length), pad_id, dtype=np.int64)
    vals = np.full((len(cells), length), pad_value, dtype=np.float32)
    mask = np.ones((len(cells), length), dtype=bool)
    for i, cell in enumerate(cells):
        n = len(cell.gene_ids)
        ids[i, :n], vals[i, :n], mask[i, :n] = cell.gene_ids, cell.values, False
    return ids, vals, mask
