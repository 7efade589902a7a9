"""Fast, fail-safe access to header values.

pydicom converts an element on first access (validation, ``DSfloat``
objects), which dominates a header-only scan of hundreds of files. For the
few numeric and text attributes the scan needs, :func:`value` parses the
still-raw bytes directly and falls back to pydicom for anything else. Every
function returns None (or the default) instead of raising on malformed
values: fuzzed headers must not break a scan.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import RawDataElement

__all__ = ["value"]

# keyword -> (tag, VR) for attributes read during every scan
_FAST: dict[str, tuple[int, str]] = {
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "SamplesPerPixel": (0x00280002, "US"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "NumberOfFrames": (0x00280008, "IS"),
    "InstanceNumber": (0x00200013, "IS"),
    "SeriesNumber": (0x00200011, "IS"),
    "EchoNumbers": (0x00180086, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"),
    "TemporalPositionIdentifier": (0x00200100, "IS"),
    "TriggerTime": (0x00181060, "DS"),
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "PixelSpacing": (0x00280030, "DS"),
    "ImagerPixelSpacing": (0x00181164, "DS"),
    "SliceThickness": (0x00180050, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "RescaleIntercept": (0x00281052, "DS"),
    "WindowCenter": (0x00281050, "DS"),
    "WindowWidth": (0x00281051, "DS"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "SOPClassUID": (0x00080016, "UI"),
    "MediaStorageSOPClassUID": (0x00020002, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "FrameOfReferenceUID": (0x00200052, "UI"),
    "Modality": (0x00080060, "CS"),
    "PhotometricInterpretation": (0x00280004, "CS"),
}
_MISSING = object()


def _parse(raw: bytes, vr: str, little: bool) -> Any:
    if vr == "US":
        n = len(raw) // 2
        if n == 0:
            return None
        vals = struct.unpack(("<" if little else ">") + f"{n}H", raw[: 2 * n])
        return vals[0] if n == 1 else list(vals)
    text = raw.decode("ascii").strip(" \x00")
    if vr in ("UI", "CS"):
        return text if "\\" not in text or vr == "UI" else text.split("\\")[0].strip()
    if text == "":
        return None
    parts = [p.strip() for p in text.split("\\")]
    conv = float if vr == "DS" else int
    numbers: list[float | int] = [conv(p) for p in parts]
    return numbers[0] if len(numbers) == 1 else numbers


def value(ds: Any, keyword: str, default: Any = None) -> Any:
    """The value of ``keyword`` in ``ds`` as plain Python (floats/ints/str/lists).

    Parameters
    ----------
    ds : pydicom.Dataset
    keyword : str
        DICOM keyword.
    default : any
        Returned when the attribute is missing, empty or malformed.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.PixelSpacing = [0.5, 0.75]
    >>> value(ds, "PixelSpacing"), value(ds, "Rows", 0)
    ([0.5, 0.75], 0)
    """
    fast = _FAST.get(keyword)
    if fast is not None:
        try:
            elem = ds._dict.get(fast[0])  # plain dict lookup: BaseTag hashes as its int
        except AttributeError:
            return default
        if elem is None:
            return default
        if type(elem) is RawDataElement:
            raw = elem.value
            if isinstance(raw, bytes):
                try:
                    out = _parse(raw, fast[1], bool(elem.is_little_endian))
                except Exception:  # noqa: BLE001 - malformed value: let pydicom try
                    out = _MISSING
                if out is not _MISSING:
                    return default if out is None else out
    try:
        out = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a corrupt element raises on access
        return default
    if out is None or out == "":
        return default
    return out
