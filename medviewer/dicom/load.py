"""Load a scanned series into a :class:`~medviewer.volume.Volume`.

The scan already read every header and ordered the frames, so loading only
reads pixels, into one preallocated array:

* uncompressed little/big-endian grey-scale: direct reads at the pixel data
  offset (no pydicom parsing), rescaled in place;
* RLE Lossless grey-scale: frames cut from the encapsulated data and decoded
  with pylibjpeg-rle's Rust decoder;
* everything else (JPEG, JPEG-LS, JPEG 2000, deflate, colour, palette,
  1-bit, float pixel data): pydicom's decoders, frame by frame.

Files are read by a small thread pool; cancel is checked between frames.
The pixel values equal pydicom's decoded pixels after its modality LUT /
rescale (``pydicom.pixels.apply_modality_lut``), as float32; colour images
become uint8 RGB (samples with more than 8 bits are shifted down to 8).
"""

from __future__ import annotations

import concurrent.futures as cf
import mmap
import os
import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.dicom.model import FileEntry, Frame, Series
from medviewer.dicom.reader import memory_budget, read_full_dataset
from medviewer.dicom.scan import scan_with_report
from medviewer.dicom.values import value
from medviewer.errors import (
    CancelledError,
    DicomError,
    NoPixelDataError,
    TooLargeError,
    TruncatedPixelDataError,
    UnsupportedTransferSyntaxError,
)
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.volume import Volume, VolumeMetadata, WindowPreset

__all__ = ["load_series", "load"]

_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_NATIVE_BE = "1.2.840.10008.1.2.2"
_RLE = "1.2.840.10008.1.2.5"
_INT_DTYPES = {(8, 0): "u1", (8, 1): "i1", (16, 0): "u2", (16, 1): "i2", (32, 0): "u4", (32, 1): "i4"}


def _hint(ds: Any, keyword: str, default: int) -> int:
    try:
        v = value(ds, keyword, default)
        return default if v is None else int(v)
    except Exception:  # noqa: BLE001
        return default


class _Context:
    """What every worker needs: the output, the stop flag, the budget."""

    def __init__(self, out: NDArray[Any], color: bool, budget: int) -> None:
        self.out = out
        self.color = color
        self.budget = budget
        self.stop = threading.Event()


# ------------------------------------------------------------------- pixels
def _store_grey(raw: NDArray[Any], frame: Frame, header: Any, out_k: NDArray[np.float32]) -> None:
    """Modality LUT / rescale of one frame into the float32 output slice."""
    if raw.ndim != 2 or raw.shape != out_k.shape:
        raise DicomError(f"decoded frame has shape {raw.shape}, expected {out_k.shape}", frame.entry.path)
    if 0x00283000 in header and header.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        out_k[...] = apply_modality_lut(raw, header)
        return
    slope, intercept = frame.slope, frame.intercept
    if slope == 1.0 and float(np.float32(intercept)) == intercept and raw.dtype.itemsize <= 2 and raw.dtype.kind in "iu":
        # exact in float32: |values| < 2**24 and a float32 intercept
        np.add(raw, np.float32(intercept), out=out_k, casting="unsafe")
        return
    tmp = raw.astype(np.float64)
    if slope != 1.0:
        tmp *= slope
    if intercept != 0.0:
        tmp += intercept
    out_k[...] = tmp


def _shift_correct(raw: NDArray[Any], header: Any) -> None:
    """pydicom's unused-bits correction: sign-extend / mask above BitsStored."""
    allocated = raw.dtype.itemsize * 8
    stored = _hint(header, "BitsStored", allocated)
    if 0 < stored < allocated:
        shift = allocated - stored
        np.left_shift(raw, shift, out=raw)
        np.right_shift(raw, shift, out=raw)


def _mode(entry: FileEntry, color: bool) -> str:
    px = entry.pixels
    hdr = entry.header
    if px is None or not px.direct or px.keyword != "PixelData" or color:
        return "pydicom"
    if _hint(hdr, "SamplesPerPixel", 1) != 1:
        return "pydicom"
    bits = _hint(hdr, "BitsAllocated", 0)
    rep = _hint(hdr, "PixelRepresentation", 0)
    if (bits, rep) not in _INT_DTYPES:
        return "pydicom"
    ts = entry.transfer_syntax
    if px.length is not None and (ts in _NATIVE_LE or (ts == _NATIVE_BE and bits > 8)):
        return "native"
    if px.length is None and ts == _RLE and bits in (8, 16):
        try:
            import rle.utils  # noqa: F401
        except ImportError:  # pragma: no cover - pylibjpeg-rle is a dependency
            return "pydicom"
        return "rle"
    return "pydicom"


def _read_native(entry: FileEntry, items: list[tuple[int, Frame]], ctx: _Context) -> None:
    hdr = entry.header
    px = entry.pixels
    assert px is not None and px.length is not None
    bits = _hint(hdr, "BitsAllocated", 16)
    rep = _hint(hdr, "PixelRepresentation", 0)
    order = ">" if entry.transfer_syntax == _NATIVE_BE else "<"
    dtype = np.dtype(order + _INT_DTYPES[(bits, rep)])
    f0 = items[0][1]
    n_px = f0.rows * f0.columns
    frame_bytes = n_px * dtype.itemsize
    needed = frame_bytes * entry.n_frames
    if px.length < needed:
        raise TruncatedPixelDataError(f"pixel data has {px.length} bytes, {needed} expected", entry.path)
    buf = np.empty(n_px, dtype=dtype)
    view = memoryview(buf).cast("B")  # type: ignore[arg-type]
    with entry.open(max_bytes=ctx.budget) as fp:
        for k, frame in sorted(items, key=lambda it: it[1].index):
            if ctx.stop.is_set():
                return
            fp.seek(px.offset + frame.index * frame_bytes)
            got = fp.readinto(view)  # type: ignore[attr-defined]
            if got != frame_bytes:
                raise TruncatedPixelDataError(
                    f"file ends inside frame {frame.index + 1}: {got} of {frame_bytes} bytes", entry.path
                )
            raw = buf.reshape(frame.rows, frame.columns)
            if order == ">":
                raw = raw.astype(dtype.newbyteorder("="))
            _shift_correct(raw, hdr)
            _store_grey(raw, frame, hdr, ctx.out[k])


def _read_rle(entry: FileEntry, items: list[tuple[int, Frame]], ctx: _Context) -> None:
    from pydicom.encaps import generate_frames
    from rle.utils import decode_frame

    hdr = entry.header
    px = entry.pixels
    assert px is not None
    bits = _hint(hdr, "BitsAllocated", 16)
    rep = _hint(hdr, "PixelRepresentation", 0)
    dtype = np.dtype("<" + _INT_DTYPES[(bits, rep)])
    with entry.open(max_bytes=ctx.budget) as fp:
        fp.seek(px.offset)
        data = fp.read()
    wanted = {frame.index: k for k, frame in items}
    by_index = {frame.index: frame for _, frame in items}
    n_done = 0
    for i, encoded in enumerate(generate_frames(data, number_of_frames=entry.n_frames)):
        if ctx.stop.is_set():
            return
        if i not in wanted:
            continue
        frame = by_index[i]
        n_px = frame.rows * frame.columns
        try:
            decoded = decode_frame(encoded, n_px, bits, "<")
        except (ValueError, RuntimeError) as exc:
            raise DicomError(f"corrupt RLE data in frame {i + 1} ({exc})", entry.path) from exc
        if len(decoded) != n_px * dtype.itemsize:
            raise TruncatedPixelDataError(f"RLE frame {i + 1} decodes to {len(decoded)} bytes", entry.path)
        raw = np.frombuffer(decoded, dtype=dtype).reshape(frame.rows, frame.columns)
        _shift_correct(raw, hdr)
        _store_grey(raw, frame, hdr, ctx.out[wanted[i]])
        n_done += 1
        if n_done == len(wanted):
            break
    if n_done != len(wanted):
        raise TruncatedPixelDataError(f"RLE data holds fewer than {entry.n_frames} frames", entry.path)


def _to_rgb8(arr: NDArray[Any], header: Any, palette: bool) -> NDArray[np.uint8]:
    """Decoded colour pixels to uint8 RGB (more than 8 bits shifted down)."""
    if palette:
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, header)
        nbits = 8 * arr.dtype.itemsize
    else:
        nbits = _hint(header, "BitsStored", 8 * arr.dtype.itemsize)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DicomError(f"colour frame has shape {arr.shape}", "")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        return np.clip(arr, 0, 255).astype(np.uint8)
    shift = max(0, nbits - 8)
    return (np.right_shift(arr.astype(np.uint64), shift) & 0xFF).astype(np.uint8)


def _read_pydicom(entry: FileEntry, items: list[tuple[int, Frame]], ctx: _Context) -> None:
    from pydicom.pixels import iter_pixels
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    if entry.pixels is not None and entry.pixels.keyword == "PixelData":
        ts = UID(entry.transfer_syntax)
        try:
            decoder = get_decoder(ts)
            available = decoder.is_available
        except NotImplementedError:
            available = False
        if not available:
            raise UnsupportedTransferSyntaxError(
                f"no installed decoder for transfer syntax {ts.name if ts.is_valid else ts}", entry.path
            )
    ds = read_full_dataset(entry, ctx.budget)
    hdr = entry.header
    palette = str(hdr.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR"
    wanted = {frame.index: (k, frame) for k, frame in items}
    indices = sorted(wanted)
    n_done = 0
    for i, arr in zip(indices, iter_pixels(ds, indices=indices)):
        if ctx.stop.is_set():
            return
        n_done += 1
        k, frame = wanted[i]
        if ctx.color:
            rgb = _to_rgb8(arr, hdr, palette)
            if rgb.shape != ctx.out[k].shape:
                raise DicomError(f"decoded frame has shape {rgb.shape}, expected {ctx.out[k].shape}", entry.path)
            ctx.out[k] = rgb
        else:
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            _store_grey(arr, frame, ds, ctx.out[k])
    if n_done != len(indices):  # never leave slices of the volume unfilled
        raise TruncatedPixelDataError(f"pixel data holds {n_done} of {len(indices)} expected frames", entry.path)


def _read_entry(entry: FileEntry, items: list[tuple[int, Frame]], ctx: _Context) -> None:
    """Decode the frames ``items`` of ``entry`` into ``ctx.out`` (worker thread)."""
    if ctx.stop.is_set():
        return
    mode = _mode(entry, ctx.color)
    try:
        if mode == "native":
            _read_native(entry, items, ctx)
        elif mode == "rle":
            _read_rle(entry, items, ctx)
        else:
            _read_pydicom(entry, items, ctx)
    except DicomError as exc:
        if exc.path is None:
            raise DicomError(exc.reason, entry.path) from exc
        raise
    except CancelledError:
        raise
    except MemoryError as exc:
        raise TooLargeError("out of memory while decoding pixel data", entry.path) from exc
    except RecursionError as exc:
        raise DicomError("data set nests sequences too deeply", entry.path) from exc
    except BaseException as exc:  # noqa: BLE001 - pydicom / decoders / numpy leak many types
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit; a Rust decoder panic (pyo3) is a BaseException
        message = str(exc).strip().splitlines()
        first = " ".join(message[:3])[:300] if message else ""
        lowered = first.lower()
        if "less than expected" in lowered or "truncat" in lowered or "end of" in lowered:
            raise TruncatedPixelDataError(f"truncated pixel data ({first})", entry.path) from exc
        if "has no 'pixel data'" in lowered:
            raise TruncatedPixelDataError("pixel data element incomplete (file truncated?)", entry.path) from exc
        if "unable to decode" in lowered and "plugin" in lowered and "missing" in lowered:
            raise UnsupportedTransferSyntaxError(f"cannot decode ({first})", entry.path) from exc
        raise DicomError(f"cannot decode pixel data ({type(exc).__name__}: {first})", entry.path) from exc


# ----------------------------------------------------------------- metadata
def _text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return ""
    return "" if value is None else str(value).strip()


def _metadata(series: Series, block: Series, frames: list[Frame], notes: list[str]) -> VolumeMetadata:
    hdr = frames[0].entry.header
    entries = list(dict.fromkeys(f.entry for f in frames))
    pi = _text(hdr, "PhotometricInterpretation").upper() or "MONOCHROME2"
    color = block.is_color
    modality = _text(hdr, "Modality")
    windows = [WindowPreset(c, w, name) for c, w, name in frames[0].windows]
    voi_lut = None
    try:
        seq = hdr.get("VOILUTSequence")
        voi_lut = seq[0] if seq else None
    except Exception:  # noqa: BLE001
        voi_lut = None
    if color:
        units = "RGB"
    elif modality == "CT" and not hdr.get("ModalityLUTSequence"):
        units = "HU"
    else:
        units = _text(hdr, "RescaleType") or _text(hdr, "Units") or ""
    extra_dose: dict[str, Any] = {}
    if modality == "RTDOSE" and _text(hdr, "DoseGridScaling"):
        # stored dose values; Gy (or the DoseUnits) = value x DoseGridScaling
        try:
            extra_dose["dose_grid_scaling"] = float(_text(hdr, "DoseGridScaling"))
            units = f"{_text(hdr, 'DoseUnits') or 'GY'} = value x {extra_dose['dose_grid_scaling']:g}"
        except ValueError:
            pass
    headers = []
    for e in entries:
        h = e.header
        for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            if tag in h:
                h = h.copy()
                del h[tag]
        headers.append(h)
    return VolumeMetadata(
        modality=modality,
        patient_name=_text(hdr, "PatientName"),
        patient_id=_text(hdr, "PatientID"),
        patient_birth_date=_text(hdr, "PatientBirthDate"),
        patient_sex=_text(hdr, "PatientSex"),
        study_uid=_text(hdr, "StudyInstanceUID"),
        study_date=_text(hdr, "StudyDate"),
        study_time=_text(hdr, "StudyTime"),
        study_description=_text(hdr, "StudyDescription"),
        accession_number=_text(hdr, "AccessionNumber"),
        series_uid=_text(hdr, "SeriesInstanceUID"),
        series_number=series.number,
        series_description=_text(hdr, "SeriesDescription"),
        frame_of_reference_uid=_text(hdr, "FrameOfReferenceUID"),
        sop_class_uid=frames[0].entry.sop_class_uid,
        sop_instance_uids=[f.entry.sop_instance_uid for f in frames],
        slice_thickness=frames[0].slice_thickness,
        photometric="RGB" if color else pi,
        invert_display=(pi == "MONOCHROME1"),
        windows=windows,
        voi_lut=voi_lut,
        units=units,
        manufacturer=_text(hdr, "Manufacturer"),
        institution_name=_text(hdr, "InstitutionName"),
        source_files=[e.path for e in entries],
        headers=headers,
        warnings=notes,
        extra={
            "frame_numbers": [f.index + 1 for f in frames],
            "slice_files": [f.entry.path for f in frames],
            "kind": series.kind,
            "transfer_syntaxes": sorted({e.transfer_syntax for e in entries}),
            "block": block.label,
            "n_sub_series": len(series.sub_series),
            **extra_dose,
        },
    )


_POPULATE_MIN_BYTES = 32 * 2**20


def _allocate(shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[Any]:
    """The output array; large ones are mapped pre-faulted (MAP_POPULATE) where available.

    Faulting a fresh 300 MiB array page by page (with transparent huge page
    compaction) was the largest single cost of loading an uncompressed series
    here; the kernel populates a mapping in one go faster. The array owns
    the mapping (it is freed with the array).
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    flag = getattr(mmap, "MAP_POPULATE", None)
    if nbytes >= _POPULATE_MIN_BYTES and flag is not None and os.environ.get("MEDVIEWER_POPULATE", "1") != "0":
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flag)
        except (OSError, ValueError, OverflowError):
            pass
        else:
            return np.frombuffer(buf, dtype=dtype).reshape(shape)
    return np.empty(shape, dtype=dtype)


# --------------------------------------------------------------------- API
def load_series(
    series: Series,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    memory_budget_bytes: int | None = None,
    workers: int | None = None,
) -> Volume:
    """Read the pixels of a scanned series into a Volume.

    Parameters
    ----------
    series : Series
        From :func:`medviewer.dicom.scan`; a series split into sub-series
        loads its largest block (the volume's warnings say so) — pass one of
        ``series.sub_series`` to load another block.
    progress, cancel : callables, optional
        See :mod:`medviewer.progress`; cancel is honoured between frames.
    memory_budget_bytes : int, optional
        Largest volume allowed (default :func:`memory_budget`).
    workers : int, optional
        Reader threads (default: min(4, CPU count)).

    Returns
    -------
    Volume
        float32 modality values (HU for CT) ``(z, y, x)``, or uint8 RGB
        ``(z, y, x, 3)``; slices ordered along the slice normal. In its
        metadata, ``sop_instance_uids`` has one entry per slice (a
        multi-frame object's UID repeats), ``extra["frame_numbers"]`` the
        1-based frame of each slice and ``extra["slice_files"]`` its file;
        ``headers`` / ``source_files`` have one entry per file in slice order;
        ``warnings`` says what was split, dropped or assumed.

    Raises
    ------
    NoPixelDataError
        The series is not viewable (SR, RT Plan, SEG, ...).
    TooLargeError
        The volume exceeds the memory budget (checked before decoding).
    TruncatedPixelDataError, UnsupportedTransferSyntaxError, DicomError
        A file cannot be decoded (the message names it).
    CancelledError
        ``cancel()`` returned True.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from medviewer.dicom import scan
    >>> series = scan(get_testdata_file("CT_small.dcm"))[0].series[0]
    >>> vol = load_series(series)
    >>> vol.shape, vol.metadata.units, float(vol.voxels.min()) < -500
    ((1, 128, 128), 'HU', True)
    """
    first_path = series.files[0].path if series.files else None
    if not series.viewable:
        raise NoPixelDataError(series.reason or "series is not viewable", first_path)
    block = series.primary
    frames = block.frames
    if not frames:
        raise NoPixelDataError("series has no image frames", first_path)
    notes = list(series.warnings) + ([w for w in block.warnings if w not in series.warnings] if block is not series else [])
    budget = memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
    n, rows, cols = len(frames), block.rows, block.columns
    color = block.is_color
    shape: tuple[int, ...] = (n, rows, cols, 3) if color else (n, rows, cols)
    dtype = np.uint8 if color else np.float32
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes > budget:
        raise TooLargeError(
            f"volume of {n} x {rows} x {cols} needs {nbytes / 2**20:.0f} MiB, above the memory budget of "
            f"{budget / 2**20:.0f} MiB",
            first_path,
        )
    check_cancel(cancel, "loading")
    prog = Progress(progress)
    prog(0.0, f"loading {n} images")
    try:
        out = _allocate(shape, np.dtype(dtype))
    except MemoryError as exc:
        raise TooLargeError(f"cannot allocate {nbytes / 2**20:.0f} MiB for the volume", first_path) from exc
    ctx = _Context(out, color, budget)
    tasks: dict[FileEntry, list[tuple[int, Frame]]] = defaultdict(list)
    for k, frame in enumerate(frames):
        tasks[frame.entry].append((k, frame))
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks)))
    done_frames = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if n_workers == 1:
            for entry, items in tasks.items():
                check_cancel(cancel, "loading")
                _read_entry(entry, items, ctx)
                done_frames += len(items)
                prog(done_frames / n, f"loaded {done_frames}/{n} images")
        else:
            with cf.ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="medviewer-load") as pool:
                futures = {pool.submit(_read_entry, e, items, ctx): len(items) for e, items in tasks.items()}
                pending = set(futures)
                try:
                    while pending:
                        done, pending = cf.wait(pending, timeout=0.05, return_when=cf.FIRST_COMPLETED)
                        for fut in done:
                            fut.result()
                            done_frames += futures[fut]
                        if cancel is not None and cancel():
                            raise CancelledError("loading cancelled")
                        if done:
                            prog(done_frames / n, f"loaded {done_frames}/{n} images")
                except BaseException:
                    ctx.stop.set()
                    for fut in pending:
                        fut.cancel()
                    raise
    check_cancel(cancel, "loading")
    pyd_notes = sorted({str(w.message).splitlines()[0][:200] for w in caught if issubclass(w.category, UserWarning)})
    notes.extend(f"pydicom: {m}" for m in pyd_notes[:5])
    metadata = _metadata(series, block, frames, notes)
    direction = block.direction if block.direction is not None else np.eye(3)
    spacing = block.spacing or (1.0, 1.0, 1.0)
    prog(1.0, f"loaded {n} images")
    # origin from the first frame itself, so a Series holding a subset of a block's frames
    # (e.g. a one-frame preview copy) still gets exact positions
    origin = frames[0].position if frames[0].position is not None else block.origin
    return Volume(out, spacing=spacing, origin=origin, direction=direction, metadata=metadata)


def _pick(series_list: Sequence[Series], series_uid: str | None) -> Series | None:
    if series_uid is not None:
        for s in series_list:
            if s.series_uid == series_uid:
                return s
        return None
    viewable = [s for s in series_list if s.viewable]
    if not viewable:
        return None
    return max(viewable, key=lambda s: (len(s.primary.frames) * s.rows * s.columns, -series_list.index(s)))


def load(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    series_uid: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Volume:
    """Scan ``path`` and load one series (the given one, else the largest viewable).

    Parameters
    ----------
    path : path or list of paths
        Folder, DICOMDIR, zip archive or files (see :func:`medviewer.dicom.scan`).
    series_uid : str, optional
        SeriesInstanceUID to load.
    progress, cancel : callables, optional
        See :mod:`medviewer.progress`.

    Returns
    -------
    Volume

    Raises
    ------
    DicomError
        Nothing viewable found (the message lists why), or the series failed.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> load(get_testdata_file("MR_small.dcm")).shape
    (1, 64, 64)
    """
    prog = Progress(progress)
    report = scan_with_report(path, prog.sub(0.0, 0.2), cancel)
    chosen = _pick(report.series, series_uid)
    if chosen is None:
        if series_uid is not None:
            raise DicomError(f"no series with SeriesInstanceUID {series_uid}", str(path))
        reasons = [f"{s.kind}: {s.reason}" for s in report.series if not s.viewable]
        reasons += [f"{os.path.basename(p)}: {r}" for p, r in report.skipped if r != "not a DICOM file"]
        detail = "; ".join(reasons[:5]) if reasons else "no DICOM files found"
        raise NoPixelDataError(f"nothing viewable ({detail})", str(path) if not isinstance(path, (list, tuple)) else None)
    return load_series(chosen, prog.sub(0.2, 1.0), cancel)
