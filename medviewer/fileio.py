"""Small Qt-free file-system helpers shared by the writers (DICOM, reports, weights).

Writes in MedViewer are atomic (STYLE.md section 9): a temporary file or a
``.partial-*`` folder in the destination folder, flushed and fsynced, then
renamed with :func:`os.replace`; the folder is fsynced so the rename is durable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder so a rename in it is durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """UTF-8 text variant of :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_json_atomic(path: str | Path, obj: Any, mode: int = 0o644) -> Path:
    """Write ``obj`` as indented JSON (trailing newline) atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n", mode)


__all__ = ["fsync_dir", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]
