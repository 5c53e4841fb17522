"""Greedy ensemble selection on validation data (Caruana et al., 2004, "Ensemble selection from libraries of
models"), as in auto-sklearn and AutoGluon."""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_ensemble_weights", "log_loss"]


def log_loss(proba: np.ndarray, codes: np.ndarray, *, balanced: bool = False) -> float:
    """Mean negative log-likelihood of the true classes ``codes`` under ``proba`` (n_cells, n_classes);
    ``balanced``: the mean over classes of each class's mean (every class counts alike, as in macro-F1)."""
    losses = -np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-12, 1.0))
    if balanced:
        return float(np.mean([losses[codes == c].mean() for c in np.unique(codes)]))
    return float(losses.mean())


def greedy_ensemble_weights(val_probas: list[np.ndarray], codes: np.ndarray, *, rounds: int = 10) -> np.ndarray:
    """Weights of models whose averaged class probabilities have a low validation log-loss.

    Starting from an empty ensemble, each round adds (with replacement) the model that gives the mean of
    the ensemble's probabilities the lowest log-loss; a model's weight is the fraction of rounds that
    picked it. The first round picks the best single model, so a model that helps no mixture gets
    weight 0, and a model better than every mixture gets weight 1. Ties go to the earlier model.

    Parameters
    ----------
    val_probas
        One ``(n_cells, n_classes)`` array of class probabilities per model, on the same validation cells.
    codes
        True class index of each validation cell.
    rounds
        Selection rounds (weights are multiples of ``1 / rounds``).

    Returns
    -------
    numpy.ndarray
        One non-negative weight per model, summing to 1.
    """
    if not val_probas:
        raise ValueError("val_probas is empty: pass at least one model's probabilities.")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    shapes = {p.shape for p in val_probas}
    codes = np.asarray(codes)
    if len(shapes) != 1 or next(iter(shapes))[0] != len(codes):
        raise ValueError(f"Every model needs (n_cells, n_classes) probabilities for the {len(codes)} cells, got {shapes}.")
    counts = np.zeros(len(val_probas), dtype=int)
    total = np.zeros_like(val_probas[0], dtype=np.float64)
    for step in range(1, rounds + 1):
        losses = [log_loss((total + proba) / step, codes) for proba in val_probas]
        best = int(np.argmin(losses))
        counts[best] += 1
        total += val_probas[best]
    return counts / rounds
