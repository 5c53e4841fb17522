"""The spatial AnnData layer: graph, RefineAnnotator, sr.tl.refine / annotate."""

from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import spatial_refine as sr
from spatial_refine.encoders import GNNEncoder, SIGNEncoder
from spatial_refine.refine import greedy_ensemble_weights, predict_outputs
from spatial_refine.refine.graph import GraphBatches, k_hop_nodes
from spatial_refine.refine.neighbors import neighbor_aggregate

warnings.filterwarnings("ignore", category=FutureWarning)


def plain_linear_head(monkeypatch, scales: tuple[float, ...] | None = (1.0,)) -> None:
    """REFINE's linear members as scikit-learn's logistic regression with its default penalty (C = 1), no
    temperature on the logits and the representation's scales ``scales`` (``None``: the package's): what the
    independent fits of a test compute (the penalty's choice and the temperature are tested on their own)."""
    import spatial_refine.annotator as annotator_module

    if scales is not None:
        monkeypatch.setattr(annotator_module, "REP_SCALES", scales)
    monkeypatch.setattr(annotator_module, "LINEAR_CS", (1.0,))
    monkeypatch.setattr(annotator_module, "LINEAR_TEMPERATURE", False)


def grid_tissue(side: int = 24, n_genes: int = 6, seed: int = 0) -> ad.AnnData:
    """A side x side grid of cells. Each cell has a random type (A or B) written in its gene 0. The label
    is whether most of its 4 grid neighbours are of type A: a function of the neighbours only, not of
    the cell itself. The frozen representation is pure noise."""
    rng = np.random.default_rng(seed)
    n = side * side
    cell_type = rng.integers(0, 2, n)
    X = rng.normal(0, 0.1, size=(n, n_genes)).astype(np.float32)
    X[:, 0] += cell_type
    rows, cols = np.divmod(np.arange(n), side)
    coords = np.c_[cols, rows].astype(float)
    pairs = [(i, i + 1) for i in range(n) if cols[i] < side - 1] + [(i, i + side) for i in range(n - side)]
    i, j = np.array(pairs).T
    adjacency = sp.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    degree = np.asarray(adjacency.sum(1)).ravel()
    frac_a = (adjacency @ cell_type) / degree
    label = np.where(frac_a > 0.5, "niche_A", "niche_B")
    adata = ad.AnnData(X, obs=pd.DataFrame({"label": label}, index=[f"c{k}" for k in range(n)]))
    adata.var_names = [f"g{k}" for k in range(n_genes)]
    adata.obsm["spatial"] = coords
    adata.obsm["X_rep"] = rng.normal(size=(n, 8)).astype(np.float32)
    adata.obsp["spatial_connectivities"] = adjacency
    return adata


def hide_labels(adata: ad.AnnData, fraction: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hidden = rng.random(adata.n_obs) < fraction
    labels = adata.obs["label"].astype(object).copy()
    labels[hidden] = np.nan
    adata.obs["train_label"] = labels
    return hidden


def _accuracy_on_hidden(adata, hidden_cells, **options) -> float:
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", **options).train()
    proba = model.predict()
    predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)][hidden_cells]
    return float((predicted == adata.obs["label"].to_numpy()[hidden_cells]).mean())


def test_neighbour_only_label_is_learnt_by_refine_not_by_the_probe():
    adata = grid_tissue()
    hidden = hide_labels(adata, 0.5)
    scores = {s: _accuracy_on_hidden(adata, hidden, strategy=s, n_layers=1) for s in ("refine", "linear_probe", "logreg")}
    assert scores["refine"] > 0.85
    assert scores["linear_probe"] < 0.65  # the representation is noise
    assert scores["logreg"] < 0.65  # the cell's own expression does not determine its label


@pytest.mark.parametrize(("encoder", "hidden"), [("sign", None), ("sage", 64), ("gcn", 64), ("gat", 64)])
def test_every_graph_encoder_learns_the_neighbour_only_label(encoder, hidden):
    adata = grid_tissue()
    hidden_cells = hide_labels(adata, 0.5)
    assert _accuracy_on_hidden(adata, hidden_cells, encoder=encoder, hidden=hidden, n_layers=1) > 0.85


def _proba(adata, **options) -> np.ndarray:
    return sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", **options).train().predict().to_numpy()


def test_linear_residual_from_scratch_is_exactly_the_logistic_baselines():
    # hidden=None: the GNN from scratch is a logistic regression on [x, P x, ...]; on a graph where every
    # cell has neighbours that is the neighbour-aggregation baseline (depth 0: plain logistic regression)
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    for depth, baseline in ((0, "logreg"), (1, "neighbor_logreg"), (2, "neighbor_logreg")):
        linear = _proba(adata, strategy="gnn", hidden=None, n_layers=depth)
        np.testing.assert_allclose(linear, _proba(adata, strategy=baseline, n_layers=depth), atol=1e-4)


def test_linear_refine_is_logistic_regression_on_the_hops_and_the_representation(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    # one L2 penalty on both blocks (the choice of the representation's scale is tested on its own below)
    plain_linear_head(monkeypatch)
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    # by hand: the mean over the 4-neighbourhood with a dense matrix, then the frozen representation
    a = adata.obsp["spatial_connectivities"].toarray()
    features = np.hstack([adata.X, (a / a.sum(1, keepdims=True)) @ adata.X, adata.obsm["X_rep"]])
    labelled = np.flatnonzero(adata.obs["train_label"].notna().to_numpy())
    for refit in (True, False):
        model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
        model.train(refit=refit, smoothing=None)  # the smoothing of the predictions is tested on its own below
        assert model.history_ is None  # solved, not trained by gradient steps
        train, val = model.train_indices_, model.validation_indices_
        if refit:  # fitted again on every labelled cell, the validation cells included
            np.testing.assert_array_equal(train, labelled)
        else:
            assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labelled)
        scaler = StandardScaler().fit(features[train])
        clf = LogisticRegression(max_iter=1000, class_weight=_effective_weights(adata.obs["train_label"])).fit(
            scaler.transform(features[train]), adata.obs["train_label"].iloc[train]  # the default weights
        )
        expected = clf.predict_proba(scaler.transform(features))
        np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-4)


def test_class_weight_reaches_the_logistic_regressions():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    adata = grid_tissue(side=12)
    labels = adata.obs["label"].astype(object).copy()
    minority = np.flatnonzero(labels == "niche_A")[10:]  # keep 10 labelled cells of niche_A
    labels.iloc[minority] = np.nan
    adata.obs["train_label"] = labels
    # effective-number weights by default (fixed from the labelled cells), "balanced" as scikit-learn counts them
    # on the fitted rows, None the plain likelihood; each as scikit-learn computes it
    effective = _effective_weights(labels)
    for options, setting, sklearn_weight in (
        ({}, "effective", effective), ({"class_weight": "balanced"}, "balanced", "balanced"),
        ({"class_weight": None}, None, None),
    ):
        model = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(**options)
        assert model.train_settings_["class_weight"] == setting
        train = model.train_indices_
        scaler = StandardScaler().fit(adata.X[train])
        clf = LogisticRegression(max_iter=1000, class_weight=sklearn_weight).fit(
            scaler.transform(adata.X[train]), labels.iloc[train].astype(str)
        )
        expected = clf.predict_proba(scaler.transform(adata.X))
        np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-4)
    # a dict sets them by hand, as scikit-learn's (classes not named weigh 1)
    by_hand = {"niche_A": 3.0}
    model = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight=by_hand)
    train = model.train_indices_
    scaler = StandardScaler().fit(adata.X[train])
    clf = LogisticRegression(max_iter=1000, class_weight=by_hand).fit(
        scaler.transform(adata.X[train]), labels.iloc[train].astype(str)
    )
    np.testing.assert_allclose(model.predict().to_numpy(), clf.predict_proba(scaler.transform(adata.X)), atol=1e-4)
    assert model.train_settings_["class_weight"] == {"niche_A": 3.0}
    with pytest.raises(ValueError, match="not a class"):
        sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight={"niche_Z": 2.0})
    with pytest.raises(ValueError, match="weight 0"):
        sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight={"niche_A": 0, "niche_B": 0})
    with pytest.raises(ValueError, match="class_weight must be"):
        sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight=np.array([1.0, 2.0]))
    # numeric labels are classes by their text: {1: w} names class "1"
    adata.obs["numeric"] = np.where(adata.obs["label"] == "niche_A", 1, 2)
    numeric = sr.RefineAnnotator(adata, "numeric", strategy="logreg").train(class_weight={1: 3.0})
    assert numeric.train_settings_["class_weight"] == {"1": 3.0}
    # the weights matter here: the minority class gets more probability with them
    minority_cells = np.flatnonzero(adata.obs["label"] == "niche_A")
    weighted = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train().predict()
    plain = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight=None).predict()
    assert weighted["niche_A"].iloc[minority_cells].mean() > plain["niche_A"].iloc[minority_cells].mean()


def _effective_weights(labels, beta=0.99) -> dict:
    """The default class weights by hand: (1 - beta) / (1 - beta ** n_c) per class of the labelled cells,
    scaled to mean 1 over them (Cui et al. 2019)."""
    counts = pd.Series(labels).dropna().astype(str).value_counts()
    raw = {c: (1 - beta) / (1 - beta**n) for c, n in counts.items()}
    scale = counts.sum() / sum(raw[c] * n for c, n in counts.items())
    return {c: w * scale for c, w in raw.items()}


def _logreg_proba(features, labels, fit_cells, cells, class_weight):
    """An independent scikit-learn logistic regression (C=1 on standardised columns)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[fit_cells])
    clf = LogisticRegression(max_iter=1000, class_weight=class_weight)
    clf.fit(scaler.transform(features[fit_cells]), labels[fit_cells])
    return clf.predict_proba(scaler.transform(features[cells]))


def _halves_network(adata, val, random_state, monkeypatch, refit="linear"):
    """The cross-fitted network rebuilt from public pieces: two ``hidden=64`` networks trained on the labelled
    cells outside ``val``, each validated (early stopping, depth, start) on one random half of ``val`` (obs
    positions, sorted); returns both and the validation probabilities, each half scored by the other's network
    (meaningful with ``refit="linear"``: networks not trained again on every labelled cell)."""
    import spatial_refine.annotator as annotator_module

    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    val_pos = np.searchsorted(labelled, val)
    train_pos = np.setdiff1d(np.arange(len(labelled)), val_pos)
    order = np.random.default_rng(random_state).permutation(len(val))
    halves = order[: len(val) // 2], order[len(val) // 2 :]
    networks, val_proba = [], np.zeros((len(val), adata.obs["label"].nunique()))
    for chooser, scored in (halves, halves[::-1]):
        monkeypatch.setattr(annotator_module, "_stratified_split", lambda *a, c=chooser, **k: (train_pos, val_pos[c]))
        network = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1, hidden=64)
        # unsmoothed: the probabilities ensemble selection reads
        networks.append(network.train(max_epochs=40, random_state=random_state, refit=refit, smoothing=None))
        np.testing.assert_array_equal(network.validation_indices_, np.sort(val[chooser]))
        val_proba[scored] = network.predict().to_numpy()[val[scored]]
    monkeypatch.undo()
    return networks, val_proba


def test_auto_width_weights_refine_fits_by_ensemble_selection(tmp_path, monkeypatch):
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    plain_linear_head(monkeypatch, None)  # the one-block regressions as the plain ones rebuilt below
    # unsmoothed predictions (the smoothing over the graph is tested on its own below)
    auto = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=40, smoothing=None)
    linear = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1, hidden=None).train()
    networks, network_val = _halves_network(adata, auto.validation_indices_, 0, monkeypatch)
    tried = auto.metrics_["hidden_tried"]
    assert list(tried) == ["64", "linear", "linear[hops]", "linear[rep]"]
    codes = pd.Categorical(adata.obs["train_label"].iloc[auto.validation_indices_], categories=auto.classes_).codes
    # the network's validation loss is that of the cross-fitted probabilities, on cells no choice was made on
    assert tried["64"] == pytest.approx(-np.log(network_val[np.arange(len(codes)), codes]).mean(), abs=1e-5)
    assert tried["linear"] == pytest.approx(linear.metrics_["val_loss"], abs=1e-6)

    # every candidate rebuilt independently: the hop features [x, P x] by hand, P = D^-1 A
    adjacency = adata.obsp["spatial_connectivities"]
    hops = np.hstack([adata.X, (adjacency @ adata.X) / np.asarray(adjacency.sum(1))])
    inputs = {"linear": np.hstack([hops, adata.obsm["X_rep"]]), "linear[hops]": hops, "linear[rep]": adata.obsm["X_rep"]}
    labels = adata.obs["train_label"].astype(str).to_numpy()
    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    val = auto.validation_indices_
    split = np.setdiff1d(labelled, val)
    class_weight = _effective_weights(adata.obs["train_label"])  # the default, from every labelled cell
    val_probas = [network_val] + [_logreg_proba(x, labels, split, val, class_weight) for x in inputs.values()]
    for name, proba in zip(["linear[hops]", "linear[rep]"], val_probas[2:], strict=True):
        assert tried[name] == pytest.approx(-np.log(proba[np.arange(len(val)), codes]).mean(), abs=1e-4)
    weights = greedy_ensemble_weights(val_probas, codes, rounds=10)
    assert weights[0] > 0  # the network is kept here: its two runs are checked below
    names = list(tried)
    assert auto.metrics_["ensemble_weights"] == pytest.approx({n: w for n, w in zip(names, weights, strict=True) if w > 0})
    # members: the kept candidates, heavier first; the network as its two runs, sharing its weight
    kept = sorted((n for n, w in zip(names, weights, strict=True) if w > 0),
                  key=lambda n: (-weights[names.index(n)], tried[n]))
    assert [m.name for m in auto.members_] == [m for n in kept for m in ([n, n] if n == "64" else [n])]
    assert [m.weight for m in auto.members_] == pytest.approx(
        [w for n in kept for w in ([weights[0] / 2] * 2 if n == "64" else [weights[names.index(n)]])])
    assert auto.hidden_ == auto.members_[0].hidden and auto.is_ensemble
    # validation metrics: those of the weighted mean of the models fitted on the split, on cells none saw
    mean = sum(w * p for w, p in zip(weights, val_probas, strict=True))
    assert auto.metrics_["val_loss"] == pytest.approx(-np.log(mean[np.arange(len(val)), codes]).mean(), abs=1e-4)
    # predictions: the weighted mean of the network (its two runs' mean) and of the logistic regressions, each
    # fitted again on every label (a network run: the same split run, then trained again as it chose)
    everything = np.arange(adata.n_obs)
    networks = _halves_network(adata, auto.validation_indices_, 0, monkeypatch, refit=True)[0]
    final = [(networks[0].predict().to_numpy() + networks[1].predict().to_numpy()) / 2]
    final += [_logreg_proba(x, labels, labelled, everything, class_weight) for x in inputs.values()]
    expected = sum(w * p for w, p in zip(weights, final, strict=True))
    np.testing.assert_allclose(auto.predict().to_numpy(), expected, atol=1e-4)
    assert auto.metrics_["refit"] and len(auto.train_indices_) == len(labelled)
    assert auto.history_ is not None  # the network candidate's training curves, whatever its weight
    # the ensemble survives a save/load round trip
    loaded = sr.RefineAnnotator.load(auto.save(tmp_path / "auto"))
    assert [(m.name, m.n_layers, m.weight) for m in loaded.members_] == [(m.name, m.n_layers, m.weight) for m in auto.members_]
    pd.testing.assert_frame_equal(loaded.predict(adata), auto.predict())
    # baselines and message-passing encoders have a single candidate
    assert sr.RefineAnnotator(adata, "train_label", strategy="gnn")._candidates() == [(64, "all")]
    assert sr.RefineAnnotator(adata, "train_label", encoder="sage")._candidates() == [(64, "all")]


def test_two_stage_selection_weighs_the_logistic_regressions_on_out_of_fold_probabilities(monkeypatch):
    # CV_LINEAR_SELECTION (off by default, measured in diagnose_linear_selection.md): the three logistic
    # regressions weighed among themselves on their 5-fold out-of-fold probabilities of every labelled cell
    # (scikit-learn's, same stratified folds), then their blend against the cross-fitted network on the
    # validation cells; the network's weight and the blend's shares multiply
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import spatial_refine.annotator as annotator_module

    adata = grid_tissue(side=12)
    hide_labels(adata, 0.6)  # here the two rules weigh the same fits differently
    plain_head = (1.0,)  # one L2 penalty on REFINE's linear head, as the independent fits below
    plain_linear_head(monkeypatch, plain_head)
    split_only = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=40)
    monkeypatch.setattr(annotator_module, "CV_LINEAR_SELECTION", True)
    two_stage = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=40)
    monkeypatch.undo()
    # the same four fits: only their weights differ
    assert two_stage.metrics_["hidden_tried"] == pytest.approx(split_only.metrics_["hidden_tried"])
    network_val = _halves_network(adata, two_stage.validation_indices_, 0, monkeypatch)[1]
    adjacency = adata.obsp["spatial_connectivities"]
    hops = np.hstack([adata.X, (adjacency @ adata.X) / np.asarray(adjacency.sum(1))])
    inputs = [np.hstack([hops, adata.obsm["X_rep"]]), hops, adata.obsm["X_rep"]]
    labels = adata.obs["train_label"].astype(str).to_numpy()
    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    val = two_stage.validation_indices_
    split = np.setdiff1d(labelled, val)
    class_weight = _effective_weights(adata.obs["train_label"])
    val_codes = pd.Categorical(labels[val], categories=two_stage.classes_).codes
    all_codes = pd.Categorical(labels[labelled], categories=two_stage.classes_).codes
    by_code = {code: class_weight[str(name)] for code, name in enumerate(two_stage.classes_)}
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    oof = [cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight=by_code)),
                             x[labelled], all_codes, cv=folds, method="predict_proba") for x in inputs]
    inner = greedy_ensemble_weights(oof, all_codes, rounds=10)
    blend = sum(w * _logreg_proba(x, labels, split, val, class_weight) for w, x in zip(inner, inputs, strict=True))
    outer = greedy_ensemble_weights([network_val, blend], val_codes, rounds=10)
    expected = dict(zip(["64", "linear", "linear[hops]", "linear[rep]"], [outer[0], *(outer[1] * inner)], strict=True))
    assert two_stage.metrics_["ensemble_weights"] == pytest.approx({n: w for n, w in expected.items() if w > 0})
    assert two_stage.metrics_["ensemble_weights"] != pytest.approx(split_only.metrics_["ensemble_weights"])
    # without cross-validation (depth_folds=None) there are no out-of-fold probabilities: one stage, as by default
    plain_linear_head(monkeypatch, plain_head)
    monkeypatch.setattr(annotator_module, "CV_LINEAR_SELECTION", True)
    no_cv = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=40, depth_folds=None)
    assert no_cv.metrics_["ensemble_weights"] == pytest.approx(split_only.metrics_["ensemble_weights"])


def test_ensemble_members_saved_before_ensemble_selection_load_with_equal_weights(tmp_path):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    pair = [sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1, hidden=h).train(max_epochs=5,
                                                                                               smoothing=None)
            for h in (None, 64)]
    saved = [model.save(tmp_path / str(i)) for i, model in enumerate(pair)]
    # a format-2 file of the averaged pair (before weights and inputs were stored)
    from safetensors.numpy import load_file, save_file

    config = json.loads((saved[0] / "config.json").read_text())
    config["members"] = [{k: v for k, v in json.loads((path / "config.json").read_text())["members"][0].items()
                          if k not in ("inputs", "weight")} for path in saved]
    old = tmp_path / "pair"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    arrays = {}
    for i, path in enumerate(saved):
        arrays |= {k.replace("member0.", f"member{i}."): v for k, v in load_file(str(path / "model.safetensors")).items()}
    save_file(arrays, str(old / "model.safetensors"))
    loaded = sr.RefineAnnotator.load(old)
    assert [(m.inputs, m.weight) for m in loaded.members_] == [("all", 0.5), ("all", 0.5)]
    expected = (pair[0].predict(adata) + pair[1].predict(adata)) / 2
    pd.testing.assert_frame_equal(loaded.predict(adata), expected, atol=1e-6)


def test_auto_depth_finds_that_the_label_needs_the_neighbours():
    # the label is a function of the 1-hop neighbours: depth 0 (the cell alone) must lose on validation
    adata = grid_tissue()
    hide_labels(adata, 0.5)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="gnn").train()
    tried = model.metrics_["n_layers_tried"]
    assert sorted(tried) == [0, 1, 2, 3]
    assert model.n_layers_ >= 1 and tried[0] > min(tried.values())
    assert len(model.input_mean_) == (model.n_layers_ + 1) * adata.n_vars  # statistics of the kept hops


def test_refine_chooses_the_depth_on_the_residual_path_and_starts_from_that_model():
    adata = grid_tissue()
    hide_labels(adata, 0.5)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep").train()
    tried = model.metrics_["n_layers_tried"]
    assert sorted(tried) == [0, 1, 2, 3] and model.n_layers_ == min(tried, key=tried.get) >= 1
    assert set(model.history_.start_val_loss) == {"probe", "residual"}
    # the residual run began at the kept from-scratch model, so it cannot end above that model's loss
    assert model.history_.start_val_loss["residual"] <= tried[model.n_layers_] + 1e-6


def test_refine_residual_start_is_exactly_the_gnn_baseline_model():
    # the frozen representation is noise: REFINE's residual run starts at the model strategy="gnn" trains
    # (same seed, same split, same depth), so its epoch-0 validation loss is that baseline's
    adata = grid_tissue()
    hide_labels(adata, 0.5)
    # (validation losses as early stopping measures them: class-weighted, plain with None)
    for class_weight in ("effective", "balanced", None):
        gnn = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="gnn", n_layers=1)
        gnn.train(max_epochs=40, class_weight=class_weight, refit="linear")  # predicts with the split's model
        refine = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1, hidden=64)
        refine.train(max_epochs=40, class_weight=class_weight)
        residual_start = refine.metrics_["n_layers_tried"][1]
        assert residual_start == pytest.approx(gnn.history_.best_val_loss, rel=1e-5)
        if class_weight is None:  # the plain loss is also the one the metrics report
            assert residual_start == pytest.approx(gnn.metrics_["val_loss"], rel=1e-5)
        else:  # by hand: sum_i w[y_i] (-log p_i[y_i]) / sum_i w[y_i]; balanced: w = n / (k n_class) on the
            # training cells; effective: the inverse effective number of every labelled cell's class
            codes = pd.Categorical(adata.obs["train_label"], categories=gnn.classes_).codes
            train, val = codes[gnn.train_indices_], codes[gnn.validation_indices_]
            counts = np.bincount(train, minlength=len(gnn.classes_))
            w = len(train) / (len(gnn.classes_) * counts)
            if class_weight == "effective":
                by_name = _effective_weights(adata.obs["train_label"])
                w = np.array([by_name[str(c)] for c in gnn.classes_])
            proba = gnn.predict().to_numpy()[gnn.validation_indices_, val]
            expected = np.sum(w[val] * -np.log(proba)) / np.sum(w[val])
            assert residual_start == pytest.approx(expected, rel=1e-4)
            assert abs(expected - gnn.metrics_["val_loss"]) > 1e-4  # the weights do matter here
        assert refine.history_.start_val_loss["residual"] <= residual_start + 1e-6
    # with the depth chosen on validation, both choose it by the same (class-weighted) loss: the same depth,
    # the same losses per depth
    gnn = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="gnn").train(max_epochs=15)
    refine = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=64).train(max_epochs=15)
    assert refine.metrics_["n_layers_tried"] == pytest.approx(gnn.metrics_["n_layers_tried"], rel=1e-5)
    assert refine.n_layers_ == gnn.n_layers_


@pytest.mark.parametrize("options", [{"strategy": "gnn", "n_layers": 1}, {}])  # one network; the default ensemble
def test_refit_trains_the_kept_networks_again_on_every_labelled_cell(tmp_path, options):
    adata = grid_tissue()
    hidden_cells = hide_labels(adata, 0.5)
    labelled = np.flatnonzero(~hidden_cells)
    split = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", **options).train(max_epochs=60, refit="linear")
    refit = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", **options).train(max_epochs=60)
    assert refit.train_settings_["refit"] is True and refit.metrics_["refit"]
    np.testing.assert_array_equal(refit.train_indices_, labelled)
    assert refit.metrics_["n_train"] == len(labelled)
    # the choices are the split's (the same runs, the same selection): validation metrics and members agree ...
    assert refit.metrics_["val_loss"] == split.metrics_["val_loss"]
    assert [(m.name, m.n_layers, m.weight) for m in refit.members_] == [(m.name, m.n_layers, m.weight)
                                                                        for m in split.members_]
    # ... but every network was trained again on more cells
    assert any(isinstance(m.model, torch.nn.Module) for m in split.members_)
    for again, kept in zip(refit.members_, split.members_, strict=True):
        if isinstance(kept.model, torch.nn.Module):
            assert not torch.equal(next(iter(again.model.state_dict().values())).cpu(),
                                   next(iter(kept.model.state_dict().values())).cpu())
    predicted = refit.predict()
    labels = predicted.columns.to_numpy()[predicted.to_numpy().argmax(1)]
    assert (labels[hidden_cells] == adata.obs["label"].to_numpy()[hidden_cells]).mean() > 0.85
    loaded = sr.RefineAnnotator.load(refit.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(adata), predicted)


def test_many_classes_and_few_labelled_cells_still_get_a_stratified_validation_split():
    # 21 classes x 3 cells: 20% would be 13 validation cells, fewer than the classes (sklearn refuses)
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(63, 5)).astype(np.float32))
    adata.obs["label"] = np.repeat([f"type{k}" for k in range(21)], 3)
    adata.obsm["X_rep"] = rng.normal(size=(63, 4)).astype(np.float32)
    adata.obsm["spatial"] = rng.random((63, 2))
    sr.pp.spatial_neighbors(adata, n_neighs=4)
    model = sr.RefineAnnotator(adata, "label", rep_key="X_rep", n_layers=1).train(max_epochs=3)
    assert model.metrics_["n_val"] == 21
    assert model.metrics_["n_train"] == (63 if model.metrics_["refit"] else 42)  # a refit trains on all labels


def test_sign_encoder_identity_is_the_hop_features_and_projections_keep_hops_apart():
    adata = grid_tissue(side=6)
    hops = torch.from_numpy(neighbor_aggregate(adata.X, adata.obsp["spatial_connectivities"], 2))
    torch.testing.assert_close(SIGNEncoder(adata.n_vars, n_hops=2, hidden=None)(hops), hops)
    encoder = SIGNEncoder(adata.n_vars, n_hops=2, hidden=4, dropout=0.0).eval()
    out = encoder(hops)
    assert out.shape == (adata.n_obs, 12) and encoder.out_dim == 12
    changed = hops.clone()
    changed[:, 2 * adata.n_vars :] += 1.0  # only the 2-hop block changes: only its 4 outputs may change
    torch.testing.assert_close(encoder(changed)[:, :8], out[:, :8])
    with pytest.raises(ValueError, match="hop blocks"):
        encoder(hops[:, :-1])


def test_neighbor_aggregate_by_hand():
    # path graph 0 - 1 - 2 - 3, one feature: values 0, 1, 2, 3
    adjacency = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]]))
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    out = neighbor_aggregate(X, adjacency, n_hops=2)
    hop1 = np.array([1.0, 1.0, 2.0, 2.0])  # mean of neighbours
    hop2 = np.array([1.0, 1.5, 1.5, 2.0])  # mean of neighbours' hop-1 values
    np.testing.assert_allclose(out, np.c_[X[:, 0], hop1, hop2])


def test_k_hop_nodes_on_a_path():
    adjacency = sp.csr_matrix(np.eye(6, k=1) + np.eye(6, k=-1))
    assert k_hop_nodes(adjacency, np.array([0]), 2).tolist() == [0, 1, 2]
    assert k_hop_nodes(adjacency, np.array([3]), 1).tolist() == [2, 3, 4]


def test_subgraph_minibatches_equal_full_batch_outputs():
    adata = grid_tissue(side=16)
    x = torch.from_numpy(adata.X)
    adjacency = adata.obsp["spatial_connectivities"]
    torch.manual_seed(0)
    encoder = GNNEncoder(x.shape[1], hidden=8, n_layers=2).eval()

    class Identity(torch.nn.Module):
        def forward(self, x=None, features=None, edge_index=None):
            return encoder(x, edge_index)

    seeds = np.arange(adata.n_obs)
    full = predict_outputs(Identity(), GraphBatches(adjacency, {"x": x}, seeds, n_hops=2), device="cpu")
    batches = GraphBatches(adjacency, {"x": x}, seeds, n_hops=2, batch_size=20)
    mini = predict_outputs(Identity(), batches, device="cpu")
    order = batches.predict_order()
    torch.testing.assert_close(mini, full[order], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat"])
def test_full_batch_on_the_seeds_neighbourhood_equals_the_whole_graph(conv):
    # a few seeds: the full batch is their (n_hops + 1)-hop subgraph; their outputs must not change
    adata = grid_tissue(side=16)
    x = torch.from_numpy(adata.X)
    adjacency = adata.obsp["spatial_connectivities"]
    torch.manual_seed(0)
    encoder = GNNEncoder(x.shape[1], hidden=8, n_layers=2, conv=conv).eval()
    whole = encoder(x, torch.from_numpy(np.vstack(adjacency.nonzero()[::-1]).astype(np.int64)))
    seeds = np.array([0, 17, 100, 255])
    batch = next(GraphBatches(adjacency, {"x": x}, seeds, n_hops=2).batches())
    assert len(batch["x"]) < adata.n_obs  # a subgraph, not the whole graph
    out = encoder(batch["x"], batch["edge_index"])[batch["mask"]]
    torch.testing.assert_close(out, whole[seeds], atol=1e-5, rtol=1e-5)


def test_spatial_neighbors_respects_slices():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(60, 3)).astype(np.float32))
    adata.obsm["spatial"] = rng.random((60, 2))  # both slices overlap in space
    adata.obs["slice"] = np.repeat(["s1", "s2"], 30)
    sr.pp.spatial_neighbors(adata, n_neighs=4, library_key="slice")
    graph = adata.obsp["spatial_connectivities"]
    rows, cols = graph.nonzero()
    slices = adata.obs["slice"].to_numpy()
    assert len(rows) > 0 and (slices[rows] == slices[cols]).all()
    assert "spatial_neighbors" in adata.uns


def test_spatial_neighbors_bad_coordinates():
    adata = ad.AnnData(np.ones((5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="obsm\\['spatial'\\] is missing"):
        sr.pp.spatial_neighbors(adata)
    adata.obsm["spatial"] = np.array([[0, 0], [1, 1], [np.nan, 2], [3, 3], [4, 4]], dtype=float)
    with pytest.raises(ValueError, match="NaN"):
        sr.pp.spatial_neighbors(adata)


@pytest.mark.parametrize(
    ("strategy", "encoder", "hidden"),
    [("refine", "sign", 64), ("refine", "sign", None), ("refine", "sage", 64), ("neighbor_logreg", "sign", 64),
     ("mlp", "sign", 64)],
)
def test_save_load_round_trip_and_annotate_a_query_with_another_panel(tmp_path, strategy, encoder, hidden):
    adata = grid_tissue(side=16)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy=strategy, encoder=encoder,
                               hidden=hidden, n_layers=1)
    model.train(max_epochs=30)
    model.save(tmp_path / "m")
    loaded = sr.RefineAnnotator.load(tmp_path / "m")
    pd.testing.assert_frame_equal(model.predict(adata), loaded.predict(adata))

    # the same cells with the genes shuffled and one extra gene: identical predictions
    query = adata[:, adata.var_names[::-1]].copy()
    query = ad.concat([query, ad.AnnData(np.ones((query.n_obs, 1), np.float32), obs=query.obs[[]])], axis=1,
                      merge="first")
    query.var_names = [*adata.var_names[::-1], "extra"]
    query.obsm = adata.obsm.copy()
    query.obsp["spatial_connectivities"] = adata.obsp["spatial_connectivities"]
    sr.tl.annotate(query, tmp_path / "m")
    expected = model.predict(adata)
    np.testing.assert_allclose(query.obsm["refine_proba"], expected.to_numpy(), atol=1e-6)
    assert query.uns["refine"]["gene_overlap"]["n_query_only_ignored"] == 1


def test_annotate_fills_missing_genes_and_refuses_small_overlap():
    adata = grid_tissue(side=12, n_genes=10)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="refine", n_layers=1).train(max_epochs=5)
    query = adata[:, adata.var_names[:8]].copy()
    del query.obsp["spatial_connectivities"]  # built from coordinates with the reference's parameters
    sr.tl.annotate(query, model, confidence_threshold=0.99)
    assert query.uns["refine"]["gene_overlap"]["n_missing_filled_with_zeros"] == 2
    assert "spatial_connectivities" in query.obsp
    assert "Unknown" in query.obs["refine"].cat.categories
    too_small = adata[:, adata.var_names[:3]].copy()
    with pytest.raises(ValueError, match="min_gene_overlap"):
        sr.tl.annotate(too_small, model)


def _pseudo_labels_by_hand(proba: np.ndarray, classes, fraction: float) -> pd.Series:
    """In each predicted class, the ceil(fraction * its cells) most probable cells (pandas ranking)."""
    frame = pd.DataFrame({"label": np.asarray(classes)[proba.argmax(1)], "confidence": proba.max(1)})
    rank = frame.groupby("label")["confidence"].rank(method="first", ascending=False)
    size = frame.groupby("label")["label"].transform("size")
    return frame["label"][rank <= np.ceil(fraction * size)]


def test_self_training_refits_on_the_most_confident_unlabelled_cells(monkeypatch, tmp_path):
    plain_linear_head(monkeypatch)
    adata = grid_tissue(side=14)
    hide_labels(adata, 0.7)
    before = adata.copy()
    a = adata.obsp["spatial_connectivities"].toarray()
    features = np.hstack([adata.X, (a / a.sum(1, keepdims=True)) @ adata.X, adata.obsm["X_rep"]])
    labels = adata.obs["train_label"].to_numpy(dtype=object)
    labelled = np.flatnonzero(adata.obs["train_label"].notna().to_numpy())
    unlabelled = np.setdiff1d(np.arange(adata.n_obs), labelled)
    weights = _effective_weights(adata.obs["train_label"])  # fixed from the labelled cells, pseudo-labels or not
    plain = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1).train()
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    model.train(self_training=0.4)
    # by hand: the logistic regression fitted on the split predicts the unlabelled cells; per predicted class the
    # 40 % most probable become pseudo-labels; the refit reads the labelled and the pseudo-labelled cells
    split_train = np.setdiff1d(labelled, model.validation_indices_)
    proba = _logreg_proba(features, labels, split_train, unlabelled, weights)
    pseudo = _pseudo_labels_by_hand(proba, ["niche_A", "niche_B"], 0.4)
    pseudo_cells = unlabelled[pseudo.index.to_numpy()]
    np.testing.assert_array_equal(model.pseudo_labelled_, np.sort(pseudo_cells))
    assert model.metrics_["n_pseudo_labelled"] == len(pseudo_cells) == int(np.ceil(0.4 * (proba[:, 0] > 0.5).sum())
                                                                            + np.ceil(0.4 * (proba[:, 0] < 0.5).sum()))
    with_pseudo = labels.copy()
    with_pseudo[pseudo_cells] = pseudo.to_numpy()
    fit_cells = np.sort(np.r_[labelled, pseudo_cells])
    np.testing.assert_array_equal(model.train_indices_, fit_cells)
    expected = _logreg_proba(features, with_pseudo, fit_cells, np.arange(adata.n_obs), weights)
    np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-4)
    # every choice and its validation metrics on the true labels only: those of the plain training
    np.testing.assert_array_equal(model.validation_indices_, plain.validation_indices_)
    assert np.isin(model.validation_indices_, labelled).all()
    for key in ("val_loss", "val_accuracy", "val_macro_f1"):
        assert model.metrics_[key] == plain.metrics_[key]
    assert model.train_settings_["self_training"] == 0.4 and plain.train_settings_["self_training"] is None
    assert np.all(model.labelled_ == labelled) and len(model.codes_) == len(labelled)  # pseudo-labels not kept
    pd.testing.assert_frame_equal(adata.obs, before.obs)  # the user's labels untouched
    model.save(tmp_path / "self_trained")
    loaded = sr.RefineAnnotator.load(tmp_path / "self_trained")
    pd.testing.assert_frame_equal(loaded.predict(adata), model.predict())
    assert loaded.train_settings_["self_training"] == 0.4 and loaded.pseudo_labelled_ is None


def test_self_training_with_the_network_pseudo_labels_only_train():
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.6)
    labelled = np.flatnonzero(adata.obs["train_label"].notna().to_numpy())
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep").train(self_training=1.0, max_epochs=20)
    unlabelled = np.setdiff1d(np.arange(adata.n_obs), labelled)
    np.testing.assert_array_equal(model.pseudo_labelled_, unlabelled)  # fraction 1: every unlabelled cell
    np.testing.assert_array_equal(model.train_indices_, np.arange(adata.n_obs))
    assert np.isin(model.validation_indices_, labelled).all()
    every_cell_labelled = grid_tissue(side=12)
    every_cell_labelled.obs["train_label"] = every_cell_labelled.obs["label"]
    model = sr.RefineAnnotator(every_cell_labelled, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    plain = model.train().predict()
    assert model.train(self_training=0.5).metrics_["n_pseudo_labelled"] == 0  # nothing to pseudo-label
    pd.testing.assert_frame_equal(model.predict(), plain)


def _two_slices(labelled_fraction: float = 0.6) -> ad.AnnData:
    """Two grid tissues as slices "a" and "b" of one AnnData, labels (some hidden) in "a" only, one kNN graph
    per slice built with library_key."""
    first, second = grid_tissue(side=12, seed=0), grid_tissue(side=12, seed=1)
    hide_labels(first, 1 - labelled_fraction)
    second.obs["train_label"] = np.nan
    both = ad.concat([first, second], label="slice", keys=["a", "b"], index_unique="-")
    both.obsm["X_rep"] = np.vstack([first.obsm["X_rep"], second.obsm["X_rep"]])
    sr.pp.spatial_neighbors(both, n_neighs=4, library_key="slice")
    return both


def test_self_training_auto_pseudo_labels_the_new_slices_cells_only(monkeypatch):
    import spatial_refine.annotator as annotator_module

    adata = _two_slices()
    new_slice = np.flatnonzero((adata.obs["slice"] == "b").to_numpy())
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1).train()
    assert model.train_settings_["self_training"] == annotator_module.SELF_TRAINING_FRACTION == 0.5
    assert np.isin(model.pseudo_labelled_, new_slice).all()
    # half of each predicted class of slice b (rounded up): count the split model's predictions there
    split = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    split.train(refit=False)
    predicted = split.predict().to_numpy()[new_slice].argmax(1)
    assert len(model.pseudo_labelled_) == sum(int(np.ceil(0.5 * np.sum(predicted == c))) for c in np.unique(predicted))
    # an explicit fraction takes every unlabelled cell as a candidate, slice a's too
    every = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1).train(self_training=0.5)
    assert not np.isin(every.pseudo_labelled_, new_slice).all()
    # "auto" does nothing for a baseline, without refit, or when the graph records no slices
    for strategy, refit in (("neighbor_logreg", True), ("refine", "linear")):
        other = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy=strategy, hidden=None, n_layers=1)
        assert other.train(refit=refit).pseudo_labelled_ is None
        assert other.train_settings_["self_training"] is None
    adata.uns["spatial_neighbors"]["params"].pop("library_key")
    alone = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1).train()
    assert alone.pseudo_labelled_ is None and "n_pseudo_labelled" not in alone.metrics_
    # at most SELF_TRAINING_MAX_CELLS pseudo-labels, each predicted class keeping its share (rounded down)
    monkeypatch.setattr(annotator_module, "SELF_TRAINING_MAX_CELLS", 20)
    capped = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1).train(self_training=1.0)
    wanted = np.bincount(split.predict().to_numpy()[np.setdiff1d(np.arange(adata.n_obs), split.labelled_)].argmax(1))
    assert len(capped.pseudo_labelled_) == sum(w * 20 // wanted.sum() for w in wanted) <= 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"self_training": 0.0}, "fraction in"),
        ({"self_training": 1.5}, "fraction in"),
        ({"self_training": True}, "fraction in"),
        ({"self_training": "half"}, "fraction in"),
        ({"self_training": "Auto"}, "fraction in"),
        ({"self_training": 0.5, "refit": False}, "needs refit=True"),
        ({"self_training": 0.5, "refit": "linear"}, "needs refit=True"),
    ],
)
def test_self_training_bad_values_are_refused(options, message):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.5)
    with pytest.raises(ValueError, match=message):
        sr.RefineAnnotator(adata, "train_label", rep_key="X_rep").train(**options)


def test_tl_refine_writes_only_documented_keys(tmp_path):
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.4)
    before = adata.copy()
    sr.tl.refine(adata, "train_label", rep_key="X_rep", train_kwargs={"max_epochs": 5})
    assert set(adata.obs) - set(before.obs) == {"refine", "refine_confidence"}
    assert set(adata.obsm) - set(before.obsm) == {"refine_proba"}
    assert set(adata.uns) - set(before.uns) == {"refine"}
    assert set(adata.obsp) == set(before.obsp)
    np.testing.assert_array_equal(adata.X, before.X)
    pd.testing.assert_frame_equal(adata.obs[list(before.obs)], before.obs)
    assert adata.obs["refine"].dtype == "category"
    np.testing.assert_allclose(adata.obsm["refine_proba"].sum(1), 1.0, atol=1e-5)
    assert list(adata.uns["refine"]["classes"]) == ["niche_A", "niche_B"]
    assert 0.0 <= adata.uns["refine"]["metrics"]["val_macro_f1"] <= 1.0
    assert set(str(adata.uns["refine"]["hidden"]).split("+")) <= {"64", "linear", "linear[hops]", "linear[rep]"}
    assert adata.uns["refine"]["class_weight"] == "effective"  # the default, recorded
    sr.tl.refine(adata, "train_label", strategy="logreg", key_added="plain", train_kwargs={"class_weight": None})
    assert adata.uns["plain"]["class_weight"] == "None"
    adata.write_h5ad(tmp_path / "annotated.h5ad")  # every uns value is one h5ad stores


def test_training_is_reproducible():
    adata = grid_tissue(side=12)
    hide_labels(adata, 0.4)
    p1 = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=10).predict()
    p2 = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=10).predict()
    pd.testing.assert_frame_equal(p1, p2)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda a: a.obsm.pop("X_rep"), {}, "frozen representation"),
        (lambda a: a.obsp.pop("spatial_connectivities"), {}, "spatial graph"),
        (lambda a: a.X.__setitem__((0, 0), np.nan), {}, "NaN"),
        (lambda a: None, {"labels_key": "nope"}, "not a column"),
        (lambda a: a.obs.__setitem__("train_label", ["x"] + ["y"] * (a.n_obs - 1)), {}, "single labelled cell"),
        (lambda a: a.obs.__setitem__("train_label", np.nan), {}, "no labelled cell"),
        (lambda a: None, {"strategy": "magic"}, "Unknown strategy"),
        (lambda a: None, {"encoder": "transformer"}, "Unknown encoder"),
        (lambda a: None, {"encoder": "sage", "hidden": None}, "only possible with encoder='sign'"),
    ],
)
def test_bad_input_gets_a_clear_error(mutate, kwargs, message):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    mutate(adata)
    options = {"labels_key": "train_label", "rep_key": "X_rep", **kwargs}
    with pytest.raises(ValueError, match=message):
        sr.RefineAnnotator(adata, options.pop("labels_key"), **options).train(max_epochs=2)


@pytest.mark.parametrize("options", [{"hidden": 64, "n_layers": 1}, {"strategy": "logreg"}])
def test_models_saved_in_format_1_still_load(tmp_path, options):
    # format 1 (before the averaged pair): one model, its weights under "model.", its shape at the top level
    from safetensors.numpy import load_file, save_file

    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", **options).train(max_epochs=5)
    saved = model.save(tmp_path / "v2")
    config = json.loads((saved / "config.json").read_text())
    (member,) = config.pop("members")
    config.update(format_version=1, **member)
    old = tmp_path / "v1"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    arrays = {k.replace("member0.", "model."): v for k, v in load_file(str(saved / "model.safetensors")).items()}
    save_file(arrays, str(old / "model.safetensors"))
    loaded = sr.RefineAnnotator.load(old)
    assert (loaded.hidden_, loaded.n_layers_) == (model.hidden_, model.n_layers_)
    pd.testing.assert_frame_equal(loaded.predict(adata), model.predict())


def test_depth_folds_choose_the_logistic_regression_depth_by_cross_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(depth_folds=4, random_state=3)
    # independently: hop features [x, P x, P^2 x, P^3 x] with P the binary neighbour mean, scikit-learn's
    # cross-validated probabilities of the same folds, the depth of lowest log-loss
    binary = (adata.obsp["spatial_connectivities"] > 0).astype(float).tolil()
    binary.setdiag(0)
    binary = binary.tocsr()
    P = binary.multiply(1.0 / np.asarray(binary.sum(1))).tocsr()
    blocks = [adata.X]
    for _ in range(3):
        blocks.append(P @ blocks[-1])
    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    codes = pd.Categorical(adata.obs["train_label"].iloc[labelled], categories=model.classes_).codes
    folds = StratifiedKFold(4, shuffle=True, random_state=3)
    # the default weights, fixed from every labelled cell (the same in each fold), by class code
    by_name = _effective_weights(adata.obs["train_label"])
    weights = {code: by_name[str(name)] for code, name in enumerate(model.classes_)}
    losses = {}
    for depth in range(4):
        features = np.hstack(blocks[: depth + 1])[labelled]
        logreg = LogisticRegression(max_iter=1000, class_weight=weights)
        proba = cross_val_predict(make_pipeline(StandardScaler(), logreg), features, codes, cv=folds,
                                  method="predict_proba")
        losses[depth] = -np.log(proba[np.arange(len(codes)), codes]).mean()
    assert model.metrics_["n_layers_tried"] == pytest.approx(losses, abs=1e-3)
    assert model.n_layers_ == min(losses, key=losses.get)
    # then refitted on every label at that depth, as without cross-validation
    expected = _logreg_proba(np.hstack(blocks[: model.n_layers_ + 1]), adata.obs["train_label"].astype(str).to_numpy(),
                             labelled, np.arange(adata.n_obs), by_name)
    np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-4)
    # None chooses on the split: the depth of lowest loss on the validation cells, by scikit-learn
    split = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(depth_folds=None, random_state=3)
    val = split.validation_indices_
    fit = np.setdiff1d(labelled, val)
    val_codes = pd.Categorical(adata.obs["train_label"].iloc[val], categories=split.classes_).codes
    split_losses = {}
    for depth in range(4):
        proba = _logreg_proba(np.hstack(blocks[: depth + 1]), adata.obs["train_label"].astype(str).to_numpy(), fit, val,
                              by_name)
        split_losses[depth] = -np.log(proba[np.arange(len(val)), val_codes]).mean()
    assert split.metrics_["n_layers_tried"] == pytest.approx(split_losses, abs=1e-3)
    assert split.train_settings_["depth_folds"] is None


def test_linear_refine_chooses_the_representation_scale(monkeypatch, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    # by default REFINE's linear head tries five scales; the choice is reported and kept in uns by sr.tl.refine
    annotated, default = sr.tl.refine(adata, "train_label", rep_key="X_rep", model_kwargs={"hidden": None, "n_layers": 1},
                                      copy=True)
    assert list(default.metrics_["rep_scale_tried"]) == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert annotated.uns["refine"]["metrics"]["rep_scale"] == default.metrics_["rep_scale"]
    scales = (0.25, 1.0, 3.0)
    plain_linear_head(monkeypatch, scales)
    # independently: [x, P x, rep] standardised, the representation's columns times s, scikit-learn's logistic
    # regression with the default weights; cross-validated on the same folds, then refitted on every label
    a = adata.obsp["spatial_connectivities"].toarray()
    features = np.hstack([adata.X, (a / a.sum(1, keepdims=True)) @ adata.X, adata.obsm["X_rep"]])
    n_rep = adata.obsm["X_rep"].shape[1]
    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    classes = np.array(sorted(adata.obs["train_label"].dropna().unique()))
    codes = np.searchsorted(classes, adata.obs["label"].to_numpy())  # by class code: what cross_val_predict fits
    by_code = {c: w for c, w in enumerate(_effective_weights(adata.obs["train_label"])[k] for k in classes)}

    def head(scale):
        column_scale = np.r_[np.ones(features.shape[1] - n_rep), np.full(n_rep, scale)]
        times = FunctionTransformer(lambda z: z * column_scale)
        return make_pipeline(StandardScaler(), times, LogisticRegression(max_iter=1000, class_weight=by_code))

    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    model.train(depth_folds=4, random_state=3)
    folds = StratifiedKFold(4, shuffle=True, random_state=3)
    losses = {}
    for scale in scales:
        proba = cross_val_predict(head(scale), features[labelled], codes[labelled], cv=folds, method="predict_proba")
        losses[scale] = -np.log(proba[np.arange(len(labelled)), codes[labelled]]).mean()
    assert model.metrics_["rep_scale_tried"] == pytest.approx(losses, abs=1e-3)
    chosen = min(losses, key=losses.get)
    assert model.metrics_["rep_scale"] == chosen
    assert chosen != 1.0  # the representation is noise here: a heavier penalty on it wins, so the test tells apart
    assert list(model.classes_) == list(classes)
    expected = head(chosen).fit(features[labelled], codes[labelled]).predict_proba(features)
    np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-4)
    # the scale is folded into the saved weights: the loaded model predicts the same
    loaded = sr.RefineAnnotator.load(model.save(tmp_path / "scaled"))
    pd.testing.assert_frame_equal(loaded.predict(adata), model.predict())
    # on the split without cross-validation: each scale fitted on the training cells, scored on the validation cells
    split = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    split.train(depth_folds=None, random_state=3, refit=False)
    val = split.validation_indices_
    fit = np.setdiff1d(labelled, val)
    split_losses = {}
    for scale in scales:
        proba = head(scale).fit(features[fit], codes[fit]).predict_proba(features[val])
        split_losses[scale] = -np.log(proba[np.arange(len(val)), codes[val]]).mean()
    assert split.metrics_["rep_scale_tried"] == pytest.approx(split_losses, abs=1e-3)
    chosen = min(split_losses, key=split_losses.get)
    expected = head(chosen).fit(features[fit], codes[fit]).predict_proba(features)
    np.testing.assert_allclose(split.predict().to_numpy(), expected, atol=1e-4)
    # models whose input has no representation block choose no scale
    gnn = sr.RefineAnnotator(adata, "train_label", strategy="gnn", hidden=None, n_layers=1).train(random_state=3)
    assert "rep_scale_tried" not in gnn.metrics_


def test_temperature_scale_minimises_the_log_loss_of_the_scaled_logits():
    from scipy.special import softmax
    from sklearn.metrics import log_loss

    from spatial_refine.annotator import _temperature_scale

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, size=(20_000, 4))
    proba = softmax(logits, axis=1)
    # labels drawn from softmax(2 z): the probabilities softmax(z) are too unsure by a factor 2 on the logits;
    # drawn from softmax(z): calibrated already, the factor is 1 (up to sampling)
    for truth_factor in (2.0, 1.0, 0.5):
        truth = softmax(truth_factor * logits, axis=1)
        codes = (rng.random((len(truth), 1)) > truth.cumsum(1)).sum(1)
        factor = _temperature_scale(proba.astype(np.float32), codes)
        assert factor == pytest.approx(truth_factor, rel=0.05)
        # and the minimum by brute force over a fine grid of factors
        grid = np.exp(np.linspace(np.log(0.1), np.log(20), 2001))
        losses = [log_loss(codes, softmax(g * np.log(proba), axis=1), labels=range(4)) for g in grid]
        assert factor == pytest.approx(grid[int(np.argmin(losses))], rel=0.01)


def test_linear_refine_chooses_its_penalty_by_macro_f1_and_scales_its_logits(monkeypatch, tmp_path):
    from scipy.optimize import minimize_scalar
    from scipy.special import softmax
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import spatial_refine.annotator as annotator_module

    adata = grid_tissue(side=12)
    hide_labels(adata, 0.8)  # 38 labels: a stronger penalty than C = 1 wins
    # by default REFINE's linear members try five penalties each (reported per member)
    default = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", n_layers=1).train(max_epochs=5)
    assert set(default.metrics_["penalty"]) == {"linear", "linear[hops]", "linear[rep]"}
    assert list(default.metrics_["penalty_tried"]["linear[hops]"]) == [0.01, 0.03, 0.1, 0.3, 1.0]
    penalties = (0.01, 0.1, 0.3, 1.0)
    monkeypatch.setattr(annotator_module, "REP_SCALES", (1.0,))
    monkeypatch.setattr(annotator_module, "LINEAR_CS", penalties)
    # independently: [x, P x, rep] standardised, scikit-learn's logistic regression at each C with the default
    # weights, cross-validated on the same folds; the C of highest out-of-fold macro-F1 (ties: the larger)
    a = adata.obsp["spatial_connectivities"].toarray()
    features = np.hstack([adata.X, (a / a.sum(1, keepdims=True)) @ adata.X, adata.obsm["X_rep"]])
    labelled = np.flatnonzero(adata.obs["train_label"].notna())
    classes = np.array(sorted(adata.obs["train_label"].dropna().unique()))
    codes = np.searchsorted(classes, adata.obs["label"].to_numpy())
    by_code = {c: w for c, w in enumerate(_effective_weights(adata.obs["train_label"])[k] for k in classes)}

    def head(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, class_weight=by_code))

    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    model.train(depth_folds=4, random_state=3, smoothing=None)
    folds = StratifiedKFold(4, shuffle=True, random_state=3)
    oof = {c: cross_val_predict(head(c), features[labelled], codes[labelled], cv=folds, method="predict_proba")
           for c in penalties}
    scores = {c: f1_score(codes[labelled], p.argmax(1), average="macro") for c, p in oof.items()}
    assert model.metrics_["penalty_tried"]["linear"] == pytest.approx(scores, abs=1e-6)
    chosen = max(sorted(penalties, reverse=True), key=scores.get)
    assert model.metrics_["penalty"] == {"linear": chosen}
    assert chosen == 0.3 and scores[0.1] == scores[0.3]  # a tie, to the larger C; and not the default C = 1
    # the logits' factor minimises the out-of-fold log-loss at that C; refitted on every label, logits times it
    log_oof = np.log(oof[chosen])
    factor = np.exp(minimize_scalar(lambda t: log_loss(codes[labelled], softmax(np.exp(t) * log_oof, axis=1)),
                                    bounds=(-3, 3), method="bounded").x)
    assert factor > 1.1  # the penalised head is too unsure: scaling moves its probabilities
    fitted = head(chosen).fit(features[labelled], codes[labelled])
    expected = softmax(factor * fitted.decision_function(features)[:, None] * np.array([-0.5, 0.5]), axis=1) \
        if len(classes) == 2 else softmax(factor * fitted.decision_function(features), axis=1)
    np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=2e-3)
    assert not np.allclose(model.predict().to_numpy(), fitted.predict_proba(features), atol=2e-2)
    # both are folded into the saved weights: the loaded model predicts the same
    loaded = sr.RefineAnnotator.load(model.save(tmp_path / "penalised"))
    pd.testing.assert_frame_equal(loaded.predict(adata), model.predict())
    # without cross-validation the head keeps C = 1 and its logits; the baselines never choose
    split = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", hidden=None, n_layers=1)
    split.train(depth_folds=None, random_state=3, smoothing=None)
    assert "penalty" not in split.metrics_
    np.testing.assert_allclose(split.predict().to_numpy(), head(1.0).fit(features[labelled], codes[labelled])
                               .predict_proba(features), atol=1e-4)
    logreg = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(random_state=3)
    assert "penalty" not in logreg.metrics_


def test_depth_folds_auto_cross_validates_small_label_sets_only(monkeypatch):
    import spatial_refine.annotator as annotator_module

    adata = grid_tissue(side=12)
    hide_labels(adata, 0.3)
    n_labelled = int(adata.obs["train_label"].notna().sum())
    default = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(random_state=3)
    assert default.train_settings_["depth_folds"] == 5
    explicit = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(depth_folds=5, random_state=3)
    assert default.metrics_["n_layers_tried"] == explicit.metrics_["n_layers_tried"]
    # above the limit: the split chooses, as with depth_folds=None
    monkeypatch.setattr(annotator_module, "CV_DEPTH_MAX_LABELLED", n_labelled - 1)
    large = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(random_state=3)
    split = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(depth_folds=None, random_state=3)
    assert large.train_settings_["depth_folds"] is None
    assert large.metrics_["n_layers_tried"] == split.metrics_["n_layers_tried"]
    assert default.metrics_["n_layers_tried"] != split.metrics_["n_layers_tried"]  # the two choices are told apart
    for bad in (1, 0, 2.5, True, "five"):
        with pytest.raises(ValueError, match="depth_folds"):
            sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(depth_folds=bad)


def test_logistic_regressions_are_fitted_with_one_blas_thread(monkeypatch):
    # numpy's and scipy's OpenBLAS pools contend at every L-BFGS step (benchmarks/results/blas_threads.md)
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    fit, seen = LogisticRegression.fit, []

    def recording_fit(self, *args, **kwargs):
        seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.3)
    sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train()
    assert seen and all(threads == {1} for threads in seen)


def test_dict_class_weights_reach_the_networks(tmp_path):
    # a network's validation loss with class_weight={"niche_A": 3}: sum w[y] (-log p[y]) / sum w[y], w = (3, 1)
    adata = grid_tissue()
    hide_labels(adata, 0.5)
    gnn = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy="gnn", n_layers=1)
    gnn.train(max_epochs=10, class_weight={"niche_A": 3.0}, refit="linear")  # predicts with the split's model
    codes = pd.Categorical(adata.obs["train_label"], categories=gnn.classes_).codes[gnn.validation_indices_]
    w = np.where(gnn.classes_ == "niche_A", 3.0, 1.0)[codes]
    proba = gnn.predict().to_numpy()[gnn.validation_indices_, codes]
    assert gnn.history_.best_val_loss == pytest.approx(np.sum(w * -np.log(proba)) / np.sum(w), rel=1e-4)
    loaded = sr.RefineAnnotator.load(gnn.save(tmp_path / "dict_weights"))  # the settings stay JSON
    np.testing.assert_array_equal(loaded.predict(adata).to_numpy(), gnn.predict().to_numpy())


def test_effective_number_weights_are_the_formula_and_reach_the_fits():
    # by hand: w_c = (1 - 0.99) / (1 - 0.99 ** n_c), scaled to mean 1 over the labelled cells
    adata = grid_tissue(side=12)
    labels = adata.obs["label"].astype(object).copy()
    labels.iloc[np.flatnonzero(labels == "niche_A")[10:]] = np.nan  # 10 labelled cells of niche_A
    adata.obs["train_label"] = labels
    counts = labels.value_counts()
    raw = {c: (1 - 0.99) / (1 - 0.99 ** n) for c, n in counts.items()}
    scale = counts.sum() / sum(raw[c] * n for c, n in counts.items())
    by_hand = {c: w * scale for c, w in raw.items()}
    assert by_hand["niche_A"] > by_hand["niche_B"]  # the rare class weighs more
    effective = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight="effective")
    manual = sr.RefineAnnotator(adata, "train_label", strategy="logreg").train(class_weight=by_hand)
    np.testing.assert_allclose(effective.predict().to_numpy(), manual.predict().to_numpy(), atol=1e-6)
    assert effective.train_settings_["class_weight"] == "effective"
    # the default, for the networks too: same weights as the dict, so the same trained GNN
    hide_labels(adata, 0.5)
    default = sr.RefineAnnotator(adata, "train_label", strategy="gnn", n_layers=1).train(max_epochs=5)
    gnn = sr.RefineAnnotator(adata, "train_label", strategy="gnn", n_layers=1)
    gnn.train(max_epochs=5, class_weight=_effective_weights(adata.obs["train_label"]))
    assert default.train_settings_["class_weight"] == "effective"
    np.testing.assert_allclose(default.predict().to_numpy(), gnn.predict().to_numpy(), atol=1e-6)


# --------------------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
@pytest.mark.parametrize(("encoder", "hidden"), [("sign", "auto"), ("sage", 64)])
def test_cuda_training_predicts_the_same_on_every_call_device_and_round_trip(tmp_path, encoder, hidden):
    # predictions are float32 on every device: a GPU's atomic scatter order moves them by float rounding only
    adata = grid_tissue(side=16)
    hide_labels(adata, 0.3)
    model = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", encoder=encoder, hidden=hidden, n_layers=1)
    model.train(max_epochs=20, device="cuda")
    on_gpu = model.predict(device="cuda")
    pd.testing.assert_frame_equal(model.predict(device="cuda"), on_gpu, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(model.predict(device="cpu"), on_gpu, rtol=1e-5, atol=1e-6)
    for member in model.members_:  # the networks stay on the CPU between calls
        if isinstance(member.model, torch.nn.Module):
            assert {p.device.type for p in member.model.parameters()} == {"cpu"}
    loaded = sr.RefineAnnotator.load(model.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(adata, device="cuda"), on_gpu, rtol=1e-5, atol=1e-6)


def _smoothed_by_hand(proba: np.ndarray, adjacency: sp.spmatrix, alpha: float, steps: int) -> np.ndarray:
    """The closed form of ``steps`` propagation steps from ``Z = p``: ``(1 - a) sum_{k<K} a^k P^k p + a^K P^K p``,
    ``P`` the dense neighbour mean (a node without neighbours its own)."""
    dense = (sp.csr_matrix(adjacency).toarray() != 0).astype(float)
    np.fill_diagonal(dense, 0)
    degree = dense.sum(1)
    dense[degree == 0, degree == 0] = 1.0
    mean = dense / dense.sum(1, keepdims=True)
    total = sum((1 - alpha) * alpha**k * np.linalg.matrix_power(mean, k) for k in range(steps))
    return (total + alpha**steps * np.linalg.matrix_power(mean, steps)) @ proba


def test_smooth_probabilities_is_the_personalised_pagerank_sum():
    from spatial_refine.refine.neighbors import smooth_probabilities

    rng = np.random.default_rng(0)
    upper = np.triu(rng.random((9, 9)) < 0.35, 1)
    upper[8] = upper[:, 8] = False  # node 8: isolated
    adjacency = sp.csr_matrix(upper | upper.T)
    proba = rng.dirichlet(np.ones(3), size=9)
    for alpha, steps in ((0.5, 1), (0.9, 10), (0.3, 4)):
        smoothed = smooth_probabilities(proba, adjacency, alpha, steps)
        np.testing.assert_allclose(smoothed, _smoothed_by_hand(proba, adjacency, alpha, steps), atol=1e-6)
        np.testing.assert_allclose(smoothed.sum(1), 1.0, atol=1e-6)  # still probabilities
        np.testing.assert_allclose(smoothed[8], proba[8], atol=1e-7)  # no neighbour: its own prediction
    # one step by hand on the path 0 - 1 - 2: node 1 keeps half of its own and takes half of its neighbours' mean
    path = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(smooth_probabilities(p, path, 0.5, 1), [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(smooth_probabilities(proba, adjacency, 0.0), proba.astype(np.float32))
    for alpha, steps, shape, message in ((1.0, 10, (9, 3), "alpha"), (-0.1, 10, (9, 3), "alpha"),
                                         (0.5, -1, (9, 3), "steps"), (0.5, 10, (8, 3), "n_nodes")):
        with pytest.raises(ValueError, match=message):
            smooth_probabilities(np.full(shape, 1 / 3), adjacency, alpha, steps)


def _grid_adjacency(side: int) -> sp.csr_matrix:
    n = side * side
    cols = np.arange(n) % side
    pairs = [(i, i + 1) for i in range(n) if cols[i] < side - 1] + [(i, i + side) for i in range(n - side)]
    i, j = np.array(pairs).T
    return sp.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()


def _labelled_grid(label: np.ndarray, signal: np.ndarray, side: int, seed: int) -> ad.AnnData:
    """A side x side grid whose gene 0 carries ``signal`` plus unit noise (other genes and the representation:
    noise); 30 % of the labels kept in ``train_label``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(side * side, 4)).astype(np.float32)
    X[:, 0] += signal
    adata = ad.AnnData(X, obs=pd.DataFrame({"label": label}, index=[f"c{k}" for k in range(side * side)]))
    adata.var_names = [f"g{k}" for k in range(4)]
    adata.obsm["X_rep"] = rng.normal(size=(side * side, 4)).astype(np.float32)
    adata.obsp["spatial_connectivities"] = _grid_adjacency(side)
    hide_labels(adata, 0.7, seed)
    return adata


def _region_tissue(side: int = 24, seed: int = 0) -> ad.AnnData:
    """Three vertical bands (regions) whose cells express gene 0 at 0, 1, 2 under unit noise: a cell alone is
    often misread, its neighbours share its label."""
    band = np.minimum(3 * (np.arange(side * side) % side) // side, 2)
    return _labelled_grid(np.array(["left", "middle", "right"])[band], band.astype(np.float32), side, seed)


def _cell_type_tissue(side: int = 24, seed: int = 0) -> ad.AnnData:
    """Two cell types at random positions, gene 0 at 0 or 3 under unit noise: neighbours say nothing of a cell."""
    kind = np.random.default_rng(seed + 1).integers(0, 2, side * side)
    return _labelled_grid(np.array(["A", "B"])[kind], 3.0 * kind, side, seed)


def _hidden_accuracy(model, adata) -> float:
    proba = model.predict()
    hidden = adata.obs["train_label"].isna().to_numpy()
    predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
    return float((predicted[hidden] == adata.obs["label"].to_numpy()[hidden]).mean())


def test_smoothing_auto_is_chosen_on_the_split_models_validation_loss(tmp_path):
    from spatial_refine.annotator import SMOOTHING_ALPHAS, SMOOTHING_STEPS
    from spatial_refine.refine.ensemble import log_loss

    adata = _region_tissue()
    before = adata.copy()
    options = {"rep_key": "X_rep", "hidden": None, "n_layers": 1}
    model = sr.RefineAnnotator(adata, "train_label", **options).train(smoothing="auto")
    plain = sr.RefineAnnotator(adata, "train_label", **options).train(smoothing=None)
    split = sr.RefineAnnotator(adata, "train_label", **options).train(refit=False, smoothing=None)
    # by hand: the split's model predicts every cell, each alpha smooths that, scored on the validation cells
    codes = pd.Categorical(adata.obs["label"], categories=model.classes_).codes[model.validation_indices_]
    adjacency = adata.obsp["spatial_connectivities"]
    losses = {a: log_loss(_smoothed_by_hand(split.predict().to_numpy(), adjacency, a, SMOOTHING_STEPS)
                          [model.validation_indices_], codes) for a in SMOOTHING_ALPHAS}
    tried = model.metrics_["smoothing_tried"]
    assert list(tried) == list(SMOOTHING_ALPHAS)
    np.testing.assert_allclose([tried[a] for a in SMOOTHING_ALPHAS], [losses[a] for a in SMOOTHING_ALPHAS], rtol=1e-5)
    assert model.smoothing_ == model.metrics_["smoothing"] == min(losses, key=losses.get) > 0
    # the refitted model's predictions, smoothed with that alpha: the unsmoothed ones are the plain model's
    expected = _smoothed_by_hand(plain.predict().to_numpy(), adjacency, model.smoothing_, SMOOTHING_STEPS)
    np.testing.assert_allclose(model.predict().to_numpy(), expected, atol=1e-5)
    assert _hidden_accuracy(model, adata) > _hidden_accuracy(plain, adata) + 0.05  # regions: the neighbours help
    assert plain.smoothing_ == 0.0 and "smoothing_tried" not in plain.metrics_
    assert model.train_settings_["smoothing"] == "auto" and plain.train_settings_["smoothing"] is None
    for key in ("val_loss", "val_accuracy", "val_macro_f1"):  # metrics_: those before smoothing
        assert model.metrics_[key] == plain.metrics_[key]
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    model.save(tmp_path / "smoothed")
    loaded = sr.RefineAnnotator.load(tmp_path / "smoothed")
    assert loaded.smoothing_ == model.smoothing_
    pd.testing.assert_frame_equal(loaded.predict(adata), model.predict())
    config = json.loads((tmp_path / "smoothed" / "config.json").read_text())
    del config["smoothing"]  # saved before smoothing existed: none
    (tmp_path / "smoothed" / "config.json").write_text(json.dumps(config))
    pd.testing.assert_frame_equal(sr.RefineAnnotator.load(tmp_path / "smoothed").predict(adata), plain.predict())


def test_smoothing_auto_leaves_cell_types_alone_and_baselines_unsmoothed():
    adata = _cell_type_tissue()
    options = {"rep_key": "X_rep", "hidden": None, "n_layers": 1}
    model = sr.RefineAnnotator(adata, "train_label", **options).train(smoothing="auto")
    assert model.smoothing_ == 0.0  # smoothing only blurs a label the neighbours do not share
    assert model.metrics_["smoothing_tried"][0.0] == min(model.metrics_["smoothing_tried"].values())
    plain = sr.RefineAnnotator(adata, "train_label", **options).train(smoothing=None)
    pd.testing.assert_frame_equal(model.predict(), plain.predict())
    # "auto" smooths REFINE only; a number smooths any strategy with a graph
    regions = _region_tissue()
    baseline = sr.RefineAnnotator(regions, "train_label", strategy="neighbor_logreg", n_layers=1)
    assert baseline.train(smoothing="auto").smoothing_ == 0.0 and "smoothing" not in baseline.metrics_
    unsmoothed = baseline.predict().to_numpy()
    assert baseline.train(smoothing=0.5).smoothing_ == 0.5
    np.testing.assert_allclose(baseline.predict().to_numpy(),
                               _smoothed_by_hand(unsmoothed, regions.obsp["spatial_connectivities"], 0.5, 10), atol=1e-5)


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("refine", {"smoothing": 1.0}, "alpha in"),
        ("refine", {"smoothing": -0.2}, "alpha in"),
        ("refine", {"smoothing": True}, "alpha in"),
        ("refine", {"smoothing": "Auto"}, "alpha in"),
        ("logreg", {"smoothing": 0.5}, "does not read"),
        ("linear_probe", {"smoothing": 0.3}, "does not read"),
    ],
)
def test_smoothing_bad_values_are_refused(strategy, options, message):
    adata = grid_tissue(side=8)
    hide_labels(adata, 0.5)
    with pytest.raises(ValueError, match=message):
        sr.RefineAnnotator(adata, "train_label", rep_key="X_rep", strategy=strategy).train(**options)
