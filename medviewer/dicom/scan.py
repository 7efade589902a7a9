"""Find DICOM studies in a folder, DICOMDIR, zip archive or list of files.

One header-only pass over the files (pixel data is not read; files are not
re-opened per series), then grouping Patient -> Study -> Series. Image series
get their slice order and geometry here (see :mod:`medviewer.dicom.geometry`)
so :func:`medviewer.dicom.load_series` only reads pixels.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medviewer.dicom.geometry import build_blocks, frames_of
from medviewer.dicom.model import FileEntry, Frame, ScanReport, Series, Study
from medviewer.dicom.reader import NotDicomError, memory_budget, read_entry
from medviewer.dicom.values import value
from medviewer.errors import DicomError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

__all__ = ["scan", "scan_with_report", "sop_class_kind", "NOT_VIEWABLE_CLASSES"]

PathLike = str | os.PathLike[str]

#: SOP classes that carry pixel data but are not images to read as a volume.
NOT_VIEWABLE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (shown as an overlay, not a series)",
    "1.2.840.10008.5.1.4.1.1.66.5": "surface segmentation",
    "1.2.840.10008.1.3.10": "media storage directory (DICOMDIR)",
}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_MAX_ZIP_MEMBERS = 100_000


def sop_class_kind(sop_class_uid: str, modality: str = "") -> str:
    """A short human name for a SOP class, e.g. ``"CT Image"`` or ``"RT Plan"``.

    Examples
    --------
    >>> sop_class_kind("1.2.840.10008.5.1.4.1.1.2")
    'CT Image'
    >>> sop_class_kind("1.2.840.10008.5.1.4.1.1.481.5")
    'RT Plan'
    """
    from pydicom.uid import UID

    name = ""
    if sop_class_uid:
        try:
            name = UID(sop_class_uid).name
        except Exception:  # noqa: BLE001
            name = ""
    if not name or name == sop_class_uid:
        return f"{modality} object" if modality else "unknown object"
    for suffix in (" Storage - For Presentation", " Storage - For Processing", " Storage"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name


# ------------------------------------------------------------------ sources
def _iter_sources(paths: Sequence[Path], skipped: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(display_path, read_entry kwargs)`` for every candidate file."""
    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    yield from _file_or_zip(Path(dirpath) / name, skipped)
        elif root.is_file():
            if _is_dicomdir(root):
                yield from _dicomdir_files(root, skipped)
            else:
                yield from _file_or_zip(root, skipped)
        else:
            skipped.append((str(root), "no such file or folder"))


def _is_dicomdir(path: Path) -> bool:
    """A DICOMDIR by name, or by its Media Storage Directory SOP class in the file meta."""
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as fp:
            head = fp.read(512)
    except OSError:
        return False
    return head[128:132] == b"DICM" and re.search(rb"1\.2\.840\.10008\.1\.3\.10(?![0-9.])", head) is not None


def _file_or_zip(path: Path, skipped: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():  # FIFOs, sockets, devices, broken links: opening a FIFO would block
        skipped.append((str(path), "not a regular file"))
        return
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            skipped.append((str(path), f"unreadable zip archive ({exc})"))
            return
        if len(infos) > _MAX_ZIP_MEMBERS:
            skipped.append((str(path), f"zip archive with {len(infos)} members (limit {_MAX_ZIP_MEMBERS})"))
            return
        for info in sorted(infos, key=lambda i: i.filename):
            yield f"{path}/{info.filename}", {"archive": str(path), "member": info.filename, "zip_info": info}
        return
    yield str(path), {}


def _dicomdir_files(path: Path, skipped: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Files referenced by a DICOMDIR (falls back to its folder when unreadable)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        records = list(ds.DirectoryRecordSequence)
        refs: list[Path] = []
        for rec in records:
            ref = rec.get("ReferencedFileID")
            if ref is None:
                continue
            parts = [ref] if isinstance(ref, str) else list(ref)
            refs.append(path.parent.joinpath(*[str(p) for p in parts]))
    except Exception as exc:  # noqa: BLE001 - any unreadable DICOMDIR: scan its folder instead
        skipped.append((str(path), f"unreadable DICOMDIR ({type(exc).__name__}: {exc}); folder scanned instead"))
        for dirpath, dirnames, filenames in os.walk(path.parent):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p != path:
                    yield from _file_or_zip(p, skipped)
        return
    seen: set[Path] = set()
    for ref_path in refs:
        if ref_path in seen:
            continue
        seen.add(ref_path)
        if not ref_path.is_file():
            # case-insensitive media (ISO 9660 upper-case names)
            alt = _case_insensitive(ref_path)
            if alt is None:
                skipped.append((str(ref_path), "referenced by DICOMDIR but missing"))
                continue
            ref_path = alt
        yield str(ref_path), {}


def _case_insensitive(path: Path) -> Path | None:
    current = Path(path.anchor) if path.is_absolute() else Path(".")
    for part in path.parts[1 if path.is_absolute() else 0 :]:
        try:
            match = next((c for c in current.iterdir() if c.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current if current.is_file() else None


# ----------------------------------------------------------------- grouping
def _text(ds: Any, keyword: str) -> str:
    v = value(ds, keyword)
    try:
        return "" if v is None else str(v).strip()
    except Exception:  # noqa: BLE001 - undecodable text
        return ""


def _series_number(ds: Any) -> int | None:
    try:
        v = value(ds, "SeriesNumber")
        return None if v is None else int(v)
    except Exception:  # noqa: BLE001
        return None


def _is_color(ds: Any) -> bool:
    pi = _text(ds, "PhotometricInterpretation").upper()
    try:
        spp = int(value(ds, "SamplesPerPixel", 1) or 1)
    except Exception:  # noqa: BLE001
        spp = 1
    return spp > 1 or pi in ("RGB", "PALETTE COLOR") or pi.startswith("YBR")


def _entry_problem(entry: FileEntry, budget: int) -> str:
    """Why an image file cannot be used (empty when it can)."""
    ds = entry.header
    try:
        rows, cols = int(value(ds, "Rows", 0) or 0), int(value(ds, "Columns", 0) or 0)
        bits = int(value(ds, "BitsAllocated", 0) or 0)
        spp = int(value(ds, "SamplesPerPixel", 1) or 1)
    except Exception:  # noqa: BLE001
        return "unreadable image attributes (Rows/Columns/BitsAllocated)"
    if rows <= 0 or cols <= 0:
        return "image without Rows/Columns"
    if bits not in (1, 8, 16, 32, 64) and not (entry.pixels is not None and entry.pixels.keyword != "PixelData"):
        return f"unsupported BitsAllocated {bits}"
    if spp not in (1, 3):
        return f"unsupported SamplesPerPixel {spp}"
    frames = entry.n_frames
    out_bytes = rows * cols * frames * (3 if _is_color(ds) else 4)
    raw_bytes = rows * cols * frames * spp * max(bits, 8) // 8
    if max(out_bytes, raw_bytes) > budget:
        return (
            f"image of {frames} x {rows} x {cols} needs {max(out_bytes, raw_bytes) / 2**20:.0f} MiB, above the "
            f"memory budget of {budget / 2**20:.0f} MiB"
        )
    return ""


def _build_series(uid: str, entries: list[FileEntry], budget: int) -> Series:
    ds0 = entries[0].header
    modality = _text(ds0, "Modality")
    sop_class = entries[0].sop_class_uid
    series = Series(
        series_uid=uid,
        modality=modality,
        description=_text(ds0, "SeriesDescription"),
        number=_series_number(ds0),
        kind=sop_class_kind(sop_class, modality),
        sop_class_uid=sop_class,
        files=list(entries),
        frame_of_reference_uid=_text(ds0, "FrameOfReferenceUID"),
    )
    images: list[FileEntry] = []
    problems: list[str] = []
    for e in entries:
        if e.pixels is None:
            continue
        if e.sop_class_uid in NOT_VIEWABLE_CLASSES:
            continue
        why = _entry_problem(e, budget)
        if why:
            problems.append(f"{e.display_name}: {why}")
            continue
        images.append(e)
    series.n_images = sum(e.n_frames for e in entries if e.pixels is not None)
    if not images:
        series.viewable = False
        if problems:
            series.reason = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
        elif sop_class in NOT_VIEWABLE_CLASSES:
            series.reason = NOT_VIEWABLE_CLASSES[sop_class]
        else:
            series.reason = f"no pixel data ({series.kind})"
        return series
    if problems:
        series.warnings.append(f"{len(problems)} file(s) unusable: " + "; ".join(problems[:5]))
    if len(images) < len(entries):
        others = len(entries) - len(images) - len(problems)
        if others:
            series.warnings.append(f"{others} non-image object(s) in the series ignored")
    series.kind = sop_class_kind(images[0].sop_class_uid, modality)
    series.sop_class_uid = images[0].sop_class_uid
    frames: list[Frame] = []
    for e in images:
        try:
            frames.extend(frames_of(e))
        except ValueError as exc:
            series.warnings.append(f"{e.display_name}: {exc}")
    if not frames:
        series.viewable = False
        series.reason = "no usable image frames"
        return series
    color_of = {e: _is_color(e.header) for e in images}
    if len(set(color_of.values())) > 1:
        series.warnings.append("mixed colour and grey-scale images: colour images ignored")
        frames = [f for f in frames if not color_of[f.entry]]
    series.is_color = color_of[frames[0].entry]
    blocks, notes = build_blocks(frames)
    series.viewable = True
    subs: list[Series] = []
    for i, b in enumerate(blocks):
        files = list(dict.fromkeys(f.entry for f in b.frames))
        sub = Series(
            series_uid=uid,
            modality=modality,
            description=series.description,
            number=series.number,
            kind=series.kind,
            sop_class_uid=series.sop_class_uid,
            files=files,
            n_images=len(b.frames),
            viewable=True,
            rows=b.frames[0].rows,
            columns=b.frames[0].columns,
            spacing=b.spacing,
            origin=b.origin,
            direction=b.direction,
            frames=b.frames,
            warnings=list(b.warnings),
            label=f"block {i + 1} of {len(blocks)}: {b.label}",
            parent=series,
            is_color=series.is_color,
            frame_of_reference_uid=series.frame_of_reference_uid,
        )
        subs.append(sub)
    if len(subs) == 1:
        only = subs[0]
        series.frames, series.rows, series.columns = only.frames, only.rows, only.columns
        series.spacing, series.origin, series.direction = only.spacing, only.origin, only.direction
        series.warnings.extend(only.warnings)
        series.warnings.extend(notes)
        series.label = only.label.split(": ", 1)[-1]
    else:
        series.sub_series = subs
        primary = series.primary
        series.frames, series.rows, series.columns = primary.frames, primary.rows, primary.columns
        series.spacing, series.origin, series.direction = primary.spacing, primary.origin, primary.direction
        series.warnings.extend(notes)
        series.warnings.append(
            f"series split into {len(subs)} consistent sub-series; loading the largest ({primary.label})"
        )
    return series


def _group(entries: list[FileEntry], budget: int) -> list[Study]:
    studies: dict[str, list[FileEntry]] = defaultdict(list)
    for e in entries:
        key = _text(e.header, "StudyInstanceUID") or f"(no study UID) {e.path}"
        studies[key].append(e)
    out: list[Study] = []
    for study_uid, st_entries in studies.items():
        ds0 = st_entries[0].header
        study = Study(
            patient_name=_text(ds0, "PatientName"),
            patient_id=_text(ds0, "PatientID"),
            birth_date=_text(ds0, "PatientBirthDate"),
            study_uid=study_uid,
            study_date=_text(ds0, "StudyDate"),
            study_description=_text(ds0, "StudyDescription"),
            accession=_text(ds0, "AccessionNumber"),
            study_time=_text(ds0, "StudyTime"),
            patient_sex=_text(ds0, "PatientSex"),
        )
        by_series: dict[str, list[FileEntry]] = defaultdict(list)
        for e in st_entries:
            # files without UIDs are never merged with others: one series each
            uid = _text(e.header, "SeriesInstanceUID") or f"(no series UID) {e.path}"
            by_series[uid].append(e)
        for uid, s_entries in by_series.items():
            study.series.append(_build_series(uid, s_entries, budget))
        study.series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.description, s.series_uid))
        out.append(study)
    out.sort(key=lambda st: (st.patient_name, st.patient_id, st.study_date, st.study_time, st.study_uid))
    return out


def _read_all(
    sources: list[tuple[str, dict[str, Any]]],
    entries: list[FileEntry],
    skipped: list[tuple[str, str]],
    warning_log: list[warnings.WarningMessage],
    budget: int,
    prog: Progress,
    cancel: CancelFn | None,
) -> None:
    """The header-only pass over every source (files and zip members)."""
    total = max(len(sources), 1)
    open_zip: tuple[str, zipfile.ZipFile] | None = None
    try:
        for i, (display, kwargs) in enumerate(sources):
            if i % 16 == 0:
                check_cancel(cancel, "scan")
                prog(0.95 * i / total, f"reading headers {i}/{total}")
            try:
                if "archive" in kwargs:
                    info: zipfile.ZipInfo = kwargs.pop("zip_info")
                    if info.file_size > budget:
                        raise DicomError(f"zip member of {info.file_size} bytes exceeds the memory budget", display)
                    if open_zip is None or open_zip[0] != kwargs["archive"]:
                        if open_zip is not None:
                            open_zip[1].close()
                        open_zip = (kwargs["archive"], zipfile.ZipFile(kwargs["archive"]))
                    try:
                        with open_zip[1].open(info) as fp:
                            data = fp.read()
                    except Exception as exc:  # noqa: BLE001 - zlib.error, BadZipFile, CRC errors
                        raise DicomError(f"cannot extract from zip ({type(exc).__name__}: {exc})", display) from exc
                    entries.append(read_entry(display, data=data, budget=budget, warning_log=warning_log, **kwargs))
                else:
                    entries.append(read_entry(display, budget=budget, warning_log=warning_log))
            except NotDicomError as exc:
                skipped.append((display, exc.reason))
            except DicomError as exc:
                skipped.append((display, exc.reason))
            except (OSError, zipfile.BadZipFile) as exc:
                skipped.append((display, f"cannot read ({exc})"))
    finally:
        if open_zip is not None:
            open_zip[1].close()


def _as_paths(path: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        return [Path(path)]
    return [Path(p) for p in path]


def scan_with_report(
    path: PathLike | Sequence[PathLike],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    memory_budget_bytes: int | None = None,
) -> ScanReport:
    """Scan for DICOM and also report every file that could not be used.

    Parameters
    ----------
    path : path or list of paths
        A folder (searched recursively, zip archives inside included), a
        DICOMDIR, a ``.zip`` archive, one file or several.
    progress, cancel : callables, optional
        See :mod:`medviewer.progress`.
    memory_budget_bytes : int, optional
        Largest volume a series may need (default: :func:`memory_budget`).

    Returns
    -------
    ScanReport
        ``studies`` and ``skipped`` ``(path, reason)`` pairs (non-DICOM files
        included with the reason "not a DICOM file").

    Raises
    ------
    CancelledError
        When ``cancel()`` returns True.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> report = scan_with_report(get_testdata_file("CT_small.dcm"))
    >>> [(s.modality, s.n_images, s.viewable) for s in report.series]
    [('CT', 1, True)]
    """
    budget = memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
    prog = Progress(progress)
    skipped: list[tuple[str, str]] = []
    prog(0.0, "listing files")
    sources = list(_iter_sources(_as_paths(path), skipped))
    entries: list[FileEntry] = []
    with warnings.catch_warnings(record=True) as warning_log:
        warnings.simplefilter("always")
        _read_all(sources, entries, skipped, warning_log, budget, prog, cancel)
    dicomdirs = [e for e in entries if e.sop_class_uid == _DICOMDIR_CLASS]
    for e in dicomdirs:
        skipped.append((e.path, "DICOMDIR index (its files are scanned directly)"))
    entries = [e for e in entries if e.sop_class_uid != _DICOMDIR_CLASS]
    check_cancel(cancel, "scan")
    prog(0.96, "grouping series")
    studies = _group(entries, budget)
    prog(1.0, f"{len(entries)} DICOM files, {sum(len(s.series) for s in studies)} series")
    return ScanReport(studies=studies, skipped=skipped)


def scan(
    path: PathLike | Sequence[PathLike],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[Study]:
    """Find the DICOM studies under ``path`` (header-only pass).

    Parameters
    ----------
    path : path or list of paths
        A folder (recursive, zip archives inside included), a DICOMDIR, a
        ``.zip`` archive, or single files.
    progress, cancel : callables, optional
        See :mod:`medviewer.progress`.

    Returns
    -------
    list of Study
        Patient -> Study -> Series. Non-DICOM files are skipped silently;
        non-image objects (SR, RT Plan, SEG, ...) are listed with their kind
        and ``viewable=False``. Use :func:`scan_with_report` for the list of
        unusable files.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> studies = scan(get_testdata_file("rtplan.dcm"))
    >>> [(s.kind, s.viewable) for s in studies[0].series]
    [('RT Plan', False)]
    """
    return scan_with_report(path, progress, cancel).studies
