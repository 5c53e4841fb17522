"""Transferability phase diagrams over ``gamma x theta``: closed forms and batched simulations."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import closed_forms as cf

if TYPE_CHECKING:  # pragma: no cover
    from .simulate import GDConfig

__all__ = ["METHODS", "PhaseDiagram", "sign_agreement", "simulate_phase_diagram", "theory_phase_diagram"]

#: Transfer protocols with a phase diagram (each compared against scratch training).
METHODS = ("linear", "finetune", "refine")


@dataclass
class PhaseDiagram:
    """Transferability ``T = E R_scratch - E R_method`` on a ``gamma x theta`` grid.

    Attributes
    ----------
    gammas, thetas
        Grid axes (``n / d`` and the source-target angle in radians).
    sigma
        Label-noise standard deviation.
    d
        Input dimension (``None``: high-dimensional limit).
    kind
        ``"theory"`` or ``"simulation"``.
    transferability
        Method -> array ``(len(gammas), len(thetas))``.
    sem
        Method -> standard error of the simulated mean (simulations only).
    risk
        Method (including ``"scratch"``) -> mean risk array (simulations; theory fills what it has).
    converged
        Method -> fraction of instances that met the convergence criterion (simulations only).
    extras
        Other per-cell diagnostics (e.g. ``"finetune_c"``, ``"refine_k"``), and ``"runtime_s"``.
    params
        Settings used to compute the diagram.
    """

    gammas: np.ndarray
    thetas: np.ndarray
    sigma: float
    d: int | None
    kind: str
    transferability: dict[str, np.ndarray]
    sem: dict[str, np.ndarray] = field(default_factory=dict)
    risk: dict[str, np.ndarray] = field(default_factory=dict)
    converged: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        """Methods with a transferability grid."""
        return tuple(self.transferability)

    def negative_mask(self, method: str, tol: float = 0.0) -> np.ndarray:
        """Cells with ``T < -tol`` (negative transfer)."""
        return self.transferability[method] < -tol

    def to_frame(self) -> Any:
        """Long-format ``pandas.DataFrame``: one row per ``(method, gamma, theta)``."""
        import pandas as pd

        rows = []
        for method, grid in self.transferability.items():
            for i, g in enumerate(self.gammas):
                for j, th in enumerate(self.thetas):
                    row = {
                        "kind": self.kind,
                        "method": method,
                        "gamma": float(g),
                        "theta": float(th),
                        "theta_deg": float(np.degrees(th)),
                        "sigma": self.sigma,
                        "d": self.d,
                        "T": float(grid[i, j]),
                    }
                    if method in self.sem:
                        row["T_sem"] = float(self.sem[method][i, j])
                    if method in self.risk:
                        row["risk"] = float(self.risk[method][i, j])
                    if "scratch" in self.risk:
                        row["risk_scratch"] = float(self.risk["scratch"][i, j])
                    if method in self.converged:
                        row["converged"] = float(self.converged[method][i, j])
                    rows.append(row)
        return pd.DataFrame(rows)


def _grid(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of finite numbers.")
    return arr


def theory_phase_diagram(
    gammas: Sequence[float] | np.ndarray,
    thetas: Sequence[float] | np.ndarray,
    sigma: float = 0.0,
    *,
    d: int | None = None,
    lam: float = 0.0,
    refined: bool = False,
    depth: int = 2,
    methods: Sequence[str] = METHODS,
) -> PhaseDiagram:
    """Closed-form transferability over ``gamma x theta``.

    Parameters
    ----------
    gammas, thetas
        Grid axes.
    sigma
        Label-noise standard deviation.
    d
        ``None`` for the high-dimensional limit, or the dimension for finite-size forms.
    lam
        Ridge strength of the linear-transfer readout.
    refined
        Use the refined fine-tuning factor ``c`` (:func:`~spatial_refine.theory.closed_forms.finetune_refinement_factor`).
    depth
        Network depth (enters only through ``refined``).
    methods
        Subset of :data:`METHODS`.
    """
    g = _grid(gammas, "gammas")
    th = _grid(thetas, "thetas")
    gg, tt = np.meshgrid(g, th, indexing="ij")
    out: dict[str, np.ndarray] = {}
    risk: dict[str, np.ndarray] = {"scratch": cf.scratch_risk(gg, sigma, d)}
    for method in methods:
        if method == "linear":
            out[method] = cf.linear_transferability(gg, tt, sigma, d, lam)
            risk[method] = cf.linear_transfer_risk(gg, tt, sigma, d, lam)
        elif method == "finetune":
            out[method] = cf.finetune_transferability(gg, tt, sigma, d, refined=refined, depth=depth)
        elif method == "refine":
            out[method] = cf.refine_transferability(gg, tt, sigma, d)
        else:
            raise ValueError(f"Unknown method {method!r}; choose from {METHODS}.")
    for method in ("finetune", "refine"):
        if method in out:
            risk[method] = risk["scratch"] - out[method]
    return PhaseDiagram(
        gammas=g,
        thetas=th,
        sigma=float(sigma),
        d=d,
        kind="theory",
        transferability=out,
        risk=risk,
        params={"lam": lam, "refined": refined, "depth": depth},
    )


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def simulate_phase_diagram(
    gammas: Sequence[float] | np.ndarray,
    thetas: Sequence[float] | np.ndarray,
    sigma: float = 0.0,
    *,
    d: int = 100,
    n_instances: int = 20,
    methods: Sequence[str] = METHODS,
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-5,
    lam: float = 0.1,
    scratch_config: GDConfig | None = None,
    finetune_config: GDConfig | None = None,
    dtype: str = "float32",
    num_threads: int | None = None,
    random_state: int = 0,
    progress: bool = False,
) -> PhaseDiagram:
    """Simulated transferability over ``gamma x theta`` with batched gradient descent.

    The source network is pretrained once per instance (population loss) and shared across the grid; each
    ``gamma`` is one batched program over all ``thetas x n_instances`` (scratch, linear transfer, fine-tuning
    and REFINE on the same target data). The paper used ``d = 500``, 20 instances, ``lam = 0.1``.

    Parameters
    ----------
    gammas, thetas
        Grid axes; ``n = round(gamma d)``.
    sigma
        Target label-noise standard deviation.
    d, n_instances
        Dimension and number of independent instances.
    methods
        Subset of :data:`METHODS` (scratch is always run).
    depth, width, init_scale
        Network architecture and initialisation scale.
    lam
        Ridge strength of the linear-transfer readout.
    scratch_config, finetune_config
        :class:`~spatial_refine.theory.simulate.GDConfig` for scratch and for fine-tuning / REFINE.
    dtype
        ``"float32"`` (fast) or ``"float64"``.
    num_threads
        Torch CPU threads during the simulation (restored afterwards); ``None`` leaves the setting alone.
    random_state
        Seed; each ``gamma`` derives its own stream from it.
    progress
        Show a tqdm progress bar over ``gammas``.
    """
    from .simulate import (
        FINETUNE_CONFIG,
        SCRATCH_CONFIG,
        GDConfig,
        make_task_vectors,
        pretrain_source,
        simulate_transfer,
    )

    g = _grid(gammas, "gammas")
    th = _grid(thetas, "thetas")
    if np.any(g <= 0):
        raise ValueError("`gammas` must be positive.")
    sc_cfg = scratch_config or SCRATCH_CONFIG
    ft_cfg = finetune_config or (
        GDConfig(lr_factor=0.25, tol=1e-9, max_steps=5_000) if dtype == "float32" else FINETUNE_CONFIG
    )
    shape = (g.size, th.size)
    names = ["scratch", *methods]
    t_grid = {m: np.full(shape, np.nan) for m in methods}
    sem = {m: np.full(shape, np.nan) for m in methods}
    risk = {m: np.full(shape, np.nan) for m in names}
    conv = {m: np.full(shape, np.nan) for m in names if m != "linear"}
    extras: dict[str, Any] = {"finetune_c": np.full(shape, np.nan), "refine_k": np.full(shape, np.nan)}
    start = time.perf_counter()
    iterator: Any = range(g.size)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="phase diagram (gamma)")
    with _torch_threads(num_threads):
        beta_s, _ = make_task_vectors(d, [0.0], n_instances, random_state=random_state, dtype=dtype)
        weights, _ = pretrain_source(
            beta_s, depth=depth, width=width, init_scale=init_scale, random_state=random_state + 1
        )
        for i in iterator:
            n = max(1, round(float(g[i]) * d))
            sim = simulate_transfer(
                d,
                n,
                th,
                sigma,
                n_instances=n_instances,
                methods=names,
                depth=depth,
                width=width,
                init_scale=init_scale,
                lam=lam,
                scratch_config=sc_cfg,
                finetune_config=ft_cfg,
                pretrained=(beta_s, weights),
                dtype=dtype,
                random_state=random_state + 1000 + i,
            )
            for m in names:
                risk[m][i] = sim.mean_risk(m)
                if m in conv and m in sim.converged:
                    conv[m][i] = sim.converged[m].mean(axis=0)
            for m in methods:
                t_grid[m][i] = sim.transferability(m)
                sem[m][i] = sim.transferability_sem(m)
            for key, val in sim.extras.items():
                extras[key][i] = val.mean(axis=0)
    extras["runtime_s"] = time.perf_counter() - start
    return PhaseDiagram(
        gammas=g,
        thetas=th,
        sigma=float(sigma),
        d=d,
        kind="simulation",
        transferability=t_grid,
        sem=sem,
        risk=risk,
        converged=conv,
        extras=extras,
        params={
            "n_instances": n_instances,
            "depth": depth,
            "width": width if width is not None else d,
            "init_scale": init_scale,
            "lam": lam,
            "dtype": dtype,
            "scratch_config": sc_cfg,
            "finetune_config": ft_cfg,
            "random_state": random_state,
        },
    )


def sign_agreement(
    theory: PhaseDiagram, simulation: PhaseDiagram, method: str, margin: float = 0.02
) -> tuple[float, int]:
    """Fraction of grid cells where theory and simulation agree on the sign of ``T``.

    Cells where the theory is within ``margin`` of zero (the phase boundary itself) or not finite are
    excluded. Returns ``(fraction, number_of_cells_compared)``.
    """
    if not (np.allclose(theory.gammas, simulation.gammas) and np.allclose(theory.thetas, simulation.thetas)):
        raise ValueError("The two diagrams are on different grids.")
    t_th, t_sim = theory.transferability[method], simulation.transferability[method]
    ok = np.isfinite(t_th) & np.isfinite(t_sim) & (np.abs(t_th) > margin)
    if not ok.any():
        return float("nan"), 0
    return float(np.mean(np.sign(t_th[ok]) == np.sign(t_sim[ok]))), int(ok.sum())
