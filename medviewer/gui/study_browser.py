"""Study browser: Patient -> Study -> Series tree with thumbnails.

Series that cannot be shown (SR, RT Plan, ...) are listed greyed out with the
reason as tooltip and in the description column; double-clicking a viewable
series emits :attr:`StudyBrowserWidget.series_activated`. Thumbnails are
computed on a worker thread (reading one middle image per series) and arrive
as uint8 arrays; the GUI thread only wraps them into icons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.gui.workers import TaskRunner
from medviewer.progress import CancelFn, ProgressFn

_SERIES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
THUMB_SIZE = 64


def array_to_qimage(arr: NDArray[np.uint8]) -> QtGui.QImage:
    """Wrap an ``(h, w)`` grey or ``(h, w, 3)`` RGB uint8 array as a (copied) QImage."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = a.shape[:2]
    if a.ndim == 2:
        img = QtGui.QImage(a.data, w, h, a.strides[0], QtGui.QImage.Format.Format_Grayscale8)
    else:
        img = QtGui.QImage(a.data, w, h, a.strides[0], QtGui.QImage.Format.Format_RGB888)
    return img.copy()


def compute_thumbnails(
    series_list: Sequence[Any], progress: ProgressFn | None = None, cancel: CancelFn | None = None
) -> dict[int, NDArray[np.uint8]]:
    """Thumbnails (uint8 arrays) of viewable series, keyed by ``id(series)``; runs on a worker.

    A series whose image cannot be read gets no thumbnail (the load will say why).
    """
    from medviewer.dicom import load_series
    from medviewer.errors import CancelledError, MedViewerError
    from medviewer.viewing import make_thumbnail, middle_frame_series

    out: dict[int, NDArray[np.uint8]] = {}
    todo = [s for s in series_list if s.viewable]
    for n, series in enumerate(todo):
        if cancel is not None and cancel():
            raise CancelledError("thumbnails cancelled")
        try:
            preview = load_series(middle_frame_series(series))
            out[id(series)] = make_thumbnail(preview, THUMB_SIZE)
        except (MedViewerError, ValueError, MemoryError):
            pass
        if progress is not None:
            progress((n + 1) / max(len(todo), 1), f"thumbnail {n + 1}/{len(todo)}")
    return out


class StudyBrowserWidget(QtWidgets.QWidget):
    """Tree of the scanned studies.

    Signals
    -------
    series_activated(object)
        A viewable :class:`medviewer.dicom.Series` was double-clicked (or Enter).
    unviewable_activated(object)
        A greyed series was double-clicked (the window shows the reason).
    """

    series_activated = QtCore.Signal(object)
    unviewable_activated = QtCore.Signal(object)

    def __init__(self, runner: TaskRunner | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._runner = runner or TaskRunner(self)
        self.studies: list[Any] = []
        self._items: dict[int, QtWidgets.QTreeWidgetItem] = {}
        self.tree = QtWidgets.QTreeWidget(self)
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Patient / Study / Series", "Mod.", "Images", "Description"])
        self.tree.setIconSize(QtCore.QSize(THUMB_SIZE, THUMB_SIZE))
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemActivated.connect(self._on_activated)
        header = self.tree.header()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 210)
        header.resizeSection(1, 42)
        header.resizeSection(2, 52)
        self.placeholder = QtWidgets.QLabel(
            "Open a folder, DICOMDIR, zip or file\n(File menu or drag and drop)", self
        )
        self.placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #888;")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.tree)
        self.tree.hide()

    # ------------------------------------------------------------------ content
    def set_studies(self, studies: Sequence[Any], thumbnails: bool = True) -> None:
        """Show the result of :func:`medviewer.dicom.scan` (and start thumbnails)."""
        self._runner.cancel("thumbnails")
        self.studies = list(studies)
        self.tree.clear()
        self._items.clear()
        grey = QtGui.QBrush(QtGui.QColor("#808080"))
        by_patient: dict[tuple[str, str], QtWidgets.QTreeWidgetItem] = {}
        for study in self.studies:
            key = (study.patient_id, study.patient_name)
            pat = by_patient.get(key)
            if pat is None:
                name = study.patient_name.replace("^", " ").strip() or "(no name)"
                pat = QtWidgets.QTreeWidgetItem([f"{name}", "", "", f"ID {study.patient_id}" if study.patient_id else ""])
                font = pat.font(0)
                font.setBold(True)
                pat.setFont(0, font)
                self.tree.addTopLevelItem(pat)
                by_patient[key] = pat
            date = study.study_date
            if len(date) == 8 and date.isdigit():
                date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
            st_item = QtWidgets.QTreeWidgetItem(
                [date or "(no date)", "", str(sum(s.n_images for s in study.series)), study.study_description]
            )
            pat.addChild(st_item)
            for series in sorted(study.series, key=lambda s: (s.number is None, s.number or 0)):
                label = f"Se {series.number}" if series.number is not None else "Series"
                desc = series.description or series.kind
                item = QtWidgets.QTreeWidgetItem([label, series.modality, str(series.n_images), desc])
                item.setData(0, _SERIES_ROLE, series)
                if series.viewable:
                    tip = f"{series.kind} — {series.n_images} images, {series.columns}x{series.rows}"
                    if series.warnings:
                        tip += "\n" + "\n".join(series.warnings[:5])
                    item.setToolTip(0, tip)
                    item.setToolTip(3, tip)
                else:
                    reason = series.reason or "not viewable"
                    item.setText(3, f"{desc} — {reason}")
                    for col in range(4):
                        item.setForeground(col, grey)
                        item.setToolTip(col, f"Not viewable: {reason}")
                st_item.addChild(item)
                self._items[id(series)] = item
        self.tree.expandAll()
        self.placeholder.setVisible(not self.studies)
        self.tree.setVisible(bool(self.studies))
        if thumbnails and self.studies:
            all_series = [s for st in self.studies for s in st.series]
            self._runner.start(
                "thumbnails",
                lambda progress, cancel: compute_thumbnails(all_series, progress, cancel),
                on_finished=self._set_thumbnails,
            )

    def all_series(self) -> list[Any]:
        return [s for st in self.studies for s in st.series]

    def item_for(self, series: Any) -> QtWidgets.QTreeWidgetItem | None:
        return self._items.get(id(series))

    def select_series(self, series: Any) -> None:
        item = self.item_for(series)
        if item is not None:
            self.tree.setCurrentItem(item)

    def has_thumbnail(self, series: Any) -> bool:
        item = self.item_for(series)
        return item is not None and not item.icon(0).isNull()

    def _set_thumbnails(self, thumbs: dict[int, NDArray[np.uint8]]) -> None:
        for key, arr in thumbs.items():
            item = self._items.get(key)
            if item is not None:
                item.setIcon(0, QtGui.QIcon(QtGui.QPixmap.fromImage(array_to_qimage(arr))))

    # ------------------------------------------------------------------ activation
    def activate(self, series: Any) -> None:
        """What double-clicking ``series`` does (also used by tests and the CLI)."""
        if series.viewable:
            self.series_activated.emit(series)
        else:
            self.unviewable_activated.emit(series)

    def _on_activated(self, item: QtWidgets.QTreeWidgetItem, column: int) -> None:
        series = item.data(0, _SERIES_ROLE)
        if series is not None:
            self.activate(series)


__all__ = ["StudyBrowserWidget", "compute_thumbnails", "array_to_qimage", "THUMB_SIZE"]
