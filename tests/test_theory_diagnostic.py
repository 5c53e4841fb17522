"""The user-facing transferability diagnostic (arrays and AnnData)."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spatial_refine.theory.diagnostic import (
    TransferabilityReport,
    _stratified_subsample,
    fit_saturating_curve,
    transferability_diagnostic,
)


def _synthetic(n=1500, k=3, latent=8, genes=120, noise=1.0, seed=0):
    """Labels are a linear function of a latent z; raw = noisy high-dimensional mixture of z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    labels = np.argmax(z @ rng.normal(size=(latent, k)) + 0.2 * rng.normal(size=(n, k)), axis=1)
    raw = z @ rng.normal(size=(latent, genes)) / np.sqrt(latent) + noise * rng.normal(size=(n, genes))
    return z, raw, labels.astype(str), rng


FAST = {"n_seeds": 2, "n_sizes": 5}


def test_helps_when_labels_are_linear_in_the_representation():
    z, raw, labels, _ = _synthetic()
    rep = z @ np.random.default_rng(1).normal(size=(8, 16))  # any full-rank linear map of z
    report = transferability_diagnostic(rep, raw, labels, random_state=0, **FAST)
    assert report.verdict == "helps"
    assert report.message.startswith("transfer expected to help")
    assert not report.residual_path_needed
    s = report.summary
    assert s["small_n_gain"] > 0.1 and s["gap"] > 0
    assert s["probe_ceiling"] >= s["probe_plateau"] > 0.85
    assert set(report.curves["model"]) == {"probe", "scratch", "refine"}
    assert len(report.table) == 3 * len(report.params["train_sizes"]) * 2


def test_negative_and_residual_needed_when_representation_is_noise():
    _z, raw, labels, rng = _synthetic()
    report = transferability_diagnostic(
        rng.normal(size=(len(labels), 16)), raw, labels, random_state=0, **FAST
    )
    assert report.verdict == "negative"
    assert report.residual_path_needed
    assert "negative transfer likely: use REFINE's residual path" in report.message
    assert report.summary["residual_gain"] > 0.3
    assert "negative" in repr(report)


def test_partial_representation_needs_the_residual_path():
    z, raw, labels, _ = _synthetic(noise=0.3)
    report = transferability_diagnostic(z[:, :3], raw, labels, random_state=0, **FAST)
    assert report.residual_path_needed
    assert report.summary["residual_gain"] > 0.05
    assert report.verdict in ("helps_small_n", "negative")


def test_reproducible_and_sparse_input():
    z, raw, labels, _ = _synthetic(n=600)
    a = transferability_diagnostic(
        z, sp.csr_matrix(raw), labels, raw_n_components=None, random_state=3, **FAST
    )
    b = transferability_diagnostic(z, raw, labels, raw_n_components=None, random_state=3, **FAST)
    pd.testing.assert_frame_equal(a.table, b.table)
    c = transferability_diagnostic(z, raw, labels, raw_n_components=None, random_state=4, **FAST)
    assert not a.table["f1_macro"].equals(c.table["f1_macro"])


def test_unlabelled_cells_are_ignored():
    z, raw, labels, _ = _synthetic(n=600)
    lab = pd.Series(labels, dtype=object)
    lab.iloc[:50] = np.nan
    report = transferability_diagnostic(z, raw, lab, random_state=0, **FAST)
    assert report.summary["n_unlabelled"] == 50
    assert report.summary["n_cells"] == 550


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r, x, y: (np.where(np.eye(*r.shape, dtype=bool), np.nan, r), x, y), "rep.*NaN"),
        (lambda r, x, y: (r, np.where(np.eye(*x.shape, dtype=bool), np.inf, x), y), "raw.*infinite"),
        (lambda r, x, y: (r[:-1], x, y), "Lengths differ"),
        (lambda r, x, y: (r, x, np.full(len(y), "a")), "at least two classes"),
        (lambda r, x, y: (r, x, np.where(np.arange(len(y)) < 3, "rare", y)), "fewer than 5"),
    ],
)
def test_bad_input_raises_clear_errors(mutate, match):
    z, raw, labels, _ = _synthetic(n=200)
    rep, raw2, lab = mutate(z, raw, labels)
    with pytest.raises(ValueError, match=match):
        transferability_diagnostic(rep, raw2, lab, n_seeds=1)


def test_bad_options_raise():
    z, raw, labels, _ = _synthetic(n=200)
    with pytest.raises(ValueError, match="metric"):
        transferability_diagnostic(z, raw, labels, metric="auc")
    with pytest.raises(ValueError, match="train_sizes"):
        transferability_diagnostic(z, raw, labels, train_sizes=[1, 10])
    with pytest.raises(ValueError, match="Unknown model"):
        transferability_diagnostic(z, raw, labels, scratch_model="svm", n_seeds=1)
    with pytest.raises(ValueError, match="n_sizes"):
        transferability_diagnostic(z, raw, labels, n_sizes=0)
    with pytest.raises(ValueError, match="whole numbers"):
        transferability_diagnostic(z, raw, labels, train_sizes=[50.7, 100.2])


def test_stratified_subsample_and_curve_fit():
    y = np.array(["a"] * 70 + ["b"] * 25 + ["c"] * 5)
    idx = _stratified_subsample(y, 20, np.random.default_rng(0))
    assert len(idx) == len(set(idx)) == 20
    counts = pd.Series(y[idx]).value_counts()
    assert counts["a"] == 14 and counts["b"] == 5 and counts["c"] == 1
    n = np.array([20, 50, 100, 300, 1000])
    a, _b, c = fit_saturating_curve(n, 0.9 - 2.0 * n**-0.5)
    assert a == pytest.approx(0.9, abs=1e-3) and c == pytest.approx(0.5, abs=1e-2)


# ---------------------------------------------------------------------------------------------------------
# AnnData wrapper
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def adata():
    anndata = pytest.importorskip("anndata")
    z, raw, labels, _ = _synthetic(n=500)
    a = anndata.AnnData(X=sp.csr_matrix(raw.astype(np.float32)))
    a.obs["cell_type"] = pd.Categorical(labels)
    a.obsm["X_scGPT"] = z.astype(np.float32)
    a.obsm["spatial"] = np.random.default_rng(0).uniform(size=(500, 2))
    a.layers["counts"] = raw.astype(np.float32)
    return a


def test_tl_transferability_writes_uns_only(adata, tmp_path):
    import spatial_refine as sr

    before = adata.copy()
    report = sr.tl.transferability(adata, "cell_type", n_seeds=2, n_sizes=4, key_added="tr")
    assert isinstance(report, TransferabilityReport)
    assert report.verdict == "helps"
    uns = adata.uns["tr"]
    assert uns["params"]["labels_key"] == "cell_type" and uns["params"]["rep_key"] == "X_scGPT"
    assert uns["verdict"] == report.verdict and "summary" in uns and "curves" in uns
    # Nothing else changed.
    assert set(adata.uns) == {"tr"}
    assert (adata.X != before.X).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    assert set(adata.obsm) == set(before.obsm) and set(adata.layers) == set(before.layers)
    np.testing.assert_array_equal(adata.obsm["X_scGPT"], before.obsm["X_scGPT"])
    # Storable.
    adata.write_h5ad(tmp_path / "a.h5ad")
    import anndata

    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["tr"]["verdict"] == report.verdict


def test_tl_transferability_layer_and_key_errors(adata):
    import spatial_refine as sr

    rep = sr.tl.transferability(adata, "cell_type", layer="counts", n_seeds=1, n_sizes=3)
    assert rep.params["layer"] == "counts"
    with pytest.raises(KeyError, match="X_pca"):
        sr.tl.transferability(adata, "cell_type", rep_key="X_pca")
    with pytest.raises(KeyError, match="obs"):
        sr.tl.transferability(adata, "missing")
    with pytest.raises(KeyError, match="layers"):
        sr.tl.transferability(adata, "cell_type", layer="nope")
    with pytest.raises(TypeError, match="AnnData"):
        sr.tl.transferability(np.zeros((3, 3)), "cell_type")


def _data_dir() -> Path:
    env = os.environ.get("SPATIAL_REFINE_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.data
def test_real_osmfish_niche_features_help_for_regions_not_cell_types():
    path = _data_dir() / "spatial" / "osmfish_codeluppi_cortex.h5ad"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    import anndata
    from sklearn.neighbors import NearestNeighbors

    a = anndata.read_h5ad(path)
    x = np.asarray(a.X.toarray(), dtype=np.float64)
    x = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e3)
    idx = NearestNeighbors(n_neighbors=30).fit(a.obsm["spatial"]).kneighbors(return_distance=False)
    niche = x[idx].mean(1)  # a frozen "spatial niche" representation
    region = transferability_diagnostic(niche, x, a.obs["Region"], n_seeds=2, random_state=0)
    cell_type = transferability_diagnostic(niche, x, a.obs["ClusterName"], n_seeds=2, random_state=0)
    assert region.verdict == "helps"
    assert cell_type.verdict == "negative" and cell_type.residual_path_needed
