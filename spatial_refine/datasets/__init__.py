"""Datasets: the data manifest and verified local, cached or downloaded files.

- :func:`list_datasets` / :func:`load_manifest`: every dataset the project uses (``data_manifest.yaml``)
  with checksums, URLs, labels, citation and license.
- :func:`fetch`: path of a verified local copy (``$SPATIAL_REFINE_DATA_DIR``, then the user cache), or a
  checksum-verified download.

Importing this module is light (no anndata, scanpy or pooch until a function needs them).
"""

from __future__ import annotations

from ._verify import ChecksumError
from .fetch import (
    CACHE_ENV,
    DATA_ENV,
    DatasetUnavailableError,
    UnverifiableDatasetError,
    cache_dir,
    data_dirs,
    fetch,
)
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
    "CACHE_ENV",
    "DATA_ENV",
    "ChecksumError",
    "DatasetEntry",
    "DatasetUnavailableError",
    "FileRecord",
    "Manifest",
    "ManifestError",
    "UnverifiableDatasetError",
    "cache_dir",
    "data_dirs",
    "fetch",
    "get_entry",
    "list_datasets",
    "load_manifest",
]
