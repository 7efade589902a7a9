"""Findings panel: the detector's findings as a table the radiologist reviews.

Columns: id, location (slice range as image numbers and the centre in patient
mm), diameter, mean HU, confidence, review status and note. Clicking a row
asks the viewer to show and centre the finding; Accept / Reject / the note
field write to the :class:`~medviewer.ai.results.Finding` objects themselves,
so the report export sees the review. A threshold slider (default: the model
card's display threshold, :attr:`DetectionResult.threshold`) hides findings
below it in the table and in the overlays. N / P select the next / previous
visible finding.

No logic beyond presentation lives here; the panel never runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.ai.results import Finding, ReviewStatus
from medviewer.viewing import Marker

#: Outline colours by review status (pending yellow, accepted green, rejected grey).
STATUS_COLOURS: dict[ReviewStatus, str] = {
    ReviewStatus.PENDING: "#ffd200",
    ReviewStatus.ACCEPTED: "#40e040",
    ReviewStatus.REJECTED: "#909090",
}

COLUMNS = ("ID", "Location", "Diameter", "Mean HU", "Confidence", "Status", "Note")


def finding_location_text(f: Finding) -> str:
    """``"Im 12-15 (x, y, z mm)"``: 1-based image numbers (as in the viewer) and the LPS centre.

    Examples
    --------
    >>> f = Finding(1, (10.0, -2.5, 30.0), (4.0, 8.0, 9.0), 6.0, (3, 5), 0.8)
    >>> finding_location_text(f)
    'Im 4–6  (10.0, -2.5, 30.0) mm'
    """
    k0, k1 = int(f.slice_range[0]) + 1, int(f.slice_range[1]) + 1
    im = f"Im {k0}" if k0 == k1 else f"Im {k0}–{k1}"
    x, y, z = (float(c) for c in f.center_mm)
    return f"{im}  ({x:.1f}, {y:.1f}, {z:.1f}) mm"


def finding_marker(f: Finding) -> Marker:
    """The outline drawn for ``f``: its sphere, label ``"#id conf%"``, colour by status."""
    label = f"#{f.id} {100.0 * float(f.confidence):.0f}%"
    if f.status is ReviewStatus.ACCEPTED:
        label += " ✓"
    elif f.status is ReviewStatus.REJECTED:
        label += " ✗"
    centre = tuple(float(c) for c in f.center_index)
    return Marker(f.id, (centre[0], centre[1], centre[2]), max(float(f.diameter_mm), 1.0), label, STATUS_COLOURS[f.status])


class FindingsPanelWidget(QtWidgets.QWidget):
    """Table of findings with review controls and the display threshold.

    Signals
    -------
    finding_activated(object)
        The :class:`Finding` the user clicked or stepped to (show it).
    review_changed(object)
        A finding's status or note changed.
    threshold_changed(float)
        The display threshold (0-1) changed.
    """

    finding_activated = QtCore.Signal(object)
    review_changed = QtCore.Signal(object)
    threshold_changed = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._findings: list[Finding] = []
        self._threshold = 0.5
        self.info_label = QtWidgets.QLabel("No analysis yet — Analysis ▸ Analyze (Ctrl+Shift+A).", self)
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(lambda row, _col: self._activate_row(row))
        self.table.currentCellChanged.connect(lambda row, *_: self._sync_controls())

        self.accept_button = QtWidgets.QPushButton("Accept", self)
        self.accept_button.setToolTip("Mark the selected finding as accepted (kept for the report)")
        self.accept_button.clicked.connect(lambda: self.set_status_selected(ReviewStatus.ACCEPTED))
        self.reject_button = QtWidgets.QPushButton("Reject", self)
        self.reject_button.setToolTip("Mark the selected finding as rejected (kept for the report)")
        self.reject_button.clicked.connect(lambda: self.set_status_selected(ReviewStatus.REJECTED))
        self.reset_button = QtWidgets.QPushButton("Undecided", self)
        self.reset_button.clicked.connect(lambda: self.set_status_selected(ReviewStatus.PENDING))
        self.note_edit = QtWidgets.QLineEdit(self)
        self.note_edit.setPlaceholderText("note on the selected finding (Enter to keep)")
        self.note_edit.editingFinished.connect(self._note_edited)
        self.prev_button = QtWidgets.QPushButton("◀ Prev (P)", self)
        self.prev_button.clicked.connect(self.select_previous)
        self.next_button = QtWidgets.QPushButton("Next (N) ▶", self)
        self.next_button.clicked.connect(self.select_next)
        for b in (self.accept_button, self.reject_button, self.reset_button, self.prev_button, self.next_button):
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)

        self.threshold_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_slider.setToolTip("findings below this confidence are hidden (table and outlines)")
        self.threshold_slider.valueChanged.connect(lambda v: self.set_threshold(v / 100.0))
        self.threshold_label = QtWidgets.QLabel("≥ 50 %", self)
        self.threshold_label.setMinimumWidth(48)
        self.count_label = QtWidgets.QLabel("", self)

        review = QtWidgets.QHBoxLayout()
        for b in (self.accept_button, self.reject_button, self.reset_button):
            review.addWidget(b)
        review.addStretch(1)
        review.addWidget(self.prev_button)
        review.addWidget(self.next_button)
        thr = QtWidgets.QHBoxLayout()
        thr.addWidget(QtWidgets.QLabel("Threshold", self))
        thr.addWidget(self.threshold_slider, 1)
        thr.addWidget(self.threshold_label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.info_label)
        layout.addLayout(thr)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.count_label)
        layout.addLayout(review)
        layout.addWidget(self.note_edit)
        self._sync_controls()

    # ------------------------------------------------------------------ content
    def set_findings(self, findings: Sequence[Finding], threshold: float | None = None, info: str | None = None) -> None:
        """Show ``findings`` (kept by reference: reviews are written to them)."""
        self._findings = list(findings)
        if info is not None:
            self.info_label.setText(info)
        if threshold is not None:
            self._threshold = min(max(float(threshold), 0.0), 1.0)
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(int(round(self._threshold * 100)))
            self.threshold_slider.blockSignals(False)
        self.table.setRowCount(len(self._findings))
        for row, f in enumerate(self._findings):
            self._fill_row(row, f)
        self.table.resizeColumnsToContents()
        self._apply_threshold()
        self._sync_controls()

    def clear(self, info: str = "No analysis for this series — Analysis ▸ Analyze (Ctrl+Shift+A).") -> None:
        self.set_findings([], info=info)

    @property
    def findings(self) -> list[Finding]:
        return list(self._findings)

    @property
    def threshold(self) -> float:
        return self._threshold

    def visible_findings(self) -> list[Finding]:
        """Findings at or above the threshold (the ones drawn)."""
        return [f for f in self._findings if float(f.confidence) >= self._threshold]

    def markers(self) -> list[Marker]:
        """Outlines for the visible findings."""
        return [finding_marker(f) for f in self.visible_findings()]

    def _fill_row(self, row: int, f: Finding) -> None:
        mean = "—" if f.mean_hu is None else f"{float(f.mean_hu):.0f}"
        texts = (
            str(f.id),
            finding_location_text(f),
            f"{float(f.diameter_mm):.1f} mm",
            mean,
            f"{100.0 * float(f.confidence):.0f} %",
            f.status.value,
            f.note,
        )
        for col, text in enumerate(texts):
            item = self.table.item(row, col)
            if item is None:
                item = QtWidgets.QTableWidgetItem()
                self.table.setItem(row, col, item)
            item.setText(text)
            if col == 0:
                item.setData(QtCore.Qt.ItemDataRole.UserRole, f.id)
            if col == 5:
                item.setForeground(QtGui.QBrush(QtGui.QColor(STATUS_COLOURS[f.status])))

    def row_texts(self, row: int) -> list[str]:
        """The texts of one table row (tests, screenshots)."""
        items = (self.table.item(row, c) for c in range(self.table.columnCount()))
        return [item.text() if item is not None else "" for item in items]

    # ------------------------------------------------------------------ threshold
    def set_threshold(self, value: float) -> None:
        """Hide findings below ``value`` (0-1) in the table; emits ``threshold_changed``."""
        value = min(max(float(value), 0.0), 1.0)
        if int(round(value * 100)) != self.threshold_slider.value():
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(int(round(value * 100)))
            self.threshold_slider.blockSignals(False)
        self._threshold = value
        self._apply_threshold()
        self.threshold_changed.emit(value)

    def _apply_threshold(self) -> None:
        self.threshold_label.setText(f"≥ {self._threshold * 100:.0f} %")
        shown = 0
        for row, f in enumerate(self._findings):
            hidden = float(f.confidence) < self._threshold
            self.table.setRowHidden(row, hidden)
            shown += not hidden
        n = len(self._findings)
        self.count_label.setText(f"{shown} of {n} finding(s) shown" if n else "")
        cur = self.table.currentRow()
        if cur >= 0 and self.table.isRowHidden(cur):
            self.table.clearSelection()
            self.table.setCurrentCell(-1, -1)
        self._sync_controls()

    # ------------------------------------------------------------------ selection & review
    def selected(self) -> Finding | None:
        row = self.table.currentRow()
        if 0 <= row < len(self._findings) and not self.table.isRowHidden(row):
            return self._findings[row]
        return None

    def select_finding(self, finding_id: int, activate: bool = True) -> bool:
        """Select the finding with ``finding_id`` (if visible); True when it was found."""
        for row, f in enumerate(self._findings):
            if f.id == finding_id and not self.table.isRowHidden(row):
                self.table.setCurrentCell(row, 0)
                if activate:
                    self._activate_row(row)
                return True
        return False

    def _visible_rows(self) -> list[int]:
        return [r for r in range(len(self._findings)) if not self.table.isRowHidden(r)]

    def select_next(self) -> Finding | None:
        """Select and show the next visible finding (wrapping); key N."""
        return self._step(+1)

    def select_previous(self) -> Finding | None:
        """Select and show the previous visible finding (wrapping); key P."""
        return self._step(-1)

    def _step(self, direction: int) -> Finding | None:
        rows = self._visible_rows()
        if not rows:
            return None
        cur = self.table.currentRow()
        if cur in rows:
            row = rows[(rows.index(cur) + direction) % len(rows)]
        else:
            row = rows[0] if direction > 0 else rows[-1]
        self.table.setCurrentCell(row, 0)
        self._activate_row(row)
        return self._findings[row]

    def _activate_row(self, row: int) -> None:
        if 0 <= row < len(self._findings) and not self.table.isRowHidden(row):
            self._sync_controls()
            self.finding_activated.emit(self._findings[row])

    def set_status_selected(self, status: ReviewStatus | str) -> None:
        """Accept / reject / reset the selected finding."""
        f = self.selected()
        if f is None:
            return
        self.set_status(f, status)

    def set_status(self, finding: Finding, status: ReviewStatus | str) -> None:
        """Record the reader's decision on ``finding`` (stored on the Finding)."""
        finding.status = ReviewStatus(status)
        self._refresh(finding)
        self.review_changed.emit(finding)

    def set_note(self, finding: Finding, note: str) -> None:
        """Record a free-text note on ``finding``."""
        finding.note = str(note)
        self._refresh(finding)
        self.review_changed.emit(finding)

    def _note_edited(self) -> None:
        f = self.selected()
        if f is not None and self.note_edit.text() != f.note:
            self.set_note(f, self.note_edit.text())

    def _refresh(self, finding: Finding) -> None:
        for row, f in enumerate(self._findings):
            if f is finding:
                self._fill_row(row, f)
        self._sync_controls()

    def _sync_controls(self) -> None:
        f = self.selected()
        for w in (self.accept_button, self.reject_button, self.reset_button, self.note_edit):
            w.setEnabled(f is not None)
        self.note_edit.blockSignals(True)
        self.note_edit.setText("" if f is None else f.note)
        self.note_edit.blockSignals(False)
        has = bool(self._visible_rows())
        self.prev_button.setEnabled(has)
        self.next_button.setEnabled(has)

    def status_counts(self) -> dict[str, int]:
        """How many findings are pending / accepted / rejected."""
        out = {s.value: 0 for s in ReviewStatus}
        for f in self._findings:
            out[f.status.value] += 1
        return out


__all__ = ["FindingsPanelWidget", "finding_marker", "finding_location_text", "STATUS_COLOURS", "COLUMNS"]
