"""Write an AI-processed volume (e.g. denoised CT) as a new *derived* DICOM series.

The derived series is a CT Image Storage series in the source's study and
frame of reference, with

* new Series Instance UID and SOP Instance UIDs;
* ``ImageType = DERIVED\\SECONDARY\\AXIAL`` and a ``DerivationDescription``;
* ``SeriesDescription`` = source description + ``" [AI denoised]"``;
* a Contributing Equipment Sequence naming the algorithm and its version as
  IHE AI Results asks (Manufacturer, ManufacturerModelName,
  SoftwareVersions, ContributionDescription, ContributionDateTime,
  PurposeOfReferenceCodeSequence = (109103, DCM, "Modifying Equipment"));
* a Source Image Sequence per slice pointing at the source image it was
  computed from (purpose (121322, DCM, "Source image for image processing
  operation")).

Files go to a hidden ``.partial-*`` folder next to the destination, each
one fsync-ed, and the folder is renamed into place at the end: a cancel or
error leaves nothing behind. The input series and any existing output are
never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from medviewer import __version__
from medviewer.ai.denoise_strength import strength_of
from medviewer.ai.results import ModelInfo
from medviewer.errors import ExportError
from medviewer.fileio import AtomicExportDir, export_error
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.volume import Volume

MODIFYING_EQUIPMENT = ("109103", "DCM", "Modifying Equipment")
SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
RESEARCH_NOTE = "Research use only, not for diagnosis."

_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "BodyPartExamined",
    "PatientPosition",
    "KVP",
    "AcquisitionNumber",
    "ConvolutionKernel",
    "InstitutionName",
)


def fit_description(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` characters (the LO limit of SeriesDescription), keeping a
    trailing ``" [tag]"`` such as ``" [AI denoised 70 %]"`` whole: the source part is cut.

    >>> fit_description("A" * 70 + " [AI denoised]")[-15:]
    'A [AI denoised]'
    """
    if len(text) <= limit:
        return text
    head, sep, tag = text.rpartition(" [")
    if sep and head and text.endswith("]") and len(tag) + 2 < limit:
        return head[: limit - len(tag) - 2].rstrip() + " [" + tag
    return text[:limit]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


def _source_header(source: Volume, k: int) -> Dataset | None:
    headers = source.metadata.headers
    if not headers:
        return None
    h = headers[k] if len(headers) == source.n_slices else headers[0]
    return h if isinstance(h, Dataset) else None


def _ds_str(value: float) -> str:
    """A DICOM DS string (<= 16 characters)."""
    s = f"{value:.6g}"
    return s if len(s) <= 16 else f"{value:.8e}"[:16]


def _contributing_equipment(model: ModelInfo, when: datetime) -> Dataset:
    eq = Dataset()
    eq.Manufacturer = model.manufacturer or "MedViewer"
    eq.ManufacturerModelName = model.name
    eq.SoftwareVersions = [model.version, f"medviewer {__version__}"]
    eq.ContributionDescription = f"AI low-dose CT denoising ({model.name} {model.version}). {RESEARCH_NOTE}"
    eq.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    eq.PurposeOfReferenceCodeSequence = DicomSequence([_code(*MODIFYING_EQUIPMENT)])
    return eq


def _source_reference(source: Volume, k: int) -> Dataset | None:
    uids = source.metadata.sop_instance_uids
    if not uids:
        return None
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.metadata.sop_class_uid or CTImageStorage
    frames = source.metadata.extra.get("frame_numbers")
    if len(uids) == source.n_slices:
        ref.ReferencedSOPInstanceUID = uids[k]
        if len(set(uids)) < len(uids):  # frames of multi-frame objects
            ref.ReferencedFrameNumber = int(frames[k]) if frames and len(frames) == source.n_slices else k + 1
    elif len(uids) == 1:  # one multi-frame source object
        ref.ReferencedSOPInstanceUID = uids[0]
        ref.ReferencedFrameNumber = int(frames[k]) if frames and len(frames) == source.n_slices else k + 1
    else:
        return None
    ref.PurposeOfReferenceCodeSequence = DicomSequence([_code(*SOURCE_IMAGE_PURPOSE)])
    return ref


def build_derived_slice(
    derived: Volume,
    source: Volume,
    k: int,
    *,
    series_uid: str,
    series_number: int,
    model: ModelInfo,
    when: datetime,
    derivation: str,
) -> Dataset:
    """The dataset of slice ``k`` of the derived series (pixel data included)."""
    meta = source.metadata
    head = _source_header(source, k)
    ds = Dataset()
    if head is not None:
        for kw in _COPIED:
            if kw in head and head[kw].value not in (None, ""):
                setattr(ds, kw, head[kw].value)
    ds.PatientName = ds.get("PatientName", meta.patient_name or "")
    ds.PatientID = ds.get("PatientID", meta.patient_id or "")
    ds.PatientBirthDate = ds.get("PatientBirthDate", meta.patient_birth_date or "")
    ds.PatientSex = ds.get("PatientSex", meta.patient_sex or "")
    ds.StudyInstanceUID = meta.study_uid or ds.get("StudyInstanceUID") or generate_uid()
    ds.StudyDate = ds.get("StudyDate", meta.study_date or "")
    ds.StudyTime = ds.get("StudyTime", meta.study_time or "")
    ds.StudyID = ds.get("StudyID", "")
    ds.AccessionNumber = ds.get("AccessionNumber", meta.accession_number or "")
    ds.ReferringPhysicianName = ds.get("ReferringPhysicianName", "")
    if meta.study_description:
        ds.StudyDescription = meta.study_description
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid or ds.get("FrameOfReferenceUID") or generate_uid()
    ds.PositionReferenceIndicator = ds.get("PositionReferenceIndicator", "")
    ds.KVP = ds.get("KVP", "")
    ds.AcquisitionNumber = ds.get("AcquisitionNumber", "")

    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = fit_description(derived.metadata.series_description or "[AI denoised]")
    ds.SeriesDate = when.strftime("%Y%m%d")
    ds.SeriesTime = when.strftime("%H%M%S")
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.InstanceNumber = k + 1
    ds.Manufacturer = "MedViewer"
    ds.ManufacturerModelName = model.name
    ds.SoftwareVersions = [model.version, f"medviewer {__version__}"]
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = derivation[:1024]
    ds.ImageComments = RESEARCH_NOTE
    ds.BurnedInAnnotation = "NO"
    ds.ContributingEquipmentSequence = DicomSequence([_contributing_equipment(model, when)])
    ref = _source_reference(source, k)
    if ref is not None:
        ds.SourceImageSequence = DicomSequence([ref])

    # geometry (image plane module) from the volume
    d = derived.direction
    ds.ImageOrientationPatient = [_ds_str(float(v)) for v in (*d[:, 0], *d[:, 1])]
    ds.ImagePositionPatient = [_ds_str(float(v)) for v in derived.index_to_patient((k, 0, 0))]
    sz, sy, sx = derived.spacing
    ds.PixelSpacing = [_ds_str(sy), _ds_str(sx)]
    ds.SliceThickness = _ds_str(float(meta.slice_thickness or sz))
    ds.SpacingBetweenSlices = _ds_str(sz)
    ds.SliceLocation = _ds_str(derived.slice_position_mm(k))

    # pixels: signed 16 bit HU, rescale identity
    hu = np.asarray(derived.voxels[k], dtype=np.float32)
    pix = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pix.shape[0]), int(pix.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    if meta.windows:
        ds.WindowCenter = [_ds_str(w.center) for w in meta.windows[:3]]
        ds.WindowWidth = [_ds_str(max(1.0, w.width)) for w in meta.windows[:3]]
    ds.PixelData = pix.tobytes()

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = fm
    return ds


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def write_derived_series(
    derived: Volume,
    source: Volume,
    out_dir: str | Path,
    *,
    model: ModelInfo,
    derivation: str | None = None,
    protected: Sequence[str | Path] = (),
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[Path]:
    """Write ``derived`` (same grid as ``source``) as a new derived CT series in ``out_dir``.

    Parameters
    ----------
    derived : Volume
        The processed volume (HU), e.g. from :func:`medviewer.ai.denoise.denoise_volume`.
    source : Volume
        The volume it was computed from (UIDs, headers, references).
    out_dir : str or Path
        New folder; it must not exist or be empty.
    model : ModelInfo
        The algorithm (name, version) for the Contributing Equipment Sequence.
    derivation : str, optional
        DerivationDescription; default names the model and says research use only.
    protected : sequence of path
        Inputs that must not be written into (e.g. the source folder).
    progress, cancel : callables, optional
        Cancel is checked between slices; nothing is left behind on cancel.

    Returns
    -------
    list of Path
        The written files, in slice order.

    Raises
    ------
    ExportError
        The destination exists with content, lies inside an input, or cannot be written.
    CancelledError
        ``cancel()`` returned True.

    Examples
    --------
    >>> files = write_derived_series(denoised, source, "out/denoised", model=info)  # doctest: +SKIP
    """
    if derived.shape != source.shape or derived.is_rgb:
        raise ExportError(f"derived volume {derived.shape} does not match the source {source.shape}")
    dest = Path(out_dir).absolute()
    inputs = [Path(p).absolute() for p in protected]
    inputs += sorted({Path(p).absolute().parent for p in source.metadata.source_files})
    for pp in inputs:
        if dest == pp or _is_within(dest, pp) or _is_within(pp, dest):
            raise ExportError(f"{dest}: refusing to write the derived series into or over the input {pp}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: already exists and is not empty (never overwritten); choose a new folder")
    when = datetime.now()
    series_uid = generate_uid()
    series_number = int(source.metadata.series_number or 0) + 1000
    strength = strength_of(derived)
    kept = f"; strength {round(100 * strength)} %: {round(100 * (1 - strength))} % of the removed noise put back" if strength < 1.0 else ""
    desc = derivation or (
        f"Denoised by {model.manufacturer} {model.name} {model.version} (AI, residual noise prediction{kept}). {RESEARCH_NOTE}"
    )
    prog = Progress(progress)
    names: list[str] = []
    n = derived.n_slices
    try:
        with AtomicExportDir(dest) as export:
            partial = export.path
            for k in range(n):
                check_cancel(cancel, "writing the derived series")
                ds = build_derived_slice(
                    derived, source, k, series_uid=series_uid, series_number=series_number, model=model, when=when, derivation=desc
                )
                name = f"IM{k + 1:05d}.dcm"
                try:
                    with open(partial / name, "wb") as f:
                        ds.save_as(f, enforce_file_format=True)
                        f.flush()
                        os.fsync(f.fileno())
                except OSError as exc:
                    raise export_error(dest, exc, f"cannot write {name}") from exc
                except (ValueError, TypeError, AttributeError) as exc:
                    raise ExportError(f"{dest}: cannot encode slice {k + 1}: {exc}") from exc
                names.append(name)
                prog((k + 1) / n, f"writing slice {k + 1}/{n}")
            check_cancel(cancel, "writing the derived series")
            export.commit()
    except OSError as exc:
        raise export_error(dest, exc, "cannot write the derived series (nothing was written)") from exc
    return [dest / nm for nm in names]


__all__ = ["write_derived_series", "build_derived_slice", "MODIFYING_EQUIPMENT", "SOURCE_IMAGE_PURPOSE"]
