"""Locate bundled resources (model weights, model cards, icons, presets)."""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    """The ``resources/`` folder (``MEDVIEWER_RESOURCES`` overrides it)."""
    env = os.environ.get("MEDVIEWER_RESOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "resources"


def models_dir() -> Path:
    """Folder holding ``*.safetensors`` weights and their ``*.json`` model cards."""
    return resources_dir() / "models"


def cache_dir() -> Path:
    """Per-user cache (demo study, datasets); ``MEDVIEWER_CACHE`` overrides it."""
    env = os.environ.get("MEDVIEWER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medviewer"
