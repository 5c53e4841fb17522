"""AnnData loaders for the spatial and scRNA-seq datasets of the manifest.

Each loader finds the file with :func:`~spatial_refine.datasets.fetch` (data directories, then cache,
verified against the manifest's sha256), reads it with anndata, checks its shape against the manifest and
makes the label columns categorical. None of these files has a public download URL (they are converted
copies): set ``SPATIAL_REFINE_DATA_DIR`` to a folder holding ``spatial/`` and ``scrna/``, or pass
``data_dir=``. :func:`merfish_demo` needs neither: it ships inside the package.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .fetch import fetch
from .manifest import get_entry

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = [
    "merfish_demo",
    "merfish_hypothalamus",
    "osmfish_cortex",
    "seqfish_embryo",
    "wang_pancreas",
    "xin_pancreas",
]


def _read(
    name: str, categorical: tuple[str, ...], data_dir: str | os.PathLike[str] | None, **kw: Any
) -> AnnData:
    import anndata as ad

    entry = get_entry(name)
    path = fetch(name, data_dir=data_dir, **kw)
    adata = ad.read_h5ad(path)
    if entry.shape is not None and tuple(adata.shape) != entry.shape:
        raise ValueError(
            f"{path} holds {adata.shape[0]} x {adata.shape[1]} but the manifest entry {name!r} says "
            f"{entry.shape[0]} x {entry.shape[1]}: the file is a different version."
        )
    for col in categorical:
        if col not in adata.obs:
            raise ValueError(f"{path} lacks obs[{col!r}], which the manifest entry {name!r} documents.")
        if adata.obs[col].dtype.name != "category":
            adata.obs[col] = adata.obs[col].astype("category")
    return adata


def merfish_demo(**fetch_kwargs: Any) -> AnnData:
    """MERFISH mouse hypothalamus demo subset, shipped inside the package (no network, no data directory).

    5,000 cells x 135 genes: for each of two slices at Bregma -0.09 ("1.-0.09" from Animal 1 and "7.-0.09"
    from Animal 7), a square window of 2,500 spatially contiguous cells around the slice's centre, so
    neighbour graphs are meaningful and the two slices give a natural reference -> query split.

    - ``X``: log-normalised expression, float32 CSR (as in the full dataset).
    - ``obsm["spatial"]``: x, y in micrometres.
    - ``obs["Cell_class"]``: cell class (the full dataset's 15 categories; OD Mature 3/4 are rare here).
    - ``obs["samples"]``: slice.

    Derived by ``scripts/make_demo_subset.py`` from :func:`merfish_hypothalamus`.

    Parameters
    ----------
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch` (e.g. ``verify="full"``).

    Returns
    -------
    The demo AnnData.

    Notes
    -----
    Citation: Moffitt JR, Bambah-Mukku D, Eichhorn SW, et al. Molecular, spatial, and functional single-cell
    profiling of the hypothalamic preoptic region. Science 362:eaau5324 (2018). License: CC0-1.0 (Dryad
    doi:10.5061/dryad.8t8s248).
    """
    return _read("merfish_demo", ("Cell_class", "samples"), None, **fetch_kwargs)


def merfish_hypothalamus(*, data_dir: str | os.PathLike[str] | None = None, **fetch_kwargs: Any) -> AnnData:
    """MERFISH mouse hypothalamic preoptic region, 3 slices (Moffitt et al. 2018).

    15,848 cells x 135 genes.

    - ``X``: log-normalised expression, float32 CSR.
    - ``obsm["spatial"]``: x, y in micrometres.
    - ``obs["Cell_class"]``: 15 cell classes (Inhibitory, Excitatory, Astrocyte, oligodendrocyte,
      endothelial and other classes).
    - ``obs["samples"]``: slice, ``"<animal>.<Bregma>"``: "1.-0.09", "7.-0.09", "7.0.16".

    Parameters
    ----------
    data_dir
        Directory searched before ``$SPATIAL_REFINE_DATA_DIR`` (as ``<dir>/spatial/<file>`` or ``<dir>/<file>``).
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch`.

    Returns
    -------
    The AnnData.

    Notes
    -----
    Citation: Moffitt JR, et al. Science 362:eaau5324 (2018), doi:10.1126/science.aau5324. License: CC0-1.0
    (raw data on Dryad, doi:10.5061/dryad.8t8s248); this copy was converted from the clustSIGNAL R package.
    """
    return _read("merfish_hypothalamus", ("Cell_class", "samples"), data_dir, **fetch_kwargs)


def seqfish_embryo(*, data_dir: str | os.PathLike[str] | None = None, **fetch_kwargs: Any) -> AnnData:
    """seqFISH mouse embryo at 8-12 somites, 3 embryos, 20% subsample of each (Lohoff et al. 2022).

    11,441 cells x 351 genes.

    - ``X``: log-normalised expression, float32 CSR.
    - ``obsm["spatial"]``: x, y in the authors' normalised embryo coordinates.
    - ``obs["celltype"]``: 24 cell types, one of them "Low quality" (best treated as unlabelled).
    - ``obs["sample"]``: embryo1, embryo2, embryo3.

    Parameters
    ----------
    data_dir
        Directory searched before ``$SPATIAL_REFINE_DATA_DIR``.
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch`.

    Returns
    -------
    The AnnData.

    Notes
    -----
    Citation: Lohoff T, et al. Integration of spatial and single-cell transcriptomic data elucidates mouse
    organogenesis. Nat Biotechnol 40:74-85 (2022), doi:10.1038/s41587-021-01006-2. License: no explicit data
    license from the authors; this copy was converted from the wSIR R package (GPL-2).
    """
    return _read("seqfish_embryo", ("celltype", "sample"), data_dir, **fetch_kwargs)


def osmfish_cortex(*, data_dir: str | os.PathLike[str] | None = None, **fetch_kwargs: Any) -> AnnData:
    """osmFISH mouse somatosensory cortex (Codeluppi et al. 2018).

    4,839 cells x 33 genes.

    - ``X``: raw molecule counts, float32 CSR (normalise before use).
    - ``obsm["spatial"]``: x, y.
    - ``obs["ClusterName"]``: 31 cell types.
    - ``obs["Region"]``: 11 anatomical regions (cortical layers, white matter, hippocampus, ...), a label
      that depends on position more than on expression.

    Parameters
    ----------
    data_dir
        Directory searched before ``$SPATIAL_REFINE_DATA_DIR``.
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch`.

    Returns
    -------
    The AnnData.

    Notes
    -----
    Citation: Codeluppi S, et al. Spatial organization of the somatosensory cortex revealed by osmFISH.
    Nat Methods 15:932-935 (2018), doi:10.1038/s41592-018-0175-z. License: no explicit data license from the
    authors (Linnarsson lab public release).
    """
    return _read("osmfish_cortex", ("ClusterName", "Region"), data_dir, **fetch_kwargs)


def wang_pancreas(*, data_dir: str | os.PathLike[str] | None = None, **fetch_kwargs: Any) -> AnnData:
    """Human pancreas scRNA-seq, Wang et al. 2016 (scClassify example subset), no coordinates.

    501 cells x 219 genes (human gene symbols).

    - ``X``: log-normalised expression, float32 CSR.
    - ``obs["celltype"]``: 7 cell types (alpha, beta, ductal, stellate, gamma, delta, acinar).

    Parameters
    ----------
    data_dir
        Directory searched before ``$SPATIAL_REFINE_DATA_DIR`` (as ``<dir>/scrna/<file>`` or ``<dir>/<file>``).
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch`.

    Returns
    -------
    The AnnData.

    Notes
    -----
    Citation: Wang YJ, et al. Single-cell transcriptomics of the human endocrine pancreas. Diabetes
    65:3028-3038 (2016), doi:10.2337/db16-0405. License: public GEO data (GSE83139) without an explicit
    license; this copy comes from the scClassify R package (GPL-3).
    """
    return _read("wang_pancreas", ("celltype",), data_dir, **fetch_kwargs)


def xin_pancreas(*, data_dir: str | os.PathLike[str] | None = None, **fetch_kwargs: Any) -> AnnData:
    """Human pancreas scRNA-seq, Xin et al. 2016 (scClassify example subset), no coordinates.

    674 cells x 980 genes (human gene symbols).

    - ``X``: log-normalised expression, float32 CSR.
    - ``obs["celltype"]``: 4 cell types (alpha, beta, gamma, delta).

    Parameters
    ----------
    data_dir
        Directory searched before ``$SPATIAL_REFINE_DATA_DIR``.
    **fetch_kwargs
        Passed to :func:`~spatial_refine.datasets.fetch`.

    Returns
    -------
    The AnnData.

    Notes
    -----
    Citation: Xin Y, et al. RNA sequencing of single human islet cells reveals type 2 diabetes genes. Cell
    Metab 24:608-615 (2016), doi:10.1016/j.cmet.2016.08.018. License: public GEO data (GSE81608) without an
    explicit license; this copy comes from the scClassify R package (GPL-3).
    """
    return _read("xin_pancreas", ("celltype",), data_dir, **fetch_kwargs)
