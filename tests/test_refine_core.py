"""The generic REFINE core: strategies, training loop, estimators, persistence, bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch import nn

from spatial_refine.encoders import MLPEncoder
from spatial_refine.refine import (
    FrozenSource,
    History,
    RefineClassifier,
    RefineRegressor,
    TensorBatches,
    TrainConfig,
    build_strategy,
    class_weights,
    fit,
    seeded,
)
from spatial_refine.refine.strategies import FeatureStandardizer, LoRALinear, _GradientReversal
from spatial_refine.refine.synthetic import make_transfer_task

N_IN, N_FEAT, N_CLASSES = 12, 8, 3


def small_source() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(123)
    features = nn.Sequential(
        nn.Linear(N_IN, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, N_FEAT), nn.ReLU()
    )
    head = nn.Linear(N_FEAT, N_CLASSES)
    return features, head


def toy_data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, size=n)
    X[np.arange(n), y] += 2.0  # learnable signal
    return X, y


# ------------------------------------------------------------------------------------------------
# The claims of the method on tasks with known structure


@pytest.fixture(scope="module")
def synthetic_scores():
    """Test accuracy per case and strategy, 5 seeds, 500 training samples (few-sample regime)."""
    scores = {}
    for case in ("aligned", "noise", "mixed"):
        for seed in range(5):
            train = make_transfer_task(case, 500, random_state=seed)
            test = make_transfer_task(case, 2000, random_state=1000 + seed)
            for strategy in ("notrans", "linear_probe", "refine"):
                # on the CPU: 45 small fits, which on a GPU shared by test workers exceeded 120 s (2026-12-04)
                clf = RefineClassifier(strategy, random_state=seed, device="cpu").fit(
                    train.X, train.y, source_features=train.features
                )
                acc = clf.score(test.X, test.y, source_features=test.features)
                scores.setdefault((case, strategy), []).append(acc)
    return {key: float(np.mean(v)) for key, v in scores.items()}


TOLERANCE = 0.03  # absolute accuracy, on the mean over 5 seeds


@pytest.mark.parametrize("case", ["aligned", "noise", "mixed"])
def test_refine_no_worse_than_best_of_notrans_and_probe(synthetic_scores, case):
    best = max(synthetic_scores[(case, "notrans")], synthetic_scores[(case, "linear_probe")])
    assert synthetic_scores[(case, "refine")] >= best - TOLERANCE


def test_linear_probe_collapses_on_noise_features(synthetic_scores):
    # negative transfer: the probe is at chance while training from scratch learns the task
    assert synthetic_scores[("noise", "linear_probe")] < 0.56
    assert synthetic_scores[("noise", "notrans")] > 0.75


def test_refine_beats_notrans_when_features_are_aligned(synthetic_scores):
    assert synthetic_scores[("aligned", "refine")] > synthetic_scores[("aligned", "notrans")] + 0.03


def test_regression_uses_the_square_loss_and_transfers():
    train = make_transfer_task("aligned", 300, random_state=0)
    test = make_transfer_task("aligned", 2000, random_state=1)
    r2 = {
        s: RefineRegressor(s, random_state=0)
        .fit(train.X, train.y_continuous, source_features=train.features)
        .score(test.X, test.y_continuous, source_features=test.features)
        for s in ("notrans", "refine")
    }
    assert r2["refine"] > 0.9  # the target is linear in the features
    assert r2["refine"] > r2["notrans"]


# ------------------------------------------------------------------------------------------------
# Every strategy: what trains is exactly what it claims, and the source is untouched

EXPECTED_TRAINABLE = {
    "notrans": lambda n: n.startswith(("encoder.", "head.")),
    "linear_probe": lambda n: n in ("head.weight", "head.bias"),
    "adapter": lambda n: n.startswith(("adapter.", "head.")),
    "finetune": lambda n: n.startswith(("backbone.", "head.")),
    "lora": lambda n: n.endswith(("lora_a", "lora_b")) or n.startswith("head."),
    "dann_gate": lambda n: n.endswith(("lora_a", "lora_b")) or n.startswith(("head.", "discriminator.")),
    "distill": lambda n: n.startswith(("encoder.", "head.")),
    "refine": lambda n: n.startswith(("encoder.", "head.")),
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED_TRAINABLE))
def test_strategy_trains_only_its_parameters_and_leaves_source_untouched(strategy):
    features, head = small_source()
    features.train()  # the user's module is in train mode: it must come back so
    before = {k: v.clone() for k, v in {**features.state_dict(), **head.state_dict()}.items()}
    grads_before = [p.requires_grad for p in features.parameters()]
    X, y = toy_data()
    source = FrozenSource(features, head)
    with torch.no_grad(), seeded(0):
        F = features.eval()(torch.from_numpy(X))
    features.train()
    model = build_strategy(
        strategy, n_outputs=N_CLASSES, encoder=MLPEncoder(N_IN, (16,)), source=source, feature_dim=N_FEAT
    )
    names = [n for n, _ in model.trainable_named_parameters()]
    assert names, strategy
    assert all(EXPECTED_TRAINABLE[strategy](n) for n in names), names
    if strategy in ("lora", "dann_gate"):
        assert sum(n.endswith(("lora_a", "lora_b")) for n in names) == 2
    initial = {n: p.detach().clone() for n, p in model.trainable_named_parameters()}

    data = TensorBatches({"x": torch.from_numpy(X), "features": F, "y": torch.from_numpy(y)}, batch_size=32, shuffle=True)
    model.fit_feature_statistics(F)
    fit(model, data, config=TrainConfig(max_epochs=3, device="cpu"))

    changed = {n for n, p in model.trainable_named_parameters() if not torch.equal(p.detach(), initial[n])}
    assert "head.weight" in changed
    after = {**features.state_dict(), **head.state_dict()}
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{strategy} modified the source's {key}"
    assert features.training, "the user's module must keep its train/eval flag"
    assert [p.requires_grad for p in features.parameters()] == grads_before


def test_frozen_source_runs_in_eval_mode_without_grad():
    features, _ = small_source()
    features.train()
    x = torch.randn(10, N_IN)
    frozen = FrozenSource(features)
    out1, out2 = frozen(x), frozen(x)
    assert torch.equal(out1, out2)  # dropout off, BatchNorm uses running statistics
    assert not out1.requires_grad
    assert features.training


def test_head_is_one_linear_layer_unless_asked():
    encoder = MLPEncoder(N_IN, (16,))
    default = build_strategy("refine", n_outputs=2, encoder=encoder, feature_dim=N_FEAT)
    assert isinstance(default.head, nn.Linear) and default.head.in_features == 16 + N_FEAT
    deep = build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (16,)), feature_dim=N_FEAT, head_hidden=32)
    assert isinstance(deep.head, nn.Sequential) and deep.start == "cold"


def _tiny_refine_data(seed=0, n=120, rule=lambda X, F: X[:, 0] + F[:, 0] > 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN)).astype(np.float32)
    F = rng.normal(size=(n, N_FEAT)).astype(np.float32)
    y = rule(X, F).astype(np.int64)
    tensors = {"x": torch.from_numpy(X), "features": torch.from_numpy(F), "y": torch.from_numpy(y)}
    return TensorBatches(tensors, batch_size=None)


def test_start_auto_tries_the_probe_and_the_residual_start_and_keeps_the_lower_validation_loss():
    train, val = _tiny_refine_data(0), _tiny_refine_data(1)
    model = build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT)
    assert model.start == "auto"
    model.fit_feature_statistics(train.tensors["features"])
    # on the CPU: the validation loss is recomputed below in float32 (CUDA training autocasts it to bf16)
    history = fit(model, train, val, config=TrainConfig(max_epochs=5, random_state=0, device="cpu"))
    assert set(history.start_val_loss) == {"probe", "residual"}
    assert history.start == min(history.start_val_loss, key=history.start_val_loss.get)
    assert history.warm_start is not None  # the baseline the kept run started from
    # the kept weights are the chosen run's: their validation loss, recomputed here, is what fit reported
    model.eval()
    with torch.no_grad():
        batch = next(val.batches(None))
        loss = float(nn.functional.cross_entropy(model(x=batch["x"], features=batch["features"]), batch["y"]))
    assert loss == pytest.approx(history.start_val_loss[history.start], rel=1e-5)


def test_start_auto_without_validation_is_the_probe_start():
    model = build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT)
    train = _tiny_refine_data(0)
    model.fit_feature_statistics(train.tensors["features"])
    history = fit(model, train, None, config=TrainConfig(max_epochs=3))
    assert history.start == "probe" and history.start_val_loss is None


@pytest.mark.parametrize("start", ["probe", "residual"])
def test_a_warm_start_never_ends_worse_on_validation_than_where_it_began(start):
    # the starting weights are evaluated and kept when no epoch beats them; the residual start begins
    # exactly at the from-scratch model (the probe start adds the random residual block to the probe)
    train, val = _tiny_refine_data(0, n=60), _tiny_refine_data(1, n=60)
    model = build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT, start=start)
    model.fit_feature_statistics(train.tensors["features"])
    history = fit(model, train, val, config=TrainConfig(max_epochs=20, lr=0.05, random_state=0))
    assert history.start == start
    assert history.best_val_loss <= history.initial_val_loss
    if start == "residual":
        assert history.initial_val_loss == pytest.approx(history.warm_start.best_val_loss, rel=1e-5)


def _early_stopped_and_replayed(strategy: str, start: str | None):
    """The same model trained twice on the same rows: early-stopped on a validation set, then without validation
    replaying that run's history."""
    train, val = _tiny_refine_data(0, n=80), _tiny_refine_data(1, n=80, rule=lambda X, F: X[:, 1] > 0)
    config = TrainConfig(max_epochs=60, lr=0.05, patience=5, random_state=3)
    models = []
    for _ in range(2):
        with seeded(0):
            options = {"start": start} if start else {}
            models.append(build_strategy(strategy, n_outputs=2, encoder=MLPEncoder(N_IN, (8,), dropout=0.2),
                                         feature_dim=N_FEAT, **options))
        models[-1].fit_feature_statistics(train.tensors["features"])
    history = fit(models[0], train, val, config=config)
    replayed = fit(models[1], train, None, config=config, replay=history)
    return models, history, replayed


@pytest.mark.parametrize(("strategy", "start"), [("notrans", None), ("refine", "probe"), ("refine", "residual")])
def test_replay_without_validation_reproduces_the_early_stopped_weights(strategy, start):
    # validation (its labels follow another rule) only chooses where to stop: training draws no random number
    # from it, so the same rows, seed and epochs give the very weights the early-stopped run restored
    models, history, replayed = _early_stopped_and_replayed(strategy, start)
    assert history.stopped_early and history.best_epoch < len(history.train_loss) - 1  # the replay truncates
    assert len(replayed.train_loss) == history.best_epoch + 1 and replayed.val_loss == []
    assert replayed.start == history.start
    if history.warm_start is not None:  # the warm start too ran for the epochs its early-stopped run kept
        assert len(replayed.warm_start.train_loss) == history.warm_start.best_epoch + 1
    for (name, kept), (_, again) in zip(models[0].state_dict().items(), models[1].state_dict().items(), strict=True):
        torch.testing.assert_close(again, kept, rtol=0, atol=0, msg=name)


def test_replay_of_a_kept_start_trains_no_epoch_after_it():
    history = History(start="cold", best_epoch=-1)
    model = build_strategy("notrans", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)))
    before = copy.deepcopy(model.state_dict())
    replayed = fit(model, _tiny_refine_data(0), None, replay=history)
    assert replayed.train_loss == [] and replayed.best_epoch == -1
    for name, value in model.state_dict().items():  # fit moved the model to its device: compare the values
        torch.testing.assert_close(value.cpu(), before[name], rtol=0, atol=0)


def test_replay_refuses_validation_and_a_warm_start_it_cannot_rebuild():
    train = _tiny_refine_data(0)
    model = build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT)
    model.fit_feature_statistics(train.tensors["features"])
    with pytest.raises(ValueError, match="pass val=None"):
        fit(model, train, train, replay=History(best_epoch=2))
    for start in ("probe", "residual"):
        with pytest.raises(ValueError, match=f"started from the {start} needs the history"):
            fit(model, train, None, replay=History(start=start, best_epoch=2))


def test_residual_start_copies_the_scratch_model_and_zeroes_the_frozen_block():
    model = build_strategy("refine", n_outputs=3, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT)
    scratch = model.from_scratch()
    with torch.no_grad():
        for p in scratch.parameters():
            p.uniform_(-1, 1)
    model.start_from_scratch(scratch)
    x, f = torch.randn(7, N_IN), torch.randn(7, N_FEAT) * 100  # any frozen features: their block is zero
    model.fit_feature_statistics(f)
    model.eval(), scratch.eval()
    torch.testing.assert_close(model(x=x, features=f), scratch(x=x))
    assert torch.all(model.head.weight[:, 8:] == 0)
    assert scratch.encoder is not model.encoder  # a copy: training the scratch model left h alone


def test_standardizer_maps_constant_training_features_to_zero():
    train = torch.tensor([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0]])  # feature 0 dead, feature 2 constant
    scaler = FeatureStandardizer(3).fit(train)
    test = torch.tensor([[7.0, 2.0, 9.0]])
    # hand-computed: feature 1 has mean 2, population std 1; the constant ones contribute 0
    assert torch.equal(scaler(test), torch.tensor([[0.0, 0.0, 0.0]]))
    assert torch.equal(scaler(torch.tensor([[0.0, 4.0, 5.0]])), torch.tensor([[0.0, 2.0, 0.0]]))


def test_warm_start_keeps_the_residual_block_random_and_copies_the_probe():
    model = build_strategy("refine", n_outputs=3, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT)
    before = model.head.weight.detach().clone()
    probe = model.probe()
    with torch.no_grad():
        probe.head.weight.fill_(0.5)
        probe.head.bias.fill_(-1.0)
    model.start_from_probe(probe)
    assert torch.equal(model.head.weight[:, :8], before[:, :8])  # h block untouched (random, not zero)
    assert bool((before[:, :8] != 0).any())
    assert torch.all(model.head.weight[:, 8:] == 0.5) and torch.all(model.head.bias == -1.0)


def test_start_rejects_unknown_values():
    with pytest.raises(ValueError, match="start must be one of"):
        build_strategy("refine", n_outputs=2, encoder=MLPEncoder(N_IN, (8,)), feature_dim=N_FEAT, start="warm")


def test_lora_starts_at_the_base_layer_and_scales_by_alpha_over_rank():
    base = nn.Linear(6, 4)
    lora = LoRALinear(base, rank=2, alpha=16.0)
    x = torch.randn(5, 6)
    assert torch.allclose(lora(x), base(x))  # B = 0 at init
    assert lora.scaling == 8.0
    with torch.no_grad():
        lora.lora_b.fill_(1.0)
    expected = base(x) + 8.0 * (x @ lora.lora_a.T).sum(1, keepdim=True).expand(-1, 4)
    assert torch.allclose(lora(x), expected, atol=1e-5)


def test_gradient_reversal_negates_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    _GradientReversal.apply(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_distill_with_alpha_one_is_plain_cross_entropy():
    features, head = small_source()
    model = build_strategy(
        "distill", n_outputs=N_CLASSES, encoder=MLPEncoder(N_IN, (8,)), source=FrozenSource(features, head),
        distill_alpha=1.0,
    )
    X, y = toy_data(20)
    batch = {"x": torch.from_numpy(X), "y": torch.from_numpy(y)}
    outputs = model(x=batch["x"])
    loss = model.training_loss(batch, outputs, torch.nn.functional.cross_entropy, 0.0)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(outputs, batch["y"]))


def test_class_weights_are_balanced():
    # counts 3, 1, 0 over 4 samples, 3 classes: n / (k * count) = 4/9, 4/3, 0
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert torch.allclose(weights, torch.tensor([4 / 9, 4 / 3, 0.0]))


# ------------------------------------------------------------------------------------------------
# The estimator: sklearn contract, determinism, persistence, bad input


def test_same_seed_same_numbers_and_different_seed_differs():
    X, y = toy_data()
    F = X[:, :N_FEAT] ** 2
    kwargs = {"max_epochs": 15, "hidden_sizes": (16,)}
    p1 = RefineClassifier(random_state=3, **kwargs).fit(X, y, source_features=F).predict_proba(X, source_features=F)
    p2 = RefineClassifier(random_state=3, **kwargs).fit(X, y, source_features=F).predict_proba(X, source_features=F)
    p3 = RefineClassifier(random_state=4, **kwargs).fit(X, y, source_features=F).predict_proba(X, source_features=F)
    assert np.array_equal(p1, p2)
    assert not np.array_equal(p1, p3)
    assert np.allclose(p1.sum(1), 1.0, atol=1e-5)


def test_training_does_not_change_the_global_torch_rng():
    X, y = toy_data(60)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    RefineClassifier("notrans", max_epochs=2).fit(X, y)
    assert torch.equal(torch.rand(1), expected)


def test_sklearn_clone_and_grid_search_with_a_source_callable():
    X, y = toy_data(150)

    def source(values):
        return np.tanh(values[:, :N_FEAT])

    clf = RefineClassifier(source=source, max_epochs=5, hidden_sizes=(8,))
    assert clone(clf).get_params()["source"] is source
    search = GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert 0.0 <= search.score(X, y) <= 1.0


@pytest.mark.parametrize("strategy", ["refine", "lora", "notrans"])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, strategy):
    features, _ = small_source()
    X, y = toy_data()
    labels = np.array(["a", "b", "c"])[y]
    clf = RefineClassifier(strategy, source=features, max_epochs=4, hidden_sizes=(8,)).fit(X, labels)
    clf.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    loaded = RefineClassifier.load(tmp_path / "model", source=features)
    assert np.array_equal(clf.predict_proba(X), loaded.predict_proba(X))
    assert list(loaded.classes_) == ["a", "b", "c"]
    other, _ = small_source()
    with torch.no_grad():
        other[0].weight.add_(1.0)
    with pytest.raises(ValueError, match="differs"):
        RefineClassifier.load(tmp_path / "model", source=other)


def test_regressor_round_trip_keeps_target_shape(tmp_path):
    task = make_transfer_task("mixed", 100)
    reg = RefineRegressor(max_epochs=3).fit(task.X, task.y_continuous, source_features=task.features)
    reg.save(tmp_path)
    loaded = RefineRegressor.load(tmp_path)
    pred = loaded.predict(task.X, source_features=task.features)
    assert pred.shape == (100,)
    assert np.array_equal(pred, reg.predict(task.X, source_features=task.features))


def test_load_refuses_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        RefineClassifier.load(tmp_path)


@pytest.mark.parametrize(
    ("make_inputs", "message"),
    [
        (lambda X, y, F: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y, F), "NaN"),
        (lambda X, y, F: (X, y, np.full_like(F, np.inf)), "NaN or infinite"),
        (lambda X, y, F: (X[:-1], y, F), "inconsistent numbers of samples"),
        (lambda X, y, F: (X, np.zeros_like(y), F), "single class"),
        (lambda X, y, F: (X.astype(str), y, F), "numeric"),
        (lambda X, y, F: (X[:0], y[:0], F[:0]), "0 sample"),
        (lambda X, y, F: (X, y, None), "frozen representation"),
        (lambda X, y, F: (X[:, 0], y, F), "Reshape your data"),
        (lambda X, y, F: (X, y + 0.5 * np.arange(len(y)) / len(y), F), "continuous"),
        (lambda X, y, F: (X, np.array([1, "a"] * (len(y) // 2), dtype=object), F), "mixes label types"),
        (lambda X, y, F: (X, np.array([pd.NA, "a", "b"] * 13 + ["a"], dtype=object), F), "missing labels"),
    ],
)
def test_bad_input_gets_a_clear_error(make_inputs, message):
    X, y = toy_data(40)
    F = X[:, :N_FEAT].copy()
    X2, y2, F2 = make_inputs(X, y, F)
    with pytest.raises(ValueError, match=message):
        RefineClassifier(max_epochs=1).fit(X2, y2, source_features=F2)


def test_bad_parameters_get_a_clear_error():
    X, y = toy_data(40)
    with pytest.raises(ValueError, match="Unknown strategy"):
        RefineClassifier("magic").fit(X, y, source_features=X)
    with pytest.raises(ValueError, match="torch module"):
        RefineClassifier("lora").fit(X, y, source_features=X)
    with pytest.raises(ValueError, match="features"):
        RefineClassifier(max_epochs=1).fit(X, y, source_features=X).predict(X, source_features=X[:, :3])


def test_bad_estimator_settings_are_refused_at_fit():
    X, y = toy_data(40)
    for params, error, message in [
        ({"hidden_sizes": 32}, ValueError, "hidden_sizes must be a sequence"),
        ({"hidden_sizes": (16, 0)}, ValueError, "hidden_sizes must be a sequence"),
        ({"strategy": "notrans", "start": "bogus"}, ValueError, "start must be one of"),
        ({"random_state": None}, TypeError, "random_state must be an integer seed"),
    ]:
        with pytest.raises(error, match=message):
            RefineClassifier(max_epochs=1, **params).fit(X, y, source_features=X)


def test_few_labelled_samples_per_class_still_get_a_stratified_validation_split():
    # 10 classes x 5 samples: a 10 % split has 5 samples, fewer than the classes; it gets one per class
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 5)
    X = rng.normal(size=(50, 6)).astype(np.float32) + y[:, None]
    clf = RefineClassifier("notrans", max_epochs=3, hidden_sizes=(8,)).fit(X, y)
    assert clf.predict(X).shape == (50,)
    from spatial_refine.refine._validation import stratified_split

    train, val = stratified_split(np.arange(50), y, 0.1, 0)
    assert sorted(y[val]) == list(range(10)) and len(np.intersect1d(train, val)) == 0
    assert set(y[train]) == set(range(10))


def test_predict_before_fit_is_sklearns_not_fitted_error():
    from sklearn.exceptions import NotFittedError

    X, _ = toy_data(10)
    with pytest.raises(NotFittedError):
        RefineClassifier().predict(X, source_features=X)


def test_a_label_column_is_flattened_with_sklearns_warning():
    from sklearn.exceptions import DataConversionWarning

    X, y = toy_data(40)
    with pytest.warns(DataConversionWarning):
        clf = RefineClassifier("notrans", max_epochs=1).fit(X, y[:, None])
    np.testing.assert_array_equal(clf.classes_, np.unique(y))


def test_user_arrays_are_not_modified():
    X, y = toy_data(50)
    F = X[:, :N_FEAT].copy()
    copies = X.copy(), y.copy(), F.copy()
    RefineClassifier(max_epochs=2).fit(X, y, source_features=F)
    assert all(np.array_equal(a, b) for a, b in zip((X, y, F), copies, strict=True))


def test_fit_warns_when_the_feature_statistics_were_never_set():
    model = build_strategy("linear_probe", n_outputs=2, feature_dim=N_FEAT)
    train = _tiny_refine_data(0)
    with pytest.warns(UserWarning, match="fit_feature_statistics"):
        fit(model, train, None, config=TrainConfig(max_epochs=1))
    model = build_strategy("linear_probe", n_outputs=2, feature_dim=N_FEAT)
    model.fit_feature_statistics(train.tensors["features"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(model, train, None, config=TrainConfig(max_epochs=1))


def test_regression_targets_of_one_dimension_are_one_output_not_broadcast():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, N_IN)).astype(np.float32)
    y = (2 * X[:, 0]).astype(np.float32)
    flat = TensorBatches({"x": torch.from_numpy(X), "y": torch.from_numpy(y)}, batch_size=None)
    column = TensorBatches({"x": torch.from_numpy(X), "y": torch.from_numpy(y[:, None])}, batch_size=None)
    models = []
    for data in (flat, column):
        with seeded(0):
            model = build_strategy("notrans", n_outputs=1, encoder=MLPEncoder(N_IN, (8,)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns when a loss broadcasts (64,) against (64, 1)
            fit(model, data, None, task="regression", config=TrainConfig(max_epochs=5, random_state=0))
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the same loss, so the same training
    wrong = TensorBatches({"x": torch.from_numpy(X), "y": torch.from_numpy(np.c_[y, y])}, batch_size=None)
    with pytest.raises(ValueError, match="Regression targets of shape"):
        fit(build_strategy("notrans", n_outputs=1, encoder=MLPEncoder(N_IN, (8,))), wrong, None, task="regression",
            config=TrainConfig(max_epochs=1))


def test_a_double_precision_source_module_works_and_gives_float32_features():
    features, _ = small_source()
    X, y = toy_data(60)
    double = FrozenSource(copy.deepcopy(features).double())
    out = double(torch.from_numpy(X))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, FrozenSource(features)(torch.from_numpy(X)), atol=1e-5, rtol=1e-5)
    RefineClassifier(source=copy.deepcopy(features).double(), max_epochs=1, hidden_sizes=(8,)).fit(X, y)


def test_dataframe_column_names_are_kept_through_save_and_load(tmp_path):
    X, y = toy_data(60)
    frame = pd.DataFrame(X, columns=[f"gene{i}" for i in range(X.shape[1])])
    clf = RefineClassifier("notrans", max_epochs=2, hidden_sizes=(8,)).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns)
    loaded = RefineClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.feature_names_in_, clf.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same columns: no "fitted without feature names" warning
        np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[frame.columns[::-1]])


def test_labels_keep_their_kind_and_numpy_settings_work():
    X, y = toy_data(60)
    fit = {"strategy": "notrans", "max_epochs": 2, "hidden_sizes": (8,)}
    nullable = RefineClassifier(**fit).fit(X, pd.array(y, dtype="Int64"))
    assert nullable.classes_.dtype.kind == "i"  # pandas nullable integers stay integers
    as_object = RefineClassifier(**fit).fit(X, y.astype(object))  # e.g. df.col.astype(object)
    np.testing.assert_array_equal(as_object.classes_, np.unique(y))
    strings = np.array(["a", np.str_("b")] * 30, dtype=object)  # Python and numpy strings: one kind
    assert list(RefineClassifier(**fit).fit(X, strings).classes_) == ["a", "b"]
    seeded_np = RefineClassifier(random_state=np.int64(3), **{**fit, "hidden_sizes": [np.int64(8)]}).fit(X, y)
    same = RefineClassifier(random_state=3, **fit).fit(X, y)
    np.testing.assert_array_equal(seeded_np.predict_proba(X), same.predict_proba(X))


def test_dict_class_weights_name_classes_and_are_non_negative():
    X, y = toy_data(60)
    with pytest.raises(ValueError, match="not a class of y"):
        RefineClassifier("notrans", max_epochs=1, class_weight={0: 2.0, 99: 1.0}).fit(X, y)
    with pytest.raises(ValueError, match="not a class of y"):
        RefineClassifier("notrans", max_epochs=1, class_weight={"0": 2.0}).fit(X, y)  # wrong key type
    with pytest.raises(ValueError, match="non-negative"):
        RefineClassifier("notrans", max_epochs=1, class_weight={0: -1.0}).fit(X, y)


def test_class_weighted_validation_loss_is_one_weighted_mean_over_all_batches():
    # 7 validation rows in batches of 2 with uneven class mixes: the loss must be sum w[y] l / sum w[y] over
    # all rows (what one full batch gives), not the mean of per-batch weighted means
    torch.manual_seed(0)
    model = build_strategy("notrans", n_outputs=3, encoder=MLPEncoder(4, (8,), 0.0))
    x_val, y_val = torch.randn(7, 4), torch.tensor([0, 0, 0, 0, 1, 2, 2])
    weights = torch.tensor([0.5, 3.0, 1.5])
    train = TensorBatches({"x": torch.randn(6, 4), "y": torch.tensor([0, 0, 0, 1, 2, 2])}, batch_size=6)
    history = {}
    for batch_size in (2, None):
        val = TensorBatches({"x": x_val, "y": y_val}, batch_size=batch_size)
        state = copy.deepcopy(model.state_dict())
        run = fit(model, train, val, weights=weights,
                  config=TrainConfig(lr=1e-30, weight_decay=0.0, max_epochs=1, patience=None, random_state=0,
                                     device="cpu"))  # ~no step; float32, as the reference below
        model.load_state_dict(state)
        history[batch_size] = run.val_loss[0]
    with torch.no_grad():
        model.eval()
        log_p = torch.log_softmax(model(x=x_val), dim=1)[torch.arange(7), y_val].numpy()
    w = weights[y_val].numpy()
    expected = np.sum(w * -log_p) / np.sum(w)
    assert history[None] == pytest.approx(expected, rel=1e-5)
    assert history[2] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
@pytest.mark.parametrize("strategy", ["refine", "notrans", "linear_probe"])
def test_cuda_fit_predicts_what_the_cpu_predicts_with_the_same_weights(tmp_path, strategy):
    X, y = toy_data(120)
    source = torch.randn(120, 5, generator=torch.Generator().manual_seed(0)).numpy()
    clf = RefineClassifier(strategy, max_epochs=5, hidden_sizes=(8,), device="cuda", random_state=0)
    clf.fit(X, y, source_features=source)
    on_gpu = clf.predict_proba(X, source_features=source)
    np.testing.assert_allclose(clf.predict_proba(X, source_features=source), on_gpu, rtol=1e-5, atol=1e-6)
    clf.device = "cpu"  # the same weights, float32 inference on the CPU
    np.testing.assert_allclose(clf.predict_proba(X, source_features=source), on_gpu, rtol=1e-5, atol=1e-6)
    loaded = RefineClassifier.load(clf.save(tmp_path / "m"))
    loaded.device = "cuda"
    np.testing.assert_allclose(loaded.predict_proba(X, source_features=source), on_gpu, rtol=1e-5, atol=1e-6)
