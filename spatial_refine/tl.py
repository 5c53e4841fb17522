"""Tools: one-call functions on AnnData (scanpy style).

Each submodule is imported on first use, so ``sr.tl`` itself is light.
"""

from __future__ import annotations

import importlib
from typing import Any

_FUNCTIONS = {
    "refine": "spatial_refine._annotate",
    "annotate": "spatial_refine._annotate",
    "scgpt_embed": "spatial_refine.scgpt._anndata",
    "transferability": "spatial_refine.theory._anndata",
}

__all__ = sorted(_FUNCTIONS)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
