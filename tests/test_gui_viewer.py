"""Slice views and viewer interaction (pytest-qt, offscreen): scroll, W/L, presets, layouts, tools."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402
from test_gui_support import (  # noqa: E402,F401
    gui_settings,
    messages,
    mouse_drag,
    no_leaks,
    synthetic_volume,
    view_point,
    wheel,
    window,
)

from medviewer.viewing import apply_window, ellipse_mask, extract_slice, plane_geometry  # noqa: E402
from medviewer.volume import Volume, VolumeMetadata  # noqa: E402

Qt = QtCore.Qt


@pytest.fixture
def shown(window, qtbot):
    vol = synthetic_volume()
    window.set_volume(vol)
    qtbot.wait(20)
    return window, vol, window.viewer.views["axial"]


def _levels(view):
    return tuple(float(x) for x in view.image_item.getLevels())


def test_volume_shows_middle_slice_with_file_window_and_corner_text(shown):
    window, vol, view = shown
    assert view.slice_index == vol.n_slices // 2
    np.testing.assert_array_equal(view.image_item.image, vol.voxels[view.slice_index])
    assert view.image_item.image.flags.c_contiguous and view.image_item.image.dtype == np.float32
    assert _levels(view) == (50 - 175, 50 + 175)
    text = view.corner_text()
    assert "Test Patient" in text["tl"] and "P123" in text["tl"] and "2024-01-02" in text["tl"]
    assert "synthetic" in text["tr"] and "Se 3" in text["tr"]
    assert f"Im {view.slice_index + 1}/{vol.n_slices}" in text["bl"]
    assert f"Pos {vol.slice_position_mm(view.slice_index):.1f} mm" in text["bl"]
    assert "Thk 2.50 mm" in text["bl"]
    assert "W 350 L 50" in text["br"] and "Zoom" in text["br"]
    assert view.edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_wheel_keys_scroll_slices(shown, qtbot):
    window, vol, view = shown
    k = view.slice_index
    wheel(view, -1)  # towards the user: next slice
    assert view.slice_index == k + 1
    wheel(view, 2)
    assert view.slice_index == k - 1
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.slice_index == k
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert view.slice_index == k - 1
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert view.slice_index == k - 1 + max(1, vol.n_slices // 10)
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.slice_index == 0
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert view.slice_index == 0  # clipped
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert view.slice_index == vol.n_slices - 1
    np.testing.assert_array_equal(view.image_item.image, vol.voxels[-1])
    assert f"Im {vol.n_slices}/{vol.n_slices}" in view.corner_text()["bl"]


def test_left_drag_changes_window_right_drag_zooms_middle_drag_pans(shown, qtbot):
    window, vol, view = shown
    p0 = QtCore.QPoint(view.width() // 2, view.height() // 2)
    mouse_drag(qtbot, view, p0, p0 + QtCore.QPoint(60, 0), Qt.MouseButton.LeftButton)
    assert window.viewer.window_width > 350 and window.viewer.window_center == pytest.approx(50)
    w = window.viewer.window_width
    mouse_drag(qtbot, view, p0, p0 + QtCore.QPoint(0, 40), Qt.MouseButton.LeftButton)
    assert window.viewer.window_center > 50 and window.viewer.window_width == pytest.approx(w)
    c, w = window.viewer.window_center, window.viewer.window_width
    assert _levels(view) == pytest.approx((c - w / 2, c + w / 2))
    assert f"W {w:.0f} L {c:.0f}" in view.corner_text()["br"]

    z0 = view.zoom
    mouse_drag(qtbot, view, p0, p0 + QtCore.QPoint(0, -60), Qt.MouseButton.RightButton)
    assert view.zoom > z0 * 1.3
    assert f"Zoom {view.zoom:.2f}x" in view.corner_text()["br"]
    r0 = view.view_box.viewRect()
    mouse_drag(qtbot, view, p0, p0 + QtCore.QPoint(40, 30), Qt.MouseButton.MiddleButton)
    r1 = view.view_box.viewRect()
    assert r1.x() < r0.x() and r1.y() < r0.y()  # image follows the mouse
    assert r1.width() == pytest.approx(r0.width())

    z1 = view.zoom
    wheel(view, 1, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom == pytest.approx(z1 * 1.25, rel=1e-3)
    assert view.slice_index == vol.n_slices // 2  # Ctrl+wheel zooms, does not scroll


def test_preset_keys_invert_and_reset(shown, qtbot):
    window, vol, view = shown
    expected = {"1": (40, 400), "2": (-600, 1500), "3": (90, 150), "4": (480, 2500), "5": (40, 80)}
    for key, (c, w) in expected.items():
        qtbot.keyClick(view, key)
        assert (window.viewer.window_center, window.viewer.window_width) == (c, w)
        assert _levels(view) == (c - w / 2, c + w / 2)
    qtbot.keyClick(view, "0")
    assert (window.viewer.window_center, window.viewer.window_width) == (50, 350)

    qtbot.keyClick(view, "i")
    assert window.viewer.invert and window.act_invert.isChecked()
    assert _levels(view) == (50 + 175, 50 - 175)  # swapped levels: high values dark
    view.image_item.render()
    q = view.image_item.qimage
    k = view.slice_index
    for r, c in [(0, 0), (10, 20), (40, 70)]:  # shown = inverted window of the value
        expected = int(apply_window(vol.voxels[k, r, c : c + 1], 50, 350, invert=True)[0])
        assert abs(q.pixelColor(c, r).value() - expected) <= 1
    assert "INV" in view.corner_text()["br"]

    qtbot.keyClick(view, "2")
    view.zoom_by(3.0)
    qtbot.keyClick(view, "r")
    assert not window.viewer.invert
    assert _levels(view) == (50 - 175, 50 + 175)
    assert (window.viewer.window_center, window.viewer.window_width) == (50, 350)
    rect = view.view_box.viewRect()
    w_mm, h_mm = view.geometry.size_mm
    assert rect.width() >= w_mm - 1e-6 and rect.height() >= h_mm - 1e-6  # whole image fits again


def test_layout_1x3_mpr_aspect_letters_and_linked_crosshair(shown, qtbot):
    window, vol, view = shown
    qtbot.keyClick(view, "3", Qt.KeyboardModifier.ControlModifier)
    assert window.viewer.layout_name == "1x3" and window.act_layouts["1x3"].isChecked()
    views = window.viewer.views
    qtbot.waitUntil(lambda: all(v.isVisible() for v in views.values()))
    cor, sag = views["coronal"], views["sagittal"]
    z, y, x = vol.shape
    sz, sy, sx = vol.spacing
    assert cor.image_item.image.shape == (z, x) and sag.image_item.image.shape == (z, y)
    rect = cor.image_item.mapRectToParent(cor.image_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((x * sx, z * sz))  # aspect from spacing
    assert cor.edge_letters() == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert sag.edge_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    np.testing.assert_array_equal(cor.image_item.image, vol.voxels[::-1, cor.slice_index, :])

    # scrolling axial moves the horizontal crosshair line in the coronal view
    view.set_slice(3)
    assert window.viewer.crosshair_index[0] == 3
    g = cor.geometry
    _, r, _ = g.index_to_display(window.viewer.crosshair_index)
    assert cor._hline.value() == pytest.approx(g.pixel_to_mm(r, 0)[1])
    # Shift+click in the axial view moves the coronal and sagittal slices there
    target = view_point(view, *view.geometry.pixel_to_mm(10, 20))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, target)
    assert (cor.slice_index, sag.slice_index) == (10, 20)
    assert window.viewer.crosshair_index == pytest.approx((3, 10, 20))

    qtbot.keyClick(view, "1", Qt.KeyboardModifier.ControlModifier)
    assert window.viewer.layout_name == "1x1"
    assert cor.isHidden() and sag.isHidden() and not view.isHidden()


def test_ruler_reads_length_in_mm(shown, qtbot):
    window, vol, view = shown
    g = view.geometry
    qtbot.keyClick(view, "l")
    assert window.viewer.tool == "ruler"
    view.zoom_by(1.0)
    p0 = view_point(view, *g.pixel_to_mm(10, 10))
    p1 = view_point(view, *g.pixel_to_mm(50, 70))
    mouse_drag(qtbot, view, p0, p1, Qt.MouseButton.LeftButton)
    assert len(window.viewer.measurements) == 1
    ruler = window.viewer.measurements[0]
    expected = math.hypot(40 * 0.7, 60 * 0.9)  # 40 rows x 0.7 mm, 60 columns x 0.9 mm
    assert ruler.length_mm == pytest.approx(expected, abs=0.5)
    assert window.measurements_panel.texts() == [ruler.description()]
    assert f"{ruler.length_mm:.1f} mm" in ruler.description()
    # exact placement through the API
    exact = view.measure("ruler", g.pixel_to_mm(20, 5), g.pixel_to_mm(20, 55))
    assert exact.length_mm == pytest.approx(45.0, abs=1e-6)
    # measurements stay on their slice
    view.scroll_slices(1)
    assert not ruler.roi.isVisible()
    view.scroll_slices(-1)
    assert ruler.roi.isVisible()
    # delete from the list
    window.measurements_panel.list.setCurrentRow(0)
    window.measurements_panel.delete_selected()
    assert window.viewer.measurements == [exact]
    assert ruler.roi.scene() is None
    assert len(window.measurements_panel.texts()) == 1


def test_ellipse_roi_mean_equals_numpy(shown, qtbot):
    window, vol, view = shown
    qtbot.keyClick(view, "e")
    p0 = view_point(view, 12.3, 8.1)
    p1 = view_point(view, 40.7, 30.2)
    mouse_drag(qtbot, view, p0, p1, Qt.MouseButton.LeftButton)
    roi = window.viewer.measurements[-1]
    assert roi.kind == "ellipse"
    r0, c0, r1, c1 = roi.bounds_px()
    img = vol.voxels[view.slice_index]
    rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]] + 0.5
    inside = ((rr - (r0 + r1) / 2) / ((r1 - r0) / 2)) ** 2 + ((cc - (c0 + c1) / 2) / ((c1 - c0) / 2)) ** 2 <= 1
    assert inside.sum() > 50
    assert roi.stats.mean == pytest.approx(float(img[inside].astype(np.float64).mean()), rel=1e-6)
    assert roi.stats.sd == pytest.approx(float(img[inside].astype(np.float64).std()), rel=1e-6)
    assert roi.stats.minimum == pytest.approx(float(img[inside].min()))
    assert roi.stats.maximum == pytest.approx(float(img[inside].max()))
    assert roi.stats.area_mm2 == pytest.approx(math.pi * (r1 - r0) / 2 * 0.7 * (c1 - c0) / 2 * 0.9)
    assert "mean" in window.measurements_panel.texts()[-1]
    # dragging a handle recomputes
    roi.roi.setSize((10.0, 10.0))
    mask = ellipse_mask(img.shape, roi.bounds_px())
    assert roi.stats.mean == pytest.approx(float(img[mask].astype(np.float64).mean()), rel=1e-6)
    assert "mean" in window.measurements_panel.texts()[-1]


def test_value_under_cursor_in_status_bar(shown, qtbot):
    window, vol, view = shown
    g = view.geometry
    p = view_point(view, *g.pixel_to_mm(30, 40))
    qtbot.mouseMove(view.viewport(), p)
    qtbot.waitUntil(lambda: window.cursor_label.text() != "")
    k = view.slice_index
    value = vol.voxels[k, 30, 40]
    assert f"(40, 30, {k})" in window.cursor_label.text()
    assert f"{value:.0f} HU" in window.cursor_label.text()


def test_overlay_and_markers_on_all_planes(shown, qtbot):
    window, vol, view = shown
    viewer = window.viewer
    viewer.set_layout("1x3")
    heat = np.zeros(vol.shape, np.float32)
    heat[8:14, 20:40, 30:50] = 0.9
    heat[8:14, 20:40, 30:35] = 0.2
    viewer.set_overlay(heat, colormap="hot", opacity=0.5, threshold=0.5)
    viewer.set_crosshair((10, 30, 40))
    for plane, v in viewer.views.items():
        assert v.overlay_item.isVisible()
        full = extract_slice(heat, v.geometry, v.slice_index)
        rows, cols = np.nonzero(full >= 0.5)  # only the visible part is drawn
        r0, c0, r1, c1 = v.overlay_region()
        assert (r0, c0, r1, c1) == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        np.testing.assert_array_equal(v.overlay_item.image, full[r0:r1, c0:c1])
        rect = v.overlay_item.mapRectToParent(v.overlay_item.boundingRect())
        g = v.geometry
        assert (rect.x(), rect.y()) == pytest.approx((c0 * g.col_spacing, r0 * g.row_spacing))
        assert (rect.width(), rect.height()) == pytest.approx(((c1 - c0) * g.col_spacing, (r1 - r0) * g.row_spacing))
        assert v.overlay_item.lut[int(0.2 * 255), 3] == 0 and v.overlay_item.lut[int(0.9 * 255), 3] == 128
    view.set_slice(2)  # no heat on this slice: nothing drawn
    assert not view.overlay_item.isVisible()
    view.set_slice(10)
    viewer.set_overlay_visible(False)
    assert not view.overlay_item.isVisible()
    viewer.set_overlay_visible(True)
    assert view.overlay_item.isVisible()
    with pytest.raises(ValueError, match="does not match"):
        viewer.set_overlay(np.zeros((2, 2, 2), np.float32))

    viewer.set_markers([("L1", (10.0, 30.0, 40.0), 10.0, "#1 91%", "#ff0000")])
    viewer.go_to((10.0, 30.0, 40.0))
    assert view.slice_index == 10 and view.visible_markers() == ["L1"]
    assert viewer.views["coronal"].visible_markers() == ["L1"]
    assert viewer.views["sagittal"].slice_index == 40
    ellipse, label = view._marker_items[0]
    assert ellipse.brush().style() == Qt.BrushStyle.NoBrush  # outline only
    assert label.textItem.toPlainText() == "#1 91%"
    view.set_slice(13)  # 3 slices x 2.5 mm = 7.5 mm > 5 mm radius
    assert view.visible_markers() == []
    viewer.set_overlay(None)
    assert not view.overlay_item.isVisible()


def test_cine_plays_and_stops(shown, qtbot):
    window, vol, view = shown
    k = view.slice_index
    window.fps_spin.setValue(60)
    qtbot.keyClick(view, "c")
    assert window.viewer.cine_playing and window.act_cine.isChecked()
    qtbot.waitUntil(lambda: view.slice_index >= k + 3, timeout=3000)
    qtbot.keyClick(view, "c")
    assert not window.viewer.cine_playing
    k2 = view.slice_index
    qtbot.wait(60)
    assert view.slice_index == k2


def test_rgb_and_single_image(window, qtbot):
    rgb = np.zeros((1, 30, 40, 3), np.uint8)
    rgb[0, :, :20, 0] = 255
    rgb[0, :, 20:, 2] = 200
    window.set_volume(Volume(rgb, spacing=(1.0, 0.5, 0.5), metadata=VolumeMetadata(modality="XC")))
    view = window.viewer.views["axial"]
    assert view.image_item.image.shape == (30, 40, 3)
    np.testing.assert_array_equal(view.image_item.image, rgb[0])
    assert "RGB" in view.corner_text()["br"]
    window.set_layout("1x3")  # a single image has no reformats
    assert window.viewer.layout_name == "1x1" and not window.act_layouts["1x3"].isEnabled()
    qtbot.keyClick(view, "i")
    np.testing.assert_array_equal(view.image_item.image, 255 - rgb[0])

    dx = Volume(np.linspace(0, 4095, 50 * 60, dtype=np.float32).reshape(1, 50, 60),
                spacing=(1.0, 0.2, 0.2), metadata=VolumeMetadata(modality="DX", invert_display=True, units=""))
    window.set_volume(dx)
    assert window.viewer.invert  # MONOCHROME1 shows inverted
    lo, hi = dx.default_window.center - dx.default_window.width / 2, dx.default_window.center + dx.default_window.width / 2
    assert _levels(view) == pytest.approx((hi, lo))
    assert view.geometry.n_slices == 1 and "Im 1/1" in view.corner_text()["bl"]


def test_replace_voxels_keeps_state(shown):
    window, vol, view = shown
    viewer = window.viewer
    view.set_slice(5)
    view.zoom_by(2.0)
    z = view.zoom
    heat = np.full(vol.shape, 0.7, np.float32)
    viewer.set_overlay(heat, "jet", 0.4, 0.1)
    m = view.measure("ellipse", (5.0, 5.0), (20.0, 20.0))
    viewer.replace_voxels(vol.voxels * 0 + 7.0, derived_from="test denoised")
    assert view.slice_index == 5 and view.zoom == pytest.approx(z)
    assert (view.image_item.image == 7.0).all()
    assert view.overlay_item.isVisible()
    assert m.stats.mean == pytest.approx(7.0) and m in view.measurements
    assert "test denoised" in view.corner_text()["tr"]


def test_shortcuts_dialog_is_not_modal(window, qtbot):
    qtbot.keyClick(window.viewer.views["axial"], Qt.Key.Key_F1)
    dlg = window._shortcuts_dialog
    assert dlg is not None and dlg.isVisible() and not dlg.isModal()
    keys = [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())]
    assert {"1", "2", "3", "4", "5", "0", "I", "R"} <= set(keys)


def test_plane_geometry_matches_view(shown):
    window, vol, view = shown
    assert view.geometry == plane_geometry(vol, "axial")
