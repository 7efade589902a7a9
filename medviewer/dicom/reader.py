"""Reading one DICOM file safely: header-only pass and full read.

Every pydicom / zlib / struct exception is turned into a
:class:`~medviewer.errors.DicomError` naming the file. Deflated data sets
are inflated with a cap before pydicom sees them (pydicom inflates without
one), and zip members are refused when their declared size is too large.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from medviewer.dicom.model import FileEntry, PixelLocation
from medviewer.errors import DicomError, TooLargeError

__all__ = [
    "NotDicomError",
    "memory_budget",
    "read_entry",
    "read_full_dataset",
    "DEFLATED_TS",
]

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_DEFLATED_TS_BYTES = DEFLATED_TS.encode("ascii")
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_MIN_DEFLATE_CAP = 16 * 2**20
_DEFLATE_RATIO = 100


class NotDicomError(DicomError):
    """The file is not DICOM at all (skipped silently by a folder scan)."""


def memory_budget() -> int:
    """Bytes one loaded volume may take (``MEDVIEWER_MEMORY_BUDGET`` or half the RAM).

    ``MEDVIEWER_MEMORY_BUDGET`` accepts a byte count with an optional
    K/M/G suffix, e.g. ``"2G"``.

    Examples
    --------
    >>> memory_budget() > 0
    True
    """
    env = os.environ.get("MEDVIEWER_MEMORY_BUDGET", "").strip()
    if env:
        scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(env[-1].upper(), 1)
        try:
            return max(1, int(float(env[:-1] if scale > 1 else env) * scale))
        except ValueError:
            pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 8 * 2**30
    return max(256 * 2**20, total // 2)


@contextlib.contextmanager
def _recording(log: list[warnings.WarningMessage]) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            log.extend(caught)


def _deflate_cap(compressed_size: int, budget: int) -> int:
    return min(budget, max(_MIN_DEFLATE_CAP, _DEFLATE_RATIO * compressed_size))


def _check_deflate(fp: BinaryIO, path: str, budget: int) -> None:
    """Inflate the deflated part of ``fp`` with a cap; raise on a bomb or corrupt stream."""
    fp.seek(0)
    head = fp.read(132 + 12)
    if len(head) < 144 or head[128:132] != b"DICM":
        raise DicomError("deflated transfer syntax without a file meta header", path)
    try:
        (group_length,) = struct.unpack("<I", head[140:144])
    except struct.error as exc:  # pragma: no cover - length checked above
        raise DicomError("corrupt file meta header", path) from exc
    fp.seek(144 + group_length)
    data = fp.read()
    cap = _deflate_cap(len(data), budget)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise DicomError(f"corrupt deflate stream ({exc})", path) from exc
    if len(out) > cap:
        raise TooLargeError(
            f"deflated data set inflates beyond {cap} bytes from {len(data)} (deflate bomb?)", path
        )
    fp.seek(0)


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A data set without preamble usually starts with group 0x0008 (or 0x0002)."""
    if len(head) < 8:
        return False
    group_le = head[0] | (head[1] << 8)
    group_be = (head[0] << 8) | head[1]
    return group_le in (0x0002, 0x0008) or group_be == 0x0008


def _fix_transfer_syntax(ds: Any) -> str:
    """Make sure ``ds.file_meta.TransferSyntaxUID`` exists; return it."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    ts = meta.get("TransferSyntaxUID")
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = True, True
    uid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    meta.TransferSyntaxUID = uid
    return str(uid)


def _locate_pixels(fp: BinaryIO, pos: int, little: bool, implicit: bool) -> PixelLocation | None:
    fp.seek(pos)
    head = fp.read(12)
    if len(head) < 8:
        return None
    end = "<" if little else ">"
    group, elem = struct.unpack(end + "HH", head[:4])
    tag = (group << 16) | elem
    keyword = _PIXEL_TAGS.get(tag)
    if keyword is None:
        return None
    if implicit:
        (length,) = struct.unpack(end + "I", head[4:8])
        offset, vr = pos + 8, "OW"
    else:
        vr_bytes = head[4:6]
        vr = vr_bytes.decode("ascii", "replace")
        if vr_bytes in _LONG_VRS:
            if len(head) < 12:
                return None
            (length,) = struct.unpack(end + "I", head[8:12])
            offset = pos + 12
        else:
            (length,) = struct.unpack(end + "H", head[6:8])
            offset = pos + 8
    return PixelLocation(keyword, offset, None if length == 0xFFFFFFFF else int(length), vr)


_FIRST_READ = 32768


def _fast_entry(
    fp: BinaryIO, data: bytes | None, size: int, path: str, archive: str | None, member: str | None
) -> FileEntry | None:
    """The header through :mod:`medviewer.dicom.fastheader`, or None (then pydicom reads it)."""
    from medviewer.dicom.fastheader import NEED_MORE, FastHeader, build_dataset, parse_header

    try:
        if data is not None:
            buf, eof = data, True
        else:
            buf = fp.read(_FIRST_READ)
            eof = len(buf) >= size
        while True:
            result = parse_header(buf, eof)
            if result is not NEED_MORE or eof:
                break
            buf += fp.read(3 * len(buf))
            eof = len(buf) >= size
        if not isinstance(result, FastHeader):
            fp.seek(0)
            return None
        ds = build_dataset(result, path, bytes(buf[:128]))
    except Exception:  # noqa: BLE001 - anything odd: the general reader decides
        fp.seek(0)
        return None
    pixels = None
    if result.pixel_keyword is not None:
        pixels = PixelLocation(result.pixel_keyword, result.pixel_offset, result.pixel_length, result.pixel_vr)
    return FileEntry(
        path=path, size=size, header=ds, transfer_syntax=result.transfer_syntax, pixels=pixels, archive=archive,
        member=member,
    )


def read_entry(
    path: str,
    *,
    archive: str | None = None,
    member: str | None = None,
    data: bytes | None = None,
    budget: int | None = None,
    warning_log: list[warnings.WarningMessage] | None = None,
) -> FileEntry:
    """Read one file's header (pixel data not read) and locate its pixel data.

    Parameters
    ----------
    path : str
        Display path (the file, or ``archive/member``).
    archive, member : str, optional
        Zip archive and member name.
    data : bytes, optional
        The file's bytes when already in memory (zip members).
    budget : int, optional
        Memory budget for inflating deflated data sets.
    warning_log : list, optional
        The list of an enclosing ``warnings.catch_warnings(record=True)``;
        when given, the caller records warnings (cheaper for many files) and
        this file's share becomes ``FileEntry.warnings``.

    Returns
    -------
    FileEntry

    Raises
    ------
    NotDicomError
        The file is not DICOM.
    DicomError
        The file is DICOM but its header is corrupt (or a deflate bomb).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    budget = memory_budget() if budget is None else budget
    fp: BinaryIO
    try:
        fp = io.BytesIO(data) if data is not None else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DicomError(f"cannot open file ({exc.strerror or exc})", path) from exc
    start = len(warning_log) if warning_log is not None else 0
    caught: list[warnings.WarningMessage] = warning_log if warning_log is not None else []
    try:
        with fp:
            size = len(data) if data is not None else os.fstat(fp.fileno()).st_size  # type: ignore[union-attr]
            if data is not None:
                head = data[:4096]
            else:  # peek: no extra read or seek for the buffered file
                head = fp.peek(4096)[:4096]  # type: ignore[attr-defined,union-attr]
            deflated = _DEFLATED_TS_BYTES in head
            if deflated:
                _check_deflate(fp, path, budget)
            else:
                fast = _fast_entry(fp, data, size, path, archive, member)
                if fast is not None:
                    return fast
            with contextlib.nullcontext() if warning_log is not None else _recording(caught):
                try:
                    ds = pydicom.dcmread(fp, stop_before_pixels=not deflated)
                except InvalidDicomError as exc:
                    if not _looks_like_raw_dataset(head):
                        raise NotDicomError("not a DICOM file", path) from exc
                    fp.seek(0)
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                    if "SOPClassUID" not in ds and "Rows" not in ds:
                        raise NotDicomError("not a DICOM file (no SOP Class, no image)", path) from exc
                pos = fp.tell()
                ts = _fix_transfer_syntax(ds)
                implicit, little = getattr(ds, "original_encoding", (True, True))
                if deflated:
                    pixels = None
                    for tag, kw in _PIXEL_TAGS.items():
                        if tag in ds:
                            pixels = PixelLocation(kw, 0, None, "", direct=False)
                            del ds[tag]
                            break
                else:
                    pixels = _locate_pixels(fp, pos, bool(little if little is not None else True), bool(implicit))
    except DicomError:
        raise
    except RecursionError as exc:
        raise DicomError("header nests sequences too deeply", path) from exc
    except MemoryError as exc:
        raise TooLargeError("header too large to read", path) from exc
    except Exception as exc:  # pydicom lets many types out on corrupt files
        raise DicomError(f"corrupt DICOM header ({type(exc).__name__}: {exc})", path) from exc
    notes = sorted({str(w.message).split(" in file ")[0][:200] for w in caught[start:]})
    return FileEntry(
        path=path, size=size, header=ds, transfer_syntax=ts, pixels=pixels, archive=archive, member=member, warnings=notes
    )


def read_full_dataset(entry: FileEntry, budget: int) -> Any:
    """Read the whole data set (pixel data included) of ``entry`` with pydicom.

    Deflated data sets are checked against the inflate cap first; the
    transfer syntax is filled in for files without file meta.

    Raises
    ------
    DicomError
    """
    import pydicom

    try:
        # no warnings.catch_warnings here: this runs in worker threads; the
        # caller records warnings around the whole pool (main thread)
        with entry.open(max_bytes=budget) as fp:
            if entry.transfer_syntax == DEFLATED_TS:
                _check_deflate(fp, entry.path, budget)
            ds = pydicom.dcmread(fp, force=True)
        _fix_transfer_syntax(ds)
        return ds
    except DicomError:
        raise
    except RecursionError as exc:
        raise DicomError("data set nests sequences too deeply", entry.path) from exc
    except MemoryError as exc:
        raise TooLargeError("data set too large to read", entry.path) from exc
    except Exception as exc:
        raise DicomError(f"cannot read data set ({type(exc).__name__}: {exc})", entry.path) from exc
