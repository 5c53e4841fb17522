"""Small torch helpers shared by the simulators (seeding, dtype, batched linear algebra)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_generator", "gram_lambda_max", "resolve_dtype", "unit_rows"]


def as_generator(random_state: int | np.random.Generator | torch.Generator | None) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed, a numpy ``Generator``, a torch generator or ``None``."""
    if isinstance(random_state, torch.Generator):
        return random_state
    gen = torch.Generator()
    if random_state is None:
        gen.seed()
    elif isinstance(random_state, np.random.Generator):
        gen.manual_seed(int(random_state.integers(0, 2**62)))
    elif isinstance(random_state, int | np.integer):
        gen.manual_seed(int(random_state))
    else:
        raise TypeError(
            f"`random_state` must be an int, a numpy/torch Generator or None, got {type(random_state)}."
        )
    return gen


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` / ``torch.float64`` from a dtype or its name."""
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, None)  # type: ignore[arg-type]
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype!r}.")
    return dtype  # type: ignore[return-value]


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (last axis) scaled to unit Euclidean norm."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def gram_lambda_max(x: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of ``X^T X / n`` for a batch ``x`` of shape ``(..., n, d)`` (via the smaller Gram)."""
    n, d = x.shape[-2], x.shape[-1]
    gram = x @ x.transpose(-1, -2) if n <= d else x.transpose(-1, -2) @ x
    return torch.linalg.eigvalsh(gram)[..., -1] / n
