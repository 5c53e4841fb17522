"""Checksums of local files, with a memo so that big files are not rehashed on every call.

A file counts as already verified when its resolved path, size and modification time (ns) equal those
recorded the last time it matched the same expected hash. The memo lives in memory and, best-effort, in
``verified.json`` inside the user cache directory, so it survives between sessions.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Literal

__all__ = ["ChecksumError", "VerifyMode", "file_digest", "verify_file"]

VerifyMode = Literal["memo", "full", "size"]
_VERIFY_MODES = ("memo", "full", "size")
_CHUNK = 1 << 20
_MEMO_NAME = "verified.json"
_lock = threading.Lock()
_memory: dict[str, dict[str, int | str]] = {}


class ChecksumError(ValueError):
    """A file's size or checksum differs from the manifest's."""


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path
        The file.
    algorithm
        ``"sha256"`` or ``"md5"`` (any :func:`hashlib.new` name).

    Returns
    -------
    The lowercase hex digest.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _read_disk_memo(memo_file: Path | None) -> dict[str, dict[str, int | str]]:
    if memo_file is None or not memo_file.is_file():
        return {}
    try:
        data = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk_memo(memo_file: Path | None, key: str, record: dict[str, int | str]) -> None:
    if memo_file is None:
        return
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        data = _read_disk_memo(memo_file)
        data[key] = record
        fd, tmp = tempfile.mkstemp(dir=memo_file.parent, prefix=".verified-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=0, sort_keys=True)
        os.replace(tmp, memo_file)
    except OSError:  # a read-only or full cache must not break loading
        return


def _memo_hit(key: str, size: int, mtime_ns: int, known_hash: str, memo_file: Path | None) -> bool:
    record = _memory.get(key) or _read_disk_memo(memo_file).get(key)
    return (
        isinstance(record, dict)
        and record.get("size") == size
        and record.get("mtime_ns") == mtime_ns
        and record.get("hash") == known_hash
    )


def verify_file(
    path: str | os.PathLike[str],
    *,
    known_hash: str | None,
    size: int | None,
    mode: VerifyMode = "memo",
    memo_dir: str | os.PathLike[str] | None = None,
    what: str = "",
) -> None:
    """Check a file against its expected size and checksum.

    Parameters
    ----------
    path
        The file.
    known_hash
        ``"sha256:<hex>"`` or ``"md5:<hex>"``; None skips the checksum (the caller decides whether that is
        allowed).
    size
        Expected size in bytes, or None.
    mode
        ``"memo"``: hash unless this exact file (path, size, mtime) already matched this hash;
        ``"full"``: always hash; ``"size"``: check the size only (fast, weaker).
    memo_dir
        Directory holding the persistent memo (``verified.json``); None keeps the memo in memory only.
    what
        A name for messages (e.g. the dataset name).

    Raises
    ------
    ChecksumError
        When the size or the checksum differs.
    """
    if mode not in _VERIFY_MODES:
        raise ValueError(f"verify must be one of {_VERIFY_MODES}, got {mode!r}")
    p = Path(path)
    key, actual_size, mtime_ns = _stamp(p)
    label = f"{what} ({p})" if what else str(p)
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"{label} has {actual_size:,} bytes but the manifest says {size:,}: the file is truncated, "
            "corrupted or a different version. Delete it and fetch it again, or replace it with the original."
        )
    if known_hash is None or mode == "size":
        return
    memo_file = Path(memo_dir) / _MEMO_NAME if memo_dir is not None else None
    with _lock:
        if mode == "memo" and _memo_hit(key, actual_size, mtime_ns, known_hash, memo_file):
            return
    algorithm, _, expected = known_hash.partition(":")
    actual = file_digest(p, algorithm)
    if actual != expected.lower():
        raise ChecksumError(
            f"{label}: {algorithm} is {actual} but the manifest expects {expected}. The file is corrupted or "
            "a different version. Delete it and fetch it again, or replace it with the original."
        )
    record: dict[str, int | str] = {"size": actual_size, "mtime_ns": mtime_ns, "hash": known_hash}
    with _lock:
        _memory[key] = record
        _write_disk_memo(memo_file, key, record)


def clear_memory_memo() -> None:
    """Forget in-memory verifications (the on-disk memo is untouched)."""
    with _lock:
        _memory.clear()
