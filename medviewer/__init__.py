"""MedViewer: a reading-grade DICOM viewer with local AI.

Research use only, not for diagnosis. Everything outside :mod:`medviewer.gui`
is importable and usable without Qt.
"""

__version__ = "0.1.0"

INTENDED_USE = "Research use only, not for diagnosis."

__all__ = ["__version__", "INTENDED_USE"]
