"""Write random-weight checkpoint folders in the official scGPT format, for tests and benchmarks.

The folder has the three official files: ``args.json`` (with training keys the loader must tolerate),
``vocab.json`` (keys deliberately not in id order, special tokens after the genes as in whole-human) and
``best_model.pt`` (a plain float32 state_dict, pretraining heads included). The weights are random: the
embeddings mean nothing biologically, but the file format and the computation are the real ones.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .checkpoint import embedding_path_shapes
from .config import CLS_TOKEN, ScGPTConfig

__all__ = ["KeyStyle", "random_state_dict", "to_key_style", "write_random_checkpoint"]

KeyStyle = Literal["Wqkv", "in_proj", "_impl"]

# A realistic set of the extra training / cluster keys found in official args.json files.
_TRAINING_ARGS: dict[str, Any] = {
    "data_source": "/scratch/cellxgene/all_counts",
    "save_dir": "/scratch/save/scGPT_human",
    "load_model": None,
    "n_hvg": None,
    "valid_size_or_ratio": 0.003,
    "dist_backend": "nccl",
    "grad_accu_steps": 1,
    "mask_value": -1,
    "n_bins": 51,
    "max_seq_len": 1200,
    "training_tasks": "both",
    "mask_ratio": [0.25, 0.5, 0.75],
    "trunc_by_sample": True,
    "vocab_path": "/scratch/vocab.json",
    "batch_size": 32,
    "eval_batch_size": 64,
    "epochs": 6,
    "lr": 0.0001,
    "scheduler_interval": 100,
    "scheduler_factor": 0.99,
    "warmup_ratio_or_step": 10000.0,
    "no_cls": False,
    "no_cce": True,
    "fp16": True,
    "fast_transformer": True,
    "n_layers_cls": 3,
    "dropout": 0.2,
    "log_interval": 9000,
    "save_interval": 27000,
    "USE_CLS": False,
    "USE_CCE": False,
    "MVC": True,
    "USE_GENERATIVE_TRAINING": True,
    "world_size": 16,
    "distributed": True,
    "local_rank": 0,
}


def _heads(d: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the pretraining heads stored next to the embedding path (never used for embeddings)."""
    return {
        "decoder.fc.0.weight": (d, d),
        "decoder.fc.0.bias": (d,),
        "decoder.fc.2.weight": (d, d),
        "decoder.fc.2.bias": (d,),
        "decoder.fc.4.weight": (1, d),
        "decoder.fc.4.bias": (1,),
        "mvc_decoder.gene2query.weight": (d, d),
        "mvc_decoder.gene2query.bias": (d,),
        "mvc_decoder.W.weight": (d, d),
        "flag_encoder.weight": (2, d),
    }


def random_state_dict(
    config: ScGPTConfig, n_tokens: int, *, seed: int = 0, include_heads: bool = True
) -> OrderedDict[str, torch.Tensor]:
    """Random float32 weights under canonical (PyTorch-style) keys.

    Matrices are N(0, 1/fan_in), the gene embedding N(0, 1), biases N(0, 0.02^2), norm weights near 1,
    so activations stay in a realistic range and different cells get clearly different embeddings.

    Parameters
    ----------
    config
        Model sizes.
    n_tokens
        Vocabulary size.
    seed
        Seed of the weights.
    include_heads
        Also write the unused decoder / MVC / flag heads, as official checkpoints do.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = dict(embedding_path_shapes(config, n_tokens))
    if include_heads:
        shapes.update(_heads(config.embsize))
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in shapes.items():
        if key == "encoder.embedding.weight":
            tensor = torch.randn(shape, generator=gen)
        elif "norm" in key and key.endswith("weight"):
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif "norm" in key or key.endswith("bias"):
            tensor = 0.02 * torch.randn(shape, generator=gen)
        else:
            tensor = torch.randn(shape, generator=gen) / np.sqrt(shape[-1])
        state[key] = tensor.to(torch.float32)
    return state


def to_key_style(state: Mapping[str, torch.Tensor], key_style: KeyStyle) -> OrderedDict[str, torch.Tensor]:
    """Rename canonical attention keys into one of the styles found in official checkpoints.

    Parameters
    ----------
    state
        Canonical (``in_proj``) keys.
    key_style
        ``"Wqkv"`` (flash-attn 1, whole-human), ``"in_proj"`` (PyTorch) or ``"_impl"`` (scGPT 0.2.5).
    """
    if key_style not in ("Wqkv", "in_proj", "_impl"):
        raise ValueError(f"key_style must be 'Wqkv', 'in_proj' or '_impl', got {key_style!r}.")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, tensor in state.items():
        new = key
        if key_style != "in_proj":
            prefix = ".self_attn._impl." if key_style == "_impl" else ".self_attn."
            new = new.replace(".self_attn.in_proj_weight", prefix + "Wqkv.weight")
            new = new.replace(".self_attn.in_proj_bias", prefix + "Wqkv.bias")
            new = new.replace(".self_attn.out_proj.", prefix + "out_proj.")
        out[new] = tensor
    return out


def write_random_checkpoint(
    model_dir: str | Path,
    genes: Sequence[str],
    *,
    embsize: int = 512,
    nheads: int = 8,
    d_hid: int = 512,
    nlayers: int = 12,
    key_style: KeyStyle = "Wqkv",
    include_heads: bool = True,
    seed: int = 0,
    extra_args: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``args.json``, ``vocab.json`` and ``best_model.pt`` with random weights.

    The defaults are whole-human's sizes; with the 60,694 genes of the default census vocabulary this
    gives a full-size (about 205 MB) checkpoint.

    Parameters
    ----------
    model_dir
        Folder to create (or fill).
    genes
        Gene symbols; gene ``i`` gets id ``i``, then ``<pad>``, ``<cls>``, ``<eoc>`` follow.
    embsize, nheads, d_hid, nlayers
        Model sizes.
    key_style
        Attention key naming, see :func:`to_key_style`. The same ``seed`` gives the same weights in
        every style.
    include_heads
        Also store the pretraining heads (ignored by the loader).
    seed
        Seed of the weights and of the key order in ``vocab.json``.
    extra_args
        Keys added to (or overriding) ``args.json``.

    Returns
    -------
    The folder path.
    """
    genes = [str(g) for g in genes]
    if len(set(genes)) != len(genes):
        raise ValueError("genes must be unique.")
    tokens = [*genes, "<pad>", CLS_TOKEN, "<eoc>"]
    args = {
        **_TRAINING_ARGS,
        "embsize": embsize,
        "nheads": nheads,
        "d_hid": d_hid,
        "nlayers": nlayers,
        "pad_token": "<pad>",
        "pad_value": -2,
        "input_style": "binned",
        "input_emb_style": "continuous",
    }
    args.update(extra_args or {})
    config = ScGPTConfig.from_dict(args)
    state = to_key_style(
        random_state_dict(config, len(tokens), seed=seed, include_heads=include_heads), key_style
    )

    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "args.json").write_text(json.dumps(args, indent=2), encoding="utf-8")
    order = np.random.default_rng(seed).permutation(len(tokens))  # file key order != id order
    vocab = {tokens[i]: int(i) for i in order}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    torch.save(state, directory / "best_model.pt")
    return directory
