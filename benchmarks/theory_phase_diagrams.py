"""Reproduce the transferability phase diagrams of "Features are fate" and place REFINE on them.

Writes into ``benchmarks/results/``:

- ``theory_phase_diagrams.png``: linear transfer, fine-tuning and REFINE over gamma x theta; columns are the
  closed forms (d -> infinity), the finite-size closed forms at the simulated d, and the batched
  gradient-descent simulation; hatched cells are negative transfer, the black line is the theory's T = 0.
- ``theory_transfer_curves.png``: T against gamma at fixed angles, the three methods on the same axes.
- ``theory_relu.png``: the student-teacher ReLU variant (ablated-teacher sources).
- ``theory_diagnostic_osmfish.png``: the user diagnostic on real osmFISH data (if the data folder exists).
- ``theory_phase_diagrams.csv`` (every grid cell, theory and simulation) and ``theory_phase_diagrams.md``
  (settings, machine, runtime, check values, agreement).

Usage::

    python benchmarks/theory_phase_diagrams.py            # reduced grid (d=100), a few minutes on 2 cores
    python benchmarks/theory_phase_diagrams.py --paper    # the published grid (d=500, 20 thetas, 20 instances)
    python benchmarks/theory_phase_diagrams.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatial_refine.theory import closed_forms as cf  # noqa: E402
from spatial_refine.theory import phase, plot  # noqa: E402

PI = np.pi


def machine_info() -> dict[str, str]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": commit,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def check_values() -> pd.DataFrame:
    """The check values of docs/theory.md next to what the closed forms give."""
    rows = []
    for g, exp in zip([0.25, 0.5, 0.75, 2.0], [0.263, 0.040, -0.130, -0.460]):
        rows.append(
            (
                "T_lt(theta=pi/4, sigma=0.2)",
                f"gamma={g}",
                exp,
                float(cf.linear_transferability(g, PI / 4, 0.2)),
            )
        )
    for deg, exp in zip([45, 60, 90], [(0.549, 0.911), (0.264, 0.946), (0.0, 0.960)]):
        lo, hi = cf.negative_transfer_boundaries(np.deg2rad(deg), 0.2)
        rows.append(("g- (sigma=0.2)", f"theta={deg} deg", exp[0], float(lo)))
        rows.append(("g+ (sigma=0.2)", f"theta={deg} deg", exp[1], float(hi)))
    rows.append(("theta threshold (deg)", "sigma=0.2", 36.9, float(np.degrees(cf.theta_threshold(0.2)))))
    for th, name, exp in zip([PI / 8, PI / 4, 3 * PI / 8], ["pi/8", "pi/4", "3pi/8"], [0.848, 0.414, -0.235]):
        rows.append(("T_ft(gamma=0)", f"theta={name}", exp, float(cf.finetune_transferability(0.0, th))))
    df = pd.DataFrame(rows, columns=["quantity", "at", "theory.md", "computed"])
    df["abs diff"] = (df["computed"] - df["theory.md"]).abs()
    return df


def agreement(theory: phase.PhaseDiagram, sim: phase.PhaseDiagram) -> pd.DataFrame:
    rows = []
    away = np.abs(theory.gammas - 1.0) > 0.15  # the interpolation peak (gamma ~ 1) is excluded from errors
    for m in phase.METHODS:
        frac, n = phase.sign_agreement(theory, sim, m, margin=0.02)
        err = np.abs(sim.transferability[m] - theory.transferability[m])[away]
        err = err[np.isfinite(err)]
        conv = sim.converged.get(m)
        rows.append(
            {
                "method": m,
                "sign agreement (|T_theory| > 0.02)": f"{frac:.3f} ({n} cells)",
                "median |T_sim - T_theory|": f"{np.median(err):.3f}",
                "90th pct |T_sim - T_theory|": f"{np.quantile(err, 0.9):.3f}",
                "max |T_sim - T_theory|": f"{err.max():.3f}",
                "converged fraction": f"{np.nanmean(conv):.2f}" if conv is not None else "closed form",
            }
        )
    return pd.DataFrame(rows)


def diagnostic_demo(out: Path) -> pd.DataFrame | None:
    """Real data: a frozen 'spatial niche' representation helps for anatomical regions, not cell types."""
    data = Path(os.environ.get("SPATIAL_REFINE_DATA_DIR", ROOT.parent / "shared" / "data"))
    path = data / "spatial" / "osmfish_codeluppi_cortex.h5ad"
    if not path.exists():
        print(f"[diagnostic] {path} not found: skipped")
        return None
    import anndata
    from sklearn.neighbors import NearestNeighbors

    import spatial_refine as sr

    adata = anndata.read_h5ad(path)
    x = np.asarray(adata.X.toarray(), dtype=np.float64)
    adata.layers["lognorm"] = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e3)
    idx = NearestNeighbors(n_neighbors=30).fit(adata.obsm["spatial"]).kneighbors(return_distance=False)
    adata.obsm["X_niche"] = adata.layers["lognorm"][idx].mean(1)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    rows = []
    for ax, key in zip(axes, ["Region", "ClusterName"]):
        t0 = time.perf_counter()
        rep = sr.tl.transferability(adata, key, rep_key="X_niche", layer="lognorm", key_added=f"tr_{key}")
        secs = time.perf_counter() - t0
        rep.plot(ax=ax)
        ax.set_title(f"osmFISH {key}: {rep.verdict}", fontsize=9)
        s = rep.summary
        rows.append(
            {
                "labels": key,
                "cells": int(s["n_cells"]),
                "classes": int(s["n_classes"]),
                "probe (frozen niche rep)": round(s["probe_plateau"], 3),
                "probe ceiling": round(s["probe_ceiling"], 3),
                "scratch (expression)": round(s["scratch_plateau"], 3),
                "[raw, rep]": round(s["refine_plateau"], 3),
                "verdict": rep.verdict,
                "residual path needed": rep.residual_path_needed,
                "seconds": round(secs, 1),
            }
        )
    fig.tight_layout()
    fig.savefig(out / "theory_diagnostic_osmfish.png", dpi=130)
    plt.close(fig)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper", action="store_true", help="published grid: d=500, 20 thetas, 20 instances")
    ap.add_argument("--quick", action="store_true", help="smoke run on a tiny grid")
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--n-theta", type=int, default=10)
    ap.add_argument("--sigma", type=float, default=0.2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.paper:
        args.d, args.instances, args.n_theta = 500, 20, 20
    gammas = np.round(np.arange(0.1, 2.0001, 0.1), 2)
    if args.quick:
        args.d, args.instances, args.n_theta = 24, 3, 4
        gammas = np.array([0.3, 0.7, 1.5])
    thetas = np.linspace(0.05, 1.0, args.n_theta) * PI / 2
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    t_start = time.perf_counter()

    limit = phase.theory_phase_diagram(gammas, thetas, args.sigma)
    finite = phase.theory_phase_diagram(gammas, thetas, args.sigma, d=args.d, lam=0.1, refined=True)
    print(
        f"simulating d={args.d}, {gammas.size} gammas x {thetas.size} thetas x {args.instances} instances ..."
    )
    sim = phase.simulate_phase_diagram(
        gammas,
        thetas,
        args.sigma,
        d=args.d,
        n_instances=args.instances,
        num_threads=args.threads,
        progress=True,
    )
    t_sim = sim.extras["runtime_s"]
    print(f"simulation: {t_sim:.0f} s")

    # Figure 1: phase diagrams, theory (limit), theory (finite d) and simulation side by side.
    fig, axes = plt.subplots(3, 3, figsize=(13.2, 10.5))
    for r, m in enumerate(phase.METHODS):
        plot.plot_phase_diagram(limit, m, ax=axes[r, 0])
        plot.plot_phase_diagram(finite, m, ax=axes[r, 1])
        plot.plot_phase_diagram(sim, m, ax=axes[r, 2], reference=finite)
    fig.suptitle(
        f"Transferability T = R_scratch - R_transfer (sigma={args.sigma}); hatched: T < -0.01 (negative "
        f"transfer); black line: theory boundary T = 0. Simulation: d={args.d}, {args.instances} instances, "
        "ridge 0.1",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out / "theory_phase_diagrams.png", dpi=120)
    plt.close(fig)

    # Figure 2: the three methods on the same axes at fixed angles.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, deg in zip(axes, (45, 70)):
        theta = sim.thetas[int(np.argmin(np.abs(sim.thetas - np.deg2rad(deg))))]  # a simulated angle
        plot.plot_transfer_curves(
            theta, args.sigma, d=args.d, lam=0.1, simulation=sim, ax=ax, legend=deg == 45
        )
        ax.set_title(
            f"theta = {np.degrees(theta):.1f} deg, sigma = {args.sigma}: lines theory (d={args.d}), "
            "markers simulation",
            fontsize=9,
        )
    fig.tight_layout()
    fig.savefig(args.out / "theory_transfer_curves.png", dpi=130)
    plt.close(fig)

    # Figure 3: ReLU student-teacher with ablated-teacher sources (reduced size).
    import torch

    from spatial_refine.theory.relu import fit_power_law, simulate_relu_transfer

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    relu_kw = (
        {"d": 6, "m": 32, "m_teacher": 6, "n_seeds": 2, "pretrain_steps": 300, "scratch_steps": 300}
        if args.quick
        else {"d": 10, "m": 100, "m_teacher": 10, "n_seeds": 3, "pretrain_steps": 2000, "scratch_steps": 2000}
    )
    ns = [25, 50, 100, 200, 400] if not args.quick else [20, 80]
    relu = simulate_relu_transfer([0.0, 0.25, 0.5, 0.75], ns, random_state=0, **relu_kw)
    t_relu = time.perf_counter() - t0
    amp, expo = fit_power_law(relu.ns, relu.scratch[0].mean(-1))
    ax = plot.plot_relu_transfer(relu)
    ax.set_title(
        f"ReLU student-teacher (d={relu_kw['d']}, m={relu_kw['m']}, m*={relu_kw['m_teacher']}); scratch ~ n^-{expo:.2f}",
        fontsize=8,
    )
    ax.figure.tight_layout()
    ax.figure.savefig(args.out / "theory_relu.png", dpi=130)
    plt.close(ax.figure)

    diag = diagnostic_demo(args.out)
    total = time.perf_counter() - t_start

    # Tables.
    frame = pd.concat(
        [
            limit.to_frame().assign(kind="theory_limit"),
            finite.to_frame().assign(kind="theory_finite_d"),
            sim.to_frame(),
        ]
    )
    frame.to_csv(args.out / "theory_phase_diagrams.csv", index=False, float_format="%.5g")
    checks = check_values()
    agree = agreement(finite, sim)
    agree_limit = agreement(limit, sim)
    relu_tab = pd.DataFrame(
        {
            "mu": relu.mus,
            "source risk": relu.source_risk.mean(-1),
            "||P_perp f_t||^2": relu.irreducible.mean(-1),
            **{f"T(n={n})": relu.transferability()[:, j] for j, n in enumerate(relu.ns)},
        }
    )
    c_mid = sim.extras["finetune_c"][np.argmin(np.abs(gammas - 0.5))]
    lines = [
        "# Features are fate: transferability phase diagrams (theory vs simulation) and REFINE",
        "",
        "Generated by `benchmarks/theory_phase_diagrams.py`"
        + (" (--paper)" if args.paper else " (--quick)" if args.quick else " (reduced grid)")
        + ". Figures: `theory_phase_diagrams.png`, `theory_transfer_curves.png`, `theory_relu.png`"
        + (", `theory_diagnostic_osmfish.png`." if diag is not None else "."),
        "",
        "## Settings",
        "",
        f"- grid: gamma = {gammas.min():g}..{gammas.max():g} ({gammas.size} values), theta = 0.05..1.0 x pi/2 "
        f"({thetas.size} values), sigma = {args.sigma}",
        f"- simulation: d = {args.d} (published: 500), L = 2, square hidden layer, {args.instances} instances "
        "(published: 20), init scale 1e-5, full-batch gradient descent (float32); source pretraining on the "
        "population loss; scratch stops within 1e-6 of the minimum-norm solution (<= 10,000 steps); "
        "fine-tuning and REFINE <= 5,000 steps; linear transfer in closed form with ridge 0.1",
        "- reduced grid: "
        + (
            "no (published sizes)"
            if args.paper
            else "yes: d, theta count and instances are reduced "
            "to fit a few minutes on 2 shared CPU cores; the shape of the diagrams is the published one. "
            "The published grid is available as --paper but is not practical on such a CPU: one gradient step "
            "of 400 instances (20 thetas x 20) at d = 500 takes ~0.13 s on one core here (memory-bound), i.e. "
            "hours for 20 gammas x up to 10,000 + 2 x 5,000 steps"
        ),
        "- theory columns: the d -> infinity limit, and the finite-size forms at the simulated d (ridge 0.1, "
        "refined fine-tuning factor) used for the agreement numbers",
        "",
        "## Machine and runtime",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        f"- torch threads: {args.threads}",
        f"- simulation of the phase diagrams: {t_sim:.0f} s; ReLU student-teacher: {t_relu:.0f} s; "
        f"whole script: {total:.0f} s",
        "",
        "## Check values (docs/theory.md) reproduced by the closed forms",
        "",
        checks.to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Simulation vs finite-size theory",
        "",
        "Cells with |gamma - 1| <= 0.15 (the interpolation peak, where the scratch risk diverges and gradient "
        "descent does not converge within the step budget) are excluded from the error columns.",
        "",
        agree.to_markdown(index=False),
        "",
        "Converged fraction: instances that met the gradient tolerance within the step budget. Near gamma = 1 "
        "the data covariance is ill-conditioned and nothing converges (implicit early stopping makes the "
        "simulated scratch risk finite there, unlike the divergent closed form). REFINE's residual path starts "
        "at scale 1e-5 and escapes slowly when the residual target is small (small theta), so many REFINE "
        "instances stop at the step cap; unconverged REFINE near gamma = 1 is early-stopped and beats the "
        "interpolating closed form. At gamma = 0.1 (n = 10) the closed-form REFINE variance term overstates "
        "the harm at large theta: the frozen-path coefficient is not frozen at its least-squares value there. "
        "Per-cell standard errors are in the CSV (column T_sem); with 10 instances they are 0.01-0.04.",
        "",
        "Against the d -> infinity limit instead:",
        "",
        agree_limit.to_markdown(index=False),
        "",
        f"Fine-tuning null-space scale c at gamma = 0.5 (simulated, per theta): {np.round(c_mid, 3).tolist()}; "
        f"refined theory: {float(cf.finetune_refinement_factor(0.5, args.sigma)):.3f}.",
        "",
        "## ReLU student-teacher (ablated-teacher sources)",
        "",
        f"Scratch risk fits A n^-b with b = {expo:.2f} (paper: 1.18), A = {amp:.3g}.",
        "",
        relu_tab.to_markdown(index=False, floatfmt=".3g"),
        "",
    ]
    if diag is not None:
        lines += [
            "## The diagnostic on real data (osmFISH, Codeluppi et al. 2018)",
            "",
            "Frozen representation: the mean log-normalised expression of the 30 spatial nearest neighbours "
            "(a 'niche' feature that knows tissue context but blurs cell identity); scratch input: the cell's own "
            "log-normalised expression (33 genes); macro-F1 on held-out stratified cells, 3 seeds.",
            "",
            diag.to_markdown(index=False),
            "",
        ]
    (args.out / "theory_phase_diagrams.md").write_text("\n".join(lines))
    print(f"wrote {args.out} in {total:.0f} s")


if __name__ == "__main__":
    main()
