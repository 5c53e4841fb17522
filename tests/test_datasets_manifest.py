"""data_manifest.yaml: every entry validates, and its checksums match the shared data files."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from spatial_refine.datasets import ManifestError, list_datasets, load_manifest
from spatial_refine.datasets._verify import file_digest
from spatial_refine.datasets.manifest import manifest_path, parse_manifest

REPO = Path(__file__).resolve().parents[1]
# Files in the shared data folder that are documentation, not datasets.
DOC_FILES = {"README.md", "vision/MANIFEST.md"}
REQUIRED_NAMES = {
    # spatial + scRNA loaders
    "merfish_hypothalamus",
    "merfish_demo",
    "seqfish_embryo",
    "osmfish_cortex",
    "wang_pancreas",
    "xin_pancreas",
    "squidpy_merfish",
    "squidpy_seqfish",
    "scgpt_vocab_census",
    # text
    "blitzer_books",
    "blitzer_dvd",
    "blitzer_electronics",
    "blitzer_kitchen",
    "blitzer_processed_acl",
    "blitzer_unprocessed",
    # vision
    "cifar10_jpeg",
    "cifar10_python",
    "cifar100_python",
    "stl10_binary",
    "mnist_5k",
    "mnist_test_images",
    "mnist_test_labels",
    "mnist_train_images",
    "mnist_train_labels",
    "usps_h5",
    "usps_libsvm_train",
    "usps_libsvm_test",
    "domainnet_clipart",
    "domainnet_sketch",
}


def shared_data_dir() -> Path | None:
    """SPATIAL_REFINE_DATA_DIR (first entry), else <repo>/../shared/data; None when absent."""
    env = os.environ.get("SPATIAL_REFINE_DATA_DIR")
    candidates = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "spatial").is_dir():
            return c
    return None


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


@pytest.fixture(scope="module")
def raw_manifest() -> dict:
    with open(REPO / "data_manifest.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_manifest_loads_from_repo_root(manifest):
    assert manifest_path() == REPO / "data_manifest.yaml"
    assert manifest.source == REPO / "data_manifest.yaml"
    assert REQUIRED_NAMES <= set(manifest)


def test_every_entry_is_complete(manifest):
    for entry in manifest.values():
        assert entry.title and entry.citation and entry.license and entry.source, entry.name
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert entry.size is None or entry.size >= 0
        assert all(u.startswith(("https://", "http://")) for u in entry.urls), entry.name
        if entry.format.startswith("h5ad"):
            assert entry.shape is not None and len(entry.shape) == 2, entry.name
            assert entry.labels, f"{entry.name}: an AnnData entry must document its label columns"
        if entry.kind == "directory":
            assert entry.files and entry.size == sum(f.size for f in entry.files)
        if entry.urls and not entry.verifiable:
            # Downloads without any checksum need an explicit opt-in; the entry says so.
            assert "allow_unverified" in (entry.notes or ""), entry.name


def test_local_only_entries_say_where_data_comes_from(manifest):
    for entry in manifest.values():
        if not entry.urls and not entry.packaged:
            assert entry.sha256 is not None or entry.kind == "directory", entry.name
            assert len(entry.source) > 40, f"{entry.name}: 'source' must say where the original data is"


def test_list_datasets_table(manifest):
    df = list_datasets()
    assert list(df.index) == list(manifest)
    for col in ("title", "modality", "kind", "path", "size_bytes", "verifiable", "downloadable", "license"):
        assert col in df.columns
    assert bool(df.loc["merfish_demo", "packaged"])
    assert not bool(df.loc["merfish_hypothalamus", "downloadable"])
    assert bool(df.loc["cifar10_python", "downloadable"])
    assert df.loc["merfish_hypothalamus", "size_bytes"] == 4408580


def _with_entry(raw: dict, name: str, **changes) -> dict:
    doc = copy.deepcopy(raw)
    entry = doc["datasets"][name]
    for key, value in changes.items():
        if value is ...:
            entry.pop(key, None)
        else:
            entry[key] = value
    return doc


@pytest.mark.parametrize(
    ("name", "changes", "match"),
    [
        ("merfish_hypothalamus", {"sha256": "75623b2b"}, "64 lowercase hex"),
        ("merfish_hypothalamus", {"sha256": "X" * 64}, "64 lowercase hex"),
        ("merfish_hypothalamus", {"size": -1}, "non-negative integer"),
        ("merfish_hypothalamus", {"size": "4 MB"}, "non-negative integer"),
        ("merfish_hypothalamus", {"license": ...}, "missing required"),
        ("merfish_hypothalamus", {"colour": "red"}, "unknown field"),
        ("merfish_hypothalamus", {"path": "/abs/x.h5ad", "file": "x.h5ad"}, "relative POSIX path"),
        ("merfish_hypothalamus", {"path": "../x.h5ad", "file": "x.h5ad"}, "relative POSIX path"),
        ("merfish_hypothalamus", {"file": "other.h5ad"}, "last component"),
        ("merfish_hypothalamus", {"urls": ["www.example.org/x"]}, "must start with"),
        ("merfish_hypothalamus", {"labels": ["Cell_class"]}, "labels"),
        ("merfish_hypothalamus", {"kind": "archive"}, "kind"),
        ("merfish_hypothalamus", {"md5": "abc"}, "md5"),
        ("merfish_demo", {"sha256": None}, "packaged entry"),
        ("blitzer_books", {"urls": ["https://example.org/books.tar.gz"]}, "cannot be downloaded"),
        ("blitzer_books", {"size": 1}, "sum of its files"),
        ("blitzer_books", {"files": []}, "non-empty 'files'"),
    ],
)
def test_invalid_entries_are_rejected(raw_manifest, name, changes, match):
    with pytest.raises(ManifestError, match=match):
        parse_manifest(_with_entry(raw_manifest, name, **changes))


def test_duplicate_paths_and_bad_documents_are_rejected(raw_manifest):
    doc = copy.deepcopy(raw_manifest)
    doc["datasets"]["copy_of_merfish"] = copy.deepcopy(doc["datasets"]["merfish_hypothalamus"])
    with pytest.raises(ManifestError, match="share the path"):
        parse_manifest(doc)
    with pytest.raises(ManifestError, match="version"):
        parse_manifest({**raw_manifest, "version": 2})
    with pytest.raises(ManifestError, match="datasets"):
        parse_manifest({"version": 1})
    bad_name = copy.deepcopy(raw_manifest)
    bad_name["datasets"]["Bad-Name"] = bad_name["datasets"].pop("mnist_5k")
    with pytest.raises(ManifestError, match="must match"):
        parse_manifest(bad_name)


def test_unknown_name_lists_known_ones(manifest):
    with pytest.raises(KeyError, match="merfish_demo"):
        manifest["no_such_dataset"]


def test_wheel_ships_the_manifest():
    """pyproject force-includes the root manifest where the installed package looks for it."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        cfg = tomllib.load(fh)
    force = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["data_manifest.yaml"] == "spatial_refine/datasets/data_manifest.yaml"


def test_import_datasets_is_light():
    code = (
        "import sys, spatial_refine.datasets; "
        "print(','.join(m for m in ('anndata', 'scanpy', 'squidpy', 'torch', 'pooch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


@pytest.mark.data
def test_shared_data_checksums_match_manifest(manifest):
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data folder not available (set SPATIAL_REFINE_DATA_DIR)")
    covered: set[str] = set()
    checked = 0
    for entry in manifest.values():
        target = root / entry.path
        if entry.kind == "directory":
            if not target.is_dir():
                continue
            for f in entry.files:
                p = target / f.path
                assert p.stat().st_size == f.size, p
                assert file_digest(p) == f.sha256, p
                covered.add(f"{entry.path}/{f.path}")
                checked += 1
        elif target.is_file():
            assert target.stat().st_size == entry.size, target
            assert file_digest(target) == entry.sha256, target
            if entry.md5 is not None:
                assert file_digest(target, "md5") == entry.md5, target
            covered.add(entry.path)
            checked += 1
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    missing = sorted(present - covered - DOC_FILES)
    assert not missing, f"files in {root} without a manifest entry: {missing}"
    assert checked >= 20
