"""Small Qt-free file-system helpers shared by the writers (DICOM, reports, weights).

Writes in MedViewer are atomic (STYLE.md section 9): a temporary file or a
``.partial-*`` folder in the destination folder, flushed and fsynced, then
renamed with :func:`os.replace`; the folder is fsynced so the rename is durable.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from medviewer.errors import ExportError


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


def write_npz_atomic(path: str | Path, **arrays: Any) -> Path:
    """Save ``arrays`` as an uncompressed ``.npz`` atomically (:func:`write_bytes_atomic`)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def os_error_reason(exc: OSError) -> str:
    """A user-facing reason for an OS error."""
    if exc.errno == errno.ENOSPC:
        return "the disk is full (no space left on device)"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if exc.errno in (errno.EROFS,):
        return "the folder is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (the folder is read-only or not writable)"
    return exc.strerror or str(exc)


def export_error(path: str | Path, exc: OSError, what: str = "cannot write") -> ExportError:
    """Wrap an :class:`OSError` into an :class:`ExportError` naming ``path``."""
    return ExportError(f"{path}: {what}: {os_error_reason(exc)}")


def folder_has_content(folder: Path) -> bool:
    """True when ``folder`` exists and is not empty (a file counts as content)."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        return True
    try:
        next(folder.iterdir())
    except StopIteration:
        return False
    return True


class AtomicExportDir:
    """A folder whose files appear all at once, or not at all.

    Files are written into ``path`` (a ``.partial-*`` folder next to the
    destination); :meth:`commit` renames it to the destination.  Leaving the
    ``with`` block by an exception (including ``CancelledError``) removes the
    partial folder.

    Parameters
    ----------
    destination : Path
        The folder the export should become.
    overwrite : bool
        Replace a non-empty destination. The old content is moved aside and
        deleted only after the new folder is in place.

    Raises
    ------
    ExportError
        The destination has content and ``overwrite`` is False, or the
        parent folder is not writable.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with AtomicExportDir(root / "out") as d:
    ...     _ = (d.path / "a.txt").write_text("x")
    ...     final = d.commit()
    >>> sorted(p.name for p in final.iterdir())
    ['a.txt']
    """

    def __init__(self, destination: str | Path, *, overwrite: bool = False) -> None:
        self.destination = Path(destination).absolute()
        self.overwrite = overwrite
        self.path: Path = Path()
        self.committed = False
        if folder_has_content(self.destination) and not overwrite:
            raise ExportError(
                f"{self.destination}: already exists and is not empty (not overwritten; choose overwrite to replace it)"
            )
        if self.destination.exists() and not self.destination.is_dir():
            raise ExportError(f"{self.destination}: exists and is not a folder")

    def __enter__(self) -> "AtomicExportDir":
        parent = self.destination.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = parent / f".partial-{self.destination.name}-{secrets.token_hex(4)}"
            os.mkdir(self.path)
        except OSError as exc:
            raise export_error(parent, exc, "cannot create the export folder") from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.discard()

    def discard(self) -> None:
        """Remove the partial folder and everything in it."""
        if self.path != Path() and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> Path:
        """Move the partial folder into place; returns the destination."""
        dest = self.destination
        old: Path | None = None
        try:
            fsync_dir(self.path)
            if dest.exists():
                if folder_has_content(dest):
                    if not self.overwrite:
                        raise ExportError(f"{dest}: appeared meanwhile and is not empty (not overwritten)")
                    old = dest.with_name(f".old-{dest.name}-{secrets.token_hex(4)}")
                    os.rename(dest, old)
                else:
                    os.rmdir(dest)
            os.rename(self.path, dest)
            fsync_dir(dest.parent)
        except OSError as exc:
            if old is not None and not dest.exists():
                try:
                    os.rename(old, dest)  # put the previous export back
                    old = None
                except OSError:
                    pass
            raise export_error(dest, exc, "cannot move the export into place") from exc
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return dest


__all__ = [
    "fsync_dir",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_npz_atomic",
    "os_error_reason",
    "export_error",
    "folder_has_content",
    "AtomicExportDir",
]
