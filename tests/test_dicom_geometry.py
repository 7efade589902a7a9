"""Slice order and geometry on synthetic series written with pydicom."""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.dicom import load, load_series, scan, scan_with_report
from medviewer.dicom.synthetic import phantom_slice, write_series
from medviewer.errors import CancelledError, TooLargeError

pytestmark = pytest.mark.timeout(60)


def _only_series(path: Path):
    studies = scan(path)
    assert len(studies) == 1 and len(studies[0].series) == 1
    return studies[0].series[0]


def _ipp(path: Path) -> np.ndarray:
    return np.asarray(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient, dtype=float)


def _assert_positions_match(volume, files_in_volume_order: list[Path]) -> None:
    for k, f in enumerate(files_in_volume_order):
        np.testing.assert_allclose(volume.index_to_patient((k, 0, 0)), _ipp(f), atol=1e-4)
        # and a voxel off the corner: column i=3, row j=2
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        ps = np.asarray(ds.PixelSpacing, float)
        expected = _ipp(f) + 3 * ps[1] * iop[:3] + 2 * ps[0] * iop[3:]
        np.testing.assert_allclose(volume.index_to_patient((k, 2, 3)), expected, atol=1e-4)


def test_shuffled_file_names_are_ordered_by_position(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=9, spacing=2.5, shuffle_names=True, seed=3)
    assert sorted(files) != files  # the names really are not in slice order
    vol = load_series(_only_series(tmp_path))
    assert vol.shape == (9, 32, 32)
    assert vol.spacing == pytest.approx((2.5, 0.7, 0.7))
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-9)
    for k in range(9):
        np.testing.assert_array_equal(vol.voxels[k], phantom_slice(32, 32, k).astype(np.float32) - 1024)
    _assert_positions_match(vol, files)
    md = vol.metadata
    assert md.units == "HU" and md.modality == "CT"
    assert md.sop_instance_uids == [pydicom.dcmread(f).SOPInstanceUID for f in files]
    assert md.source_files == [str(f) for f in files]
    assert len(md.headers) == 9 and all("PixelData" not in h for h in md.headers)
    assert [h.SOPInstanceUID for h in md.headers] == md.sop_instance_uids
    assert md.windows[0].center == 40 and md.windows[0].width == 400
    assert md.patient_name == "Phantom^Synthetic" and md.series_number == 1
    assert md.frame_of_reference_uid and md.study_uid and md.series_uid
    assert md.slice_thickness == pytest.approx(2.5)
    assert md.warnings == []


def test_instance_numbers_do_not_decide_the_order(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=6, instance_numbers=[5, 1, 6, 2, 4, 3])
    vol = load_series(_only_series(tmp_path))
    _assert_positions_match(vol, files)


def test_negative_z_direction(tmp_path: Path) -> None:
    positions = [(-100.0, -120.0, 50.0 - 3.0 * k) for k in range(7)]
    files = write_series(tmp_path, positions=positions, spacing=3.0)
    vol = load_series(_only_series(tmp_path))
    assert vol.spacing[0] == pytest.approx(3.0)
    # slice index follows the normal (+z): the file written last comes first
    _assert_positions_match(vol, files[::-1])
    np.testing.assert_array_equal(vol.voxels[0], phantom_slice(32, 32, 6).astype(np.float32) - 1024)
    assert vol.slice_position_mm(1) - vol.slice_position_mm(0) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "orientation, normal",
    [
        ((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (-1.0, 0.0, 0.0)),  # sagittal
        ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),  # coronal
        ((math.cos(0.3), math.sin(0.3), 0.0, 0.0, 0.0, -1.0), None),  # oblique
    ],
    ids=["sagittal", "coronal", "oblique"],
)
def test_sagittal_coronal_oblique(tmp_path: Path, orientation, normal) -> None:
    files = write_series(tmp_path, n_slices=5, spacing=1.5, orientation=orientation, origin=(10.0, -20.0, 30.0))
    vol = load_series(_only_series(tmp_path))
    iop = np.asarray(orientation)
    np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=1e-6)
    np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=1e-6)
    if normal is not None:
        np.testing.assert_allclose(vol.direction[:, 2], normal, atol=1e-6)
    assert vol.spacing[0] == pytest.approx(1.5)
    _assert_positions_match(vol, files)
    assert vol.metadata.warnings == []


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    study = pydicom.uid.generate_uid()
    write_series(tmp_path, n_slices=4, series_number=1, study_uid=study, seed=1, description="axial")
    write_series(tmp_path, n_slices=6, series_number=2, study_uid=study, seed=2, description="second")
    studies = scan(tmp_path)
    assert len(studies) == 1
    series = studies[0].series
    assert [(s.number, s.description, s.n_images) for s in series] == [(1, "axial", 4), (2, "second", 6)]
    assert [load_series(s).shape[0] for s in series] == [4, 6]
    assert load(tmp_path).shape[0] == 6  # the largest viewable series
    assert load(tmp_path, series_uid=series[0].series_uid).shape[0] == 4


def test_file_copied_twice_is_loaded_once(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=5)
    shutil.copy(files[2], tmp_path / "copy_of_slice.dcm")
    series = _only_series(tmp_path)
    assert series.n_files == 6
    vol = load_series(series)
    assert vol.shape[0] == 5
    assert any("duplicate" in w for w in vol.metadata.warnings)
    _assert_positions_match(vol, files)


def test_repeated_positions_become_sub_series(tmp_path: Path) -> None:
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    first = write_series(tmp_path, n_slices=5, series_uid=uid, study_uid=study, seed=1, name_prefix="a")
    second = write_series(
        tmp_path, n_slices=5, series_uid=uid, study_uid=study, seed=2, name_prefix="b", instance_numbers=range(6, 11)
    )
    series = _only_series(tmp_path)
    assert len(series.sub_series) == 2
    assert all(len(s.frames) == 5 for s in series.sub_series)
    vol = load_series(series)
    assert vol.shape[0] == 5
    assert any("repeated slice positions" in w for w in vol.metadata.warnings)
    _assert_positions_match(vol, first)
    _assert_positions_match(load_series(series.sub_series[1]), second)


def test_missing_slice_splits_into_consistent_blocks(tmp_path: Path) -> None:
    positions = [(0.0, 0.0, 2.0 * k) for k in range(8) if k != 5]  # z = 0..8, 12, 14
    files = write_series(tmp_path, positions=positions, spacing=2.0)
    series = _only_series(tmp_path)
    assert [len(s.frames) for s in series.sub_series] == [5, 2]
    vol = load_series(series)
    assert vol.shape[0] == 5 and vol.spacing[0] == pytest.approx(2.0)
    assert any("missing slices" in w for w in vol.metadata.warnings)
    assert any("sub-series" in w for w in vol.metadata.warnings)
    _assert_positions_match(vol, files[:5])
    tail = load_series(series.sub_series[1])
    _assert_positions_match(tail, files[5:])


def test_irregular_spacing_is_not_stacked_silently(tmp_path: Path) -> None:
    z = [0.0, 1.0, 2.0, 3.0, 4.0, 6.5, 9.0, 11.5, 14.0]  # 1 mm, then 2.5 mm
    files = write_series(tmp_path, positions=[(0.0, 0.0, v) for v in z])
    series = _only_series(tmp_path)
    blocks = [(len(s.frames), round(s.spacing[0], 3)) for s in series.sub_series]
    assert blocks == [(5, 1.0), (4, 2.5)]
    vol = load_series(series)
    assert vol.shape[0] == 5 and any("irregular" in w for w in vol.metadata.warnings)
    _assert_positions_match(load_series(series.sub_series[1]), files[5:])


def test_small_position_jitter_is_tolerated(tmp_path: Path) -> None:
    z = np.round(np.arange(12) * 0.625, 1)  # scanner rounding to 0.1 mm: gaps 0.6/0.7
    write_series(tmp_path, positions=[(0.0, 0.0, float(v)) for v in z])
    series = _only_series(tmp_path)
    assert series.sub_series == []
    vol = load_series(series)
    assert vol.shape[0] == 12 and vol.spacing[0] == pytest.approx((z[-1] - z[0]) / 11)


def test_mixed_image_sizes(tmp_path: Path) -> None:
    sizes = [(32, 32)] * 4 + [(24, 24)] * 2
    write_series(tmp_path, n_slices=6, sizes=sizes)
    series = _only_series(tmp_path)
    assert sorted((s.rows, len(s.frames)) for s in series.sub_series) == [(24, 2), (32, 4)]
    vol = load_series(series)
    assert vol.shape == (4, 32, 32)
    assert any("mixed image sizes" in w for w in vol.metadata.warnings)
    small = next(s for s in series.sub_series if s.rows == 24)
    assert load_series(small).shape == (2, 24, 24)


def test_gantry_tilt_keeps_exact_positions(tmp_path: Path) -> None:
    tilt = math.radians(15.0)
    step = 2.0
    positions = [(0.0, -100.0 + k * step * math.tan(tilt), 40.0 + k * step) for k in range(6)]
    files = write_series(tmp_path, positions=positions)
    series = _only_series(tmp_path)
    assert series.sub_series == []
    vol = load_series(series)
    assert any("gantry tilt" in w and "15.00" in w for w in vol.metadata.warnings)
    _assert_positions_match(vol, files)  # sheared affine: every voxel centre is exact
    assert abs(float(np.dot(vol.direction[:, 2], [0.0, 0.0, 1.0]))) < 0.99


def test_rle_series_equals_uncompressed(tmp_path: Path) -> None:
    write_series(tmp_path / "u", n_slices=4, seed=5)
    write_series(tmp_path / "r", n_slices=4, seed=5, rle=True)
    a = load_series(_only_series(tmp_path / "u"))
    b = load_series(_only_series(tmp_path / "r"))
    assert b.metadata.extra["transfer_syntaxes"] == [pydicom.uid.RLELossless]
    np.testing.assert_array_equal(a.voxels, b.voxels)


def test_non_trivial_rescale_matches_pydicom(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=3, slope=0.37, intercept=-1000.3)
    vol = load_series(_only_series(tmp_path))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ref = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        np.testing.assert_array_equal(vol.voxels[k], ref)


def test_zip_archive_and_single_files(tmp_path: Path) -> None:
    files = write_series(tmp_path / "series", n_slices=5)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, arcname=f"DICOM/{f.name}")
        zf.writestr("README.txt", "not dicom")
    report = scan_with_report(archive)
    assert [p.endswith("README.txt") for p, _ in report.skipped] == [True]
    from_zip = load_series(report.series[0])
    from_dir = load(tmp_path / "series")
    np.testing.assert_array_equal(from_zip.voxels, from_dir.voxels)
    assert from_zip.origin == from_dir.origin
    # a list of single files
    assert load([files[0], files[1]]).shape[0] == 2


def test_dicomdir(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    dicomdir = Path(get_testdata_file("DICOMDIR"))
    via_dicomdir = scan(dicomdir)
    via_folder = scan(dicomdir.parent)
    assert {s.study_uid for s in via_dicomdir} == {s.study_uid for s in via_folder if s.study_uid in
                                                   {t.study_uid for t in via_dicomdir}}
    n_files = sum(se.n_files for st in via_dicomdir for se in st.series)
    assert n_files >= 30
    viewable = [se for st in via_dicomdir for se in st.series if se.viewable]
    assert viewable and load_series(viewable[0]).n_slices >= 1


def test_monochrome1_is_flagged_for_inverted_display(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=2, modality="CR")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(f)
    vol = load(tmp_path)
    assert vol.metadata.invert_display and vol.metadata.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(vol.voxels[0], phantom_slice(32, 32, 0).astype(np.float32) - 1024)


def test_cancel_mid_load_and_mid_scan(tmp_path: Path) -> None:
    write_series(tmp_path, n_slices=40, rows=64, columns=64)
    series = _only_series(tmp_path)
    calls = {"n": 0}

    def cancel_after_a_few() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    seen: list[float] = []
    with pytest.raises(CancelledError):
        load_series(series, progress=lambda f, m: seen.append(f), cancel=cancel_after_a_few, workers=1)
    assert seen and max(seen) < 1.0
    calls["n"] = 0
    with pytest.raises(CancelledError):
        load_series(series, cancel=cancel_after_a_few, workers=2)
    calls["n"] = 0
    with pytest.raises(CancelledError):
        scan(tmp_path, cancel=cancel_after_a_few)
    # and without cancel it completes, reporting progress up to 1
    seen.clear()
    load_series(series, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0


def test_memory_budget_is_checked_before_decoding(tmp_path: Path) -> None:
    write_series(tmp_path, n_slices=4)
    series = _only_series(tmp_path)
    with pytest.raises(TooLargeError, match="memory budget"):
        load_series(series, memory_budget_bytes=4 * 32 * 32 * 4 - 1)
    assert load_series(series, memory_budget_bytes=4 * 32 * 32 * 4).shape == (4, 32, 32)


def test_two_reconstructions_in_one_series_split_by_kernel(tmp_path: Path) -> None:
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    soft = write_series(tmp_path, n_slices=4, series_uid=uid, study_uid=study, seed=1, name_prefix="s",
                        instance_numbers=[1, 3, 5, 7])
    bone = write_series(tmp_path, n_slices=4, series_uid=uid, study_uid=study, seed=2, name_prefix="b",
                        instance_numbers=[2, 4, 6, 8])
    for files, kernel in ((soft, "B30f"), (bone, "B70f")):
        for f in files:
            ds = pydicom.dcmread(f)
            ds.ConvolutionKernel = kernel
            ds.save_as(f)
    series = _only_series(tmp_path)
    assert [s.label.split(", ")[-1] for s in series.sub_series] == ["ConvolutionKernel=B30f", "ConvolutionKernel=B70f"]
    _assert_positions_match(load_series(series.sub_series[1]), bone)
