"""The two benchmark protocols: ``paper`` (published architectures, epochs, sample sizes) and ``quick``
(narrow models and few epochs that finish on a 2-core CPU in minutes, for smoke runs and CI)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass

__all__ = ["PROTOCOLS", "Protocol", "get_protocol", "override"]


@dataclass(frozen=True)
class Protocol:
    """Every size and schedule a benchmark run depends on.

    Attributes
    ----------
    name
        ``"paper"`` or ``"quick"``.
    seeds
        Default run seeds (each run redraws the target subset and initialises every model).
    source_seed
        Seed of the source's data draw and pretraining (the source is trained once and frozen).
    big_channels, feature_dim
        Source CNN convolution widths and ``f_rep`` width.
    small_channels, small_hidden
        Target CNN (NoTrans / REFINE's ``h``) widths.
    resnet_width
        First-stage width of the ResNet-18 source and ResNet-10 students of Clipart->Sketch (paper: 64).
    vision_source_epochs, vision_target_epochs
        Epochs of source pretraining and of target training.
    vision_optimizer, vision_lr
        Optimiser of the vision models (paper: SGD lr 0.01, momentum 0.9; quick: Adam 1e-3, which trains
        the un-normalised CNNs in far fewer steps). LoRA and DANN-Gate always use Adam 1e-3.
    n_source, n_target, n_usps, n_mnist, n_stl, n_test
        Sample sizes: CIFAR source images, CIFAR target images, USPS source digits, MNIST target digits,
        STL-10 target images, test images (``None``: the whole test set).
    vision_source_optimizer, vision_source_lr
        Optimiser of source pretraining when it differs from the target's (``None``: the same). Used to
        pretrain the paper-size source with Adam in a few epochs on a CPU while the target side keeps the
        paper's SGD schedule.
    text_*
        Transformer sizes and schedule of the text tasks; ``text_target_per_class`` and
        ``text_test_per_class`` are reviews per sentiment class.
    """

    name: str
    seeds: tuple[int, ...]
    source_seed: int
    big_channels: tuple[int, ...]
    feature_dim: int
    small_channels: tuple[int, ...]
    small_hidden: int
    resnet_width: int
    vision_source_epochs: int
    vision_target_epochs: int
    vision_optimizer: str
    vision_lr: float
    n_source: int
    n_target: int
    n_usps: int
    n_mnist: int
    n_stl: int
    n_test: int | None
    text_d_model: int
    text_heads: int
    text_ff: int
    text_layers: int
    text_max_len: int
    text_vocab: int
    text_feature_dim: int
    text_source_epochs: int
    text_target_epochs: int
    text_lr: float
    text_target_per_class: int
    text_test_per_class: int
    vision_source_optimizer: str | None = None
    vision_source_lr: float | None = None

    @property
    def base(self) -> str:
        """The protocol this one derives from (``"paper"`` for ``"paper+n_test=2000"``)."""
        return self.name.split("+", 1)[0]

    def to_dict(self) -> dict:
        return asdict(self)


PAPER = Protocol(
    name="paper",
    seeds=(42, 43, 44, 45, 46),
    source_seed=42,
    big_channels=(80, 160, 320, 640, 640, 768),
    feature_dim=2560,
    small_channels=(32, 64, 64),
    small_hidden=512,
    resnet_width=64,
    vision_source_epochs=60,
    vision_target_epochs=30,
    vision_optimizer="sgd",
    vision_lr=0.01,
    n_source=10_000,
    n_target=4_000,
    n_usps=5_000,
    n_mnist=100,
    n_stl=2_000,
    n_test=None,
    text_d_model=512,
    text_heads=8,
    text_ff=1024,
    text_layers=6,
    text_max_len=256,
    text_vocab=2**15,
    text_feature_dim=2560,
    text_source_epochs=20,
    text_target_epochs=10,
    text_lr=1e-4,
    text_target_per_class=200,
    text_test_per_class=500,
)

QUICK = Protocol(
    name="quick",
    seeds=(42, 43, 44),
    source_seed=42,
    big_channels=(16, 32, 64, 64, 64, 96),
    feature_dim=256,
    small_channels=(8, 16, 16),
    small_hidden=64,
    resnet_width=8,
    vision_source_epochs=12,
    vision_target_epochs=15,
    vision_optimizer="adam",
    vision_lr=1e-3,
    n_source=3_000,
    n_target=500,
    n_usps=2_000,
    n_mnist=100,
    n_stl=500,
    n_test=2_000,
    text_d_model=64,
    text_heads=4,
    text_ff=128,
    text_layers=2,
    text_max_len=128,
    text_vocab=2**14,
    text_feature_dim=256,
    text_source_epochs=8,
    text_target_epochs=10,
    text_lr=5e-4,
    text_target_per_class=200,
    text_test_per_class=500,
)

PROTOCOLS = {"paper": PAPER, "quick": QUICK}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``"paper"`` or ``"quick"``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


def override(protocol: Protocol, settings: list[str] | tuple[str, ...]) -> Protocol:
    """A copy of ``protocol`` with ``field=value`` settings applied (e.g. ``n_target=2000``).

    The copy's name records the changes (``quick+n_target=2000``), so its results and cached source are
    kept apart from the unmodified protocol's. Tuples are given comma-separated (``small_channels=32,64,64``).
    """
    if not settings:
        return protocol
    hints = typing.get_type_hints(Protocol)
    changes: dict = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or key not in hints or key == "name":
            fields = ", ".join(f for f in hints if f != "name")
            raise ValueError(f"Cannot set {item!r}: use FIELD=VALUE with FIELD one of {fields}.")
        hint = str(hints[key])
        try:
            if "tuple" in hint:
                changes[key] = tuple(int(v) for v in raw.split(",") if v)
            elif raw.lower() == "none" and "None" in hint:
                changes[key] = None
            elif "float" in hint:
                changes[key] = float(raw)
            elif "int" in hint:
                changes[key] = int(raw)
            else:
                changes[key] = raw
        except ValueError:
            kind = getattr(hints[key], "__name__", hint)
            raise ValueError(f"Cannot set {item!r}: {key} takes a value of type {kind}, got {raw!r}.") from None
    name = "+".join([protocol.name, *sorted(settings)])
    return dataclasses.replace(protocol, name=name, **changes)
