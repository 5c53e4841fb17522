"""Student-teacher ReLU networks: transfer from a teacher with ablated neurons (Sec. 4, App. C).

Networks are ``f(x) = (1/m) sum_i c_i relu(w_i . x)`` with unit-norm hidden weights (mean-field scaling) and
``x ~ N(0, I_d)``. The target teacher has ``m*`` neurons; the source teacher is the target teacher with a
fraction ``mu`` of its neurons removed. Population inner products are exact through the arc-cosine kernel
``E[relu(w.x) relu(w'.x)] = kappa(w . w')`` (:func:`~spatial_refine.theory.closed_forms.arccos_kernel`), so
pretraining uses the exact population loss and every reported risk is an exact population risk.

All functions batch many independent configurations ``B`` (ablation fractions x seeds) in one tensor program.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from ._torch_utils import as_generator, resolve_dtype, unit_rows

__all__ = [
    "ReluTeacher",
    "ReluTransferResult",
    "fit_power_law",
    "kappa",
    "kappa_prime",
    "l2_inner",
    "make_teachers",
    "pretrain_student_population",
    "projection_residual",
    "readout_fit",
    "relu_risk",
    "simulate_relu_transfer",
    "train_student_empirical",
]


def kappa(u: torch.Tensor) -> torch.Tensor:
    """Arc-cosine kernel of degree one for unit vectors: ``(sqrt(1 - u^2) + u (pi - arccos u)) / (2 pi)``."""
    u = u.clamp(-1.0, 1.0)
    return (torch.sqrt((1 - u * u).clamp_min(0.0)) + u * (math.pi - torch.arccos(u))) / (2 * math.pi)


def kappa_prime(u: torch.Tensor) -> torch.Tensor:
    """Derivative ``kappa'(u) = (pi - arccos u) / (2 pi)`` (finite at ``u = +-1``)."""
    return (math.pi - torch.arccos(u.clamp(-1.0, 1.0))) / (2 * math.pi)


def l2_inner(w_a: torch.Tensor, c_a: torch.Tensor, w_b: torch.Tensor, c_b: torch.Tensor) -> torch.Tensor:
    """``E[f_a f_b]`` for ``f = sum_i c_i relu(w_i . x)`` (no ``1/m`` here): ``c_a^T kappa(W_a W_b^T) c_b``.

    Shapes ``w (B, m, d)`` with unit rows, ``c (B, m)``; returns ``(B,)``.
    """
    k = kappa(w_a @ w_b.transpose(-1, -2))
    return ((c_a.unsqueeze(-2) @ k) @ c_b.unsqueeze(-1)).reshape(-1)


def relu_risk(w: torch.Tensor, c: torch.Tensor, w_t: torch.Tensor, c_t: torch.Tensor) -> torch.Tensor:
    """Exact population risk ``E (f - f_t)^2`` with coefficients already divided by the widths."""
    return l2_inner(w, c, w, c) - 2 * l2_inner(w, c, w_t, c_t) + l2_inner(w_t, c_t, w_t, c_t)


@dataclass
class ReluTeacher:
    """Target and source teachers; coefficients include the ``1/m*`` factor (ablated neurons set to 0)."""

    w: torch.Tensor
    c_target: torch.Tensor
    c_source: torch.Tensor
    mu: np.ndarray


def make_teachers(
    d: int,
    m_teacher: int,
    mus: Sequence[float],
    n_seeds: int = 1,
    *,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
    dtype: torch.dtype | str = torch.float64,
) -> ReluTeacher:
    """Random target teachers (unit hidden weights, output weights ``+-1 / m*``) and their ablated sources.

    The batch enumerates ``mus`` (outer) x seeds (inner); each seed has its own teacher, shared across ``mus``,
    and the ablated set for a larger ``mu`` contains the one for a smaller ``mu`` (a nested random order).
    """
    gen = as_generator(random_state)
    dt = resolve_dtype(dtype)
    mus_arr = np.asarray(mus, dtype=np.float64)
    if np.any((mus_arr < 0) | (mus_arr > 1)):
        raise ValueError("Ablation fractions `mus` must lie in [0, 1].")
    w = unit_rows(torch.randn(n_seeds, m_teacher, d, generator=gen, dtype=dt))
    signs = torch.where(torch.rand(n_seeds, m_teacher, generator=gen) < 0.5, -1.0, 1.0).to(dt)
    c = signs / m_teacher
    order = torch.stack([torch.randperm(m_teacher, generator=gen) for _ in range(n_seeds)])
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(m_teacher).expand(n_seeds, -1).contiguous())
    c_src = []
    for mu in mus_arr:
        n_ablate = round(mu * m_teacher)
        c_src.append(torch.where(rank < n_ablate, torch.zeros_like(c), c))
    n_mu = len(mus_arr)
    return ReluTeacher(
        w=w.repeat(n_mu, 1, 1),
        c_target=c.repeat(n_mu, 1),
        c_source=torch.cat(c_src, 0),
        mu=np.repeat(mus_arr, n_seeds),
    )


def pretrain_student_population(
    w_teacher: torch.Tensor,
    c_teacher: torch.Tensor,
    m: int,
    *,
    steps: int = 2000,
    lr: float = 1.0,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-field gradient descent of a width-``m`` student on the exact population loss to a teacher.

    Hidden weights move on the unit sphere (projected gradient, then renormalised); both layers use the
    mean-field time scale (gradients multiplied by ``m``). Output weights start at zero.

    Returns
    -------
    ``(W (B, m, d), c (B, m))`` with ``c`` including the ``1/m`` factor.
    """
    gen = as_generator(random_state)
    n_b, _, d = w_teacher.shape
    dt = w_teacher.dtype
    w = unit_rows(torch.randn(n_b, m, d, generator=gen, dtype=dt))
    a = torch.zeros(n_b, m, dtype=dt)  # raw output weights; f = (1/m) sum a_i relu(w_i . x)
    for _ in range(steps):
        u_ss = w @ w.transpose(-1, -2)
        u_st = w @ w_teacher.transpose(-1, -2)
        c = a / m
        # dL/dc_i for L = 1/2 E(f - f*)^2, with c = a / m; mean-field: da = -m * dL/da = -dL/dc.
        grad_c = (kappa(u_ss) @ c.unsqueeze(-1) - kappa(u_st) @ c_teacher.unsqueeze(-1)).squeeze(-1)
        # dL/dw_i = c_i [sum_k c_k kappa'(u_ik) w_k - sum_j c*_j kappa'(u_ij*) w*_j]; mean-field: x m.
        g_w = c.unsqueeze(-1) * (
            (kappa_prime(u_ss) * c.unsqueeze(-2)) @ w
            - (kappa_prime(u_st) * c_teacher.unsqueeze(-2)) @ w_teacher
        )
        g_w = g_w - (g_w * w).sum(-1, keepdim=True) * w
        a = a - lr * grad_c
        w = unit_rows(w - lr * m * g_w)
    return w, a / m


def train_student_empirical(
    x: torch.Tensor,
    y: torch.Tensor,
    m: int,
    *,
    steps: int = 2000,
    lr: float = 1.0,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scratch training: mean-field gradient descent on ``1/(2n) sum (f(x) - y)^2`` from random hidden weights.

    Shapes ``x (B, n, d)``, ``y (B, n)``. Returns ``(W, c)`` as in :func:`pretrain_student_population`.
    """
    gen = as_generator(random_state)
    n_b, n, d = x.shape
    dt = x.dtype
    w = unit_rows(torch.randn(n_b, m, d, generator=gen, dtype=dt))
    a = torch.zeros(n_b, m, dtype=dt)
    for _ in range(steps):
        pre = x @ w.transpose(-1, -2)  # (B, n, m)
        act = pre.clamp_min(0.0)
        resid = (act @ a.unsqueeze(-1)).squeeze(-1) / m - y  # (B, n)
        grad_a = (act.transpose(-1, -2) @ resid.unsqueeze(-1)).squeeze(-1) / n  # m * dL/da
        gate = (pre > 0).to(dt) * resid.unsqueeze(-1)  # (B, n, m)
        g_w = a.unsqueeze(-1) * (gate.transpose(-1, -2) @ x) / n  # m * dL/dw_i
        g_w = g_w - (g_w * w).sum(-1, keepdim=True) * w
        a = a - lr * grad_a
        w = unit_rows(w - lr * g_w)
    return w, a / m


def readout_fit(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3) -> torch.Tensor:
    """Linear transfer: ridge readout ``c`` on frozen features ``relu(X W^T)`` (``n lam`` penalty).

    A small ridge (default ``1e-3``) tames the interpolation peak of the readout at ``n = m``.
    Returns coefficients ``(B, m)`` for ``f = sum_i c_i relu(w_i . x)``.
    """
    n = x.shape[-2]
    phi = (x @ w.transpose(-1, -2)).clamp_min(0.0)  # (B, n, m)
    m = phi.shape[-1]
    if m <= n:
        a = phi.transpose(-1, -2) @ phi + n * lam * torch.eye(m, dtype=x.dtype)
        return torch.linalg.solve(a, phi.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1)
    a = phi @ phi.transpose(-1, -2) + n * lam * torch.eye(n, dtype=x.dtype)
    return (phi.transpose(-1, -2) @ torch.linalg.solve(a, y.unsqueeze(-1))).squeeze(-1)


def projection_residual(
    w: torch.Tensor, w_t: torch.Tensor, c_t: torch.Tensor, rcond: float = 1e-8
) -> torch.Tensor:
    """``||P_perp f_t||^2``: squared L2 distance from the target to the span of the features ``relu(w_i . x)``.

    The irreducible error of linear transfer (Eq. 21, App. C): ``||f_t||^2 - b^T K^+ b`` with the feature
    Gram ``K = kappa(W W^T)`` (the Mercer eigenfunctions come from its eigendecomposition) and
    ``b = kappa(W W_t^T) c_t``; eigenvalues below ``rcond`` times the largest are dropped.
    """
    k = kappa(w @ w.transpose(-1, -2))
    b = kappa(w @ w_t.transpose(-1, -2)) @ c_t.unsqueeze(-1)
    evals, evecs = torch.linalg.eigh(k)
    keep = evals > rcond * evals[..., -1:]
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    proj = evecs.transpose(-1, -2) @ b
    captured = (inv.unsqueeze(-1) * proj * proj).sum((-2, -1))
    total = l2_inner(w_t, c_t, w_t, c_t)
    return (total - captured).clamp_min(0.0)


def fit_power_law(n: ArrayLike, err: ArrayLike) -> tuple[float, float]:
    """Least-squares fit of ``err = A n^{-b}`` in log-log space; returns ``(A, b)``."""
    n_arr, e_arr = np.asarray(n, dtype=np.float64), np.asarray(err, dtype=np.float64)
    ok = (n_arr > 0) & (e_arr > 0) & np.isfinite(e_arr)
    if ok.sum() < 2:
        raise ValueError("Need at least two positive, finite points to fit a power law.")
    slope, intercept = np.polyfit(np.log(n_arr[ok]), np.log(e_arr[ok]), 1)
    return float(np.exp(intercept)), float(-slope)


@dataclass
class ReluTransferResult:
    """Exact population risks of scratch training and linear transfer, per ``(mu, n)`` and seed.

    Attributes
    ----------
    mus, ns
        Ablation fractions and target sample sizes.
    scratch, linear
        Risks of shape ``(len(mus), len(ns), n_seeds)``.
    irreducible
        ``||P_perp f_t||^2`` in the pretrained feature span, shape ``(len(mus), n_seeds)``.
    source_risk
        Population risk of the pretrained student on its source, shape ``(len(mus), n_seeds)``.
    """

    mus: np.ndarray
    ns: np.ndarray
    scratch: np.ndarray
    linear: np.ndarray
    irreducible: np.ndarray
    source_risk: np.ndarray

    def transferability(self) -> np.ndarray:
        """``E R_scratch - E R_linear`` per ``(mu, n)`` (mean over seeds)."""
        return (self.scratch - self.linear).mean(-1)


def simulate_relu_transfer(
    mus: Sequence[float],
    ns: Sequence[int],
    *,
    d: int = 20,
    m: int = 200,
    m_teacher: int = 20,
    n_seeds: int = 3,
    pretrain_steps: int = 2000,
    scratch_steps: int = 2000,
    lr: float = 1.0,
    lam: float = 1e-3,
    dtype: torch.dtype | str = torch.float64,
    random_state: int | np.random.Generator | torch.Generator | None = 0,
) -> ReluTransferResult:
    """Student-teacher ReLU transfer with ablated-teacher sources (the paper: ``d=100, m=1000, m*=100``).

    For each ablation fraction ``mu`` and seed, a student is pretrained on the source population loss; for
    each ``n``, linear transfer fits a ridge readout on the frozen features and a scratch student is trained
    on the same ``n`` samples. All ``(mu, seed)`` configurations are batched. Defaults are a reduced size
    that runs in seconds on a CPU.
    """
    gen = as_generator(random_state)
    dt = resolve_dtype(dtype)
    teach = make_teachers(d, m_teacher, mus, n_seeds, random_state=gen, dtype=dt)
    w_pre, c_pre = pretrain_student_population(
        teach.w, teach.c_source, m, steps=pretrain_steps, lr=lr, random_state=gen
    )
    n_mu = len(mus)
    src = relu_risk(w_pre, c_pre, teach.w, teach.c_source).reshape(n_mu, n_seeds)
    irr = projection_residual(w_pre, teach.w, teach.c_target).reshape(n_mu, n_seeds)
    scratch_r = np.empty((n_mu, len(ns), n_seeds))
    linear_r = np.empty_like(scratch_r)
    # Scratch training does not depend on mu (same target teacher per seed): train once per (n, seed).
    w_target, c_target = teach.w[:n_seeds], teach.c_target[:n_seeds]
    for j, n in enumerate(ns):
        x = torch.randn(n_seeds, int(n), d, generator=gen, dtype=dt)
        y = ((x @ w_target.transpose(-1, -2)).clamp_min(0.0) @ c_target.unsqueeze(-1)).squeeze(-1)
        w_sc, c_sc = train_student_empirical(x, y, m, steps=scratch_steps, lr=lr, random_state=gen)
        r_sc = relu_risk(w_sc, c_sc, w_target, c_target).numpy()
        scratch_r[:, j, :] = r_sc[None, :]
        x_all, y_all = x.repeat(n_mu, 1, 1), y.repeat(n_mu, 1)
        c_lt = readout_fit(w_pre, x_all, y_all, lam=lam)
        linear_r[:, j, :] = relu_risk(w_pre, c_lt, teach.w, teach.c_target).reshape(n_mu, n_seeds).numpy()
    return ReluTransferResult(
        mus=np.asarray(mus, dtype=np.float64),
        ns=np.asarray(ns),
        scratch=scratch_r,
        linear=linear_r,
        irreducible=irr.numpy(),
        source_risk=src.numpy(),
    )
