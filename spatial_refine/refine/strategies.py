"""Every transfer strategy the REFINE paper compares, behind one interface.

A strategy is a :class:`TransferModel`: ``forward(x, features=None, edge_index=None)`` returns outputs
(logits or regression values) for every row of the batch, ``trainable_named_parameters()`` is exactly
what the optimiser updates, and ``training_loss`` may add strategy-specific terms (distillation, the
adversarial discriminator).

``x`` is the raw target input (whatever the residual encoder or the source takes), ``features`` the
precomputed frozen representation ``f_rep(x)`` (cached once: the source is frozen), ``edge_index`` the
graph for graph encoders.

=============  ==========================================================  =====================
name           model                                                       trains
=============  ==========================================================  =====================
``notrans``    ``head(h(x))``, from scratch                                h, head
``linear_probe`` ``head(f_rep(x))``                                        head
``adapter``    ``head(f + A(f))``, A a bottleneck MLP on ``f = f_rep(x)``  A, head
``finetune``   ``head(f'(x))``, f' a copy of the source features           f', head
``lora``       as finetune, the source's last Linear gets a low-rank       LoRA factors, head
               update ``W + (alpha/r) B A`` and everything else is frozen
``dann_gate``  lora, plus a label-conditioned domain discriminator on      LoRA, head,
               the logits behind gradient reversal                         discriminator
``distill``    ``head(h(x))`` trained on CE and the source's soft labels   h, head
``refine``     ``head([h(x), f_rep(x)])``, ONE linear layer on the concat  h, head
=============  ==========================================================  =====================
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .source import FrozenSource

__all__ = [
    "REFINE_STARTS",
    "STRATEGIES",
    "Adapter",
    "DANNGate",
    "Distill",
    "FeatureStandardizer",
    "FineTune",
    "LinearProbe",
    "LoRA",
    "LoRALinear",
    "NoTrans",
    "Refine",
    "TransferModel",
    "build_strategy",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RefineStart = Literal["auto", "probe", "residual", "cold"]
#: REFINE's starts (see :class:`Refine`)
REFINE_STARTS: tuple[str, ...] = ("auto", "probe", "residual", "cold")


class FeatureStandardizer(nn.Module):
    """Fixed per-feature standardisation ``(f - mean) / std`` of the frozen features.

    The statistics are buffers set once from the training features (:meth:`fit`), never trained. It puts
    ``f_rep`` on the scale of ``h(x)``, so the joint linear head is well conditioned whatever the scale of
    the source's features.

    A feature that is constant on the training rows (``std < 1e-6``, e.g. a ReLU unit dead on every
    training image) carries no information about the labels; it is mapped to 0 (its ``std`` is stored as
    infinity) instead of being divided by ~0, which would blow up any test row where it is not constant.
    """

    def __init__(self, dim: int, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        #: whether :meth:`fit` set the statistics (not saved: a loaded model's buffers hold them)
        self.fitted = False

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> FeatureStandardizer:
        self.fitted = True
        if self.enabled:
            features = features.float()
            self.mean.copy_(features.mean(0).to(self.mean.device))
            std = features.std(0, unbiased=False)
            std = torch.where(std < 1e-6, torch.full_like(std, float("inf")), std)
            self.std.copy_(std.to(self.std.device))
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return features
        return (features - self.mean) / self.std


class TransferModel(nn.Module):
    """Base class: the contract every strategy follows."""

    #: needs the frozen features ``f_rep(x)`` (cacheable, passed as ``features``)
    uses_features: bool = False
    #: runs (a trainable copy of) the source on the raw input at every step
    uses_source_live: bool = False
    #: needs the raw input ``x`` (residual encoder or live source)
    uses_input: bool = True

    def encode(self, encoder: nn.Module, x: torch.Tensor, edge_index: torch.Tensor | None) -> torch.Tensor:
        return encoder(x) if edge_index is None else encoder(x, edge_index)

    def frozen_features(self, x: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        if features is not None:
            return features
        source = getattr(self, "source", None)
        if source is None or x is None:
            raise ValueError(
                f"{type(self).__name__} needs the frozen features: pass `features` or build it with a source module."
            )
        return source(x)

    def trainable_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Exactly the parameters the optimiser updates (never the frozen source)."""
        for name, param in self.named_parameters():
            if not name.startswith("source.") and param.requires_grad:
                yield name, param

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimiser parameter groups; strategies with several learning rates override this."""
        return [{"params": [p for _, p in self.trainable_named_parameters()], "lr": lr, "weight_decay": weight_decay}]

    def training_loss(self, batch: dict, outputs: torch.Tensor, loss_fn: LossFn, progress: float) -> torch.Tensor:
        """The loss minimised for one batch; ``progress`` runs from 0 to 1 over training."""
        return loss_fn(*_masked(outputs, batch))

    def fit_feature_statistics(self, features: torch.Tensor) -> None:
        """Set fixed feature statistics from the training features (no-op unless overridden)."""
        scaler = getattr(self, "scaler", None)
        if scaler is not None:
            scaler.fit(features)


def _masked(outputs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    mask = batch.get("mask")
    y = batch["y"]
    if mask is None:
        return outputs, y
    return outputs[mask], y[mask]


def _head(in_dim: int, n_outputs: int, hidden: int | None, dropout: float) -> nn.Module:
    if hidden is None:
        return nn.Linear(in_dim, n_outputs)
    # Explicit opt-in only: nonlinear layers after the fusion lose REFINE's protection (paper ablation).
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs))


class NoTrans(TransferModel):
    """Training from scratch: the residual encoder and a linear head, no source."""

    def __init__(self, encoder: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(_out_dim(encoder), n_outputs)

    def forward(self, x=None, features=None, edge_index=None):
        return self.head(self.encode(self.encoder, x, edge_index))


class LinearProbe(TransferModel):
    """One linear layer on the frozen features."""

    uses_features = True
    uses_input = False

    def __init__(self, feature_dim: int, n_outputs: int, *, source: FrozenSource | None = None, standardize: bool = True):
        super().__init__()
        self.source = source
        self.scaler = FeatureStandardizer(feature_dim, standardize)
        self.head = nn.Linear(feature_dim, n_outputs)

    def forward(self, x=None, features=None, edge_index=None):
        return self.head(self.scaler(self.frozen_features(x, features)))


class Adapter(TransferModel):
    """A bottleneck MLP on the frozen features (``f + up(dropout(relu(down(f))))``), then a linear head."""

    uses_features = True
    uses_input = False

    def __init__(
        self,
        feature_dim: int,
        n_outputs: int,
        *,
        bottleneck: int = 128,
        dropout: float = 0.5,
        source: FrozenSource | None = None,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        self.source = source
        self.scaler = FeatureStandardizer(feature_dim, standardize)
        self.adapter = nn.Sequential(
            nn.Linear(feature_dim, bottleneck), nn.ReLU(), nn.Dropout(dropout), nn.Linear(bottleneck, feature_dim)
        )
        self.head = nn.Linear(feature_dim, n_outputs)

    def forward(self, x=None, features=None, edge_index=None):
        f = self.scaler(self.frozen_features(x, features))
        return self.head(f + self.adapter(f))


class Refine(TransferModel):
    """REFINE: ONE linear layer on ``[h(x), f_rep(x)]``; only h and that layer train.

    Parameters
    ----------
    encoder
        The residual encoder ``h`` on the raw target input (exposes ``out_dim``).
    feature_dim
        Width of ``f_rep``.
    n_outputs
        Number of classes or regression targets.
    source
        Frozen source, used only when features are not passed precomputed.
    standardize
        Standardise ``f_rep`` with fixed training statistics (see :class:`FeatureStandardizer`).
    head_hidden
        ``None`` (default): the linear head of the method. An integer adds a hidden ReLU layer after the
        fusion. The paper's ablation shows this loses the no-negative-transfer protection: opt in knowingly.
    head_dropout
        Dropout of that hidden layer.
    start
        Where joint training starts. ``"probe"``: fit a linear probe on the frozen features first and start
        from it (LP-FT, Kumar et al. 2022); joint training then begins at the probe's solution.
        ``"residual"``: train ``h`` and its head block from scratch first (the NoTrans model), then add the
        frozen block at zero; joint training begins at the from-scratch solution. ``"cold"``: the usual
        random initialisation. ``"auto"`` (default): train the ``"probe"`` and the ``"residual"`` starts
        and keep the one with the lower validation loss (``"probe"`` without a validation set).
        With early stopping the starting weights count as an epoch, so a run never ends worse on
        validation than where it began: exactly the from-scratch model for ``"residual"``, the probe plus
        the (random) residual block for ``"probe"``. ``"auto"`` thus keeps REFINE at about the better of
        the linear probe and training from scratch on validation data, or above. A cold start does not: the frozen
        features, informative from the first step, take up the loss before ``h`` has learnt anything,
        and early stopping then ends training with the residual starved (osmFISH regions, 100 labelled
        cells, one seed: 0.55 macro-F1 cold, 0.75 from scratch, 0.72 from the residual start; CIFAR-10 with
        an 80%-flipped source, 2,000 targets, 5 seeds: cold 39.5, residual start 42.2, NoTrans 39.3).
        Warm starts apply to the linear head only.
    """

    uses_features = True

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        n_outputs: int,
        *,
        source: FrozenSource | None = None,
        standardize: bool = True,
        head_hidden: int | None = None,
        head_dropout: float = 0.0,
        start: RefineStart = "auto",
    ) -> None:
        super().__init__()
        if start not in REFINE_STARTS:
            raise ValueError(f"start must be one of {', '.join(map(repr, REFINE_STARTS))}, got {start!r}.")
        self.encoder = encoder
        self.source = source
        self.scaler = FeatureStandardizer(feature_dim, standardize)
        self.head = _head(_out_dim(encoder) + feature_dim, n_outputs, head_hidden, head_dropout)
        self.start: RefineStart = start if head_hidden is None else "cold"

    def start_candidates(self, has_validation: bool) -> tuple[str, ...]:
        """The starts :func:`~spatial_refine.refine.fit` trains (and chooses among on validation)."""
        if self.start != "auto":
            return (self.start,)
        return ("probe", "residual") if has_validation else ("probe",)

    def probe(self) -> LinearProbe:
        """A linear probe on the same (standardised) features, for the warm start."""
        probe = LinearProbe(self.scaler.mean.numel(), self.head.out_features, source=self.source)
        probe.scaler.load_state_dict(self.scaler.state_dict())
        probe.scaler.enabled, probe.scaler.fitted = self.scaler.enabled, self.scaler.fitted
        return probe.to(self.scaler.mean.device)

    @torch.no_grad()
    def start_from_probe(self, probe: LinearProbe) -> None:
        """Head := [its random init, probe weights], bias := probe bias.

        The residual block keeps its random initialisation rather than zero: at zero, ``h`` gets no
        gradient until that block has grown, and on larger targets with a poor source early stopping then
        ends training with ``h`` under-trained (CIFAR-10 flip80, 2,000 targets: 37.6 with a zero block vs
        39.4 with a random one, NoTrans 39.6; ``benchmarks/results/diagnose_warm_start_*.md``).
        """
        h_dim = self.head.in_features - probe.head.in_features
        self.head.weight[:, h_dim:] = probe.head.weight
        self.head.bias.copy_(probe.head.bias)

    def from_scratch(self) -> NoTrans:
        """The residual path alone (a copy of ``h`` and a new head), for the residual start."""
        return NoTrans(copy.deepcopy(self.encoder), self.head.out_features).to(self.scaler.mean.device)

    @torch.no_grad()
    def start_from_scratch(self, scratch: NoTrans) -> None:
        """``h`` := the trained from-scratch encoder; head := [its head, zeros for the frozen block]: the
        model computes exactly the from-scratch solution, and the frozen block grows from zero only where
        it lowers the loss."""
        self.encoder.load_state_dict(scratch.encoder.state_dict())
        h_dim = scratch.head.in_features
        self.head.weight.zero_()
        self.head.weight[:, :h_dim] = scratch.head.weight
        self.head.bias.copy_(scratch.head.bias)

    def forward(self, x=None, features=None, edge_index=None):
        h = self.encode(self.encoder, x, edge_index)
        f = self.scaler(self.frozen_features(x, features))
        return self.head(torch.cat([h, f.to(h.dtype)], dim=1))


class FineTune(TransferModel):
    """Full fine-tuning: a trainable deep copy of the source features plus a new linear head."""

    uses_source_live = True

    def __init__(self, source: FrozenSource, feature_dim: int, n_outputs: int) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(_require_source(source, "finetune").features)
        for param in self.backbone.parameters():
            param.requires_grad_(True)
        self.head = nn.Linear(feature_dim, n_outputs)

    def forward(self, x=None, features=None, edge_index=None):
        return self.head(self.backbone(x))


class LoRALinear(nn.Module):
    """``W x + b + (alpha / r) B A x`` with ``W, b`` frozen and ``B`` initialised at zero (Hu et al. 2021)."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scaling


class _EvalBackbone(nn.Module):
    """Holds a source copy that always runs in eval mode (BatchNorm and dropout frozen) while LoRA trains."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> _EvalBackbone:
        self.training = False
        self.module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class LoRA(TransferModel):
    """LoRA on the last ``nn.Linear`` of (a copy of) the source features, plus a new linear head.

    The paper adapts "the source's last FC" (rank 8, alpha 16). With a new label space that layer is
    re-initialised anyway, so here the low-rank update goes on the last Linear layer *producing*
    ``f_rep`` (e.g. the 768 -> 2560 layer of the paper's CNN) and a new linear head reads the adapted
    features. Every source weight stays frozen; only the LoRA factors and the head train.
    """

    uses_source_live = True

    def __init__(self, source: FrozenSource, feature_dim: int, n_outputs: int, *, rank: int = 8, alpha: float = 16.0):
        super().__init__()
        backbone = copy.deepcopy(_require_source(source, "lora").features)
        for param in backbone.parameters():
            param.requires_grad_(False)
        parent, attr, linear = _last_linear(backbone)
        lora = LoRALinear(linear, rank=rank, alpha=alpha)
        if parent is None:
            backbone = lora
        else:
            setattr(parent, attr, lora)
        self.backbone = _EvalBackbone(backbone)
        self.head = nn.Linear(feature_dim, n_outputs)

    def forward(self, x=None, features=None, edge_index=None):
        return self.head(self.backbone(x))


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coefficient):
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coefficient * grad, None


class DANNGate(LoRA):
    """The paper's DANN-Gate baseline: the LoRA model plus a label-conditioned domain discriminator.

    Each target minibatch is split in half into pseudo-source and target; the discriminator sees
    ``[softmax(logits), one_hot(y)]`` through a gradient-reversal layer whose coefficient follows
    ``2 / (1 + exp(-10 p)) - 1`` over training progress ``p``. Head and LoRA train at ``lr``, the
    discriminator at ``discriminator_lr`` (paper: Adam 1e-3 and 5e-4, weight decay 1e-4).
    Classification only.
    """

    def __init__(
        self,
        source: FrozenSource,
        feature_dim: int,
        n_outputs: int,
        *,
        rank: int = 8,
        alpha: float = 16.0,
        discriminator_hidden: int = 64,
        discriminator_lr: float = 5e-4,
    ) -> None:
        super().__init__(source, feature_dim, n_outputs, rank=rank, alpha=alpha)
        self.n_outputs = n_outputs
        self.discriminator_lr = discriminator_lr
        self.discriminator = nn.Sequential(
            nn.Linear(2 * n_outputs, discriminator_hidden), nn.ReLU(), nn.Linear(discriminator_hidden, 1)
        )

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        main = [p for n, p in self.trainable_named_parameters() if not n.startswith("discriminator.")]
        return [
            {"params": main, "lr": lr, "weight_decay": weight_decay},
            {"params": list(self.discriminator.parameters()), "lr": self.discriminator_lr, "weight_decay": weight_decay},
        ]

    def training_loss(self, batch, outputs, loss_fn, progress):
        logits, y = _masked(outputs, batch)
        task = loss_fn(logits, y)
        if len(y) < 2:
            return task
        coefficient = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        reversed_logits = _GradientReversal.apply(logits, coefficient)
        conditioned = torch.cat([reversed_logits.softmax(1), F.one_hot(y, self.n_outputs).to(logits.dtype)], 1)
        domain = torch.zeros(len(y), device=logits.device)
        domain[len(y) // 2 :] = 1.0  # first half pseudo-source, second half target
        adversarial = F.binary_cross_entropy_with_logits(self.discriminator(conditioned).squeeze(1), domain)
        return task + adversarial


class Distill(TransferModel):
    """Knowledge distillation (Hinton et al.): a from-scratch student ``head(h(x))`` trained on
    ``alpha * CE(y) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    The teacher is the frozen source with its own head, so the label spaces must match.
    """

    uses_features = True

    def __init__(
        self, encoder: nn.Module, source: FrozenSource, n_outputs: int, *, temperature: float = 2.0, alpha: float = 0.5
    ) -> None:
        super().__init__()
        if _require_source(source, "distill").head is None:
            raise ValueError(
                "distill needs the source's head: pass FrozenSource(features, head=...) to build_strategy, or "
                "source_head= to RefineClassifier."
            )
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError("distill needs temperature > 0 and 0 <= alpha <= 1.")
        self.encoder = encoder
        self.source = source
        self.head = nn.Linear(_out_dim(encoder), n_outputs)
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, x=None, features=None, edge_index=None):
        return self.head(self.encode(self.encoder, x, edge_index))

    def training_loss(self, batch, outputs, loss_fn, progress):
        student, y = _masked(outputs, batch)
        features = self.frozen_features(batch.get("x"), batch.get("features"))
        if batch.get("mask") is not None:
            features = features[batch["mask"]]
        teacher = self.source.logits(features)
        if teacher.shape[1] != student.shape[1]:
            raise ValueError(
                f"distill needs matching label spaces: the source head gives {teacher.shape[1]} outputs, "
                f"the target has {student.shape[1]}."
            )
        t = self.temperature
        soft = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher.float() / t, 1), reduction="batchmean")
        return self.alpha * loss_fn(student, y) + (1 - self.alpha) * t * t * soft


def _out_dim(encoder: nn.Module) -> int:
    out_dim = getattr(encoder, "out_dim", None)
    if not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError("The residual encoder must expose a positive integer `out_dim` (the width of h(x)).")
    return out_dim


def _require_source(source: FrozenSource | None, strategy: str) -> FrozenSource:
    if source is None:
        raise ValueError(f"Strategy {strategy!r} needs the source model: pass source=FrozenSource(features_module).")
    return source


def _last_linear(module: nn.Module) -> tuple[nn.Module | None, str, nn.Linear]:
    if isinstance(module, nn.Linear):
        return None, "", module
    # the last Linear in module order (depth-first, as registered): e.g. the feature head after a trunk
    found = None
    for qualified, child in module.named_modules():
        if isinstance(child, nn.Linear):
            found = qualified
    if found is None:
        raise ValueError("LoRA needs an nn.Linear layer in the source's feature module; none was found.")
    parent_name, _, attr = found.rpartition(".")
    return module.get_submodule(parent_name), attr, module.get_submodule(found)


STRATEGIES = ("notrans", "linear_probe", "adapter", "finetune", "lora", "dann_gate", "distill", "refine")


def build_strategy(
    name: str,
    *,
    n_outputs: int,
    encoder: nn.Module | None = None,
    source: FrozenSource | nn.Module | None = None,
    feature_dim: int | None = None,
    standardize_features: bool = True,
    head_hidden: int | None = None,
    head_dropout: float = 0.0,
    adapter_bottleneck: int = 128,
    adapter_dropout: float = 0.5,
    lora_rank: int = 8,
    lora_alpha: float = 16.0,
    distill_temperature: float = 2.0,
    distill_alpha: float = 0.5,
    start: RefineStart = "auto",
) -> TransferModel:
    """Build a strategy by name (one of :data:`STRATEGIES`) from its parts.

    ``encoder`` is the residual encoder (needed by notrans, distill, refine); ``source`` the frozen source
    (a :class:`FrozenSource` or a plain module taken as its feature extractor; needed by finetune, lora,
    dann_gate, distill, and by the feature strategies when features are not precomputed); ``feature_dim``
    the width of ``f_rep``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}.")
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be positive, got {n_outputs}.")
    if source is not None and not isinstance(source, FrozenSource):
        source = FrozenSource(source)
    if name in ("notrans", "distill", "refine") and encoder is None:
        raise ValueError(f"Strategy {name!r} needs a residual encoder: pass encoder=...")
    if name not in ("notrans", "distill") and feature_dim is None:
        raise ValueError(f"Strategy {name!r} needs feature_dim, the width of the frozen features.")
    if name == "notrans":
        return NoTrans(encoder, n_outputs)
    if name == "linear_probe":
        return LinearProbe(feature_dim, n_outputs, source=source, standardize=standardize_features)
    if name == "adapter":
        return Adapter(
            feature_dim,
            n_outputs,
            bottleneck=adapter_bottleneck,
            dropout=adapter_dropout,
            source=source,
            standardize=standardize_features,
        )
    if name == "finetune":
        return FineTune(source, feature_dim, n_outputs)
    if name == "lora":
        return LoRA(source, feature_dim, n_outputs, rank=lora_rank, alpha=lora_alpha)
    if name == "dann_gate":
        return DANNGate(source, feature_dim, n_outputs, rank=lora_rank, alpha=lora_alpha)
    if name == "distill":
        return Distill(encoder, source, n_outputs, temperature=distill_temperature, alpha=distill_alpha)
    return Refine(
        encoder,
        feature_dim,
        n_outputs,
        source=source,
        standardize=standardize_features,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        start=start,
    )
