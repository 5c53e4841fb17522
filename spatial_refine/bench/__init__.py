"""Benchmarks of the generic REFINE core on the paper's vision and text tasks.

- :mod:`~spatial_refine.bench.tasks`: the tasks (:data:`TASKS`) and where their data comes from;
- :mod:`~spatial_refine.bench.protocols`: ``paper`` and ``quick`` protocols;
- :mod:`~spatial_refine.bench.runner`: :func:`run_task` (source pretraining cached as safetensors, every
  strategy on every seed);
- :mod:`~spatial_refine.bench.report`: markdown/CSV tables and plots;
- :mod:`~spatial_refine.bench.cli`: ``spatial-refine bench vision|text``.

Importing this package is light; torch loads with the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PROTOCOLS", "TASKS", "get_protocol", "get_task", "run_task", "write_report"]

_LAZY = {
    "PROTOCOLS": "protocols",
    "get_protocol": "protocols",
    "TASKS": "tasks",
    "get_task": "tasks",
    "run_task": "runner",
    "write_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
