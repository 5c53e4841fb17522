"""The frozen source model: a pretrained network used only as a feature extractor."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (BatchNorm statistics and dropout frozen), then restore its flags."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags.items():
            m.training = flag


class FrozenSource(nn.Module):
    """A pretrained model whose penultimate features ``f_rep(x)`` feed the transfer strategies.

    The wrapped modules are never trained and never modified: their forward runs under
    :func:`torch.no_grad` in eval mode (BatchNorm and dropout frozen), their ``requires_grad`` flags are
    left as the user set them, and no optimiser ever sees their parameters. Strategies that do change the
    source (fine-tuning, LoRA) work on a deep copy.

    Parameters
    ----------
    features
        Module mapping a raw input batch to the feature representation ``f_rep(x)`` of shape (n, p).
    head
        Optional module mapping ``f_rep(x)`` to the source task's outputs (logits). Needed only by
        knowledge distillation.
    """

    def __init__(self, features: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(features, nn.Module):
            raise TypeError(f"features must be a torch.nn.Module, got {type(features).__name__}.")
        if head is not None and not isinstance(head, nn.Module):
            raise TypeError(f"head must be a torch.nn.Module or None, got {type(head).__name__}.")
        self.features = features
        self.head = head

    def train(self, mode: bool = True) -> FrozenSource:
        """Keep the flag of this wrapper only; the wrapped modules switch to eval for each forward."""
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``f_rep(x)`` without gradients, in eval mode; a source in another floating precision (say
        float64) gets the input in its own and returns float32."""
        weight = next(self.features.parameters(), None)
        if weight is not None and weight.is_floating_point() and x.is_floating_point() and x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        with torch.no_grad(), eval_mode(self.features):
            out = self.features(x)
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The source head's outputs on precomputed features (for distillation)."""
        if self.head is None:
            raise ValueError("This source has no head: pass FrozenSource(features, head=...) to use distillation.")
        with torch.no_grad(), eval_mode(self.head):
            return self.head(features)


@torch.no_grad()
def extract_features(
    source: nn.Module, inputs: torch.Tensor, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Compute ``f_rep`` once for a whole dataset, in eval mode, batch by batch; returns float32 on CPU."""
    source = source if isinstance(source, FrozenSource) else FrozenSource(source)
    original_device = next(iter(source.parameters()), torch.empty(0)).device
    source.to(device)
    try:
        chunks = [
            source(inputs[start : start + batch_size].to(device)).float().cpu()
            for start in range(0, len(inputs), batch_size)
        ]
    finally:
        source.to(original_device)
    features = torch.cat(chunks)
    if features.ndim != 2:
        raise ValueError(f"The source must return (n, p) features, got shape {tuple(features.shape)}.")
    return features


def fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state_dict (names, shapes and bytes): tells whether a source changed."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        array = tensor.detach().cpu().contiguous()
        digest.update(str(tuple(array.shape)).encode())
        digest.update(np.ascontiguousarray(array.float().numpy() if array.is_floating_point() else array.numpy()).tobytes())
    return digest.hexdigest()
