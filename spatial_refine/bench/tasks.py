"""The benchmark tasks: which data the source and the target come from, and how each is drawn.

A task gives the source's training set (:meth:`Task.source`) and, for every run seed, a target training
subset and the target test set (:meth:`Task.target`). Images are normalised ``(n, 3, 32, 32)`` floats;
texts are token ids. Data files are found through ``data_manifest.yaml`` (:func:`resolve`), or through
explicit ``paths`` overrides (tests, custom copies).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import data as bd
from .protocols import Protocol

__all__ = [
    "PUBLISHED",
    "TASKS",
    "DataMissingError",
    "Split",
    "Task",
    "get_task",
    "resolve",
    "tasks_for",
]

Paths = Mapping[str, str | Path] | None

# Published accuracies (%), mean over 5 runs (docs/refine-protocol.md); keys are our strategy names.
_MAIN = ("notrans", "linear_probe", "adapter", "lora", "dann_gate", "refine")
_STRESS = ("notrans", "linear_probe", "adapter", "distill", "lora", "dann_gate", "refine")
PUBLISHED: dict[str, dict[str, float]] = {
    "cifar100-10": dict(zip(_MAIN, (56.58, 38.93, 38.23, 43.14, 43.22, 54.40))),
    "cifar10-100": dict(zip(_MAIN, (18.32, 7.01, 6.56, 6.82, 5.20, 18.59))),
    "cifar10-stl": dict(zip(_MAIN, (48.69, 50.27, 49.29, 50.75, 47.70, 53.42))),
    "clipart-sketch": dict(zip(_MAIN, (18.88, 18.34, 18.24, 16.90, 16.58, 20.34))),
    "usps-mnist": dict(zip(_MAIN, (62.07, 67.00, 61.87, 64.82, 52.21, 70.05))),
    "books-kitchen": dict(zip(_MAIN, (71.66, 66.74, 71.34, 66.96, 66.60, 72.72))),
    "dvd-electronics": dict(zip(_MAIN, (68.52, 66.06, 65.86, 66.56, 66.90, 70.34))),
    "cifar10-clean": dict(zip(_STRESS, (56.05, 65.45, 65.16, 59.62, 65.99, 65.70, 65.57))),
    "cifar10-flip40": dict(zip(_STRESS, (56.05, 65.54, 65.78, 57.01, 65.47, 65.40, 66.23))),
    "cifar10-flip80": dict(zip(_STRESS, (56.57, 19.46, 18.49, 53.51, 22.92, 20.83, 56.58))),
    "cifar10-semantic": dict(zip(_STRESS, (56.53, 48.54, 47.17, 57.80, 49.96, 49.04, 58.65))),
    "cifar10-imbalance": dict(zip(_STRESS, (56.44, 53.15, 51.64, 54.89, 53.21, 53.05, 56.54))),
}


class DataMissingError(FileNotFoundError):
    """A task's data file is not available (names the manifest entry)."""


def resolve(entry: str, task: str, paths: Paths = None, data_dir: str | Path | None = None) -> Path:
    """Path of manifest entry ``entry``: from ``paths`` if given there, else :func:`spatial_refine.datasets.fetch`.

    Raises
    ------
    DataMissingError
        When the file is nowhere to be found, naming the manifest entry and where it is looked for.
    """
    if paths and entry in paths:
        path = Path(paths[entry])
        if not path.exists():
            raise DataMissingError(f"Task {task!r}: the path given for manifest entry {entry!r} does not exist: {path}.")
        return path
    from ..datasets import DatasetUnavailableError, fetch, get_entry

    try:
        return fetch(entry, data_dir=data_dir, progressbar=False)
    except DatasetUnavailableError as err:
        where = get_entry(entry).path
        raise DataMissingError(
            f"Task {task!r} needs manifest entry {entry!r} (data_manifest.yaml), which is not available: place it "
            f"at $SPATIAL_REFINE_DATA_DIR/{where} (or pass --data-dir / --path {entry}=FILE). Details: {err}"
        ) from err


@dataclass
class Split:
    """Inputs and integer labels; ``n_classes`` is the size of the label space."""

    x: torch.Tensor
    y: np.ndarray
    n_classes: int


@dataclass
class Task:
    """A benchmark task.

    Attributes
    ----------
    name
        CLI name, e.g. ``"usps-mnist"``.
    modality
        ``"vision"`` or ``"text"``.
    entries
        Manifest entries the task reads.
    description
        One line on what the source and target are.
    same_label_space
        Source and target share their classes (knowledge distillation applies).
    batch_size
        Minibatch size of the protocol (32, or 64 for the CIFAR-10 stress tests).
    arch
        Vision models: ``"cnn"`` (BigCNN source, small CNN target) or ``"resnet"`` (ResNet-18 source,
        ResNet-10 target, Clipart->Sketch).
    paper_epochs
        ``(source, target)`` epochs overriding the paper protocol's (Clipart->Sketch: 20 and 20).
    """

    name: str
    modality: str
    entries: tuple[str, ...]
    description: str
    same_label_space: bool
    batch_size: int
    _source: Callable[[Protocol, Callable[[str], Path]], Split] = field(repr=False)
    _target: Callable[[Protocol, int, Callable[[str], Path]], tuple[Split, Split]] = field(repr=False)
    arch: str = "cnn"
    paper_epochs: tuple[int, int] | None = None

    def locate(self, paths: Paths = None, data_dir: str | Path | None = None) -> Callable[[str], Path]:
        """A resolver of this task's manifest entries."""
        return functools.partial(_resolve_for, task=self.name, paths=paths, data_dir=data_dir)

    def check_data(self, paths: Paths = None, data_dir: str | Path | None = None) -> None:
        """Raise one :class:`DataMissingError` naming every missing entry."""
        errors = []
        for entry in self.entries:
            try:
                resolve(entry, self.name, paths, data_dir)
            except DataMissingError as err:
                errors.append(str(err))
        if errors:
            raise DataMissingError("\n".join(errors))

    def source(self, protocol: Protocol, paths: Paths = None, data_dir: str | Path | None = None) -> Split:
        """The source model's training set (drawn with ``protocol.source_seed``)."""
        return self._source(protocol, self.locate(paths, data_dir))

    def target(
        self, protocol: Protocol, seed: int, paths: Paths = None, data_dir: str | Path | None = None
    ) -> tuple[Split, Split]:
        """Target training subset (redrawn with ``seed``) and target test set."""
        return self._target(protocol, seed, self.locate(paths, data_dir))

    @property
    def published(self) -> dict[str, float]:
        return PUBLISHED.get(self.name, {})


def _resolve_for(entry: str, *, task: str, paths: Paths, data_dir) -> Path:
    return resolve(entry, task, paths, data_dir)


# ------------------------------------------------------------------------------------------------
# helpers


def _subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """``n`` distinct indices of ``range(n_total)`` in a seeded random order (all of them if ``n`` is None)."""
    order = np.random.default_rng(seed).permutation(n_total)
    return np.sort(order if n is None else order[: min(n, n_total)])


def _cifar10(locate, split: str) -> bd.ImageFolder:
    return bd.ImageFolder.open(locate("cifar10_jpeg"), split)


def _images(folder: bd.ImageFolder, indices: np.ndarray) -> torch.Tensor:
    return bd.normalize(folder.load(indices))


def _test_split(folder: bd.ImageFolder, protocol: Protocol) -> Split:
    rows = _subset(len(folder), protocol.n_test, protocol.source_seed + 1)
    return Split(_images(folder, rows), folder.labels[rows], len(folder.classes))


# ------------------------------------------------------------------------------------------------
# CIFAR-10 stress tests: the source sees corrupted CIFAR-10, the target clean CIFAR-10


SEMANTIC_PAIRS = ((3, 5), (4, 7), (1, 9), (0, 8))  # cat-dog, deer-horse, automobile-truck, airplane-ship
IMBALANCE = (0.35, 0.30, 0.10, 0.07, 0.06, 0.045, 0.03, 0.02, 0.015, 0.01)
SPLIT5_SOURCE = (0, 1, 2, 3, 4)  # airplane automobile bird cat deer
SPLIT5_TARGET = (5, 6, 7, 8, 9)  # dog frog horse ship truck


def flip_labels(y: np.ndarray, p: float, n_classes: int, seed: int) -> np.ndarray:
    """With probability ``p``, replace each label by a uniformly chosen *other* class."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < p
    shift = rng.integers(1, n_classes, size=len(y))
    return np.where(flip, (y + shift) % n_classes, y)


def _source_pool(corruption: str, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the source draw within the CIFAR-10 training set."""
    rng = np.random.default_rng(seed)
    if corruption == "imbalance":
        counts = np.round(np.asarray(IMBALANCE) * n).astype(int)
        parts = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(counts)]
        return np.sort(np.concatenate(parts))
    allowed = np.arange(len(labels))
    if corruption == "split5":
        allowed = np.flatnonzero(np.isin(labels, SPLIT5_SOURCE))
    return np.sort(rng.permutation(allowed)[:n])


def _stress_source(corruption: str):
    def source(protocol: Protocol, locate) -> Split:
        folder = _cifar10(locate, "train")
        rows = _source_pool(corruption, folder.labels, protocol.n_source, protocol.source_seed)
        x, y = _images(folder, rows), folder.labels[rows].copy()
        seed = protocol.source_seed + 7
        if corruption.startswith("flip"):
            y = flip_labels(y, int(corruption[4:]) / 100, 10, seed)
        elif corruption == "semantic":
            rng = np.random.default_rng(seed)
            flip = rng.random(len(y)) < 0.5
            for a, b in SEMANTIC_PAIRS:
                ya, yb = (y == a) & flip, (y == b) & flip
                y[ya], y[yb] = b, a
            noise = torch.from_numpy(rng.normal(0.0, 0.2, size=tuple(x.shape)).astype(np.float32))
            x = x + noise / 0.5  # std 0.2 in [0, 1] pixel units = 0.4 after Normalize(0.5, 0.5)
        if corruption == "split5":
            return Split(x, np.searchsorted(SPLIT5_SOURCE, y), 5)
        return Split(x, y, 10)

    return source


def _stress_target(corruption: str):
    def target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
        folder = _cifar10(locate, "train")
        used = _source_pool(corruption, folder.labels, protocol.n_source, protocol.source_seed)
        pool = np.setdiff1d(np.arange(len(folder)), used)
        classes = SPLIT5_TARGET if corruption == "split5" else tuple(range(10))
        pool = pool[np.isin(folder.labels[pool], classes)]
        rows = np.sort(np.random.default_rng(seed).permutation(pool)[: protocol.n_target])
        test_folder = _cifar10(locate, "test")
        test_rows = np.flatnonzero(np.isin(test_folder.labels, classes))
        test_rows = test_rows[_subset(len(test_rows), protocol.n_test, protocol.source_seed + 1)]
        k = len(classes)
        train = Split(_images(folder, rows), np.searchsorted(classes, folder.labels[rows]), k)
        test = Split(_images(test_folder, test_rows), np.searchsorted(classes, test_folder.labels[test_rows]), k)
        return train, test

    return target


# ------------------------------------------------------------------------------------------------
# cross-dataset vision tasks


def _usps_source(protocol: Protocol, locate) -> Split:
    images, labels = bd.load_usps_h5(locate("usps_h5"), "train")
    rows = _subset(len(labels), protocol.n_usps, protocol.source_seed)
    return Split(bd.normalize(bd.resize_gray_to_rgb(images[rows])), labels[rows], 10)


def _mnist_target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
    images, labels = bd.load_mnist_csv(locate("mnist_5k"))
    rows = _subset(len(labels), protocol.n_mnist, seed)
    test_x = bd.read_idx(locate("mnist_test_images")).astype(np.float32) / 255.0
    test_y = bd.read_idx(locate("mnist_test_labels")).astype(np.int64)
    if len(test_x) != len(test_y):
        raise ValueError(f"MNIST test images ({len(test_x)}) and labels ({len(test_y)}) differ in number.")
    test_rows = _subset(len(test_y), protocol.n_test, protocol.source_seed + 1)
    train = Split(bd.normalize(bd.resize_gray_to_rgb(images[rows])), labels[rows], 10)
    test = Split(bd.normalize(bd.resize_gray_to_rgb(test_x[test_rows])), test_y[test_rows], 10)
    return train, test


def _cifar10_source(protocol: Protocol, locate) -> Split:
    return _stress_source("clean")(protocol, locate)


def _cifar100_source(protocol: Protocol, locate) -> Split:
    images, labels = bd.load_cifar_python(locate("cifar100_python"), "train")
    rows = _subset(len(labels), protocol.n_source, protocol.source_seed)
    return Split(bd.normalize(images[rows]), labels[rows], 100)


def _cifar10_target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
    folder = _cifar10(locate, "train")
    rows = _subset(len(folder), protocol.n_target, seed)
    train = Split(_images(folder, rows), folder.labels[rows], 10)
    return train, _test_split(_cifar10(locate, "test"), protocol)


def _cifar100_target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
    path = locate("cifar100_python")
    images, labels = bd.load_cifar_python(path, "train")
    rows = _subset(len(labels), protocol.n_target, seed)
    test_x, test_y = bd.load_cifar_python(path, "test")
    test_rows = _subset(len(test_y), protocol.n_test, protocol.source_seed + 1)
    return Split(bd.normalize(images[rows]), labels[rows], 100), Split(
        bd.normalize(test_x[test_rows]), test_y[test_rows], 100
    )


def _stl_target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
    path = locate("stl10_binary")
    images, labels = bd.load_stl10_binary(path, "train")
    rows = _subset(len(labels), protocol.n_stl, seed)
    test_x, test_y = bd.load_stl10_binary(path, "test")
    test_rows = _subset(len(test_y), protocol.n_test, protocol.source_seed + 1)
    return Split(bd.normalize(images[rows]), labels[rows], 10), Split(
        bd.normalize(test_x[test_rows]), test_y[test_rows], 10
    )


DOMAINNET_CLASSES = 40  # the first 40 classes alphabetically


def _domainnet(domain: str, locate, split: str) -> tuple[bd.ImageFolder, np.ndarray]:
    folder = bd.ImageFolder.open(locate(f"domainnet_{domain}"))
    listed = set()
    for line in Path(locate(f"domainnet_{domain}_{split}_list")).read_text().splitlines():
        if line.strip():
            listed.add(line.split()[0])
    keep_classes = set(folder.classes[:DOMAINNET_CLASSES])
    rows = [
        i
        for i, name in enumerate(folder.names)
        if name in listed and name.split("/")[-2] in keep_classes
    ]
    return folder, np.asarray(rows, dtype=np.int64)


def _clipart_source(protocol: Protocol, locate) -> Split:
    folder, rows = _domainnet("clipart", locate, "train")
    rows = rows[_subset(len(rows), 3_000 if protocol.base == "paper" else protocol.n_target, protocol.source_seed)]
    return Split(_images(folder, rows), folder.labels[rows], DOMAINNET_CLASSES)


def _sketch_target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
    folder, rows = _domainnet("sketch", locate, "train")
    rows = rows[_subset(len(rows), 1_000 if protocol.base == "paper" else protocol.n_target, seed)]
    test_folder, test_rows = _domainnet("sketch", locate, "test")
    test_rows = test_rows[_subset(len(test_rows), protocol.n_test, protocol.source_seed + 1)]
    return Split(_images(folder, rows), folder.labels[rows], DOMAINNET_CLASSES), Split(
        _images(test_folder, test_rows), test_folder.labels[test_rows], DOMAINNET_CLASSES
    )


# ------------------------------------------------------------------------------------------------
# text


def _tokenizer(protocol: Protocol):
    from ..encoders.text import HashingTokenizer

    return HashingTokenizer(protocol.text_vocab, protocol.text_max_len)


def _blitzer_source(domain: str):
    def source(protocol: Protocol, locate) -> Split:
        texts, labels = bd.load_blitzer(locate(f"blitzer_{domain}"))
        return Split(_tokenizer(protocol)(texts), labels, 2)

    return source


def _per_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]


def _blitzer_target(domain: str):
    def target(protocol: Protocol, seed: int, locate) -> tuple[Split, Split]:
        texts, labels = bd.load_blitzer(locate(f"blitzer_{domain}"))
        ids = _tokenizer(protocol)(texts)
        # fixed test set (source_seed), target training subset redrawn per run from the rest
        test_rows = np.sort(np.concatenate(_per_class(labels, protocol.text_test_per_class, np.random.default_rng(protocol.source_seed + 1))))
        rest = np.setdiff1d(np.arange(len(labels)), test_rows)
        train_rows = np.sort(
            np.concatenate([rest[r] for r in _per_class(labels[rest], protocol.text_target_per_class, np.random.default_rng(seed))])
        )
        return Split(ids[train_rows], labels[train_rows], 2), Split(ids[test_rows], labels[test_rows], 2)

    return target


# ------------------------------------------------------------------------------------------------


def _stress(name: str, corruption: str, description: str, same: bool = True) -> Task:
    return Task(name, "vision", ("cifar10_jpeg",), description, same, 64, _stress_source(corruption), _stress_target(corruption))


_TASK_LIST = [
    Task("usps-mnist", "vision", ("usps_h5", "mnist_5k", "mnist_test_images", "mnist_test_labels"),
         "USPS digits (32x32 RGB) -> 100 MNIST digits", True, 32, _usps_source, _mnist_target),
    Task("cifar10-stl", "vision", ("cifar10_jpeg", "stl10_binary"),
         "CIFAR-10 -> STL-10 (resized to 32x32)", False, 32, _cifar10_source, _stl_target),
    Task("cifar100-10", "vision", ("cifar100_python", "cifar10_jpeg"),
         "CIFAR-100 (100-way) -> CIFAR-10", False, 32, _cifar100_source, _cifar10_target),
    Task("cifar10-100", "vision", ("cifar10_jpeg", "cifar100_python"),
         "CIFAR-10 -> CIFAR-100", False, 32, _cifar10_source, _cifar100_target),
    Task("clipart-sketch", "vision",
         ("domainnet_clipart", "domainnet_clipart_train_list", "domainnet_sketch", "domainnet_sketch_train_list",
          "domainnet_sketch_test_list"),
         "DomainNet clipart -> sketch, first 40 classes", True, 32, _clipart_source, _sketch_target,
         arch="resnet", paper_epochs=(20, 20)),
    _stress("cifar10-clean", "clean", "clean CIFAR-10 source -> clean CIFAR-10 target"),
    _stress("cifar10-flip40", "flip40", "CIFAR-10 source with 40% labels flipped -> clean CIFAR-10"),
    _stress("cifar10-flip80", "flip80", "CIFAR-10 source with 80% labels flipped -> clean CIFAR-10"),
    _stress("cifar10-semantic", "semantic", "CIFAR-10 source with paired-class confusion + pixel noise -> clean"),
    _stress("cifar10-imbalance", "imbalance", "CIFAR-10 source with long-tailed classes -> clean CIFAR-10"),
    _stress("cifar10-split5", "split5",
            "CIFAR-10 classes 0-4 source -> classes 5-9 target (disjoint label spaces; CIFAR100->10 stand-in)", False),
    Task("books-kitchen", "text", ("blitzer_books", "blitzer_kitchen"), "Blitzer reviews books -> kitchen",
         True, 32, _blitzer_source("books"), _blitzer_target("kitchen")),
    Task("dvd-electronics", "text", ("blitzer_dvd", "blitzer_electronics"), "Blitzer reviews dvd -> electronics",
         True, 32, _blitzer_source("dvd"), _blitzer_target("electronics")),
]

TASKS: dict[str, Task] = {t.name: t for t in _TASK_LIST}


def get_task(name: str) -> Task:
    """The task called ``name`` (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}: choose one of {', '.join(TASKS)}.")
    return TASKS[name]


def tasks_for(modality: str) -> list[str]:
    """Names of the tasks of one modality."""
    return [t.name for t in _TASK_LIST if t.modality == modality]
