"""One error family for every boundary of MedViewer.

Library exceptions (pydicom, numpy, zlib, torch, highdicom, OS errors) are
caught where they cross into MedViewer code and re-raised as one of these
with ``raise ... from exc`` and a message naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path


class MedViewerError(Exception):
    """Base class of every error MedViewer raises on purpose."""


class DicomError(MedViewerError):
    """A DICOM file or series cannot be read or used.

    Parameters
    ----------
    message : str
        The reason, in words a user understands.
    path : str or Path, optional
        The file concerned; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


LoadError = DicomError


class NoPixelDataError(DicomError):
    """The object holds no image (SR, RTPLAN, ...) or its pixel data is missing."""


class TruncatedPixelDataError(DicomError):
    """Pixel data is shorter than Rows x Columns x Frames x bytes per pixel."""


class UnsupportedTransferSyntaxError(DicomError):
    """No installed decoder handles the file's transfer syntax."""


class GeometryError(DicomError):
    """Slices cannot form one consistent volume."""


class TooLargeError(DicomError):
    """The image would exceed the memory budget (or is a decompression bomb)."""


class ModelError(MedViewerError):
    """Model weights are missing, corrupt, or do not match the model card."""


class ExportError(MedViewerError):
    """A report or DICOM object could not be written (nothing partial is left)."""


class CancelledError(MedViewerError):
    """The user cancelled a long operation."""


__all__ = [
    "MedViewerError",
    "DicomError",
    "LoadError",
    "NoPixelDataError",
    "TruncatedPixelDataError",
    "UnsupportedTransferSyntaxError",
    "GeometryError",
    "TooLargeError",
    "ModelError",
    "ExportError",
    "CancelledError",
]
