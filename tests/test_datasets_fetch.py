"""fetch(): local data directories, cache, verification (with memo), clear errors, file:// downloads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from spatial_refine.datasets import (
    ChecksumError,
    DatasetUnavailableError,
    UnverifiableDatasetError,
    _verify,
    data_dirs,
    fetch,
    load_manifest,
)

CONTENT = b"spatial_refine test payload\n" * 100


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Private cache, no data directory from the environment, empty in-memory memo."""
    monkeypatch.setenv("SPATIAL_REFINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SPATIAL_REFINE_DATA_DIR", raising=False)
    _verify.clear_memory_memo()
    yield
    _verify.clear_memory_memo()


def _entry(**overrides) -> dict:
    entry = {
        "title": "toy",
        "modality": "test",
        "file": "toy.bin",
        "path": "sub/toy.bin",
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "size": len(CONTENT),
        "urls": [],
        "format": "bytes",
        "layout": "repeated text",
        "labels": {},
        "source": "written by the test",
        "citation": "none",
        "license": "CC0-1.0",
    }
    entry.update(overrides)
    return entry


def _manifest(tmp_path: Path, **entries: dict):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": entries}), encoding="utf-8")
    return load_manifest(path)


def _write(path: Path, content: bytes = CONTENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_finds_file_via_env_var_in_subfolder_or_flat(tmp_path, monkeypatch):
    m = _manifest(tmp_path, toy=_entry())
    nested = _write(tmp_path / "d1" / "sub" / "toy.bin")
    flat = _write(tmp_path / "d2" / "toy.bin")
    monkeypatch.setenv(
        "SPATIAL_REFINE_DATA_DIR", os.pathsep.join([str(tmp_path / "missing"), str(tmp_path / "d1")])
    )
    assert fetch("toy", manifest=m) == nested
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path / "d2"))
    assert fetch("toy", manifest=m) == flat
    # data_dir= comes before the environment variable
    assert fetch("toy", manifest=m, data_dir=tmp_path / "d1") == nested


def test_data_dirs_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SPATIAL_REFINE_DATA_DIR", os.pathsep.join(["", str(tmp_path / "a"), str(tmp_path / "a")])
    )
    assert data_dirs(tmp_path / "b") == [tmp_path / "b", tmp_path / "a"]


def test_checksum_mismatch_raises(tmp_path):
    m = _manifest(tmp_path, toy=_entry())
    bad = bytearray(CONTENT)
    bad[5] ^= 1  # same size, different bytes
    _write(tmp_path / "d" / "sub" / "toy.bin", bytes(bad))
    with pytest.raises(ChecksumError, match="sha256"):
        fetch("toy", manifest=m, data_dir=tmp_path / "d")
    _write(tmp_path / "e" / "toy.bin", CONTENT[:-1])
    with pytest.raises(ChecksumError, match="bytes but the manifest says"):
        fetch("toy", manifest=m, data_dir=tmp_path / "e")


def test_verification_is_memoised_until_the_file_changes(tmp_path, monkeypatch):
    m = _manifest(tmp_path, toy=_entry())
    path = _write(tmp_path / "d" / "toy.bin")
    calls = []
    real = _verify.file_digest
    monkeypatch.setattr(_verify, "file_digest", lambda p, a="sha256": calls.append(p) or real(p, a))
    fetch("toy", manifest=m, data_dir=tmp_path / "d")
    fetch("toy", manifest=m, data_dir=tmp_path / "d")
    assert len(calls) == 1
    # The memo persists on disk: a fresh process (simulated by clearing memory) does not rehash either.
    _verify.clear_memory_memo()
    fetch("toy", manifest=m, data_dir=tmp_path / "d")
    assert len(calls) == 1
    fetch("toy", manifest=m, data_dir=tmp_path / "d", verify="full")
    assert len(calls) == 2
    # Same size, new content and mtime: rehashed and rejected.
    bad = bytearray(CONTENT)
    bad[0] ^= 1
    path.write_bytes(bytes(bad))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError):
        fetch("toy", manifest=m, data_dir=tmp_path / "d")
    # verify="size" skips the checksum (documented as weaker).
    assert fetch("toy", manifest=m, data_dir=tmp_path / "d", verify="size") == path
    with pytest.raises(ValueError, match="verify must be"):
        fetch("toy", manifest=m, data_dir=tmp_path / "d", verify="sometimes")


def test_no_url_gives_actionable_error(tmp_path):
    m = _manifest(tmp_path, toy=_entry(source="the toy archive of the test suite"))
    with pytest.raises(DatasetUnavailableError) as info:
        fetch("toy", manifest=m, data_dir=tmp_path / "nowhere")
    msg = str(info.value)
    assert "SPATIAL_REFINE_DATA_DIR" in msg
    assert "sub/toy.bin" in msg
    assert "the toy archive of the test suite" in msg
    assert "no public download URL" in msg
    assert str(tmp_path / "nowhere" / "sub" / "toy.bin") in msg


def test_offline_download_gives_actionable_error(tmp_path):
    # Port 9 (discard) on localhost: connection refused at once, no network needed.
    m = _manifest(tmp_path, toy=_entry(urls=["http://127.0.0.1:9/toy.bin"]))
    with pytest.raises(DatasetUnavailableError) as info:
        fetch("toy", manifest=m, progressbar=False)
    msg = str(info.value)
    assert "offline" in msg and "http://127.0.0.1:9/toy.bin" in msg and "SPATIAL_REFINE_DATA_DIR" in msg
    with pytest.raises(DatasetUnavailableError, match="download=True"):
        fetch("toy", manifest=m, download=False)


def test_file_url_download_verifies_and_caches(tmp_path, monkeypatch):
    src = _write(tmp_path / "mirror" / "toy.bin")
    m = _manifest(tmp_path, toy=_entry(urls=["http://127.0.0.1:9/toy.bin", src.as_uri()]))
    path = fetch("toy", manifest=m)  # first URL refused, the file:// mirror works
    assert path == tmp_path / "cache" / "toy" / "toy.bin"
    assert path.read_bytes() == CONTENT

    import pooch

    def no_download(*args, **kwargs):
        raise AssertionError("must use the cache")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    assert fetch("toy", manifest=m) == path


def test_download_with_wrong_checksum_keeps_nothing(tmp_path):
    src = _write(tmp_path / "mirror" / "toy.bin", CONTENT.upper())
    m = _manifest(tmp_path, toy=_entry(urls=[src.as_uri()]))
    with pytest.raises(ChecksumError, match="did not match"):
        fetch("toy", manifest=m)
    assert not (tmp_path / "cache" / "toy" / "toy.bin").exists()


def test_corrupted_cache_is_downloaded_again(tmp_path):
    src = _write(tmp_path / "mirror" / "toy.bin")
    m = _manifest(tmp_path, toy=_entry(urls=[src.as_uri()]))
    cached = _write(tmp_path / "cache" / "toy" / "toy.bin", CONTENT[:10])
    with pytest.warns(UserWarning, match="Downloading it again"):
        assert fetch("toy", manifest=m) == cached
    assert cached.read_bytes() == CONTENT


def test_md5_only_entries_are_verified(tmp_path):
    src = _write(tmp_path / "mirror" / "toy.bin")
    good = _entry(sha256=None, md5=hashlib.md5(CONTENT).hexdigest(), urls=[src.as_uri()])
    assert fetch("toy", manifest=_manifest(tmp_path, toy=good)).read_bytes() == CONTENT
    bad = _entry(sha256=None, md5="0" * 32, size=None, path="other/toy.bin", urls=[src.as_uri()])
    with pytest.raises(ChecksumError):
        fetch("other", manifest=_manifest(tmp_path, other=bad))


def test_unverifiable_entries_need_explicit_opt_in(tmp_path):
    src = _write(tmp_path / "mirror" / "toy.bin")
    m = _manifest(tmp_path, toy=_entry(sha256=None, size=None, urls=[src.as_uri()]))
    with pytest.raises(UnverifiableDatasetError, match="allow_unverified=True"):
        fetch("toy", manifest=m)
    with pytest.warns(UserWarning, match=hashlib.sha256(CONTENT).hexdigest()):
        path = fetch("toy", manifest=m, allow_unverified=True)
    assert path.read_bytes() == CONTENT
    # The same rule for a copy found in a data directory.
    _write(tmp_path / "d" / "toy.bin")
    with pytest.raises(UnverifiableDatasetError):
        fetch("toy", manifest=m, data_dir=tmp_path / "d")


def test_directory_entries(tmp_path):
    other = b"second file\n"
    entry = _entry(
        kind="directory",
        file="reviews",
        path="text/reviews",
        sha256=None,
        size=len(CONTENT) + len(other),
        files=[
            {"path": "a.txt", "sha256": hashlib.sha256(CONTENT).hexdigest(), "size": len(CONTENT)},
            {"path": "b.txt", "sha256": hashlib.sha256(other).hexdigest(), "size": len(other)},
        ],
    )
    m = _manifest(tmp_path, reviews=entry)
    root = tmp_path / "d" / "text" / "reviews"
    _write(root / "a.txt")
    with pytest.raises(ChecksumError, match="lacks file"):
        fetch("reviews", manifest=m, data_dir=tmp_path / "d")
    _write(root / "b.txt", other)
    assert fetch("reviews", manifest=m, data_dir=tmp_path / "d") == root
    _write(root / "b.txt", other.upper())
    with pytest.raises(ChecksumError):
        fetch("reviews", manifest=m, data_dir=tmp_path / "d")
    with pytest.raises(DatasetUnavailableError, match="no public download URL"):
        fetch("reviews", manifest=m, data_dir=tmp_path / "nowhere")


def test_unknown_dataset(tmp_path):
    with pytest.raises(KeyError, match="Known datasets: toy"):
        fetch("nope", manifest=_manifest(tmp_path, toy=_entry()))


def test_unknown_dataset_suggests_close_names(tmp_path):
    m = _manifest(tmp_path, osmfish_cortex=_entry(), merfish_demo=_entry(file="demo.bin", path="sub/demo.bin"))
    with pytest.raises(KeyError, match="Did you mean 'osmfish_cortex'"):
        fetch("osmfish", manifest=m)
    with pytest.raises(KeyError) as err:
        fetch("zzz", manifest=m)
    assert "Did you mean" not in str(err.value)
