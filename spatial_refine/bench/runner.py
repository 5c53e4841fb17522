"""Run one benchmark task: pretrain (or load) the source once, then train every strategy on the target
subset of every seed and evaluate it on the target test set.

Strategy names are the core's (:data:`spatial_refine.refine.STRATEGIES`) plus REFINE ablation variants
``refine:<option>[,<option>]`` with options ``nostd`` (no fixed standardisation of ``f_rep``), ``cold``
(random initialisation), ``probe`` (always the linear-probe start) and ``residual`` (always the
from-scratch start); ``refine:plain`` switches standardisation and warm starts off (the paper's method).

REFINE's default start (``start="auto"`` in the core) is chosen on a validation split. The paper's
protocol has none (fixed epochs), so the runner makes one for that choice only: a stratified
:data:`VALIDATION_FRACTION` of the target training subset is held out, the core trains the probe and the
residual start on the rest and keeps the lower validation loss; REFINE is then retrained on the *whole*
target training subset with the chosen start and the same fixed epochs as every other strategy (so no
strategy sees less training data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..refine import (
    FrozenSource,
    TensorBatches,
    TrainConfig,
    build_strategy,
    extract_features,
    fit,
    predict_outputs,
    seeded,
)
from ..refine.strategies import NoTrans
from .metrics import METRICS, classification_metrics
from .protocols import Protocol
from .tasks import Paths, Split, Task

__all__ = [
    "DEFAULT_STRATEGIES",
    "VALIDATION_FRACTION",
    "SourceModel",
    "choose_refine_start",
    "parse_strategy",
    "pretrain_source",
    "run_task",
    "stratified_holdout",
]

log = logging.getLogger(__name__)

DEFAULT_STRATEGIES = ("notrans", "linear_probe", "adapter", "distill", "lora", "dann_gate", "refine")
_VARIANT_OPTIONS = {
    "nostd": ("standardize_features", False),
    "cold": ("start", "cold"),
    "probe": ("start", "probe"),
    "residual": ("start", "residual"),
}
#: Share of the target training subset held out to choose REFINE's start (probe or residual).
VALIDATION_FRACTION = 0.2


def parse_strategy(spec: str) -> tuple[str, dict]:
    """``"refine:nostd,cold"`` -> ``("refine", {"standardize_features": False, "start": "cold"})``.

    Options: ``nostd``, ``cold``, ``probe``, ``residual`` (the start), ``plain`` (``nostd`` + ``cold``).
    Plain ``refine`` keeps the core's defaults.
    """
    name, _, options = spec.partition(":")
    kwargs: dict = {}
    if options:
        if name != "refine":
            raise ValueError(f"Only refine has variants; got {spec!r}.")
        for option in options.split(","):
            if option == "plain":
                kwargs.update(standardize_features=False, start="cold")
            elif option in _VARIANT_OPTIONS:
                key, value = _VARIANT_OPTIONS[option]
                kwargs[key] = value
            else:
                raise ValueError(
                    f"Unknown refine option {option!r} in {spec!r}: use nostd, cold, probe, residual or plain."
                )
    return name, kwargs


# ------------------------------------------------------------------------------------------------
# models of each modality


def source_features_module(task: Task, protocol: Protocol) -> nn.Module:
    """The source's feature extractor (``f_rep``), untrained."""
    if task.modality == "vision" and task.arch == "resnet":
        from ..encoders.cnn import ResNet

        return ResNet((2, 2, 2, 2), protocol.resnet_width)
    if task.modality == "vision":
        from ..encoders.cnn import BigCNN

        return BigCNN(protocol.big_channels, protocol.feature_dim)
    from ..encoders.text import TextSourceFeatures

    return TextSourceFeatures(_text_transformer(protocol), protocol.text_feature_dim)


def residual_encoder(task: Task, protocol: Protocol) -> nn.Module:
    """The target model's trunk: NoTrans / distillation student / REFINE's ``h``, untrained."""
    if task.modality == "vision" and task.arch == "resnet":
        from ..encoders.cnn import ResNet

        return ResNet((1, 1, 1, 1), protocol.resnet_width)
    if task.modality == "vision":
        from ..encoders.cnn import SmallCNN

        return SmallCNN(protocol.small_channels, protocol.small_hidden)
    return _text_transformer(protocol)


def _text_transformer(protocol: Protocol) -> nn.Module:
    from ..encoders.text import TextTransformer

    return TextTransformer(
        protocol.text_vocab,
        protocol.text_max_len,
        d_model=protocol.text_d_model,
        n_heads=protocol.text_heads,
        dim_feedforward=protocol.text_ff,
        n_layers=protocol.text_layers,
    )


def train_config(task: Task, protocol: Protocol, strategy: str, seed: int, device: str, *, source: bool = False) -> TrainConfig:
    """Optimiser and schedule: the protocol's for vision (paper: SGD lr 0.01, momentum 0.9; the source may
    have its own, ``vision_source_optimizer``), Adam for text;
    Adam 1e-3 for LoRA and DANN-Gate (weight decay 1e-4 for DANN-Gate), as in the paper. Fixed epochs, no
    early stopping (the paper has no validation split)."""
    vision = task.modality == "vision"
    if source:
        epochs = protocol.vision_source_epochs if vision else protocol.text_source_epochs
    else:
        epochs = protocol.vision_target_epochs if vision else protocol.text_target_epochs
    if protocol.base == "paper" and task.paper_epochs is not None:
        epochs = task.paper_epochs[0 if source else 1]
    common = dict(batch_size=task.batch_size, max_epochs=epochs, patience=None, random_state=seed, device=device)
    if strategy in ("lora", "dann_gate"):
        return TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4 if strategy == "dann_gate" else 0.0, **common)
    if vision and source and protocol.vision_source_optimizer is not None:
        lr = protocol.vision_lr if protocol.vision_source_lr is None else protocol.vision_source_lr
        return TrainConfig(optimizer=protocol.vision_source_optimizer, lr=lr, momentum=0.9, **common)
    if vision:
        return TrainConfig(optimizer=protocol.vision_optimizer, lr=protocol.vision_lr, momentum=0.9, **common)
    return TrainConfig(optimizer="adam", lr=protocol.text_lr, grad_clip=1.0, **common)


# ------------------------------------------------------------------------------------------------
# source pretraining, cached by config


@dataclass
class SourceModel:
    """The pretrained source and what is known about it."""

    source: FrozenSource
    n_classes: int
    key: str
    path: Path | None
    meta: dict


#: Protocol fields that shape only the target side (run seeds, target and test sizes, target models and
#: schedules): left out of the source's cache key, so changing them reuses the pretrained source.
TARGET_ONLY_FIELDS = (
    "seeds",
    "n_mnist",
    "n_stl",
    "n_test",
    "small_channels",
    "small_hidden",
    "vision_target_epochs",
    "text_target_epochs",
    "text_target_per_class",
    "text_test_per_class",
)


def _source_key(task: Task, protocol: Protocol, n_classes: int) -> tuple[str, dict]:
    settings = protocol.to_dict()
    settings["name"] = protocol.base  # overrides are in the fields themselves
    for name in TARGET_ONLY_FIELDS:
        settings.pop(name)
    config = {
        "task": task.name,
        "modality": task.modality,
        "entries": list(task.entries),
        "protocol": settings,
        "n_classes": n_classes,
        "batch_size": task.batch_size,
        "format": 2,
    }
    blob = json.dumps(config, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], config


def pretrain_source(
    task: Task,
    protocol: Protocol,
    *,
    cache_dir: str | Path | None = None,
    paths: Paths = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> SourceModel:
    """Train the source model on the task's source data once (``protocol.source_seed``), or load it.

    The weights are saved as ``<cache_dir>/<task>-<protocol>-<key>.safetensors`` (safetensors, never pickle), with
    the configuration that produced them in a ``.json`` next to it; ``key`` hashes that configuration
    (every protocol field except :data:`TARGET_ONLY_FIELDS`).
    """
    data = task.source(protocol, paths, data_dir)
    key, config = _source_key(task, protocol, data.n_classes)
    path = Path(cache_dir) / f"{task.name}-{protocol.base}-{key}.safetensors" if cache_dir is not None else None
    with seeded(protocol.source_seed):
        model = NoTrans(source_features_module(task, protocol), data.n_classes)
    if path is not None and path.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(path))
        meta = json.loads(path.with_suffix(".json").read_text())
        log.info("loaded source %s", path)
    else:
        start = time.perf_counter()
        cfg = train_config(task, protocol, "source", protocol.source_seed, device, source=True)
        history = fit(model, _batches(data, None, cfg.batch_size, shuffle=True), task="classification", config=cfg)
        model.cpu()
        train_acc = float((_predict(model, data.x).argmax(1) == data.y).mean())
        meta = {
            "config": config,
            "seconds": time.perf_counter() - start,
            "final_train_loss": history.train_loss[-1],
            "train_accuracy_on_source_labels": train_acc,
            "n_train": len(data.y),
        }
        if path is not None:
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    model.cpu().eval()
    return SourceModel(FrozenSource(model.encoder, model.head), data.n_classes, key, path, meta)


def _batches(split: Split, features: torch.Tensor | None, batch_size: int, shuffle: bool) -> TensorBatches:
    y = torch.as_tensor(split.y, dtype=torch.long)
    return TensorBatches({"x": split.x, "features": features, "y": y}, batch_size=batch_size, shuffle=shuffle)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model(x=x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (fit, validation), holding out ``fraction`` of every class.

    Each class keeps at least one row on each side when it has two or more (a single-row class stays in
    the fit part). Both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        k = 0 if len(rows) < 2 else min(max(round(fraction * len(rows)), 1), len(rows) - 1)
        val_rows.append(rows[:k])
        fit_rows.append(rows[k:])
    return np.sort(np.concatenate(fit_rows)), np.sort(np.concatenate(val_rows))


def _rows(split: Split, rows: np.ndarray) -> Split:
    return Split(split.x[torch.as_tensor(rows)], split.y[rows], split.n_classes)


def choose_refine_start(
    build, train: Split, features: torch.Tensor, config: TrainConfig, seed: int
) -> tuple[str, dict[str, float] | None]:
    """Choose REFINE's start (``"probe"`` or ``"residual"``) on a held-out part of the target training set.

    Parameters
    ----------
    build
        Zero-argument callable returning a fresh REFINE model with ``start="auto"``.
    train, features
        The target training subset and its frozen source features.
    config
        The training configuration of the final run (same epochs, optimiser, seed).
    seed
        Seed of the stratified split (:data:`VALIDATION_FRACTION` held out).

    Returns
    -------
    The start the core kept (``History.start``) and each start's validation loss
    (``History.start_val_loss``), or ``("probe", None)`` when there is too little data to hold any out.
    """
    fit_rows, val_rows = stratified_holdout(train.y, VALIDATION_FRACTION, seed)
    if len(val_rows) < 2:
        return "probe", None
    model = build()
    model.fit_feature_statistics(features[torch.as_tensor(fit_rows)])
    history = fit(
        model,
        _batches(_rows(train, fit_rows), features[torch.as_tensor(fit_rows)], config.batch_size, shuffle=True),
        _batches(_rows(train, val_rows), features[torch.as_tensor(val_rows)], 256, shuffle=False),
        task="classification",
        config=config,
    )
    return history.start, history.start_val_loss


class _FeatureCache:
    """Frozen features of inputs seen before (the test set is the same for every seed): keyed by a hash
    of the input tensor, so a changed input can never reuse stale features."""

    def __init__(self, source: FrozenSource) -> None:
        self.source = source
        self._store: dict[str, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest() + str(tuple(x.shape))
        if key not in self._store:
            self._store[key] = extract_features(self.source, x)
        return self._store[key]


# ------------------------------------------------------------------------------------------------


def run_task(
    task: Task,
    protocol: Protocol,
    *,
    strategies: tuple[str, ...] | list[str] = DEFAULT_STRATEGIES,
    seeds: tuple[int, ...] | list[int] | None = None,
    cache_dir: str | Path | None = None,
    paths: Paths = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> tuple[list[dict], SourceModel]:
    """Train and evaluate every strategy on every seed of one task.

    Distillation is skipped (with a log message) where source and target label spaces differ. REFINE
    with the core's ``start="auto"`` gets its start chosen by :func:`choose_refine_start`
    (recorded as ``refine_start`` and ``start_val_loss_*``), then trains on the whole target subset.

    Returns
    -------
    One record per (strategy, seed): task, protocol, strategy, seed, the metrics of
    :func:`~spatial_refine.bench.metrics.classification_metrics`, training seconds, sizes; and the source.
    """
    task.check_data(paths, data_dir)
    seeds = tuple(protocol.seeds if seeds is None else seeds)
    for spec in strategies:
        parse_strategy(spec)
    source = pretrain_source(task, protocol, cache_dir=cache_dir, paths=paths, data_dir=data_dir, device=device)
    records: list[dict] = []
    features = _FeatureCache(source.source)
    for seed in seeds:
        train, test = task.target(protocol, seed, paths, data_dir)
        f_train = features(train.x)
        f_test = features(test.x)
        for spec in strategies:
            name, kwargs = parse_strategy(spec)
            if name == "distill" and not (task.same_label_space and source.n_classes == train.n_classes):
                log.info("%s: distillation needs matching label spaces; skipped", task.name)
                continue
            if name in ("lora", "dann_gate") and not any(isinstance(m, nn.Linear) for m in source.source.features.modules()):
                log.info("%s: %s adapts a Linear layer of the source features and there is none; skipped", task.name, name)
                continue
            cfg = train_config(task, protocol, name, seed, device)

            def build(options: dict = kwargs, name: str = name, seed: int = seed, n_classes: int = train.n_classes):
                with seeded(seed):
                    encoder = residual_encoder(task, protocol) if name in ("notrans", "distill", "refine") else None
                    return build_strategy(
                        name,
                        n_outputs=n_classes,
                        encoder=encoder,
                        source=source.source,
                        feature_dim=source.source.features.out_dim,
                        **options,
                    )

            model = build()
            extra: dict = {}
            start = time.perf_counter()
            if getattr(model, "start", None) == "auto":
                chosen, losses = choose_refine_start(build, train, f_train, cfg, seed)
                extra["refine_start"] = chosen
                for key, value in (losses or {}).items():
                    extra[f"start_val_loss_{key}"] = value
                model = build({**kwargs, "start": chosen})
            model.fit_feature_statistics(f_train)
            try:
                fit(model, _batches(train, f_train, cfg.batch_size, shuffle=True), task="classification", config=cfg)
            except FloatingPointError as error:  # a diverged run is a result of that strategy, not a crash of the task
                log.warning("%s %s seed %d diverged: %s", task.name, spec, seed, error)
                extra["diverged"] = str(error)
                metrics = dict.fromkeys(METRICS, float("nan"))
            else:
                logits = predict_outputs(model, _batches(test, f_test, 256, shuffle=False), device=device)
                metrics = classification_metrics(test.y, torch.softmax(logits, 1).numpy())
            seconds = time.perf_counter() - start
            n_trainable = sum(p.numel() for _, p in model.trainable_named_parameters())
            records.append(
                {
                    "task": task.name,
                    "protocol": protocol.name,
                    "strategy": spec,
                    "seed": seed,
                    **metrics,
                    "train_seconds": seconds,
                    "n_train": len(train.y),
                    "n_test": len(test.y),
                    "trainable_params": n_trainable,
                    **extra,
                }
            )
            log.info("%s %s seed %d: accuracy %.4f", task.name, spec, seed, records[-1]["accuracy"])
    return records, source
