"""AnnData wrapper of the transferability diagnostic (``sr.tl.transferability``)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from .diagnostic import TransferabilityReport, transferability_diagnostic

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["transferability"]


def transferability(
    adata: AnnData,
    labels_key: str,
    *,
    rep_key: str = "X_scGPT",
    layer: str | None = None,
    key_added: str = "transferability",
    train_sizes: Any = None,
    n_sizes: int = 6,
    n_seeds: int = 3,
    test_size: float = 0.25,
    metric: str = "f1_macro",
    scratch_model: str = "logreg",
    tol: float = 0.02,
    raw_n_components: int | None = 100,
    rep_n_components: int | None = None,
    min_cells_per_class: int = 5,
    n_threads: int | None = 1,
    random_state: int = 0,
) -> TransferabilityReport:
    """Will the frozen representation in ``adata.obsm[rep_key]`` help to predict ``adata.obs[labels_key]``?

    Learning curves of a linear probe on the frozen representation, a scratch model on the expression
    (``adata.X`` or ``adata.layers[layer]``) and the REFINE-style combination of both, scored on held-out
    stratified cells (macro-F1 and accuracy). See
    :func:`~spatial_refine.theory.diagnostic.transferability_diagnostic` for the method and the verdicts.

    Parameters
    ----------
    adata
        Annotated data matrix.
    labels_key
        Column of ``adata.obs`` with the labels; missing values mark unlabelled cells (ignored).
    rep_key
        Key of the frozen representation in ``adata.obsm`` (default ``"X_scGPT"``).
    layer
        Layer with the raw input of the scratch model; ``None`` uses ``adata.X``.
    key_added
        Results are stored in ``adata.uns[key_added]``: ``verdict``, ``message``, ``residual_path_needed``,
        ``summary``, ``curves`` and ``table`` (column dictionaries) and ``params``.
    train_sizes, n_sizes, n_seeds, test_size, metric, scratch_model, tol, raw_n_components, rep_n_components, min_cells_per_class, n_threads, random_state
        Passed to :func:`~spatial_refine.theory.diagnostic.transferability_diagnostic`.

    Returns
    -------
    The :class:`~spatial_refine.theory.diagnostic.TransferabilityReport`. Only ``adata.uns[key_added]`` is
    written; nothing else in ``adata`` changes.

    Raises
    ------
    KeyError
        ``labels_key``, ``rep_key`` or ``layer`` not found.
    ValueError
        Invalid data (see the array function).
    """
    from anndata import AnnData

    if not isinstance(adata, AnnData):
        raise TypeError(f"`adata` must be an AnnData object, got {type(adata).__name__}.")
    if labels_key not in adata.obs:
        raise KeyError(
            f"adata.obs[{labels_key!r}] not found; available columns: {list(adata.obs.columns)[:20]}."
        )
    if rep_key not in adata.obsm:
        raise KeyError(
            f"adata.obsm[{rep_key!r}] not found; compute the frozen representation first (e.g. scGPT "
            f"embeddings) or pass `rep_key=` one of {list(adata.obsm.keys())}."
        )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata.layers[{layer!r}] not found; available layers: {list(adata.layers.keys())}.")
    raw = adata.X if layer is None else adata.layers[layer]
    if raw is None:
        raise ValueError("adata.X is empty; pass `layer=` with the expression matrix.")
    rep = adata.obsm[rep_key]
    rep = rep.to_numpy() if hasattr(rep, "to_numpy") else np.asarray(rep)
    report = transferability_diagnostic(
        rep,
        raw,
        adata.obs[labels_key],
        train_sizes=train_sizes,
        n_sizes=n_sizes,
        n_seeds=n_seeds,
        test_size=test_size,
        metric=metric,
        scratch_model=scratch_model,
        tol=tol,
        raw_n_components=raw_n_components,
        rep_n_components=rep_n_components,
        min_cells_per_class=min_cells_per_class,
        n_threads=n_threads,
        random_state=random_state,
    )
    report.params.update(
        {"labels_key": labels_key, "rep_key": rep_key, "layer": layer, "key_added": key_added}
    )
    adata.uns[key_added] = report.to_dict()
    _log(f"transferability: {report.message}")
    return report


def _log(msg: str) -> None:
    """Log through scanpy (respects ``scanpy.settings.verbosity``) if it is loaded, else ``logging``."""
    scanpy = sys.modules.get("scanpy")
    if scanpy is not None:
        scanpy.logging.info(msg)
    else:
        logging.getLogger(__name__).info(msg)
