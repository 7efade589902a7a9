"""Qt-free display logic: planes, reslicing, orientation letters, windows, measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medviewer.viewing import (
    PRESET_KEYS,
    PRESETS,
    Marker,
    adjust_window,
    apply_window,
    ellipse_mask,
    ellipse_statistics,
    extract_slice,
    grey_lut,
    line_length_mm,
    make_thumbnail,
    marker_cross_section,
    middle_frame_series,
    orientation_letters,
    overlay_lut,
    plane_geometry,
    window_levels,
)
from medviewer.volume import Volume, VolumeMetadata, WindowPreset


def _vol(shape=(6, 7, 8), spacing=(2.5, 0.7, 0.9), direction=None) -> Volume:
    vox = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(vox, spacing=spacing, direction=np.eye(3) if direction is None else direction)


def test_presets_match_the_issue():
    assert PRESET_KEYS == ("soft tissue", "lung", "liver", "bone", "brain")
    got = [(PRESETS[k].width, PRESETS[k].center) for k in PRESET_KEYS]
    assert got == [(400, 40), (1500, -600), (150, 90), (2500, 480), (80, 40)]


@pytest.mark.parametrize(
    "vector, letters",
    [((1, 0, 0), "L"), ((-1, 0, 0), "R"), ((0, 1, 0), "P"), ((0, -1, 0), "A"), ((0, 0, 1), "S"), ((0, 0, -1), "I")],
)
def test_orientation_letters_lps(vector, letters):
    assert orientation_letters(vector) == letters


def test_orientation_letters_oblique_dominant_first():
    v = (math.cos(math.radians(30)), 0.0, -math.sin(math.radians(30)))  # mostly left, some inferior
    assert orientation_letters(v) == "LI"
    assert orientation_letters((0.99, 0.05, 0.0)) == "L"  # small tilt: one letter
    assert orientation_letters((0, 0, 0)) == ""


def test_axial_geometry_of_standard_axial_ct():
    g = plane_geometry(_vol(), "axial")
    assert (g.n_slices, g.n_rows, g.n_cols) == (6, 7, 8)
    assert (g.row_spacing, g.col_spacing, g.slice_spacing) == (0.7, 0.9, 2.5)
    assert g.edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert g.size_mm == pytest.approx((8 * 0.9, 7 * 0.7))


def test_coronal_and_sagittal_put_head_up_and_keep_aspect():
    v = _vol()
    cor = plane_geometry(v, "coronal")
    sag = plane_geometry(v, "sagittal")
    assert cor.edge_letters() == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert sag.edge_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert (cor.n_rows, cor.n_cols, cor.row_spacing, cor.col_spacing) == (6, 8, 2.5, 0.9)
    assert (sag.n_rows, sag.n_cols, sag.row_spacing, sag.col_spacing) == (6, 7, 2.5, 0.7)
    img = extract_slice(v.voxels, cor, 3)
    assert img.shape == (6, 8) and img.flags.c_contiguous
    # top row is the highest slice (towards S) because k runs towards S here
    np.testing.assert_array_equal(img[0], v.voxels[5, 3, :])
    np.testing.assert_array_equal(img[-1], v.voxels[0, 3, :])
    sag_img = extract_slice(v.voxels, sag, 2)
    np.testing.assert_array_equal(sag_img, v.voxels[::-1, :, 2])


def test_feet_first_series_is_not_flipped():
    d = np.diag([1.0, 1.0, -1.0])  # k runs towards the feet
    cor = plane_geometry(_vol(direction=d), "coronal")
    assert not cor.flip_rows
    assert cor.edge_letters()["top"] == "S"


def test_sagittal_acquisition_letters_come_from_direction_cosines():
    # rows along -z (I->... ), columns along +y (P), slices along +x (L): a sagittal acquisition
    d = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    g = plane_geometry(_vol(direction=d), "axial")
    assert g.edge_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_index_mapping_round_trips(plane):
    v = _vol()
    g = plane_geometry(v, plane)
    for kji in [(0, 0, 0), (5, 6, 7), (2, 3, 4)]:
        s, r, c = g.index_to_display(kji)
        assert g.display_to_index(s, r, c) == pytest.approx(kji)
        img = extract_slice(v.voxels, g, int(s))
        assert img[int(r), int(c)] == v.voxels[kji]
        x, y = g.pixel_to_mm(r, c)
        assert g.mm_to_pixel(x, y) == pytest.approx((r, c))


def test_extract_slice_clips_index_and_handles_rgb():
    rgb = np.zeros((3, 4, 5, 3), np.uint8)
    rgb[2, ..., 0] = 200
    v = Volume(rgb)
    g = plane_geometry(v, "axial")
    assert extract_slice(v.voxels, g, 99).shape == (4, 5, 3)
    assert extract_slice(v.voxels, g, 99)[0, 0, 0] == 200
    with pytest.raises(ValueError, match="unknown plane"):
        plane_geometry(v, "oblique")


def test_window_mapping_and_lut():
    assert window_levels(-600, 1500) == (-1350.0, 150.0)
    out = apply_window(np.array([-2000.0, -160.0, 40.0, 240.0, 3000.0]), 40, 400)
    assert out.tolist() == [0, 0, 128, 255, 255]
    assert apply_window(np.array([240.0]), 40, 400, invert=True).tolist() == [0]
    assert grey_lut().tolist() == list(range(256))
    assert grey_lut(True)[0] == 255 and grey_lut(True).dtype == np.uint8


def test_window_drag_directions():
    c, w = adjust_window(40, 400, dx=50, dy=0)
    assert w > 400 and c == 40
    c, w = adjust_window(40, 400, dx=0, dy=-50)
    assert c < 40 and w == 400
    c, w = adjust_window(40, 10, dx=-10_000, dy=0)
    assert w == 1.0


def test_ruler_length_uses_both_spacings():
    assert line_length_mm((0, 0), (3, 4), 1.0, 1.0) == 5.0
    assert line_length_mm((10, 10), (40, 10), 0.7, 0.9) == pytest.approx(21.0)
    assert line_length_mm((10, 10), (10, 60), 0.7, 0.9) == pytest.approx(45.0)


def test_ellipse_mask_matches_brute_force(rng):
    for _ in range(20):
        r0, c0 = rng.uniform(-3, 20, 2)
        r1, c1 = r0 + rng.uniform(0.5, 15), c0 + rng.uniform(0.5, 15)
        mask = ellipse_mask((25, 30), (r0, c0, r1, c1))
        rr, cc = np.mgrid[0:25, 0:30] + 0.5
        ref = ((rr - (r0 + r1) / 2) / ((r1 - r0) / 2)) ** 2 + ((cc - (c0 + c1) / 2) / ((c1 - c0) / 2)) ** 2 <= 1
        np.testing.assert_array_equal(mask, ref)


def test_ellipse_statistics_equal_numpy(rng):
    img = rng.normal(40, 25, (50, 60)).astype(np.float32)
    bounds = (10.2, 12.7, 30.9, 44.1)
    s = ellipse_statistics(img, bounds, 0.7, 0.9)
    vals = img[ellipse_mask(img.shape, bounds)]
    assert s.n_pixels == vals.size > 100
    assert s.mean == pytest.approx(float(vals.astype(np.float64).mean()))
    assert s.sd == pytest.approx(float(vals.astype(np.float64).std()))
    assert (s.minimum, s.maximum) == (pytest.approx(float(vals.min())), pytest.approx(float(vals.max())))
    assert s.area_mm2 == pytest.approx(math.pi * (20.7 / 2 * 0.7) * (31.4 / 2 * 0.9))
    assert "mean" in s.describe() and "mm²" in s.describe()
    empty = ellipse_statistics(img, (-10, -10, -5, -5), 1, 1)
    assert empty.n_pixels == 0 and math.isnan(empty.mean)


def test_overlay_lut_threshold_and_opacity():
    lut = overlay_lut("hot", opacity=0.6, threshold=0.3)
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert (lut[: int(0.3 * 255), 3] == 0).all()
    assert (lut[int(0.3 * 255) + 1 :, 3] == round(0.6 * 255)).all()
    assert overlay_lut("jet", 1.0, 0.0)[0, 3] == 0  # zero is never painted
    with pytest.raises(ValueError):
        overlay_lut("jet", 1.5, 0.0)
    with pytest.raises(ValueError, match="unknown colour map"):
        overlay_lut("no-such-map", 0.5, 0.0)


def test_marker_cross_section_only_on_covered_slices():
    v = Volume(np.zeros((40, 50, 60), np.float32), spacing=(2.0, 0.5, 0.5))
    m = Marker("3", (20.0, 25.0, 30.0), diameter_mm=12.0, label="#3 87%")
    ax = plane_geometry(v, "axial")
    covered = [k for k in range(40) if marker_cross_section(m, ax, k) is not None]
    assert covered == list(range(17, 24))  # |dk| * 2 mm <= 6 mm
    x, y, r = marker_cross_section(m, ax, 20)
    assert (x, y, r) == pytest.approx((30.5 * 0.5, 25.5 * 0.5, 6.0))
    cor = plane_geometry(v, "coronal")
    x, y, r = marker_cross_section(m, cor, 25)
    s, row, col = cor.index_to_display(m.center)
    assert (x, y) == pytest.approx(cor.pixel_to_mm(row, col)) and r == pytest.approx(6.0)
    assert marker_cross_section(m, cor, 25 + 13) is None  # 6.5 mm away


def test_thumbnail_keeps_aspect_and_window():
    vox = np.full((3, 40, 80), -1000.0, np.float32)
    vox[1, 10:30, 20:60] = 1000.0
    v = Volume(vox, spacing=(1.0, 1.0, 0.5), metadata=VolumeMetadata(windows=[WindowPreset(0, 2000)]))
    th = make_thumbnail(v, 64)
    assert th.shape == (64, 64) and th.dtype == np.uint8
    assert th.max() == 255 and th.min() == 0
    rgb = make_thumbnail(Volume(np.zeros((1, 10, 20, 3), np.uint8)), 32)
    assert rgb.shape == (16, 32, 3)


def test_middle_frame_series_reads_one_file(tmp_path):
    from medviewer.dicom import load_series, scan
    from medviewer.dicom.synthetic import write_series

    write_series(tmp_path, n_slices=7, rows=16, columns=16)
    series = scan(tmp_path)[0].series[0]
    one = middle_frame_series(series)
    assert len(one.frames) == 1 and series.n_images == 7 and len(series.frames) == 7
    full = load_series(series)
    mid = load_series(one)
    np.testing.assert_array_equal(mid.voxels[0], full.voxels[3])


def test_viewing_imports_without_qt():
    import subprocess
    import sys

    code = (
        "import sys, medviewer.viewing;"
        "bad=[m for m in sys.modules if m.startswith(('PySide6','pyqtgraph','medviewer.gui'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_letters_come_from_patient_orientation_when_geometry_is_missing():
    from pydicom.dataset import Dataset

    from medviewer.viewing import edge_letters_for, has_patient_geometry

    cr = Dataset()
    cr.PatientOrientation = ["L", "F"]
    v = Volume(np.zeros((1, 8, 8), np.float32), metadata=VolumeMetadata(headers=[cr]))
    assert not has_patient_geometry(v)
    assert edge_letters_for(v, plane_geometry(v, "axial")) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    us = Dataset()  # no geometry at all: no letters rather than invented ones
    v2 = Volume(np.zeros((1, 8, 8), np.float32), metadata=VolumeMetadata(headers=[us]))
    assert edge_letters_for(v2, plane_geometry(v2, "axial")) == {"left": "", "right": "", "top": "", "bottom": ""}
    ct = Dataset()
    ct.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    v3 = Volume(np.zeros((2, 8, 8), np.float32), metadata=VolumeMetadata(headers=[ct]))
    assert has_patient_geometry(v3)
    assert edge_letters_for(v3, plane_geometry(v3, "coronal"))["top"] == "S"


def test_pixel_spacing_calibration():
    from pydicom.dataset import Dataset

    from medviewer.viewing import has_pixel_spacing

    def vol(**kw):
        ds = Dataset()
        for k, v in kw.items():
            setattr(ds, k, v)
        return Volume(np.zeros((1, 4, 4), np.float32), metadata=VolumeMetadata(headers=[ds]))

    assert has_pixel_spacing(Volume(np.zeros((1, 4, 4), np.float32)))  # built in code
    assert has_pixel_spacing(vol(PixelSpacing=[0.7, 0.7]))
    assert has_pixel_spacing(vol(ImagerPixelSpacing=[0.1, 0.1]))
    assert not has_pixel_spacing(vol(PixelSpacing=[0, 0]))  # as in pydicom-data's RG1
    assert not has_pixel_spacing(vol())
