"""The strong simple spatial baseline: a cell's expression next to the mean of its 1..L-hop neighbours."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["mean_neighbor_operator", "neighbor_aggregate"]


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
