"""Datasets: the data manifest of every dataset the project uses.

- :func:`list_datasets` / :func:`load_manifest`: every dataset the project uses (``data_manifest.yaml``)
  with checksums, URLs, labels, citation and license.

Importing this module is light (no anndata, scanpy or pooch until a function needs them).
"""

from __future__ import annotations

from ._verify import ChecksumError
from .manifest import (
    DatasetEntry,
    FileRecord,
    Manifest,
    ManifestError,
    get_entry,
    list_datasets,
    load_manifest,
)

__all__ = [
    "ChecksumError",
    "DatasetEntry",
    "FileRecord",
    "Manifest",
    "ManifestError",
    "get_entry",
    "list_datasets",
    "load_manifest",
]
