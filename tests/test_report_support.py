"""Fixtures for the report tests: a small CT series with PHI, on disk, and its findings.

The series is synthetic (a chest-like phantom with two lung nodules) but its
headers carry the real identifying attributes of deid-data's ``ctbrain1.dcm``
(patient, physicians, institution, dates, UIDs, referenced sequences), so the
de-identification tests check real PHI. It is written with pydicom as CT Image
Storage with consistent geometry, then turned into a :class:`Volume` whose
``metadata.headers`` are the datasets without pixel data, as the loader does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medviewer.ai.results import DetectionResult, Finding, ModelInfo, ReviewStatus
from medviewer.volume import Volume, VolumeMetadata

SHAPE = (10, 64, 64)  # z, y, x
SPACING = (2.5, 0.8, 0.75)  # z, y, x mm
ORIGIN = (-24.0, -26.0, -100.0)  # LPS of voxel (0, 0, 0)

# Attributes copied from the PHI sample that describe *its* pixels, not the patient.
_PIXEL_KEYWORDS = (
    "Rows Columns PixelSpacing SamplesPerPixel PhotometricInterpretation BitsAllocated BitsStored HighBit "
    "PixelRepresentation RescaleIntercept RescaleSlope RescaleType WindowCenter WindowWidth ImageType "
    "ImageOrientationPatient ImagePositionPatient SliceLocation SliceThickness ConversionType "
    "PlanarConfiguration LossyImageCompression LossyImageCompressionRatio LossyImageCompressionMethod "
    "PixelAspectRatio SmallestImagePixelValue LargestImagePixelValue"
).split()


def phi_source() -> pydicom.Dataset:
    """deid-data's ``humans/ctbrain1.dcm`` header (real-looking PHI)."""
    from deid_data import data as deid_data_pkg

    path = Path(deid_data_pkg.__file__).parent / "humans" / "ctbrain1.dcm"
    return pydicom.dcmread(path, stop_before_pixels=True)


def phantom() -> tuple[np.ndarray, list[tuple[tuple[float, float, float], float]]]:
    """HU voxels of a chest-like phantom and its lesions ((k, j, i) centre, radius mm)."""
    z, y, x = SHAPE
    kk, jj, ii = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    vox = np.full(SHAPE, -1000.0, np.float32)
    body = ((jj - 32) / 28.0) ** 2 + ((ii - 32) / 30.0) ** 2 <= 1.0
    vox[body] = 40.0
    for ci in (18, 46):
        lung = ((jj - 32) / 20.0) ** 2 + ((ii - ci) / 11.0) ** 2 <= 1.0
        vox[lung] = -850.0
    lesions = [((4.0, 30.0, 17.0), 4.0), ((6.0, 36.0, 47.0), 3.0)]
    sz, sy, sx = SPACING
    for (ck, cj, ci), r in lesions:
        d2 = ((kk - ck) * sz) ** 2 + ((jj - cj) * sy) ** 2 + ((ii - ci) * sx) ** 2
        vox[d2 <= r * r] = 55.0
    rng = np.random.default_rng(5)
    vox += rng.normal(0.0, 8.0, SHAPE).astype(np.float32)
    return vox, lesions


@dataclass
class Case:
    volume: Volume
    result: DetectionResult
    files: list[Path]
    phi: pydicom.Dataset


def write_series(folder: Path) -> tuple[list[Path], pydicom.Dataset]:
    """Write the phantom as a CT series with the PHI of the sample; returns files and PHI header."""
    vox, _ = phantom()
    phi = phi_source()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(SHAPE[0]):
        ds = copy.deepcopy(phi)
        for kw in _PIXEL_KEYWORDS:
            if kw in ds:
                delattr(ds, kw)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SPACING[0]]
        ds.SliceLocation = ORIGIN[2] + k * SPACING[0]
        ds.SliceThickness = SPACING[0]
        ds.PixelSpacing = [SPACING[1], SPACING[2]]
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (np.round(vox[k]) + 1024).astype(np.int16).tobytes()
        ds["PixelData"].VR = "OW"
        path = folder / f"slice{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files, phi


def load_series(files: list[Path]) -> Volume:
    """Load the series with MedViewer's loader (fallback: build the Volume with pydicom)."""
    try:
        from medviewer.dicom import load
    except ImportError:  # pragma: no cover - the loader is part of the package
        return build_volume(files)
    volume = load(files[0].parent)
    assert volume.metadata.headers and volume.metadata.sop_instance_uids, "loader gave no headers"
    return volume


def build_volume(files: list[Path]) -> Volume:
    """The Volume of the files built with pydicom alone, as the loader is documented to do."""
    datasets = [pydicom.dcmread(f) for f in files]
    vox = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])
    headers = []
    for d in datasets:
        h = copy.deepcopy(d)
        del h.PixelData
        headers.append(h)
    d0 = datasets[0]
    meta = VolumeMetadata(
        modality="CT",
        patient_name=str(d0.PatientName),
        patient_id=str(d0.PatientID),
        patient_birth_date=str(d0.get("PatientBirthDate", "")),
        patient_sex=str(d0.get("PatientSex", "")),
        study_uid=str(d0.StudyInstanceUID),
        study_date=str(d0.get("StudyDate", "")),
        study_time=str(d0.get("StudyTime", "")),
        study_description=str(d0.get("StudyDescription", "")),
        accession_number=str(d0.get("AccessionNumber", "")),
        series_uid=str(d0.SeriesInstanceUID),
        series_number=int(d0.get("SeriesNumber", 1) or 1),
        series_description=str(d0.get("SeriesDescription", "")),
        frame_of_reference_uid=str(d0.FrameOfReferenceUID),
        sop_class_uid=str(d0.SOPClassUID),
        sop_instance_uids=[str(d.SOPInstanceUID) for d in datasets],
        slice_thickness=float(d0.SliceThickness),
        manufacturer=str(d0.get("Manufacturer", "")),
        institution_name=str(d0.get("InstitutionName", "")),
        source_files=[str(f) for f in files],
        headers=headers,
    )
    return Volume(vox, SPACING, ORIGIN, np.eye(3), meta)


def make_result(volume: Volume) -> DetectionResult:
    """A DetectionResult whose findings are the phantom's lesions (plus one false positive)."""
    _, lesions = phantom()
    sz, sy, sx = volume.spacing
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")
    conf = np.zeros(volume.shape, np.float32)
    findings = []
    entries = lesions + [((7.0, 20.0, 30.0), 2.5)]
    confidences = [0.93, 0.71, 0.42]
    statuses = [ReviewStatus.ACCEPTED, ReviewStatus.PENDING, ReviewStatus.REJECTED]
    notes = ["solid nodule, follow-up per guideline", "", "vessel, not a nodule"]
    for n, (((ck, cj, ci), r), c, st, note) in enumerate(zip(entries, confidences, statuses, notes), start=1):
        d2 = ((kk - ck) * sz) ** 2 + ((jj - cj) * sy) ** 2 + ((ii - ci) * sx) ** 2
        mask = d2 <= r * r
        conf = np.maximum(conf, (c * np.exp(-d2 / (2 * (1.2 * r) ** 2))).astype(np.float32))
        ks = np.nonzero(mask.any(axis=(1, 2)))[0]
        findings.append(
            Finding(
                id=n,
                center_mm=tuple(float(v) for v in volume.index_to_patient((ck, cj, ci))),  # type: ignore[arg-type]
                center_index=(ck, cj, ci),
                diameter_mm=float(2.0 * (3.0 * mask.sum() * sz * sy * sx / (4.0 * np.pi)) ** (1 / 3)),
                slice_range=(int(ks[0]), int(ks[-1])),
                confidence=c,
                mask=mask,
                mean_hu=float(volume.voxels[mask].mean()),
                status=st,
                note=note,
            )
        )
    return DetectionResult(
        series_uid=volume.metadata.series_uid,
        model=ModelInfo("MedViewer lesion detector", "1.2.0"),
        findings=findings,
        confidence=conf,
        abnormality_score=0.88,
        threshold=0.5,
        denoiser=ModelInfo("MedViewer low-dose denoiser", "0.9.1"),
    )


def make_case(folder: Path) -> Case:
    """Write the series into ``folder / "source"`` and build volume and result."""
    files, phi = write_series(folder / "source")
    volume = load_series(files)
    return Case(volume, make_result(volume), files, phi)


@pytest.fixture
def case(tmp_path: Path) -> Case:
    return make_case(tmp_path)


def test_loader_and_reference_build_agree(case: Case) -> None:
    ref = build_volume(case.files)
    v = case.volume
    np.testing.assert_array_equal(v.voxels, ref.voxels)
    assert v.spacing == ref.spacing and v.origin == ref.origin
    assert v.metadata.sop_instance_uids == ref.metadata.sop_instance_uids
    assert v.metadata.frame_of_reference_uid == ref.metadata.frame_of_reference_uid


def test_fixture_series_is_consistent(case: Case) -> None:
    v = case.volume
    assert v.shape == SHAPE
    assert len(v.metadata.headers) == SHAPE[0] and "PixelData" not in v.metadata.headers[0]
    # geometry: the header position of slice k equals index_to_patient((k, 0, 0))
    for k, h in enumerate(v.metadata.headers):
        np.testing.assert_allclose(v.index_to_patient((k, 0, 0)), [float(x) for x in h.ImagePositionPatient])
    f = case.result.findings[0]
    assert f.mask is not None and f.mask.sum() > 10
    assert 40.0 < f.mean_hu < 70.0
    assert str(case.phi.PatientName) == str(v.metadata.patient_name) != ""
