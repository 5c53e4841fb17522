"""REFINE (residual feature integration) for spatial single-cell data, as a scverse plugin.

``import spatial_refine as sr`` is cheap: the namespaces ``sr.pp``, ``sr.tl``, ``sr.pl``,
``sr.datasets``, ``sr.refine``, ``sr.scgpt`` and ``sr.theory`` are imported on first access, so heavy
dependencies (torch, squidpy, torch-geometric) load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = ("pp", "tl", "pl", "datasets", "refine", "encoders", "scgpt", "theory", "models")
# Public classes re-exported at the top level: name -> module that defines it.
_LAZY_ATTRS = {
    "RefineClassifier": "spatial_refine.refine.estimator",
    "RefineRegressor": "spatial_refine.refine.estimator",
    "RefineAnnotator": "spatial_refine.annotator",
}

__all__ = [*_SUBMODULES, *_LAZY_ATTRS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, encoders, models, pl, pp, refine, scgpt, theory, tl  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
