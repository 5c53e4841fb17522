"""Device resolution shared by every torch entry point."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA, then MPS, then CPU; validate anything else.

    Parameters
    ----------
    device
        ``"auto"``, or anything :class:`torch.device` accepts (``"cpu"``, ``"cuda:0"``, ``"mps"``).

    Returns
    -------
    The resolved device.
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}.")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available: use device='auto' or 'cpu'.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    mps = getattr(torch.backends, "mps", None)
    if resolved.type == "mps" and (mps is None or not mps.is_available()):
        raise ValueError("device='mps' was requested but MPS (Apple GPU) is not available: use device='auto' or 'cpu'.")
    return resolved
