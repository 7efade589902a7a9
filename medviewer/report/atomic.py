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
from pathlib import Path
from typing import Any

from medviewer.errors import ExportError
from medviewer.fileio import AtomicExportDir, export_error, folder_has_content, fsync_dir

_CHUNK = 1 << 20





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



__all__ = [
    "write_bytes",
    "write_text",
    "write_dicom",
    "dicom_bytes",
    "folder_has_content",
    "export_error",
    "AtomicExportDir",
]
