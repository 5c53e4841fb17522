"""Find a manifest dataset on disk, or download it, and verify it: ``sr.datasets.fetch(name) -> Path``.

Search order:

1. files shipped inside the package (the demo dataset);
2. the data directories: ``data_dir=`` and then ``SPATIAL_REFINE_DATA_DIR`` (an ``os.pathsep``-separated
   list), each tried as ``<dir>/<entry.path>`` (e.g. ``spatial/merfish_....h5ad``) and ``<dir>/<entry.file>``;
3. the user cache, ``SPATIAL_REFINE_CACHE_DIR`` or ``pooch.os_cache("spatial_refine")``, as
   ``<cache>/<name>/<file>``;
4. a download with pooch from the entry's URLs into the cache, verified against the manifest's checksum.

Every local file is verified too (size, then checksum, remembered by path + size + mtime so that big files
are hashed once). Entries without any checksum are refused unless ``allow_unverified=True``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from ._verify import ChecksumError, VerifyMode, file_digest, verify_file
from .manifest import DatasetEntry, Manifest, get_entry

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "ChecksumError",
    "DatasetUnavailableError",
    "UnverifiableDatasetError",
    "cache_dir",
    "data_dirs",
    "fetch",
]

DATA_ENV = "SPATIAL_REFINE_DATA_DIR"
CACHE_ENV = "SPATIAL_REFINE_CACHE_DIR"
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "_data"


class DatasetUnavailableError(FileNotFoundError):
    """The dataset is in no data directory or cache and cannot be downloaded."""


class UnverifiableDatasetError(RuntimeError):
    """The manifest has no checksum for the dataset and ``allow_unverified`` was not given."""


def data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data directories searched by :func:`fetch`, in order.

    Parameters
    ----------
    data_dir
        Extra directory (or ``os.pathsep``-separated directories) searched first.

    Returns
    -------
    ``data_dir`` entries, then those of ``$SPATIAL_REFINE_DATA_DIR``; empty items are skipped, ``~`` is
    expanded, duplicates removed.
    """
    raw: list[str] = []
    for value in (os.fspath(data_dir) if data_dir is not None else None, os.environ.get(DATA_ENV)):
        if value:
            raw.extend(v for v in value.split(os.pathsep) if v.strip())
    out: list[Path] = []
    for item in raw:
        p = Path(item.strip()).expanduser()
        if p not in out:
            out.append(p)
    return out


def cache_dir() -> Path:
    """The user cache for downloads: ``$SPATIAL_REFINE_CACHE_DIR`` or ``pooch.os_cache("spatial_refine")``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("spatial_refine"))


def _candidates(entry: DatasetEntry, dirs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        for cand in (d / entry.path, d / entry.file):
            if cand not in out:
                out.append(cand)
    return out


def _exists(entry: DatasetEntry, path: Path) -> bool:
    return path.is_dir() if entry.kind == "directory" else path.is_file()


def _unverified(entry: DatasetEntry, path: Path | str, allow_unverified: bool) -> None:
    hint = (
        f"The manifest has no checksum for dataset {entry.name!r}, so {path} cannot be verified. "
        f"Pass allow_unverified=True to use it anyway"
    )
    if not allow_unverified:
        raise UnverifiableDatasetError(hint + ", then add its sha256 to data_manifest.yaml.")
    digest = file_digest(path) if Path(path).is_file() else None
    suffix = f"; its sha256 is {digest} (add it to data_manifest.yaml)" if digest else ""
    warnings.warn(f"Using unverified data for {entry.name!r} at {path}{suffix}.", UserWarning, stacklevel=3)


def _verify(entry: DatasetEntry, path: Path, mode: VerifyMode, allow_unverified: bool) -> None:
    memo = cache_dir()
    if entry.kind == "directory":
        missing = [f.path for f in entry.files if not (path / f.path).is_file()]
        if missing:
            raise ChecksumError(
                f"Directory {path} for dataset {entry.name!r} lacks file(s) {missing}; "
                f"the manifest lists {[f.path for f in entry.files]}."
            )
        for f in entry.files:
            verify_file(
                path / f.path,
                known_hash=f"sha256:{f.sha256}",
                size=f.size,
                mode=mode,
                memo_dir=memo,
                what=f"{entry.name}/{f.path}",
            )
        return
    if entry.known_hash is None:
        verify_file(path, known_hash=None, size=entry.size, mode=mode, memo_dir=memo, what=entry.name)
        _unverified(entry, path, allow_unverified)
        return
    verify_file(path, known_hash=entry.known_hash, size=entry.size, mode=mode, memo_dir=memo, what=entry.name)


def _copy_file_url(url: str, output_file: str, pooch: object = None, check_only: bool = False) -> bool | None:
    """pooch downloader for ``file://`` URLs (local mirrors, shared file systems)."""
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    parsed = urlparse(url)
    source = Path(url2pathname(unquote(parsed.path)))
    if check_only:
        return source.is_file()
    if not source.is_file():
        raise FileNotFoundError(f"{url} does not exist")
    shutil.copyfile(source, output_file)
    return None


def _no_copy_message(entry: DatasetEntry, searched: list[Path]) -> str:
    where = "\n".join(f"  - {p}" for p in searched) or "  (no data directory configured)"
    return (
        f"Dataset {entry.name!r} ({entry.file}) was not found. Searched:\n{where}\n"
        f"Where it comes from: {entry.source}\n"
        f"Put the file at <DIR>/{entry.path} and set the environment variable {DATA_ENV}=<DIR> "
        f"(several directories: separate them with {os.pathsep!r}), or pass data_dir=<DIR>."
    )


def _download(entry: DatasetEntry, target: Path, *, allow_unverified: bool, progressbar: bool) -> Path:
    import pooch

    known_hash = entry.known_hash
    if known_hash is None and not allow_unverified:
        raise UnverifiableDatasetError(
            f"The manifest has no checksum for dataset {entry.name!r}, so a download from {entry.urls[0]} "
            "could not be verified. Pass allow_unverified=True to download it anyway (a warning gives its "
            "sha256 to add to data_manifest.yaml)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    mismatch = False
    for url in entry.urls:
        downloader = _copy_file_url if url.startswith("file://") else None
        try:
            fname = pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=entry.file,
                path=target.parent,
                downloader=downloader,
                progressbar=progressbar and downloader is None,
            )
        except ValueError as exc:  # pooch: hash mismatch, or an unsupported URL
            mismatch = mismatch or "hash" in str(exc).lower()
            failures.append(f"  - {url}: {exc}")
            continue
        except Exception as exc:  # network errors, HTTP errors, missing local mirror
            failures.append(f"  - {url}: {type(exc).__name__}: {exc}")
            continue
        path = Path(fname)
        if entry.size is not None and path.stat().st_size != entry.size:
            failures.append(f"  - {url}: {path.stat().st_size:,} bytes instead of {entry.size:,}")
            mismatch = True
            path.unlink()
            continue
        if known_hash is None:
            _unverified(entry, path, allow_unverified=True)
        else:  # record the verification so the next call does not rehash
            verify_file(path, known_hash=known_hash, size=entry.size, memo_dir=cache_dir(), what=entry.name)
        return path
    detail = "\n".join(failures)
    if mismatch:
        raise ChecksumError(
            f"Downloads of dataset {entry.name!r} did not match the manifest's checksum or size:\n{detail}\n"
            "The server may serve a different version. Nothing was kept."
        )
    raise DatasetUnavailableError(
        f"Could not download dataset {entry.name!r} ({entry.file}); are you offline?\n{detail}\n"
        f"Download it by hand from one of the URLs above and put it at <DIR>/{entry.path} with "
        f"{DATA_ENV}=<DIR>, or at {target}."
    )


def fetch(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    allow_unverified: bool = False,
    verify: VerifyMode = "memo",
    progressbar: bool = True,
    manifest: Manifest | None = None,
) -> Path:
    """Return the local path of a manifest dataset, downloading and verifying it when needed.

    Parameters
    ----------
    name
        Dataset name (see :func:`~spatial_refine.datasets.list_datasets`).
    data_dir
        Directory (or ``os.pathsep``-separated directories) searched before ``$SPATIAL_REFINE_DATA_DIR``.
    download
        Download into the user cache when no local copy exists (only for entries with URLs).
    allow_unverified
        Accept (with a warning) a file whose manifest entry has no checksum. Without it such entries raise
        :class:`UnverifiableDatasetError`.
    verify
        ``"memo"`` (default): checksum once per file version (path, size, mtime), remembered across
        sessions; ``"full"``: rehash every time; ``"size"``: compare sizes only.
    progressbar
        Show a download progress bar (needs tqdm).
    manifest
        Use this manifest instead of the project's.

    Returns
    -------
    Path to the verified file, or to the directory for ``kind: directory`` entries.

    Raises
    ------
    KeyError
        Unknown dataset name.
    ChecksumError
        A local or downloaded copy has the wrong size or checksum.
    DatasetUnavailableError
        No local copy and no download possible (no URL, ``download=False``, or offline); the message says
        where the data comes from and which environment variable to set.
    UnverifiableDatasetError
        The entry has no checksum and ``allow_unverified`` is False.
    """
    entry = get_entry(name, manifest)
    searched: list[Path] = []
    if entry.packaged:
        packaged = PACKAGE_DATA_DIR / entry.file
        searched.append(packaged)
        if packaged.is_file():
            _verify(entry, packaged, verify, allow_unverified)
            return packaged
    for cand in _candidates(entry, data_dirs(data_dir)):
        searched.append(cand)
        if _exists(entry, cand):
            _verify(entry, cand, verify, allow_unverified)
            return cand

    target = cache_dir() / entry.name / entry.file
    searched.append(target)
    if entry.kind == "file" and target.is_file():
        try:
            _verify(entry, target, verify, allow_unverified)
            return target
        except ChecksumError as exc:
            if not (download and entry.urls):
                raise
            warnings.warn(f"{exc} Downloading it again.", UserWarning, stacklevel=2)
            target.unlink()

    if entry.kind == "directory" or not entry.urls:
        raise DatasetUnavailableError(
            _no_copy_message(entry, searched) + "\nThere is no public download URL for this file."
        )
    if not download:
        raise DatasetUnavailableError(
            _no_copy_message(entry, searched)
            + f"\nOr call fetch({name!r}, download=True) to download it from "
            f"{entry.urls[0]}."
        )
    return _download(entry, target, allow_unverified=allow_unverified, progressbar=progressbar)
