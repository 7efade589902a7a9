"""A fast header-only reader for the common DICOM encodings.

pydicom's ``dcmread(stop_before_pixels=True)`` costs about 0.4-0.7 ms per
file, most of it per-element Python overhead; a 300-slice series spends more
time there than reading its pixels. This module walks the element headers of
the file meta group and of an Explicit or Implicit VR Little Endian data set
with ``struct.unpack_from`` and stores each element as pydicom's own
``RawDataElement`` (values stay raw bytes and are converted lazily by
pydicom, exactly as after ``dcmread``). Sequences of undefined length are
delimited here and kept raw too; pydicom parses them on first access.

Anything unusual (no preamble, big endian, deflate, an unknown VR, UN of
undefined length, truncation) returns None, and the caller falls back to
``pydicom.dcmread``. ``tests/test_dicom_fastheader.py`` checks that the data
sets equal pydicom's for every sample file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

__all__ = ["FastHeader", "NEED_MORE", "parse_header"]

_TAG_VR_LEN = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_TAG_LEN = struct.Struct("<HHI")
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_VRS = frozenset(
    s.encode()
    for s in (
        "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    ).split()
)
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 64  # nested sequences + items; real headers stay far below

_raw = tuple.__new__  # RawDataElement is a namedtuple: skip its Python-level __new__

NEED_MORE = object()
"""Returned by :func:`parse_header` when the buffer ends inside the header."""


@dataclass
class FastHeader:
    """The parsed header: raw elements of the meta group and of the data set."""

    meta: dict[int, Any]
    elements: dict[int, Any]
    transfer_syntax: str
    implicit: bool
    pixel_keyword: str | None
    pixel_offset: int
    pixel_length: int | None
    pixel_vr: str


def _explicit_ts(ts: str) -> bool:
    """True for transfer syntaxes whose data set is Explicit VR Little Endian."""
    if ts == _EXPLICIT_LE:
        return True
    try:
        from pydicom.uid import UID

        uid = UID(ts)
        return bool(uid.is_transfer_syntax and uid.is_encapsulated and uid.is_little_endian and not uid.is_deflated)
    except Exception:  # noqa: BLE001 - private or malformed UID: let pydicom decide
        return False


def _end_of_undefined(buf: bytes, pos: int, implicit: bool) -> Any:
    """Offset of the Sequence Delimitation Item closing the sequence whose value starts at ``pos``.

    Returns NEED_MORE when the buffer ends first, None when the structure is
    not one this reader handles.
    """
    stack = ["S"]
    n = len(buf)
    while pos + 8 <= n:
        group, elem, length = _TAG_LEN.unpack_from(buf, pos)
        if group == 0xFFFE:
            if elem == 0xE000:
                if length == _UNDEFINED:
                    stack.append("I")
                    if len(stack) > _MAX_DEPTH:
                        return None
                    pos += 8
                else:
                    pos += 8 + length
            elif elem == 0xE00D:
                if stack[-1] != "I":
                    return None
                stack.pop()
                pos += 8
            elif elem == 0xE0DD:
                if stack[-1] != "S":
                    return None
                stack.pop()
                if not stack:
                    return pos
                pos += 8
            else:
                return None
            continue
        if implicit:
            header = 8
        else:
            if pos + 12 > n:
                return NEED_MORE
            _, _, vr, short = _TAG_VR_LEN.unpack_from(buf, pos)
            if vr not in _VRS:
                return None
            if vr in _LONG_VRS:
                (length,) = _U32.unpack_from(buf, pos + 8)
                header = 12
            else:
                length, header = short, 8
            if length == _UNDEFINED and vr != b"SQ":
                return None  # UN of undefined length holds implicit VR data: leave it to pydicom
        if length == _UNDEFINED:
            stack.append("S")
            if len(stack) > _MAX_DEPTH:
                return None  # pathological nesting: pydicom's reader reports it
            pos += header
        else:
            pos += header + length
    return NEED_MORE


def parse_header(buf: bytes, eof: bool) -> Any:
    """Parse preamble, file meta and data set up to the pixel data.

    Parameters
    ----------
    buf : bytes
        The start of the file (the whole file when ``eof``).
    eof : bool
        Whether ``buf`` holds the whole file.

    Returns
    -------
    FastHeader, NEED_MORE or None
        None when the file needs pydicom's general reader.
    """
    n = len(buf)
    if n < 144 or buf[128:132] != b"DICM":
        return None
    # ---- file meta: always Explicit VR Little Endian, group 0x0002
    pos = 132
    meta: dict[int, Any] = {}
    while True:
        if pos + 8 > n:
            return NEED_MORE if not eof else None
        group, elem, vr, short = _TAG_VR_LEN.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if vr not in _VRS:
            return None
        if vr in _LONG_VRS:
            if pos + 12 > n:
                return NEED_MORE if not eof else None
            (length,) = _U32.unpack_from(buf, pos + 8)
            header = 12
        else:
            length, header = short, 8
        if length == _UNDEFINED:
            return None
        start = pos + header
        if start + length > n:
            return NEED_MORE if not eof else None
        tag = BaseTag((group << 16) | elem)
        meta[tag] = _raw(RawDataElement, (tag, vr.decode(), length, buf[start : start + length], start, False, True))
        pos = start + length
    ts_elem = meta.get(0x00020010)
    if ts_elem is None:
        return None
    ts = ts_elem.value.decode("ascii", "replace").strip("\x00 ")
    if ts == _IMPLICIT_LE:
        implicit = True
    elif _explicit_ts(ts):
        implicit = False
    else:
        return None
    # ---- data set
    elements: dict[int, Any] = {}
    pixel_keyword: str | None = None
    pixel_offset, pixel_length, pixel_vr = 0, None, ""
    while True:
        if pos + 8 > n:
            if not eof:
                return NEED_MORE
            if pos == n:
                break  # a data set without pixel data
            return None
        if implicit:
            group, elem, length = _TAG_LEN.unpack_from(buf, pos)
            tag = BaseTag((group << 16) | elem)
            vr_str: str | None = None
            header = 8
        else:
            if pos + 12 > n and not eof:
                return NEED_MORE
            group, elem, vr, short = _TAG_VR_LEN.unpack_from(buf, pos)
            tag = BaseTag((group << 16) | elem)
            if vr not in _VRS:
                return None
            vr_str = vr.decode()
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    return None
                (length,) = _U32.unpack_from(buf, pos + 8)
                header = 12
            else:
                length, header = short, 8
        if tag in _PIXEL_TAGS:
            pixel_keyword = _PIXEL_TAGS[tag]
            pixel_offset = pos + header
            pixel_length = None if length == _UNDEFINED else length
            pixel_vr = vr_str or "OW"
            break
        if group == 0xFFFE or group < 0x0008 and group != 0x0004:
            return None  # stray delimiters or command/meta groups: pydicom knows the quirks
        start = pos + header
        if length == _UNDEFINED:
            if vr_str not in (None, "SQ"):
                return None
            end = _end_of_undefined(buf, start, implicit)
            if end is NEED_MORE:
                return NEED_MORE if not eof else None
            if end is None:
                return None
            value = buf[start:end]
            elements[tag] = _raw(RawDataElement, (tag, "SQ", len(value), value, start, implicit, True))
            pos = end + 8
            continue
        if start + length > n:
            return NEED_MORE if not eof else None
        elements[tag] = _raw(RawDataElement, (tag, vr_str, length, buf[start : start + length], start, implicit, True))
        pos = start + length
    return FastHeader(meta, elements, ts, implicit, pixel_keyword, pixel_offset, pixel_length, pixel_vr)


def build_dataset(header: FastHeader, path: str, preamble: bytes) -> Any:
    """A pydicom ``FileDataset`` holding the raw elements (as ``dcmread`` would)."""
    from pydicom.dataset import FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta._dict.update(header.meta)  # type: ignore[arg-type]  # raw elements keyed by int tags, as dcmread
    ds = FileDataset(path, {}, preamble=preamble, file_meta=meta, is_implicit_VR=header.implicit, is_little_endian=True)
    ds._dict.update(header.elements)  # type: ignore[arg-type]
    return ds
