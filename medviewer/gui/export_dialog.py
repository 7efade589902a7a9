"""Export dialog: write the annotated report of an analysis (issue 8) without blocking the GUI.

The dialog only gathers the reader's choices — output folder, formats,
impression, reader name and signature, de-identification, paper size — and
calls :func:`medviewer.report.export.export_report` (the same function as
``medviewer analyze --report``) on a worker of the window's
:class:`~medviewer.gui.workers.TaskRunner` (channel ``"export"``), with a
progress bar and Cancel. Errors come back as a signal and are shown in a
message box; nothing partial is left (``export_report`` writes atomically).
The dialog is non-modal (``show()``, never ``exec()``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from medviewer.ai.denoise_strength import strength_of
from medviewer.ai.results import DetectionResult
from medviewer.gui.workers import TaskHandle, TaskRunner
from medviewer.volume import Volume

#: Every format the exporter writes, with the label shown in the dialog.
FORMAT_LABELS: dict[str, str] = {
    "pdf": "PDF report",
    "sr": "DICOM SR (TID 1500)",
    "seg": "DICOM SEG (finding masks)",
    "keyimages": "Key images (PNG + Secondary Capture)",
    "json": "findings.json",
    "csv": "findings.csv",
    "denoised": "Denoised series (DICOM)",
}
EXPORT_CHANNEL = "export"


def _folder_is_nonempty(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


class ExportDialog(QtWidgets.QDialog):
    """Choose what to export and run the export on a worker.

    Parameters
    ----------
    volume : Volume
        The analysed source series.
    detection : DetectionResult
        Findings with the reader's review (status, notes are read when the
        export starts).
    runner : TaskRunner
        The window's runner (so closing the window cancels and joins the export).
    denoised : Volume, optional
        The denoised series (enables the "denoised" format).
    show_error : callable, optional
        ``show_error(title, message)`` — the window's one error path; a
        message box by default.
    default_dir : str, optional
        Initial output folder.
    parent : QWidget, optional

    Signals
    -------
    export_finished(object)
        The :class:`~medviewer.report.export.ExportSummary`.
    export_failed(str)
        The message shown for a failed export.
    """

    export_finished = QtCore.Signal(object)
    export_failed = QtCore.Signal(str)

    def __init__(
        self,
        volume: Volume,
        detection: DetectionResult,
        runner: TaskRunner,
        *,
        denoised: Volume | None = None,
        show_error: Callable[[str, str], None] | None = None,
        default_dir: str | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.min_confidence: float | None = None
        """Report findings at or above this confidence plus every reviewed one (the panel's threshold)."""
        self.setWindowTitle("Export report — research use only, not for diagnosis")
        self.setModal(False)
        self.volume = volume
        self.detection = detection
        self._denoised = denoised
        self.runner = runner
        self._show_error = show_error
        self.handle: TaskHandle | None = None
        self.summary: Any = None
        self._busy = False

        self.folder_edit = QtWidgets.QLineEdit(default_dir or self._suggest_folder(), self)
        browse = QtWidgets.QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        folder_row = QtWidgets.QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)

        self.format_checks: dict[str, QtWidgets.QCheckBox] = {}
        formats_box = QtWidgets.QGroupBox("Formats", self)
        grid = QtWidgets.QGridLayout(formats_box)
        for n, (key, label) in enumerate(FORMAT_LABELS.items()):
            cb = QtWidgets.QCheckBox(label, formats_box)
            cb.setChecked(key != "denoised" or denoised is not None)
            if key == "denoised" and denoised is None:
                cb.setEnabled(False)
                cb.setToolTip("no denoised series: run Analyze with denoising on")
            self.format_checks[key] = cb
            grid.addWidget(cb, n // 2, n % 2)
        self._label_denoised()

        self.impression_edit = QtWidgets.QPlainTextEdit(self)
        self.impression_edit.setPlaceholderText("Impression (free text, printed in the report)")
        self.impression_edit.setMaximumHeight(100)
        self.reader_edit = QtWidgets.QLineEdit(self)
        self.reader_edit.setPlaceholderText("Family^Given")
        self.signed_check = QtWidgets.QCheckBox("I reviewed the findings and sign the report (SR VERIFIED)", self)
        self.deid_check = QtWidgets.QCheckBox("De-identify (PS3.15 Basic Profile)", self)
        self.paper_combo = QtWidgets.QComboBox(self)
        self.paper_combo.addItems(["A4", "Letter"])
        self.overwrite_check = QtWidgets.QCheckBox("Replace the folder if it is not empty", self)

        form = QtWidgets.QFormLayout()
        form.addRow("Output folder", folder_row)
        form.addRow("Reader", self.reader_edit)
        form.addRow("", self.signed_check)
        form.addRow("Paper", self.paper_combo)
        form.addRow("", self.deid_check)
        form.addRow("", self.overwrite_check)

        counts = {s: sum(1 for f in detection.findings if f.status.value == s) for s in ("accepted", "rejected", "pending")}
        self.summary_label = QtWidgets.QLabel(
            f"{len(detection.findings)} finding(s): {counts['accepted']} accepted, {counts['rejected']} rejected, "
            f"{counts['pending']} not reviewed.",
            self,
        )
        self.progress_bar = QtWidgets.QProgressBar(self)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.hide()
        self.status_label = QtWidgets.QLabel("", self)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QtWidgets.QDialogButtonBox(self)
        self.export_button = self.buttons.addButton("Export", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel export", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addLayout(form)
        layout.addWidget(formats_box)
        layout.addWidget(QtWidgets.QLabel("Impression", self))
        layout.addWidget(self.impression_edit)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        self.resize(560, 560)

    # ------------------------------------------------------------------ choices
    def _suggest_folder(self) -> str:
        """``<Documents>/MedViewer reports/report-se<N>-<date>`` (never inside the study's folder)."""
        import datetime as _dt

        md = self.volume.metadata
        docs = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.DocumentsLocation)
        base = Path(docs) if docs else Path.home()
        se = f"-se{md.series_number}" if md.series_number is not None else ""
        return str(base / "MedViewer reports" / f"report{se}-{_dt.datetime.now():%Y%m%d-%H%M}")

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Export report into", self.folder_edit.text())
        if path:
            self.folder_edit.setText(path)

    def formats(self) -> list[str]:
        """The formats ticked (and enabled)."""
        return [k for k, cb in self.format_checks.items() if cb.isChecked() and cb.isEnabled()]

    @property
    def denoised(self) -> Volume | None:
        """The denoised series to export (at the strength chosen in the denoised review)."""
        return self._denoised

    @denoised.setter
    def denoised(self, volume: Volume | None) -> None:
        self._denoised = volume
        self._label_denoised()

    def _label_denoised(self) -> None:
        strength = strength_of(self._denoised)
        label = FORMAT_LABELS["denoised"]
        if strength < 1.0:
            level = f"strength {round(100 * strength)} %"
            label = f"{label[:-1]}, {level})" if label.endswith(")") else f"{label} ({level})"
        self.format_checks["denoised"].setText(label)

    def set_formats(self, formats: list[str]) -> None:
        for k, cb in self.format_checks.items():
            cb.setChecked(k in formats)

    def options(self) -> dict[str, Any]:
        """The keyword arguments passed to ``export_report``."""
        return {
            "denoised": self.denoised,
            "impression": self.impression_edit.toPlainText(),
            "reader_name": self.reader_edit.text().strip(),
            "signed": self.signed_check.isChecked(),
            "deidentify": self.deid_check.isChecked(),
            "formats": self.formats(),
            "paper": self.paper_combo.currentText(),
            "overwrite": self.overwrite_check.isChecked(),
            "min_confidence": self.min_confidence,
        }

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True from the start of an export until its outcome has been delivered."""
        return self._busy

    def _error(self, title: str, message: str) -> None:
        self.export_failed.emit(message)
        if self._show_error is not None:
            self._show_error(title, message)
        else:
            QtWidgets.QMessageBox.critical(self, title, message)

    def start_export(self) -> bool:
        """Validate the choices and start the export on a worker; False when refused."""
        if self.running:
            self.status_label.setText("An export is already running.")
            return False
        folder = self.folder_edit.text().strip()
        if not folder:
            self._error("Cannot export", "Choose an output folder.")
            return False
        out = Path(os.path.expanduser(folder))
        opts = self.options()
        if not opts["formats"]:
            self._error("Cannot export", "Choose at least one format.")
            return False
        if opts["signed"] and not opts["reader_name"]:
            self._error("Cannot export", "A signed report needs the reader's name.")
            return False
        if _folder_is_nonempty(out) and not opts["overwrite"]:
            answer = QtWidgets.QMessageBox.question(
                self,
                "Replace folder?",
                f"{out} is not empty. Replace its contents with the new report?",
                QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
                QtWidgets.QMessageBox.StandardButton.No,
            )
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                self.status_label.setText(f"Not exported: {out} is not empty.")
                return False
            opts["overwrite"] = True
        volume, detection = self.volume, self.detection

        def task(progress: Any, cancel: Any) -> Any:
            from medviewer.report.export import export_report

            return export_report(volume, detection, out, progress=progress, cancel=cancel, **opts)

        self.summary = None
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.status_label.setText(f"Exporting to {out}…")
        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._busy = True
        self.handle = self.runner.start(
            EXPORT_CHANNEL,
            task,
            on_finished=self._on_finished,
            on_failed=self._on_failed,
            on_progress=self._on_progress,
            on_cancelled=self._on_cancelled,
        )
        return True

    def cancel_export(self) -> None:
        """Ask the running export to stop (nothing is left behind)."""
        if self.handle is not None and self._busy:
            self.handle.cancel()

    def _done(self) -> None:
        self._busy = False
        self.progress_bar.hide()
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(min(max(fraction, 0.0), 1.0) * 1000)))
        self.progress_bar.setFormat(f"{message[:50]} %p%")

    def _on_finished(self, summary: Any) -> None:
        self._done()
        self.summary = summary
        warn = ("\nNotes: " + "; ".join(summary.warnings)) if summary.warnings else ""
        self.status_label.setText(f"Wrote {len(summary.files)} file(s) to {summary.out_dir}{warn}")
        self.export_finished.emit(summary)

    def _on_failed(self, exc: BaseException) -> None:
        self._done()
        message = str(exc) or type(exc).__name__
        self.status_label.setText(f"Export failed: {message}")
        self._error("Export failed", message)

    def _on_cancelled(self) -> None:
        self._done()
        self.status_label.setText("Export cancelled; nothing was written.")

    def closeEvent(self, ev: Any) -> None:  # noqa: N802 - Qt name
        """Closing the dialog cancels a running export (the runner joins it)."""
        self.cancel_export()
        super().closeEvent(ev)


__all__ = ["ExportDialog", "FORMAT_LABELS", "EXPORT_CHANNEL"]
