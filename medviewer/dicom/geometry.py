"""Slice geometry: frames of a file, and stacking frames into consistent volumes.

Slices are ordered by ImagePositionPatient projected on the slice normal
(row x column direction of ImageOrientationPatient), never by file name or
InstanceNumber. A series that cannot form one volume (mixed sizes or
orientations, repeated positions, irregular spacing / missing slices) is
split into consistent *blocks*; gantry tilt keeps one block with a sheared
(non-orthogonal) direction matrix so voxel positions stay exact.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.dicom.model import FileEntry, Frame
from medviewer.dicom.values import value

__all__ = ["Block", "frames_of", "build_blocks", "gap_tolerance"]

_POSITION_TOL = 0.01  # mm: two frames closer than this along the normal share a position
_MAX_FRAMES = 200_000


@dataclass
class Block:
    """Frames forming one consistent volume, in slice order, with its geometry."""

    frames: list[Frame]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: NDArray[np.float64]
    warnings: list[str] = field(default_factory=list)
    label: str = ""


# ----------------------------------------------------------------- parsing
def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a DICOM multi-value, or None."""
    if value is None:
        return None
    try:
        seq = list(value) if not isinstance(value, (str, bytes, int, float)) else [value]
        if len(seq) != n:
            return None
        out = tuple(float(v) for v in seq)
    except Exception:  # noqa: BLE001 - malformed values (fuzzed headers) mean "unknown"
        return None
    if not all(math.isfinite(v) for v in out):
        return None
    return out


def _float(value: Any, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        if not isinstance(value, (str, bytes, int, float)):
            value = list(value)[0]
        out = float(value)
    except Exception:  # noqa: BLE001
        return default
    return out if math.isfinite(out) else default


def _int(value: Any, default: int = 0) -> int:
    f = _float(value, None)
    if f is None:
        return default
    try:
        return int(f)
    except (OverflowError, ValueError):
        return default


def _get(ds: Any, keyword: str) -> Any:
    return value(ds, keyword)


def _item(ds: Any, seq_keyword: str) -> Any:
    seq = _get(ds, seq_keyword)
    try:
        return seq[0] if seq else None
    except Exception:  # noqa: BLE001
        return None


def _windows(ds: Any) -> tuple[tuple[float, float, str], ...]:
    centers, widths = _get(ds, "WindowCenter"), _get(ds, "WindowWidth")
    if centers is None or widths is None:
        return ()
    try:
        cs = [centers] if isinstance(centers, (str, int, float)) else list(centers)
        ws = [widths] if isinstance(widths, (str, int, float)) else list(widths)
        names_raw = _get(ds, "WindowCenterWidthExplanation")
        names = [] if names_raw is None else ([names_raw] if isinstance(names_raw, str) else list(names_raw))
        out = []
        for i, (c, w) in enumerate(zip(cs, ws)):
            cf, wf = float(c), float(w)
            if math.isfinite(cf) and math.isfinite(wf) and wf > 0:
                out.append((cf, wf, str(names[i]) if i < len(names) else ""))
        return tuple(out)
    except Exception:  # noqa: BLE001
        return ()


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        ps = _floats(_get(ds, kw), 2)
        if ps is not None and ps[0] > 0 and ps[1] > 0:
            return (ps[0], ps[1])
    return None


def _normal(orientation: Sequence[float]) -> NDArray[np.float64]:
    o = np.asarray(orientation, dtype=np.float64)
    return np.asarray(np.cross(o[:3], o[3:]), dtype=np.float64)


def _valid_orientation(o: tuple[float, ...] | None) -> tuple[float, float, float, float, float, float] | None:
    if o is None:
        return None
    r, c = np.asarray(o[:3]), np.asarray(o[3:])
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 1e-3 or nc < 1e-3:
        return None
    r, c = r / nr, c / nc
    if abs(float(np.dot(r, c))) > 1e-2:
        return None
    return (float(r[0]), float(r[1]), float(r[2]), float(c[0]), float(c[1]), float(c[2]))


def frames_of(entry: FileEntry) -> list[Frame]:
    """The 2D frames of one image file with their geometry and rescale.

    Handles single-frame images, enhanced multi-frame objects (per-frame and
    shared functional groups), RT Dose style GridFrameOffsetVector and
    multi-frame objects without per-frame geometry (position None).

    Raises
    ------
    ValueError
        When Rows/Columns are missing or not positive (the caller reports it).
    """
    ds = entry.header
    rows, columns = _int(_get(ds, "Rows")), _int(_get(ds, "Columns"))
    if rows <= 0 or columns <= 0:
        raise ValueError("missing or zero Rows/Columns")
    n = entry.n_frames
    if n > _MAX_FRAMES:
        raise ValueError(f"NumberOfFrames {n} is implausibly large")
    shared = _item(ds, "SharedFunctionalGroupsSequence") if 0x52009229 in ds else None
    per_list: list[Any] = []
    if 0x52009230 in ds:
        try:
            per_list = list(_get(ds, "PerFrameFunctionalGroupsSequence") or [])
        except Exception:  # noqa: BLE001
            per_list = []

    top_iop = _valid_orientation(_floats(_get(ds, "ImageOrientationPatient"), 6))
    top_ipp = _floats(_get(ds, "ImagePositionPatient"), 3)
    top_ps = _pixel_spacing(ds)
    top_slope = _float(_get(ds, "RescaleSlope"), 1.0) or 1.0
    top_intercept = _float(_get(ds, "RescaleIntercept"), 0.0) or 0.0
    top_thick = _float(_get(ds, "SliceThickness"), None)
    top_windows = _windows(ds) if 0x00281050 in ds else ()
    instance = _int(_get(ds, "InstanceNumber"), 0)
    offsets = None
    if n > 1 and top_ipp is not None:
        offsets = _floats(_get(ds, "GridFrameOffsetVector"), n)
    single_key: tuple[Any, ...] = ()  # single-frame keys are read lazily (_frame_key), only for repeats

    def group_value(fg: Any, seq_kw: str, kw: str) -> Any:
        for src in (fg, shared):
            if src is None:
                continue
            item = _item(src, seq_kw)
            if item is not None:
                v = _get(item, kw)
                if v is not None:
                    return v
        return None

    frames: list[Frame] = []
    for i in range(n):
        fg = per_list[i] if i < len(per_list) else None
        iop = _valid_orientation(_floats(group_value(fg, "PlaneOrientationSequence", "ImageOrientationPatient"), 6))
        iop = iop or top_iop
        ipp = _floats(group_value(fg, "PlanePositionSequence", "ImagePositionPatient"), 3)
        if ipp is None and top_ipp is not None:
            if n == 1:
                ipp = top_ipp
            elif offsets is not None and iop is not None:
                p = np.asarray(top_ipp) + offsets[i] * _normal(iop)
                ipp = (float(p[0]), float(p[1]), float(p[2]))
        ps = _floats(group_value(fg, "PixelMeasuresSequence", "PixelSpacing"), 2)
        ps = (ps[0], ps[1]) if ps is not None and ps[0] > 0 and ps[1] > 0 else top_ps
        thick = _float(group_value(fg, "PixelMeasuresSequence", "SliceThickness"), top_thick)
        slope = _float(group_value(fg, "PixelValueTransformationSequence", "RescaleSlope"), None)
        intercept = _float(group_value(fg, "PixelValueTransformationSequence", "RescaleIntercept"), None)
        voi = None
        for src in (fg, shared):
            if src is not None and _item(src, "FrameVOILUTSequence") is not None:
                voi = _windows(_item(src, "FrameVOILUTSequence"))
                break
        key: tuple[Any, ...]
        if n > 1:
            content = _item(fg, "FrameContentSequence") if fg is not None else None
            key = (
                _int(_get(content, "TemporalPositionIndex"), 0) if content is not None else 0,
                str(_get(content, "StackID") or "") if content is not None else "",
            )
        else:
            key = single_key
        frames.append(
            Frame(
                entry=entry,
                index=i,
                rows=rows,
                columns=columns,
                position=ipp,  # type: ignore[arg-type]
                orientation=iop,
                pixel_spacing=ps,
                slope=top_slope if slope is None else slope,
                intercept=top_intercept if intercept is None else intercept,
                slice_thickness=thick,
                instance_number=instance,
                key=key,
                windows=voi if voi else top_windows,
            )
        )
    return frames


# ----------------------------------------------------------------- stacking
def gap_tolerance(ref: float) -> float:
    """Largest deviation (mm) of a slice gap from the reference gap still called regular.

    5 % of the gap, but at least 0.105 mm (positions rounded to 0.1 mm by
    some scanners) unless that exceeds a quarter of the gap.

    Examples
    --------
    >>> round(gap_tolerance(5.0), 3), round(gap_tolerance(0.625), 3), round(gap_tolerance(0.2), 3)
    (0.25, 0.105, 0.05)
    """
    return max(0.05 * ref, min(0.105, 0.25 * ref))


def _regular_runs(d: NDArray[np.float64]) -> list[list[int]]:
    """Split sorted positions ``d`` into runs of regular spacing (greedy)."""
    runs: list[list[int]] = [[0]] if len(d) else []
    ref: float | None = None
    for i in range(1, len(d)):
        gap = float(d[i] - d[i - 1])
        run = runs[-1]
        if ref is None:
            run.append(i)
            ref = gap
        elif abs(gap - ref) <= gap_tolerance(ref):
            run.append(i)
        elif len(run) == 2:
            # the run's only gap may be the odd one: restart from its last slice
            runs[-1] = [run[0]]
            runs.append([run[1], i])
            ref = gap
        else:
            runs.append([i])
            ref = None
    return runs


def _fallback_z(frames: list[Frame]) -> float:
    ds = frames[0].entry.header
    for value in (_float(_get(ds, "SpacingBetweenSlices"), None), frames[0].slice_thickness):
        if value is not None and value > 0:
            return float(abs(value))
    return 1.0


def _block_geometry(frames: list[Frame], with_positions: bool) -> Block:
    f0 = frames[0]
    warnings: list[str] = []
    ps = f0.pixel_spacing
    if ps is None:
        ps = (1.0, 1.0)
        warnings.append("pixel spacing unknown (assumed 1 mm)")
    if f0.orientation is not None:
        o = np.asarray(f0.orientation, dtype=np.float64)
        row, col = o[:3], o[3:]
        normal = np.cross(row, col)
    else:
        row, col, normal = np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
    direction = np.stack([row, col, normal], axis=1)
    origin = f0.position if f0.position is not None else (0.0, 0.0, 0.0)
    n = len(frames)
    sz = _fallback_z(frames)
    if with_positions and n >= 2:
        p = np.asarray([f.position for f in frames], dtype=np.float64)
        step = (p[-1] - p[0]) / (n - 1)
        along = float(np.dot(step, normal))
        perp = step - along * normal
        length = float(np.linalg.norm(step))
        if length > 1e-6:
            if float(np.linalg.norm(perp)) / length > 1e-3:
                tilt = math.degrees(math.atan2(float(np.linalg.norm(perp)), along))
                direction = np.stack([row, col, step / length], axis=1)
                sz = length
                warnings.append(
                    f"gantry tilt / sheared stack of {tilt:.2f} degrees: slices are not perpendicular to their "
                    "stacking direction; the direction matrix is sheared (non-orthogonal) so positions stay exact"
                )
            else:
                sz = along
            expected = p[0] + np.arange(n)[:, None] * step[None, :]
            dev = float(np.max(np.linalg.norm(p - expected, axis=1)))
            if dev > gap_tolerance(max(sz, 1e-6)):
                warnings.append(f"slice positions deviate up to {dev:.3f} mm from a regular grid")
    elif not with_positions and n >= 2:
        warnings.append(
            f"no per-slice position: {n} images stacked in InstanceNumber/frame order with an assumed "
            f"spacing of {sz:g} mm"
        )
    elif not with_positions and f0.position is None and f0.orientation is None:
        warnings.append("no patient geometry (ImagePositionPatient/ImageOrientationPatient absent)")
    spacing = (float(sz) if sz > 0 else 1.0, float(ps[0]), float(ps[1]))
    return Block(frames, spacing, (float(origin[0]), float(origin[1]), float(origin[2])), direction, warnings)


_SINGLE_KEYS = (
    "EchoNumbers",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "DiffusionBValue",
    "ConvolutionKernel",
    "ImageType",
    "AcquisitionNumber",
)


def _frame_key(frame: Frame) -> tuple[Any, ...]:
    """Attributes telling repeated acquisitions apart (computed on demand for single frames)."""
    if frame.key:
        return frame.key
    vals = [_get(frame.entry.header, kw) for kw in _SINGLE_KEYS]
    frame.key = tuple(v if isinstance(v, (str, int, float)) or v is None else str(v) for v in vals)
    return frame.key


def _split_repeats(frames: list[Frame], d: NDArray[np.float64]) -> tuple[list[tuple[str, list[int]]], str]:
    """Split indices of frames sharing positions into groups with unique positions."""
    order = np.argsort(d, kind="stable")
    pos_id = np.zeros(len(d), dtype=np.int64)
    current = 0
    for a, b in zip(order[:-1], order[1:]):
        if d[b] - d[a] > _POSITION_TOL:
            current += 1
        pos_id[b] = current
    counts = np.bincount(pos_id)
    m = int(counts.max())
    if m <= 1:
        return [("", list(range(len(frames))))], ""
    names = _SINGLE_KEYS
    keys = [_frame_key(f) for f in frames]
    n_key = len(keys[0])
    for j in range(n_key):
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            groups[key[j] if j < len(key) else None].append(i)
        if 1 < len(groups) <= m and all(
            len(set(pos_id[idx].tolist())) == len(idx) for idx in groups.values()
        ):
            name = names[j] if n_key == len(names) else ("TemporalPositionIndex", "StackID")[j] if j < 2 else f"key{j}"
            out = [(f"{name}={k}", idx) for k, idx in sorted(groups.items(), key=lambda kv: str(kv[0]))]
            return out, f"repeated slice positions, split by {name}"
    # repeat index: the r-th frame at each position (in instance / file order) goes to group r
    rank: dict[int, int] = defaultdict(int)
    repeat = np.zeros(len(frames), dtype=np.int64)
    for i in sorted(range(len(frames)), key=lambda i: (frames[i].instance_number, i)):
        repeat[i] = rank[int(pos_id[i])]
        rank[int(pos_id[i])] += 1
    out = [(f"repeat {r + 1}", [i for i in range(len(frames)) if repeat[i] == r]) for r in range(m)]
    return out, f"{len(frames) - len(counts)} repeated slice positions (no attribute tells them apart)"


def build_blocks(frames: list[Frame]) -> tuple[list[Block], list[str]]:
    """Group and order frames into consistent volumes.

    Parameters
    ----------
    frames : list of Frame
        All image frames of one series.

    Returns
    -------
    blocks : list of Block
        One block when the series forms one volume; several otherwise,
        largest first is *not* implied (order: by group, then position).
    notes : list of str
        Why the series was split (empty when it was not), plus notes on
        dropped duplicates.
    """
    notes: list[str] = []
    # exact duplicates (same instance and frame, e.g. a file copied twice)
    seen: set[tuple[str, int]] = set()
    unique: list[Frame] = []
    n_dup = 0
    for f in frames:
        uid = f.entry.sop_instance_uid
        key = (uid, f.index)
        if uid and key in seen:
            n_dup += 1
            continue
        seen.add(key)
        unique.append(f)
    if n_dup:
        notes.append(f"{n_dup} duplicate instance(s) (same SOPInstanceUID) ignored")

    groups: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for f in unique:
        o = None if f.orientation is None else tuple(round(v, 3) for v in f.orientation)
        ps = None if f.pixel_spacing is None else tuple(round(v, 4) for v in f.pixel_spacing)
        has_pos = f.position is not None and f.orientation is not None
        groups[(f.rows, f.columns, o, ps, has_pos)].append(f)
    if len(groups) > 1:
        sizes = {(k[0], k[1]) for k in groups}
        orients = {k[2] for k in groups}
        why = []
        if len(sizes) > 1:
            why.append("mixed image sizes")
        if len(orients) > 1:
            why.append("mixed orientations")
        if len({k[3] for k in groups}) > 1:
            why.append("mixed pixel spacing")
        if len({k[4] for k in groups}) > 1:
            why.append("some images lack positions")
        notes.append(", ".join(why) or "inconsistent images")

    blocks: list[Block] = []
    for gkey, gframes in groups.items():
        has_pos = bool(gkey[4])
        if not has_pos:
            ordered = sorted(
                range(len(gframes)), key=lambda i: (gframes[i].instance_number, gframes[i].entry.path, gframes[i].index)
            )
            b = _block_geometry([gframes[i] for i in ordered], with_positions=False)
            blocks.append(b)
            continue
        normal = _normal(gframes[0].orientation)  # type: ignore[arg-type]
        d = np.asarray([np.dot(f.position, normal) for f in gframes], dtype=np.float64)  # type: ignore[arg-type]
        parts, repeat_note = _split_repeats(gframes, d)
        if repeat_note:
            notes.append(repeat_note)
        for label, idx in parts:
            sub = [gframes[i] for i in idx]
            dsub = d[idx]
            order = np.argsort(dsub, kind="stable")
            sub = [sub[i] for i in order]
            dsub = dsub[order]
            runs = _regular_runs(dsub)
            if len(runs) > 1:
                gaps = np.diff(dsub)
                notes.append(
                    f"irregular slice spacing or missing slices (gaps from {gaps.min():.3g} to {gaps.max():.3g} mm)"
                    + (f" in {label}" if label else "")
                )
            for run in runs:
                b = _block_geometry([sub[i] for i in run], with_positions=True)
                b.label = label
                blocks.append(b)
    for i, b in enumerate(blocks):
        desc = f"{len(b.frames)} image(s) {b.frames[0].columns}x{b.frames[0].rows}, {b.spacing[0]:.3g} mm"
        b.label = f"{desc}, {b.label}" if b.label else desc
    # keep notes unique, in order
    return blocks, list(dict.fromkeys(notes))
