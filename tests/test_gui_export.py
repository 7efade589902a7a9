"""The GUI's export dialog (issue 8): export_report on a worker, errors as dialogs, never blocking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtWidgets  # noqa: E402
from test_gui_analyze import (  # noqa: E402,F401
    controller,
    models,
    oracle,
    restore_torch_threads,
    run_analyze,
    sphere_volume,
    tmp_models,
)
from test_gui_support import gui_settings, messages, no_leaks, window  # noqa: E402,F401

from medviewer.ai.results import ReviewStatus  # noqa: E402

Qt = QtCore.Qt


@pytest.fixture
def analysed(window, qtbot, oracle):
    """The window after Analyze on the sphere phantom, one finding accepted with a note."""
    window.set_volume(sphere_volume())
    ctl = controller(window)
    ctl.act_denoise.setChecked(False)
    record = run_analyze(window, qtbot)
    f = record.result.detection.findings[0]
    ctl.findings_panel.set_status(f, ReviewStatus.ACCEPTED)
    ctl.findings_panel.set_note(f, "solid, 14 mm")
    return ctl, record


def test_export_dialog_writes_a_report_folder_on_a_worker(window, qtbot, messages, analysed, tmp_path):
    ctl, record = analysed
    assert ctl.act_export.isEnabled() and ctl.act_export.shortcut().toString() == "Ctrl+Shift+E"
    ctl.act_export.trigger()
    dlg = ctl.export_dialog
    assert dlg is not None and dlg.isVisible() and not dlg.isModal()
    out = tmp_path / "report"
    dlg.folder_edit.setText(str(out))
    dlg.set_formats(["json", "csv", "pdf"])
    dlg.impression_edit.setPlainText("Two bright spheres; phantom.")
    dlg.reader_edit.setText("Reader^Test")
    dlg.signed_check.setChecked(True)
    dlg.paper_combo.setCurrentText("Letter")
    with qtbot.waitSignal(dlg.export_finished, timeout=60000) as blocker:
        qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
        # the export runs on a worker: the GUI thread is free right after the click
        assert window.runner.is_busy("export") and not dlg.export_button.isEnabled()
        assert dlg.cancel_button.isEnabled()
    summary = blocker.args[0]
    assert summary.out_dir == out
    assert sorted(p.name for p in out.iterdir()) == ["findings.csv", "findings.json", "report.pdf"]
    doc = json.loads((out / "findings.json").read_text())
    assert len(doc["findings"]) == len(record.result.detection.findings)
    first = doc["findings"][0]
    assert first["status"] == "accepted" and first["note"] == "solid, 14 mm"
    assert doc["report"]["impression"] == "Two bright spheres; phantom."
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert "Wrote 3 file(s)" in dlg.status_label.text() and messages == []
    assert str(out) in window.statusBar().currentMessage()
    # a second export into the now non-empty folder asks first (the recorder answers Ok, not Yes)
    assert not dlg.start_export()
    assert messages[-1][0] == "question" and "not empty" in dlg.status_label.text()
    dlg.close()


def test_export_errors_show_a_dialog(window, qtbot, messages, analysed, tmp_path):
    ctl, _ = analysed
    dlg = ctl.open_export_dialog()
    assert dlg is not None
    # a signed report without a reader name is refused up front
    dlg.folder_edit.setText(str(tmp_path / "r1"))
    dlg.set_formats(["json"])
    dlg.signed_check.setChecked(True)
    assert not dlg.start_export()
    assert messages[-1][0] == "critical" and "reader" in messages[-1][2]
    dlg.signed_check.setChecked(False)
    # no format chosen
    dlg.set_formats([])
    assert not dlg.start_export() and "format" in messages[-1][2]
    # the exporter fails on the worker (the output "folder" is a file): an error dialog, nothing written
    blocker_file = tmp_path / "a-file"
    blocker_file.write_text("x")
    dlg.folder_edit.setText(str(blocker_file / "report"))
    dlg.set_formats(["json", "csv"])
    with qtbot.waitSignal(dlg.export_failed, timeout=30000):
        assert dlg.start_export()
    assert messages[-1][0] == "critical" and messages[-1][1] == "Export failed"
    assert blocker_file.read_text() == "x" and not dlg.running
    assert dlg.export_button.isEnabled()
    # still usable: a good export afterwards
    dlg.folder_edit.setText(str(tmp_path / "ok"))
    with qtbot.waitSignal(dlg.export_finished, timeout=30000):
        assert dlg.start_export()
    assert (tmp_path / "ok" / "findings.csv").is_file()
    dlg.close()


def test_export_cancel_leaves_nothing(window, qtbot, messages, analysed, tmp_path, monkeypatch):
    import time

    import medviewer.report.export as ex
    from medviewer.errors import CancelledError

    ctl, _ = analysed
    dlg = ctl.open_export_dialog()
    real = ex.export_report

    def slow(*args, progress=None, cancel=None, **kwargs):
        for n in range(500):
            if cancel():
                raise CancelledError("report export cancelled")
            progress(n / 500, "slow")
            time.sleep(0.01)
        return real(*args, progress=progress, cancel=cancel, **kwargs)

    monkeypatch.setattr(ex, "export_report", slow)
    out = tmp_path / "cancelled"
    dlg.folder_edit.setText(str(out))
    dlg.set_formats(["json"])
    with qtbot.waitSignal(window.runner.task_ended, timeout=5000):
        assert dlg.start_export()
        qtbot.wait(100)
        qtbot.mouseClick(dlg.cancel_button, Qt.MouseButton.LeftButton)
    assert not out.exists() and "cancelled" in dlg.status_label.text() and messages == []
    dlg.close()


def test_closing_the_window_during_export_cancels_it(window, qtbot, messages, analysed, tmp_path, monkeypatch, capfd):
    import time

    import medviewer.report.export as ex
    from medviewer.errors import CancelledError

    def slow(*args, progress=None, cancel=None, **kwargs):
        while not cancel():
            progress(0.5, "slow")
            time.sleep(0.01)
        raise CancelledError("report export cancelled")

    monkeypatch.setattr(ex, "export_report", slow)
    ctl, _ = analysed
    dlg = ctl.open_export_dialog()
    dlg.folder_edit.setText(str(tmp_path / "never"))
    dlg.set_formats(["json"])
    assert dlg.start_export()
    qtbot.wait(50)
    t0 = time.perf_counter()
    window.close()
    assert time.perf_counter() - t0 < 2.0
    assert not dlg.isVisible() and not window.runner.is_busy()
    assert not (tmp_path / "never").exists() and messages == []
    assert "QThread" not in capfd.readouterr().err
