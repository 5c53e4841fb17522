"""Classification metrics of the benchmark tables."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

__all__ = ["METRICS", "classification_metrics"]

METRICS = ("accuracy", "macro_f1", "weighted_f1", "auc_ovr", "min_class_accuracy")


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro and weighted F1, one-vs-rest AUC and the minimum per-class accuracy (recall).

    Parameters
    ----------
    y
        True labels, integers in ``[0, n_classes)``.
    proba
        ``(n, n_classes)`` predicted probabilities.

    Returns
    -------
    Metric name -> value (fractions in [0, 1]); the AUC is NaN when a class is missing from ``y``.
    """
    y = np.asarray(y)
    n_classes = proba.shape[1]
    pred = proba.argmax(1)
    present = np.unique(y)
    recalls = [float(np.mean(pred[y == c] == c)) for c in present]
    if len(present) < n_classes or len(present) < 2:
        auc = float("nan")
    elif n_classes == 2:
        auc = float(roc_auc_score(y, proba[:, 1]))
    else:
        p = np.clip(proba, 1e-12, None)
        auc = float(roc_auc_score(y, p / p.sum(1, keepdims=True), multi_class="ovr", labels=list(range(n_classes))))
    return {
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "auc_ovr": auc,
        "min_class_accuracy": min(recalls),
    }
