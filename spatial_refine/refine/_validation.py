"""Input checks for the generic core: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
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


def encode_class_labels(y: Any, *, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate classification labels; return (classes, integer codes). A column ``(n, 1)`` is flattened
    (with scikit-learn's warning when ``warn``); continuous or mixed-type labels are refused; an object array of
    one kind (ints from ``astype(object)``, pandas nullable integers) is read as that kind."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = column_or_1d(labels, warn=warn)
    if labels.ndim != 1:
        raise ValueError(f"y must be one-dimensional for classification, got shape {labels.shape}.")
    if labels.size == 0:
        raise ValueError("y is empty: pass at least one labelled sample.")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("y contains NaN or infinite labels: drop the unlabelled samples first.")
    check_no_missing_labels(labels)
    if labels.dtype == object:
        kinds = {_label_kind(v) for v in labels}
        if len(kinds) > 1:
            raise ValueError(f"y mixes label types {sorted(kinds)}: convert them to one type, e.g. y.astype(str).")
        labels = pd.Series(labels).infer_objects().to_numpy()  # object ints -> int64, object strings stay
    check_classification_targets(labels)  # refuses continuous values ("Unknown label type: continuous")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}): classification needs at least two classes.")
    return classes, codes.astype(np.int64)


def check_no_missing_labels(y: Any) -> None:
    """Refuse ``None`` / ``pd.NA`` / ``pd.NaT`` labels (NaN is checked with the numbers)."""
    labels = np.asarray(y)
    if labels.dtype == object and any(v is None or v is pd.NA or v is pd.NaT for v in labels.ravel()):
        raise ValueError("y contains missing labels (None / pd.NA): drop the unlabelled samples first.")


def as_regression_targets(y: Any) -> np.ndarray:
    """Validate regression targets; return a float32 (n, k) array."""
    targets = as_float_array(y, "y", ndim=(1, 2))
    return targets.reshape(len(targets), -1)


def stratified_split(index: np.ndarray, codes: np.ndarray, fraction: float, random_state: int):
    """Stratified train/validation split of ``index``; the validation part holds at least one sample per class (a
    stratified split needs as many validation samples as classes: 100 samples of 21 classes get 21, not 20).
    Falls back to a plain random split when a class has a single sample or the classes are too many."""
    from sklearn.model_selection import train_test_split

    n, n_classes = len(index), len(np.unique(codes))
    n_val = max(int(np.ceil(fraction * n)), n_classes)
    if np.bincount(codes).min() >= 2 and n - n_val >= n_classes:
        return train_test_split(index, test_size=n_val, random_state=random_state, stratify=codes)
    return train_test_split(index, test_size=fraction, random_state=random_state)


def is_integer(value: Any) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_random_state(random_state: Any) -> int:
    """``random_state`` as the integer seed it must be (every random choice of the package is seeded by one)."""
    if not is_integer(random_state):
        raise TypeError(
            f"random_state must be an integer seed (results are reproducible by design), got {random_state!r}."
        )
    return int(random_state)


def _label_kind(value: Any) -> str:
    """``"str"``, ``"int"``, ``"float"``, ``"bool"`` or the type's name: Python and numpy scalars of one kind alike."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return type(value).__name__
