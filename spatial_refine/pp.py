"""Preprocessing: the spatial neighbour graph (through squidpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ._constants import SPATIAL_KEY

__all__ = ["spatial_neighbors"]


def _check_coordinates(adata: AnnData, spatial_key: str) -> None:
    if spatial_key not in adata.obsm:
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] is missing: store the (n_cells, 2) cell coordinates there "
            "(or pass spatial_key=), or build the graph yourself in obsp."
        )
    coords = np.asarray(adata.obsm[spatial_key])
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.issubdtype(coords.dtype, np.number):
        raise ValueError(f"adata.obsm[{spatial_key!r}] must be a numeric (n_cells, 2 or 3) array, got {coords.shape}.")
    if not np.isfinite(coords).all():
        raise ValueError(f"adata.obsm[{spatial_key!r}] has NaN or infinite coordinates: drop or fix those cells.")


def spatial_neighbors(
    adata: AnnData,
    *,
    n_neighs: int = 10,
    radius: float | None = None,
    delaunay: bool = False,
    library_key: str | None = None,
    spatial_key: str = SPATIAL_KEY,
    key_added: str = "spatial",
    copy: bool = False,
) -> AnnData | None:
    """Build the spatial neighbour graph with :func:`squidpy.gr.spatial_neighbors`.

    Writes where squidpy does: ``obsp[f"{key_added}_connectivities"]``,
    ``obsp[f"{key_added}_distances"]`` and ``uns[f"{key_added}_neighbors"]``, so everything downstream
    (and any graph a user built with squidpy directly) is consumed the same way. Its ``"params"`` also record
    ``"graph_kind"`` (``"knn"``, ``"radius"`` or ``"delaunay"``) and ``"library_key"`` (squidpy's leave them
    ambiguous or out), so :func:`spatial_refine.tl.annotate` builds a query's graph the same way.

    Parameters
    ----------
    adata
        Cells with coordinates in ``obsm[spatial_key]``.
    n_neighs
        Neighbours per cell for the k-nearest-neighbour graph (ignored with ``radius`` or ``delaunay``).
    radius
        Connect every pair of cells closer than this (in coordinate units) instead of kNN.
    delaunay
        Use the Delaunay triangulation instead of kNN.
    library_key
        ``obs`` column naming the slice of each cell: the graph is built per slice (block-diagonal,
        no edges across slices). squidpy needs it categorical: a column of another dtype is converted to
        ``category`` in ``adata.obs`` (its values are kept).
    spatial_key
        ``obsm`` key of the coordinates.
    key_added
        Prefix of the written keys.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``.

    Examples
    --------
    >>> import spatial_refine as sr
    >>> adata = sr.datasets.merfish_demo()
    >>> sr.pp.spatial_neighbors(adata, n_neighs=10, library_key="samples")
    >>> adata.obsp["spatial_connectivities"].shape
    (5000, 5000)
    """
    import squidpy as sq

    _check_coordinates(adata, spatial_key)
    if n_neighs < 1:
        raise ValueError(f"n_neighs must be positive, got {n_neighs}.")
    if radius is not None and radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    adata = adata.copy() if copy else adata
    if library_key is not None:
        if library_key not in adata.obs:
            raise ValueError(f"library_key {library_key!r} is not a column of adata.obs.")
        if adata.obs[library_key].isna().any():
            raise ValueError(f"adata.obs[{library_key!r}] has missing values: every cell needs its slice.")
    if not delaunay and radius is None:
        sizes = [adata.n_obs] if library_key is None else adata.obs[library_key].value_counts(sort=False)
        smallest = int(min(size for size in sizes if size > 0)) if adata.n_obs else 0
        if smallest <= n_neighs:
            raise ValueError(
                f"A {n_neighs}-nearest-neighbour graph needs more than {n_neighs} cells per slice, but a slice has "
                f"{smallest}: pass a smaller n_neighs, or radius= / delaunay=True."
            )
    if library_key is not None and not isinstance(adata.obs[library_key].dtype, pd.CategoricalDtype):
        # squidpy needs a categorical (documented above: the values are kept, the dtype changes)
        adata.obs[library_key] = adata.obs[library_key].astype("category")
    common = {"spatial_key": spatial_key, "library_key": library_key, "key_added": key_added}
    if hasattr(sq.gr, "spatial_neighbors_knn"):  # squidpy >= 1.8 splits the builder by graph type
        if delaunay:
            sq.gr.spatial_neighbors_delaunay(adata, radius=radius, **common)
        elif radius is not None:
            sq.gr.spatial_neighbors_radius(adata, radius=radius, **common)
        else:
            sq.gr.spatial_neighbors_knn(adata, n_neighs=n_neighs, **common)
    else:  # pragma: no cover - older squidpy
        sq.gr.spatial_neighbors(
            adata, coord_type="generic", n_neighs=n_neighs, radius=radius, delaunay=delaunay, **common
        )
    # what squidpy's params leave ambiguous (the kind of graph) or out (the slices), to rebuild it on a query
    params = adata.uns[f"{key_added}_neighbors"].setdefault("params", {})
    params["graph_kind"] = "delaunay" if delaunay else "radius" if radius is not None else "knn"
    params["delaunay"] = bool(delaunay)
    if library_key is not None:
        params["library_key"] = library_key
    return adata if copy else None
