"""Closed forms of "Features are fate": check values from docs/theory.md, hand algebra and numpy Monte Carlo.

The Monte Carlo estimates here use plain numpy least squares (independent of the torch simulators).
"""

import subprocess
import sys

import numpy as np
import pytest

from spatial_refine.theory import closed_forms as cf

PI = np.pi


@pytest.fixture(autouse=True)
def _single_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


# ---------------------------------------------------------------------------------------------------------
# Check values (docs/theory.md)
# ---------------------------------------------------------------------------------------------------------
def test_linear_transferability_check_values():
    t = cf.linear_transferability([0.25, 0.5, 0.75, 2.0], PI / 4, 0.2)
    np.testing.assert_allclose(t, [0.263, 0.040, -0.130, -0.460], atol=5e-4)
    # By hand at gamma = 0.25: (1 - 0.25) + 0.25 * 0.04 / 0.75 - 0.5 = 0.26333...
    assert t[0] == pytest.approx(0.75 + 0.01 / 0.75 - 0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("deg", "expected"), [(45, (0.549, 0.911)), (60, (0.264, 0.946)), (90, (0.0, 0.960))]
)
def test_negative_transfer_boundaries_check_values(deg, expected):
    lo, hi = cf.negative_transfer_boundaries(np.deg2rad(deg), 0.2)
    np.testing.assert_allclose([lo, hi], expected, atol=5e-4)


def test_theta_threshold_check_value():
    assert np.degrees(cf.theta_threshold(0.2)) == pytest.approx(36.87, abs=0.01)
    assert cf.theta_threshold(0.0) == 0.0
    assert np.isnan(cf.theta_threshold(1.5))
    # Just below the threshold the region is empty, just above it is not.
    th = float(cf.theta_threshold(0.2))
    assert np.isnan(cf.negative_transfer_boundaries(th - 1e-3, 0.2)[0])
    assert np.isfinite(cf.negative_transfer_boundaries(th + 1e-3, 0.2)[0])


def test_finetune_transferability_check_values():
    t = cf.finetune_transferability(0.0, [PI / 8, PI / 4, 3 * PI / 8])
    np.testing.assert_allclose(t, [0.848, 0.414, -0.235], atol=5e-4)
    np.testing.assert_allclose(t, 2 * np.cos([PI / 8, PI / 4, 3 * PI / 8]) - 1, atol=1e-12)
    assert cf.finetune_transferability(1.5, PI / 8) == 0.0
    assert cf.finetune_transferability(0.5, PI / 3) == pytest.approx(0.0, abs=1e-12)  # 60 degrees
    assert np.degrees(cf.finetune_theta_threshold()) == pytest.approx(60.0)


# ---------------------------------------------------------------------------------------------------------
# Structure of the phase diagram
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deg", [45, 60, 75, 90])
@pytest.mark.parametrize("sigma", [0.0, 0.2, 0.4])
def test_sign_of_linear_transferability_matches_boundaries(deg, sigma):
    theta = np.deg2rad(deg)
    gammas = np.linspace(0.005, 2.5, 500)
    gammas = gammas[np.abs(gammas - 1) > 1e-3]
    t = cf.linear_transferability(gammas, theta, sigma)
    lo, hi = cf.negative_transfer_boundaries(theta, sigma)
    over = cf.overparameterized_boundary(theta, sigma)
    predicted = np.where(gammas < 1, (gammas > lo) & (gammas < hi), gammas > over)
    near = (np.abs(gammas - lo) < 5e-3) | (np.abs(gammas - hi) < 5e-3) | (np.abs(gammas - over) < 5e-3)
    np.testing.assert_array_equal((t < 0)[~near], predicted[~near])


def test_anomalous_positive_transfer_at_orthogonal_features():
    # theta = 90 degrees: linear transfer is useless (risk 1), yet T > 0 near the interpolation peak.
    t = cf.linear_transferability([0.97, 1.03], PI / 2, 0.2)
    assert np.all(t > 0)


def test_overparameterized_boundary_noiseless_and_parallel():
    assert cf.overparameterized_boundary(PI / 4, 0.0) == pytest.approx(1.0)
    assert cf.overparameterized_boundary(PI / 4, 0.2) == pytest.approx(1 + 0.04 / 0.5)
    assert np.isinf(cf.overparameterized_boundary(0.0, 0.2))


# ---------------------------------------------------------------------------------------------------------
# Scratch risk: double descent, finite size, Monte Carlo of min-norm least squares
# ---------------------------------------------------------------------------------------------------------
def test_scratch_risk_double_descent_shape():
    g = np.array([0.2, 0.5, 0.9, 0.99, 1.0, 1.01, 1.5, 3.0])
    r = cf.scratch_risk(g, 0.2)
    assert np.isinf(r[4])
    assert r[3] > r[2] and r[5] > r[6] > r[7]  # peak at gamma = 1
    assert cf.scratch_risk(0.5, 0.0) == pytest.approx(0.5)
    assert cf.scratch_risk(2.0, 0.2) == pytest.approx(0.04)
    # Finite size tends to the limit.
    assert cf.scratch_risk(0.5, 0.2, d=100_000) == pytest.approx(cf.scratch_risk(0.5, 0.2), rel=1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        cf.scratch_risk(-0.1)


def _min_norm_risk_mc(n, d, sigma, reps, rng):
    risks = []
    for _ in range(reps):
        beta = rng.normal(size=d)
        beta /= np.linalg.norm(beta)
        x = rng.normal(size=(n, d))
        y = x @ beta + sigma * rng.normal(size=n)
        b_hat = np.linalg.pinv(x) @ y
        risks.append(np.sum((b_hat - beta) ** 2))
    return np.mean(risks), np.std(risks) / np.sqrt(reps)


@pytest.mark.parametrize(("n", "d"), [(15, 40), (70, 40)])
def test_scratch_risk_finite_size_matches_monte_carlo(n, d):
    rng = np.random.default_rng(0)
    mean, sem = _min_norm_risk_mc(n, d, 0.3, 400, rng)
    assert abs(mean - cf.scratch_risk(n / d, 0.3, d=d)) < 4 * sem + 1e-3


# ---------------------------------------------------------------------------------------------------------
# Linear transfer and ridge: exact finite-n forms against Monte Carlo of the rank-one readout
# ---------------------------------------------------------------------------------------------------------
def _rank_one_readout_mc(n, theta, sigma, lam, reps, rng):
    # beta_s = e1, beta_t = cos e1 + sin e2; the transferred predictor is k e1, k = z.y / (|z|^2 + n lam).
    z = rng.normal(size=(reps, n))
    z_perp = rng.normal(size=(reps, n))
    y = np.cos(theta) * z + np.sin(theta) * z_perp + sigma * rng.normal(size=(reps, n))
    k = (z * y).sum(1) / ((z * z).sum(1) + n * lam)
    risk = (k - np.cos(theta)) ** 2 + np.sin(theta) ** 2
    return risk.mean(), risk.std() / np.sqrt(reps)


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_linear_transfer_risk_finite_n_matches_monte_carlo(lam):
    rng = np.random.default_rng(1)
    n, theta, sigma = 12, PI / 3, 0.3
    mean, sem = _rank_one_readout_mc(n, theta, sigma, lam, 200_000, rng)
    theory = cf.linear_transfer_risk(n / 50, theta, sigma, d=50, lam=lam)
    assert abs(mean - theory) < 4 * sem + 1e-3


def test_linear_transfer_exact_formula_by_hand():
    # Thm 3.7: sin^2 + (sigma^2 + sin^2) / (n - 2); n = 20, theta = 45 deg, sigma = 0.2.
    assert cf.linear_transfer_risk(0.2, PI / 4, 0.2, d=100) == pytest.approx(0.5 + 0.54 / 18)
    assert cf.linear_transfer_risk(0.5, PI / 4, 0.2) == pytest.approx(0.5)
    assert np.isinf(cf.linear_transfer_risk(0.02, PI / 4, 0.2, d=100))  # n = 2


def test_ridge_never_helps_and_limit():
    lams = np.array([0.0, 0.05, 0.1, 0.5, 2.0])
    r = cf.ridge_linear_transfer_risk(PI / 5, lams)
    assert np.all(np.diff(r) > 0)
    # lam = 1: 1 - 3/4 cos^2.
    assert cf.ridge_linear_transfer_risk(PI / 5, 1.0) == pytest.approx(1 - 0.75 * np.cos(PI / 5) ** 2)
    # The finite-n ridge risk tends to the Thm 3.8 limit.
    assert cf.ridge_linear_transfer_risk(PI / 5, 0.1, 0.2, n=200_000) == pytest.approx(
        cf.ridge_linear_transfer_risk(PI / 5, 0.1), abs=1e-4
    )


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning: refinement factor, finite source
# ---------------------------------------------------------------------------------------------------------
def test_refinement_factor_solves_its_equation():
    for depth in (2, 3):
        for g, s in [(0.2, 0.2), (0.6, 0.5), (0.9, 0.2)]:
            c = float(cf.finetune_refinement_factor(g, s, depth))
            q = c ** (2 / (depth - 1))
            a, b = 1 - g, g + s**2 * g / (1 - g)
            assert q**depth - a * q ** (depth - 1) - b == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(cf.finetune_refinement_factor([0.1, 0.5, 0.9], 0.0), 1.0, atol=1e-12)
    c = cf.finetune_refinement_factor(0.5, 0.2)
    assert 1.0 < c < 1.02  # 1 + O(sigma^2), negligible at sigma = 0.2
    assert cf.finetune_transferability(0.5, PI / 4, 0.2, refined=True) == pytest.approx(
        0.5 * (2 * c * np.cos(PI / 4) - c**2)
    )
    assert cf.finetune_refinement_factor(1.5, 0.2) == 1.0


def test_finite_source_reduces_to_infinite_source():
    # gamma_s -> infinity with sigma_s fixed recovers Thm 3.9.
    t_inf = cf.finite_source_finetune_transferability(0.3, 1e9, PI / 5, 0.3)
    assert t_inf == pytest.approx(cf.finetune_transferability(0.3, PI / 5), abs=1e-6)
    assert cf.finite_source_finetune_transferability(1.2, 0.5, PI / 5, 0.3) == 0.0
    # By hand: gamma_t = 0.5, gamma_s = 0.5, theta = 60 deg, sigma_s = 0: (-0.5)(0.5)(1 - 1) = 0.
    assert cf.finite_source_finetune_transferability(0.5, 0.5, PI / 3, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_finite_source_matches_monte_carlo():
    # beta_ft = beta_sc + (I - P_t) beta_s_hat, with beta_s_hat the source's min-norm estimate.
    rng = np.random.default_rng(2)
    d, n_t, theta, sig_s = 40, 12, PI / 5, 0.3
    for n_s in (16, 80):
        diffs = []
        for _ in range(300):
            b_s = rng.normal(size=d)
            b_s /= np.linalg.norm(b_s)
            perp = rng.normal(size=d)
            perp -= perp @ b_s * b_s
            perp /= np.linalg.norm(perp)
            b_t = np.cos(theta) * b_s + np.sin(theta) * perp
            xs = rng.normal(size=(n_s, d))
            b_hat = np.linalg.pinv(xs) @ (xs @ b_s + sig_s * rng.normal(size=n_s))
            xt = rng.normal(size=(n_t, d))
            proj_perp = np.eye(d) - np.linalg.pinv(xt) @ xt
            # R_ft - R_sc = ||(I-P)(b_hat - b_t)||^2 - ||(I-P) b_t||^2 (row-space parts coincide).
            diffs.append(np.sum((proj_perp @ (b_hat - b_t)) ** 2) - np.sum((proj_perp @ b_t) ** 2))
        t_mc, sem = -np.mean(diffs), np.std(diffs) / np.sqrt(len(diffs))
        g_s = n_s / d
        sig_term = sig_s**2 * n_s / (d - n_s - 1) if n_s < d else sig_s**2 * d / (n_s - d - 1)
        # Finite-size version of App. C: (1 - n_t/d)(2 E[b_hat.b_t] - E||b_hat||^2).
        finite = (1 - n_t / d) * (2 * min(g_s, 1) * np.cos(theta) - min(g_s, 1) - sig_term)
        assert abs(t_mc - finite) < 4 * sem + 5e-3
        # and the asymptotic App. C formula is within finite-size corrections
        assert abs(t_mc - cf.finite_source_finetune_transferability(n_t / d, g_s, theta, sig_s)) < 0.08


# ---------------------------------------------------------------------------------------------------------
# REFINE in the linear model, distances, kernel
# ---------------------------------------------------------------------------------------------------------
def test_refine_transferability_dominates_finetune_and_is_nonnegative():
    g, th = np.meshgrid(np.linspace(0.05, 2.0, 40), np.linspace(0.0, PI / 2, 30), indexing="ij")
    t_ref = cf.refine_transferability(g, th, 0.2)
    assert np.all(t_ref >= -1e-12)
    assert np.all(t_ref >= cf.finetune_transferability(g, th, 0.2, refined=True) - 1e-12)
    # Optimal scale: (1 - gamma) cos^2 at gamma = 0.5, theta = 45 deg.
    assert cf.refine_transferability(0.5, PI / 4) == pytest.approx(0.25)
    assert cf.refine_risk(0.5, PI / 4, 0.0) == pytest.approx(0.25)


def test_label_shift_kl_grows_without_changing_features():
    kl = cf.label_shift_kl(0.0, 0.1, [1.0, 2.0, 10.0])
    np.testing.assert_allclose(kl, [0.0, 50.0, 4050.0])


def test_arccos_kernel_matches_monte_carlo():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400_000, 2))
    for u in (-0.6, 0.0, 0.7):
        w2 = np.array([u, np.sqrt(1 - u * u)])
        mc = np.mean(np.maximum(x[:, 0], 0) * np.maximum(x @ w2, 0))
        assert mc == pytest.approx(float(cf.arccos_kernel(u)), abs=3e-3)
    np.testing.assert_allclose(cf.arccos_kernel([1.0, 0.0]), [0.5, 1 / (2 * PI)])


def test_closed_forms_import_without_torch():
    code = "import sys; import spatial_refine.theory.closed_forms; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_edges_without_samples_and_undefined_inputs():
    # no target sample: the readout stays zero, so its risk is that of predicting 0, ||beta||^2 = 1, with or
    # without ridge, as scratch training's (1 - n/d = 1)
    assert cf.linear_transfer_risk(0.0, 0.5, d=100) == 1.0
    assert cf.linear_transfer_risk(0.0, 0.5, d=100, lam=0.1) == 1.0
    assert cf.scratch_risk(0.0, d=100) == 1.0
    assert cf.linear_transferability(0.0, 0.5, d=100) == 0.0
    assert np.isinf(cf.linear_transfer_risk(2 / 100, 0.5, d=100))  # n = 2: the expectation diverges
    np.testing.assert_array_equal(np.isnan(cf.scratch_risk([0.5, np.nan], 0.1)), [False, True])
    with pytest.raises(ValueError, match="sigma"):
        cf.scratch_risk(0.5, sigma=-1.0)
