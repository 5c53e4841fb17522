"""Datasets: the data manifest, verified local/cached/downloaded files, AnnData loaders, synthetic tissue.

- :func:`list_datasets` / :func:`load_manifest`: every dataset the project uses (``data_manifest.yaml``)
  with checksums, URLs, labels, citation and license.
- :func:`fetch`: path of a verified local copy (``$SPATIAL_REFINE_DATA_DIR``, then the user cache), or a
  checksum-verified download.
- Loaders returning AnnData: :func:`merfish_demo` (ships with the package), :func:`merfish_hypothalamus`,
  :func:`seqfish_embryo`, :func:`osmfish_cortex`, :func:`wang_pancreas`, :func:`xin_pancreas`.
- :func:`synthetic_tissue`: cells with types and spatial niches, any size up to millions of cells.

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
from .loaders import (
    merfish_demo,
    merfish_hypothalamus,
    osmfish_cortex,
    seqfish_embryo,
    wang_pancreas,
    xin_pancreas,
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
from .synthetic import synthetic_tissue

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
    "merfish_demo",
    "merfish_hypothalamus",
    "osmfish_cortex",
    "seqfish_embryo",
    "synthetic_tissue",
    "wang_pancreas",
    "xin_pancreas",
]
