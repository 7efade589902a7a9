"""The MedViewer main window: study browser, viewer, measurements, status bar.

Loading never runs on the GUI thread: opening a path scans it on a worker
(:class:`~medviewer.gui.workers.TaskRunner` channel ``"scan"``); choosing a
series reads its middle image first (channel ``"preview"``, milliseconds) and
the whole series next to it (channel ``"load"``), with a progress bar and
Cancel. A new request supersedes the previous one (latest wins). Errors arrive
as signals and are shown with :meth:`MainWindow.show_error`, never raised.

Hooks for issue 7 (Analyze, findings, denoised review)
------------------------------------------------------
* :attr:`MainWindow.analysis_menu` (menu "Analysis") and
  :attr:`MainWindow.analysis_toolbar` (toolbar "Analysis", hidden while empty):
  add the Analyze action with :meth:`MainWindow.add_analysis_action`.
* :meth:`MainWindow.add_panel` docks a widget (e.g. the findings panel) on the
  right, tabbed with the measurements.
* :attr:`MainWindow.runner` is the window's TaskRunner: start the Analyze worker
  on its own channel; :meth:`MainWindow.closeEvent` cancels and joins it.
* :meth:`MainWindow.show_progress` / :meth:`hide_progress` drive the status
  bar progress bar and its Cancel button for any task.
* :attr:`MainWindow.viewer` (:class:`~medviewer.gui.mpr.ViewerWidget`) has the
  overlay, marker, ``go_to`` and ``replace_voxels`` API; its ``volume_changed``
  signal says when another series is shown; :attr:`MainWindow.current_series`
  is the scanned series it came from.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.gui.mpr import LAYOUTS, ViewerWidget
from medviewer.gui.settings import add_recent_study, app_settings, clear_recent_studies, get_value, recent_studies
from medviewer.gui.shortcuts_dialog import ShortcutsDialog
from medviewer.gui.study_browser import StudyBrowserWidget
from medviewer.gui.tools import Measurement
from medviewer.gui.workers import TaskRunner
from medviewer.viewing import PLANES, PRESET_KEYS, PRESETS
from medviewer.volume import Volume

APP_TITLE = "MedViewer"
RESEARCH_NOTICE = "Research use only — not for diagnosis"


def default_series(studies: Sequence[Any]) -> Any | None:
    """The series to show first: the largest viewable one (images x rows x columns)."""
    best, best_key = None, None
    for st in studies:
        for s in st.series:
            if not s.viewable:
                continue
            key = s.n_images * max(s.rows, 1) * max(s.columns, 1)
            if best_key is None or key > best_key:
                best, best_key = s, key
    return best


class MeasurementsWidget(QtWidgets.QWidget):
    """List of measurements with Delete; double-click shows the measurement's slice."""

    delete_requested = QtCore.Signal(object)
    show_requested = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QtWidgets.QListWidget(self)
        self.list.itemDoubleClicked.connect(lambda item: self.show_requested.emit(item.data(QtCore.Qt.ItemDataRole.UserRole)))
        self.delete_button = QtWidgets.QPushButton("Delete", self)
        self.delete_button.clicked.connect(self.delete_selected)
        self.clear_button = QtWidgets.QPushButton("Delete all", self)
        self.clear_button.clicked.connect(self.delete_all)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self._items: list[Measurement] = []

    def set_measurements(self, measurements: Sequence[Measurement]) -> None:
        current = self.selected()
        self.list.clear()
        self._items = list(measurements)
        for m in self._items:
            item = QtWidgets.QListWidgetItem(m.description())
            item.setData(QtCore.Qt.ItemDataRole.UserRole, m)
            self.list.addItem(item)
            if m is current:
                self.list.setCurrentItem(item)

    def texts(self) -> list[str]:
        return [self.list.item(n).text() for n in range(self.list.count())]

    def selected(self) -> Measurement | None:
        item = self.list.currentItem()
        return None if item is None else item.data(QtCore.Qt.ItemDataRole.UserRole)

    def delete_selected(self) -> None:
        m = self.selected()
        if m is None and self._items:
            m = self._items[-1]
        if m is not None:
            self.delete_requested.emit(m)

    def delete_all(self) -> None:
        for m in list(self._items):
            self.delete_requested.emit(m)


class MainWindow(QtWidgets.QMainWindow):
    """The reading window.

    Parameters
    ----------
    settings : QSettings, optional
        Where recent studies, layout and geometry are kept (default:
        :func:`medviewer.gui.settings.app_settings`).
    remember : bool
        False keeps the window from writing settings (screenshots, benchmarks).

    Signals
    -------
    studies_loaded(object)
        The list of studies a scan found.
    series_loaded(object, object)
        ``(series, volume)`` after a full load (series may be None for volumes
        shown with :meth:`set_volume`).
    load_failed(str)
        The message shown for a failed scan or load.
    """

    studies_loaded = QtCore.Signal(object)
    series_loaded = QtCore.Signal(object, object)
    load_failed = QtCore.Signal(str)

    def __init__(self, settings: QtCore.QSettings | None = None, remember: bool = True) -> None:
        super().__init__()
        self.settings = settings if settings is not None else app_settings()
        self.remember = remember
        self.runner = TaskRunner(self)
        self.current_series: Any | None = None
        self.current_path: str | None = None
        self._pending_series: Any | None = None
        self._before_preview: tuple[Volume | None, Any] | None = None
        self._load_t0 = 0.0
        self.last_load_timing: dict[str, float] = {}
        self._shortcuts_dialog: ShortcutsDialog | None = None
        self.setWindowTitle(f"{APP_TITLE} — {RESEARCH_NOTICE}")
        self.setAcceptDrops(True)
        self.setDockOptions(
            QtWidgets.QMainWindow.DockOption.AnimatedDocks | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
        )

        self.viewer = ViewerWidget(self)
        self.setCentralWidget(self.viewer)
        self.browser = StudyBrowserWidget(self.runner, self)
        self.browser.series_activated.connect(self.load_series)
        self.browser.unviewable_activated.connect(
            lambda s: self.statusBar().showMessage(f"Not viewable: {s.reason or s.kind}", 8000)
        )
        self.browser_dock = self._dock("Studies", self.browser, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, "studies")
        self.measurements_panel = MeasurementsWidget(self)
        self.measurements_panel.delete_requested.connect(self.viewer.remove_measurement)
        self.measurements_panel.show_requested.connect(self._show_measurement)
        self.measurements_dock = self._dock(
            "Measurements", self.measurements_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea, "measurements"
        )
        self.viewer.measurements_changed.connect(
            lambda: self.measurements_panel.set_measurements(self.viewer.measurements)
        )

        self._build_status_bar()
        self._build_actions()
        self._build_menus_and_toolbars()
        self.viewer.cursor_info.connect(self._show_cursor_info)
        self.viewer.window_changed.connect(lambda c, w: self.wl_label.setText(f"W {w:.0f} / L {c:.0f}"))
        self.viewer.layout_changed.connect(self._sync_layout_actions)
        self.viewer.invert_changed.connect(lambda inv: self.act_invert.setChecked(inv))
        self.viewer.cine_changed.connect(lambda on: self.act_cine.setChecked(on))
        from medviewer.gui.analysis import install as install_analysis  # issue 7: Analyze, findings, export

        self.analysis = install_analysis(self)
        self._restore_settings()

    # ------------------------------------------------------------------ construction
    def _dock(self, title: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea, name: str) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.cursor_label = QtWidgets.QLabel("", self)
        self.cursor_label.setMinimumWidth(260)
        self.wl_label = QtWidgets.QLabel("", self)
        self.progress_bar = QtWidgets.QProgressBar(self)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self._cancel_clicked)
        self._progress_cancel: Callable[[], None] | None = None
        notice = QtWidgets.QLabel(RESEARCH_NOTICE, self)
        notice.setStyleSheet("color: #a06000;")
        bar.addPermanentWidget(self.cursor_label)
        bar.addPermanentWidget(self.wl_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(notice)
        self.hide_progress()

    def _action(
        self,
        text: str,
        slot: Callable[..., Any],
        shortcut: str | QtGui.QKeySequence | None = None,
        checkable: bool = False,
        tip: str = "",
    ) -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        act.setCheckable(checkable)
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(f"{tip} ({act.shortcut().toString()})" if shortcut else tip)
        act.triggered.connect(slot)
        self.addAction(act)  # window-wide shortcut even when menus/toolbars are hidden
        return act

    def _build_actions(self) -> None:
        S = QtGui.QKeySequence.StandardKey
        self.act_open_folder = self._action("Open &Folder…", self.open_folder_dialog, "Ctrl+O", tip="Open a folder of DICOM files")
        self.act_open_file = self._action(
            "Open &File…", self.open_file_dialog, "Ctrl+Shift+O", tip="Open a DICOM file, DICOMDIR or zip"
        )
        self.act_quit = self._action("&Quit", self.close, QtGui.QKeySequence(S.Quit))
        self.act_layouts: dict[str, QtGui.QAction] = {}
        group = QtGui.QActionGroup(self)
        for name, key in (("1x1", "Ctrl+1"), ("1x3", "Ctrl+3")):
            act = self._action(
                f"Layout {name}", lambda _=False, n=name: self.set_layout(n), key, checkable=True,
                tip="one view" if name == "1x1" else "axial, coronal and sagittal",
            )
            group.addAction(act)
            self.act_layouts[name] = act
        self.act_layouts["1x1"].setChecked(True)
        self.act_planes: dict[str, QtGui.QAction] = {}
        for plane in PLANES:
            self.act_planes[plane] = self._action(
                f"{plane.title()} (1x1)", lambda _=False, p=plane: self.viewer.set_primary_plane(p)
            )
        self.act_presets: list[QtGui.QAction] = []
        for n, name in enumerate(PRESET_KEYS):
            p = PRESETS[name]
            self.act_presets.append(
                self._action(
                    f"{name.title()} (W {p.width:.0f} / L {p.center:.0f})",
                    lambda _=False, k=n + 1: self.apply_preset(k),
                    str(n + 1),
                )
            )
        self.act_file_window = self._action("File's own window", lambda: self.apply_preset(0), "0")
        self.act_invert = self._action("&Invert", self.viewer.toggle_invert, "I", checkable=True, tip="Invert grey scale")
        self.act_reset = self._action("&Reset view", self.viewer.reset, "R", tip="Reset zoom, pan and window")
        self.act_cine = self._action("&Cine", self.viewer.toggle_cine, "C", checkable=True, tip="Play the slices")
        self.act_tools: dict[str, QtGui.QAction] = {}
        tool_group = QtGui.QActionGroup(self)
        for tool, label, key in (
            ("window", "Window/level", "W"),
            ("ruler", "Length ruler", "L"),
            ("ellipse", "Ellipse ROI", "E"),
            ("crosshair", "Crosshair", "X"),
        ):
            act = self._action(label, lambda _=False, t=tool: self.set_tool(t), key, checkable=True, tip=label)
            tool_group.addAction(act)
            self.act_tools[tool] = act
        self.act_tools["window"].setChecked(True)
        self.act_delete_measurement = self._action(
            "Delete measurement", self.measurements_panel.delete_selected, QtGui.QKeySequence(QtCore.Qt.Key.Key_Delete)
        )
        self.act_clear_measurements = self._action("Delete all measurements", self.viewer.clear_measurements)
        self.act_help = self._action("Keyboard && mouse…", self.show_shortcuts, "F1")
        self.act_about = self._action("About MedViewer", self._about)

    def _build_menus_and_toolbars(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        file_menu.addAction(self.act_open_folder)
        file_menu.addAction(self.act_open_file)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        view_menu = mb.addMenu("&View")
        for act in self.act_layouts.values():
            view_menu.addAction(act)
        plane_menu = view_menu.addMenu("Plane in 1x1")
        for act in self.act_planes.values():
            plane_menu.addAction(act)
        view_menu.addSeparator()
        preset_menu = view_menu.addMenu("Window presets")
        for act in self.act_presets:
            preset_menu.addAction(act)
        preset_menu.addAction(self.act_file_window)
        for act in (self.act_invert, self.act_reset, self.act_cine):
            view_menu.addAction(act)
        view_menu.addSeparator()
        view_menu.addAction(self.browser_dock.toggleViewAction())
        view_menu.addAction(self.measurements_dock.toggleViewAction())
        tools_menu = mb.addMenu("&Tools")
        for act in self.act_tools.values():
            tools_menu.addAction(act)
        tools_menu.addSeparator()
        tools_menu.addAction(self.act_delete_measurement)
        tools_menu.addAction(self.act_clear_measurements)
        self.analysis_menu = mb.addMenu("&Analysis")
        self.analysis_menu.setEnabled(False)
        help_menu = mb.addMenu("&Help")
        help_menu.addAction(self.act_help)
        help_menu.addAction(self.act_about)

        tb = self.addToolBar("Viewer")
        tb.setObjectName("toolbar_viewer")
        tb.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addAction(self.act_open_folder)
        tb.addSeparator()
        for act in self.act_layouts.values():
            tb.addAction(act)
        tb.addSeparator()
        for act in self.act_tools.values():
            tb.addAction(act)
        tb.addSeparator()
        self.preset_combo = QtWidgets.QComboBox(self)
        self.preset_combo.addItem("Window preset…")
        for n, name in enumerate(PRESET_KEYS):
            self.preset_combo.addItem(f"{n + 1} {name}")
        self.preset_combo.addItem("0 file's window")
        self.preset_combo.activated.connect(self._preset_combo_chosen)
        self.preset_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        tb.addWidget(self.preset_combo)
        tb.addAction(self.act_invert)
        tb.addAction(self.act_reset)
        tb.addSeparator()
        tb.addAction(self.act_cine)
        self.fps_spin = QtWidgets.QSpinBox(self)
        self.fps_spin.setRange(1, 60)
        self.fps_spin.setValue(int(self.viewer.cine_fps))
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setToolTip("cine frame rate")
        self.fps_spin.valueChanged.connect(self.viewer.set_cine_fps)
        tb.addWidget(self.fps_spin)
        tb.addSeparator()
        tb.addAction(self.act_help)
        self.viewer_toolbar = tb
        self.analysis_toolbar = self.addToolBar("Analysis")
        self.analysis_toolbar.setObjectName("toolbar_analysis")
        self.analysis_toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.analysis_toolbar.hide()

    # ------------------------------------------------------------------ issue-7 hooks
    def add_analysis_action(self, action: QtGui.QAction) -> None:
        """Put an action (e.g. Analyze, Ctrl+Shift+A) in the Analysis menu and toolbar."""
        if action.parent() is None:
            action.setParent(self)
        self.addAction(action)
        self.analysis_menu.addAction(action)
        self.analysis_menu.setEnabled(True)
        self.analysis_toolbar.addAction(action)
        self.analysis_toolbar.show()

    def add_panel(
        self,
        widget: QtWidgets.QWidget,
        title: str,
        area: QtCore.Qt.DockWidgetArea = QtCore.Qt.DockWidgetArea.RightDockWidgetArea,
        tab_with_measurements: bool = True,
    ) -> QtWidgets.QDockWidget:
        """Dock ``widget`` (e.g. a findings panel); tabbed with the measurements by default."""
        dock = self._dock(title, widget, area, title.lower().replace(" ", "_"))
        if tab_with_measurements and area == QtCore.Qt.DockWidgetArea.RightDockWidgetArea:
            self.tabifyDockWidget(self.measurements_dock, dock)
            dock.raise_()
        return dock

    def show_progress(self, fraction: float, message: str = "", cancel: Callable[[], None] | None = None) -> None:
        """Show the status-bar progress bar (and Cancel, calling ``cancel``)."""
        self.progress_bar.show()
        self.progress_bar.setValue(int(round(min(max(fraction, 0.0), 1.0) * 1000)))
        self.progress_bar.setFormat(f"{message[:40]} %p%" if message else "%p%")
        if cancel is not None:
            self._progress_cancel = cancel
        self.cancel_button.setVisible(True)

    def hide_progress(self) -> None:
        self.progress_bar.hide()
        self.cancel_button.hide()
        self._progress_cancel = None

    # ------------------------------------------------------------------ opening
    def open_folder_dialog(self) -> None:
        start = str(get_value(self.settings, "paths/last_dir", str(Path.home()), str))
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open DICOM folder", start)
        if path:
            self.open_path(path)

    def open_file_dialog(self) -> None:
        start = str(get_value(self.settings, "paths/last_dir", str(Path.home()), str))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open DICOM file, DICOMDIR or zip", start, "DICOM (*.dcm *.DCM DICOMDIR *.zip *.ima *);;All files (*)"
        )
        if path:
            self.open_path(path)

    def open_path(self, path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> None:
        """Scan a folder, DICOMDIR, zip or file(s) on a worker, then show its largest series."""
        paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            self.show_error("Cannot open", f"{missing[0]}: no such file or folder")
            return
        target: Any = paths if len(paths) > 1 else paths[0]
        label = paths[0] if len(paths) == 1 else f"{len(paths)} items"
        self.current_path = label
        self.statusBar().showMessage(f"Scanning {label}…")
        self.runner.cancel("thumbnails")

        def task(progress: Any, cancel: Any) -> list[Any]:
            from medviewer.dicom import scan

            return scan(target, progress=progress, cancel=cancel)

        self._load_t0 = time.perf_counter()
        self.show_progress(0.0, "scanning", cancel=lambda: self.runner.cancel("scan"))
        self.runner.start(
            "scan",
            task,
            on_finished=lambda studies: self._on_scanned(label, paths, studies),
            on_failed=lambda exc: self._on_failed(f"Cannot read {label}", exc),
            on_progress=lambda f, m: self.show_progress(f, m),
            on_cancelled=lambda: self._on_cancelled("Scan cancelled"),
        )

    def _on_scanned(self, label: str, paths: list[str], studies: list[Any]) -> None:
        self.hide_progress()
        if self.remember and len(paths) == 1:
            add_recent_study(self.settings, paths[0])
            self.settings.setValue("paths/last_dir", str(Path(paths[0]).parent if Path(paths[0]).is_file() else paths[0]))
        self.browser.set_studies(studies)
        self.studies_loaded.emit(studies)
        series = default_series(studies)
        if series is None:
            reasons = sorted({s.reason for st in studies for s in st.series if s.reason})
            detail = ("\n" + "\n".join(reasons[:5])) if reasons else ""
            self.show_error("Nothing to show", f"No viewable DICOM images found in {label}.{detail}")
            return
        self.browser.select_series(series)
        self.load_series(series)

    def load_series(self, series: Any) -> None:
        """Load ``series`` on a worker: its middle image at once, the whole series next."""
        from medviewer.viewing import middle_frame_series

        self._pending_series = series
        self._load_t0 = time.perf_counter()
        self.last_load_timing = {}
        self.statusBar().showMessage(f"Loading {series.description or series.kind} ({series.n_images} images)…")
        self.show_progress(0.0, "loading", cancel=self.cancel_loading)

        def preview_task(progress: Any, cancel: Any) -> Volume:
            from medviewer.dicom import load_series as _load

            return _load(middle_frame_series(series), cancel=cancel)

        def load_task(progress: Any, cancel: Any) -> Volume:
            from medviewer.dicom import load_series as _load

            return _load(series, progress=progress, cancel=cancel)

        if series.n_images > 1:
            self.runner.start("preview", preview_task, on_finished=lambda v: self._on_preview(series, v))
        self.runner.start(
            "load",
            load_task,
            on_finished=lambda v: self._on_loaded(series, v),
            on_failed=lambda exc: self._on_failed("Cannot load series", exc),
            on_progress=lambda f, m: self.show_progress(f, m),
            on_cancelled=lambda: self._on_cancelled("Loading cancelled"),
        )

    def _on_preview(self, series: Any, volume: Volume) -> None:
        if self._pending_series is not series or not self.runner.is_busy("load"):
            return  # the full volume is already there, or another series was asked for
        if self._before_preview is None:
            self._before_preview = (self.viewer.volume, self.current_series)
        self.viewer.set_volume(volume)
        self.last_load_timing["first_slice_s"] = time.perf_counter() - self._load_t0
        n_images = getattr(series, "n_images", "all")
        self.statusBar().showMessage(f"Showing the middle image while {n_images} images load…")

    def _on_loaded(self, series: Any, volume: Volume) -> None:
        self.hide_progress()
        self._before_preview = None
        self._pending_series = None
        self.set_volume(volume, series)
        now = time.perf_counter() - self._load_t0
        self.last_load_timing.setdefault("first_slice_s", now)
        self.last_load_timing["complete_s"] = now
        warn = f" — {len(volume.metadata.warnings)} note(s), see tooltip" if volume.metadata.warnings else ""
        self.statusBar().showMessage(f"Loaded {volume.n_slices} images in {now:.2f} s{warn}", 8000)
        self.statusBar().setToolTip("\n".join(volume.metadata.warnings[:10]))
        self.series_loaded.emit(series, volume)

    def _restore_before_preview(self) -> None:
        if self._before_preview is not None:
            volume, series = self._before_preview
            self._before_preview = None
            self.viewer.set_volume(volume)
            self.current_series = series

    def _on_failed(self, title: str, exc: BaseException) -> None:
        self.hide_progress()
        self._restore_before_preview()
        self._pending_series = None
        self.show_error(title, str(exc) or type(exc).__name__)

    def _on_cancelled(self, message: str) -> None:
        self.hide_progress()
        self._restore_before_preview()
        self._pending_series = None
        self.statusBar().showMessage(message, 5000)

    def cancel_loading(self) -> None:
        """Cancel the scan / load / demo preparation in progress."""
        for channel in ("demo", "scan", "preview", "load"):
            self.runner.cancel(channel)

    def _cancel_clicked(self) -> None:
        if self._progress_cancel is not None:
            self._progress_cancel()
        else:
            self.cancel_loading()

    def open_demo(self) -> None:
        """Open the demo study (generated on first use), else pydicom's sample CT."""

        def task(progress: Any, cancel: Any) -> str:
            return str(demo_path(progress, cancel))

        self.statusBar().showMessage("Preparing the demo study…")
        self.show_progress(0.0, "demo study", cancel=lambda: self.runner.cancel("demo"))
        self.runner.start(
            "demo",
            task,
            on_finished=self.open_path,
            on_failed=lambda exc: self._on_failed("Cannot prepare the demo study", exc),
            on_progress=lambda f, m: self.show_progress(f, m),
            on_cancelled=lambda: self._on_cancelled("Demo cancelled"),
        )

    def set_volume(self, volume: Volume | None, series: Any | None = None) -> None:
        """Show a volume directly (loaded elsewhere, synthetic, derived)."""
        self.current_series = series
        self.viewer.set_volume(volume)
        if volume is not None and self.isActiveWindow():
            self.viewer.active_view.setFocus()  # keys scroll and window at once
        md = volume.metadata if volume is not None else None
        if md is not None:
            name = md.patient_name.replace("^", " ").strip()
            title = " — ".join(x for x in (name, md.series_description) if x)
            self.setWindowTitle(f"{APP_TITLE} — {title} — {RESEARCH_NOTICE}" if title else f"{APP_TITLE} — {RESEARCH_NOTICE}")
        self._sync_layout_actions(self.viewer.layout_name)

    @property
    def volume(self) -> Volume | None:
        return self.viewer.volume

    def show_error(self, title: str, message: str) -> None:
        """The one place errors reach the user (a message box; tests patch it)."""
        self.statusBar().showMessage(f"{title}: {message}"[:200], 10000)
        self.load_failed.emit(message)
        QtWidgets.QMessageBox.critical(self, title, message)

    # ------------------------------------------------------------------ view actions
    def set_layout(self, name: str) -> None:
        if not self.viewer.set_layout(name):
            self.statusBar().showMessage("A single image has no coronal/sagittal reformat", 5000)
        self._sync_layout_actions(self.viewer.layout_name)

    def _sync_layout_actions(self, name: str) -> None:
        act = self.act_layouts.get(name)
        if act is not None:
            act.setChecked(True)
        self.act_layouts["1x3"].setEnabled(self.viewer.volume is None or self.viewer.mpr_available)

    def apply_preset(self, key: int | str) -> None:
        if self.viewer.volume is None or self.viewer.volume.is_rgb:
            return
        p = self.viewer.apply_preset(key)
        self.statusBar().showMessage(f"Window {p.name or 'file'}: W {p.width:.0f} / L {p.center:.0f}", 3000)

    def _preset_combo_chosen(self, index: int) -> None:
        if 1 <= index <= len(PRESET_KEYS):
            self.apply_preset(index)
        elif index == len(PRESET_KEYS) + 1:
            self.apply_preset(0)
        self.preset_combo.setCurrentIndex(0)

    def set_tool(self, tool: str) -> None:
        self.viewer.set_tool(tool)
        self.act_tools[tool].setChecked(True)

    def show_shortcuts(self) -> ShortcutsDialog:
        """Open (non-modal) the keyboard and mouse help."""
        if self._shortcuts_dialog is None:
            self._shortcuts_dialog = ShortcutsDialog(self)
        self._shortcuts_dialog.show()
        self._shortcuts_dialog.raise_()
        return self._shortcuts_dialog

    def _about(self) -> None:
        from medviewer import __version__

        QtWidgets.QMessageBox.about(
            self,
            "About MedViewer",
            f"MedViewer {__version__}\nDICOM viewer with local AI.\n{RESEARCH_NOTICE}.",
        )

    def _show_measurement(self, m: Measurement) -> None:
        if self.viewer.layout_name == "1x1" and m.plane != self.viewer.primary_plane:
            self.viewer.set_primary_plane(m.plane)
        self.viewer.views[m.plane].set_slice(m.slice_index)

    def _show_cursor_info(self, info: Any) -> None:
        if info is None or self.viewer.volume is None:
            self.cursor_label.setText("")
            return
        plane, (k, j, i), value = info
        units = "" if self.viewer.volume.is_rgb else self.viewer.volume.metadata.units
        pos = self.viewer.volume.index_to_patient((k, j, i))
        val = f"RGB {value}" if isinstance(value, tuple) else f"{value:.0f} {units}"
        self.cursor_label.setText(f"({i}, {j}, {k})  [{pos[0]:.1f}, {pos[1]:.1f}, {pos[2]:.1f}] mm  {val}")

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = recent_studies(self.settings)
        for p in items:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, path=p: self.open_path(path))
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(lambda: clear_recent_studies(self.settings))

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:  # noqa: N802 - Qt name
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.open_path(paths if len(paths) > 1 else paths[0])

    # ------------------------------------------------------------------ settings & close
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, (QtCore.QByteArray, bytes)):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        state = self.settings.value("window/state")
        if isinstance(state, (QtCore.QByteArray, bytes)):
            self.restoreState(state)
        layout = str(get_value(self.settings, "viewer/layout", "1x1", str))
        if layout in LAYOUTS:
            self.viewer.set_layout(layout)
            self._sync_layout_actions(layout)
        fps = int(get_value(self.settings, "viewer/cine_fps", 10, int))
        self.fps_spin.setValue(min(max(fps, 1), 60))

    def save_settings(self) -> None:
        if not self.remember:
            return
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("viewer/layout", self.viewer.layout_name)
        self.settings.setValue("viewer/cine_fps", int(self.fps_spin.value()))
        self.settings.sync()

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt name
        """Stop cine, cancel and join every worker, keep the settings."""
        self.viewer.stop_cine()
        self.runner.shutdown()
        self.save_settings()
        if self._shortcuts_dialog is not None:
            self._shortcuts_dialog.close()
        super().closeEvent(ev)


def demo_path(progress: Any = None, cancel: Any = None) -> Path:
    """The demo study folder (generated on first use); pydicom's CT_small until the generator exists."""
    try:
        from medviewer.training.demo import ensure_demo_study
    except ModuleNotFoundError as exc:
        if exc.name not in ("medviewer.training.demo",):
            raise
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
        if path is None:  # pragma: no cover - pydicom ships it
            raise FileNotFoundError("pydicom's CT_small.dcm sample is missing")
        return Path(str(path))
    return Path(ensure_demo_study(progress=progress, cancel=cancel))


__all__ = ["MainWindow", "MeasurementsWidget", "default_series", "demo_path", "APP_TITLE", "RESEARCH_NOTICE"]
