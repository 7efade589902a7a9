"""Weight averages ("model soups", Wortsman et al., ICML 2022) of two models of one architecture.

Two models fine-tuned from the same weights stay in one basin of the loss, so
a weighted average of their weights, tensor by tensor, is a model in its own
right that often keeps what each parent learned, at no training cost. The
detector's (:mod:`medviewer.training.average_detector`) and the denoiser's
(:mod:`medviewer.training.average_denoiser`) averages share the arithmetic
and the model card's description of a parent here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medviewer.errors import ModelError


def average_tensors(
    base: dict[str, torch.Tensor], partner: dict[str, torch.Tensor], weight: float
) -> dict[str, torch.Tensor]:
    """``(1 - weight) * base + weight * partner`` for every float tensor; integer tensors from ``base``.

    Raises
    ------
    ModelError
        ``weight`` outside [0, 1], or the two sets differ in names or shapes
        (different architectures cannot be averaged).
    """
    if not 0.0 <= weight <= 1.0:
        raise ModelError(f"averaging weight {weight}: must lie in [0, 1]")
    if set(base) != set(partner):
        missing = sorted(set(base) ^ set(partner))
        raise ModelError(f"the two models have different tensors ({', '.join(missing[:4])} ...): not the same architecture")
    out: dict[str, torch.Tensor] = {}
    for name, a in base.items():
        b = partner[name]
        if a.shape != b.shape:
            raise ModelError(f"tensor {name} has shape {tuple(a.shape)} in one model and {tuple(b.shape)} in the other")
        if a.is_floating_point():
            out[name] = ((1.0 - weight) * a.double() + weight * b.double()).to(a.dtype)
        else:
            out[name] = a.clone()
    return out


def parent_entry(card: dict[str, Any], folder: Path, weight: float, default_name: str) -> dict[str, Any]:
    """How the model card of an average names one parent: model and version, folder, hash, weight, provenance."""
    training = card.get("training") or {}
    return {
        "model": f"{card.get('name', default_name)} {card.get('version')}",
        "folder": str(folder),
        "sha256": card.get("sha256"),
        "weight": round(weight, 6),
        "steps": card.get("steps", training.get("steps")),
        "initialised_from": training.get("initialised_from"),
        "augmentation": training.get("augmentation"),
        "command": training.get("command"),
        "note": training.get("note"),
    }


__all__ = ["average_tensors", "parent_entry"]
