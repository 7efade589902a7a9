"""Keyboard and mouse help (F1): a non-modal dialog listing every binding."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from medviewer.viewing import PRESET_KEYS, PRESETS

SHORTCUTS: list[tuple[str, str]] = [
    ("Mouse wheel / Up, Down, Left, Right", "previous / next slice"),
    ("PageUp / PageDown", "move 10 % of the slices"),
    ("Home / End", "first / last slice"),
    ("Left drag", "window/level: horizontal = width, vertical = level (or the active tool)"),
    ("Right drag", "zoom"),
    ("Middle drag", "pan"),
    ("Ctrl + wheel", "zoom around the mouse"),
    ("Shift + left click", "move the linked crosshair (1x3 layout)"),
    *[
        (str(n + 1), f"{name} window (W {PRESETS[name].width:.0f} / L {PRESETS[name].center:.0f})")
        for n, name in enumerate(PRESET_KEYS)
    ],
    ("0", "the file's own window"),
    ("I", "invert grey scale"),
    ("R", "reset zoom, pan, window and invert"),
    ("C", "cine play / stop (frame rate in the toolbar)"),
    ("Ctrl+1 / Ctrl+3", "layout 1x1 / 1x3 (axial, coronal, sagittal)"),
    ("W / L / E / X", "tool: window/level, length ruler, ellipse ROI, crosshair"),
    ("Delete", "delete the selected measurement"),
    ("Ctrl+O / Ctrl+Shift+O", "open folder / open file"),
    ("Ctrl+Shift+A / Ctrl+Shift+E", "Analyze (AI denoise + lesion detection) / export the report"),  # issue 7
    ("H / N, P / D", "heat map on-off / next, previous finding / original-denoised pixels"),  # issue 7
    ("F1", "this help"),
]


class ShortcutsDialog(QtWidgets.QDialog):
    """Table of shortcuts; shown with ``show()`` so it never blocks."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("MedViewer — keyboard and mouse")
        self.setModal(False)
        table = QtWidgets.QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Key / mouse", "Action"])
        table.verticalHeader().hide()
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, (key, action) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QtWidgets.QTableWidgetItem(key))
            table.setItem(row, 1, QtWidgets.QTableWidgetItem(action))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
        self.resize(620, 560)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, False)


__all__ = ["SHORTCUTS", "ShortcutsDialog"]
