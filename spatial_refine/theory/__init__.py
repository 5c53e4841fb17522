"""When does transfer help? Deep-linear-network theory, simulations and a diagnostic for users.

Implements "Features are fate" (Tahir, Ganguli & Rotskoff, ICML 2025) and places REFINE in the same model:

- :mod:`~spatial_refine.theory.closed_forms`: scratch risk (double descent), linear-transfer risk and
  transferability, phase boundaries, ridge, fine-tuning (incl. a refinement and finite-source forms),
  REFINE; numpy only.
- :mod:`~spatial_refine.theory.simulate`: batched gradient descent of deep linear networks (scratch,
  linear transfer, fine-tuning); :mod:`~spatial_refine.theory.refine_linear`: REFINE in the same model;
  :mod:`~spatial_refine.theory.relu`: the student-teacher ReLU variant with ablated-teacher sources.
- :mod:`~spatial_refine.theory.phase`: phase diagrams (theory and simulation);
  :mod:`~spatial_refine.theory.plot`: figures.
- :mod:`~spatial_refine.theory.diagnostic`: learning-curve diagnostic on real data (arrays);
  :func:`spatial_refine.tl.transferability` wraps it for AnnData.

Importing this package loads numpy-only modules; torch is imported on first use of a simulator.
"""

from __future__ import annotations

import importlib
from typing import Any

from .closed_forms import (
    arccos_kernel,
    finetune_refinement_factor,
    finetune_risk_excess,
    finetune_theta_threshold,
    finetune_transferability,
    finite_source_finetune_transferability,
    label_shift_kl,
    linear_transfer_risk,
    linear_transferability,
    negative_transfer_boundaries,
    overparameterized_boundary,
    refine_risk,
    refine_transferability,
    ridge_linear_transfer_risk,
    scratch_risk,
    theta_threshold,
)
from .diagnostic import TransferabilityReport, fit_saturating_curve, transferability_diagnostic
from .phase import METHODS, PhaseDiagram, sign_agreement, simulate_phase_diagram, theory_phase_diagram
from .plot import (
    plot_learning_curves,
    plot_phase_diagram,
    plot_phase_diagrams,
    plot_relu_transfer,
    plot_transfer_curves,
)

# Torch-based names, imported on first access.
_LAZY = {
    "GDConfig": "simulate",
    "TransferSimulation": "simulate",
    "finetune": "simulate",
    "linear_transfer": "simulate",
    "make_task_vectors": "simulate",
    "pretrain_source": "simulate",
    "sample_target_data": "simulate",
    "scratch": "simulate",
    "simulate_transfer": "simulate",
    "refine_train": "refine_linear",
    "ReluTransferResult": "relu",
    "fit_power_law": "relu",
    "projection_residual": "relu",
    "simulate_relu_transfer": "relu",
}

__all__ = [
    "METHODS",
    "GDConfig",
    "PhaseDiagram",
    "ReluTransferResult",
    "TransferSimulation",
    "TransferabilityReport",
    "arccos_kernel",
    "finetune",
    "finetune_refinement_factor",
    "finetune_risk_excess",
    "finetune_theta_threshold",
    "finetune_transferability",
    "finite_source_finetune_transferability",
    "fit_power_law",
    "fit_saturating_curve",
    "label_shift_kl",
    "linear_transfer",
    "linear_transfer_risk",
    "linear_transferability",
    "make_task_vectors",
    "negative_transfer_boundaries",
    "overparameterized_boundary",
    "plot_learning_curves",
    "plot_phase_diagram",
    "plot_phase_diagrams",
    "plot_relu_transfer",
    "plot_transfer_curves",
    "pretrain_source",
    "projection_residual",
    "refine_risk",
    "refine_train",
    "refine_transferability",
    "ridge_linear_transfer_risk",
    "sample_target_data",
    "scratch",
    "scratch_risk",
    "sign_agreement",
    "simulate_phase_diagram",
    "simulate_relu_transfer",
    "simulate_transfer",
    "theory_phase_diagram",
    "theta_threshold",
    "transferability_diagnostic",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
