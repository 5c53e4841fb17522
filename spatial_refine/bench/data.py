"""Readers for the benchmark data: image folders (plain, tar or zip), digits (IDX, CSV, HDF5), CIFAR and
STL-10 official files, and the raw Blitzer review files.

Images come back as float32 tensors ``(n, 3, size, size)`` with values in ``[0, 1]``; :func:`normalize`
applies the protocol's ``Normalize(0.5, 0.5, 0.5)``. Nothing here uses :mod:`pickle` on untrusted types:
the official CIFAR python files are read with an unpickler that only admits numpy array reconstruction.
"""

from __future__ import annotations

import functools
import gzip
import io
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ImageFolder",
    "load_blitzer",
    "load_cifar_python",
    "load_mnist_csv",
    "load_stl10_binary",
    "load_usps_h5",
    "normalize",
    "read_idx",
    "resize_gray_to_rgb",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """``(x - 0.5) / 0.5`` per channel: the protocol's ``Normalize(0.5, 0.5, 0.5)``."""
    return (images - 0.5) / 0.5


def resize_gray_to_rgb(images: np.ndarray | torch.Tensor, size: int = 32) -> torch.Tensor:
    """Grey images ``(n, h, w)`` in [0, 1] -> bilinear-resized RGB ``(n, 3, size, size)``."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()


def _decode(data: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


@dataclass
class ImageFolder:
    """Images in class subfolders: ``<root>/[<split>/]<class>/<image>``, as a folder, a tar(.gz) or a zip.

    Only file names and bytes are read when opening; images are decoded on demand by :meth:`load`.

    Attributes
    ----------
    classes
        Sorted class-folder names; label ``i`` is ``classes[i]``.
    names
        Member path of every image (sorted).
    labels
        Label of every image.
    """

    classes: list[str]
    names: list[str]
    labels: np.ndarray
    _blobs: dict[str, bytes]

    @classmethod
    def open(cls, path: str | Path, split: str | None = None) -> ImageFolder:
        """Read the images under ``split`` (a folder name at any depth, e.g. ``train``) of ``path``.

        Parameters
        ----------
        path
            A directory, a ``.tar``/``.tar.gz``/``.tgz`` archive or a ``.zip`` archive.
        split
            Keep only images with a path component equal to ``split``; ``None`` keeps every image. The
            class is the image's parent folder.
        """
        blobs = _read_blobs(str(Path(path).resolve()), Path(path).stat().st_mtime_ns, split)
        if not blobs:
            where = f" under a {split!r} folder" if split else ""
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}){where} found in {path}.")
        names = sorted(blobs)
        class_of = [n.split("/")[-2] for n in names]
        classes = sorted(set(class_of))
        index = {c: i for i, c in enumerate(classes)}
        return cls(classes, names, np.array([index[c] for c in class_of], dtype=np.int64), blobs)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, indices: np.ndarray | list[int] | None = None, size: int = 32) -> torch.Tensor:
        """Decode the images at ``indices`` (all by default) to ``(n, 3, size, size)`` floats in [0, 1]."""
        rows = range(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        arrays = [_decode(self._blobs[self.names[i]], size) for i in rows]
        if not arrays:
            return torch.zeros((0, 3, size, size))
        # contiguous NCHW: the permuted view is channels-last, and torch 2.13's oneDNN convolution backward on
        # channels-last inputs with few channels corrupts the heap or hangs on AVX2-only CPUs (seen on an AMD EPYC)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


@functools.lru_cache(maxsize=4)
def _read_blobs(path: str, _mtime: int, split: str | None) -> dict[str, bytes]:
    def keep(name: str) -> bool:
        parts = name.strip("/").split("/")
        return (
            len(parts) >= 2
            and name.lower().endswith(IMAGE_SUFFIXES)
            and not any(p.startswith(".") for p in parts)
            and (split is None or split in parts[:-2])
        )

    p = Path(path)
    blobs: dict[str, bytes] = {}
    if p.is_dir():
        for f in p.rglob("*"):
            name = f.relative_to(p).as_posix()
            if f.is_file() and keep(name):
                blobs[name] = f.read_bytes()
    elif zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as archive:
            for name in archive.namelist():
                if keep(name):
                    blobs[name] = archive.read(name)
    elif tarfile.is_tarfile(p):
        with tarfile.open(p) as archive:
            for member in archive:
                if member.isfile() and keep(member.name):
                    blobs[member.name] = archive.extractfile(member).read()
    else:
        raise ValueError(f"{path} is neither a folder, a tar archive nor a zip archive of images.")
    return blobs


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST format, optionally gzip-compressed) as a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()}).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values.")
    return data.reshape(shape)


def load_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits as CSV rows (784 pixels 0-255 then the label): ``(n, 28, 28)`` in [0, 1] and labels."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 785 values, got shape {table.shape}.")
    return (table[:, :784] / 255.0).reshape(-1, 28, 28), table[:, 784].astype(np.int64)


def load_usps_h5(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """USPS digits from the HDF5 file (groups ``train``/``test``): ``(n, 16, 16)`` in [0, 1] and labels."""
    import h5py

    with h5py.File(path, "r") as f:
        if split not in f:
            raise ValueError(f"{path} has no group {split!r} (groups: {list(f)}).")
        data = np.asarray(f[split]["data"], dtype=np.float32)
        target = np.asarray(f[split]["target"], dtype=np.int64)
    return data.reshape(-1, 16, 16).clip(0.0, 1.0), target


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what plain numpy arrays and builtin containers need (the CIFAR python files)."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR data file.")
        return super().find_class(module, name)


def load_cifar_python(path: str | Path, split: str = "train", label: str = "fine") -> tuple[torch.Tensor, np.ndarray]:
    """The official CIFAR-10 / CIFAR-100 python archive: images ``(n, 3, 32, 32)`` in [0, 1] and labels.

    Parameters
    ----------
    path
        ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``.
    split
        ``"train"`` or ``"test"``.
    label
        CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20).
    """
    pattern = re.compile(r"(data_batch_\d+|train)$" if split == "train" else r"(test_batch|test)$")
    data, labels = [], []
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not (member.isfile() and pattern.search(member.name)):
                continue
            batch = _ArrayUnpickler(archive.extractfile(member), encoding="bytes").load()
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
            data.append(np.asarray(batch["data"], dtype=np.uint8))
            key = "labels" if "labels" in batch else f"{label}_labels"
            labels.append(np.asarray(batch[key], dtype=np.int64))
    if not data:
        raise ValueError(f"{path} holds no CIFAR {split} batches.")
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32)).float().div_(255.0)
    return images, np.concatenate(labels)


def load_stl10_binary(path: str | Path, split: str = "train", size: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    """STL-10 official binaries (``stl10_binary.tar.gz`` or its extracted folder), resized to ``size``.

    Labels are mapped from 1..10 to 0..9 (STL order: airplane, bird, car, cat, deer, dog, horse, monkey,
    ship, truck).
    """
    p = Path(path)
    want = {f"{split}_X.bin": None, f"{split}_y.bin": None}
    if p.is_dir():
        for name in want:
            hits = list(p.rglob(name))
            if hits:
                want[name] = hits[0].read_bytes()
    else:
        with tarfile.open(p) as archive:
            for member in archive:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in want:
                    want[base] = archive.extractfile(member).read()
    missing = [k for k, v in want.items() if v is None]
    if missing:
        raise ValueError(f"{path} lacks {missing}.")
    x = np.frombuffer(want[f"{split}_X.bin"], dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    y = np.frombuffer(want[f"{split}_y.bin"], dtype=np.uint8).astype(np.int64) - 1
    images = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    if size != 96:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images.clamp_(0.0, 1.0), y


_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)


def _field(block: str, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", block, re.S)
    return " ".join(match.group(1).split()) if match else ""


def load_blitzer(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """One Blitzer domain (``positive.review`` + ``negative.review``): texts (title + body) and labels
    (1 positive, 0 negative), negatives first, each file in its order."""
    texts: list[str] = []
    labels: list[int] = []
    for label, name in ((0, "negative.review"), (1, "positive.review")):
        file = Path(folder) / name
        if not file.is_file():
            raise ValueError(f"{folder} lacks {name} (a Blitzer domain folder holds positive.review and negative.review).")
        raw = file.read_bytes().decode("utf-8", errors="replace")
        for block in _REVIEW.findall(raw):
            texts.append(f"{_field(block, 'title')} . {_field(block, 'review_text')}".strip(" ."))
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)
