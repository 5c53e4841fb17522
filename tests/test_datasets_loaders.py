"""AnnData loaders: the packaged demo (always), and the shared-data files (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_datasets_manifest import shared_data_dir

import spatial_refine.datasets as ds
from spatial_refine.datasets import _verify, fetch, load_manifest
from spatial_refine.datasets.fetch import PACKAGE_DATA_DIR


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIAL_REFINE_CACHE_DIR", str(tmp_path / "cache"))
    _verify.clear_memory_memo()


def test_demo_is_packaged_and_matches_manifest():
    entry = load_manifest()["merfish_demo"]
    path = PACKAGE_DATA_DIR / entry.file
    assert path.is_file()
    assert path.stat().st_size == entry.size < 5 * 2**20
    assert _verify.file_digest(path) == entry.sha256


def test_demo_needs_no_network_and_no_env(monkeypatch, tmp_path):
    import pooch

    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("no download expected"))
    adata = ds.merfish_demo()
    assert adata.shape == (5000, 135)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert adata.obsm["spatial"].shape == (5000, 2)
    assert np.isfinite(adata.obsm["spatial"]).all()
    assert adata.obs["Cell_class"].dtype.name == "category"
    assert len(adata.obs["Cell_class"].cat.categories) == 15
    counts = adata.obs["samples"].value_counts()
    assert counts.to_dict() == {"1.-0.09": 2500, "7.-0.09": 2500}
    assert not adata.obs["Cell_class"].isna().any()


def test_demo_windows_are_spatially_contiguous():
    """Each slice is a square window: cells fill it densely (not a random sample of the slice)."""
    adata = ds.merfish_demo()
    for name in ("1.-0.09", "7.-0.09"):
        xy = adata.obsm["spatial"][(adata.obs["samples"] == name).to_numpy()]
        width = xy.max(0) - xy.min(0)
        assert np.all(width < 1300), width  # the full slices are about 1,800 micrometres wide
        assert abs(width[0] - width[1]) / width.max() < 0.1  # square


LOADERS = [
    ("merfish_hypothalamus", ds.merfish_hypothalamus, (15848, 135), ("Cell_class", "samples"), True),
    ("seqfish_embryo", ds.seqfish_embryo, (11441, 351), ("celltype", "sample"), True),
    ("osmfish_cortex", ds.osmfish_cortex, (4839, 33), ("ClusterName", "Region"), True),
    ("wang_pancreas", ds.wang_pancreas, (501, 219), ("celltype",), False),
    ("xin_pancreas", ds.xin_pancreas, (674, 980), ("celltype",), False),
]


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "loader", "shape", "labels", "spatial"), LOADERS, ids=[x[0] for x in LOADERS]
)
def test_loaders_on_shared_data(monkeypatch, name, loader, shape, labels, spatial):
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data folder not available (set SPATIAL_REFINE_DATA_DIR)")
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(root))
    assert fetch(name) == root / load_manifest()[name].path
    adata = loader()
    assert adata.shape == shape
    for col in labels:
        assert adata.obs[col].dtype.name == "category"
    assert ("spatial" in adata.obsm) == spatial


def test_loader_without_data_explains_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path))
    with pytest.raises(ds.DatasetUnavailableError, match="SPATIAL_REFINE_DATA_DIR"):
        ds.osmfish_cortex()
