"""Application start-up: ``medviewer [PATH] [--demo]`` opens the main window."""

from __future__ import annotations

import os
import sys

from PySide6 import QtCore, QtGui, QtWidgets

_configured = False


def configure_pyqtgraph() -> None:
    """Once per process: row-major images (numpy order), no antialiasing of images."""
    global _configured
    if _configured:
        return
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, useNumba=False)
    _configured = True


def dark_palette() -> QtGui.QPalette:
    """A dark palette: reading rooms are dark, so is the viewer."""
    p = QtGui.QPalette()
    C = QtGui.QPalette.ColorRole
    base, alt, text = QtGui.QColor(30, 30, 30), QtGui.QColor(45, 45, 45), QtGui.QColor(220, 220, 220)
    p.setColor(C.Window, QtGui.QColor(37, 37, 38))
    p.setColor(C.WindowText, text)
    p.setColor(C.Base, base)
    p.setColor(C.AlternateBase, alt)
    p.setColor(C.ToolTipBase, alt)
    p.setColor(C.ToolTipText, text)
    p.setColor(C.Text, text)
    p.setColor(C.Button, QtGui.QColor(50, 50, 52))
    p.setColor(C.ButtonText, text)
    p.setColor(C.Highlight, QtGui.QColor(42, 110, 180))
    p.setColor(C.HighlightedText, QtGui.QColor(255, 255, 255))
    p.setColor(C.PlaceholderText, QtGui.QColor(130, 130, 130))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, C.Text, QtGui.QColor(120, 120, 120))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, C.ButtonText, QtGui.QColor(120, 120, 120))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, C.WindowText, QtGui.QColor(120, 120, 120))
    return p


def ensure_app(argv: list[str] | None = None) -> QtWidgets.QApplication:
    """The QApplication (created once, styled dark), with pyqtgraph configured."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(argv if argv is not None else [sys.argv[0] if sys.argv else "medviewer"])
        app.setOrganizationName("MedViewer")
        app.setApplicationName("MedViewer")
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    configure_pyqtgraph()
    return app  # type: ignore[return-value]


def run_app(path: str | None = None, demo: bool = False) -> int:
    """Open the main window (on ``path`` or the demo study) and run the event loop.

    Parameters
    ----------
    path : str, optional
        Folder, DICOMDIR, zip or DICOM file to open.
    demo : bool
        Open the bundled demo study instead.

    Returns
    -------
    int
        The process exit code.
    """
    from medviewer.gui.main_window import MainWindow

    app = ensure_app()
    window = MainWindow()
    window.show()
    if demo:
        QtCore.QTimer.singleShot(0, window.open_demo)
    elif path:
        QtCore.QTimer.singleShot(0, lambda: window.open_path(os.fspath(path)))
    return int(app.exec())


__all__ = ["run_app", "ensure_app", "configure_pyqtgraph", "dark_palette"]
