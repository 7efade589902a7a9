"""DICOM reading (no Qt): scan a folder/zip/DICOMDIR, load a series as a Volume.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from medviewer.dicom import scan, load_series
>>> studies = scan(get_testdata_file("CT_small.dcm"))
>>> vol = load_series(studies[0].series[0])
>>> vol.shape
(1, 128, 128)
"""

from medviewer.dicom.load import load, load_series
from medviewer.dicom.model import FileEntry, Frame, PixelLocation, ScanReport, Series, Study
from medviewer.dicom.reader import memory_budget
from medviewer.dicom.scan import scan, scan_with_report, sop_class_kind

__all__ = [
    "scan",
    "scan_with_report",
    "load_series",
    "load",
    "memory_budget",
    "sop_class_kind",
    "Study",
    "Series",
    "FileEntry",
    "Frame",
    "PixelLocation",
    "ScanReport",
]
