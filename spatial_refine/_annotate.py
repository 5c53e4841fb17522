"""``sr.tl.refine`` and ``sr.tl.annotate``: train and transfer labels in one call each."""

from __future__ import annotations

import logging
import warnings
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
    - ``uns[key_added]``: ``params``, ``classes``, validation ``metrics``, ``class_weight`` (``"effective"``,
      ``"balanced"``, ``"None"`` or the dict given, as text), the kept members' ``hidden``, ``n_layers`` and ensemble
      ``weights``, and ``smoothing``, the strength of the predictions' smoothing over the graph (0: none).

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
    if key_added == labels_key:
        raise ValueError(
            f"key_added={key_added!r} is also labels_key: the predictions would overwrite your labels. "
            "Pass another key_added."
        )
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
        "class_weight": str(model.train_settings_["class_weight"]),  # as text: h5ad stores no None
        # the network width or "linear", and its hops; for an ensemble its members and their weights, heaviest
        # first (a cross-fitted network: its two runs, sharing its weight): e.g. "64+64+linear[hops]", "2+1+2",
        # "0.4+0.4+0.2"
        "hidden": _joined([m.name if m.hidden is None else int(m.hidden) for m in model.members_]),
        "n_layers": _joined([int(m.n_layers) for m in model.members_]),
        "weights": _joined([float(m.weight) for m in model.members_]),
        "smoothing": float(model.smoothing_),  # the predictions' smoothing over the graph (0: none)
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
    reference panel present in the query) the call refuses. When ``obsp[graph_key]`` is missing, the query's
    spatial graph is built like the reference's (kNN with its ``n_neighbors``, radius or Delaunay, read from
    ``uns[...]["params"]``; per slice with the reference's ``library_key`` when the query has that column).
    Writes the same keys as
    :func:`refine` (``obs[key_added]``, ``_confidence``, ``obsm[..._proba]``, ``uns[key_added]`` with the
    gene-overlap report); cells below ``confidence_threshold`` are labelled ``"Unknown"``.

    The model's smoothing of its predictions (``model.smoothing_``, chosen in training) runs over the query's
    graph. The model is used as trained. To let REFINE also learn from the query's own cells, put the query slices in
    the training AnnData instead, unlabelled, beside the reference (one graph per slice, ``library_key``) and
    call :func:`refine`: it self-trains on them (``train(self_training="auto")``).

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
        ``obs`` column of slices, used when the graph must be built (no edges across slices); default: the
        reference graph's ``library_key`` if the query has that column. Not used (with a warning) when the
        query already has its graph.
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
    if confidence_threshold is not None and UNKNOWN in model.classes_:
        raise ValueError(
            f"The model has a class named {UNKNOWN!r}, the label confidence_threshold gives uncertain cells: rename "
            "that class before training, or annotate without a threshold and read the confidence column."
        )
    report = model.gene_overlap(query, min_gene_overlap)
    logger.info("Gene panel: %d of %d reference genes found in the query.", report["n_shared_genes"],
                report["n_reference_genes"])
    query = query.copy() if copy else query
    graph_key = model.params["graph_key"]
    if model.uses_graph and graph_key not in query.obsp:
        rep_key = model.params["rep_key"]
        if model.uses_rep and rep_key not in query.obsm:  # checked before the graph is written into the query
            raise ValueError(f"query.obsm[{rep_key!r}] is missing: compute the frozen representation of the query "
                             "as for the reference (e.g. sr.tl.scgpt_embed).")
        kwargs = _graph_kwargs(getattr(model, "graph_params_", None) or {})
        stored_library = kwargs.pop("library_key", None)
        if library_key is None and stored_library is not None:
            if stored_library in query.obs:
                library_key = stored_library  # the reference's graph was built per slice: so is the query's
            else:
                warnings.warn(
                    f"The reference graph was built per slice (library_key={stored_library!r}), but the query has no "
                    f"obs[{stored_library!r}]: its graph is built over all its cells. Pass library_key= if it holds "
                    "several slices.",
                    UserWarning,
                    stacklevel=2,
                )
        logger.info("Building the query graph (%s, library_key=%s).", kwargs, library_key)
        spatial_neighbors(query, library_key=library_key, key_added=graph_key.removesuffix("_connectivities"), **kwargs)
    elif library_key is not None and model.uses_graph:
        warnings.warn(
            f"query.obsp[{graph_key!r}] exists, so library_key={library_key!r} is not used: the existing graph is. "
            f"Delete it (del query.obsp[{graph_key!r}]) to have annotate build the graph per slice.",
            UserWarning,
            stacklevel=2,
        )
    _write_predictions(query, model.predict(query, min_gene_overlap=min_gene_overlap), key_added, confidence_threshold)
    query.uns[key_added] = {
        "params": {"strategy": model.params["strategy"], "confidence_threshold": confidence_threshold,
                   "min_gene_overlap": min_gene_overlap},
        "classes": np.asarray(model.classes_, dtype=object),
        "gene_overlap": report,
    }
    return query if copy else None


def _graph_kwargs(params: dict) -> dict[str, Any]:
    """Arguments of :func:`spatial_refine.pp.spatial_neighbors` that rebuild the reference's graph, from the
    ``params`` stored with it. Our wrapper records the kind (``graph_kind``; ``delaunay`` in earlier versions); for
    a graph built with squidpy directly it is read off squidpy's params: a number as ``radius`` is a radius graph
    (older squidpy stores ``n_neighbors`` for every kind), ``n_neighbors`` alone a kNN graph, a ``radius`` of
    ``None`` or ``(0, r)`` without ``n_neighbors`` a Delaunay graph (guessed, with a warning: squidpy also stores
    a radius interval that way). Nothing recorded: the default kNN graph."""
    kind = params.get("graph_kind") or ("delaunay" if params.get("delaunay") else None)
    radius = params.get("radius")
    if kind is None:
        if radius is not None and np.ndim(radius) == 0:
            kind = "radius"
        elif "n_neighbors" in params or "radius" not in params:
            kind = "knn"
        else:
            kind = "delaunay"
            warnings.warn(
                f"The reference graph's kind is not recorded (params {params}); building the query graph as a "
                "Delaunay graph. Build both graphs with sr.pp.spatial_neighbors to have the kind recorded.",
                UserWarning,
                stacklevel=3,
            )
    kwargs: dict[str, Any] = {}
    if kind == "delaunay":
        kwargs["delaunay"] = True
        if radius is not None:
            kwargs["radius"] = float(np.ravel(radius)[-1])
    elif kind == "radius":
        kwargs["radius"] = float(np.ravel(radius)[-1])
    else:
        kwargs["n_neighs"] = int(params.get("n_neighbors", 10))
    if params.get("library_key") is not None:
        kwargs["library_key"] = str(params["library_key"])
    return kwargs


def _joined(values: list) -> Any:
    """A single value as it is, several joined by "+" (one string: h5ad stores it as is)."""
    return values[0] if len(values) == 1 else "+".join(str(v) for v in values)
