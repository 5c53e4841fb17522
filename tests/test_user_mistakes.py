"""What a new user runs into: the query graph rebuilt as the reference's, labels of other dtypes, options out of
range, and models used in ways they do not support: each gets the right behaviour or a clear, early error."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from test_spatial import grid_tissue, hide_labels

import spatial_refine as sr
from spatial_refine._annotate import _graph_kwargs


def _scattered(n: int = 120, n_genes: int = 6, seed: int = 0) -> ad.AnnData:
    """Cells at random positions, two labelled types read off gene 0, a random representation."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    x = rng.normal(0, 0.1, (n, n_genes)).astype(np.float32)
    x[:, 0] += kind
    adata = ad.AnnData(x, obs=pd.DataFrame({"label": np.where(kind, "B", "A")}, index=[f"c{i}" for i in range(n)]))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.obsm["spatial"] = rng.random((n, 2)) * 100
    adata.obsm["X_rep"] = rng.normal(size=(n, 4)).astype(np.float32)
    return adata


def _edges(adata: ad.AnnData) -> set[tuple[int, int]]:
    rows, cols = adata.obsp["spatial_connectivities"].nonzero()
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


@pytest.mark.parametrize("graph", [{"radius": 20.0}, {"delaunay": True}, {"n_neighs": 4}])
def test_annotate_builds_the_query_graph_of_the_reference_kind(graph):
    reference = _scattered()
    sr.pp.spatial_neighbors(reference, **graph)
    model = sr.RefineAnnotator(reference, "label", strategy="neighbor_logreg", n_layers=1).train()
    query = _scattered(seed=1)
    sr.tl.annotate(query, model)
    # independent expectation: squidpy's own builder with the same arguments
    expected = _scattered(seed=1)
    if "radius" in graph:
        sq.gr.spatial_neighbors_radius(expected, radius=graph["radius"])
    elif graph.get("delaunay"):
        sq.gr.spatial_neighbors_delaunay(expected)
    else:
        sq.gr.spatial_neighbors_knn(expected, n_neighs=graph["n_neighs"])
    assert _edges(query) == _edges(expected)


def test_graph_kinds_are_read_from_squidpy_params_too():
    # our wrapper's record wins over whatever squidpy stored alongside
    assert _graph_kwargs({"graph_kind": "radius", "radius": 30.0, "n_neighbors": 10}) == {"radius": 30.0}
    assert _graph_kwargs({"graph_kind": "delaunay", "radius": [0.0, 50.0]}) == {"delaunay": True, "radius": 50.0}
    assert _graph_kwargs({"graph_kind": "knn", "n_neighbors": 5, "library_key": "slide"}) == {
        "n_neighs": 5, "library_key": "slide"}
    assert _graph_kwargs({"delaunay": True, "radius": None}) == {"delaunay": True}  # our earlier record
    # graphs built with squidpy directly: squidpy >= 1.8 params ...
    assert _graph_kwargs({"coord_type": "generic", "n_neighbors": 6, "transform": None}) == {"n_neighs": 6}
    assert _graph_kwargs({"coord_type": "generic", "radius": 30.0, "transform": None}) == {"radius": 30.0}
    with pytest.warns(UserWarning, match="not recorded"):
        assert _graph_kwargs({"coord_type": "generic", "radius": None, "transform": None}) == {"delaunay": True}
    # ... and older squidpy, which stores n_neighbors for every kind: a number as radius is a radius graph
    assert _graph_kwargs({"n_neighbors": 6, "radius": 50.0}) == {"radius": 50.0}
    assert _graph_kwargs({"n_neighbors": 6, "radius": None}) == {"n_neighs": 6}
    assert _graph_kwargs({}) == {"n_neighs": 10}  # nothing recorded: the default kNN graph


def test_annotate_builds_a_multi_slice_query_graph_per_slice_like_the_reference():
    reference = _scattered()
    reference.obs["slide"] = np.repeat(["r1", "r2"], 60)
    sr.pp.spatial_neighbors(reference, n_neighs=4, library_key="slide")
    model = sr.RefineAnnotator(reference, "label", strategy="neighbor_logreg", n_layers=1).train()
    query = _scattered(seed=1)
    query.obs["slide"] = np.repeat(["q1", "q2"], 60)  # both slices overlap in space
    sr.tl.annotate(query, model)
    rows, cols = query.obsp["spatial_connectivities"].nonzero()
    slides = query.obs["slide"].to_numpy()
    assert len(rows) and (slides[rows] == slides[cols]).all()


def test_annotate_warns_when_the_query_lacks_the_reference_slice_column():
    reference = _scattered()
    reference.obs["slide"] = np.repeat(["r1", "r2"], 60)
    sr.pp.spatial_neighbors(reference, n_neighs=4, library_key="slide")
    model = sr.RefineAnnotator(reference, "label", strategy="neighbor_logreg", n_layers=1).train()
    with pytest.warns(UserWarning, match="no obs\\['slide'\\]"):
        sr.tl.annotate(_scattered(seed=1), model)


def test_annotate_warns_that_library_key_is_unused_when_the_query_has_a_graph():
    reference = _scattered()
    sr.pp.spatial_neighbors(reference, n_neighs=4)
    model = sr.RefineAnnotator(reference, "label", strategy="neighbor_logreg", n_layers=1).train()
    query = _scattered(seed=1)
    query.obs["slide"] = "q1"
    sr.pp.spatial_neighbors(query, n_neighs=4)
    with pytest.warns(UserWarning, match="library_key='slide' is not used"):
        sr.tl.annotate(query, model, library_key="slide")


def test_annotate_checks_the_representation_before_writing_the_query_graph():
    reference = _scattered()
    sr.pp.spatial_neighbors(reference, n_neighs=4)
    model = sr.RefineAnnotator(reference, "label", rep_key="X_rep", n_layers=1, hidden=8).train(max_epochs=3)
    query = _scattered(seed=1)
    del query.obsm["X_rep"]
    with pytest.raises(ValueError, match="X_rep"):
        sr.tl.annotate(query, model)
    assert "spatial_connectivities" not in query.obsp and "spatial_neighbors" not in query.uns


def test_a_class_named_unknown_and_a_confidence_threshold_are_refused_together():
    adata = grid_tissue(side=10)
    hide_labels(adata, 0.3)
    adata.obs["train_label"] = adata.obs["train_label"].replace({"niche_A": "Unknown"})
    model = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train()
    with pytest.raises(ValueError, match="class named 'Unknown'"):
        sr.tl.annotate(adata.copy(), model, confidence_threshold=0.5)
    sr.tl.annotate(adata, model)  # without a threshold the class is just a class
    assert set(adata.obs["refine"].cat.categories) == {"Unknown", "niche_B"}


def test_predict_refuses_a_query_with_too_few_of_the_model_genes():
    adata = grid_tissue(side=10, n_genes=10)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train()
    renamed = adata.copy()
    renamed.var_names = [name.upper() for name in adata.var_names]  # "G0"...: none of the model's genes
    with pytest.raises(ValueError, match=r"Only 0 of the model's 10 genes"):
        model.predict(renamed)
    half = adata[:, adata.var_names[:4]].copy()
    with pytest.raises(ValueError, match="min_gene_overlap=50%"):
        model.predict(half)
    assert model.predict(half, min_gene_overlap=0.4).shape == (adata.n_obs, 2)


def test_missing_labels_turned_into_strings_are_flagged():
    adata = grid_tissue(side=10)
    hide_labels(adata, 0.3)
    adata.obs["as_text"] = adata.obs["train_label"].astype(str)  # NaN -> "nan", a class of its own
    with pytest.warns(UserWarning, match=r"\['nan'\].*unlabeled_category='nan'"):
        sr.RefineAnnotator(adata, "as_text", strategy="logreg")
    model = sr.RefineAnnotator(adata, "as_text", strategy="logreg", unlabeled_category="nan")
    assert list(model.classes_) == ["niche_A", "niche_B"]


def test_numeric_labels_keep_their_numeric_order():
    adata = grid_tissue(side=12)
    rng = np.random.default_rng(0)
    adata.obs["cluster"] = pd.array(rng.integers(0, 12, adata.n_obs), dtype="Int64")
    model = sr.RefineAnnotator(adata, "cluster", strategy="logreg")
    assert list(model.classes_) == [str(k) for k in range(12)]  # "2" before "10", as scanpy orders clusters
    codes = model.codes_
    np.testing.assert_array_equal(model.classes_[codes].astype(int), adata.obs["cluster"].to_numpy(dtype=int))


def test_train_options_out_of_range_are_refused():
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="gnn", n_layers=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.train(batch_size=0)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced', 'effective' or a dict"):
        model.train(class_weight="foo")
    with pytest.raises(ValueError, match="refit must be True, 'linear' or False"):
        model.train(refit="networks")


def test_integer_options_accept_numpy_integers_and_refuse_bools():
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=np.int64(8), n_layers=np.int64(1))
    assert model.params["hidden"] == 8 and type(model.params["hidden"]) is int
    with pytest.raises(ValueError, match="hidden must be"):
        sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=True)
    with pytest.raises(ValueError, match="n_layers must be"):
        sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=True)


@pytest.mark.parametrize("strategy", ["logreg", "neighbor_logreg", "linear_probe"])
def test_models_without_a_residual_encoder_report_no_width(strategy):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    sr.tl.refine(adata, "train_label", rep_key="X_rep", strategy=strategy,
                 train_kwargs={"max_epochs": 3})
    assert adata.uns["refine"]["hidden"] == "linear"


def test_a_loaded_model_predicts_but_says_it_cannot_train(tmp_path):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train()
    loaded = sr.RefineAnnotator.load(model.save(tmp_path / "m"))
    assert loaded.metrics_["n_layers_tried"] == model.metrics_["n_layers_tried"]  # integer depths again
    with pytest.raises(RuntimeError, match="loaded from disk"):
        loaded.train()


def test_refine_refuses_to_overwrite_the_labels_with_predictions():
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    with pytest.raises(ValueError, match="overwrite your labels"):
        sr.tl.refine(adata, "train_label", key_added="train_label", strategy="logreg")
    assert "refine" not in adata.uns


def test_spatial_neighbors_needs_more_cells_than_neighbours():
    adata = _scattered(n=5)
    with pytest.raises(ValueError, match="more than 10 cells per slice, but a slice has 5"):
        sr.pp.spatial_neighbors(adata)
    adata.obs["slide"] = ["a"] * 4 + ["b"]
    with pytest.raises(ValueError, match="a slice has 1"):
        sr.pp.spatial_neighbors(adata, n_neighs=2, library_key="slide")
    assert adata.obs["slide"].dtype == object  # refused before anything was converted
    sr.pp.spatial_neighbors(adata, delaunay=True)  # no neighbour count to satisfy


def test_spatial_plot_refuses_color():
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    sr.tl.refine(adata, "train_label", strategy="logreg")
    with pytest.raises(TypeError, match="takes no color="):
        sr.pl.spatial(adata, color="label", show=False)


def test_demo_refuses_label_counts_it_cannot_use(tmp_path, capsys):
    from spatial_refine.cli import main
    from spatial_refine.demo import DemoOptionError, run_demo

    with pytest.raises(DemoOptionError, match="between 20 and 2499"):
        run_demo(tmp_path / "out", n_labelled=2500)
    assert main(["demo", "--n-labelled", "-5", "--out", str(tmp_path / "cli")]) == 2
    assert "n_labelled must be between" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_unavailable_devices_are_refused_by_name():
    import torch

    from spatial_refine._device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS"):
            resolve_device("mps")
