"""Safe loading of ``best_model.pt``: key-style normalisation and strict checking of the embedding path.

The canonical key names are PyTorch's (``self_attn.in_proj_weight``); flash-attn style
(``self_attn.Wqkv.weight``) and scGPT 0.2.5 style (``self_attn._impl.Wqkv.weight``) are renamed, which is
exact because ``Wqkv`` stores the same ``[Q; K; V]`` row blocks as ``in_proj_weight``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import ScGPTConfig

__all__ = [
    "CheckpointError",
    "embedding_path_shapes",
    "extract_embedding_state",
    "load_state_dict",
    "normalize_keys",
]

_LAYER_KEY = re.compile(r"^transformer_encoder\.layers\.(\d+)\.")
# (pattern, replacement) applied in order; the first turns 0.2.5's `_impl.` wrapper into the plain form.
_RENAMES = (
    (re.compile(r"\.self_attn\._impl\."), ".self_attn."),
    (re.compile(r"\.self_attn\.Wqkv\.weight$"), ".self_attn.in_proj_weight"),
    (re.compile(r"\.self_attn\.Wqkv\.bias$"), ".self_attn.in_proj_bias"),
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the configuration."""


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state_dict with ``torch.load(..., weights_only=True)`` on the CPU.

    Parameters
    ----------
    path
        Path to ``best_model.pt``.

    Returns
    -------
    The tensors by key, as stored.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... by corruption kind
        raise CheckpointError(
            f"Could not read the checkpoint {path} ({type(err).__name__}: {err}). The file is corrupted, "
            "truncated (incomplete download?) or not a plain PyTorch state_dict; download it again and "
            "compare its sha256 with the published one."
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict (a mapping of tensors)."
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a plain state_dict: entries {bad[:5]} are not named tensors.")
    return dict(obj)


def normalize_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every attention key to PyTorch style and drop a ``module.`` (DataParallel) prefix.

    Parameters
    ----------
    state_dict
        Keys in any of the ``Wqkv``, ``in_proj_*`` or ``_impl.`` styles (they may be mixed).

    Returns
    -------
    A new dict with canonical keys, in the original order.
    """
    keys = list(state_dict)
    strip = "module." if keys and all(k.startswith("module.") for k in keys) else ""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key in keys:
        new = key[len(strip) :]
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        if new in out:
            raise CheckpointError(f"Checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}.")
        out[new] = state_dict[key]
        origin[new] = key
    return out


def embedding_path_shapes(config: ScGPTConfig, n_tokens: int) -> OrderedDict[str, tuple[int, ...]]:
    """Expected canonical names and shapes of every tensor the embedding forward pass uses.

    ``3 + 6 + 12 * nlayers`` tensors: 153 for the 12-layer official models.

    Parameters
    ----------
    config
        Model hyper-parameters.
    n_tokens
        Vocabulary size (rows of the gene embedding).
    """
    d, h = config.embsize, config.d_hid
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    shapes["encoder.embedding.weight"] = (n_tokens, d)
    shapes["encoder.enc_norm.weight"] = (d,)
    shapes["encoder.enc_norm.bias"] = (d,)
    shapes["value_encoder.linear1.weight"] = (d, 1)
    shapes["value_encoder.linear1.bias"] = (d,)
    shapes["value_encoder.linear2.weight"] = (d, d)
    shapes["value_encoder.linear2.bias"] = (d,)
    shapes["value_encoder.norm.weight"] = (d,)
    shapes["value_encoder.norm.bias"] = (d,)
    for i in range(config.nlayers):
        p = f"transformer_encoder.layers.{i}."
        shapes[p + "self_attn.in_proj_weight"] = (3 * d, d)
        shapes[p + "self_attn.in_proj_bias"] = (3 * d,)
        shapes[p + "self_attn.out_proj.weight"] = (d, d)
        shapes[p + "self_attn.out_proj.bias"] = (d,)
        shapes[p + "linear1.weight"] = (h, d)
        shapes[p + "linear1.bias"] = (h,)
        shapes[p + "linear2.weight"] = (d, h)
        shapes[p + "linear2.bias"] = (d,)
        for norm in ("norm1", "norm2"):
            shapes[p + f"{norm}.weight"] = (d,)
            shapes[p + f"{norm}.bias"] = (d,)
    return shapes


def extract_embedding_state(
    state_dict: Mapping[str, torch.Tensor], config: ScGPTConfig, n_tokens: int
) -> tuple[OrderedDict[str, torch.Tensor], list[str]]:
    """Check and extract the embedding-path tensors; refuse anything missing or mis-shaped.

    Parameters
    ----------
    state_dict
        The checkpoint, in any key style.
    config
        Model hyper-parameters from ``args.json``.
    n_tokens
        Vocabulary size from ``vocab.json``.

    Returns
    -------
    The float32 tensors under canonical names, and the sorted list of ignored keys (decoders,
    pretraining heads) under their canonical names.

    Raises
    ------
    CheckpointError
        Naming every missing, mis-shaped, non-floating or non-finite tensor, or encoder layers beyond
        ``nlayers``.
    """
    state = normalize_keys(state_dict)
    expected = embedding_path_shapes(config, n_tokens)
    missing = [k for k in expected if k not in state]
    misshaped = [
        f"{k}: expected {tuple(shape)}, found {tuple(state[k].shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    not_float = [
        f"{k} ({state[k].dtype})" for k in expected if k in state and not state[k].is_floating_point()
    ]
    not_finite = [
        k for k in expected
        if k in state and state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())
    ]
    extra_layers = sorted(
        {int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k)) and int(m.group(1)) >= config.nlayers}
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): " + _first(missing, ", "))
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped tensor(s): " + _first(misshaped, "; "))
    if not_float:
        problems.append("non-floating tensor(s): " + _first(not_float, ", "))
    if not_finite:
        problems.append("tensor(s) with NaN or infinite values: " + _first(not_finite, ", "))
    if extra_layers:
        problems.append(f"encoder layer(s) {extra_layers} beyond args.json's nlayers={config.nlayers}")
    if problems:
        raise CheckpointError(
            "The checkpoint does not match args.json / vocab.json "
            f"(embsize={config.embsize}, d_hid={config.d_hid}, nlayers={config.nlayers}, "
            f"{n_tokens} tokens): " + " | ".join(problems) + ". Use the three files of one checkpoint folder."
        )
    tensors = OrderedDict((k, state[k].detach().to(torch.float32).contiguous()) for k in expected)
    ignored = sorted(k for k in state if k not in expected)
    return tensors, ignored


def _first(items: list[str], separator: str, limit: int = 8) -> str:
    """The first ``limit`` items joined, and how many more (a 200-layer mismatch names thousands of tensors)."""
    shown = separator.join(items[:limit])
    return shown if len(items) <= limit else f"{shown}{separator}... and {len(items) - limit} more"
