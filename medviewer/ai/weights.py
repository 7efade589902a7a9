"""Model weights (safetensors only) and their model cards.

A model ships as ``resources/models/<name>.safetensors`` plus
``<name>.json`` (the model card, MONAI-bundle style metadata). The card
records the SHA-256 of the weight file; loading checks it. Weights never go
through pickle (``torch.load``): see STYLE.md section 5.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medviewer.errors import ModelError
from medviewer.fileio import write_json_atomic
from medviewer.resources import models_dir

INTENDED_USE = "Research use only, not for diagnosis."


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(name: str, folder: Path | None = None) -> Path:
    return (folder or models_dir()) / f"{name}.json"


def weights_path(name: str, folder: Path | None = None) -> Path:
    return (folder or models_dir()) / f"{name}.safetensors"


def load_card(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Read the model card ``<name>.json``; :class:`ModelError` if missing or invalid."""
    path = card_path(name, folder)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model card not found: {path}. Train the model with `medviewer train {name}`.") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card {path} is unreadable: {exc}") from exc
    if not isinstance(card, dict) or "version" not in card or "name" not in card:
        raise ModelError(f"model card {path} lacks 'name' or 'version'")
    return card


def load_weights(
    name: str, folder: Path | None = None, check_hash: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``<name>.safetensors`` and its card; verify the card's SHA-256.

    Raises
    ------
    ModelError
        Weights or card missing, hash mismatch, or a corrupt file.
    """
    card = load_card(name, folder)
    path = weights_path(name, folder)
    if not path.is_file():
        raise ModelError(f"model weights not found: {path}. Train the model with `medviewer train {name}`.")
    expected = card.get("sha256")
    if check_hash and expected and sha256_of(path) != expected:
        raise ModelError(f"model weights {path} do not match the SHA-256 in {card_path(name, folder)} (corrupt or replaced)")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"model weights {path} are corrupt: {exc}") from exc
    return tensors, card


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict`` with a :class:`ModelError` naming ``source``."""
    try:
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"weights in {source} do not fit the model architecture: {exc}") from exc


def with_new_blocks(tensors: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """``tensors`` plus ``model``'s own tensors under ``prefix`` that ``tensors`` lacks.

    Used to load trained weights into a network grown by blocks that start as
    the identity (e.g. ``refine.`` blocks): the new blocks keep their initial
    values, everything else comes from ``tensors``.
    """
    own = model.state_dict()
    new = {k: v for k, v in own.items() if k.startswith(prefix) and k not in tensors}
    return {**tensors, **new} if new else tensors


def save_weights(
    name: str,
    state_dict: dict[str, torch.Tensor],
    card: dict[str, Any],
    folder: Path | None = None,
) -> Path:
    """Atomically write ``<name>.safetensors`` and the card (with its SHA-256)."""
    folder = folder or models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wpath = weights_path(name, folder)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"name": name, "version": str(card.get("version", ""))})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = sha256_of(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; shipped weights must be world-readable
        os.replace(tmp, wpath)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    card = dict(card)
    card["name"] = name
    card["sha256"] = digest
    card.setdefault("intended_use", INTENDED_USE)
    card["weights_file"] = wpath.name
    write_json_atomic(card_path(name, folder), card)
    return wpath


__all__ = [
    "load_card",
    "load_weights",
    "load_state_into",
    "with_new_blocks",
    "save_weights",
    "sha256_of",
    "write_json_atomic",
    "INTENDED_USE",
]
