"""One training loop for every strategy: optimiser, early stopping with best-epoch restore, device and
mixed precision, seeds, progress bar, history."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._device import resolve_device
from .strategies import TransferModel

__all__ = ["Batches", "History", "TensorBatches", "TrainConfig", "class_weights", "fit", "predict_outputs", "seeded"]

Task = Literal["classification", "regression"]


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    Attributes
    ----------
    optimizer
        ``"adam"`` (AdamW-style decoupled weight decay off: plain Adam) or ``"sgd"`` (with ``momentum``).
    lr, weight_decay, momentum
        Optimiser settings (strategies with several parameter groups may set their own rates).
    batch_size
        Minibatch size for array data (graph sources define their own batches).
    max_epochs, patience, min_delta
        Training stops after ``patience`` epochs without a validation-loss improvement larger than
        ``min_delta``; the best epoch's weights are restored. ``patience=None`` trains all epochs (and
        still restores the best epoch when there is a validation set).
    mixed_precision
        Autocast on CUDA during training (bf16 where supported, else fp16 with loss scaling). Ignored on CPU
        and MPS. Predictions (:func:`predict_outputs`) run in float32 unless asked otherwise.
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or an explicit device.
    random_state
        Seeds shuffling, dropout and every other random draw of training.
    progress
        Show a progress bar over epochs.
    grad_clip
        Clip the gradient norm to this value (``None``: no clipping).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    max_epochs: int = 100
    patience: int | None = 10
    min_delta: float = 0.0
    mixed_precision: bool = True
    device: str = "auto"
    random_state: int = 0
    progress: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be positive.")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be a positive integer or None.")


@dataclass
class History:
    """What happened during :func:`fit` (per-epoch lists and the epoch whose weights were kept).

    ``warm_start`` is the history of the model REFINE started from (the linear probe or the
    from-scratch model) when it used one; ``start`` is how the kept run began (``"cold"``, ``"probe"`` or
    ``"residual"``) and ``start_val_loss`` the best validation loss of each start when several were tried
    (``start="auto"``). ``best_epoch`` is ``-1`` when no epoch improved on the start on validation.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    warm_start: History | None = None
    start: str = "cold"
    start_val_loss: dict[str, float] | None = None
    initial_val_loss: float | None = None

    @property
    def best_val_loss(self) -> float:
        """The lowest validation loss of the run, its starting weights included (NaN without validation)."""
        losses = self.val_loss + ([] if self.initial_val_loss is None else [self.initial_val_loss])
        return min(losses) if losses else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> History:
        values = dict(values)
        if values.get("warm_start") is not None:
            values["warm_start"] = cls.from_dict(values["warm_start"])
        return cls(**values)


class Batches(Protocol):
    """A source of training batches: dicts with ``y`` and any of ``x``, ``features``, ``edge_index``,
    ``mask`` (rows that count in the loss)."""

    def batches(self, generator: torch.Generator | None) -> Iterator[dict]: ...

    def to(self, device: torch.device) -> Batches: ...


class TensorBatches:
    """In-memory tensors split into minibatches along the first dimension.

    Parameters
    ----------
    tensors
        Row-aligned tensors (``x``, ``features``, ``y``, ``mask``...), ``None`` values dropped.
    batch_size
        Rows per batch; ``None`` means one batch of every row (full-batch, e.g. a whole graph).
    shuffle
        Shuffle rows each epoch with the generator passed to :meth:`batches`.
    static
        Tensors passed whole with every batch (e.g. ``edge_index`` for full-batch graph training).
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor | None],
        *,
        batch_size: int | None = 64,
        shuffle: bool = False,
        static: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.tensors = {k: v for k, v in tensors.items() if v is not None}
        if not self.tensors:
            raise ValueError("TensorBatches needs at least one tensor.")
        lengths = {len(v) for v in self.tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"Row-aligned tensors have different lengths: { {k: len(v) for k, v in self.tensors.items()} }.")
        self.n = lengths.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.static = dict(static or {})

    def __len__(self) -> int:
        return self.n

    @property
    def n_batches(self) -> int:
        return 1 if self.batch_size is None else -(-self.n // self.batch_size)

    def to(self, device: torch.device) -> TensorBatches:
        moved = TensorBatches(
            {k: v.to(device) for k, v in self.tensors.items()},
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            static={k: v.to(device) for k, v in self.static.items()},
        )
        return moved

    def batches(self, generator: torch.Generator | None = None) -> Iterator[dict]:
        if self.batch_size is None or (self.batch_size >= self.n and not self.shuffle):
            yield {**self.tensors, **self.static}
            return
        order = (
            torch.randperm(self.n, generator=generator).to(next(iter(self.tensors.values())).device)
            if self.shuffle
            else None
        )
        for start in range(0, self.n, self.batch_size):
            if order is None:
                rows = slice(start, start + self.batch_size)
                yield {**{k: v[rows] for k, v in self.tensors.items()}, **self.static}
            else:
                index = order[start : start + self.batch_size]
                yield {**{k: v[index] for k, v in self.tensors.items()}, **self.static}


@contextlib.contextmanager
def seeded(random_state: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch for a block and restore the caller's global RNG state afterwards."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        yield


def class_weights(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """``n / (k * count_c)`` per class (sklearn's "balanced"); classes absent from ``codes`` get weight 0."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    weights = np.divide(len(codes), n_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.as_tensor(weights, dtype=torch.float32)


def _loss_function(task: Task, weights: torch.Tensor | None):
    if task == "classification":
        return lambda outputs, y: F.cross_entropy(outputs.float(), y, weight=weights)
    if task == "regression":
        return _regression_loss
    raise ValueError(f"task must be 'classification' or 'regression', got {task!r}.")


def _regression_loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean square error; targets ``(n,)`` for a single output are read as ``(n, 1)`` (never broadcast)."""
    if y.dim() == 1 and outputs.dim() == 2 and outputs.shape[1] == 1:
        y = y[:, None]
    if outputs.shape != y.shape:
        raise ValueError(
            f"Regression targets of shape {tuple(y.shape)} for outputs of shape {tuple(outputs.shape)}: pass y as "
            "(n, k) with k the model's n_outputs (or (n,) when n_outputs=1)."
        )
    return F.mse_loss(outputs.float(), y.float())


def _model_inputs(batch: dict) -> dict:
    return {k: batch.get(k) for k in ("x", "features", "edge_index")}


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _trainable_state(model: TransferModel) -> dict[str, torch.Tensor]:
    """Everything but the frozen source (which never changes): what best-epoch restore must keep."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("source.")}


@torch.no_grad()
def _counted_outputs(model: TransferModel, data: Batches, device: torch.device, amp: bool):
    """Evaluation-mode ``(outputs, y)`` per batch, restricted to the rows that count (``mask``)."""
    model.eval()
    for batch in data.batches(None):
        with _autocast(device, amp):
            outputs = model(**_model_inputs(batch))
        mask = batch.get("mask")
        yield (outputs, batch["y"]) if mask is None else (outputs[mask], batch["y"][mask])


@torch.no_grad()
def _evaluate(model: TransferModel, data: Batches, loss_fn, task: Task, device: torch.device, amp: bool,
              weights: torch.Tensor | None = None):
    """Validation loss and score over every batch. With class ``weights`` the loss is the class-weighted mean
    over the whole set, ``sum_i w[y_i] l_i / sum_i w[y_i]`` (as the training loss of one full batch), not a
    mean of per-batch weighted means, which would depend on how the cells fall into batches."""
    total_loss, total_n, total_weight, correct = 0.0, 0, 0.0, 0.0
    for outputs, y in _counted_outputs(model, data, device, amp):
        if len(y) == 0:
            continue
        if weights is not None and task == "classification":
            cell_weights = weights[y]
            total_loss += float((F.cross_entropy(outputs.float(), y, reduction="none") * cell_weights).sum())
            total_weight += float(cell_weights.sum())
        else:
            total_loss += float(loss_fn(outputs, y)) * len(y)
            total_weight += len(y)
        total_n += len(y)
        if task == "classification":
            correct += float((outputs.argmax(1) == y).sum())
    if total_n == 0:
        raise ValueError("The validation set has no labelled rows.")
    if total_weight == 0:  # every validation cell of a class without training cells (weight 0)
        raise ValueError("Every validation row has class weight 0 (its class has no training rows).")
    loss = total_loss / total_weight
    score = correct / total_n if task == "classification" else -loss
    return loss, score


def fit(
    model: TransferModel,
    train: Batches,
    val: Batches | None = None,
    *,
    task: Task = "classification",
    config: TrainConfig | None = None,
    weights: torch.Tensor | None = None,
    scratch_model: TransferModel | None = None,
    replay: History | None = None,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Parameters
    ----------
    model
        A strategy from :func:`~spatial_refine.refine.build_strategy`. Only its
        ``trainable_named_parameters()`` are optimised; the frozen source is never touched.
    train, val
        Batch sources (see :class:`TensorBatches`). With ``val``, training stops early on the validation
        loss and the best epoch's weights are restored.
    task
        ``"classification"`` (cross-entropy; ``y`` integer codes) or ``"regression"`` (square loss).
    config
        :class:`TrainConfig`.
    weights
        Optional per-class loss weights (see :func:`class_weights`).
    scratch_model
        For REFINE's residual start: an already trained from-scratch model of the same residual encoder
        (e.g. the one a depth search kept), used instead of training one. Its weights are not changed (it
        is moved to the training device).
    replay
        The :class:`History` of an earlier run of the same model (on a validation split): train without
        validation (``val`` must be ``None``) for the epochs that run kept, from the start it kept, its warm
        start (the linear probe, or the residual path when no ``scratch_model`` is given) also trained for the
        epochs it kept. For refitting on all labelled rows once early stopping has chosen the epoch counts
        (AutoGluon's ``refit_full``). ``config.max_epochs`` should be the earlier run's: schedules that follow
        training progress (the adversarial coefficient of DANN) then see the same values epoch by epoch.

    Notes
    -----
    REFINE (a model with ``start_candidates``) may start from a fitted baseline: ``"probe"`` fits a
    linear probe on the frozen features first, ``"residual"`` the residual path from scratch, and joint
    training continues from that solution. With ``start="auto"`` and a validation set, both starts are
    trained from the same initialisation and the one with the lower validation loss is kept. With a
    validation set every run also evaluates its starting weights, so a warm start is kept as it is when
    no epoch improves on it. ``History.start`` says which run was kept; ``History.start_val_loss`` has
    each start's best validation loss.

    A strategy that reads frozen features standardises them with fixed statistics (``standardize_features``):
    set them first with ``model.fit_feature_statistics(training_features)`` (the estimators and the spatial
    annotator do); otherwise the features are used as they are, with a warning.
    """
    config = config or TrainConfig()
    if replay is not None and val is not None:
        raise ValueError("replay trains for the epochs an earlier run kept, without validation: pass val=None.")
    if replay is not None and replay.warm_start is None and (
        replay.start == "probe" or (replay.start == "residual" and scratch_model is None)
    ):
        raise ValueError(f"replay of a run that started from the {replay.start} needs the history of that start's "
                         "training (replay.warm_start)" + (" or the trained residual path (scratch_model)."
                                                           if replay.start == "residual" else "."))
    scaler = getattr(model, "scaler", None)
    if scaler is not None and scaler.enabled and not scaler.fitted:
        warnings.warn(
            f"{type(model).__name__} standardises the frozen features, but its statistics were never set: call "
            "model.fit_feature_statistics(training_features) before fit (until then the features are used as they "
            "are).",
            UserWarning,
            stacklevel=2,
        )
    device = resolve_device(config.device)
    amp = config.mixed_precision and device.type == "cuda"
    weights = None if weights is None else weights.to(device)
    loss_fn = _loss_function(task, weights)
    model.to(device)
    train = train.to(device)
    val = val.to(device) if val is not None else None
    if not any(len(g["params"]) for g in model.param_groups(config.lr, config.weight_decay)):
        raise ValueError(f"{type(model).__name__} has no trainable parameters.")
    start = time.perf_counter()
    if replay is not None:
        starts = (replay.start,)
    else:
        starts = model.start_candidates(val is not None) if hasattr(model, "start_candidates") else ("cold",)
    run = _RunSettings(task, config, weights, device, amp, loss_fn, scratch_model, replay)
    with seeded(config.random_state, device):
        initial = _trainable_state(model)
        runs = []
        for name in starts:
            model.load_state_dict(initial, strict=False)
            history = _STARTS[name](model, train, val, run)
            runs.append((history.best_val_loss, name, history, _trainable_state(model) if len(starts) > 1 else None))
        _, name, history, state = min(runs, key=lambda r: r[0]) if len(runs) > 1 else runs[0]
        if len(runs) > 1:
            model.load_state_dict(state, strict=False)
            history.start_val_loss = {r[1]: r[0] for r in runs}
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


@dataclass(frozen=True)
class _RunSettings:
    task: Task
    config: TrainConfig
    weights: torch.Tensor | None
    device: torch.device
    amp: bool
    loss_fn: Callable
    scratch_model: TransferModel | None = None
    replay: History | None = None

    @property
    def warm_start_replay(self) -> History | None:
        return None if self.replay is None else self.replay.warm_start


def _train_from_probe(model: TransferModel, train: Batches, val: Batches | None, run: _RunSettings) -> History:
    """Fit the model's linear probe, start the model's head from it, then train the model."""
    probe = model.probe()  # initialised inside the caller's seeded block: reproducible
    probe_history = fit(probe, train, val, task=run.task, config=run.config, weights=run.weights,
                        replay=run.warm_start_replay)
    model.start_from_probe(probe)
    return _continue_from_start(model, train, val, run, "probe", probe_history)


def _train_from_scratch_model(model: TransferModel, train: Batches, val: Batches | None, run: _RunSettings) -> History:
    """Train the model's residual path alone (from scratch), start from it, then train the model."""
    if run.scratch_model is not None:
        scratch, scratch_history = run.scratch_model.to(run.device), None
    else:
        scratch = model.from_scratch()
        scratch_history = fit(scratch, train, val, task=run.task, config=run.config, weights=run.weights,
                              replay=run.warm_start_replay)
    model.start_from_scratch(scratch)
    return _continue_from_start(model, train, val, run, "residual", scratch_history)


def _continue_from_start(
    model: TransferModel, train: Batches, val: Batches | None, run: _RunSettings, start: str, baseline: History | None
) -> History:
    """Train a warm-started model (its start counts as epoch 0) and record where it started from."""
    history = _train_once(model, train, val, run, keep_start=True)
    history.warm_start = baseline
    history.start = start
    return history


def _train_cold(model: TransferModel, train: Batches, val: Batches | None, run: _RunSettings) -> History:
    return _train_once(model, train, val, run)


_STARTS = {"probe": _train_from_probe, "residual": _train_from_scratch_model, "cold": _train_cold}


def _train_once(
    model: TransferModel, train: Batches, val: Batches | None, run: _RunSettings, *, keep_start: bool = False
) -> History:
    """One optimisation run from the model's current weights; restores the best epoch's weights.

    With ``keep_start`` (a warm start) and a validation set, the starting weights are evaluated first and
    kept when no epoch improves on them (``best_epoch = -1``). With ``run.replay``: the first
    ``replay.best_epoch + 1`` epochs of ``config.max_epochs`` (none when the replayed run kept its start)."""
    config, device, amp = run.config, run.device, run.amp
    history = History()
    groups = model.param_groups(config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(config.random_state)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups)
    else:
        optimizer = torch.optim.SGD(groups, momentum=config.momentum)
    use_scaler = amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    best_loss, best_state, waited = float("inf"), None, 0
    if keep_start and val is not None:
        best_loss = _evaluate(model, val, run.loss_fn, run.task, device, amp, run.weights)[0]
        best_state = _trainable_state(model)
        history.initial_val_loss = best_loss
    n_epochs = config.max_epochs if run.replay is None else min(run.replay.best_epoch + 1, config.max_epochs)
    epochs = tqdm(range(n_epochs), disable=not config.progress, desc=type(model).__name__, leave=False)
    for epoch in epochs:
        model.train()
        running, seen = 0.0, 0
        n_batches = max(getattr(train, "n_batches", 1), 1)
        for step, batch in enumerate(train.batches(generator)):
            progress = (epoch + min(step / n_batches, 1.0)) / config.max_epochs
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                outputs = model(**_model_inputs(batch))
                loss = model.training_loss(batch, outputs, run.loss_fn, progress)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"The training loss became {float(loss)} at epoch {epoch}: lower the learning rate."
                )
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            n_rows = int(batch["mask"].sum()) if batch.get("mask") is not None else len(batch["y"])
            running += float(loss.detach()) * n_rows
            seen += n_rows
        history.train_loss.append(running / max(seen, 1))
        if val is None:
            continue
        val_loss, val_score = _evaluate(model, val, run.loss_fn, run.task, device, amp, run.weights)
        history.val_loss.append(val_loss)
        history.val_score.append(val_score)
        epochs.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val_loss:.3f}")
        if val_loss < best_loss - config.min_delta:
            best_loss, best_state, waited = val_loss, _trainable_state(model), 0
            history.best_epoch = epoch
        else:
            waited += 1
            if config.patience is not None and waited >= config.patience:
                history.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    else:
        history.best_epoch = len(history.train_loss) - 1
    return history


@torch.no_grad()
def predict_outputs(
    model: TransferModel, data: Batches, *, device: str | torch.device = "auto", mixed_precision: bool = False
) -> torch.Tensor:
    """Raw outputs (logits or values) for every row that counts (``mask``), concatenated, float32 on CPU.

    Parameters
    ----------
    model
        A trained strategy; it is moved to ``device`` and left there in eval mode.
    data
        Batch source of the rows to predict.
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or an explicit device.
    mixed_precision
        Autocast on CUDA. Off by default: in float32 a model gives the same outputs on every call and on every
        device up to float32 rounding, where under bf16 autocast the order of a GPU's atomic sums moved one
        model's probabilities by up to 6e-4 between calls (enough for a save/load round trip or a full-batch vs
        minibatch pass to disagree). Turn it on to trade that for speed, e.g. with a large frozen source.
    """
    device = resolve_device(device)
    model.to(device).eval()
    outputs = []
    for batch in data.to(device).batches(None):
        with _autocast(device, mixed_precision):
            out = model(**_model_inputs(batch))
        mask = batch.get("mask")
        outputs.append((out if mask is None else out[mask]).float().cpu())
    return torch.cat(outputs)

