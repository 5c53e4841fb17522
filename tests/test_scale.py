"""Scale behaviour of the spatial annotator: minibatch inference is exact, and nothing is n x n.

Correctness only; the timings live in ``benchmarks/spatial_scale.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_spatial import grid_tissue, hide_labels

import spatial_refine as sr
import spatial_refine.annotator as annotator_module

warnings.filterwarnings("ignore", category=FutureWarning)


def test_minibatch_predictions_equal_full_batch_predictions(monkeypatch):
    adata = grid_tissue(side=20)
    hide_labels(adata, 0.5)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", encoder="sage", n_layers=2)
    model.train(max_epochs=5, batch_size=None)
    full = model.predict()
    # the same trained model, predicting on exact 2-hop subgraphs of 37 seed cells at a time
    monkeypatch.setattr(annotator_module, "INFERENCE_MIN_SEEDS", 37)
    model.train_settings_["batch_size"] = 16
    mini = model.predict()
    pd.testing.assert_frame_equal(mini, full, atol=1e-5, rtol=1e-5)


def test_inference_batches_are_at_least_the_minimum_and_training_batches_unchanged():
    adata = grid_tissue(side=10)
    hide_labels(adata, 0.5)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", encoder="sage", n_layers=1)
    inputs = model._inputs(adata)
    model.input_mean_, model.input_std_ = inputs.expression.mean(0), inputs.expression.std(0) + 1e-6
    cells = np.arange(adata.n_obs)
    train = model._batches(inputs, cells, 1, y=None, shuffle=True, batch_size=8)
    infer = model._batches(inputs, cells, 1, y=None, shuffle=False, batch_size=8, inference=True)
    full = model._batches(inputs, cells, 1, y=None, shuffle=False, batch_size=None, inference=True)
    assert train.batch_size == 8
    assert infer.batch_size == annotator_module.INFERENCE_MIN_SEEDS
    assert full.batch_size is None


def _refusing_large_toarray(toarray, limit: int):
    """``toarray`` that refuses to densify more than ``limit`` entries (a dense n x n graph would)."""

    def guarded(self, *args, **kwargs):
        rows, cols = self.shape
        if rows * cols > limit:
            raise AssertionError(f"dense {rows} x {cols} copy of a sparse matrix")
        return toarray(self, *args, **kwargs)

    return guarded


def test_annotator_never_densifies_a_graph_too_large_for_dense_n_by_n(monkeypatch):
    # 122,500 cells: above the full-batch limit (minibatches), and a dense n x n float32 graph would take
    # 60 GB. Sparse matrices refuse to densify anything bigger than the expression matrix.
    side = 350
    adata = grid_tissue(side=side, n_genes=4)
    n = adata.n_obs
    assert n > annotator_module.FULL_BATCH_MAX_CELLS
    labels = adata.obs["label"].astype(object).copy()
    rng = np.random.default_rng(0)
    labels[rng.random(n) > 0.01] = np.nan  # ~1,200 labelled cells
    adata.obs["train_label"] = labels
    adata.X = sp.csr_matrix(adata.X)  # the expression may be densified (n x genes), the graph never
    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array, sp.coo_array):
        monkeypatch.setattr(cls, "toarray", _refusing_large_toarray(cls.toarray, limit=n * 100))
    with pytest.raises(AssertionError, match="dense"):  # the guard is live
        adata.obsp["spatial_connectivities"].toarray()
    for encoder in ("sign", "sage"):  # hop aggregation by sparse products; k-hop subgraph minibatches
        model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", encoder=encoder, n_layers=1, hidden=8)
        model.train(max_epochs=1, patience=1)
        proba = model.predict()
        assert proba.shape == (n, 2)
        np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, atol=1e-5)
