"""Parse and validate ``data_manifest.yaml``: every dataset the project uses, with checksums and provenance.

The manifest lives at the repository root; the wheel ships a copy as
``spatial_refine/datasets/data_manifest.yaml``. :func:`load_manifest` finds whichever exists.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "DatasetEntry",
    "FileRecord",
    "Manifest",
    "ManifestError",
    "get_entry",
    "list_datasets",
    "load_manifest",
    "manifest_path",
]

MANIFEST_NAME = "data_manifest.yaml"
_PACKAGE_DIR = Path(__file__).resolve().parent
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_URL_SCHEMES = ("https://", "http://", "ftp://", "file://")
_KINDS = ("file", "directory")
_REQUIRED = (
    "title",
    "modality",
    "file",
    "path",
    "sha256",
    "size",
    "urls",
    "format",
    "layout",
    "labels",
    "source",
    "citation",
    "license",
)
_OPTIONAL = ("kind", "packaged", "md5", "shape", "values", "files", "notes")


class ManifestError(ValueError):
    """The manifest (or one of its entries) is malformed."""


@dataclass(frozen=True)
class FileRecord:
    """One file of a ``kind: directory`` entry, relative to the directory."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetEntry:
    """One validated manifest entry. See the header of ``data_manifest.yaml`` for the meaning of fields."""

    name: str
    title: str
    modality: str
    kind: str
    file: str
    path: str
    sha256: str | None
    size: int | None
    urls: tuple[str, ...]
    format: str
    layout: str
    labels: Mapping[str, str]
    source: str
    citation: str
    license: str
    md5: str | None = None
    packaged: bool = False
    shape: tuple[int, ...] | None = None
    values: str | None = None
    files: tuple[FileRecord, ...] = ()
    notes: str | None = None

    @property
    def known_hash(self) -> str | None:
        """Hash string in pooch's format (``sha256:...`` preferred, else ``md5:...``), or None."""
        if self.sha256 is not None:
            return f"sha256:{self.sha256}"
        if self.md5 is not None:
            return f"md5:{self.md5}"
        return None

    @property
    def verifiable(self) -> bool:
        """Whether a local or downloaded copy can be checked against a known checksum."""
        if self.kind == "directory":
            return bool(self.files)
        return self.known_hash is not None


class Manifest(Mapping[str, DatasetEntry]):
    """Validated manifest: a read-only mapping ``name -> DatasetEntry``.

    Parameters
    ----------
    entries
        The validated entries, in file order.
    source
        The file the manifest was read from.
    """

    def __init__(self, entries: Mapping[str, DatasetEntry], source: Path | None = None) -> None:
        self._entries = dict(entries)
        self.source = source

    def __getitem__(self, name: str) -> DatasetEntry:
        try:
            return self._entries[name]
        except KeyError:
            import difflib

            known = ", ".join(sorted(self._entries))
            close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
            close += [k for k in sorted(self._entries) if str(name).lower() in k.lower() and k not in close]
            hint = f" Did you mean {', '.join(map(repr, close[:3]))}?" if close else ""
            raise KeyError(f"Unknown dataset {name!r}.{hint} Known datasets: {known}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} datasets from {self.source})"


def manifest_path() -> Path:
    """Locate ``data_manifest.yaml``.

    A source checkout's root file wins (it is the one developers edit); an installed wheel has its copy
    inside the package.

    Returns
    -------
    The path of the manifest file.
    """
    checkout = _PACKAGE_DIR.parents[1]
    candidates = [checkout / MANIFEST_NAME, _PACKAGE_DIR / MANIFEST_NAME]
    if (checkout / "pyproject.toml").is_file() and candidates[0].is_file():
        return candidates[0]
    if candidates[1].is_file():
        return candidates[1]
    raise FileNotFoundError(
        f"{MANIFEST_NAME} was found neither in the package ({candidates[1]}) nor in a source checkout "
        f"({candidates[0]}). Reinstall spatial-refine, or pass the manifest path explicitly."
    )


def _err(name: str, msg: str) -> ManifestError:
    return ManifestError(f"Manifest entry {name!r}: {msg}")


def _check_rel_path(name: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _err(name, f"{key!r} must be a non-empty string, got {value!r}")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value:
        raise _err(name, f"{key!r} must be a relative POSIX path without '..', got {value!r}")
    return value


def _check_sha(name: str, value: Any, *, allow_none: bool, key: str = "sha256") -> str | None:
    if value is None:
        if allow_none:
            return None
        raise _err(name, f"{key!r} is required here")
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise _err(name, f"{key!r} must be 64 lowercase hex digits or null, got {value!r}")
    return value


def _check_size(name: str, value: Any, key: str = "size") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _err(name, f"{key!r} must be a non-negative integer (bytes) or null, got {value!r}")
    return value


def _check_text(name: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _err(name, f"{key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _parse_files(name: str, raw: Any) -> tuple[FileRecord, ...]:
    if not isinstance(raw, list) or not raw:
        raise _err(name, "a directory entry needs a non-empty 'files' list")
    records = []
    seen = set()
    for item in raw:
        if not isinstance(item, Mapping) or set(item) != {"path", "sha256", "size"}:
            raise _err(name, f"each 'files' item needs exactly path, sha256, size; got {item!r}")
        path = _check_rel_path(name, "files.path", item["path"])
        if path in seen:
            raise _err(name, f"file {path!r} is listed twice")
        seen.add(path)
        sha = _check_sha(name, item["sha256"], allow_none=False, key="files.sha256")
        size = _check_size(name, item["size"], key="files.size")
        if size is None:
            raise _err(name, f"file {path!r} needs a size")
        records.append(FileRecord(path=path, sha256=sha, size=size))  # type: ignore[arg-type]
    return tuple(records)


def parse_entry(name: str, raw: Any) -> DatasetEntry:
    """Validate one raw manifest entry.

    Parameters
    ----------
    name
        The dataset name (the entry's key).
    raw
        The entry as parsed from YAML.

    Returns
    -------
    The validated entry.

    Raises
    ------
    ManifestError
        With the entry name and the offending field.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(f"Dataset name {name!r} must match {_NAME_RE.pattern}")
    if not isinstance(raw, Mapping):
        raise _err(name, f"must be a mapping, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _err(name, f"missing required field(s) {missing}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _err(name, f"unknown field(s) {unknown}; allowed: {sorted(_REQUIRED + _OPTIONAL)}")

    kind = raw.get("kind", "file")
    if kind not in _KINDS:
        raise _err(name, f"'kind' must be one of {_KINDS}, got {kind!r}")
    path = _check_rel_path(name, "path", raw["path"])
    file = _check_text(name, "file", raw["file"])
    if "/" in file or PurePosixPath(path).name != file:
        raise _err(name, f"'file' ({file!r}) must be the last component of 'path' ({path!r})")
    size = _check_size(name, raw["size"])
    md5 = raw.get("md5")
    if md5 is not None and (not isinstance(md5, str) or not _MD5_RE.match(md5)):
        raise _err(name, f"'md5' must be 32 lowercase hex digits, got {md5!r}")

    urls = raw["urls"]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _err(name, "'urls' must be a list of strings ([] when no public download exists)")
    for u in urls:
        if not u.startswith(_URL_SCHEMES):
            raise _err(name, f"URL {u!r} must start with one of {_URL_SCHEMES}")

    labels = raw["labels"]
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _err(name, "'labels' must map column/field names to their meaning (strings); {} if none")

    files: tuple[FileRecord, ...] = ()
    if kind == "directory":
        files = _parse_files(name, raw.get("files"))
        if raw["sha256"] is not None or md5 is not None:
            raise _err(
                name, "a directory entry has per-file checksums in 'files', so sha256/md5 must be null"
            )
        if urls:
            raise _err(name, "a directory entry cannot be downloaded; list its archive as a separate entry")
        if size is not None and size != sum(f.size for f in files):
            raise _err(name, f"'size' {size} is not the sum of its files' sizes {sum(f.size for f in files)}")
        sha256 = None
    else:
        if "files" in raw:
            raise _err(name, "'files' is only allowed for kind: directory")
        sha256 = _check_sha(name, raw["sha256"], allow_none=True)

    packaged = raw.get("packaged", False)
    if not isinstance(packaged, bool):
        raise _err(name, f"'packaged' must be true or false, got {packaged!r}")
    if packaged and (sha256 is None or size is None or kind != "file"):
        raise _err(name, "a packaged entry must be a file with a sha256 and a size")

    shape = raw.get("shape")
    if shape is not None:
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise _err(name, f"'shape' must be a list of non-negative integers, got {shape!r}")
        shape = tuple(shape)

    optional_text = {}
    for key in ("values", "notes"):
        optional_text[key] = _check_text(name, key, raw[key]) if raw.get(key) is not None else None

    return DatasetEntry(
        name=name,
        title=_check_text(name, "title", raw["title"]),
        modality=_check_text(name, "modality", raw["modality"]),
        kind=kind,
        file=file,
        path=path,
        sha256=sha256,
        size=size,
        urls=tuple(urls),
        format=_check_text(name, "format", raw["format"]),
        layout=_check_text(name, "layout", raw["layout"]),
        labels=dict(labels),
        source=_check_text(name, "source", raw["source"]),
        citation=_check_text(name, "citation", raw["citation"]),
        license=_check_text(name, "license", raw["license"]),
        md5=md5,
        packaged=packaged,
        shape=shape,
        values=optional_text["values"],
        files=files,
        notes=optional_text["notes"],
    )


def parse_manifest(data: Any, source: Path | None = None) -> Manifest:
    """Validate a parsed manifest document (``{"version": 1, "datasets": {...}}``).

    Parameters
    ----------
    data
        The YAML document as Python objects.
    source
        Where it came from, for messages.

    Returns
    -------
    The validated manifest.
    """
    if not isinstance(data, Mapping) or "datasets" not in data:
        raise ManifestError(f"{source or 'manifest'}: expected a mapping with a 'datasets' key")
    if data.get("version") != 1:
        raise ManifestError(
            f"{source or 'manifest'}: unsupported version {data.get('version')!r} (expected 1)"
        )
    raw_entries = data["datasets"]
    if not isinstance(raw_entries, Mapping) or not raw_entries:
        raise ManifestError(f"{source or 'manifest'}: 'datasets' must be a non-empty mapping")
    entries = {name: parse_entry(name, raw) for name, raw in raw_entries.items()}
    paths: dict[str, str] = {}
    for entry in entries.values():
        if entry.path in paths:
            raise ManifestError(
                f"Entries {paths[entry.path]!r} and {entry.name!r} share the path {entry.path!r}"
            )
        paths[entry.path] = entry.name
    return Manifest(entries, source=source)


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int) -> Manifest:
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return parse_manifest(data, source=path)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate the data manifest.

    Parameters
    ----------
    path
        A manifest file; default: the project's (see :func:`manifest_path`).

    Returns
    -------
    The validated manifest (cached until the file changes).
    """
    p = Path(path).resolve() if path is not None else manifest_path()
    return _load_cached(p, p.stat().st_mtime_ns)


def get_entry(name: str, manifest: Manifest | None = None) -> DatasetEntry:
    """Look up one dataset by name (a clear ``KeyError`` lists the known names)."""
    return (manifest if manifest is not None else load_manifest())[name]


def list_datasets(manifest: Manifest | None = None) -> pd.DataFrame:
    """All datasets of the manifest as a table.

    Parameters
    ----------
    manifest
        Default: the project's manifest.

    Returns
    -------
    One row per dataset, indexed by name, with columns ``title``, ``modality``, ``kind``, ``path``,
    ``size_bytes``, ``verifiable`` (a checksum is known), ``downloadable`` (a public URL exists),
    ``packaged``, ``labels`` (comma-separated label columns) and ``license``.
    """
    import pandas as pd

    m = manifest if manifest is not None else load_manifest()
    rows = [
        {
            "name": e.name,
            "title": e.title,
            "modality": e.modality,
            "kind": e.kind,
            "path": e.path,
            "size_bytes": pd.NA if e.size is None else e.size,
            "verifiable": e.verifiable,
            "downloadable": bool(e.urls),
            "packaged": e.packaged,
            "labels": ", ".join(e.labels),
            "license": e.license,
        }
        for e in m.values()
    ]
    df = pd.DataFrame(rows).set_index("name")
    df["size_bytes"] = df["size_bytes"].astype("Int64")
    return df
