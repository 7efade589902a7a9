"""Write a :class:`~medviewer.volume.Volume` as a DICOM CT Image Storage series.

One file per slice, explicit VR little endian, ``int16`` stored values with
RescaleSlope/RescaleIntercept, full patient geometry (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, SliceThickness, SpacingBetweenSlices,
SliceLocation), window presets, and unique SOP Instance UIDs. The series is
written into a hidden ``.partial-*`` folder beside the destination and
renamed at the end, so a cancelled or failed export leaves nothing behind
and an existing non-empty folder is never replaced unless ``overwrite``.

With ``uid_seed`` every UID is derived from that string (and dates come from
the metadata or a fixed date), so the same input gives byte-identical files:
the demo study uses this.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer import __version__
from medviewer.errors import ExportError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.volume import Volume, WindowPreset
from medviewer.fileio import AtomicExportDir, export_error

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLEMENTATION_VERSION = f"MEDVIEWER_{__version__}"[:16]
DEFAULT_CT_WINDOWS = [
    WindowPreset(40.0, 400.0, "soft tissue"),
    WindowPreset(-600.0, 1500.0, "lung"),
    WindowPreset(400.0, 1800.0, "bone"),
]
FIXED_DATE = "20240101"
FIXED_TIME = "120000"
RESEARCH_NOTE = "MedViewer output - research use only, not for diagnosis"

ExtraFn = Callable[[Any, int], None]


def _ds(x: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(x), auto_format=True)


def _lo(text: str) -> str:
    """A Long String (LO) value: at most 64 characters, no backslash."""
    return str(text).replace("\\", "/")[:64]


def _uid(uid_seed: str | None, *parts: str) -> str:
    """A new random UID, or a name-based (UUID v5) ``2.25.`` UID derived from the seed and parts."""
    from pydicom.uid import generate_uid

    if uid_seed is None:
        return str(generate_uid())
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join([uid_seed, *parts])).int}"


def _stored(voxels: NDArray[Any], modality: str) -> tuple[NDArray[np.int16], float, float]:
    """int16 stored values, slope, intercept for float modality values."""
    v = np.asarray(voxels, np.float64)
    finite = v[np.isfinite(v)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    intercept = -1024.0 if modality in ("CT", "") else 0.0
    slope = 1.0
    span = max(abs(lo - intercept), abs(hi - intercept))
    if span > 32767.0:
        slope = span / 32000.0
    stored = np.where(np.isfinite(v), (v - intercept) / slope, (lo - intercept) / slope)
    return np.clip(np.rint(stored), -32768, 32767).astype(np.int16), slope, intercept


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise ExportError(f"{out_dir}: folder exists and is not empty (choose another folder or allow overwriting)")


def write_series(
    volume: Volume,
    out_dir: str | os.PathLike[str],
    *,
    series_description: str,
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_name: str | None = None,
    patient_id: str | None = None,
    study_description: str | None = None,
    study_date: str | None = None,
    study_time: str | None = None,
    windows: Sequence[WindowPreset] | None = None,
    image_type: Sequence[str] | None = None,
    uid_seed: str | None = None,
    file_prefix: str = "CT",
    extra: ExtraFn | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[Path]:
    """Write ``volume`` as a CT Image Storage series, one file per slice.

    Parameters
    ----------
    volume : Volume
        Grey-scale volume in HU (``metadata.modality`` "CT" or empty).
    out_dir : path
        Destination folder; created (atomically, by renaming a
        ``.partial-*`` folder written beside it).
    series_description : str
        SeriesDescription.
    series_number : int
        SeriesNumber.
    study_uid, series_uid, frame_of_reference_uid : str, optional
        UIDs; default: the volume's metadata for study and frame of reference
        (so a derived series joins the source's study), new ones otherwise.
        The series UID is new unless given.
    patient_name, patient_id, study_description, study_date, study_time : str, optional
        Default from ``volume.metadata`` ("ANONYMOUS"/"MV000000" when empty).
    windows : sequence of WindowPreset, optional
        Window presets; default the metadata's, else soft tissue/lung/bone.
    image_type : sequence of str, optional
        ImageType; default ORIGINAL\\PRIMARY\\AXIAL, or DERIVED\\SECONDARY\\AXIAL
        when ``metadata.derived_from`` is set.
    uid_seed : str, optional
        Derive every generated UID from this string (deterministic output;
        dates then default to a fixed date instead of today).
    file_prefix : str
        File names are ``<prefix>00001.dcm``... in slice order.
    extra : callable(dataset, k), optional
        Called for each slice's dataset before it is written (e.g. to add
        derived-series or Contributing Equipment attributes).
    overwrite : bool
        Replace an existing non-empty folder (otherwise :class:`ExportError`).
    progress, cancel : callables, optional
        Progress per slice; cancel removes the partial folder and raises
        :class:`CancelledError`.

    Returns
    -------
    list of Path
        The written files, in slice order.

    Raises
    ------
    ExportError
        The target exists and is not empty, the volume cannot be written
        (colour, non-CT), or the disk refused (full, read-only); nothing is
        left behind.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from medviewer.volume import Volume
    >>> vol = Volume(np.zeros((2, 8, 8), np.float32), spacing=(2.0, 0.5, 0.5))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     files = write_series(vol, os.path.join(d, "s"), series_description="test")
    ...     [f.name for f in files]
    ['CT00001.dcm', 'CT00002.dcm']
    """
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    if volume.is_rgb:
        raise ExportError("cannot write a colour volume as a CT series")
    meta = volume.metadata
    modality = (meta.modality or "CT").upper()
    if modality != "CT":
        raise ExportError(f"write_series writes CT Image Storage only; the volume's modality is {meta.modality!r}")
    if not series_description:
        raise ValueError("series_description must not be empty")
    out = Path(out_dir)
    _check_target(out, overwrite)
    report = Progress(progress)

    study_uid = study_uid or meta.study_uid or _uid(uid_seed, "study")
    frame_uid = frame_of_reference_uid or meta.frame_of_reference_uid or _uid(uid_seed, "frame", study_uid)
    series_uid = series_uid or _uid(uid_seed, "series", study_uid, str(series_number), series_description)
    now = _dt.datetime.now()
    s_date = study_date or meta.study_date or (FIXED_DATE if uid_seed is not None else now.strftime("%Y%m%d"))
    s_time = study_time or meta.study_time or (FIXED_TIME if uid_seed is not None else now.strftime("%H%M%S"))
    c_date, c_time = (s_date, s_time) if uid_seed is not None else (now.strftime("%Y%m%d"), now.strftime("%H%M%S"))
    wins = list(windows) if windows is not None else (list(meta.windows) or list(DEFAULT_CT_WINDOWS))
    derived = bool(meta.derived_from)
    itype = list(image_type) if image_type else (["DERIVED", "SECONDARY", "AXIAL"] if derived else ["ORIGINAL", "PRIMARY", "AXIAL"])
    stored, slope, intercept = _stored(volume.voxels, modality)
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    d = volume.direction
    iop = [_ds(round(float(v), 8)) for v in (*d[:, 0], *d[:, 1])]
    thickness = float(meta.slice_thickness) if meta.slice_thickness else float(sz)

    written: list[str] = []
    try:
        with AtomicExportDir(out, overwrite=overwrite) as export:
            partial = export.path
            for k in range(nz):
                check_cancel(cancel, "DICOM export")
                sop_uid = _uid(uid_seed, "instance", series_uid, str(k)) if uid_seed is not None else _uid(None)
                fm = FileMetaDataset()
                fm.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
                fm.MediaStorageSOPInstanceUID = UID(sop_uid)
                fm.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
                fm.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
                fm.ImplementationVersionName = IMPLEMENTATION_VERSION
                ds = Dataset()
                ds.file_meta = fm
                ds.SpecificCharacterSet = "ISO_IR 192"
                ds.ImageType = itype
                ds.InstanceCreationDate = c_date
                ds.InstanceCreationTime = c_time
                ds.SOPClassUID = CT_IMAGE_STORAGE
                ds.SOPInstanceUID = sop_uid
                ds.StudyDate = s_date
                ds.SeriesDate = s_date
                ds.ContentDate = c_date
                ds.StudyTime = s_time
                ds.SeriesTime = s_time
                ds.ContentTime = c_time
                ds.AccessionNumber = (meta.accession_number or "")[:16]
                ds.Modality = "CT"
                ds.Manufacturer = _lo(meta.manufacturer or "MedViewer")
                if meta.institution_name:
                    ds.InstitutionName = _lo(meta.institution_name)
                ds.ReferringPhysicianName = ""
                ds.StudyDescription = _lo(study_description if study_description is not None else meta.study_description)
                ds.SeriesDescription = _lo(series_description)
                ds.ManufacturerModelName = "MedViewer"
                ds.SoftwareVersions = __version__
                ds.PatientName = patient_name if patient_name is not None else (meta.patient_name or "ANONYMOUS")
                ds.PatientID = _lo(patient_id if patient_id is not None else (meta.patient_id or "MV000000"))
                ds.PatientBirthDate = meta.patient_birth_date or ""
                ds.PatientSex = meta.patient_sex or ""
                ds.SliceThickness = _ds(thickness)
                ds.KVP = _ds(120.0)
                ds.SpacingBetweenSlices = _ds(float(sz))
                ds.PatientPosition = "HFS"
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.StudyID = "1"
                ds.SeriesNumber = int(series_number)
                ds.AcquisitionNumber = 1
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = [_ds(round(float(v), 6)) for v in volume.index_to_patient((k, 0, 0))]
                ds.ImageOrientationPatient = iop
                ds.FrameOfReferenceUID = frame_uid
                ds.PositionReferenceIndicator = ""
                ds.SliceLocation = _ds(round(volume.slice_position_mm(k), 6))
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.Rows = ny
                ds.Columns = nx
                ds.PixelSpacing = [_ds(float(sy)), _ds(float(sx))]
                ds.BitsAllocated = 16
                ds.BitsStored = 16
                ds.HighBit = 15
                ds.PixelRepresentation = 1
                ds.BurnedInAnnotation = "NO"
                if wins:
                    ds.WindowCenter = [_ds(w.center) for w in wins] if len(wins) > 1 else _ds(wins[0].center)
                    ds.WindowWidth = [_ds(w.width) for w in wins] if len(wins) > 1 else _ds(wins[0].width)
                    ds.WindowCenterWidthExplanation = [_lo(w.name or f"window {i + 1}") for i, w in enumerate(wins)] if len(wins) > 1 else _lo(wins[0].name or "window")
                ds.RescaleIntercept = _ds(intercept)
                ds.RescaleSlope = _ds(slope)
                ds.RescaleType = "HU"
                ds.ImageComments = RESEARCH_NOTE if not meta.derived_from else f"{meta.derived_from}; {RESEARCH_NOTE}"
                if derived:
                    ds.DerivationDescription = meta.derived_from[:1024]
                ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(stored[k]).astype("<i2").tobytes())
                if extra is not None:
                    extra(ds, k)
                name = f"{file_prefix}{k + 1:05d}.dcm"
                with open(partial / name, "wb") as f:
                    dcmwrite(f, ds, enforce_file_format=True)
                    f.flush()
                    os.fsync(f.fileno())
                written.append(name)
                report((k + 1) / nz, f"writing slice {k + 1}/{nz}")
            export.commit()
    except OSError as exc:
        raise export_error(out, exc, "cannot write the series (nothing was written)") from exc
    return [out / n for n in written]




__all__ = ["write_series", "CT_IMAGE_STORAGE", "DEFAULT_CT_WINDOWS", "RESEARCH_NOTE"]
