"""Batched deep-linear and ReLU simulators against the theorems and the closed forms.

Tolerance for simulation vs theory: |simulated mean - finite-size closed form| <= 0.03 + 3 standard errors
(standard errors over the independent instances; d = 48, 24 instances).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spatial_refine.theory import closed_forms as cf  # noqa: E402
from spatial_refine.theory import relu as rl  # noqa: E402
from spatial_refine.theory import simulate as sm  # noqa: E402
from spatial_refine.theory._torch_utils import unit_rows  # noqa: E402
from spatial_refine.theory.refine_linear import refine_train  # noqa: E402

PI = np.pi
D = 48
N_INST = 24
ABS_TOL = 0.03


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pretrained():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        beta_s, _ = sm.make_task_vectors(D, [0.0], N_INST, random_state=11)
        weights, res = sm.pretrain_source(beta_s, random_state=12)
    return beta_s, weights, res


def _targets(beta_s, theta, seed):
    """Unit targets at angle ``theta`` to the given sources, shape (I, 1, d)."""
    perp = torch.randn(beta_s.shape, generator=torch.Generator().manual_seed(seed), dtype=beta_s.dtype)
    perp = unit_rows(perp - (perp * beta_s).sum(-1, keepdim=True) * beta_s)
    return (np.cos(theta) * beta_s + np.sin(theta) * perp)[:, None, :]


def _close(sim_values, theory, sem):
    sim_values, theory, sem = map(np.asarray, (sim_values, theory, sem))
    assert np.all(np.abs(sim_values - theory) <= ABS_TOL + 3 * sem), (sim_values, theory, sem)


# ---------------------------------------------------------------------------------------------------------
# Theorems 3.3-3.5: what gradient descent from small initialisation finds
# ---------------------------------------------------------------------------------------------------------
def test_pretraining_learns_source_and_sparsifies_features(pretrained):
    beta_s, (w1, w2), res = pretrained
    assert bool(res.converged.all())
    beta = (w1 @ w2).squeeze(-1)
    assert torch.allclose(beta, beta_s, atol=1e-6)  # Lemma 3.3
    sv = torch.linalg.svdvals(w1)
    assert torch.all(sv[:, 1] / sv[:, 0] < 1e-3)  # Thm 3.4: rank one ...
    u1 = torch.linalg.svd(w1).U[..., 0]
    assert torch.all((u1 * beta_s).sum(-1).abs() > 1 - 1e-6)  # ... aligned with beta_s
    assert torch.allclose(sv[:, 0], torch.ones(N_INST, dtype=sv.dtype), atol=1e-4)  # balanced, unit scale


def test_scratch_reaches_minimum_norm_solution():
    _beta_s, beta_t = sm.make_task_vectors(D, [PI / 4], 6, random_state=3)
    for n in (20, 90):
        x, y = sm.sample_target_data(beta_t, n, 0.2, random_state=4)
        beta, res = sm.scratch(x, y, random_state=5)
        assert bool(res.converged.all())
        gap = ((beta - sm.min_norm_least_squares(x, y)) ** 2).sum(-1)
        assert float(gap.max()) <= 1e-6  # Thm 3.5


def test_instances_are_independent_in_the_batch():
    _beta_s, beta_t = sm.make_task_vectors(20, [0.3, 1.2], 3, random_state=0)
    x, y = sm.sample_target_data(beta_t, 12, 0.1, random_state=1)
    w = sm.init_deep_linear((3, 2), 20, init_scale=1e-3, random_state=2)
    cfg = sm.GDConfig(max_steps=300, tol=0.0)
    full = sm.DeepLinearNetwork([t.clone() for t in w])
    sm.gradient_descent(full, sm.EmpiricalProblem(x, y), cfg)
    alone = sm.DeepLinearNetwork([t[1:2, 1:2].clone() for t in w])
    sm.gradient_descent(alone, sm.EmpiricalProblem(x[1:2], y[1:2, 1:2]), cfg)
    torch.testing.assert_close(full.forward()[1:2, 1:2], alone.forward())


def test_closed_form_gradients_match_autograd():
    w = sm.init_deep_linear((2, 1), 6, depth=3, width=5, init_scale=0.5, random_state=0)
    x = torch.randn(2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, 1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    prob = sm.EmpiricalProblem(x, y)
    auto = [t.clone().requires_grad_(True) for t in w]
    beta = (auto[0] @ auto[1] @ auto[2]).squeeze(-1)
    loss = (((beta @ x.transpose(-1, -2)) - y) ** 2).sum() / (2 * 4)
    loss.backward()
    net = sm.DeepLinearNetwork([t.clone() for t in w])
    beta_net = net.forward()
    lr = torch.full((2, 1), 1e-3, dtype=torch.float64)
    net.update(prob.grad(beta_net), lr)
    for before, after, a in zip(w, net.weights, auto):
        torch.testing.assert_close((before - after) / 1e-3, a.grad)


# ---------------------------------------------------------------------------------------------------------
# Simulation vs finite-size closed forms at several (gamma, theta, sigma)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gamma", "thetas", "sigma"),
    [(0.25, [PI / 4, 3 * PI / 8], 0.2), (0.5, [PI / 6, PI / 3], 0.0), (1.5, [PI / 4, PI / 2], 0.2)],
)
def test_simulation_agrees_with_theory(pretrained, gamma, thetas, sigma):
    beta_s, weights, _ = pretrained
    n = round(gamma * D)
    thetas = np.asarray(thetas)
    sim = sm.simulate_transfer(
        D, n, thetas, sigma, n_instances=N_INST, lam=0.1, pretrained=(beta_s, weights), random_state=7
    )
    sem = {m: r.std(0, ddof=1) / np.sqrt(N_INST) for m, r in sim.risks.items()}
    _close(sim.mean_risk("scratch"), cf.scratch_risk(gamma, sigma, d=D), sem["scratch"])
    _close(
        sim.mean_risk("linear"), cf.linear_transfer_risk(gamma, thetas, sigma, d=D, lam=0.1), sem["linear"]
    )
    _close(
        sim.transferability("finetune"),
        cf.finetune_transferability(gamma, thetas, sigma, d=D, refined=True),
        sim.transferability_sem("finetune"),
    )
    _close(
        sim.transferability("refine"),
        cf.refine_transferability(gamma, thetas, sigma, d=D),
        sim.transferability_sem("refine"),
    )
    assert sim.converged["scratch"].mean() == 1.0


def test_negative_transfer_appears_where_formulas_say(pretrained):
    # theta = 45 deg, sigma = 0.2: negative linear transfer for gamma in (0.549, 0.911) and gamma > 1.08,
    # positive with few samples; the finite-size forms (d = 48) agree in sign at these points.
    beta_s, weights, _ = pretrained
    out = {}
    for gamma in (0.25, 0.75, 2.0):
        assert (cf.linear_transferability(gamma, PI / 4, 0.2, d=D) > 0) == (gamma == 0.25)
        sim = sm.simulate_transfer(
            D,
            round(gamma * D),
            [PI / 4],
            0.2,
            n_instances=N_INST,
            methods=("scratch", "linear", "refine"),
            lam=0.0,
            finetune_config=sm.GDConfig(lr_factor=0.25, max_steps=2000),
            pretrained=(beta_s, weights),
            random_state=8,
        )
        out[gamma] = (sim.transferability("linear")[0], sim.transferability("refine")[0])
    assert out[0.25][0] > 0.1
    assert out[0.75][0] < -0.05 and out[2.0][0] < -0.3
    # REFINE does not transfer negatively where linear transfer does.
    assert out[0.75][1] > 0.0 and out[2.0][1] > -0.01


def test_finetune_null_space_scale_matches_per_instance_theory(pretrained):
    # beta_ft = beta_sc + c (I - P) beta_s with q = c^2 solving q^2 - A q - B = 0 per instance.
    beta_s, weights, _ = pretrained
    x, y = sm.sample_target_data(_targets(beta_s, PI / 3, 21), 16, 0.4, random_state=22)
    net = sm.DeepLinearNetwork([w[:, None].clone() for w in weights])
    res = sm.gradient_descent(net, sm.EmpiricalProblem(x, y), sm.FINETUNE_CONFIG)
    assert bool(res.converged.all())
    q_basis = torch.linalg.qr(x.transpose(-1, -2)).Q  # orthonormal basis of the row space

    def null_part(v):
        return v - q_basis[:, None] @ (q_basis[:, None].transpose(-1, -2) @ v)

    # (I - P) W_1 is frozen during fine-tuning: its gradient X^T r W_2^T lies in the row space.
    torch.testing.assert_close(null_part(net.weights[0]), null_part(weights[0][:, None]))
    c_sim = sm._null_space_scale(net.forward(), x, beta_s)
    bs = beta_s[:, None, :]
    a = ((bs - (bs @ q_basis) @ q_basis.transpose(-1, -2)) ** 2).sum(-1)
    b = (sm.min_norm_least_squares(x, y) ** 2).sum(-1)
    c_theory = torch.sqrt((a + torch.sqrt(a * a + 4 * b)) / 2)
    torch.testing.assert_close(c_sim, c_theory, atol=1e-2, rtol=0)
    assert float((c_theory - 1).abs().max()) > 0.01  # the refinement is visible at sigma = 0.4


def test_refine_learns_frozen_coefficient_near_cos(pretrained):
    beta_s, weights, _ = pretrained
    x, y = sm.sample_target_data(_targets(beta_s, PI / 4, 31), 24, 0.0, random_state=32)
    beta, k, _res = refine_train(weights[0], beta_s, x, y, random_state=33)
    assert abs(float(k.mean()) - np.cos(PI / 4)) < 0.08
    train_resid = ((beta @ x.transpose(-1, -2) - y) ** 2).mean()
    assert float(train_resid) < 1e-3


def test_deeper_network_and_width_options():
    beta_s, beta_t = sm.make_task_vectors(16, [PI / 6], 4, random_state=0)
    # Depth 3 escapes the saddle in time ~ 1 / init_scale, so a larger initialisation is used.
    w, _res = sm.pretrain_source(beta_s, depth=3, width=8, init_scale=0.01, random_state=1)
    assert [t.shape[1:] for t in w] == [(16, 8), (8, 8), (8, 1)]
    torch.testing.assert_close((w[0] @ w[1] @ w[2]).squeeze(-1), beta_s, atol=1e-5, rtol=0)
    sv = torch.linalg.svdvals(w[0])
    assert torch.all(sv[:, 1] < 0.1 * sv[:, 0])
    x, y = sm.sample_target_data(beta_t, 40, 0.0, random_state=2)
    beta_lt = sm.linear_transfer(w[0], x, y, lam=0.0, rcond=0.2)
    # One frozen direction: the transferred vector is k beta_s with k the least-squares coefficient of y on
    # z = X beta_s (Thm 3.7), up to the O(init_scale) remainder of the other features.
    z = (x @ beta_s[..., None]).squeeze(-1)
    k_ls = (z * y[:, 0]).sum(-1) / (z * z).sum(-1)
    np.testing.assert_allclose((beta_lt[:, 0] * beta_s).sum(-1).numpy(), k_ls.numpy(), atol=0.03)
    with pytest.raises(ValueError, match="depth"):
        sm.init_deep_linear((1,), 4, depth=1)
    with pytest.raises(ValueError, match="Unknown methods"):
        sm.simulate_transfer(8, 4, [0.1], methods=("bogus",))


def test_random_state_reproducible():
    a = sm.simulate_transfer(12, 6, [0.5], 0.1, n_instances=2, methods=("scratch", "linear"), random_state=3)
    b = sm.simulate_transfer(12, 6, [0.5], 0.1, n_instances=2, methods=("scratch", "linear"), random_state=3)
    np.testing.assert_array_equal(a.risks["linear"], b.risks["linear"])


# ---------------------------------------------------------------------------------------------------------
# ReLU student-teacher with ablated-teacher sources
# ---------------------------------------------------------------------------------------------------------
def test_relu_kernel_and_population_risk():
    np.testing.assert_allclose(
        rl.kappa(torch.tensor([1.0, 0.3, -1.0], dtype=torch.float64)).numpy(),
        cf.arccos_kernel([1.0, 0.3, -1.0]),
    )
    # kappa' is the derivative of kappa.
    u = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    rl.kappa(u).sum().backward()
    torch.testing.assert_close(u.grad, rl.kappa_prime(u.detach()))
    teach = rl.make_teachers(5, 4, [0.0], random_state=0)
    assert float(rl.relu_risk(teach.w, teach.c_target, teach.w, teach.c_target)[0]) == pytest.approx(
        0, abs=1e-12
    )


def test_relu_ablation_and_transfer():
    res = rl.simulate_relu_transfer(
        [0.0, 0.5],
        [16, 240],
        d=6,
        m=48,
        m_teacher=8,
        n_seeds=2,
        pretrain_steps=2000,
        scratch_steps=600,
        random_state=0,
    )
    irr = res.irreducible.mean(-1)
    assert irr[1] > 20 * irr[0]  # ablating half the teacher leaves target features outside the span
    assert np.all(res.source_risk < 2e-4)  # pretraining fits its source
    t = res.transferability()
    assert t[0, 0] > 0  # mu = 0: transfer helps with few samples
    assert t[1, 1] < 0  # mu = 0.5: negative transfer with many samples
    assert np.all(res.linear[1, 1] >= 0.5 * res.irreducible[1])  # linear transfer cannot beat the floor


def test_power_law_fit_recovers_exponent():
    n = np.array([10, 30, 100, 300])
    a, b = rl.fit_power_law(n, 2.5 * n**-1.18)
    assert a == pytest.approx(2.5) and b == pytest.approx(1.18)
    with pytest.raises(ValueError):
        rl.fit_power_law([1], [1])
