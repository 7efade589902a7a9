"""Atomic file and folder writes for every exporter (STYLE.md section 9).

* One file: written to a temporary file in the destination folder, flushed,
  ``fsync``-ed, then moved into place with :func:`os.replace`; the folder is
  ``fsync``-ed too.  A reader never sees half a file.
* Several files: written into a hidden ``.partial-<name>-<random>`` folder
  next to the destination, which is renamed to the destination at the end
  (:class:`AtomicExportDir`).  On any error or cancel the partial folder is
  removed, so nothing is left behind.
* Existing files and non-empty folders are never overwritten unless the
  caller passes ``overwrite=True``; otherwise :class:`ExportError`.
* Every :class:`OSError` (read-only folder, full disk, permission) becomes an
  :class:`ExportError` whose message names the path and the reason.

All writes go through :func:`os.open` / :func:`os.write`, so the whole export
can be tested against a simulated full disk by patching :func:`os.write`.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from medviewer.errors import ExportError
from medviewer.fileio import fsync_dir

_CHUNK = 1 << 20


def _reason(exc: OSError) -> str:
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
    return ExportError(f"{path}: {what}: {_reason(exc)}")



def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:_CHUNK])
        if n <= 0:  # pragma: no cover - os.write raises instead
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def write_bytes(path: str | Path, data: bytes | bytearray | memoryview, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        Destination file; its folder must exist.
    data : bytes-like
        The complete content.
    overwrite : bool
        Replace an existing file. Without it an existing file raises.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        The file exists (and ``overwrite`` is False) or the write failed
        (read-only folder, full disk); no temporary file is left behind.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_bytes(d / "a.txt", b"hi").read_bytes()
    b'hi'
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise ExportError(f"{path}: already exists (not overwritten; choose overwrite to replace it)")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if not overwrite:
            # link() fails if the destination appeared meanwhile; no clobbering race.
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ExportError(f"{path}: already exists (not overwritten)") from exc
            except OSError:
                os.replace(tmp, path)  # file systems without hard links
            else:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise export_error(path, exc) from exc
    finally:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return path


def write_text(path: str | Path, text: str, *, overwrite: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode(encoding), overwrite=overwrite)


def dicom_bytes(ds: Any) -> bytes:
    """Encode a pydicom / highdicom dataset as a DICOM Part 10 file in memory.

    Raises
    ------
    ExportError
        pydicom refused the dataset (invalid value, missing meta information).
    """
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # pydicom raises ValueError, TypeError, AttributeError...
        desc = getattr(ds, "SOPClassUID", None)
        name = getattr(desc, "name", "DICOM object")
        raise ExportError(f"cannot encode {name}: {exc}") from exc
    return buf.getvalue()


def write_dicom(path: str | Path, ds: Any, *, overwrite: bool = False) -> Path:
    """Encode ``ds`` and write it atomically to ``path``."""
    return write_bytes(path, dicom_bytes(ds), overwrite=overwrite)


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
    ...     _ = write_text(d.path / "a.txt", "x")
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
    "write_bytes",
    "write_text",
    "write_dicom",
    "dicom_bytes",
    "folder_has_content",
    "export_error",
    "AtomicExportDir",
]
