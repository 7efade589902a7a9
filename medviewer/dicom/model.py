"""What a scan finds: studies, series, files and frames (no pixels).

A :class:`FileEntry` is one DICOM file (on disk or a member of a zip
archive) with its header read once during the scan (pixel data not read) and
the location of its pixel data. A :class:`Frame` is one 2D image of a file
with its geometry; a viewable :class:`Series` holds its frames in slice order
(sorted along the slice normal) and, where the series cannot form one
consistent volume, its consistent blocks as ``sub_series``.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from medviewer.dicom.values import value
from medviewer.errors import DicomError, TooLargeError

__all__ = ["PixelLocation", "FileEntry", "Frame", "Series", "Study", "ScanReport"]


@dataclass(frozen=True)
class PixelLocation:
    """Where the top-level pixel data element sits in the file's byte stream.

    ``offset`` is the first byte of the value; ``length`` is ``None`` for
    encapsulated (undefined length) data. ``keyword`` is ``PixelData``,
    ``FloatPixelData`` or ``DoubleFloatPixelData``. ``direct`` is False when
    the offset is not in the raw file (deflated data sets).
    """

    keyword: str
    offset: int
    length: int | None
    vr: str
    direct: bool = True


@dataclass(eq=False)
class FileEntry:
    """One DICOM file found by the scan (header only, pixel data not read).

    Parameters
    ----------
    path : str
        Display path: the file path, or ``archive.zip/member`` for zip members.
    archive, member : str, optional
        The zip archive and the member name when the file is inside a zip.
    size : int
        Size in bytes (uncompressed size for zip members).
    header : pydicom.Dataset
        The data set without pixel data (``file_meta`` attached).
    transfer_syntax : str
        Transfer Syntax UID.
    pixels : PixelLocation or None
        Where the pixel data is; None when the object has none.
    """

    path: str
    size: int
    header: Any = field(repr=False)
    transfer_syntax: str
    pixels: PixelLocation | None = None
    archive: str | None = None
    member: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def sop_instance_uid(self) -> str:
        return str(value(self.header, "SOPInstanceUID", "") or "")

    @property
    def sop_class_uid(self) -> str:
        uid = value(self.header, "SOPClassUID", "")
        if not uid:  # DICOMDIRs and some old files carry it in the file meta only
            meta = getattr(self.header, "file_meta", None)
            uid = value(meta, "MediaStorageSOPClassUID", "") if meta is not None else ""
        return str(uid or "")

    @property
    def n_frames(self) -> int:
        try:
            n = int(value(self.header, "NumberOfFrames", 1) or 1)
        except (TypeError, ValueError, OverflowError):
            n = 1
        return max(n, 1)

    def open(self, max_bytes: int | None = None) -> BinaryIO:
        """Open the file (or read the zip member into memory) for reading.

        Raises
        ------
        DicomError
            When the file cannot be opened; TooLargeError when a zip member
            is bigger than ``max_bytes``.
        """
        try:
            if self.archive is None:
                return open(self.path, "rb")  # noqa: SIM115 - caller closes
            return io.BytesIO(self.read_bytes(max_bytes))
        except OSError as exc:
            raise DicomError(f"cannot open file ({exc.strerror or exc})", self.path) from exc

    def read_bytes(self, max_bytes: int | None = None) -> bytes:
        """The whole file's bytes (a zip member is inflated into memory)."""
        try:
            if self.archive is None:
                return Path(self.path).read_bytes()
            with zipfile.ZipFile(self.archive) as zf:
                info = zf.getinfo(str(self.member))
                if max_bytes is not None and info.file_size > max_bytes:
                    raise TooLargeError(
                        f"zip member inflates to {info.file_size} bytes, above the {max_bytes} byte limit", self.path
                    )
                with zf.open(info) as fp:
                    return fp.read()
        except DicomError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise DicomError(f"cannot read file ({type(exc).__name__}: {exc})", self.path) from exc
        except Exception as exc:  # zlib.error, struct.error from a corrupt archive
            raise DicomError(f"cannot read file ({type(exc).__name__}: {exc})", self.path) from exc

    @property
    def display_name(self) -> str:
        return os.path.basename(self.path)


@dataclass(eq=False)
class Frame:
    """One 2D image: a file and a frame index, with its geometry and rescale.

    ``position`` is ImagePositionPatient (LPS mm) or None when unknown;
    ``orientation`` is ImageOrientationPatient (six values) or None.
    ``key`` holds values that tell repeated acquisitions apart (acquisition,
    echo, temporal position, ...).
    """

    entry: FileEntry
    index: int
    rows: int
    columns: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    slice_thickness: float | None = None
    instance_number: int = 0
    key: tuple[Any, ...] = ()
    windows: tuple[tuple[float, float, str], ...] = ()


@dataclass(eq=False)
class Series:
    """One DICOM series (or a consistent block of one: ``parent`` set).

    Attributes
    ----------
    series_uid, modality, description, number :
        From the headers.
    kind : str
        What the objects are, e.g. ``"CT Image"``, ``"Comprehensive SR"``,
        ``"RT Plan"``.
    files : list of FileEntry
        Every file of the series (in scan order).
    n_images : int
        Number of 2D images (frames) in the series.
    viewable : bool
        Whether :func:`medviewer.dicom.load_series` can make a volume of it.
    reason : str
        Why it is not viewable (empty when viewable).
    rows, columns : int
        Image size of the (primary) volume.
    spacing : tuple of float or None
        ``(z, y, x)`` mm of the (primary) volume.
    frames : list of Frame
        The frames of the (primary) volume in slice order.
    sub_series : list of Series
        Consistent blocks when the series cannot form one volume (mixed sizes
        or orientations, irregular spacing or missing slices, repeated
        positions); empty otherwise. ``load_series`` on the parent loads the
        largest block and says so in the volume's warnings.
    warnings : list of str
        Geometry and consistency notes (shown to the user, copied into the
        volume's metadata).
    """

    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    kind: str = ""
    sop_class_uid: str = ""
    files: list[FileEntry] = field(default_factory=list)
    n_images: int = 0
    viewable: bool = False
    reason: str = ""
    rows: int = 0
    columns: int = 0
    spacing: tuple[float, float, float] | None = None
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Any = None
    frames: list[Frame] = field(default_factory=list, repr=False)
    sub_series: list["Series"] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    label: str = ""
    parent: "Series | None" = field(default=None, repr=False)
    is_color: bool = False
    frame_of_reference_uid: str = ""

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def size_bytes(self) -> int:
        """Bytes of the files of this series on disk."""
        return sum(f.size for f in self.files)

    @property
    def volume_bytes(self) -> int:
        """Bytes of the volume ``load_series`` would return."""
        per_voxel = 3 if self.is_color else 4
        return len(self.frames) * self.rows * self.columns * per_voxel

    @property
    def primary(self) -> "Series":
        """The block ``load_series`` loads: the largest sub-series, else itself."""
        if not self.sub_series:
            return self
        return max(self.sub_series, key=lambda s: (len(s.frames), -self.sub_series.index(s)))


@dataclass(eq=False)
class Study:
    """One study of one patient, with its series."""

    patient_name: str
    patient_id: str
    birth_date: str
    study_uid: str
    study_date: str
    study_description: str
    accession: str
    series: list[Series] = field(default_factory=list)
    study_time: str = ""
    patient_sex: str = ""

    @property
    def viewable_series(self) -> list[Series]:
        return [s for s in self.series if s.viewable]


@dataclass
class ScanReport:
    """Everything a scan found: the studies and the files it could not use."""

    studies: list[Study]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(path, reason)`` for every file that is not usable DICOM."""

    @property
    def series(self) -> list[Series]:
        return [s for st in self.studies for s in st.series]
