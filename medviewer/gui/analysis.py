"""Analyze in the viewer (issue 7): the Analyze action, its worker, overlays, findings, denoised review.

:class:`AnalysisController` plugs into :class:`~medviewer.gui.main_window.MainWindow`
through its issue-7 hooks and drives the same pipeline as ``medviewer analyze``
(:func:`medviewer.ai.pipeline.analyze_volume`); no model logic lives here.

* **Analyze** (toolbar, Analysis menu, Ctrl+Shift+A) runs the pipeline on the
  shown series in a worker (``TaskRunner`` channel ``"analyze"``; torch capped at
  ``cores - 1`` threads): denoise (optional, on by default for CT; for reading)
  then detect (on the original images, see :func:`~medviewer.ai.pipeline.analyze_volume`).
  Progress per stage goes to the status bar with Cancel; errors (e.g. missing
  weights, :class:`~medviewer.errors.ModelError`) arrive as a signal and are
  shown in a dialog; a second Analyze while one runs is refused with a message.
* Results: the confidence heat map on every view (H on/off, opacity, colour
  bar: :mod:`medviewer.gui.overlay_controls`), findings as labelled outlines
  hidden below the threshold and the findings table
  (:mod:`medviewer.gui.findings_panel`, N / P to step), the denoised review
  (:mod:`medviewer.gui.denoised_review`, key D) and the export dialog
  (:mod:`medviewer.gui.export_dialog`, Ctrl+Shift+E).
* Results are cached per series UID while the app runs: re-opening a series
  shows its results (and review) again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.gui.denoised_review import DenoisedReviewWidget
from medviewer.gui.findings_panel import FindingsPanelWidget
from medviewer.gui.overlay_controls import OverlayControlsWidget
from medviewer.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from medviewer.ai.pipeline import AnalysisResult
    from medviewer.ai.results import Finding
    from medviewer.gui.export_dialog import ExportDialog
    from medviewer.gui.main_window import MainWindow

ANALYZE_CHANNEL = "analyze"
PREWARM_CHANNEL = "analyze-prewarm"
STRENGTH_CHANNEL = "denoise-strength"
STRENGTH_SETTING = "analysis/denoise_strength"
"""The reader's last denoising strength; later analyses show their denoised series at it."""
PREWARM_DELAY_MS = 0
"""Importing torch holds the GIL for up to ~0.7 s in one stretch (shared-library loading, measured
on a loaded 2-core machine): do it once at start-up on a worker, while the user picks a study,
rather than at the first Analyze while the user reads."""
DEVICE_PREFIX = "starting on "


def installed_models_text() -> str:
    """Names and versions of the installed models, read from their model cards (no torch import).

    Examples
    --------
    >>> installed_models_text()  # doctest: +SKIP
    'detector 1.0.0, denoiser 0.3.1'
    """
    import json

    from medviewer.resources import models_dir

    parts = []
    for name in ("detector", "denoiser"):
        path = models_dir() / f"{name}.json"
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
            parts.append(f"{name} {card.get('version', '?')}")
        except (OSError, ValueError, AttributeError):
            parts.append(f"{name} not installed")
    return ", ".join(parts)


def prewarm_models(progress: Any = None, cancel: Any = None) -> bool:
    """Import the model code (torch) on a worker so the first Analyze does not stall the GUI.

    Returns True when something had to be imported.
    """
    import sys

    if "medviewer.ai.detect" in sys.modules and "medviewer.ai.denoise" in sys.modules:
        return False
    import medviewer.ai.denoise  # noqa: F401
    import medviewer.ai.detect  # noqa: F401
    import medviewer.ai.pipeline  # noqa: F401

    return True


def series_key(volume: Volume) -> str:
    """Cache key of a shown volume: its SeriesInstanceUID, else the object's identity."""
    uid = volume.metadata.series_uid
    return uid if uid else f"volume-{id(volume)}"


@dataclass
class AnalysisRecord:
    """One finished analysis as the GUI keeps it (per series)."""

    result: "AnalysisResult"
    difference: Volume | None = None
    difference_width: float = 100.0
    seconds: float = 0.0
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def strength_task(original: Volume, denoised: Volume, strength: float) -> Any:
    """A worker task: the denoised volume at ``strength`` and its difference map."""

    def task(progress: Any, cancel: Any) -> tuple[float, Volume, Volume, float]:
        from medviewer.ai.denoise_strength import with_strength
        from medviewer.gui.denoised_review import difference_volume

        if progress is not None:
            progress(0.0, f"denoising strength {round(100 * strength)} %")
        vol = with_strength(original, denoised, strength)
        diff, width = difference_volume(original, vol)
        return strength, vol, diff, width

    return task


def run_analysis(volume: Volume, denoise: bool, device: str | None, progress: Any, cancel: Any) -> AnalysisRecord:
    """The worker task: the CLI's pipeline plus the difference map (off the GUI thread).

    Parameters
    ----------
    volume : Volume
    denoise : bool
    device : str or None
    progress, cancel : callbacks
        From the worker (:class:`~medviewer.gui.workers.Worker`).

    Returns
    -------
    AnalysisRecord
    """
    t0 = time.perf_counter()
    from medviewer.ai.device import cap_threads, describe_device, resolve_device
    from medviewer.ai.pipeline import analyze_volume

    threads = cap_threads(1)  # torch is imported now: keep a core for the GUI thread
    if progress is not None:
        progress(0.0, f"{DEVICE_PREFIX}{describe_device(resolve_device(device))}")
    result = analyze_volume(volume, denoise=denoise, device=device, progress=progress, cancel=cancel, threads=threads)
    record = AnalysisRecord(result=result)
    if result.denoised is not None:
        from medviewer.gui.denoised_review import difference_volume

        record.difference, record.difference_width = difference_volume(volume, result.denoised)
    record.seconds = time.perf_counter() - t0
    det = result.detection
    models = f"{det.model.name} {det.model.version}"
    if det.denoiser is not None:
        models += f" + {det.denoiser.name} {det.denoiser.version}"
    record.summary = (
        f"{len(det.findings)} finding(s) — {models} on {result.device} in {record.seconds:.1f} s. "
        "Research use only, not for diagnosis."
    )
    return record


class AnalysisController(QtCore.QObject):
    """The Analyze feature of a :class:`MainWindow`.

    Parameters
    ----------
    window : MainWindow
        Uses its hooks: ``add_analysis_action``, ``add_panel``,
        ``show_progress`` / ``hide_progress``, ``runner``, ``viewer``,
        ``show_error``.
    device : str, optional
        ``"auto"`` (default: CUDA when present), ``"cpu"`` or ``"cuda"``.

    Signals
    -------
    analysis_started(str)
        Series key of the analysed volume.
    analysis_finished(object)
        The :class:`AnalysisRecord`.
    analysis_failed(str)
        The message shown in the error dialog.
    analysis_cancelled()
    analysis_refused(str)
        Analyze was asked while unavailable (running already, no volume...).
    """

    analysis_started = QtCore.Signal(str)
    analysis_finished = QtCore.Signal(object)
    analysis_failed = QtCore.Signal(str)
    analysis_cancelled = QtCore.Signal()
    analysis_refused = QtCore.Signal(str)

    def __init__(self, window: "MainWindow", device: str | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.viewer = window.viewer
        self.device = device
        self.results: dict[str, AnalysisRecord] = {}
        self.current: AnalysisRecord | None = None
        self._running_key: str | None = None
        self._denoise_running = False
        self._busy = False
        self._loaded_volume: Volume | None = None
        self._started_at = 0.0
        self.export_dialog: "ExportDialog | None" = None

        # panels
        self.findings_panel = FindingsPanelWidget(window)
        self.overlay_controls = OverlayControlsWidget(window)
        holder = QtWidgets.QWidget(window)
        lay = QtWidgets.QVBoxLayout(holder)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.overlay_controls)
        lay.addWidget(self.findings_panel, 1)
        self.panel = holder
        self.findings_dock = window.add_panel(holder, "Findings")
        self.denoised_review = DenoisedReviewWidget(self.viewer, window)
        self.denoised_dock = window.add_panel(
            self.denoised_review, "Denoised review", QtCore.Qt.DockWidgetArea.RightDockWidgetArea, tab_with_measurements=False
        )
        self.denoised_dock.hide()
        self.denoised_dock.visibilityChanged.connect(self._side_dock_shown)

        # actions
        self.act_analyze = self._action("&Analyze", self.analyze, "Ctrl+Shift+A",
                                        "Run the AI denoiser and lesion detector on the shown series")
        self.act_cancel = self._action("Cancel analysis", self.cancel, None, "Stop the running analysis")
        self.act_cancel.setEnabled(False)
        self.act_denoise = self._action("Denoise before detection", lambda _=False: None, None,
                                        "Run the low-dose denoiser first (CT)", checkable=True)
        self.act_denoise.setChecked(True)
        self.act_heatmap = self._action("Heat map", self.overlay_controls.toggle, "H", "Show / hide the confidence heat map",
                                        checkable=True)
        self.act_heatmap.setChecked(True)
        self.act_next = self._action("Next finding", self.findings_panel.select_next, "N", "Show the next finding")
        self.act_prev = self._action("Previous finding", self.findings_panel.select_previous, "P", "Show the previous finding")
        self.act_denoised = self._action("Original / denoised", self.toggle_denoised, "D",
                                         "Toggle the viewer between the original and the denoised pixels", checkable=True)
        self.act_side = self.denoised_dock.toggleViewAction()
        self.act_side.setText("Side-by-side denoised view")
        self.act_export = self._action("&Export report…", self.open_export_dialog, "Ctrl+Shift+E",
                                       "Write PDF / DICOM SR / SEG / key images of the findings")
        window.add_analysis_action(self.act_analyze)
        for act in (self.act_cancel, self.act_denoise):
            window.analysis_menu.addAction(act)
        window.analysis_menu.addSeparator()
        for act in (self.act_heatmap, self.act_next, self.act_prev, self.act_denoised, self.act_side):
            window.analysis_menu.addAction(act)
        window.analysis_menu.addSeparator()
        window.analysis_menu.addAction(self.act_export)
        window.analysis_toolbar.addAction(self.act_export)
        self.device_label = QtWidgets.QLabel("", window)
        self.device_label.setToolTip("where the models ran and their versions")
        window.statusBar().addPermanentWidget(self.device_label)
        self.refresh_models_info()

        # wiring
        self.overlay_controls.visibility_changed.connect(self._overlay_visibility)
        self.overlay_controls.style_changed.connect(lambda *_: self._apply_overlay_style())
        self.findings_panel.threshold_changed.connect(self._threshold_changed)
        self.findings_panel.review_changed.connect(lambda _f: self._update_markers())
        self.findings_panel.finding_activated.connect(self.show_finding)
        self.denoised_review.shown_changed.connect(self._denoised_shown)
        self.denoised_review.strength_requested.connect(self._strength_requested)
        self.viewer.volume_changed.connect(self._volume_changed)
        window.series_loaded.connect(self._series_loaded)
        window.runner.task_ended.connect(self._task_ended)
        window.installEventFilter(self)  # closing the window closes the (non-modal) export dialog
        self._sync_actions()
        self._prewarm_timer = QtCore.QTimer(self)
        self._prewarm_timer.setSingleShot(True)
        self._prewarm_timer.timeout.connect(self.prewarm)
        self._prewarm_timer.start(PREWARM_DELAY_MS)

    def prewarm(self) -> None:
        """Import the model code on a worker (once), unless Analyze already runs."""
        import sys

        if self.running or ("medviewer.ai.detect" in sys.modules and "medviewer.ai.denoise" in sys.modules):
            return
        self.window.runner.start(PREWARM_CHANNEL, prewarm_models, on_failed=lambda exc: None)

    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802 - Qt name
        if obj is self.window and ev.type() == QtCore.QEvent.Type.Close and self.export_dialog is not None:
            self.export_dialog.close()  # cancels a running export; the window's runner joins it
        return False

    def _action(self, text: str, slot: Any, shortcut: str | None, tip: str, checkable: bool = False) -> QtGui.QAction:
        act = QtGui.QAction(text, self.window)
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
            act.setToolTip(f"{tip} ({shortcut})")
        else:
            act.setToolTip(tip)
        act.setStatusTip(tip)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.window.addAction(act)  # shortcuts work with menus and toolbars hidden
        return act

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True from Analyze until its outcome (results, error or cancel) has been delivered."""
        return self._busy

    def analyze(self) -> bool:
        """Start Analyze on the shown series; False (and a message) when refused."""
        volume = self.viewer.volume
        if self.running:
            return self._refuse("An analysis is already running — wait for it or cancel it.")
        if volume is None:
            return self._refuse("Open a CT series first, then Analyze.")
        if self.window.runner.is_busy("load") and volume is not self._loaded_volume:
            return self._refuse("The series is still loading — Analyze when it is complete.")
        if volume.is_rgb:
            self._fail("Cannot analyze", "The lesion detector works on grey-scale CT; this series is a colour image.")
            return False
        self.denoised_review.show_denoised(False)  # analyse the source pixels, never a derived display
        volume = self.viewer.volume
        assert volume is not None
        modality = (volume.metadata.modality or "CT").upper()
        denoise = bool(self.act_denoise.isChecked()) and modality == "CT"
        key = series_key(volume)
        device = self.device
        self._running_key = key
        self._busy = True
        self._denoise_running = denoise
        self._started_at = time.perf_counter()

        def task(progress: Any, cancel: Any) -> AnalysisRecord:
            return run_analysis(volume, denoise, device, progress, cancel)

        self.window.show_progress(0.0, "analysis", cancel=self.cancel)
        self.window.statusBar().showMessage(
            f"Analyzing {volume.metadata.series_description or 'series'} ({volume.n_slices} slices)"
            + (" — denoise, then detect" if denoise else " — detect") + "…"
        )
        self.window.runner.start(
            ANALYZE_CHANNEL,
            task,
            on_finished=self._on_finished,
            on_failed=self._on_failed,
            on_progress=self._on_progress,
            on_cancelled=self._on_cancelled,
        )
        self._sync_actions()
        self.analysis_started.emit(key)
        return True

    def cancel(self) -> None:
        """Cancel the running analysis (the worker stops at its next slice batch)."""
        if self.running:
            self.window.runner.cancel(ANALYZE_CHANNEL)
            self.window.statusBar().showMessage("Cancelling the analysis…")

    def _refuse(self, message: str) -> bool:
        self.window.statusBar().showMessage(message, 6000)
        self.analysis_refused.emit(message)
        return False

    def _fail(self, title: str, message: str) -> None:
        self.analysis_failed.emit(message)
        self.window.show_error(title, message)

    def _on_progress(self, fraction: float, message: str) -> None:
        if message.startswith(DEVICE_PREFIX):
            self.device_label.setText(f"AI: {message[len(DEVICE_PREFIX):]} · {installed_models_text()}")
        if message.startswith("denois"):
            stage = "1/2 denoise"
        elif message.startswith("detector") or message.startswith("lesion"):
            stage = "2/2 detect" if self._denoise_running else "1/1 detect"
        else:
            stage = ""
        label = f"{stage}: {message}" if stage else message
        self.window.show_progress(fraction, stage or "analysis", cancel=self.cancel)
        elapsed = time.perf_counter() - self._started_at
        self.window.statusBar().showMessage(f"Analyzing — {label} ({fraction * 100:.0f} %, {elapsed:.0f} s)")

    def _on_finished(self, record: AnalysisRecord) -> None:
        self._busy = False
        self.window.hide_progress()
        key = series_key(record.result.source)
        self.results[key] = record
        self.window.statusBar().showMessage(record.summary, 15000)
        self.device_label.setText(self._device_text(record))
        shown = self.viewer.volume
        if shown is not None and series_key(shown) == key and shown.shape == record.result.source.shape:
            self._apply(record)
            preferred = self.preferred_strength()
            if record.result.denoised is not None and preferred != 1.0:
                self._strength_requested(preferred)  # the reader's level, blended on a worker
        self._sync_actions()
        self.analysis_finished.emit(record)

    def preferred_strength(self) -> float:
        """The reader's last denoising strength (1 when none or not a level the viewer offers)."""
        from medviewer.ai.denoise_strength import STRENGTH_LEVELS
        from medviewer.gui.settings import get_value

        value = float(get_value(self.window.settings, STRENGTH_SETTING, 1.0, float))
        return value if value in STRENGTH_LEVELS else 1.0

    def _on_failed(self, exc: BaseException) -> None:
        self._busy = False
        self.window.hide_progress()
        from medviewer.errors import MedViewerError

        message = str(exc) or type(exc).__name__
        if not isinstance(exc, MedViewerError):
            message = f"{type(exc).__name__}: {message}"
        self._sync_actions()
        self._fail("Analysis failed", message)

    def _on_cancelled(self) -> None:
        self._busy = False
        self.window.hide_progress()
        self.window.statusBar().showMessage("Analysis cancelled — nothing was changed.", 6000)
        self._sync_actions()
        self.analysis_cancelled.emit()

    def _task_ended(self, channel: str) -> None:
        if channel == ANALYZE_CHANNEL:
            self._sync_actions()

    def _sync_actions(self) -> None:
        running = self.running
        self.act_cancel.setEnabled(running)
        has = self.current is not None
        self.act_export.setEnabled(has)
        self.act_denoised.setEnabled(has and self.current is not None and self.current.result.denoised is not None)
        self.act_denoised.setChecked(self.denoised_review.showing_denoised)
        self.act_analyze.setText("&Analyze (running…)" if running else "&Analyze")

    @staticmethod
    def _device_text(record: AnalysisRecord) -> str:
        det = record.result.detection
        text = f"AI: {record.result.device} · detector {det.model.version}"
        if det.denoiser is not None:
            text += f" · denoiser {det.denoiser.version}"
        return text

    def refresh_models_info(self) -> str:
        """Show the installed models' versions (model cards) on the Analyze action and the panel."""
        text = installed_models_text()
        self.act_analyze.setToolTip(f"Run the AI denoiser and lesion detector on the shown series (Ctrl+Shift+A)\n"
                                    f"Models: {text}. Research use only, not for diagnosis.")
        if self.current is None:
            self.findings_panel.info_label.setText(
                f"No analysis for this series — Analysis ▸ Analyze (Ctrl+Shift+A). Models: {text}."
            )
        return text

    def _series_loaded(self, series: Any, volume: Volume) -> None:
        self._loaded_volume = volume  # complete (not the middle-image preview)

    # ------------------------------------------------------------------ showing results
    def _volume_changed(self, volume: Volume | None) -> None:
        """Another series is shown: show its cached results, or none."""
        self.current = None
        self.denoised_review.clear()
        if volume is not None:
            record = self.results.get(series_key(volume))
            if record is not None and record.result.source.shape == volume.shape:
                self._apply(record)
                return
        self.findings_panel.clear()
        self.refresh_models_info()
        self._sync_actions()

    def _apply(self, record: AnalysisRecord) -> None:
        """Show ``record`` on the current volume: heat map, outlines, table, denoised review."""
        self.current = record
        res = record.result
        det = res.detection
        shown = self.viewer.volume
        assert shown is not None
        cmap, opacity, floor = self.overlay_controls.overlay_style()
        self.viewer.set_overlay(det.confidence, cmap, opacity, floor)
        self.viewer.set_overlay_visible(self.overlay_controls.visible)
        models = f"Detector {det.model.name} v{det.model.version}"
        if det.denoiser is not None:
            models += f"; denoiser {det.denoiser.name} v{det.denoiser.version} (denoised series for reading; detection ran on the original images)"
        info = (
            f"{models}. Device: {res.device}. Abnormality score {det.abnormality_score * 100:.0f} %. "
            f"{det.model.intended_use}"
        )
        threshold = float(record.extra.get("threshold", det.threshold))
        self.findings_panel.set_findings(det.findings, threshold=threshold, info=info)
        self.device_label.setText(self._device_text(record))
        # the original is what the viewer shows now (same pixels as the analysed source)
        if res.denoised is not None:
            at = record.extra.get("strength_result")  # (strength, volume, difference, width) chosen earlier
            if at is not None:
                self.denoised_review.set_volumes(shown, at[1], at[2], at[3], strength=at[0])
            else:
                self.denoised_review.set_volumes(shown, res.denoised, record.difference, record.difference_width)
        else:
            self.denoised_review.clear()
        self._update_markers()
        self._sync_actions()

    def _strength_requested(self, strength: float) -> None:
        """The reader chose another denoising strength: blend on a worker, then show and export it."""
        record = self.current
        review = self.denoised_review
        if record is None or record.result.denoised is None or review.original is None:
            return
        record.extra["strength_wanted"] = strength  # a slower earlier request must not win
        self.window.settings.setValue(STRENGTH_SETTING, float(strength))
        if strength == 1.0:
            self.window.runner.cancel(STRENGTH_CHANNEL)
            record.extra.pop("strength_result", None)
            self._strength_ready(record, (1.0, record.result.denoised, record.difference, record.difference_width))
            return

        def done(value: Any, record: AnalysisRecord = record) -> None:
            self._strength_ready(record, value)

        self.window.runner.start(
            STRENGTH_CHANNEL,
            strength_task(review.original, record.result.denoised, strength),
            on_finished=done,
            on_failed=lambda exc: self._strength_failed(record, exc),
        )

    def _strength_failed(self, record: AnalysisRecord, exc: BaseException) -> None:
        record.extra["strength_wanted"] = self.denoised_review.strength if record is self.current else 1.0
        if record is self.current:
            self.denoised_review.reset_strength_box()  # back to the level still shown
        self.window.show_error("Denoising strength", f"could not change the denoising strength: {exc}")

    def _strength_ready(self, record: AnalysisRecord, value: tuple[float, Volume, Volume | None, float]) -> None:
        strength, vol, diff, width = value
        if strength != record.extra.get("strength_wanted", 1.0):
            return  # the reader has chosen another level since
        if strength != 1.0:
            record.extra["strength_result"] = value
        if record is not self.current:
            return  # another series is shown now; kept with its record
        self.denoised_review.set_denoised(vol, diff, width, strength)
        if self.export_dialog is not None and not self.export_dialog.running and self.export_dialog.detection is record.result.detection:
            self.export_dialog.denoised = vol
        self.window.statusBar().showMessage(f"Denoised review at strength {round(100 * strength)} %", 4000)

    def _threshold_changed(self, value: float) -> None:
        if self.current is not None:
            self.current.extra["threshold"] = float(value)  # kept with the series' results
        self._update_markers()

    def _apply_overlay_style(self) -> None:
        if self.current is None:
            return
        self.viewer.set_overlay_style(*self.overlay_controls.overlay_style())

    def _overlay_visibility(self, on: bool) -> None:
        self.act_heatmap.setChecked(on)
        if self.current is not None:
            self.viewer.set_overlay_visible(on)

    def _update_markers(self) -> None:
        markers = self.findings_panel.markers() if self.current is not None else []
        self.viewer.set_markers(markers)
        self.denoised_review.set_markers(markers)

    def show_finding(self, finding: "Finding") -> None:
        """Move every view to ``finding`` and centre it (the findings panel's click)."""
        if self.viewer.volume is None:
            return
        self.viewer.go_to(finding.center_index, centre=True)
        self.denoised_review.sync()
        self.window.statusBar().showMessage(
            f"Finding #{finding.id}: {finding.diameter_mm:.1f} mm, confidence {finding.confidence * 100:.0f} %", 5000
        )

    def toggle_denoised(self) -> bool:
        """Key D: swap the viewer between original and denoised pixels."""
        ok = self.denoised_review.toggle()
        if not ok:
            self.window.statusBar().showMessage("No denoised series for this series — Analyze with denoising on.", 5000)
        self._sync_actions()
        return ok

    def _side_dock_shown(self, visible: bool) -> None:
        if visible and not self.denoised_dock.isFloating():
            # room for an image next to the findings table
            self.window.resizeDocks([self.denoised_dock], [max(240, self.window.height() // 2)], QtCore.Qt.Orientation.Vertical)
            self.denoised_review.sync()

    def _denoised_shown(self, on: bool) -> None:
        self.act_denoised.setChecked(on)
        self.window.statusBar().showMessage("Showing AI-denoised pixels (D: original)" if on else "Showing original pixels", 4000)

    # ------------------------------------------------------------------ export
    def open_export_dialog(self) -> "ExportDialog | None":
        """Open (non-modal) the export dialog for the shown series' results."""
        if self.current is None:
            self.window.statusBar().showMessage("Nothing to export — Analyze the series first.", 5000)
            return None
        from medviewer.gui.export_dialog import ExportDialog

        res = self.current.result
        if self.export_dialog is not None and self.export_dialog.detection is not res.detection:
            if self.export_dialog.running:
                self.export_dialog.show()
                self.export_dialog.raise_()
                return self.export_dialog
            self.export_dialog.close()
            self.export_dialog.deleteLater()
            self.export_dialog = None
        if self.export_dialog is None:
            self.export_dialog = ExportDialog(
                res.source, res.detection, self.window.runner, denoised=self.denoised_review.denoised or res.denoised,
                show_error=self.window.show_error, parent=self.window,
            )
            self.export_dialog.export_finished.connect(
                lambda s: self.window.statusBar().showMessage(f"Report written to {s.out_dir}", 10000)
            )
        self.export_dialog.min_confidence = float(self.current.extra.get("threshold", res.detection.threshold))
        self.export_dialog.show()
        self.export_dialog.raise_()
        return self.export_dialog


def install(window: "MainWindow", device: str | None = None) -> AnalysisController:
    """Create the window's :class:`AnalysisController` (idempotent); MainWindow calls it."""
    existing = getattr(window, "analysis", None)
    if isinstance(existing, AnalysisController):
        return existing
    controller = AnalysisController(window, device=device)
    window.analysis = controller  # type: ignore[attr-defined]
    return controller


__all__ = [
    "AnalysisController",
    "AnalysisRecord",
    "run_analysis",
    "install",
    "series_key",
    "installed_models_text",
    "prewarm_models",
    "ANALYZE_CHANNEL",
]
