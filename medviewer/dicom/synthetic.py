"""Synthetic DICOM series written with pydicom (tests, benchmarks, demos).

The images are a simple CT-like phantom (air, a water ellipse, a bone ring)
stored as 16-bit signed values with RescaleIntercept -1024, optionally
RLE-compressed, with free choice of orientation, slice positions and file
names, so loaders can be checked against known geometry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["phantom_slice", "write_series"]


def phantom_slice(rows: int, columns: int, k: int = 0) -> NDArray[np.int16]:
    """A CT-like phantom slice in stored values (HU + 1024).

    Parameters
    ----------
    rows, columns : int
        Image size.
    k : int
        Slice index; the phantom changes slowly with it so slices differ.

    Returns
    -------
    ndarray
        ``(rows, columns)`` int16 stored values; HU = value - 1024.
    """
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = (rows - 1) / 2.0, (columns - 1) / 2.0
    r = np.sqrt(((y - cy) / (0.42 * rows)) ** 2 + ((x - cx) / (0.45 * columns)) ** 2)
    hu = np.full((rows, columns), -1000.0, np.float32)
    hu[r < 1.0] = 40.0
    hu[(r > 0.85) & (r < 1.0)] = 700.0
    lesion = np.sqrt((y - cy - 0.1 * rows) ** 2 + (x - cx + 0.15 * columns) ** 2) < (0.05 + 0.002 * (k % 10)) * rows
    hu[lesion] = 90.0
    hu += ((x.astype(np.int32) * 7 + y.astype(np.int32) * 13 + k * 31) % 17 - 8).astype(np.float32)
    return (hu + 1024.0).astype(np.int16)


def write_series(
    folder: str | os.PathLike[str],
    n_slices: int = 8,
    rows: int = 32,
    columns: int = 32,
    *,
    spacing: float = 2.5,
    pixel_spacing: tuple[float, float] = (0.7, 0.7),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-100.0, -120.0, 50.0),
    positions: Sequence[Sequence[float]] | None = None,
    rle: bool = False,
    shuffle_names: bool = True,
    seed: int = 0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    description: str = "synthetic CT",
    patient_name: str = "Phantom^Synthetic",
    patient_id: str = "SYN0001",
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    instance_numbers: Sequence[int] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    name_prefix: str = "",
) -> list[Path]:
    """Write a single-frame CT series into ``folder``.

    Slice k is placed at ``origin + k * spacing * normal`` (normal = row x
    column direction) unless ``positions`` gives every ImagePositionPatient.
    Stored pixel values come from :func:`phantom_slice`.

    Parameters
    ----------
    folder : path
        Destination folder (created).
    n_slices, rows, columns : int
        Series size (``positions``/``sizes`` override per slice).
    spacing : float
        Slice spacing in mm along the normal.
    pixel_spacing : (float, float)
        Row spacing, column spacing in mm.
    orientation : six floats
        ImageOrientationPatient.
    origin : three floats
        Position of slice 0.
    positions : list of three floats, optional
        Explicit ImagePositionPatient per slice.
    rle : bool
        Write RLE Lossless instead of Explicit VR Little Endian.
    shuffle_names : bool
        Random file names (so name order says nothing about slice order).
    seed : int
        Seed for names and UIDs.
    series_uid, study_uid, frame_of_reference_uid : str, optional
        UIDs to use (generated from the seed otherwise).
    instance_numbers : list of int, optional
        InstanceNumber per slice (default: 1..n in slice order).
    sizes : list of (rows, columns), optional
        Per-slice image size (for mixed-size series).
    name_prefix : str
        Prefix of every file name.

    Returns
    -------
    list of Path
        The files written, in slice order.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     len(write_series(d, n_slices=3, rows=8, columns=8))
    3
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

    rng = np.random.default_rng(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    iop = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    if positions is None:
        positions = [tuple(np.asarray(origin, float) + k * spacing * normal) for k in range(n_slices)]
    n = len(positions)
    prefix = f"{seed}-{series_number}-"
    series_uid = series_uid or generate_uid(entropy_srcs=[prefix + "series"])
    study_uid = study_uid or generate_uid(entropy_srcs=[prefix + "study"])
    frame_of_reference_uid = frame_of_reference_uid or generate_uid(entropy_srcs=[prefix + "for"])
    names = [f"{name_prefix}{i:05d}.dcm" for i in range(n)]
    if shuffle_names:
        names = [f"{name_prefix}{rng.integers(0, 2**48):012x}.dcm" for _ in range(n)]
    written: list[Path] = []
    for k in range(n):
        r, c = (rows, columns) if sizes is None else sizes[k]
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        sop_uid = generate_uid(entropy_srcs=[prefix + f"sop{k}"])
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.StudyDescription = "synthetic study"
        ds.AccessionNumber = "ACC0001"
        ds.StudyID = "1"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.Modality = modality
        ds.Manufacturer = "MedViewer synthetic"
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.InstanceNumber = int(instance_numbers[k]) if instance_numbers is not None else k + 1
        ds.ImagePositionPatient = [round(float(v), 6) for v in positions[k]]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in iop]
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(spacing)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = r
        ds.Columns = c
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        pixels = phantom_slice(r, c, k)
        if rle:
            ds.compress(RLELossless, pixels, encoding_plugin="pylibjpeg" if _has_rle_plugin() else "")
        else:
            ds.PixelData = pixels.tobytes()
        path = out / names[k]
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _has_rle_plugin() -> bool:
    try:
        import rle  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True
