"""synthetic_tissue(): shapes, determinism, slices, values, and the spatial structure it promises."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from spatial_refine.datasets import synthetic_tissue


@pytest.fixture(scope="module")
def tissue():
    return synthetic_tissue(3000, n_genes=60, n_cell_types=6, n_niches=4, random_state=3)


def _knn(xy: np.ndarray, k: int) -> np.ndarray:
    return cKDTree(xy).query(xy, k=k + 1)[1][:, 1:]


def test_shapes_and_columns(tissue):
    a = tissue
    assert a.shape == (3000, 60)
    assert sp.isspmatrix_csr(a.X) and a.X.dtype == np.float32 and a.X.has_canonical_format
    assert a.obsm["spatial"].shape == (3000, 2)
    for col, n in (("cell_type", 6), ("niche", 4), ("slice", 1)):
        assert a.obs[col].dtype.name == "category"
        assert len(a.obs[col].cat.categories) == n
    assert a.obs_names.is_unique and a.var_names.is_unique
    assert set(a.obs["niche"].unique()) == set(a.obs["niche"].cat.categories)  # every niche occurs
    comp = a.uns["synthetic_tissue"]["niche_composition"]
    assert comp.shape == (4, 6) and np.allclose(comp.sum(1), 1.0)
    assert a.uns["synthetic_tissue"]["params"]["n_cells"] == 3000


def test_values_are_finite_counts(tissue):
    data = tissue.X.data
    assert np.isfinite(data).all() and (data > 0).all()
    assert np.array_equal(data, np.round(data))
    assert np.isfinite(tissue.obsm["spatial"]).all()


def test_deterministic_given_random_state():
    a = synthetic_tissue(1500, n_slices=2, random_state=7)
    b = synthetic_tissue(1500, n_slices=2, random_state=7)
    c = synthetic_tissue(1500, n_slices=2, random_state=8)
    assert (a.X != b.X).nnz == 0
    assert np.array_equal(a.obsm["spatial"], b.obsm["spatial"])
    assert a.obs.equals(b.obs)
    assert (a.X != c.X).nnz > 0
    assert not np.array_equal(a.obsm["spatial"], c.obsm["spatial"])


def test_slices():
    a = synthetic_tissue(3001, n_slices=3, slice_effect=0.3, random_state=0)
    sizes = a.obs["slice"].value_counts().sort_index()
    assert sizes.to_dict() == {"slice0": 1001, "slice1": 1000, "slice2": 1000}
    assert list(a.obs["slice"].iloc[[0, -1]]) == ["slice0", "slice2"]
    tiny = synthetic_tissue(7, n_slices=3, random_state=0)
    assert tiny.obs["slice"].value_counts().sort_index().tolist() == [3, 2, 2]


def test_log_values_and_dense():
    a = synthetic_tissue(800, values="log", random_state=1)
    counts = a.layers["counts"]
    assert sp.issparse(a.X) and np.isfinite(a.X.data).all()
    assert np.array_equal(a.X.indices, counts.indices)
    totals = np.asarray(counts.sum(1)).ravel()
    expected = np.log1p(counts.toarray() * (np.median(totals[totals > 0]) / np.maximum(totals, 1))[:, None])
    assert np.allclose(a.X.toarray(), expected, atol=1e-5)
    d = synthetic_tissue(800, sparse=False, random_state=1)
    assert isinstance(d.X, np.ndarray) and d.X.dtype == np.float32
    assert np.array_equal(d.X, synthetic_tissue(800, random_state=1).X.toarray())


def test_niches_are_spatially_coherent(tissue):
    niche = tissue.obs["niche"].cat.codes.to_numpy()
    idx = _knn(tissue.obsm["spatial"], 10)
    assert (niche[idx] == niche[:, None]).mean() > 0.8
    # ... while a random relabelling is not: the structure comes from positions.
    shuffled = np.random.default_rng(0).permutation(niche)
    assert (shuffled[idx] == shuffled[:, None]).mean() < 0.5


def test_niche_from_neighbourhood_type_from_expression(tissue):
    """The spatial task: niches are read from neighbours' types, types from a cell's own expression."""
    from sklearn.neighbors import NearestCentroid

    a = tissue
    expr = np.log1p(a.X.toarray())
    ctype = a.obs["cell_type"].cat.codes.to_numpy()
    niche = a.obs["niche"].cat.codes.to_numpy()
    idx = _knn(a.obsm["spatial"], 15)
    composition = np.stack([(ctype[idx] == t).mean(1) for t in range(6)], axis=1)
    train, test = np.arange(0, 3000, 2), np.arange(1, 3000, 2)

    def acc(x, y):
        return NearestCentroid().fit(x[train], y[train]).score(x[test], y[test])

    type_from_expr = acc(expr, ctype)
    niche_from_expr = acc(expr, niche)
    niche_from_nbhd = acc(composition, niche)
    assert type_from_expr > 0.9
    assert niche_from_nbhd > 0.75
    assert niche_from_nbhd > niche_from_expr + 0.15


def test_coherent_within_each_slice():
    a = synthetic_tissue(4000, n_slices=2, random_state=5)
    niche = a.obs["niche"].cat.codes.to_numpy()
    for s in a.obs["slice"].cat.categories:
        mask = (a.obs["slice"] == s).to_numpy()
        idx = _knn(a.obsm["spatial"][mask], 10)
        assert (niche[mask][idx] == niche[mask][:, None]).mean() > 0.8


def test_memory_scales_with_nonzeros():
    a = synthetic_tissue(70_000, n_genes=50, n_cell_types=4, n_niches=3, random_state=0)  # two chunks
    assert a.n_obs == 70_000 and sp.issparse(a.X)
    assert 0.05 < a.X.nnz / (a.n_obs * a.n_vars) < 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_cells": 10, "n_slices": 11}, "n_slices"),
        ({"n_genes": 10}, "too small"),
        ({"values": "tpm"}, "values"),
        ({"composition_concentration": 0.0}, "composition_concentration"),
        ({"slice_effect": -1.0}, "slice_effect"),
        ({"type_effect": float("nan")}, "type_effect"),
        ({"n_niches": 2.5}, "n_niches"),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs = {"n_cells": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        synthetic_tissue(**kwargs)
