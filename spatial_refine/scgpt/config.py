"""Model hyper-parameters read from a checkpoint folder's ``args.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CLS_TOKEN", "N_BINS", "VALUE_CLAMP", "ScGPTConfig"]

#: Token prepended to every cell; its output is the cell embedding. Not part of ``args.json``.
CLS_TOKEN = "<cls>"
#: Number of expression bins used by scGPT's embedding pipeline (hard-wired there, whatever ``args.json`` says).
N_BINS = 51
#: Upper clamp applied to values before the continuous value encoder.
VALUE_CLAMP = 512.0

_REQUIRED = ("embsize", "nheads", "d_hid", "nlayers")


@dataclass(frozen=True)
class ScGPTConfig:
    """The ``args.json`` settings that define the embedding computation.

    Parameters
    ----------
    embsize
        Token embedding width (512 for the official checkpoints).
    nheads
        Number of attention heads.
    d_hid
        Width of the feed-forward block inside each encoder layer.
    nlayers
        Number of transformer encoder layers.
    pad_token
        Name of the padding token in ``vocab.json``.
    pad_value
        Value fed to the value encoder for ``<cls>`` and padding positions.
    input_style, input_emb_style
        Only ``"binned"`` and ``"continuous"`` (the official pretrained setting) are supported.
    extra
        Every other key of ``args.json`` (training and cluster settings), kept verbatim.
    """

    embsize: int
    nheads: int
    d_hid: int
    nlayers: int
    pad_token: str = "<pad>"
    pad_value: float = -2.0
    input_style: str = "binned"
    input_emb_style: str = "continuous"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in _REQUIRED:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"args.json: {name!r} must be a positive integer, got {value!r}.")
        if self.embsize % self.nheads:
            raise ValueError(
                f"args.json: embsize ({self.embsize}) must be divisible by nheads ({self.nheads})."
            )
        if self.input_emb_style != "continuous":
            raise ValueError(
                f"args.json: input_emb_style={self.input_emb_style!r} is not supported; only the "
                "'continuous' value encoder of the official pretrained checkpoints is implemented."
            )
        if self.input_style != "binned":
            raise ValueError(
                f"args.json: input_style={self.input_style!r} is not supported; only 'binned' "
                "(the official pretrained setting) is implemented."
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embsize // self.nheads

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> ScGPTConfig:
        """Build a config from a parsed ``args.json``; unknown keys are kept in :attr:`extra`.

        Parameters
        ----------
        args
            The JSON object.
        """
        if not isinstance(args, Mapping):
            raise ValueError(f"args.json must hold a JSON object, got {type(args).__name__}.")
        missing = [k for k in _REQUIRED if k not in args]
        if missing:
            raise ValueError(f"args.json lacks the required key(s) {missing}.")
        known = {
            "embsize",
            "nheads",
            "d_hid",
            "nlayers",
            "pad_token",
            "pad_value",
            "input_style",
            "input_emb_style",
        }
        kwargs: dict[str, Any] = {k: _as_int(args[k], k) for k in _REQUIRED}
        for key in ("pad_token", "input_style", "input_emb_style"):
            if key in args:
                if not isinstance(args[key], str):
                    raise ValueError(f"args.json: {key!r} must be a string, got {args[key]!r}.")
                kwargs[key] = args[key]
        if "pad_value" in args:
            kwargs["pad_value"] = _as_finite_float(args["pad_value"], "pad_value")
        extra = {k: v for k, v in args.items() if k not in known}
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json(cls, path: str | Path) -> ScGPTConfig:
        """Read and parse an ``args.json`` file.

        Parameters
        ----------
        path
            Path to the file.
        """
        path = Path(path)
        try:
            args = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); re-download the checkpoint folder.") from err
        return cls.from_dict(args)


def _as_int(value: Any, name: str) -> int:
    """Accept ints and integral floats (``512.0``) from JSON."""
    if isinstance(value, bool):
        raise ValueError(f"args.json: {name!r} must be a positive integer, got {value!r}.")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"args.json: {name!r} must be a positive integer, got {value!r}.")


def _as_finite_float(value: Any, name: str) -> float:
    """A finite number from JSON (a NaN pad value would make every embedding NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"args.json: {name!r} must be a finite number, got {value!r}.")
    return float(value)
