"""``sr.tl.refine`` and ``sr.tl.annotate``: train and transfer labels in one call each."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._constants import GRAPH_KEY, REP_KEY, RESULT_KEY, UNKNOWN
from .annotator import RefineAnnotator

__all__ = ["annotate", "refine"]

logger = logging.getLogger(__name__)


def _write_predictions(
    adata: AnnData, proba: pd.DataFrame, key_added: str, confidence_threshold: float | None
) -> None:
    classes = list(proba.columns)
    values = proba.to_numpy()
    best = values.argmax(1)
    confidence = values.max(1)
    labels = np.asarray(classes, dtype=object)[best]
    categories = list(classes)
    if confidence_threshold is not None:
        labels = np.where(confidence < confidence_threshold, UNKNOWN, labels)
        categories.append(UNKNOWN)
    adata.obs[key_added] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key_added}_confidence"] = confidence.astype(np.float32)
    adata.obsm[f"{key_added}_proba"] = values.astype(np.float32)


def refine(
    adata: AnnData,
    labels_key: str,
    *,
    rep_key: str = REP_KEY,
    graph_key: str = GRAPH_KEY,
    layer: str | None = None,
    strategy: str = "refine",
    key_added: str = RESULT_KEY,
    unlabeled_category: Any = None,
    random_state: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    train_kwargs: dict[str, Any] | None = None,
    copy: bool = False,
) -> RefineAnnotator | tuple[AnnData, RefineAnnotator]:
    """Train REFINE on the labelled cells and annotate every cell.

    Labelled cells are those with a value in ``obs[labels_key]`` (NaN or ``unlabeled_category`` mean
    unlabelled). Writes

    - ``obs[key_added]``: predicted label (categorical);
    - ``obs[f"{key_added}_confidence"]``: probability of that label;
    - ``obsm[f"{key_added}_proba"]``: class probabilities (columns in ``uns[key_added]["classes"]``);
    - ``uns[key_added]``: ``params``, ``classes`` and validation ``metrics``.

    Parameters
    ----------
    adata
        Cells with expression, ``obsm[rep_key]`` and ``obsp[graph_key]``.
    labels_key
        ``obs`` column of labels.
    rep_key, graph_key, layer, strategy, unlabeled_category
        See :class:`~spatial_refine.RefineAnnotator` (``strategy`` also selects the baselines).
    key_added
        Prefix of the written keys.
    random_state
        Seed of the split, initialisation and training.
    model_kwargs, train_kwargs
        Further arguments of :class:`~spatial_refine.RefineAnnotator` and its ``train``.
    copy
        Work on a copy and return ``(copy, model)``.

    Returns
    -------
    The trained :class:`~spatial_refine.RefineAnnotator` (and the annotated copy with ``copy=True``).

    Examples
    --------
    >>> import spatial_refine as sr
    >>> adata = sr.datasets.merfish_demo()
    >>> sr.pp.spatial_neighbors(adata, library_key="samples")
    >>> sr.tl.refine(adata, "Cell_class", rep_key="X_pca")  # doctest: +SKIP
    """
    adata = adata.copy() if copy else adata
    model = RefineAnnotator(
        adata,
        labels_key,
        rep_key=rep_key,
        graph_key=graph_key,
        layer=layer,
        strategy=strategy,
        unlabeled_category=unlabeled_category,
        **(model_kwargs or {}),
    )
    model.train(random_state=random_state, **(train_kwargs or {}))
    _write_predictions(adata, model.predict(adata), key_added, None)
    adata.uns[key_added] = {
        "params": {k: v for k, v in model.params.items() if v is not None} | {"random_state": random_state},
        "classes": np.asarray(model.classes_, dtype=object),
        "metrics": {k: v for k, v in model.metrics_.items() if not isinstance(v, dict)},
        # the network width or "linear", and its hops; for an ensemble its members and their weights, heaviest
        # first (a cross-fitted network: its two runs, sharing its weight): e.g. "64+64+linear[hops]", "2+1+2",
        # "0.4+0.4+0.2"
        "hidden": _joined([m.name if m.hidden is None else int(m.hidden) for m in model.members_]),
        "n_layers": _joined([int(m.n_layers) for m in model.members_]),
        "weights": _joined([float(m.weight) for m in model.members_]),
    }
    return (adata, model) if copy else model


def annotate(
    query: AnnData,
    model: RefineAnnotator | str | Path,
    *,
    key_added: str = RESULT_KEY,
    min_gene_overlap: float = 0.5,
    confidence_threshold: float | None = None,
    library_key: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Transfer labels from a trained model to new slices (label transfer).

    The query's genes are aligned to the reference panel: shared genes are used, genes the query lacks
    are filled with zeros, and the counts are reported; below ``min_gene_overlap`` (fraction of the
    reference panel present in the query) the call refuses. The query's spatial graph is built with the
    reference's parameters when ``obsp[graph_key]`` is missing. Writes the same keys as
    :func:`refine` (``obs[key_added]``, ``_confidence``, ``obsm[..._proba]``, ``uns[key_added]`` with the
    gene-overlap report); cells below ``confidence_threshold`` are labelled ``"Unknown"``.

    Parameters
    ----------
    query
        Cells to annotate (one or several slices).
    model
        A trained :class:`~spatial_refine.RefineAnnotator` or the folder it was saved to.
    key_added
        Prefix of the written keys.
    min_gene_overlap
        Smallest accepted fraction of the reference genes present in the query.
    confidence_threshold
        Label cells whose top probability is below this as ``"Unknown"``.
    library_key
        ``obs`` column of slices, used when the graph must be built (no edges across slices).
    copy
        Return an annotated copy instead of writing in place.
    """
    from .pp import spatial_neighbors

    if not isinstance(query, AnnData):
        raise TypeError(f"query must be an AnnData, got {type(query).__name__}.")
    if not isinstance(model, RefineAnnotator):
        model = RefineAnnotator.load(model)
    if model.model_ is None:
        raise ValueError("The model is not trained: call model.train() first.")
    if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
        raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}.")
    query = query.copy() if copy else query
    query_genes = pd.Index(np.asarray(query.var_names, dtype=str))
    shared = int(query_genes.isin(model.genes_).sum())
    overlap = shared / len(model.genes_)
    report = {
        "n_reference_genes": len(model.genes_),
        "n_query_genes": len(query_genes),
        "n_shared_genes": shared,
        "n_missing_filled_with_zeros": len(model.genes_) - shared,
        "n_query_only_ignored": len(query_genes) - shared,
    }
    logger.info("Gene panel: %d of %d reference genes found in the query.", shared, len(model.genes_))
    if overlap < min_gene_overlap:
        raise ValueError(
            f"Only {shared} of the model's {len(model.genes_)} genes ({overlap:.0%}) are in the query, below "
            f"min_gene_overlap={min_gene_overlap:.0%}: check the gene identifiers (symbols vs ids, case) or "
            "lower min_gene_overlap knowingly."
        )
    graph_key = model.params["graph_key"]
    if model.uses_graph and graph_key not in query.obsp:
        params = getattr(model, "graph_params_", None) or {}
        n_neighs = int(params.get("n_neighbors", 10))
        spatial_neighbors(query, n_neighs=n_neighs, library_key=library_key, key_added=graph_key.removesuffix("_connectivities"))
    _write_predictions(query, model.predict(query), key_added, confidence_threshold)
    query.uns[key_added] = {
        "params": {"strategy": model.params["strategy"], "confidence_threshold": confidence_threshold,
                   "min_gene_overlap": min_gene_overlap},
        "classes": np.asarray(model.classes_, dtype=object),
        "gene_overlap": report,
    }
    return query if copy else None


def _joined(values: list) -> Any:
    """A single value as it is, several joined by "+" (one string: h5ad stores it as is)."""
    return values[0] if len(values) == 1 else "+".join(str(v) for v in values)
