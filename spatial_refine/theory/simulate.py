"""Batched gradient-descent simulations of transfer in deep linear networks.

Every simulation here runs many independent instances in one tensor program. Tensors carry two leading
batch axes ``(I, T)``: ``I`` independent instances (own source vector, own target data) and ``T`` target
angles sharing that instance's data (common random numbers, so transferabilities are paired differences).

Model: ``f(x) = x^T W_1 W_2 ... W_L`` with ``W_1`` of shape ``(d, k)``, hidden ``(k, k)`` layers and a
``(k, 1)`` readout, initialised i.i.d. ``N(0, init_scale^2)`` (the rich regime for small ``init_scale``).
Losses are ``1/2 ||beta - beta*||^2`` (source population loss) and ``1/(2n) ||X beta - y||^2`` (target).
Gradients are computed in closed form (all are rank-one outer products), so a step costs ``O(L k^2 + d k)``
per instance plus the data term. The step size is ``lr_factor / (lambda_max(X^T X / n) * L * max(1,
||beta||)^{2 - 2/L})`` per instance: the stability bound of the balanced network, i.e. a per-instance time
reparametrisation of gradient flow (the paper's fixed learning rates correspond to a constant factor).

Cost: every step reads and writes ``W_1`` a few times, so a step is memory-bound at about
``I * T * d * k`` floats; e.g. 400 instances at ``d = k = 500`` take ~0.13 s per step on one CPU core.
REFINE in the same model is in :mod:`~spatial_refine.theory.refine_linear`, the ReLU student-teacher
variant in :mod:`~spatial_refine.theory.relu`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._torch_utils import as_generator, gram_lambda_max, resolve_dtype, unit_rows

__all__ = [
    "FINETUNE_CONFIG",
    "SCRATCH_CONFIG",
    "DeepLinearNetwork",
    "EmpiricalProblem",
    "GDConfig",
    "GDResult",
    "PopulationProblem",
    "TransferSimulation",
    "finetune",
    "gradient_descent",
    "init_deep_linear",
    "linear_transfer",
    "make_task_vectors",
    "min_norm_least_squares",
    "pretrain_source",
    "sample_target_data",
    "scratch",
    "simulate_transfer",
]


# --------------------------------------------------------------------------------------------------------
# Problems: the gradient of the loss with respect to the end-to-end vector beta, shape (I, T, d)
# --------------------------------------------------------------------------------------------------------
class PopulationProblem:
    """Population loss ``1/2 ||beta - beta_star||^2`` for isotropic Gaussian inputs (plus a constant).

    Parameters
    ----------
    beta_star
        Target vectors, shape ``(I, T, d)`` (``T`` may be 1 and broadcast).
    """

    def __init__(self, beta_star: torch.Tensor) -> None:
        self.beta_star = beta_star
        self.lambda_max = torch.ones(beta_star.shape[0], dtype=beta_star.dtype)

    def grad(self, beta: torch.Tensor) -> torch.Tensor:
        """``dL/dbeta`` for ``beta`` of shape ``(I, T, d)``."""
        return beta - self.beta_star


class EmpiricalProblem:
    """Empirical loss ``1/(2n) ||X beta - y||^2`` with data shared across the ``T`` axis.

    Parameters
    ----------
    x
        Inputs, shape ``(I, n, d)``.
    y
        Labels, shape ``(I, T, n)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        n, d = x.shape[-2], x.shape[-1]
        self.n = n
        self.use_samples = 2 * n < d  # cheaper to go through the samples than through the d x d Gram
        if self.use_samples:
            self.x, self.y = x, y
        else:
            self.gram = x.transpose(-1, -2) @ x / n
            self.xty = y @ x / n
        self.lambda_max = gram_lambda_max(x)

    def grad(self, beta: torch.Tensor) -> torch.Tensor:
        """``dL/dbeta = X^T (X beta - y) / n`` for ``beta`` of shape ``(I, T, d)``."""
        if self.use_samples:
            resid = beta @ self.x.transpose(-1, -2) - self.y
            return resid @ self.x / self.n
        return beta @ self.gram - self.xty


# --------------------------------------------------------------------------------------------------------
# The network and a generic batched gradient-descent loop
# --------------------------------------------------------------------------------------------------------
class DeepLinearNetwork:
    """Batched deep linear network ``beta = W_1 W_2 ... W_L`` with closed-form, in-place updates.

    Parameters
    ----------
    weights
        ``[W_1 (I, T, d, k), W_2 (I, T, k, k), ..., W_L (I, T, k, 1)]``, updated in place.

    Notes
    -----
    Vectors are kept as rows so that every product is a (batched) row-vector times matrix, which is the
    fast path on CPU; every weight gradient is an outer product applied with ``addcmul_`` (one pass).
    """

    def __init__(self, weights: list[torch.Tensor]) -> None:
        if len(weights) < 2:
            raise ValueError("A deep linear network needs at least two layers.")
        self.weights = weights
        self.depth = len(weights)
        self._suffix: list[torch.Tensor] = []

    def forward(self) -> torch.Tensor:
        """End-to-end vectors ``beta``, shape ``(I, T, d)``; caches suffix products for :meth:`update`."""
        suffix = [self.weights[-1].transpose(-1, -2)]  # rows (W_{j+1} ... W_L)^T, built from the top
        for w in reversed(self.weights[1:-1]):
            suffix.append(suffix[-1] @ w.transpose(-1, -2))
        self._suffix = suffix[::-1]  # self._suffix[j] = (W_{j+2} ... W_L)^T for layer index j = 0..L-2
        return (self._suffix[0] @ self.weights[0].transpose(-1, -2)).squeeze(-2)

    def update(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        """One gradient step for ``dL/dbeta = g`` (``(I, T, d)``) with per-instance step sizes ``lr (I, T)``.

        ``dL/dW_j = (W_{j-1}^T ... W_1^T g)(W_{j+1} ... W_L)^T``; call after :meth:`forward`.
        """
        left = [g.unsqueeze(-2)]  # rows g^T W_1 ... W_{j-1}, from the pre-update weights
        for w in self.weights[:-1]:
            left.append(left[-1] @ w)
        step = lr[..., None, None]
        for j, w in enumerate(self.weights):
            if j < self.depth - 1:
                w.addcmul_(step * left[j].transpose(-1, -2), self._suffix[j], value=-1.0)
            else:
                w.sub_(step * left[j].transpose(-1, -2))

    def curvature(self, beta: torch.Tensor) -> torch.Tensor:
        """Largest eigenvalue of the balanced network's preconditioner, ``L max(1, ||beta||)^{2 - 2/L}``."""
        norm = torch.linalg.vector_norm(beta, dim=-1).clamp_min(1.0)
        return self.depth * norm ** (2.0 - 2.0 / self.depth)


@dataclass(frozen=True)
class GDConfig:
    """Full-batch gradient-descent settings.

    Parameters
    ----------
    lr_factor
        Step size as a fraction of the local stability bound (``< 2``; the default is conservative).
    max_steps
        Hard cap on the number of steps.
    tol
        Convergence threshold on ``||grad_beta L||^2`` (or on ``||beta - beta_ref||^2`` when a reference
        solution is given). Converged instances are frozen.
    check_every
        Steps between convergence checks.
    """

    lr_factor: float = 0.5
    max_steps: int = 10_000
    tol: float = 1e-10
    check_every: int = 25


#: Defaults: scratch stops within 1e-6 of the minimum-norm solution (the paper's rule); fine-tuning and
#: REFINE take smaller steps because their limits depend on the path (the balancedness of the weights).
SCRATCH_CONFIG = GDConfig(tol=1e-6, max_steps=10_000)
FINETUNE_CONFIG = GDConfig(lr_factor=0.25, tol=1e-10, max_steps=5_000)


@dataclass
class GDResult:
    """Outcome of :func:`gradient_descent`: steps run, per-instance convergence, final criterion."""

    steps: int
    converged: torch.Tensor
    criterion: torch.Tensor


def gradient_descent(
    net: DeepLinearNetwork | Any,
    problem: PopulationProblem | EmpiricalProblem,
    config: GDConfig,
    beta_ref: torch.Tensor | None = None,
) -> GDResult:
    """Run batched full-batch gradient descent on ``net`` (updated in place) for ``problem``.

    ``net`` provides ``forward() -> beta (I, T, d)``, ``update(g, lr)`` and ``curvature(beta) -> (I, T)``;
    the step size of each instance is ``config.lr_factor / (lambda_max * curvature)``.
    """
    lam = problem.lambda_max.reshape(-1, 1)
    active: torch.Tensor | None = None
    crit = torch.zeros(0)
    step = 0
    for step in range(config.max_steps + 1):
        beta = net.forward()
        g = problem.grad(beta)
        if active is None:
            active = torch.ones(beta.shape[:2], dtype=torch.bool)
        if step % config.check_every == 0 or step == config.max_steps:
            crit = ((beta - beta_ref) ** 2).sum(-1) if beta_ref is not None else (g**2).sum(-1)
            active &= ~(crit <= config.tol)
            if not bool(active.any()) or step == config.max_steps:
                break
        net.update(g, config.lr_factor / (lam * net.curvature(beta)) * active)
    assert active is not None
    return GDResult(steps=step, converged=~active, criterion=crit)


# --------------------------------------------------------------------------------------------------------
# Tasks, data, initialisation
# --------------------------------------------------------------------------------------------------------
def make_task_vectors(
    d: int,
    thetas: Sequence[float] | np.ndarray,
    n_instances: int,
    *,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
    dtype: torch.dtype | str = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit source vectors and target vectors at exact angles.

    ``beta_t = cos(theta) beta_s + sin(theta) beta_perp`` with ``beta_perp`` a random unit vector orthogonal
    to ``beta_s`` (one per instance, shared across angles).

    Returns
    -------
    ``beta_s`` of shape ``(I, d)`` and ``beta_t`` of shape ``(I, T, d)``.
    """
    if d < 2:
        raise ValueError(f"`d` must be >= 2, got {d}.")
    gen = as_generator(random_state)
    dt = resolve_dtype(dtype)
    beta_s = unit_rows(torch.randn(n_instances, d, generator=gen, dtype=dt))
    perp = torch.randn(n_instances, d, generator=gen, dtype=dt)
    perp = unit_rows(perp - (perp * beta_s).sum(-1, keepdim=True) * beta_s)
    th = torch.as_tensor(np.asarray(thetas, dtype=np.float64), dtype=dt).reshape(1, -1, 1)
    beta_t = torch.cos(th) * beta_s[:, None, :] + torch.sin(th) * perp[:, None, :]
    return beta_s, beta_t


def sample_target_data(
    beta_t: torch.Tensor,
    n: int,
    sigma: float,
    *,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gaussian samples per instance: ``X`` of shape ``(I, n, d)`` and ``y = X beta_t + sigma eps``.

    Inputs and noise are shared across the ``T`` axis of ``beta_t`` (shape ``(I, T, d)``); ``y`` has shape
    ``(I, T, n)``.
    """
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}.")
    gen = as_generator(random_state)
    n_inst, _, d = beta_t.shape
    x = torch.randn(n_inst, n, d, generator=gen, dtype=beta_t.dtype)
    eps = torch.randn(n_inst, 1, n, generator=gen, dtype=beta_t.dtype)
    y = beta_t @ x.transpose(-1, -2) + sigma * eps
    return x, y


def init_deep_linear(
    batch_shape: tuple[int, ...],
    d: int,
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-5,
    *,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
    dtype: torch.dtype | str = torch.float64,
) -> list[torch.Tensor]:
    """I.i.d. ``N(0, init_scale^2)`` weights ``[(.., d, k), (.., k, k) x (L - 2), (.., k, 1)]``."""
    if depth < 2:
        raise ValueError(f"`depth` must be >= 2, got {depth}.")
    k = d if width is None else width
    gen = as_generator(random_state)
    dt = resolve_dtype(dtype)
    shapes = [(d, k)] + [(k, k)] * (depth - 2) + [(k, 1)]
    return [init_scale * torch.randn(*batch_shape, *s, generator=gen, dtype=dt) for s in shapes]


def min_norm_least_squares(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares vectors ``X^+ y`` for ``x (I, n, d)``, ``y (I, T, n)`` -> ``(I, T, d)``."""
    return y @ torch.linalg.pinv(x).transpose(-1, -2)


# --------------------------------------------------------------------------------------------------------
# The three training protocols
# --------------------------------------------------------------------------------------------------------
def pretrain_source(
    beta_s: torch.Tensor,
    *,
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-5,
    config: GDConfig | None = None,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[list[torch.Tensor], GDResult]:
    """Train a deep linear network on the source population loss from small initialisation.

    Parameters
    ----------
    beta_s
        Source vectors, shape ``(I, d)``.

    Returns
    -------
    Weights with batch shape ``(I,)`` and the :class:`GDResult`.
    """
    n_inst, d = beta_s.shape
    cfg = config or GDConfig(tol=1e-14)
    weights = init_deep_linear(
        (n_inst, 1), d, depth, width, init_scale, random_state=random_state, dtype=beta_s.dtype
    )
    net = DeepLinearNetwork(weights)
    res = gradient_descent(net, PopulationProblem(beta_s[:, None, :]), cfg)
    return [w[:, 0] for w in net.weights], res


def scratch(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-5,
    config: GDConfig | None = None,
    stop_at_min_norm: bool = True,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[torch.Tensor, GDResult]:
    """Train from small initialisation on the target data; returns ``beta`` ``(I, T, d)`` and the result.

    With ``stop_at_min_norm`` an instance stops once ``||beta - X^+ y||^2 <= config.tol`` (the paper's rule,
    default tolerance ``1e-6``), otherwise on the gradient norm.
    """
    n_inst, n_t, _ = y.shape
    d = x.shape[-1]
    cfg = config or (SCRATCH_CONFIG if stop_at_min_norm else GDConfig())
    weights = init_deep_linear(
        (n_inst, n_t), d, depth, width, init_scale, random_state=random_state, dtype=x.dtype
    )
    net = DeepLinearNetwork(weights)
    ref = min_norm_least_squares(x, y) if stop_at_min_norm else None
    res = gradient_descent(net, EmpiricalProblem(x, y), cfg, beta_ref=ref)
    return net.forward(), res


def linear_transfer(
    w1: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lam: float = 0.0, rcond: float = 1e-2
) -> torch.Tensor:
    """Closed-form readout on frozen features ``F = X W_1``: ``c = (F^T F + n lam I)^{-1} F^T y``.

    Parameters
    ----------
    w1
        Frozen first-layer weights, ``(I, d, k)``.
    x, y
        Target data, ``(I, n, d)`` and ``(I, T, n)``.
    lam
        Ridge strength (the paper's diagrams use ``0.1``). ``0`` gives the minimum-norm solution on the
        numerical range of ``F`` (singular values below ``rcond`` times the largest are dropped: after
        pretraining ``F`` is rank one up to ``O(init_scale)`` noise, Thm 3.4).

    Returns
    -------
    Transferred end-to-end vectors ``W_1 c``, shape ``(I, T, d)``.
    """
    n = x.shape[-2]
    feats = x @ w1  # (I, n, k)
    rhs = y.transpose(-1, -2)  # (I, n, T)
    if lam > 0:
        k = feats.shape[-1]
        if k <= n:
            a = feats.transpose(-1, -2) @ feats + n * lam * torch.eye(k, dtype=x.dtype)
            coef = torch.linalg.solve(a, feats.transpose(-1, -2) @ rhs)
        else:
            a = feats @ feats.transpose(-1, -2) + n * lam * torch.eye(n, dtype=x.dtype)
            coef = feats.transpose(-1, -2) @ torch.linalg.solve(a, rhs)
    else:
        u, s, vh = torch.linalg.svd(feats, full_matrices=False)
        keep = s > rcond * s[..., :1]
        s_inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        coef = vh.transpose(-1, -2) @ (s_inv[..., None] * (u.transpose(-1, -2) @ rhs))
    return (w1 @ coef).transpose(-1, -2)


def finetune(
    weights: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: GDConfig | None = None,
) -> tuple[torch.Tensor, GDResult]:
    """Fine-tune all layers from the pretrained ``weights`` (batch ``(I,)``) on ``(x, y)`` (``T`` targets).

    Returns the fine-tuned ``beta`` ``(I, T, d)`` and the result; the input weights are not modified.
    """
    n_t = y.shape[1]
    cfg = config or FINETUNE_CONFIG
    net = DeepLinearNetwork([w[:, None].expand(-1, n_t, -1, -1).clone() for w in weights])
    res = gradient_descent(net, EmpiricalProblem(x, y), cfg)
    return net.forward(), res


# --------------------------------------------------------------------------------------------------------
# One (gamma, sigma) slice of the phase diagram, all angles and instances batched
# --------------------------------------------------------------------------------------------------------
@dataclass
class TransferSimulation:
    """Per-instance risks of the simulated protocols at one ``(gamma, sigma)`` and several angles.

    Attributes
    ----------
    risks
        Method name -> array ``(n_instances, n_thetas)`` of ``||beta_hat - beta_t||^2``.
    converged
        Method name -> boolean array of the same shape (gradient-trained methods only).
    extras
        Diagnostics, e.g. ``"finetune_c"`` (scale of the frozen null-space component) and ``"refine_k"``.
    """

    d: int
    n: int
    sigma: float
    thetas: np.ndarray
    risks: dict[str, np.ndarray]
    converged: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def gamma(self) -> float:
        """``n / d``."""
        return self.n / self.d

    def mean_risk(self, method: str) -> np.ndarray:
        """Mean risk over instances, per angle."""
        return self.risks[method].mean(axis=0)

    def transferability(self, method: str) -> np.ndarray:
        """Paired estimate of ``E R_scratch - E R_method`` per angle."""
        return (self.risks["scratch"] - self.risks[method]).mean(axis=0)

    def transferability_sem(self, method: str) -> np.ndarray:
        """Standard error of :meth:`transferability` over instances."""
        diff = self.risks["scratch"] - self.risks[method]
        n = diff.shape[0]
        return diff.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(diff.shape[1], np.nan)


def _null_space_scale(beta: torch.Tensor, x: torch.Tensor, beta_s: torch.Tensor) -> torch.Tensor:
    """Least-squares ``c`` in ``(I - P) beta = c (I - P) beta_s`` with ``P`` the row-space projector of ``x``."""
    q = torch.linalg.qr(x.transpose(-1, -2)).Q  # (I, d, n): orthonormal row-space basis

    def perp(v: torch.Tensor) -> torch.Tensor:
        return v - (v @ q) @ q.transpose(-1, -2)

    bs = perp(beta_s[:, None, :])
    return (perp(beta) * bs).sum(-1) / (bs * bs).sum(-1).clamp_min(1e-30)


def simulate_transfer(
    d: int,
    n: int,
    thetas: Sequence[float] | np.ndarray,
    sigma: float = 0.0,
    *,
    n_instances: int = 20,
    methods: Sequence[str] = ("scratch", "linear", "finetune", "refine"),
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-5,
    lam: float = 0.1,
    scratch_config: GDConfig | None = None,
    finetune_config: GDConfig | None = None,
    pretrain_config: GDConfig | None = None,
    pretrained: tuple[torch.Tensor, list[torch.Tensor]] | None = None,
    dtype: torch.dtype | str = torch.float64,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> TransferSimulation:
    """Simulate scratch training, linear transfer, fine-tuning and REFINE at one ``(n, d, sigma)``.

    All angles and instances run as one batch. ``"scratch"`` is always run (transferabilities are paired
    differences against it).

    Parameters
    ----------
    d, n
        Input dimension and number of target samples (``gamma = n / d``).
    thetas
        Source-target angles (radians).
    sigma
        Target label-noise standard deviation.
    n_instances
        Independent instances (source vector, target data, initialisation).
    methods
        Subset of ``"scratch"``, ``"linear"``, ``"finetune"``, ``"refine"``.
    depth, width, init_scale
        Architecture and initialisation scale (width ``None``: ``d``).
    lam
        Ridge strength of the linear-transfer readout (``0.1`` as in the paper's diagrams).
    scratch_config, finetune_config, pretrain_config
        Gradient-descent settings.
    pretrained
        ``(beta_s, weights)`` from an earlier call to reuse the source pretraining (e.g. across a gamma grid).
    dtype
        ``float64`` (default) or ``float32``.
    random_state
        Seed for task vectors, data and initialisations.

    Returns
    -------
    :class:`TransferSimulation`
    """
    unknown = set(methods) - {"scratch", "linear", "finetune", "refine"}
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; choose from scratch, linear, finetune, refine.")
    gen = as_generator(random_state)
    dt = resolve_dtype(dtype)
    thetas = np.atleast_1d(np.asarray(thetas, dtype=np.float64))
    if pretrained is None:
        beta_s, _ = make_task_vectors(d, [0.0], n_instances, random_state=gen, dtype=dt)
        weights, _ = pretrain_source(
            beta_s, depth=depth, width=width, init_scale=init_scale, config=pretrain_config, random_state=gen
        )
    else:
        beta_s, weights = pretrained[0].to(dt), [w.to(dt) for w in pretrained[1]]
        if beta_s.shape != (n_instances, d):
            raise ValueError(f"`pretrained` has shape {tuple(beta_s.shape)}, expected {(n_instances, d)}.")
    # Target vectors at exact angles around the pretrained source vector.
    perp = torch.randn(n_instances, d, generator=gen, dtype=dt)
    perp = unit_rows(perp - (perp * beta_s).sum(-1, keepdim=True) * beta_s)
    th = torch.as_tensor(thetas, dtype=dt).reshape(1, -1, 1)
    beta_t = torch.cos(th) * beta_s[:, None, :] + torch.sin(th) * perp[:, None, :]
    x, y = sample_target_data(beta_t, n, sigma, random_state=gen)

    def risk(beta: torch.Tensor) -> np.ndarray:
        return ((beta - beta_t) ** 2).sum(-1).numpy()

    risks: dict[str, np.ndarray] = {}
    conv: dict[str, np.ndarray] = {}
    extras: dict[str, np.ndarray] = {}
    beta_sc, res = scratch(
        x, y, depth=depth, width=width, init_scale=init_scale, config=scratch_config, random_state=gen
    )
    risks["scratch"], conv["scratch"] = risk(beta_sc), res.converged.numpy()
    if "linear" in methods:
        risks["linear"] = risk(linear_transfer(weights[0], x, y, lam=lam))
    if "finetune" in methods:
        beta_ft, res = finetune(weights, x, y, config=finetune_config)
        risks["finetune"], conv["finetune"] = risk(beta_ft), res.converged.numpy()
        if n < d:
            extras["finetune_c"] = _null_space_scale(beta_ft, x, beta_s).numpy()
    if "refine" in methods:
        from .refine_linear import refine_train

        beta_ref, k, res = refine_train(
            weights[0],
            beta_s,
            x,
            y,
            init_scale=init_scale,
            config=finetune_config or FINETUNE_CONFIG,
            random_state=gen,
        )
        risks["refine"], conv["refine"] = risk(beta_ref), res.converged.numpy()
        extras["refine_k"] = k.numpy()
    return TransferSimulation(
        d=d, n=n, sigma=float(sigma), thetas=thetas, risks=risks, converged=conv, extras=extras
    )
