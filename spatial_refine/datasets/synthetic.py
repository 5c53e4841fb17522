"""Synthetic spatial tissue: cells with types and niches whose composition depends on position.

Model, per slice:

- Positions: uniform in a square whose side gives one cell per 100 square units (cell spacing about 10,
  like micrometres).
- Niches (spatial domains): Voronoi regions of random seed points, each seed labelled with a niche, with
  the boundaries bent by a smooth random displacement field (a few random Fourier modes). Every niche owns
  at least one region; there are about ``n_cells / cells_per_region`` regions per slice.
- Cell types: drawn per cell from its niche's composition (Dirichlet, shared by all slices), so types mix
  inside every niche and a niche is recognised by the composition of a neighbourhood.
- Expression: Poisson counts with log-mean = gene baseline + cell-type program (strong marker genes) +
  niche program (weak) + slice effect + log library size. A cell's own expression therefore identifies its
  type, while its niche is predicted far better from its neighbours' types than from its own profile.

Everything is vectorised and generated in fixed-size chunks of cells (sparse CSR output), so memory grows
with the number of non-zeros and nothing is ever n x n. The result depends only on the parameters and
the seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["synthetic_tissue"]

_CHUNK = 1 << 16
_SPACING = 10.0
_N_MODES = 6


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _niche_layout(
    rng: np.random.Generator, n: int, n_niches: int, cells_per_region: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (n, 2) and niche labels (n,) for one slice."""
    from scipy.spatial import cKDTree

    side = _SPACING * np.sqrt(n)
    xy = rng.uniform(0.0, side, size=(n, 2))
    n_regions = max(n_niches, round(n / cells_per_region))
    seeds = rng.uniform(0.0, side, size=(n_regions, 2))
    seed_niche = rng.permutation(
        np.concatenate([np.arange(n_niches), rng.integers(0, n_niches, n_regions - n_niches)])
    )
    scale = side / np.sqrt(n_regions)  # typical region diameter
    freqs = rng.normal(0.0, 2.0 * np.pi / scale, size=(_N_MODES, 2))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(2, _N_MODES)).astype(np.float32)
    amp = 0.35 * scale / np.sqrt(_N_MODES)
    tree = cKDTree(seeds)
    niche = np.empty(n, dtype=np.int32)
    for start in range(0, n, _CHUNK):
        block = xy[start : start + _CHUNK]
        # (b, modes) projections without BLAS (slow for 2 columns); float32 trig is many times faster
        proj = (block[:, :1] * freqs[:, 0] + block[:, 1:] * freqs[:, 1]).astype(np.float32)
        shift = np.stack([np.sin(proj + phases[0]).sum(1), np.cos(proj + phases[1]).sum(1)], axis=1)
        warped = block + amp * shift
        niche[start : start + _CHUNK] = seed_niche[tree.query(warped, k=1, workers=-1)[1]]
    return xy, niche


def _guide_tables(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat CDFs and guide tables for drawing genes from each row of ``rates`` (rows: combinations).

    ``guide[c * G + j]`` is the flat position of the first gene of row ``c`` whose CDF exceeds ``j / G``,
    so a draw starts there and walks forward about one step on average (indexed search).
    """
    n_rows, n_genes = rates.shape
    cdf = np.cumsum(rates / rates.sum(axis=1, keepdims=True), axis=1)
    cdf[:, -1] = 1.0
    offsets = np.arange(n_rows)[:, None]
    grid = (np.arange(n_genes) / n_genes + offsets).ravel()
    guide = np.searchsorted((cdf + offsets).ravel(), grid, side="right")
    return cdf.ravel(), guide


def _draw_genes(
    u: np.ndarray, row: np.ndarray, cdf_flat: np.ndarray, guide: np.ndarray, n_genes: int
) -> np.ndarray:
    """Gene index of each draw: the first gene of its row whose CDF exceeds the uniform ``u``."""
    pos = guide[row * n_genes + (u * n_genes).astype(np.int64)]
    active = np.flatnonzero(cdf_flat[pos] <= u)
    while active.size:
        pos[active] += 1
        active = active[cdf_flat[pos[active]] <= u[active]]
    return pos - row * n_genes


def _sample_types(rng: np.random.Generator, niche: np.ndarray, composition: np.ndarray) -> np.ndarray:
    cum = np.cumsum(composition, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(niche.shape[0])
    out = np.empty(niche.shape[0], dtype=np.int32)
    for k in range(composition.shape[0]):
        idx = np.flatnonzero(niche == k)
        out[idx] = np.searchsorted(cum[k], u[idx], side="right")
    return out


def synthetic_tissue(
    n_cells: int = 2000,
    *,
    n_genes: int = 100,
    n_cell_types: int = 8,
    n_niches: int = 5,
    n_slices: int = 1,
    cells_per_region: int = 1500,
    composition_concentration: float = 0.5,
    n_markers: int = 5,
    type_effect: float = 2.0,
    n_niche_genes: int = 3,
    niche_effect: float = 0.4,
    slice_effect: float = 0.0,
    baseline_mean: float = 0.2,
    values: Literal["counts", "log"] = "counts",
    sparse: bool = True,
    random_state: int | None = 0,
) -> AnnData:
    """Simulate a spatial tissue with cell types and spatial niches.

    Parameters
    ----------
    n_cells
        Total number of cells (split evenly over slices). 1M cells take seconds.
    n_genes
        Number of genes; needs ``n_cell_types * n_markers + n_niches * n_niche_genes`` genes or more.
    n_cell_types
        Number of cell types (``obs["cell_type"]``).
    n_niches
        Number of niches (``obs["niche"]``), i.e. spatial domains with their own type composition.
    n_slices
        Number of slices (``obs["slice"]``), each with its own layout and coordinate frame; types, niches
        and their programs are shared.
    cells_per_region
        Average number of cells in one contiguous region; each niche appears as several regions.
    composition_concentration
        Dirichlet concentration of each niche's cell-type composition: small values give niches dominated
        by few types, large values give similar compositions (harder niches).
    n_markers
        Marker genes per cell type.
    type_effect
        Log fold change of a type's markers (the cell-type signal in a cell's own expression).
    n_niche_genes
        Genes up-regulated in each niche.
    niche_effect
        Log fold change of niche genes (kept weak: a niche is meant to be seen in the neighbourhood).
    slice_effect
        Standard deviation of a per-slice, per-gene log-scale batch effect (0: none).
    baseline_mean
        Geometric mean of the gene baseline expression (counts per cell); baselines vary by gene with a
        log-scale standard deviation of 1.
    values
        ``"counts"``: ``X`` holds Poisson counts. ``"log"``: ``X`` holds ``log1p`` of counts normalised to
        the median library size and ``layers["counts"]`` the counts.
    sparse
        ``X`` as CSR (default) or dense.
    random_state
        Seed; the same seed and parameters give the same tissue.

    Returns
    -------
    AnnData with ``X`` (float32), ``obsm["spatial"]`` (x, y), categorical ``obs["cell_type"]``,
    ``obs["niche"]`` and ``obs["slice"]``, ``var["role"]`` ("marker:<type>", "niche:<niche>" or
    "background") and ``uns["synthetic_tissue"]`` with the parameters and the niche compositions
    (``niche_composition``, niches x types).
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    n_cells = _check_int("n_cells", n_cells, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_cell_types = _check_int("n_cell_types", n_cell_types, 1)
    n_niches = _check_int("n_niches", n_niches, 1)
    n_slices = _check_int("n_slices", n_slices, 1)
    cells_per_region = _check_int("cells_per_region", cells_per_region, 1)
    n_markers = _check_int("n_markers", n_markers, 0)
    n_niche_genes = _check_int("n_niche_genes", n_niche_genes, 0)
    if n_slices > n_cells:
        raise ValueError(f"n_slices ({n_slices}) cannot exceed n_cells ({n_cells})")
    needed = n_cell_types * n_markers + n_niches * n_niche_genes
    if needed > n_genes:
        raise ValueError(
            f"n_genes={n_genes} is too small for {n_cell_types} types x {n_markers} markers + {n_niches} "
            f"niches x {n_niche_genes} niche genes = {needed} genes; raise n_genes or lower n_markers / "
            "n_niche_genes."
        )
    if values not in ("counts", "log"):
        raise ValueError(f"values must be 'counts' or 'log', got {values!r}")
    for name, val in (
        ("composition_concentration", composition_concentration),
        ("baseline_mean", baseline_mean),
    ):
        if not np.isfinite(val) or val <= 0:
            raise ValueError(f"{name} must be a positive number, got {val!r}")
    for name, val in (
        ("type_effect", type_effect),
        ("niche_effect", niche_effect),
        ("slice_effect", slice_effect),
    ):
        if not np.isfinite(val):
            raise ValueError(f"{name} must be finite, got {val!r}")
    if slice_effect < 0:
        raise ValueError(f"slice_effect is a standard deviation and must be >= 0, got {slice_effect!r}")

    seq = np.random.SeedSequence(random_state)
    param_seq, layout_seq, type_seq, expr_seq = seq.spawn(4)
    prng = np.random.default_rng(param_seq)

    # Shared biology: programs and compositions.
    genes = prng.permutation(n_genes)
    role = np.full(n_genes, "background", dtype=object)
    type_prog = np.zeros((n_cell_types, n_genes))
    niche_prog = np.zeros((n_niches, n_genes))
    pos = 0
    for t in range(n_cell_types):
        g = genes[pos : pos + n_markers]
        type_prog[t, g] = type_effect
        role[g] = f"marker:type{t}"
        pos += n_markers
    for k in range(n_niches):
        g = genes[pos : pos + n_niche_genes]
        niche_prog[k, g] = niche_effect
        role[g] = f"niche:niche{k}"
        pos += n_niche_genes
    log_base = np.log(baseline_mean) + prng.normal(0.0, 1.0, n_genes)
    composition = prng.dirichlet(np.full(n_cell_types, composition_concentration), size=n_niches)
    slice_prog = (
        prng.normal(0.0, slice_effect, size=(n_slices, n_genes))
        if slice_effect > 0
        else np.zeros((n_slices, n_genes))
    )

    # Layout per slice.
    sizes = np.full(n_slices, n_cells // n_slices)
    sizes[: n_cells % n_slices] += 1
    xy_parts, niche_parts = [], []
    for s, lseq in enumerate(layout_seq.spawn(n_slices)):
        xy, niche = _niche_layout(np.random.default_rng(lseq), int(sizes[s]), n_niches, cells_per_region)
        xy_parts.append(xy)
        niche_parts.append(niche)
    xy = np.concatenate(xy_parts)
    niche = np.concatenate(niche_parts)
    slice_id = np.repeat(np.arange(n_slices, dtype=np.int32), sizes)
    cell_type = _sample_types(np.random.default_rng(type_seq), niche, composition)

    # Expression in chunks, each with its own child seed (independent of everything but the cell index).
    # Independent Poisson counts per gene are drawn as a Poisson total per cell split multinomially over
    # genes (the same distribution, several times faster): the gene probabilities depend only on the
    # cell's (type, niche, slice) combination, so all draws use one set of guide tables.
    combo = (cell_type.astype(np.int64) * n_niches + niche) * n_slices + slice_id
    n_combos = n_cell_types * n_niches * n_slices
    t_idx, k_idx, s_idx = np.unravel_index(np.arange(n_combos), (n_cell_types, n_niches, n_slices))
    rates = np.exp(log_base + type_prog[t_idx] + niche_prog[k_idx] + slice_prog[s_idx])  # (combos, genes)
    totals_rate = rates.sum(axis=1)
    cdf_flat, guide = _guide_tables(rates)

    n_chunks = -(-n_cells // _CHUNK)
    data_parts, index_parts, nnz_rows, dense_parts = [], [], [], []
    for c, cseq in enumerate(expr_seq.spawn(n_chunks)):
        crng = np.random.default_rng(cseq)
        lo, hi = c * _CHUNK, min((c + 1) * _CHUNK, n_cells)
        b = hi - lo
        cc = combo[lo:hi]
        library = np.exp(crng.normal(0.0, 0.25, size=b))
        n_draws = crng.poisson(library * totals_rate[cc])
        cell_of_draw = np.repeat(np.arange(b, dtype=np.int64), n_draws)
        gene = _draw_genes(crng.random(cell_of_draw.size), cc[cell_of_draw], cdf_flat, guide, n_genes)
        flat = np.bincount(cell_of_draw * n_genes + gene, minlength=b * n_genes)
        del cell_of_draw, gene
        if sparse:
            nz = np.flatnonzero(flat)
            data_parts.append(flat[nz].astype(np.float32))
            index_parts.append((nz % n_genes).astype(np.int32))
            nnz_rows.append(np.bincount(nz // n_genes, minlength=b))
        else:
            dense_parts.append(flat.reshape(b, n_genes).astype(np.float32))
        del flat

    if sparse:
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(np.concatenate(nnz_rows), out=indptr[1:])
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        counts_x = sp.csr_matrix(
            (np.concatenate(data_parts), np.concatenate(index_parts), indptr), shape=(n_cells, n_genes)
        )
        del data_parts, index_parts
    else:
        counts_x = np.concatenate(dense_parts)
        del dense_parts

    layers = {}
    x = counts_x
    if values == "log":
        totals = np.asarray(counts_x.sum(axis=1)).ravel()
        target = float(np.median(totals[totals > 0])) if np.any(totals > 0) else 1.0
        scale = np.divide(target, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
        if sparse:
            x = counts_x.copy()
            x.data = np.log1p(x.data * np.repeat(scale, np.diff(x.indptr)).astype(np.float32))
        else:
            x = np.log1p(counts_x * scale[:, None].astype(np.float32))
        layers["counts"] = counts_x

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, [f"type{t}" for t in range(n_cell_types)]),
            "niche": pd.Categorical.from_codes(niche, [f"niche{k}" for k in range(n_niches)]),
            "slice": pd.Categorical.from_codes(slice_id, [f"slice{s}" for s in range(n_slices)]),
        },
        index=pd.Index(np.arange(n_cells).astype(str), name="cell"),
    )
    var = pd.DataFrame(
        {"role": pd.Categorical(role.astype(str))}, index=[f"gene{g:04d}" for g in range(n_genes)]
    )
    adata = ad.AnnData(X=x, obs=obs, var=var, layers=layers or None, obsm={"spatial": xy})
    adata.uns["synthetic_tissue"] = {
        "params": {
            "n_cells": n_cells,
            "n_genes": n_genes,
            "n_cell_types": n_cell_types,
            "n_niches": n_niches,
            "n_slices": n_slices,
            "cells_per_region": cells_per_region,
            "composition_concentration": float(composition_concentration),
            "n_markers": n_markers,
            "type_effect": float(type_effect),
            "n_niche_genes": n_niche_genes,
            "niche_effect": float(niche_effect),
            "slice_effect": float(slice_effect),
            "baseline_mean": float(baseline_mean),
            "values": values,
            "sparse": bool(sparse),
            **({"random_state": random_state} if random_state is not None else {}),
        },
        "niche_composition": composition,
    }
    return adata
