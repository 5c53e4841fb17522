"""Graph operators on arrays: the strong simple spatial baseline (a cell's expression next to the mean of its
1..L-hop neighbours) and the smoothing of predicted class probabilities over the graph."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["mean_neighbor_operator", "neighbor_aggregate", "smooth_probabilities", "smooth_probabilities_grid"]


def mean_neighbor_operator(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """Row-normalised adjacency ``P = D^-1 A`` (binary, no self loops): ``P @ X`` averages neighbours.
    Isolated nodes get a zero row."""
    binary = sp.csr_matrix(adjacency, dtype=np.float64, copy=True)
    binary.setdiag(0)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    degree = np.asarray(binary.sum(1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    return sp.diags(inverse) @ binary


def neighbor_aggregate(X: np.ndarray, adjacency: sp.spmatrix, n_hops: int = 2) -> np.ndarray:
    """``[X, P X, P^2 X, ..., P^L X]`` with ``P`` the neighbour-mean operator: the cell's own profile and
    the mean profile of its neighbourhood at growing radius (what a competent user writes in ten lines)."""
    if n_hops < 0:
        raise ValueError(f"n_hops must be >= 0, got {n_hops}.")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] != adjacency.shape[0]:
        raise ValueError(f"X must be (n_nodes, n_features) with n_nodes = {adjacency.shape[0]}, got {X.shape}.")
    P = mean_neighbor_operator(adjacency).astype(np.float32)
    out = np.empty((X.shape[0], X.shape[1] * (n_hops + 1)), dtype=np.float32)
    d = X.shape[1]
    out[:, :d] = X
    for k in range(1, n_hops + 1):  # float32 sparse products, written in place: no float64 copy
        out[:, k * d : (k + 1) * d] = P @ out[:, (k - 1) * d : k * d]
    return out


def smooth_probabilities(proba: np.ndarray, adjacency: sp.spmatrix, alpha: float, steps: int = 10) -> np.ndarray:
    """Class probabilities propagated over the graph: ``Z <- (1 - alpha) proba + alpha P Z``, ``steps`` times
    from ``Z = proba``, ``P`` the neighbour-mean operator (an isolated node its own neighbour).

    Personalised-PageRank propagation of predictions (APPNP, Klicpera et al., ICLR 2019; the "smooth" step of
    Correct & Smooth, Huang et al., ICLR 2021): a node keeps ``1 - alpha`` of its own prediction and takes the
    rest from its neighbourhood, hop ``k`` weighing ``alpha ** k``. Rows stay probability vectors; ``alpha = 0``
    returns ``proba`` unchanged. Neighbouring cells often share a label (anatomical regions), and then the
    neighbours' predictions denoise a cell's own; where they do not (cell types), smoothing blurs them, so
    ``alpha`` is to be chosen on validation data (:func:`smooth_probabilities_grid`)."""
    return smooth_probabilities_grid(proba, adjacency, (alpha,), steps)[0]


def smooth_probabilities_grid(proba: np.ndarray, adjacency: sp.spmatrix, alphas, steps: int = 10,
                              rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`smooth_probabilities` for each of ``alphas`` at once (one sparse product per step for all of them),
    returned as ``(len(alphas), len(rows), n_classes)``: the rows ``rows`` (default every node) of each."""
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if len(alphas) == 0 or not np.all((alphas >= 0.0) & (alphas < 1.0)):
        raise ValueError(f"alpha must be in [0, 1), got {alphas.tolist()}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    proba = np.asarray(proba, dtype=np.float32)
    if proba.ndim != 2 or proba.shape[0] != adjacency.shape[0]:
        raise ValueError(f"proba must be (n_nodes, n_classes) with n_nodes = {adjacency.shape[0]}, got {proba.shape}.")
    n_classes = proba.shape[1]

    def picked(matrix: np.ndarray) -> np.ndarray:  # every row as it is (no copy), or those asked for
        return matrix if rows is None else matrix[np.asarray(rows)]

    if steps == 0 or not np.any(alphas > 0):
        return np.repeat(picked(proba)[None], len(alphas), axis=0)
    operator = mean_neighbor_operator(adjacency).astype(np.float32)
    isolated = np.flatnonzero(np.diff(operator.indptr) == 0)
    operator = operator + sp.csr_matrix((np.ones(len(isolated), dtype=np.float32), (isolated, isolated)),
                                        shape=operator.shape)
    # the columns of alpha i: i * n_classes ... (i + 1) * n_classes - 1; each factor rounded to float32 once
    scale = np.repeat(alphas, n_classes).astype(np.float32)
    kept = np.tile(proba, (1, len(alphas))) * np.repeat(1.0 - alphas, n_classes).astype(np.float32)
    smoothed = np.tile(proba, (1, len(alphas)))
    for _ in range(steps):
        smoothed = kept + scale * (operator @ smoothed)
    smoothed = picked(smoothed)
    return smoothed.reshape(len(smoothed), len(alphas), n_classes).transpose(1, 0, 2)
