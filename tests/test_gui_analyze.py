"""Analyze in the viewer (issue 7): worker, progress, cancel, errors, overlays, findings review, denoised view.

The pipeline is the real one (``analyze_volume`` -> ``denoise_volume`` ->
``detect_lesions``) with small temporary weights; where a test needs known
findings, the detector's network is replaced by an oracle that marks bright
spheres (everything else — resampling, candidate extraction, mapping to the
source grid, the GUI — runs for real). One test runs on the demo study.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import torch  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402
from test_gui_support import flush_deletes, gui_settings, messages, no_leaks, window  # noqa: E402,F401

from medviewer.ai import detect as det  # noqa: E402
from medviewer.ai.results import ReviewStatus  # noqa: E402
from medviewer.errors import CancelledError  # noqa: E402
from medviewer.volume import Volume, VolumeMetadata, WindowPreset  # noqa: E402

Qt = QtCore.Qt
SPHERES = (((8, 30, 40), 7.0), ((16, 62, 80), 5.0))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Analyze caps torch at cores - 1 while the GUI is up; give the next test module its threads back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tmp_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-initialised detector + small denoiser saved like shipped models (resources/models)."""
    from medviewer.ai.denoiser import DenoiserConfig, DenoiserNet
    from medviewer.ai.detector import build_model, model_config
    from medviewer.ai.weights import save_weights

    root = tmp_path_factory.mktemp("resources")
    torch.manual_seed(0)
    net = build_model()
    card = {"version": "0.0.0-test", "config": model_config(net), "calibration": {"temperature": 1.0, "bias": 0.0},
            "threshold": 0.5}
    save_weights("detector", net.state_dict(), card, root / "models")
    cfg = DenoiserConfig(c0=8, c1=8, c2=16, n_bottom=1)
    den = DenoiserNet(cfg)
    torch.nn.init.normal_(den.dec0[-1].weight, std=0.1)  # a generator that visibly changes pixels
    save_weights("denoiser", den.state_dict(), {"version": "0.0-test", "architecture": {"config": cfg.to_json()}}, root / "models")
    return root


@pytest.fixture
def models(tmp_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from medviewer.ai import denoise as dn

    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(tmp_models))
    dn.clear_cache()
    det._CACHE.clear()
    yield tmp_models
    dn.clear_cache()
    det._CACHE.clear()


def _oracle_maps(model, hu, device=None, progress=None, cancel=None, slice_batch=8):
    """Stand-in network: a 'lesion' is whatever is brighter than 500 HU."""
    from scipy import ndimage

    x = torch.as_tensor(np.asarray(hu, np.float32))
    s = x.shape[0]
    bright = (x > 500).float()[:, None]
    pooled = torch.nn.functional.avg_pool2d(bright, 2, ceil_mode=True)[:, 0].numpy()
    seg = np.where(pooled > 0.5, 6.0, -6.0).astype(np.float32)
    dist = ndimage.distance_transform_edt(pooled > 0.5, sampling=(2.5, 2.8, 2.8))
    heat = (np.where(pooled > 0.5, dist - dist.max(), -20.0) + 4.0).astype(np.float32)
    for k in range(s):
        if cancel is not None and cancel():
            raise CancelledError("lesion detection cancelled")
        if progress is not None:
            progress((k + 1) / s, "detector: decoding slices")
    return seg, heat, np.zeros((s, 3) + seg.shape[1:], np.float32)


@pytest.fixture
def oracle(models, monkeypatch):
    monkeypatch.setattr(det, "predict_maps", _oracle_maps)


def sphere_volume(uid: str = "1.2.826.0.1.3680043.8.498.777", shape=(24, 96, 112), seed: int = 0) -> Volume:
    """CT-like volume with two bright spheres (lesions for the oracle)."""
    rng = np.random.default_rng(seed)
    spacing = (2.5, 0.8, 0.8)
    vox = (40.0 + rng.normal(0, 15, shape)).astype(np.float32)
    zz, yy, xx = np.indices(shape)
    for (k, j, i), r in SPHERES:
        d = np.sqrt(((zz - k) * spacing[0]) ** 2 + ((yy - j) * spacing[1]) ** 2 + ((xx - i) * spacing[2]) ** 2)
        vox[d <= r] = 1000.0
    meta = VolumeMetadata(modality="CT", series_uid=uid, patient_name="Sphere^Phantom", series_description="spheres",
                          windows=[WindowPreset(40.0, 400.0, "soft")])
    return Volume(vox, spacing, origin=(-40.0, -40.0, 10.0), metadata=meta)


def controller(window):
    """The window's AnalysisController (MainWindow installs it; idempotent)."""
    from medviewer.gui.analysis import install

    return install(window)


def run_analyze(window, qtbot, timeout: int = 60000):
    ctl = controller(window)
    with qtbot.waitSignal(ctl.analysis_finished, timeout=timeout) as blocker:
        assert ctl.analyze()
    return blocker.args[0]


def slow_pipeline(monkeypatch, seconds: float = 30.0) -> list[float]:
    """Replace analyze_volume with a slow, cancellable stand-in; returns the times cancel was seen."""
    import medviewer.ai.pipeline as pl

    seen: list[float] = []

    def slow(volume, *, denoise=False, device=None, progress=None, cancel=None, threads=None):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if cancel is not None and cancel():
                seen.append(time.perf_counter())
                raise CancelledError("analysis cancelled")
            if progress is not None:
                progress(min(0.99, (time.perf_counter() - t0) / seconds), "detector: encoding slices")
            time.sleep(0.01)
        raise AssertionError("the slow pipeline was never cancelled")

    monkeypatch.setattr(pl, "analyze_volume", slow)
    return seen


# --------------------------------------------------------------------------- tests
def test_analyze_shows_findings_overlays_and_review(window, qtbot, messages, oracle):
    vol = sphere_volume()
    window.set_volume(vol)
    ctl = controller(window)
    assert ctl.act_analyze.shortcut().toString() == "Ctrl+Shift+A"
    assert "detector 0.0.0-test" in ctl.act_analyze.toolTip() and "denoiser 0.0-test" in ctl.act_analyze.toolTip()
    assert ctl.act_analyze in window.analysis_toolbar.actions() and ctl.act_analyze in window.analysis_menu.actions()
    with qtbot.waitSignal(ctl.analysis_finished, timeout=60000) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        assert window.runner.is_busy("analyze")
    record = blocker.args[0]
    assert messages == []
    assert torch.get_num_threads() == max(1, (os.cpu_count() or 2) - 1)  # capped while the GUI is up
    det_res = record.result.detection
    assert len(det_res.findings) >= 2
    # findings panel: one row per finding, values from the Finding objects
    panel = ctl.findings_panel
    assert panel.table.rowCount() == len(det_res.findings)
    big = det_res.findings[0]
    row = panel.row_texts(0)
    assert row[0] == str(big.id) and f"{big.diameter_mm:.1f} mm" == row[2] and row[4] == f"{100 * big.confidence:.0f} %"
    assert f"Im {big.slice_range[0] + 1}" in row[1] and float(row[3]) > 500  # mean HU of a 1000 HU sphere
    assert "0.0.0-test" in panel.info_label.text() and "CPU" in panel.info_label.text()
    assert "0.0.0-test" in ctl.device_label.text() and "CPU" in ctl.device_label.text()
    # overlays on every view (axial and MPR): heat map and outlines with label
    window.set_layout("1x3")
    for view in window.viewer.views.values():
        assert view._overlay is det_res.confidence
        assert len(view.markers) == len(panel.visible_findings()) >= 2
        assert view.markers[0].label.startswith(f"#{big.id} ") and view.markers[0].label.endswith("%")
    # click a finding: every view moves to it and centres it
    f2 = det_res.findings[1]
    rect = panel.table.visualItemRect(panel.table.item(1, 1))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    k, j, i = (int(round(c)) for c in f2.center_index)
    assert window.viewer.views["axial"].slice_index == k
    assert window.viewer.views["coronal"].slice_index == j and window.viewer.views["sagittal"].slice_index == i
    axial = window.viewer.views["axial"]
    assert f2.id in axial.visible_markers()
    centre = axial.view_box.viewRect().center()
    x, y = axial.geometry.pixel_to_mm(j, i)
    assert abs(centre.x() - x) < 2.0 and abs(centre.y() - y) < 2.0
    expected = [s for s in SPHERES if abs(s[0][0] - k) <= 2 and abs(s[0][1] - j) <= 2 and abs(s[0][2] - i) <= 2]
    assert expected, f"finding centre {(k, j, i)} is not at a sphere"
    # Accept / Reject / note are stored on the Finding objects
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert f2.status is ReviewStatus.ACCEPTED and panel.row_texts(1)[5] == "accepted"
    assert axial.markers[1].colour == "#40e040"
    qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton)
    assert f2.status is ReviewStatus.REJECTED
    panel.note_edit.setText("calcified granuloma")
    panel.note_edit.editingFinished.emit()
    assert f2.note == "calcified granuloma" and panel.row_texts(1)[6] == "calcified granuloma"
    # keyboard next / previous (N / P) step through the visible findings
    window.viewer.active_view.setFocus()
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_N)
    assert panel.selected() is not f2
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_P)
    assert panel.selected() is f2
    # threshold above every finding: rows and outlines hidden
    panel.threshold_slider.setValue(100)
    if all(f.confidence < 1.0 for f in det_res.findings):
        assert panel.visible_findings() == [] and axial.markers == []
        assert all(panel.table.isRowHidden(r) for r in range(panel.table.rowCount()))
    panel.threshold_slider.setValue(0)
    assert len(axial.markers) == len(det_res.findings)
    # H toggles the heat map, opacity slider restyles it
    window.viewer.set_slice(k, "axial")
    assert axial.overlay_visible
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_H)
    assert not axial.overlay_visible and not ctl.overlay_controls.visible
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_H)
    assert axial.overlay_visible
    ctl.overlay_controls.set_opacity(0.8)
    assert axial._overlay_style[1] == pytest.approx(0.8)
    assert ctl.overlay_controls.colour_bar.ticks()[-1] == (1.0, "100%")
    # D: the viewer shows the denoised pixels (same slice), again D: the original
    den = record.result.denoised
    assert den is not None and not np.allclose(den.voxels, vol.voxels)
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_D)
    assert ctl.denoised_review.showing_denoised and axial.slice_index == k
    np.testing.assert_array_equal(axial.displayed_image(), den.voxels[k])
    assert axial._overlay is det_res.confidence and len(axial.markers) == len(det_res.findings)
    side = ctl.denoised_review
    np.testing.assert_array_equal(side.side_pixels(), vol.voxels[k])  # side view: the other version
    side.set_mode("difference")
    np.testing.assert_allclose(side.side_pixels(), den.voxels[k] - vol.voxels[k], atol=1e-4)
    np.testing.assert_array_equal(axial.displayed_image(), den.voxels[k])
    qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_D)
    assert not side.showing_denoised
    np.testing.assert_array_equal(axial.displayed_image(), vol.voxels[k])
    assert window.viewer.volume.voxels is vol.voxels  # the source pixels were never altered
    # strength 50 %: half the removed noise put back, computed on a worker; main view, side view
    # (difference) and the export follow; detection is not rerun
    assert side.show_denoised(True) and side.mode == "difference"
    side.request_strength(0.5)
    qtbot.waitUntil(lambda: side.strength == 0.5, timeout=10000)
    half = vol.voxels[k] + 0.5 * (den.voxels[k] - vol.voxels[k])
    np.testing.assert_allclose(axial.displayed_image(), half, atol=1e-3)
    np.testing.assert_allclose(side.side_pixels(), half - vol.voxels[k], atol=1e-3)
    assert side.denoised.metadata.series_description.endswith("[AI denoised 50 %]")
    assert "50 %" in side.caption.text() and ctl.current.result.detection is det_res
    dialog = ctl.open_export_dialog()
    assert dialog is not None and dialog.denoised is side.denoised
    assert dialog.format_checks["denoised"].text() == "Denoised series (DICOM, strength 50 %)"
    dialog.close()
    side.request_strength(0.7)  # then 100 % at once: the slower 70 % must not win
    side.request_strength(1.0)
    qtbot.wait(300)
    assert side.strength == 1.0 and side.strength_combo.currentData() == 1.0
    np.testing.assert_array_equal(axial.displayed_image(), den.voxels[k])
    assert dialog.denoised is side.denoised and dialog.format_checks["denoised"].text() == "Denoised series (DICOM)"
    side.show_denoised(False)
    assert window.viewer.volume.voxels is vol.voxels
    assert messages == []


def test_denoising_strength_is_remembered_for_later_analyses(window, qtbot, messages, oracle):
    from medviewer.gui.analysis import STRENGTH_SETTING

    vol = sphere_volume()
    window.set_volume(vol)
    ctl = controller(window)
    record = run_analyze(window, qtbot)
    side = ctl.denoised_review
    assert side.strength == 1.0 and ctl.preferred_strength() == 1.0
    side.request_strength(0.7)
    qtbot.waitUntil(lambda: side.strength == 0.7, timeout=10000)
    assert float(window.settings.value(STRENGTH_SETTING)) == 0.7
    record = run_analyze(window, qtbot)  # the next analysis opens at the reader's level
    qtbot.waitUntil(lambda: side.denoised is not record.result.denoised and side.strength == 0.7, timeout=10000)
    den = record.result.denoised
    np.testing.assert_allclose(side.denoised.voxels, vol.voxels + 0.7 * (den.voxels - vol.voxels), atol=1e-3)
    assert side.strength_combo.currentData() == 0.7 and record.result.detection.denoiser is not None
    window.settings.setValue(STRENGTH_SETTING, "2.5")  # not a level the viewer offers
    assert ctl.preferred_strength() == 1.0
    assert messages == []


def test_results_stay_with_their_series(window, qtbot, messages, oracle):
    a = sphere_volume(uid="1.2.826.0.1.3680043.8.498.1001")
    window.set_volume(a)
    ctl = controller(window)
    ctl.act_denoise.setChecked(False)
    record = run_analyze(window, qtbot)
    n = len(record.result.detection.findings)
    assert n >= 2 and record.result.denoised is None
    ctl.findings_panel.select_finding(1)
    ctl.findings_panel.set_status_selected("accepted")
    ctl.findings_panel.set_threshold(0.2)
    b = sphere_volume(uid="1.2.826.0.1.3680043.8.498.1002", seed=3)
    window.set_volume(b)
    assert ctl.findings_panel.table.rowCount() == 0 and ctl.current is None
    assert window.viewer.views["axial"]._overlay is None and window.viewer.views["axial"].markers == []
    assert not ctl.act_export.isEnabled()
    # re-opening series A (a new Volume object, same UID) shows its results and the review again
    window.set_volume(sphere_volume(uid="1.2.826.0.1.3680043.8.498.1001"))
    assert ctl.findings_panel.table.rowCount() == n
    assert ctl.findings_panel.row_texts(0)[5] == "accepted" and ctl.findings_panel.threshold == pytest.approx(0.2)
    assert window.viewer.views["axial"]._overlay is record.result.detection.confidence
    assert ctl.act_export.isEnabled() and messages == []


def test_second_analyze_refused_and_cancel_stops_quickly(window, qtbot, messages, models, monkeypatch):
    seen = slow_pipeline(monkeypatch)
    window.set_volume(sphere_volume())
    ctl = controller(window)
    refusals: list[str] = []
    ctl.analysis_refused.connect(refusals.append)
    assert ctl.analyze()
    qtbot.waitUntil(lambda: window.progress_bar.isVisible() and window.progress_bar.value() > 0, timeout=5000)
    assert "detect" in window.statusBar().currentMessage()
    assert not ctl.analyze()
    assert refusals and "already running" in refusals[0] and messages == []
    assert ctl.act_cancel.isEnabled()
    with qtbot.waitSignal(ctl.analysis_cancelled, timeout=3000):
        t0 = time.perf_counter()
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert seen and seen[0] - t0 < 1.0
    qtbot.waitUntil(lambda: not window.runner.is_busy("analyze"), timeout=1000)
    assert time.perf_counter() - t0 < 1.5
    assert not window.progress_bar.isVisible() and messages == []
    # the app stays usable: scroll, and a real analysis runs afterwards
    monkeypatch.undo()
    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(models))
    window.viewer.scroll_slices(1)
    record = run_analyze(window, qtbot)
    assert record.result.detection.model.version == "0.0.0-test"


def test_cancel_real_pipeline_within_a_second(window, qtbot, messages, models):
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 50, (48, 384, 384)).astype(np.float32), spacing=(2.5, 0.7, 0.7),
                 metadata=VolumeMetadata(modality="CT", series_uid="1.2.3.9"))
    window.set_volume(vol)
    ctl = controller(window)
    ctl.act_denoise.setChecked(False)
    det.load_detector()  # loading the weights is not what we time
    started: list[float] = []
    window.progress_bar.valueChanged.connect(lambda v: started.append(time.perf_counter()) if v >= 80 and not started else None)
    assert ctl.analyze()
    qtbot.waitUntil(lambda: bool(started), timeout=30000)
    with qtbot.waitSignal(ctl.analysis_cancelled, timeout=2000):
        t0 = time.perf_counter()
        ctl.act_cancel.trigger()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=2000)
    assert time.perf_counter() - t0 < 1.0
    assert ctl.current is None and window.viewer.views["axial"]._overlay is None and messages == []


def test_missing_weights_show_a_model_error_dialog(window, qtbot, messages, tmp_path, monkeypatch):
    from medviewer.ai import denoise as dn

    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(tmp_path / "no-models"))
    dn.clear_cache()
    det._CACHE.clear()
    window.set_volume(sphere_volume())
    ctl = controller(window)
    with qtbot.waitSignal(ctl.analysis_failed, timeout=30000) as blocker:
        assert ctl.analyze()
    assert "not found" in blocker.args[0]
    assert messages and messages[-1][0] == "critical" and messages[-1][1] == "Analysis failed"
    assert "medviewer train" in messages[-1][2]
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=2000)
    assert not window.progress_bar.isVisible() and ctl.findings_panel.table.rowCount() == 0
    window.viewer.scroll_slices(2)  # still usable
    assert window.viewer.active_view.slice_index == sphere_volume().shape[0] // 2 + 2


def test_model_that_raises_shows_error_and_app_stays_usable(window, qtbot, messages, oracle, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    window.set_volume(sphere_volume())
    ctl = controller(window)
    ctl.act_denoise.setChecked(False)
    with monkeypatch.context() as m:
        m.setattr(det, "detect_lesions", broken)
        with qtbot.waitSignal(ctl.analysis_failed, timeout=30000):
            assert ctl.analyze()
    assert messages[-1][1] == "Analysis failed" and "RuntimeError: CUDA error" in messages[-1][2]
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=2000)
    record = run_analyze(window, qtbot)  # the next Analyze works
    assert len(record.result.detection.findings) >= 2 and len(messages) == 1


def test_close_during_analysis_exits_cleanly(qapp, qtbot, no_leaks, gui_settings, messages, models, monkeypatch, capfd):
    from medviewer.gui.main_window import MainWindow

    seen = slow_pipeline(monkeypatch)
    w = MainWindow()
    w.show()
    w.set_volume(sphere_volume())
    assert controller(w).analyze()
    handle = w.runner.current("analyze")
    assert handle is not None
    qtbot.waitUntil(lambda: w.progress_bar.value() > 0, timeout=5000)
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 2.0 and seen
    assert not w.runner.is_busy() and handle.qthread.isFinished()
    w.deleteLater()
    flush_deletes()
    qtbot.wait(50)
    err = capfd.readouterr().err
    assert "QThread" not in err and "Destroyed while thread" not in err
    assert messages == []


def test_event_loop_stall_while_analysis_runs(window, qtbot, messages, models, record_property):
    """The GUI thread keeps ticking while the real pipeline (denoise + detect) runs (target <= 50 ms)."""
    rng = np.random.default_rng(1)
    vol = Volume((40 + rng.normal(0, 30, (32, 256, 256))).astype(np.float32), spacing=(2.5, 0.7, 0.7),
                 metadata=VolumeMetadata(modality="CT", series_uid="1.2.3.10"))
    window.set_volume(vol)
    ctl = controller(window)
    det.load_detector()
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QtCore.QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    with qtbot.waitSignal(ctl.analysis_finished, timeout=120000):
        assert ctl.analyze()
        last[0] = time.perf_counter()
        timer.start()
    timer.stop()
    worst = max(gaps) * 1000
    record_property("worst_stall_ms", round(worst, 1))
    print(f"\nworst event-loop gap while analysing: {worst:.1f} ms over {len(gaps)} ticks")
    # generous bound for a loaded 2-core CI machine; benchmarks/analyze_stall.py measures the 50 ms target
    assert worst < 400, f"GUI stalled {worst:.0f} ms"
    assert messages == []


@pytest.fixture(scope="session")
def demo_folder() -> Path:
    demo = pytest.importorskip("medviewer.training.demo")
    return Path(demo.ensure_demo_study())


@pytest.mark.slow
def test_analyze_on_the_demo_study(window, qtbot, messages, demo_folder, tmp_models, monkeypatch):
    """The real demo study: shipped models when present, else test weights with the bright-lesion oracle."""
    from medviewer.ai.weights import weights_path
    from medviewer.resources import models_dir

    shipped = weights_path("detector", models_dir()).is_file()
    if not shipped:
        monkeypatch.setenv("MEDVIEWER_RESOURCES", str(tmp_models))
        monkeypatch.setattr(det, "predict_maps", _oracle_maps)
    det._CACHE.clear()
    with qtbot.waitSignal(window.series_loaded, timeout=60000) as blocker:
        window.open_path(str(demo_folder / "normal_dose"))
    volume = blocker.args[1]
    assert volume.shape[0] >= 40 and volume.metadata.modality == "CT"
    ctl = controller(window)
    # the whole pipeline (denoise, then detect) when both shipped models are present
    denoise = shipped and weights_path("denoiser", models_dir()).is_file()
    ctl.act_denoise.setChecked(denoise)
    record = run_analyze(window, qtbot, timeout=180000)
    if denoise:
        den = record.result.denoised
        assert den is not None and den.shape == volume.shape
        k = window.viewer.views["axial"].slice_index
        qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_D)
        np.testing.assert_array_equal(window.viewer.views["axial"].displayed_image(), den.voxels[k])
        qtbot.keyClick(window.viewer.active_view, Qt.Key.Key_D)
        np.testing.assert_array_equal(window.viewer.views["axial"].displayed_image(), volume.voxels[k])
    findings = record.result.detection.findings
    panel = ctl.findings_panel
    assert panel.table.rowCount() == len(findings) and messages == []
    assert window.viewer.views["axial"]._overlay is record.result.detection.confidence
    panel.set_threshold(0.0)
    assert findings, "no finding on the demo study"
    target = findings[0]
    panel.select_finding(target.id)
    assert window.viewer.views["axial"].slice_index == int(round(target.center_index[0]))
    assert target.id in window.viewer.views["axial"].visible_markers()
    panel.set_status_selected(ReviewStatus.REJECTED)
    assert target.status is ReviewStatus.REJECTED
