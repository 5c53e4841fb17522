"""Synthetic transfer tasks with known structure, for tests, benchmarks and tutorials.

The raw input ``X`` has two blocks of independent standard-normal columns: ``X_src`` (what the source
model saw) and ``X_new`` (information the source never encoded). The frozen features are a fixed
random nonlinear map of ``X_src`` (a stand-in for a pretrained network: useful, but hard to learn
from a few samples). The target is then

- ``"aligned"``: a linear function of the frozen features (transfer should help);
- ``"noise"``: a function of ``X_new`` only while the frozen features are replaced by noise
  independent of everything (transfer can only hurt: negative transfer for a probe);
- ``"mixed"``: half from the frozen features, half from ``X_new`` (the residual path is needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["TransferTask", "make_transfer_task"]

Case = Literal["aligned", "noise", "mixed"]


@dataclass(frozen=True)
class TransferTask:
    """Arrays of one synthetic task: raw input, frozen features, classification labels and a real target."""

    X: np.ndarray
    features: np.ndarray
    y: np.ndarray
    y_continuous: np.ndarray
    case: str


def make_transfer_task(
    case: Case,
    n_samples: int,
    *,
    n_source_inputs: int = 10,
    n_new_inputs: int = 10,
    n_features: int = 64,
    task_seed: int = 0,
    random_state: int = 0,
) -> TransferTask:
    """Draw ``n_samples`` samples of a synthetic transfer task.

    Parameters
    ----------
    case
        ``"aligned"``, ``"noise"`` or ``"mixed"`` (see the module docstring).
    n_samples
        Number of samples.
    n_source_inputs, n_new_inputs
        Widths of the two input blocks.
    n_features
        Width of the frozen features.
    task_seed
        Fixes the task itself (the source's map and the target's weights): use the same value for the
        training and the test draw.
    random_state
        Seeds the samples.

    Returns
    -------
    :class:`TransferTask`; ``y`` is the sign of ``y_continuous`` (balanced classes, 0/1).
    """
    if case not in ("aligned", "noise", "mixed"):
        raise ValueError(f"case must be 'aligned', 'noise' or 'mixed', got {case!r}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}.")
    task = np.random.default_rng(task_seed)
    source_map = task.normal(size=(n_source_inputs, n_features)) / np.sqrt(n_source_inputs)
    source_bias = task.normal(size=n_features) * 0.5
    readout = task.normal(size=n_features)
    new_direction = task.normal(size=n_new_inputs)

    rng = np.random.default_rng(random_state)
    x_src = rng.normal(size=(n_samples, n_source_inputs))
    x_new = rng.normal(size=(n_samples, n_new_inputs))
    features = np.tanh(2.0 * (x_src @ source_map + source_bias))

    def standardized(v: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return (v - reference.mean()) / reference.std()

    # Standardise each part with population statistics of the task (a large fixed reference draw), so
    # the training and test draws share one target function.
    ref_rng = np.random.default_rng(task_seed + 10_000)
    ref_features = np.tanh(2.0 * (ref_rng.normal(size=(20_000, n_source_inputs)) @ source_map + source_bias))
    from_features = standardized(features @ readout, ref_features @ readout)
    from_new = x_new @ new_direction / np.linalg.norm(new_direction)
    # a nonlinear function of the new inputs, so a probe on anything linear cannot shortcut it
    from_new = from_new + 0.5 * (x_new[:, 0] ** 2 - 1.0)

    if case == "aligned":
        target = from_features
    elif case == "noise":
        target = from_new
        features = rng.normal(size=features.shape)
    else:
        target = (from_features + from_new) / np.sqrt(2.0)
    X = np.hstack([x_src, x_new]).astype(np.float32)
    return TransferTask(
        X=X,
        features=features.astype(np.float32),
        y=(target > 0).astype(np.int64),
        y_continuous=target.astype(np.float32),
        case=case,
    )
