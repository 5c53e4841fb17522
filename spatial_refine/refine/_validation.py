"""Input checks for the generic core: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_float_array(values: Any, name: str, *, ndim: int | tuple[int, ...] | None = 2) -> np.ndarray:
    """Validate a numeric array and return it as float32 (a copy only when needed).

    Raises a ValueError for empty input, non-numeric dtypes, NaN/inf and the wrong number of dimensions.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if hasattr(values, "toarray"):  # scipy.sparse
        values = values.toarray()
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must be numeric, got dtype {array.dtype}. Convert it, e.g. with np.asarray({name}, dtype=float)."
        )
    if array.size == 0 or array.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): pass at least one sample.")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {array.shape}.")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values: impute or drop them first.")
    return array


def check_same_length(**arrays: Any) -> int:
    """All arrays (non-None) must have the same first dimension; return it."""
    lengths = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise ValueError(f"Inputs must have the same number of samples, got {detail}.")
    return next(iter(lengths.values()))


def encode_class_labels(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate classification labels; return (classes, integer codes)."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be one-dimensional for classification, got shape {labels.shape}.")
    if labels.size == 0:
        raise ValueError("y is empty: pass at least one labelled sample.")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("y contains NaN or infinite labels: drop the unlabelled samples first.")
    if labels.dtype == object and any(v is None for v in labels):
        raise ValueError("y contains None labels: drop the unlabelled samples first.")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}): classification needs at least two classes.")
    return classes, codes.astype(np.int64)


def as_regression_targets(y: Any) -> np.ndarray:
    """Validate regression targets; return a float32 (n, k) array."""
    targets = as_float_array(y, "y", ndim=(1, 2))
    return targets.reshape(len(targets), -1)
