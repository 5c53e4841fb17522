"""Matplotlib figures for the theory module: phase diagrams, transfer curves, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import closed_forms as cf

if TYPE_CHECKING:  # pragma: no cover
    from .diagnostic import TransferabilityReport
    from .phase import PhaseDiagram
    from .relu import ReluTransferResult

__all__ = [
    "plot_learning_curves",
    "plot_phase_diagram",
    "plot_phase_diagrams",
    "plot_relu_transfer",
    "plot_transfer_curves",
]

_TITLES = {"linear": "linear transfer", "finetune": "fine-tuning", "refine": "REFINE (frozen + residual)"}
_COLORS = {"linear": "C0", "finetune": "C1", "refine": "C2", "scratch": "0.4", "probe": "C0"}


def _edges(centers: np.ndarray) -> np.ndarray:
    c = np.asarray(centers, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _finite_for_contour(t: np.ndarray, vmax: float) -> np.ndarray:
    out = np.array(t, dtype=np.float64)
    out[np.isposinf(out)] = 10 * vmax
    out[np.isneginf(out)] = -10 * vmax
    return np.ma.masked_invalid(out)


def plot_phase_diagram(
    diagram: PhaseDiagram,
    method: str,
    *,
    ax: Any = None,
    vmax: float = 1.0,
    reference: PhaseDiagram | None = None,
    hatch_negative: bool = True,
    negative_tol: float = 0.01,
    colorbar: bool = True,
    title: str | None = None,
) -> Any:
    """One transferability panel over ``gamma x theta`` (degrees) with the negative region marked.

    Parameters
    ----------
    diagram
        Theory or simulation :class:`~spatial_refine.theory.phase.PhaseDiagram`.
    method
        ``"linear"``, ``"finetune"`` or ``"refine"``.
    ax
        Axes to draw on (a new figure if ``None``).
    vmax
        Colour range ``[-vmax, vmax]`` (values are clipped; the divergent scratch risk at ``gamma = 1`` shows
        as saturated).
    reference
        A diagram whose negative-transfer boundary (``T = 0`` contour) is drawn as a black line (default:
        ``diagram`` itself); pass the theory to overlay the predicted boundary on a simulation.
    hatch_negative
        Hatch cells with ``T < -negative_tol`` (negative transfer beyond noise).
    negative_tol
        Tolerance for hatching (simulated zeros fluctuate around 0).
    colorbar
        Add a colour bar.
    title
        Panel title.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.4))
    t = diagram.transferability[method]
    x, y = diagram.gammas, np.degrees(diagram.thetas)
    mesh = ax.pcolormesh(
        _edges(x),
        _edges(y),
        np.clip(np.nan_to_num(t, nan=np.nan, posinf=vmax, neginf=-vmax), -vmax, vmax).T,
        cmap="RdBu",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax),
        shading="flat",
    )
    if hatch_negative:
        neg = np.where(np.isfinite(t) | np.isneginf(t), (t < -negative_tol).astype(float), 0.0)
        if neg.any() and x.size > 1 and y.size > 1:
            ax.contourf(x, y, neg.T, levels=[0.5, 1.5], colors="none", hatches=["///"])
    ref = reference if reference is not None else diagram
    t_ref = ref.transferability.get(method)
    if t_ref is not None and x.size > 1 and y.size > 1:
        # Level just below 0: the boundary of {T < 0}, not the edge of regions where T is exactly 0.
        ax.contour(
            ref.gammas,
            np.degrees(ref.thetas),
            _finite_for_contour(t_ref, vmax).T,
            levels=[-1e-6],
            colors="k",
            linestyles="solid",
            linewidths=1.2,
        )
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(90.0, ax.get_ylim()[1]))
    ax.set_xlabel(r"$\gamma = n/d$")
    ax.set_ylabel(r"$\theta$ (degrees)")
    kind = diagram.kind + (f", d={diagram.d}" if diagram.d is not None else r", $d\to\infty$")
    ax.set_title(title or f"{_TITLES.get(method, method)}\n({kind}, $\\sigma$={diagram.sigma:g})", fontsize=9)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=r"$T$ = R$_{sc}$ $-$ R$_{tr}$")
    return ax


def plot_phase_diagrams(
    theory: PhaseDiagram,
    simulation: PhaseDiagram | None = None,
    *,
    methods: Sequence[str] | None = None,
    vmax: float = 1.0,
) -> Any:
    """Theory and simulation side by side (one row per method); the theory's ``T = 0`` line on both.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    methods = tuple(methods or theory.methods)
    n_cols = 1 if simulation is None else 2
    fig, axes = plt.subplots(len(methods), n_cols, figsize=(4.4 * n_cols, 3.5 * len(methods)), squeeze=False)
    for r, method in enumerate(methods):
        plot_phase_diagram(theory, method, ax=axes[r, 0], vmax=vmax)
        if simulation is not None:
            plot_phase_diagram(simulation, method, ax=axes[r, 1], vmax=vmax, reference=theory)
    fig.tight_layout()
    return fig


def plot_transfer_curves(
    theta: float,
    sigma: float = 0.0,
    *,
    gammas: np.ndarray | None = None,
    d: int | None = None,
    lam: float = 0.0,
    simulation: PhaseDiagram | None = None,
    ax: Any = None,
    ylim: tuple[float, float] = (-1.0, 1.0),
    legend: bool = True,
) -> Any:
    """Transferability against ``gamma`` at one angle: linear transfer, fine-tuning and REFINE on the same axes.

    Lines are the closed forms; markers with error bars are the simulation at its closest angle. The
    ``gamma`` ranges where linear transfer is negative are shaded.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    g = np.linspace(0.02, 2.0, 397) if gammas is None else np.asarray(gammas, dtype=np.float64)
    curves = {
        "linear": cf.linear_transferability(g, theta, sigma, d, lam),
        "finetune": cf.finetune_transferability(g, theta, sigma, d, refined=True),
        "refine": cf.refine_transferability(g, theta, sigma, d),
    }
    neg = curves["linear"] < 0
    ax.fill_between(
        g, ylim[0], ylim[1], where=neg, color="C3", alpha=0.12, lw=0, label="negative linear transfer"
    )
    for method, t in curves.items():
        ax.plot(g, np.clip(t, *ylim), color=_COLORS[method], label=f"{_TITLES[method]} (theory)")
    if simulation is not None:
        j = int(np.argmin(np.abs(simulation.thetas - theta)))
        for method in simulation.methods:
            ax.errorbar(
                simulation.gammas,
                np.clip(simulation.transferability[method][:, j], *ylim),
                yerr=simulation.sem[method][:, j] if method in simulation.sem else None,
                fmt="o",
                ms=3.5,
                color=_COLORS[method],
                label=f"{_TITLES[method]} (simulation, d={simulation.d})",
            )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.axvline(1.0, color="0.6", lw=0.6, ls=":")
    ax.set_ylim(*ylim)
    ax.set_xlabel(r"$\gamma = n/d$")
    ax.set_ylabel(r"transferability $T$")
    ax.set_title(rf"$\theta$ = {np.degrees(theta):.0f}°, $\sigma$ = {sigma:g}", fontsize=9)
    if legend:  # where it covers the fewest points (a fixed lower-left hid the negative-transfer dip)
        ax.legend(fontsize=6.5, loc="best")
    return ax


def plot_learning_curves(report: TransferabilityReport, *, metric: str | None = None, ax: Any = None) -> Any:
    """Learning curves (mean +- s.e.m. over seeds) of the probe, scratch and REFINE-style models."""
    import matplotlib.pyplot as plt

    metric = metric or report.params.get("metric", "f1_macro")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.4))
    labels = {
        "probe": "linear probe (frozen rep)",
        "scratch": "scratch (raw input)",
        "refine": "[raw, rep] (REFINE-style)",
    }
    for model, color in (("probe", "C0"), ("scratch", "0.4"), ("refine", "C2")):
        c = report.curves[report.curves["model"] == model].sort_values("n_train")
        ax.errorbar(
            c["n_train"],
            c[metric],
            yerr=c.get(f"{metric}_sem"),
            marker="o",
            ms=3.5,
            color=color,
            label=labels[model],
        )
    ax.set_xscale("log")
    ax.set_xlabel("training cells")
    ax.set_ylabel(metric)
    ax.set_title(_VERDICT_TITLES.get(report.verdict, report.verdict), fontsize=9)
    ax.legend(fontsize=7)
    return ax


#: plain-language titles of the diagnostic's verdicts
_VERDICT_TITLES = {
    "helps": "frozen features help",
    "helps_small_n": "frozen features help with few labels only",
    "negative": "negative transfer: scratch wins",
    "neutral": "frozen features neither help nor hurt",
}


def plot_relu_transfer(result: ReluTransferResult, *, ax: Any = None) -> Any:
    """ReLU student-teacher: risks against ``n`` per ablation fraction; dashed: irreducible ``||P_perp f_t||^2``."""
    import matplotlib
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.6))
    sc = result.scratch[0].mean(-1)
    ax.plot(result.ns, sc, "k-o", ms=3.5, label="scratch")
    for i, mu in enumerate(result.mus):
        color = plt.cm.viridis(i / max(1, len(result.mus) - 1))
        ax.plot(
            result.ns,
            result.linear[i].mean(-1),
            "-s",
            ms=3.0,
            color=color,
            label=rf"linear transfer $\mu$={mu:g}",
        )
        ax.axhline(result.irreducible[i].mean(), color=color, ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(result.ns, [str(n) for n in result.ns])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("target samples n")
    ax.set_ylabel("population risk")
    ax.legend(fontsize=6.5)
    return ax
