"""Choose the torch device and cap CPU threads (no Qt)."""

from __future__ import annotations

import os

import torch

from medviewer.errors import ModelError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU -> ModelError."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ModelError(f"unknown device {device!r}: use auto, cpu or cuda")


def describe_device(device: torch.device) -> str:
    """Human-readable device name for the status bar and reports."""
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} threads)"


def cap_threads(leave_free: int = 1) -> int:
    """Limit torch intra-op threads to ``cores - leave_free`` (>= 1); returns the count.

    Used while the GUI is up so a worker cannot starve the event loop.
    """
    n = max(1, (os.cpu_count() or 1) - leave_free)
    torch.set_num_threads(n)
    return n
