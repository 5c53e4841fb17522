"""Plots draw what they claim from the documented keys."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import spatial_refine as sr
from spatial_refine.refine import History


@pytest.fixture
def annotated():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(6, 2)).astype(np.float32))
    adata.obsm["spatial"] = rng.random((6, 2))
    adata.obs["truth"] = pd.Categorical(["a", "a", "b", "b", "b", "a"])
    adata.obs["refine"] = pd.Categorical(["a", "b", "b", "b", "b", "a"])
    adata.obs["refine_confidence"] = np.linspace(0.5, 1.0, 6).astype(np.float32)
    return adata


def test_confusion_matrix_rows_are_fractions(annotated):
    ax = sr.pl.confusion_matrix(annotated, "truth")
    values = ax.images[0].get_array()
    # truth a: 2 of 3 predicted a, 1 predicted b; truth b: all 3 predicted b
    np.testing.assert_allclose(values, [[2 / 3, 1 / 3], [0.0, 1.0]])


def test_confusion_matrix_has_no_grid_under_scanpy_style(annotated):
    import matplotlib as mpl

    with mpl.rc_context({"axes.grid": True}):  # what sc.settings.set_figure_params sets
        ax = sr.pl.confusion_matrix(annotated, "truth")
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())


def test_spatial_plot_has_a_label_and_a_confidence_panel(annotated):
    axes = sr.pl.spatial(annotated, show=False)
    assert len(axes) == 2
    with pytest.raises(ValueError, match="missing"):
        sr.pl.spatial(annotated, key="nothing", show=False)


def test_training_curves_mark_the_best_epoch():
    class Model:
        history_ = History(train_loss=[1.0, 0.5, 0.4], val_loss=[1.1, 0.6, 0.7], best_epoch=1)

    ax = sr.pl.training_curves(Model())
    assert len(ax.lines) == 3
    assert ax.lines[2].get_xdata()[0] == 2  # best epoch, 1-based


def test_benchmark_bars_are_means_per_method():
    results = pd.DataFrame({"method": ["x", "x", "y", "y"], "macro_f1": [0.2, 0.4, 0.6, 0.8]})
    ax = sr.pl.benchmark(results)
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.3, 0.7]
    with pytest.raises(ValueError, match="no rows"):
        sr.pl.benchmark(results.iloc[:0])


def test_confusion_matrix_is_square_on_the_true_classes_when_some_are_never_predicted():
    adata = ad.AnnData(np.zeros((6, 1), dtype=np.float32))
    adata.obs["truth"] = pd.Categorical(["a", "b", "c", "c", "b", "a"])
    adata.obs["refine"] = pd.Categorical(["a", "c", "c", "Unknown", "c", "a"])  # b is never predicted
    ax = sr.pl.confusion_matrix(adata, "truth", normalize=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "Unknown"]
    # by hand: a -> a twice; b -> c twice; c -> c once and Unknown once
    np.testing.assert_array_equal(ax.images[0].get_array(), [[2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 1, 1]])
    adata.obs["refine_confidence"] = np.linspace(0, 1, 6)
    with pytest.raises(ValueError, match="confidence column"):
        sr.pl.confusion_matrix(adata, "truth", "refine_confidence")


def test_confusion_matrix_takes_integer_labels_stored_as_floats_in_numeric_order():
    adata = ad.AnnData(np.zeros((5, 1), dtype=np.float32))
    adata.obs["truth"] = [1.0, 2.0, 10.0, np.nan, 2.0]  # integer clusters, NaN = unlabelled: a float column
    adata.obs["pred"] = pd.Categorical(["1.0", "2.0", "10.0", "1.0", "1.0"])
    ax = sr.pl.confusion_matrix(adata, "truth", "pred", normalize=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1.0", "2.0", "10.0"]
    np.testing.assert_array_equal(ax.images[0].get_array(), [[1, 0, 0], [1, 1, 0], [0, 0, 1]])


def test_training_curves_of_an_ensemble_name_the_network_and_its_weight():
    class Model:
        def __init__(self):
            self.history_ = History(train_loss=[1.0, 0.5], val_loss=[1.1, 0.6], best_epoch=1)
            self.metrics_ = {"ensemble_weights": {"linear[hops]": 1.0}}

    ax = sr.pl.training_curves(Model())
    assert "ensemble weight 0" in ax.get_title()
    kept = Model()
    kept.metrics_ = {"ensemble_weights": {"64": 0.4, "linear": 0.6}}
    assert "ensemble weight 0.4" in sr.pl.training_curves(kept).get_title()
