"""Plots: predicted labels in space, confusion matrix, training curves, benchmark comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._constants import RESULT_KEY, SPATIAL_KEY

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["benchmark", "confusion_matrix", "spatial", "training_curves"]


def spatial(
    adata: AnnData,
    key: str = RESULT_KEY,
    *,
    spatial_key: str = SPATIAL_KEY,
    confidence: bool = True,
    size: float | None = None,
    show: bool | None = None,
    **kwargs: Any,
) -> Axes | list[Axes] | None:
    """Predicted labels (and their confidence) at the cells' coordinates, with scanpy's embedding plot.

    Parameters
    ----------
    adata
        Annotated cells (after :func:`spatial_refine.tl.refine` or :func:`~spatial_refine.tl.annotate`).
    key
        The ``key_added`` of that call.
    spatial_key
        ``obsm`` key of the coordinates.
    confidence
        Add a panel with ``obs[f"{key}_confidence"]``.
    size
        Point size.
    show
        Show the figure (scanpy's convention); otherwise return the axes: a list of two (labels, confidence),
        or one ``Axes`` when there is no confidence panel.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (not ``color``: the panels are ``key`` and its confidence; for
        other columns call ``sc.pl.embedding(adata, basis="spatial", color=...)``).
    """
    import scanpy as sc

    if "color" in kwargs:
        raise TypeError(
            "sr.pl.spatial colours by `key` (and its confidence), so it takes no color=: pass key=, or call "
            f"sc.pl.embedding(adata, basis={spatial_key!r}, color=...) for other columns."
        )

    if key not in adata.obs:
        raise ValueError(f"adata.obs[{key!r}] is missing: run sr.tl.refine or sr.tl.annotate first.")
    if spatial_key not in adata.obsm:
        raise ValueError(f"adata.obsm[{spatial_key!r}] (coordinates) is missing.")
    colors = [key]
    if confidence and f"{key}_confidence" in adata.obs:
        colors.append(f"{key}_confidence")
    return sc.pl.embedding(adata, basis=spatial_key, color=colors, size=size, show=show, **kwargs)


def confusion_matrix(
    adata: AnnData, true_key: str, pred_key: str = RESULT_KEY, *, normalize: bool = True, ax: Axes | None = None
) -> Axes:
    """Row-normalised confusion matrix of ``obs[pred_key]`` against ``obs[true_key]`` (cells with both).

    Square on the true classes: column ``i`` is row ``i``'s class, so the diagonal holds the correct calls, also
    for classes never predicted (an empty column); labels only predicted (such as ``"Unknown"``) follow as extra
    columns."""
    import matplotlib.pyplot as plt

    for key in (true_key, pred_key):
        if key not in adata.obs:
            raise ValueError(f"adata.obs[{key!r}] is missing.")
        values = adata.obs[key]
        if pd.api.types.is_float_dtype(values) and not np.all(np.mod(values.dropna().to_numpy(dtype=float), 1) == 0):
            raise ValueError(f"adata.obs[{key!r}] holds fractional numbers, not labels: is it a confidence column?")
    frame = adata.obs[[true_key, pred_key]].dropna().astype(str)
    rows = sorted(set(frame[true_key]), key=_label_order)
    columns = rows + sorted(set(frame[pred_key]) - set(rows), key=_label_order)
    table = pd.crosstab(frame[true_key], frame[pred_key]).reindex(index=rows, columns=columns, fill_value=0)
    if normalize:
        table = table.div(table.sum(1), axis=0)
    ax = ax or plt.subplots(figsize=(0.45 * table.shape[1] + 3, 0.45 * table.shape[0] + 2))[1]
    image = ax.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=90)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.grid(False)  # scanpy's figure style turns grids on; they would cut through the cells
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, label="fraction of row" if normalize else "cells")
    return ax


def training_curves(model: Any, *, ax: Axes | None = None) -> Axes:
    """Training and validation loss per epoch of a trained model (a ``RefineAnnotator`` or estimator),
    with the restored best epoch marked (epoch 0 is the starting point of a warm-started REFINE run).

    For REFINE's default ensemble these are its network candidate's curves (the first of its two cross-fitted
    runs); the title gives that network's weight in the ensemble (0: kept out, the logistic regressions
    predict)."""
    import matplotlib.pyplot as plt

    history = getattr(model, "history_", None)
    if history is None or not history.train_loss:
        raise ValueError("This model has no training history (scikit-learn baselines and loaded models have none).")
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    weights = getattr(model, "metrics_", {}).get("ensemble_weights")
    if weights is not None:  # an ensemble: say whose curves these are
        from .annotator import AUTO_HIDDEN

        weight = weights.get(str(AUTO_HIDDEN), 0.0)
        ax.set_title(f"network candidate, first cross-fitted run (ensemble weight {weight:g})", fontsize="medium")
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train")
    if history.val_loss:
        x, y = epochs, history.val_loss
        if getattr(history, "initial_val_loss", None) is not None:  # a warm start: its weights are epoch 0
            x, y = np.r_[0, epochs], [history.initial_val_loss, *history.val_loss]
        ax.plot(x, y, label="validation")
        best = history.best_epoch + 1  # 0: no epoch improved on the warm start, which was kept
        ax.axvline(best, color="grey", linestyle="--", label=f"best epoch ({best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    return ax


def benchmark(
    results: pd.DataFrame,
    *,
    metric: str = "macro_f1",
    method_key: str = "method",
    group_key: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Mean +- std of ``metric`` per method (one row per run in ``results``), grouped if asked
    (e.g. by number of labelled cells); returns the axes, the legend above them."""
    import matplotlib.pyplot as plt

    for column in (metric, method_key, *([group_key] if group_key else [])):
        if column not in results:
            raise ValueError(f"results has no column {column!r}.")
    if results.empty:
        raise ValueError("results has no rows: pass one row per run (method, metric, ...).")
    groups = [None] if group_key is None else list(pd.unique(results[group_key]))
    methods = list(pd.unique(results[method_key]))
    ax = ax or plt.subplots(figsize=(max(5, 0.9 * len(methods) * len(groups)), 3.5))[1]
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        rows = results[results[method_key] == method]
        stats = [rows if g is None else rows[rows[group_key] == g] for g in groups]
        means = [s[metric].mean() for s in stats]
        stds = [s[metric].std(ddof=0) for s in stats]
        ax.bar(np.arange(len(groups)) + k * width, means, width, yerr=stds, label=method, capsize=2)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, ["" if g is None else str(g) for g in groups])
    if group_key:
        ax.set_xlabel(group_key)
    ax.set_ylabel(metric)
    ax.legend(frameon=False, fontsize="small", ncol=min(len(methods), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return ax


def _label_order(label: str) -> tuple:
    """Numbers in numeric order ("2" before "10", as the annotator orders numeric classes), then text."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
