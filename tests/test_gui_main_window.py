"""Main window: opening studies, the study browser, background loading, errors, cancel, screenshot."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from test_gui_support import gui_settings, messages, no_leaks, window  # noqa: E402,F401

import medviewer.dicom  # noqa: E402
from medviewer.dicom.synthetic import write_series  # noqa: E402
from medviewer.errors import CancelledError  # noqa: E402

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
RTPLAN = Path(get_testdata_file("rtplan.dcm"))
Qt = QtCore.Qt


@pytest.fixture
def ct_folder(tmp_path):
    folder = tmp_path / "study"
    write_series(folder, n_slices=30, rows=48, columns=40, spacing=2.0, pixel_spacing=(0.8, 0.6), description="syn CT")
    shutil.copy(RTPLAN, folder / "plan.dcm")
    return folder


@pytest.fixture
def slow_load(monkeypatch):
    """Make full-series loads slow (and cancellable); single-image previews stay fast."""
    real = medviewer.dicom.load_series
    calls = []

    def load(series, progress=None, cancel=None, **kwargs):
        calls.append(series)
        if len(series.primary.frames) > 1:
            for n in range(300):
                if cancel is not None and cancel():
                    raise CancelledError("loading cancelled")
                if progress is not None:
                    progress(n / 300, "slow test load")
                time.sleep(0.01)
        return real(series, progress=progress, cancel=cancel, **kwargs)

    monkeypatch.setattr(medviewer.dicom, "load_series", load)
    return calls


def _open(window, qtbot, path, timeout=10000):
    with qtbot.waitSignal(window.series_loaded, timeout=timeout) as blocker:
        window.open_path(str(path))
    return blocker.args


def test_opening_sample_ct_shows_it(window, qtbot, messages, gui_settings):
    series, volume = _open(window, qtbot, CT_SMALL)
    assert volume.shape == (1, 128, 128) and window.viewer.volume is volume
    view = window.viewer.views["axial"]
    np.testing.assert_array_equal(view.image_item.image, volume.voxels[0])
    assert "CompressedSamples CT1" in view.corner_text()["tl"]
    assert "CompressedSamples CT1" in window.windowTitle() and "not for diagnosis" in window.windowTitle()
    # the picture on screen is not blank: a real image with grey levels
    img = window.viewer.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    arr = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    assert arr.std() > 20 and len(np.unique(arr)) > 50
    assert window.browser.item_for(series) is not None
    qtbot.waitUntil(lambda: window.browser.has_thumbnail(series), timeout=5000)
    assert messages == []
    # recent studies are kept in the (temporary) settings file
    from medviewer.gui.settings import app_settings, recent_studies

    assert recent_studies(app_settings()) == [str(CT_SMALL.resolve())]
    assert gui_settings.exists()


def test_browser_lists_series_and_greys_unviewable(window, qtbot, ct_folder, messages):
    series, volume = _open(window, qtbot, ct_folder)
    assert volume.shape == (30, 48, 40) and series.description == "syn CT"
    browser = window.browser
    plan = [s for s in browser.all_series() if not s.viewable]
    assert len(plan) == 1
    item = browser.item_for(plan[0])
    assert item.foreground(0).color() == QtGui.QColor("#808080")
    assert plan[0].reason and plan[0].reason in item.toolTip(0) and plan[0].reason in item.text(3)
    ct_item = browser.item_for(series)
    assert (ct_item.text(1), ct_item.text(2)) == ("CT", "30")
    # double-clicking the plan explains, loads nothing
    with qtbot.assertNotEmitted(window.series_loaded, wait=100):
        browser.activate(plan[0])
    assert "Not viewable" in window.statusBar().currentMessage()
    assert messages == []


def test_corrupt_file_gives_a_message_and_app_stays_usable(window, qtbot, tmp_path, messages):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + bytes(range(256)) * 4)
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(str(junk))
    assert len(messages) == 1 and messages[0][0] == "critical" and "junk.dcm" in messages[0][2]

    truncated = tmp_path / "truncated.dcm"
    data = CT_SMALL.read_bytes()
    truncated.write_bytes(data[: len(data) - 20000])
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(str(truncated))
    assert len(messages) == 2 and "truncated.dcm" in messages[1][2]
    assert not window.progress_bar.isVisible()

    window.open_path(str(tmp_path / "does-not-exist"))
    assert "no such file" in messages[2][2]

    _, volume = _open(window, qtbot, CT_SMALL)  # still usable
    assert window.viewer.volume is volume


def test_cancel_during_load_leaves_app_usable(window, qtbot, ct_folder, slow_load, messages):
    _, first = _open(window, qtbot, CT_SMALL)
    series = None

    def scanned(studies):
        nonlocal series
        series = [s for st in studies for s in st.series if s.viewable][0]

    window.studies_loaded.connect(scanned)
    window.open_path(str(ct_folder))
    qtbot.waitUntil(lambda: window.runner.is_busy("load") and window.progress_bar.isVisible(), timeout=5000)
    # the middle image is on screen while the rest loads
    qtbot.waitUntil(lambda: window.viewer.volume is not None and window.viewer.volume.n_slices == 1
                    and window.viewer.volume is not first, timeout=5000)
    assert window.last_load_timing["first_slice_s"] < 1.0
    assert window.cancel_button.isVisible()
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.runner.is_busy("load"), timeout=2000)
    qtbot.waitUntil(lambda: not window.progress_bar.isVisible(), timeout=2000)
    assert "cancelled" in window.statusBar().currentMessage().lower()
    assert window.viewer.volume is first  # what was shown before comes back
    assert messages == []
    # and the app keeps working: load the same series again
    with qtbot.waitSignal(window.series_loaded, timeout=15000) as blocker:
        window.load_series(series)
    assert blocker.args[1].shape == (30, 48, 40)


def test_second_request_supersedes_first(window, qtbot, ct_folder, slow_load):
    series_list = []
    window.studies_loaded.connect(lambda st: series_list.extend(s for x in st for s in x.series if s.viewable))
    _open(window, qtbot, ct_folder, timeout=15000)
    big = series_list[0]
    _, small = _open(window, qtbot, CT_SMALL)
    small_series = window.current_series
    loaded = []
    window.series_loaded.connect(lambda s, v: loaded.append(s))
    window.load_series(big)  # slow
    qtbot.wait(50)
    window.load_series(small_series)  # latest wins
    qtbot.waitUntil(lambda: loaded == [small_series], timeout=5000)
    qtbot.wait(300)
    assert loaded == [small_series]
    assert window.viewer.volume.shape == (1, 128, 128)


def test_close_during_load_exits_cleanly(qapp, qtbot, no_leaks, gui_settings, messages, ct_folder, slow_load, qtlog):
    from medviewer.gui.main_window import MainWindow

    w = MainWindow()
    w.show()
    w.open_path(str(ct_folder))
    qtbot.waitUntil(lambda: w.runner.is_busy("load"), timeout=5000)
    handle = w.runner.current("load")
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 2.0
    assert not w.runner.is_busy() and handle.qthread.isFinished()
    w.deleteLater()
    qtbot.wait(20)
    assert not any("Destroyed while thread" in str(r.message) for r in qtlog.records)


def test_drag_and_drop_opens(window, qtbot):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(CT_SMALL))])
    enter = QtGui.QDragEnterEvent(
        QtCore.QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(
        QtCore.QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.series_loaded, timeout=10000):
        window.dropEvent(drop)
    assert window.viewer.volume.shape == (1, 128, 128)


def test_demo_falls_back_to_sample_ct(window, qtbot, monkeypatch):
    import medviewer.gui.main_window as mw

    monkeypatch.setattr(mw, "demo_path", lambda progress=None, cancel=None: CT_SMALL)
    with qtbot.waitSignal(window.series_loaded, timeout=10000):
        window.open_demo()
    assert window.viewer.volume.shape == (1, 128, 128)


def test_demo_path_without_generator(monkeypatch):
    import sys

    from medviewer.gui.main_window import demo_path

    monkeypatch.setitem(sys.modules, "medviewer.training.demo", None)
    assert demo_path() == CT_SMALL


def test_settings_restore_layout_and_fps(qapp, qtbot, no_leaks, gui_settings, messages):
    from medviewer.gui.main_window import MainWindow

    w = MainWindow()
    w.set_layout("1x3")
    w.fps_spin.setValue(24)
    w.close()
    w.deleteLater()
    w2 = MainWindow()
    try:
        assert w2.viewer.layout_name == "1x3" and w2.fps_spin.value() == 24
        assert w2.viewer.cine_fps == 24
    finally:
        w2.close()
        w2.deleteLater()


def test_analysis_hooks(window, qtbot):
    act = QtGui.QAction("Test tool", window)
    act.setShortcut("Ctrl+Alt+Y")
    hits = []
    act.triggered.connect(lambda: hits.append(1))
    window.add_analysis_action(act)
    assert window.analysis_menu.isEnabled() and act in window.analysis_toolbar.actions()
    panel = QtWidgets.QLabel("extra panel")
    dock = window.add_panel(panel, "Extra panel")
    assert dock.widget() is panel and window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea
    qtbot.keyClick(window.viewer.views["axial"], "y", Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert hits == [1]
    window.show_progress(0.5, "analysing", cancel=lambda: hits.append("cancel"))
    assert window.progress_bar.value() == 500
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert hits[-1] == "cancel"
    window.hide_progress()


def test_screenshot_command_writes_png(qapp, no_leaks, ct_folder, tmp_path):
    from medviewer.cli import main

    out = tmp_path / "shot.png"
    rc = main(["screenshot", str(ct_folder), "--out", str(out), "--layout", "1x3", "--preset", "lung",
               "--slice", "5", "--size", "900x600"])
    assert rc == 0
    img = QtGui.QImage(str(out))
    assert (img.width(), img.height()) == (900, 600)
    grey = img.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    arr = np.frombuffer(grey.constBits(), np.uint8, grey.sizeInBytes()).reshape(600, grey.bytesPerLine())[:, :900]
    assert (arr < 10).mean() > 0.15  # black viewer background
    assert (arr > 200).mean() > 0.01  # the phantom in the lung window is bright
    assert main(["screenshot", str(ct_folder), "--out", str(out)]) == 2  # will not overwrite silently
    assert main(["screenshot", str(ct_folder), "--out", str(tmp_path / "x.png"), "--slice", "999"]) == 2
    assert not (tmp_path / "x.png").exists()


def test_run_app_entry_point_opens_path(qapp, qtbot, no_leaks, gui_settings, messages, monkeypatch):
    """`medviewer PATH` (cli.main -> run_app) opens the window and loads the study."""
    from medviewer.cli import main
    from medviewer.gui.main_window import MainWindow

    seen = {}

    def fake_exec():
        windows = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        assert len(windows) == 1
        w = windows[0]
        qtbot.waitUntil(lambda: w.viewer.volume is not None and not w.runner.is_busy("load"), timeout=10000)
        seen["shape"] = w.viewer.volume.shape
        w.close()
        w.deleteLater()
        return 0

    monkeypatch.setattr(QtWidgets.QApplication, "exec", staticmethod(fake_exec))
    assert main([str(CT_SMALL)]) == 0
    assert seen["shape"] == (1, 128, 128)


def test_screenshot_series_choice(ct_folder):
    from medviewer.dicom import scan
    from medviewer.errors import DicomError, MedViewerError
    from medviewer.gui.screenshot import _pick_series

    studies = scan(ct_folder)
    assert _pick_series(studies, None).description == "syn CT"  # default: the largest viewable
    assert _pick_series(studies, "1").description == "syn CT"  # by SeriesNumber
    with pytest.raises(MedViewerError, match="no series 77"):
        _pick_series(studies, "77")
    with pytest.raises(MedViewerError, match="must be a number"):
        _pick_series(studies, "abc")
    plan_only = scan(RTPLAN)
    with pytest.raises(DicomError, match="no viewable series"):
        _pick_series(plan_only, None)


def test_cancel_at_random_moments_never_breaks_the_window(window, qtbot, ct_folder, messages, rng):
    """Real loader, cancel after a random delay: either cancelled or loaded, never broken."""
    from medviewer.dicom import scan

    series = [s for st in scan(ct_folder) for s in st.series if s.viewable][0]
    outcomes = []
    for delay in rng.integers(0, 40, size=6):
        window.load_series(series)
        qtbot.wait(int(delay))
        if window.cancel_button.isVisible():
            qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.runner.is_busy("load") and not window.runner.is_busy("preview"), timeout=5000)
        qtbot.waitUntil(lambda: not window.progress_bar.isVisible(), timeout=2000)
        shown = window.viewer.volume
        assert shown is None or shown.shape == (30, 48, 40)  # never a left-over one-image preview
        outcomes.append(None if shown is None else shown.n_slices)
    with qtbot.waitSignal(window.series_loaded, timeout=10000):
        window.load_series(series)
    assert window.viewer.volume.shape == (30, 48, 40)
    assert messages == []


@pytest.mark.parametrize(
    "name, shape, inverted",
    [("US1_UNCR.dcm", (480, 640, 3), False), ("RG1_UNCR.dcm", (1955, 1841), True)],
)
def test_real_rgb_ultrasound_and_monochrome1_radiograph(window, qtbot, messages, name, shape, inverted):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pydicom-data)")
    _, volume = _open(window, qtbot, path, timeout=20000)
    view = window.viewer.views["axial"]
    assert view.image_item.image.shape == shape
    assert window.viewer.invert is inverted  # MONOCHROME1 is shown with high values dark
    if inverted:
        assert view.display_levels()[0] > view.display_levels()[1]
    assert not window.act_layouts["1x3"].isEnabled()  # a single image has no reformats
    assert messages == []


def test_radiograph_letters_from_patient_orientation(window, qtbot):
    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("RG1_UNCR.dcm not installed (pydicom-data)")
    _open(window, qtbot, path, timeout=20000)
    # RG1 has no ImageOrientationPatient; PatientOrientation is L\F
    assert window.viewer.views["axial"].edge_letters() == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    _open(window, qtbot, get_testdata_file("US1_UNCR.dcm"))  # no geometry at all: no letters
    assert set(window.viewer.views["axial"].edge_letters().values()) == {""}
    _open(window, qtbot, path, timeout=20000)
    text = window.viewer.views["axial"].corner_text()
    assert "Pos" not in text["bl"] and "Axial" not in text["tr"]  # no invented geometry
    assert "1841x1955" in text["tr"] and "Im 1/1" in text["bl"]
    view = window.viewer.views["axial"]
    ruler = view.measure("ruler", (10.0, 10.0), (110.0, 10.0))  # RG1 has no pixel spacing
    assert ruler.value_text() == "100.0 mm (uncalibrated)"


def test_screenshot_with_analyze_shows_the_analysis(qapp, no_leaks, ct_folder, tmp_path, monkeypatch):
    """`medviewer screenshot --analyze` runs the real pipeline (shipped models) before rendering."""
    from medviewer.ai.weights import weights_path
    from medviewer.cli import main
    from medviewer.gui import analysis

    if not (weights_path("detector").is_file() and weights_path("denoiser").is_file()):
        pytest.skip("shipped model weights are absent")
    applied = []
    real_apply = analysis.AnalysisController._apply

    def spy(self, record):
        applied.append(record)
        return real_apply(self, record)

    monkeypatch.setattr(analysis.AnalysisController, "_apply", spy)
    out = tmp_path / "analyzed.png"
    assert main(["screenshot", str(ct_folder), "--analyze", "--out", str(out), "--size", "900x600"]) == 0
    assert out.is_file() and QtGui.QImage(str(out)).width() == 900
    (record,) = applied
    assert record.result.denoised is not None  # denoise, then detect, as the Analyze action
    assert record.result.detection.confidence.shape == record.result.source.shape
