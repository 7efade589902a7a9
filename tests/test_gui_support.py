"""Shared fixtures and helpers of the GUI tests (imported by tests/test_gui_*.py; no tests here).

* settings go to a temporary INI file (never the user's);
* QMessageBox is replaced by a recorder, so no modal dialog can block a test;
* after each test no new top-level widget is left alive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from medviewer.volume import Volume, VolumeMetadata, WindowPreset  # noqa: E402


def flush_deletes() -> None:
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
        QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete.value)


@pytest.fixture
def no_leaks(qapp):
    """Fail when a test leaves a top-level widget alive."""
    before = {id(w) for w in qapp.topLevelWidgets()}
    yield
    flush_deletes()
    leaked = [w for w in qapp.topLevelWidgets() if id(w) not in before]
    names = [f"{type(w).__name__}({w.windowTitle()!r})" for w in leaked]
    for w in leaked:  # do not cascade into the next test
        w.close()
        w.deleteLater()
    flush_deletes()
    assert not leaked, f"top-level widgets leaked: {names}"


@pytest.fixture
def messages(monkeypatch) -> list[tuple[str, str, str]]:
    """Every QMessageBox the code shows, recorded as (kind, title, text); none blocks."""
    seen: list[tuple[str, str, str]] = []

    def recorder(kind: str) -> Any:
        def show(parent: Any, title: str, text: str, *args: Any, **kwargs: Any) -> Any:
            seen.append((kind, str(title), str(text)))
            return QtWidgets.QMessageBox.StandardButton.Ok

        return staticmethod(show)

    for kind in ("critical", "warning", "information", "question", "about"):
        monkeypatch.setattr(QtWidgets.QMessageBox, kind, recorder(kind))
    monkeypatch.setattr(QtWidgets.QMessageBox, "exec", lambda self: 0)
    return seen


@pytest.fixture
def gui_settings(tmp_path, monkeypatch):
    path = tmp_path / "medviewer-settings.ini"
    monkeypatch.setenv("MEDVIEWER_SETTINGS", str(path))
    return path


@pytest.fixture
def window(qapp, qtbot, no_leaks, gui_settings, messages):
    """A shown MainWindow (1000x700), closed and deleted after the test."""
    from medviewer.gui.app import ensure_app
    from medviewer.gui.main_window import MainWindow

    ensure_app()
    w = MainWindow()
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    yield w
    w.close()
    assert not w.runner.is_busy(), "a worker outlived the window"
    w.deleteLater()
    flush_deletes()


def synthetic_volume(
    shape: tuple[int, int, int] = (24, 64, 80),
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.9),
    seed: int = 0,
) -> Volume:
    """A CT-like volume whose values encode the slice (k * 10) plus texture."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    vox = rng.normal(0, 20, shape).astype(np.float32)
    vox += (np.arange(z, dtype=np.float32) * 10.0)[:, None, None]
    meta = VolumeMetadata(
        modality="CT",
        patient_name="Test^Patient",
        patient_id="P123",
        study_date="20240102",
        series_description="synthetic",
        series_number=3,
        slice_thickness=spacing[0],
        windows=[WindowPreset(50.0, 350.0, "file")],
    )
    return Volume(vox, spacing=spacing, origin=(-30.0, -20.0, 100.0), metadata=meta)


def view_point(view: Any, x_mm: float, y_mm: float) -> QtCore.QPoint:
    """Widget (viewport) pixel of scene position (x_mm, y_mm) in a SliceView."""
    scene = view.view_box.mapViewToScene(QtCore.QPointF(x_mm, y_mm))
    return view.mapFromScene(scene)


def mouse_drag(qtbot: Any, view: Any, p0: QtCore.QPoint, p1: QtCore.QPoint, button: Any, steps: int = 6) -> None:
    """A real press-move-release drag on a SliceView's viewport."""
    vp = view.viewport()
    qtbot.mousePress(vp, button, pos=p0)
    for n in range(1, steps + 1):
        qtbot.wait(15)  # pyqtgraph drops mouse moves closer than 10 ms (mouseRateLimit)
        p = p0 + (p1 - p0) * (n / steps)
        ev = QtGui.QMouseEvent(
            QtCore.QEvent.Type.MouseMove,
            QtCore.QPointF(p),
            QtCore.QPointF(vp.mapToGlobal(p)),
            QtCore.Qt.MouseButton.NoButton,
            button,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )
        QtWidgets.QApplication.sendEvent(vp, ev)
    qtbot.wait(15)
    qtbot.mouseRelease(vp, button, pos=p1)


def wheel(view: Any, steps: int, modifiers: Any = QtCore.Qt.KeyboardModifier.NoModifier) -> None:
    """Send ``steps`` wheel notches (positive = away from the user) to a SliceView."""
    vp = view.viewport()
    pos = QtCore.QPointF(vp.width() / 2, vp.height() / 2)
    ev = QtGui.QWheelEvent(
        pos,
        QtCore.QPointF(vp.mapToGlobal(pos.toPoint())),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * steps),
        QtCore.Qt.MouseButton.NoButton,
        modifiers,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(vp, ev)
