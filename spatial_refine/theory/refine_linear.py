"""REFINE in the deep linear model: frozen pretrained features + trainable residual path + linear head.

``f(x) = [x^T W_1, x^T V] . [w; u]``: ``W_1`` (``d x k``) is the frozen first layer of the source-pretrained
network (rank one along ``beta_s`` after pretraining, Thm 3.4); the residual path ``x^T V u`` is a two-layer
linear network trained from small initialisation; the head ``[w; u]`` is a single linear layer over the
concatenated features, with ``w`` started at zero. The end-to-end vector is ``beta = W_1 w + V u``.

Closed-form expectations for this model are :func:`~spatial_refine.theory.closed_forms.refine_risk` and
:func:`~spatial_refine.theory.closed_forms.refine_transferability`.
"""

from __future__ import annotations

import numpy as np
import torch

from ._torch_utils import as_generator
from .simulate import EmpiricalProblem, GDConfig, GDResult, gradient_descent

__all__ = ["RefineLinearNetwork", "refine_train"]


class RefineLinearNetwork:
    """Batched REFINE linear model with closed-form gradients.

    Parameters
    ----------
    w1
        Frozen features ``(I, d, k)``, shared across the ``T`` targets of an instance.
    n_targets
        ``T``, the number of targets per instance.
    residual_width
        Width of the residual path (``None``: ``d``).
    init_scale
        Standard deviation of the residual-path initialisation (the head on frozen features starts at 0).
    random_state
        Seed or generator for the initialisation.
    """

    def __init__(
        self,
        w1: torch.Tensor,
        n_targets: int,
        residual_width: int | None = None,
        init_scale: float = 1e-5,
        *,
        random_state: int | np.random.Generator | torch.Generator | None = 0,
    ) -> None:
        gen = as_generator(random_state)
        n_inst, d, k = w1.shape
        kr = d if residual_width is None else residual_width
        dt = w1.dtype
        self.w1 = w1
        self.head = torch.zeros(n_inst, n_targets, k, dtype=dt)
        self.v = init_scale * torch.randn(n_inst, n_targets, d, kr, generator=gen, dtype=dt)
        self.u = init_scale * torch.randn(n_inst, n_targets, kr, 1, generator=gen, dtype=dt)
        self._w1_norm2 = torch.linalg.matrix_norm(w1, ord=2).reshape(-1, 1) ** 2

    def frozen_part(self) -> torch.Tensor:
        """Contribution of the frozen features, ``W_1 w``, shape ``(I, T, d)``."""
        return self.head @ self.w1.transpose(-1, -2)

    def residual_part(self) -> torch.Tensor:
        """Contribution of the residual path, ``V u``, shape ``(I, T, d)``."""
        return (self.u.transpose(-1, -2) @ self.v.transpose(-1, -2)).squeeze(-2)

    def forward(self) -> torch.Tensor:
        """End-to-end vectors ``beta = W_1 w + V u``, shape ``(I, T, d)``."""
        return self.frozen_part() + self.residual_part()

    def update(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        """One gradient step for ``dL/dbeta = g`` with per-instance step sizes ``lr (I, T)``."""
        g_row = g.unsqueeze(-2)
        grad_u = (g_row @ self.v).transpose(-1, -2)  # V^T g, from the pre-update V
        self.head.sub_(lr[..., None] * (g @ self.w1))
        self.v.addcmul_((lr[..., None] * g).unsqueeze(-1), self.u.transpose(-1, -2), value=-1.0)
        self.u.sub_(lr[..., None, None] * grad_u)

    def curvature(self, beta: torch.Tensor) -> torch.Tensor:
        """Stability bound: ``||W_1||_2^2`` (frozen path) plus ``2 max(1, ||V u||)`` (residual path)."""
        res = torch.linalg.vector_norm(self.residual_part(), dim=-1).clamp_min(1.0)
        return self._w1_norm2 + 2.0 * res


def refine_train(
    w1: torch.Tensor,
    beta_s: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    residual_width: int | None = None,
    init_scale: float = 1e-5,
    config: GDConfig | None = None,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[torch.Tensor, torch.Tensor, GDResult]:
    """Train REFINE's head and residual path on target data by full-batch gradient descent.

    Parameters
    ----------
    w1
        Frozen pretrained first layer ``(I, d, k)``.
    beta_s
        Source vectors ``(I, d)`` (to report the frozen-path coefficient ``k``).
    x, y
        Target data ``(I, n, d)``, ``(I, T, n)``.
    residual_width, init_scale
        Residual-path width and initialisation scale.
    config
        Gradient-descent settings.
    random_state
        Seed or generator.

    Returns
    -------
    ``beta`` ``(I, T, d)``, the frozen-path coefficient ``k = beta_s . W_1 w`` ``(I, T)`` and the result.
    """
    net = RefineLinearNetwork(w1, y.shape[1], residual_width, init_scale, random_state=random_state)
    res = gradient_descent(net, EmpiricalProblem(x, y), config or GDConfig())
    k = (net.frozen_part() * beta_s[:, None, :]).sum(-1)
    return net.forward(), k, res
