"""Phase diagrams: theory grids against the boundary formulas, a small simulated grid, plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from spatial_refine.theory import closed_forms as cf
from spatial_refine.theory import phase

PI = np.pi


def test_theory_grid_negative_region_matches_boundaries():
    gammas = np.round(np.arange(0.1, 2.01, 0.1), 2)
    thetas = np.linspace(0.05, 1.0, 20) * PI / 2
    diag = phase.theory_phase_diagram(gammas, thetas, 0.2)
    neg = diag.negative_mask("linear")
    lo, hi = cf.negative_transfer_boundaries(thetas, 0.2)
    over = cf.overparameterized_boundary(thetas, 0.2)
    g = gammas[:, None]
    expected = np.where(g < 1, (g > np.nan_to_num(lo, nan=2.0)) & (g < np.nan_to_num(hi, nan=-1.0)), g > over)
    np.testing.assert_array_equal(neg, expected)
    # Fine-tuning: negative exactly above 60 degrees (gamma < 1), zero for gamma >= 1.
    ft = diag.transferability["finetune"]
    np.testing.assert_array_equal(ft[gammas < 1] < 0, np.broadcast_to(thetas > PI / 3, ft[gammas < 1].shape))
    assert np.all(ft[gammas >= 1] == 0)
    # REFINE: never negative in the limit.
    assert not diag.negative_mask("refine").any()
    frame = diag.to_frame()
    assert len(frame) == 3 * gammas.size * thetas.size
    assert {"method", "gamma", "theta_deg", "T"} <= set(frame.columns)


def test_theory_grid_validates_input():
    with pytest.raises(ValueError, match="non-empty"):
        phase.theory_phase_diagram([], [0.1])
    with pytest.raises(ValueError, match="Unknown method"):
        phase.theory_phase_diagram([0.5], [0.1], methods=("nope",))


@pytest.fixture(scope="module")
def small_grids():
    pytest.importorskip("torch")
    from spatial_refine.theory.simulate import GDConfig

    gammas = np.array([0.2, 0.6, 1.6])
    thetas = np.array([0.15, 0.5, 0.9]) * PI / 2
    sim = phase.simulate_phase_diagram(
        gammas,
        thetas,
        0.2,
        d=32,
        n_instances=8,
        finetune_config=GDConfig(lr_factor=0.25, max_steps=1500),
        dtype="float64",
        num_threads=1,
        random_state=4,
    )
    theory = phase.theory_phase_diagram(gammas, thetas, 0.2, d=32, lam=0.1)
    return theory, sim


def test_simulated_grid_reproduces_theory_signs(small_grids):
    theory, sim = small_grids
    for method in phase.METHODS:
        frac, n_cells = phase.sign_agreement(theory, sim, method, margin=0.05)
        assert n_cells >= 3
        assert frac >= 0.85, (method, frac)
    assert sim.risk["scratch"].shape == (3, 3)
    assert np.all(sim.converged["scratch"] == 1.0)
    assert sim.extras["runtime_s"] > 0
    # Linear transfer is negative at (gamma = 1.6, theta = 81 deg) in both.
    assert theory.transferability["linear"][2, 2] < 0 and sim.transferability["linear"][2, 2] < 0


def test_plots_render(small_grids, tmp_path):
    from spatial_refine.theory import plot

    theory, sim = small_grids
    fig = plot.plot_phase_diagrams(theory, sim)
    assert len(fig.axes) == 3 * 2 + 6  # panels and colour bars
    fig.savefig(tmp_path / "phase.png", dpi=60)
    ax = plot.plot_transfer_curves(PI / 4, 0.2, d=32, simulation=sim)
    assert ax.get_xlabel().startswith("$\\gamma")
    ax.figure.savefig(tmp_path / "curves.png", dpi=60)
    assert (tmp_path / "phase.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    plt.close("all")
