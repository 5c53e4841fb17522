"""Closed-form risks and transferabilities for deep linear networks ("Features are fate").

Setting (Tahir, Ganguli & Rotskoff, ICML 2025): inputs ``x ~ N(0, I_d)``, labels ``y = beta^T x + eps`` with
``eps ~ N(0, sigma^2)``, unit source and target vectors with ``beta_s . beta_t = cos(theta)``, ``gamma = n / d``.
The risk of an estimate is ``R = ||beta_hat - beta_t||^2`` (noise-free test targets) and the transferability
is the difference ``T = E[R_scratch] - E[R_transfer]`` (``T > 0``: transfer helps).

Everything here is plain numpy (no torch, no scipy) and broadcasts over array arguments. Functions return a
numpy ``float64`` array (a 0-d array for scalar input); ``inf`` marks a divergent risk (the interpolation peak
of double descent) and ``nan`` an empty phase boundary.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "arccos_kernel",
    "finetune_refinement_factor",
    "finetune_risk_excess",
    "finetune_theta_threshold",
    "finetune_transferability",
    "finite_source_finetune_transferability",
    "label_shift_kl",
    "linear_transfer_risk",
    "linear_transferability",
    "negative_transfer_boundaries",
    "overparameterized_boundary",
    "refine_risk",
    "refine_transferability",
    "ridge_linear_transfer_risk",
    "scratch_risk",
    "theta_threshold",
]

Array = NDArray[np.float64]


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def _check_nonneg(name: str, x: Array) -> None:
    if np.any(x < 0):
        raise ValueError(f"`{name}` must be non-negative, got min {np.min(x)!r}.")


# --------------------------------------------------------------------------------------------------------
# Scratch training: minimum-norm least squares (Thms 3.5-3.6), double descent
# --------------------------------------------------------------------------------------------------------
def scratch_risk(gamma: ArrayLike, sigma: ArrayLike = 0.0, d: int | None = None) -> Array:
    """Expected risk of the scratch-trained network (the minimum-norm least-squares interpolator).

    Parameters
    ----------
    gamma
        Target samples per dimension, ``n / d``.
    sigma
        Label-noise standard deviation.
    d
        Input dimension. ``None`` gives the high-dimensional limit (Thm 3.6):
        ``(1 - gamma) + gamma sigma^2 / (1 - gamma)`` for ``gamma < 1`` and ``sigma^2 / (gamma - 1)`` for
        ``gamma > 1``. With ``d`` the exact finite-size forms are used (``n = gamma d``, inverse-Wishart
        means): ``1 - n/d + sigma^2 n / (d - n - 1)`` for ``n < d - 1`` and ``sigma^2 d / (n - d - 1)`` for
        ``n > d + 1``.

    Returns
    -------
    The expected risk; ``inf`` where it diverges (``gamma = 1``, or ``|n - d| <= 1`` at finite size, when
    ``sigma > 0``). With ``sigma = 0`` the overparameterised branch is finite at the peak.
    """
    _check_nonneg("sigma", _f(sigma))
    g, s2 = np.broadcast_arrays(_f(gamma), _f(sigma) ** 2)
    _check_nonneg("gamma", g)
    out = np.empty(g.shape, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if d is None:
            under = g < 1
            out[under] = (1 - g[under]) + g[under] * s2[under] / (1 - g[under])
            over = ~under
            out[over] = np.where(s2[over] > 0, s2[over] / (g[over] - 1), 0.0)
        else:
            n = g * d
            under = n < d - 1
            over = n > d + 1
            peak = ~(under | over)
            out[under] = 1 - n[under] / d + s2[under] * n[under] / (d - n[under] - 1)
            out[over] = s2[over] * d / (n[over] - d - 1)
            out[peak] = np.where(s2[peak] > 0, np.inf, np.clip(1 - n[peak] / d, 0.0, None))
    out[np.isnan(out)] = np.inf
    out[np.isnan(g) | np.isnan(s2)] = np.nan  # an undefined input stays undefined
    return out


# --------------------------------------------------------------------------------------------------------
# Linear transfer: frozen rank-one features, least-squares / ridge readout (Thms 3.7-3.8)
# --------------------------------------------------------------------------------------------------------
def _chi2_expectation(n: int, fn: Any, n_grid: int = 4001) -> float:
    """``E[fn(S)]`` for ``S ~ chi^2_n``, by the trapezoid rule on the density (numpy only)."""
    lo = max(0.0, n - 14.0 * math.sqrt(2.0 * n) - 10.0)
    hi = n + 14.0 * math.sqrt(2.0 * n) + 40.0
    s = np.linspace(lo, hi, n_grid)
    power = n / 2 - 1
    with np.errstate(divide="ignore"):
        log_s_term = power * np.log(s) if power != 0 else np.zeros_like(s)
    logpdf = log_s_term - s / 2 - (n / 2) * math.log(2.0) - math.lgamma(n / 2)
    pdf = np.exp(logpdf)
    pdf[~np.isfinite(pdf)] = 0.0
    vals = fn(s) * pdf
    dx = s[1] - s[0]
    return float(np.sum((vals[1:] + vals[:-1]) * 0.5 * dx))


def ridge_linear_transfer_risk(
    theta: ArrayLike, lam: ArrayLike, sigma: float = 0.0, n: int | None = None
) -> Array:
    """Risk of ridge linear transfer on the pretrained (rank-one, unit-scale) features.

    The readout is ``c = (F^T F + n lam I)^{-1} F^T y`` with ``F = X W_1``; after pretraining
    ``W_1 = beta_s a^T`` with ``||a|| = 1`` (Thm 3.4, balanced weights), so the transferred predictor is
    ``k beta_s`` with ``k = z^T y / (||z||^2 + n lam)`` and ``z = X beta_s``.

    Parameters
    ----------
    theta
        Angle between source and target vectors (radians).
    lam
        Ridge strength ``lambda >= 0`` (per-sample scaling, as in ``n lam I``).
    sigma
        Label-noise standard deviation (only enters at finite ``n``).
    n
        Number of target samples. ``None`` gives the limit of Thm 3.8,
        ``1 - (1 + 2 lam) / (1 + lam)^2 cos^2(theta)`` (increasing in ``lam``: ridge never helps). With ``n``
        the exact finite-sample risk ``sin^2 + E_S[cos^2 (n lam)^2 / (S + n lam)^2 + (sin^2 + sigma^2) S /
        (S + n lam)^2]`` with ``S = ||z||^2 ~ chi^2_n`` is integrated numerically (equals Thm 3.7 at
        ``lam = 0``).
    """
    th, lm = np.broadcast_arrays(_f(theta), _f(lam))
    _check_nonneg("lam", lm)
    c2, s2 = np.cos(th) ** 2, np.sin(th) ** 2
    if n is None:
        return 1.0 - (1.0 + 2.0 * lm) / (1.0 + lm) ** 2 * c2
    if n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}.")
    out = np.empty(th.shape, dtype=np.float64)
    for idx in np.ndindex(th.shape):
        lam_n = float(lm[idx]) * n
        if lam_n == 0.0:
            out[idx] = s2[idx] + (s2[idx] + sigma**2) / (n - 2) if n > 2 else np.inf
            continue
        bias = _chi2_expectation(n, lambda s, a=lam_n: a**2 / (s + a) ** 2)
        var = _chi2_expectation(n, lambda s, a=lam_n: s / (s + a) ** 2)
        out[idx] = s2[idx] + c2[idx] * bias + (s2[idx] + sigma**2) * var
    return out


def linear_transfer_risk(
    gamma: ArrayLike,
    theta: ArrayLike,
    sigma: ArrayLike = 0.0,
    d: int | None = None,
    lam: float = 0.0,
) -> Array:
    """Expected risk of linear transfer (frozen pretrained features, retrained readout).

    Parameters
    ----------
    gamma
        ``n / d``.
    theta
        Source-target angle (radians).
    sigma
        Label-noise standard deviation.
    d
        Input dimension. ``None``: the limit ``sin^2(theta)`` (or Thm 3.8 with ``lam > 0``). With ``d``:
        Thm 3.7, exact for ``n > 2``: ``sin^2 + (sigma^2 + sin^2) / (n - 2)`` (or the finite-``n`` ridge
        risk, see :func:`ridge_linear_transfer_risk`); ``inf`` for ``n = 1, 2`` without ridge (the expectation
        diverges), and ``1`` for ``n = 0`` (no samples: the readout stays zero, the risk of predicting 0).
    lam
        Ridge strength of the readout (``0``: minimum-norm least squares).
    """
    g, th, sg = np.broadcast_arrays(_f(gamma), _f(theta), _f(sigma))
    _check_nonneg("gamma", g)
    if d is None:
        return np.asarray(ridge_linear_transfer_risk(th, lam), dtype=np.float64) + 0.0 * g + 0.0 * sg
    out = np.empty(g.shape, dtype=np.float64)
    for idx in np.ndindex(g.shape):
        n = round(float(g[idx]) * d)
        if n == 0:
            out[idx] = 1.0
        elif n <= 2 and lam == 0:
            out[idx] = np.inf
        else:
            out[idx] = ridge_linear_transfer_risk(th[idx], lam, float(sg[idx]), n=n)
    return out


def linear_transferability(
    gamma: ArrayLike,
    theta: ArrayLike,
    sigma: ArrayLike = 0.0,
    d: int | None = None,
    lam: float = 0.0,
) -> Array:
    """Linear-transfer transferability ``T_lt = E R_scratch - E R_lt``.

    In the high-dimensional limit with ``lam = 0`` this is ``R_sc(gamma) - sin^2(theta)`` (Eq. 13). With
    ``d`` the finite-size risks of :func:`scratch_risk` and :func:`linear_transfer_risk` are used. ``-inf`` /
    ``+inf`` propagate from the divergent scratch risk at the interpolation peak.
    """
    return scratch_risk(gamma, sigma, d) - linear_transfer_risk(gamma, theta, sigma, d, lam)


def theta_threshold(sigma: ArrayLike) -> Array:
    """Smallest angle with an underparameterised negative-transfer region: ``arccos(1 - sigma)``.

    For ``sigma >= 1`` there is none (returns ``nan``); ``sigma = 0`` gives ``0``.
    """
    s = _f(sigma)
    _check_nonneg("sigma", s)
    with np.errstate(invalid="ignore"):
        return np.where(s < 1, np.arccos(np.clip(1 - s, -1.0, 1.0)), np.nan)


def negative_transfer_boundaries(theta: ArrayLike, sigma: ArrayLike = 0.0) -> tuple[Array, Array]:
    """Phase boundaries ``(g-, g+)`` of negative linear transfer for ``gamma < 1``.

    ``T_lt < 0`` exactly for ``g- < gamma < g+`` with
    ``g+- = [(1 + cos^2 - sigma^2) +- sqrt((1 + cos^2 - sigma^2)^2 - 4 cos^2)] / 2``
    (the roots of ``gamma^2 - (1 + cos^2 - sigma^2) gamma + cos^2 = 0``). The interval is non-empty iff
    ``theta > arccos(1 - sigma)``; otherwise both entries are ``nan``.
    """
    th, s = np.broadcast_arrays(_f(theta), _f(sigma))
    c2 = np.cos(th) ** 2
    b = 1 + c2 - s**2
    disc = b**2 - 4 * c2
    ok = (disc > 0) & (b > 0)
    root = np.sqrt(np.where(ok, disc, 0.0))
    lo = np.where(ok, (b - root) / 2, np.nan)
    hi = np.where(ok, np.minimum((b + root) / 2, 1.0), np.nan)
    # Exactly orthogonal features: g- is 0 up to rounding.
    lo = np.where(ok & np.isclose(c2, 0.0, atol=1e-15), 0.0, lo)
    return lo, hi


def overparameterized_boundary(theta: ArrayLike, sigma: ArrayLike = 0.0) -> Array:
    """For ``gamma > 1`` linear transfer is negative iff ``gamma > 1 + sigma^2 / sin^2(theta)``.

    Returns that threshold (``inf`` at ``theta = 0``: never negative; ``1`` when ``sigma = 0``).
    """
    th, s = np.broadcast_arrays(_f(theta), _f(sigma))
    s2 = np.sin(th) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s2 > 0, 1 + s**2 / np.where(s2 > 0, s2, 1.0), np.inf)


# --------------------------------------------------------------------------------------------------------
# Fine-tuning (Thm 3.9, App. C)
# --------------------------------------------------------------------------------------------------------
def finetune_refinement_factor(gamma: ArrayLike, sigma: ArrayLike = 0.0, depth: int = 2) -> Array:
    """Scale ``c`` of the frozen null-space component after fine-tuning: ``beta_ft = beta_sc + c (I - P) beta_s``.

    Derivation (balanced rank-one weights, the conservation law of gradient flow): the first layer stays
    ``w a^T`` and every later layer keeps singular value ``s = ||w||``, so ``beta = s^{L-1} w`` and the
    null-space part of ``w`` is frozen at ``(I - P) beta_s``. Interpolation ``P beta = beta_sc`` and
    ``||w||^2 = s^2`` give ``q = s^2`` as the positive root of ``q^L - A q^{L-1} - B = 0`` with
    ``A = ||(I - P) beta_s||^2 -> 1 - gamma`` and ``B = ||beta_sc||^2 -> gamma + sigma^2 gamma / (1 - gamma)``;
    then ``c = q^{(L-1)/2}``. ``c = 1`` exactly when ``sigma = 0`` and ``c = 1 + O(sigma^2)`` otherwise. For
    ``gamma >= 1`` there is no null space and ``c`` is irrelevant (returned as 1).
    """
    if depth < 2:
        raise ValueError(f"`depth` must be >= 2, got {depth!r}.")
    g, s = np.broadcast_arrays(_f(gamma), _f(sigma))
    out = np.ones(g.shape, dtype=np.float64)
    for idx in np.ndindex(g.shape):
        gi = float(g[idx])
        if gi >= 1:
            continue
        a = 1 - gi
        b = gi + float(s[idx]) ** 2 * gi / (1 - gi)
        # q^L - a q^{L-1} - b = 0 has exactly one positive root (Descartes); bisection on [lo, hi].
        lo, hi = 0.0, max(1.0, a + b) + 1.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid**depth - a * mid ** (depth - 1) - b > 0:
                hi = mid
            else:
                lo = mid
        out[idx] = (0.5 * (lo + hi)) ** ((depth - 1) / 2)
    return out


def finetune_risk_excess(
    gamma: ArrayLike, theta: ArrayLike, c: ArrayLike = 1.0, d: int | None = None
) -> Array:
    """``E R_ft - E R_sc = (1 - gamma)(c^2 - 2 c cos(theta))`` for ``gamma < 1`` (``0`` for ``gamma >= 1``).

    With ``d`` the exact factor ``1 - n/d`` replaces ``1 - gamma`` (``E (I - P) = (1 - n/d) I``). The noise
    term of the scratch solution lies in the row space and cancels exactly, so this holds at any ``sigma``
    for a given ``c``.
    """
    g, th, cc = np.broadcast_arrays(_f(gamma), _f(theta), _f(c))
    frac = 1 - g if d is None else 1 - np.round(g * d) / d
    return np.where(frac > 0, frac, 0.0) * (cc**2 - 2 * cc * np.cos(th))


def finetune_transferability(
    gamma: ArrayLike,
    theta: ArrayLike,
    sigma: ArrayLike = 0.0,
    d: int | None = None,
    refined: bool = False,
    depth: int = 2,
) -> Array:
    """Fine-tuning transferability (Thm 3.9, Eq. 17): ``T_ft = (1 - gamma)(2 cos(theta) - 1)`` for ``gamma <= 1``.

    Zero for ``gamma >= 1`` (a unique global minimum forgets the initialisation); positive iff
    ``theta < 60 deg``. ``refined=True`` uses ``(1 - gamma)(2 c cos - c^2)`` with
    ``c = finetune_refinement_factor(gamma, sigma, depth)``; ``d`` uses ``1 - n/d`` for ``1 - gamma``.
    """
    c = finetune_refinement_factor(gamma, sigma, depth) if refined else 1.0
    return -finetune_risk_excess(gamma, theta, c, d)


def finetune_theta_threshold(c: ArrayLike = 1.0) -> Array:
    """Largest angle with positive fine-tuning transfer: ``arccos(c / 2)`` (``60 deg`` for ``c = 1``)."""
    return np.arccos(np.clip(_f(c) / 2, -1.0, 1.0))


def finite_source_finetune_transferability(
    gamma_t: ArrayLike, gamma_s: ArrayLike, theta: ArrayLike, sigma_s: ArrayLike = 0.0
) -> Array:
    """Fine-tuning transferability when the source itself was learned from ``n_s = gamma_s d`` samples (App. C).

    The pretrained vector is the source's min-norm estimate ``beta_s_hat``; fine-tuning gives
    ``beta_sc + (I - P) beta_s_hat``, hence ``T = (1 - gamma_t)(2 E[beta_s_hat . beta_t] - E||beta_s_hat||^2)``:

    - ``gamma_s < 1``: ``(gamma_t - 1) gamma_s [1 - 2 cos + sigma_s^2 / (1 - gamma_s)]``;
    - ``gamma_s > 1``: ``(gamma_t - 1) [1 - 2 cos + sigma_s^2 / (gamma_s - 1)]``;

    and ``0`` for ``gamma_t >= 1``. ``gamma_s = 1`` with ``sigma_s > 0`` gives ``-inf``.
    """
    gt, gs, th, ss = np.broadcast_arrays(_f(gamma_t), _f(gamma_s), _f(theta), _f(sigma_s))
    cos = np.cos(th)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = gs * (1 - 2 * cos + ss**2 / (1 - gs))
        over = 1 - 2 * cos + ss**2 / (gs - 1)
        bracket = np.where(gs < 1, under, np.where(gs > 1, over, np.where(ss > 0, np.inf, 1 - 2 * cos)))
        out = np.where(gt < 1, (gt - 1) * bracket, 0.0)
    return out


# --------------------------------------------------------------------------------------------------------
# REFINE in the linear model (frozen features + trainable residual path + linear head)
# --------------------------------------------------------------------------------------------------------
def refine_risk(gamma: ArrayLike, theta: ArrayLike, sigma: ArrayLike = 0.0, d: int | None = None) -> Array:
    """Risk of REFINE in the deep linear model (two-timescale approximation).

    Model: ``f(x) = [x^T W_1, x^T V] . [w; u]`` with ``W_1`` frozen (rank one along ``beta_s``), the residual
    path ``x^T V u`` a two-layer linear network from small initialisation and the head trained from zero.
    The residual path only moves within the row space of ``X`` and its implicit bias is minimum norm, so the
    interpolator is ``beta_ref = beta_sc + k (I - P) beta_s``: fine-tuning with ``c`` replaced by the
    readout coefficient ``k``. The head on the frozen feature is linear and learns first, so ``k`` is the
    least-squares coefficient of ``y`` on ``z = X beta_s``: ``E k = cos``, ``Var k = (sin^2 + sigma^2) /
    (n - 2)``. Hence ``E R_ref = R_sc - (1 - gamma)(cos^2 - Var k)`` for ``gamma < 1`` and ``R_sc`` for
    ``gamma >= 1`` (full rank: the interpolator is unique). ``d=None`` drops ``Var k``.
    """
    g, th, s = np.broadcast_arrays(_f(gamma), _f(theta), _f(sigma))
    return scratch_risk(g, s, d) - refine_transferability(g, th, s, d)


def refine_transferability(
    gamma: ArrayLike, theta: ArrayLike, sigma: ArrayLike = 0.0, d: int | None = None
) -> Array:
    """REFINE transferability ``T_ref = (1 - gamma)(cos^2(theta) - Var k)`` for ``gamma < 1``, else ``0``.

    Never meaningfully negative: REFINE picks the optimal scale ``k = cos`` for the frozen direction, where
    fine-tuning is stuck with ``c ~ 1`` (``2 c cos - c^2 <= cos^2``, equality at ``c = cos``). See
    :func:`refine_risk` for the model and assumptions.
    """
    g, th, s = np.broadcast_arrays(_f(gamma), _f(theta), _f(sigma))
    cos2, sin2 = np.cos(th) ** 2, np.sin(th) ** 2
    if d is None:
        var_k = np.zeros_like(g)
        frac = 1 - g
    else:
        n = np.round(g * d)
        with np.errstate(divide="ignore"):
            var_k = np.where(n > 2, (sin2 + s**2) / np.maximum(n - 2, 1.0), np.inf)
        frac = 1 - n / d
    with np.errstate(invalid="ignore"):
        return np.where(frac > 0, frac * (cos2 - var_k), 0.0)


# --------------------------------------------------------------------------------------------------------
# Dataset distances (Thm 2.2) and the ReLU kernel (Sec. 4, App. C)
# --------------------------------------------------------------------------------------------------------
def label_shift_kl(theta: ArrayLike, sigma: ArrayLike, norm_ratio: ArrayLike = 1.0) -> Array:
    """KL divergence between source and target joint laws under label shift (Thm 2.2).

    With ``beta_t`` of norm ``norm_ratio`` at angle ``theta`` to the unit ``beta_s``,
    ``KL = E_x (f_s - f_t)^2 / (2 sigma^2) = (1 + r^2 - 2 r cos) / (2 sigma^2)``: it grows without bound as
    ``r`` grows or ``sigma`` shrinks, while features (and hence transfer) are unchanged for ``theta = 0``.
    """
    th, s, r = np.broadcast_arrays(_f(theta), _f(sigma), _f(norm_ratio))
    with np.errstate(divide="ignore"):
        return (1 + r**2 - 2 * r * np.cos(th)) / (2 * s**2)


def arccos_kernel(u: ArrayLike) -> Array:
    """``E[relu(w.x) relu(w'.x)]`` for unit ``w, w'`` with ``w.w' = u``, ``x ~ N(0, I)`` (Cho & Saul 2009).

    ``(sqrt(1 - u^2) + u (pi - arccos u)) / (2 pi)``; equals ``1/2`` at ``u = 1`` and ``1/(2 pi)`` at ``u = 0``.
    """
    uu = np.clip(_f(u), -1.0, 1.0)
    return (np.sqrt(1 - uu**2) + uu * (np.pi - np.arccos(uu))) / (2 * np.pi)
