"""The image volume every part of MedViewer works on.

Conventions
-----------
* ``voxels`` is indexed ``(z, y, x)`` = (slice k, row j, column i).
  Grey-scale images are ``float32`` in *modality units* after the modality
  LUT / rescale: Hounsfield units for CT, arbitrary units for MR and others.
  Colour images are ``uint8`` with a trailing RGB axis, shape ``(z, y, x, 3)``.
* ``spacing`` is ``(z, y, x)`` in mm: slice spacing (from positions, not
  SliceThickness), row spacing, column spacing.
* Patient coordinates are DICOM LPS in mm. ``origin`` is the LPS position
  ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``.
* ``direction`` is a 3x3 matrix whose *columns* are the LPS unit vectors of
  increasing column index i, row index j and slice index k (ITK's
  convention): column 0 = ImageOrientationPatient[:3], column 1 =
  ImageOrientationPatient[3:], column 2 = the direction in which slices
  advance.

So ``patient = origin + direction @ (i * sx, j * sy, k * sz)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass
class WindowPreset:
    """A display window (VOI) in modality units."""

    center: float
    width: float
    name: str = ""


@dataclass
class VolumeMetadata:
    """What the viewer, the models and the exporters need besides pixels.

    ``headers`` holds one pydicom ``Dataset`` per slice (pixel data removed),
    in the volume's slice order, or a single header for a multi-frame object;
    the DICOM writers (SEG, SR, derived series) reference them.
    """

    modality: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    sop_instance_uids: list[str] = field(default_factory=list)
    slice_thickness: float | None = None
    photometric: str = "MONOCHROME2"
    invert_display: bool = False
    """True for MONOCHROME1: high values are displayed dark."""
    windows: list[WindowPreset] = field(default_factory=list)
    """The file's own window presets (WindowCenter/Width), first is default."""
    voi_lut: Any = None
    """The file's VOI LUT Sequence item, when present (kept, not applied)."""
    units: str = "HU"
    manufacturer: str = ""
    institution_name: str = ""
    source_files: list[str] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    derived_from: str = ""
    """Non-empty for volumes computed by MedViewer (e.g. 'AI denoised')."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Volume:
    """A 3D image with its patient geometry and metadata.

    Parameters
    ----------
    voxels : ndarray
        ``(z, y, x)`` float32 modality values (HU for CT), or ``(z, y, x, 3)``
        uint8 RGB.
    spacing : tuple of float
        ``(z, y, x)`` voxel spacing in mm.
    origin : tuple of float
        LPS position (x, y, z) in mm of the centre of voxel (0, 0, 0).
    direction : ndarray
        3x3, columns are the LPS directions of the i, j, k index axes.
    metadata : VolumeMetadata

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((3, 4, 5), np.float32), spacing=(2.0, 0.5, 0.5))
    >>> v.shape
    (3, 4, 5)
    >>> v.index_to_patient((1, 2, 4)).tolist()
    [2.0, 1.0, 2.0]
    >>> v.patient_to_index((2.0, 1.0, 2.0)).round(6).tolist()
    [1.0, 2.0, 4.0]
    """

    voxels: NDArray[Any]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    metadata: VolumeMetadata = field(default_factory=VolumeMetadata)

    def __post_init__(self) -> None:
        if self.voxels.ndim not in (3, 4):
            raise ValueError(f"voxels must be (z, y, x) or (z, y, x, 3), got shape {self.voxels.shape}")
        if self.voxels.ndim == 4 and self.voxels.shape[-1] != 3:
            raise ValueError(f"colour voxels need a trailing axis of 3, got {self.voxels.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if len(self.spacing) != 3 or not all(s > 0 and np.isfinite(s) for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers, got {self.spacing}")
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` number of slices, rows, columns."""
        z, y, x = self.voxels.shape[:3]
        return int(z), int(y), int(x)

    @property
    def is_rgb(self) -> bool:
        """True for colour volumes (uint8, trailing RGB axis)."""
        return self.voxels.ndim == 4

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    # --------------------------------------------------------------- geometry
    @property
    def affine(self) -> NDArray[np.float64]:
        """4x4 matrix mapping ``(i, j, k, 1)`` (x, y, z index order) to LPS mm."""
        m = np.eye(4)
        sz, sy, sx = self.spacing
        m[:3, :3] = self.direction * np.array([sx, sy, sz])[None, :]
        m[:3, 3] = self.origin
        return m

    @property
    def slice_normal(self) -> NDArray[np.float64]:
        """LPS unit vector in which slice index k advances."""
        return np.asarray(self.direction[:, 2])

    def index_to_patient(self, index_zyx: ArrayLike) -> NDArray[np.float64]:
        """Map ``(k, j, i)`` voxel indices (..., 3) to LPS mm ``(x, y, z)`` (..., 3)."""
        idx = np.asarray(index_zyx, dtype=np.float64)
        ijk = idx[..., ::-1]
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_index(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """Map LPS mm ``(x, y, z)`` (..., 3) to fractional ``(k, j, i)`` indices."""
        p = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine[:3, :3])
        ijk = (p - self.affine[:3, 3]) @ inv.T
        return ijk[..., ::-1]

    def slice_position_mm(self, k: int) -> float:
        """Position of slice k along the slice normal (mm), as viewers display it."""
        return float(np.dot(self.index_to_patient((k, 0, 0)), self.slice_normal))

    # ----------------------------------------------------------------- values
    @property
    def default_window(self) -> WindowPreset:
        """The file's first window preset, else one from the value range."""
        if self.metadata.windows:
            return self.metadata.windows[0]
        if self.is_rgb:
            return WindowPreset(127.5, 255.0, "full range")
        v = self.voxels
        sample = v[:: max(1, v.shape[0] // 16), ::4, ::4]
        lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        return WindowPreset(float((lo + hi) / 2), float(hi - lo), "auto")

    def with_voxels(self, voxels: NDArray[Any], **metadata_changes: Any) -> "Volume":
        """A new Volume with the same geometry and other voxels (same shape)."""
        if voxels.shape[:3] != self.voxels.shape[:3]:
            raise ValueError(f"shape {voxels.shape} does not match {self.voxels.shape}")
        meta = replace(self.metadata, **metadata_changes) if metadata_changes else self.metadata
        return Volume(voxels, self.spacing, self.origin, self.direction.copy(), meta)


__all__ = ["Volume", "VolumeMetadata", "WindowPreset"]
