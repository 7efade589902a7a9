"""Persistent user settings (QSettings) and the recent-studies list.

Settings live under the organisation/application ``MedViewer``/``MedViewer``
in the platform's usual place. Setting the environment variable
``MEDVIEWER_SETTINGS`` to a file path stores them in that INI file instead;
the tests use it so they never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6 import QtCore

ORGANIZATION = "MedViewer"
APPLICATION = "MedViewer"
MAX_RECENT = 10


def app_settings() -> QtCore.QSettings:
    """The settings store (``MEDVIEWER_SETTINGS`` file if set, else the user's)."""
    path = os.environ.get("MEDVIEWER_SETTINGS")
    if path:
        return QtCore.QSettings(path, QtCore.QSettings.Format.IniFormat)
    return QtCore.QSettings(ORGANIZATION, APPLICATION)


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def recent_studies(settings: QtCore.QSettings) -> list[str]:
    """Recently opened paths, most recent first (paths that vanished are dropped)."""
    return [p for p in _as_list(settings.value("recent/paths", [])) if Path(p).exists()]


def add_recent_study(settings: QtCore.QSettings, path: str | os.PathLike[str]) -> list[str]:
    """Put ``path`` first in the recent list (deduplicated, at most ``MAX_RECENT``)."""
    p = str(Path(path).resolve())
    items = [x for x in recent_studies(settings) if x != p]
    items.insert(0, p)
    items = items[:MAX_RECENT]
    settings.setValue("recent/paths", items)
    settings.sync()
    return items


def clear_recent_studies(settings: QtCore.QSettings) -> None:
    settings.setValue("recent/paths", [])
    settings.sync()


def get_value(settings: QtCore.QSettings, key: str, default: Any, kind: type) -> Any:
    """``settings.value(key)`` converted to ``kind`` (INI files store strings)."""
    value = settings.value(key, default)
    if value is None:
        return default
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        return kind(value)
    except (TypeError, ValueError):
        return default


__all__ = [
    "ORGANIZATION",
    "APPLICATION",
    "app_settings",
    "recent_studies",
    "add_recent_study",
    "clear_recent_studies",
    "get_value",
]
