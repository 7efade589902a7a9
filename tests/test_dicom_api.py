"""Smaller API contracts of medviewer.dicom: budgets, value parsing, errors, kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medviewer.dicom import load, load_series, memory_budget, scan, scan_with_report, sop_class_kind
from medviewer.dicom.geometry import _floats, gap_tolerance
from medviewer.dicom.synthetic import write_series
from medviewer.dicom.values import value
from medviewer.errors import DicomError, NoPixelDataError

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::UserWarning:pydicom")]


def test_memory_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIEWER_MEMORY_BUDGET", "2G")
    assert memory_budget() == 2 * 2**30
    monkeypatch.setenv("MEDVIEWER_MEMORY_BUDGET", "1500")
    assert memory_budget() == 1500
    monkeypatch.setenv("MEDVIEWER_MEMORY_BUDGET", "nonsense")
    assert memory_budget() >= 256 * 2**20


def test_value_parses_raw_elements_like_pydicom(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    fresh = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    for kw in ("Rows", "Columns", "BitsStored", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
               "RescaleIntercept", "RescaleSlope", "SliceThickness", "InstanceNumber", "SOPInstanceUID", "Modality"):
        ours = value(ds, kw)
        theirs = fresh.get(kw)
        if isinstance(ours, list):
            assert ours == pytest.approx([float(v) for v in theirs]), kw
        elif isinstance(ours, float):
            assert ours == pytest.approx(float(theirs)), kw
        else:
            assert ours == theirs, kw
    assert value(ds, "WindowCenter", "absent") == "absent"


def test_value_survives_malformed_numbers() -> None:
    ds = pydicom.Dataset()
    elem = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(0x00200032), "DS", 8, b"1\\x\\3   ", 0, False, True)
    ds._dict[elem.tag] = elem  # a raw, unparsable position, as a fuzzed file would carry
    raw = value(ds, "ImagePositionPatient")  # does not raise; pydicom keeps the invalid strings
    assert [str(v) for v in raw] == ["1", "x", "3"]
    assert _floats(raw, 3) is None  # so the geometry treats the position as unknown


def test_gap_tolerance() -> None:
    assert gap_tolerance(5.0) == pytest.approx(0.25)
    assert gap_tolerance(0.625) == pytest.approx(0.105)
    assert gap_tolerance(0.2) == pytest.approx(0.05)


def test_sop_class_kinds() -> None:
    assert sop_class_kind(pydicom.uid.CTImageStorage) == "CT Image"
    assert sop_class_kind("1.2.840.10008.5.1.4.1.1.481.3") == "RT Structure Set"
    assert sop_class_kind("1.2.3.4", "XX") == "XX object"


def test_load_of_non_images_names_the_reason() -> None:
    with pytest.raises(NoPixelDataError, match="RT Plan"):
        load(get_testdata_file("rtplan.dcm"))
    series = scan(get_testdata_file("rtstruct.dcm"))[0].series[0]
    with pytest.raises(NoPixelDataError):
        load_series(series)


def test_load_of_missing_or_empty_paths(tmp_path: Path) -> None:
    report = scan_with_report(tmp_path / "nope")
    assert report.skipped == [(str(tmp_path / "nope"), "no such file or folder")]
    with pytest.raises(DicomError, match="no DICOM files found|nothing viewable"):
        load(tmp_path)
    with pytest.raises(DicomError, match="no series with SeriesInstanceUID"):
        load(get_testdata_file("CT_small.dcm"), series_uid="1.2.3")


def test_scan_reports_progress_to_one(tmp_path: Path) -> None:
    write_series(tmp_path, n_slices=20, rows=8, columns=8)
    seen: list[tuple[float, str]] = []
    scan(tmp_path, progress=lambda f, m: seen.append((f, m)))
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))


def test_headers_are_header_only_and_in_slice_order(tmp_path: Path) -> None:
    files = write_series(tmp_path, n_slices=4, rows=8, columns=8)
    vol = load(tmp_path)
    assert [h.ImagePositionPatient[2] for h in vol.metadata.headers] == sorted(
        pydicom.dcmread(f).ImagePositionPatient[2] for f in files
    )
    assert all("PixelData" not in h for h in vol.metadata.headers)
    assert vol.voxels.flags.c_contiguous and vol.voxels.dtype == np.float32


def test_special_files_do_not_hang_the_scan(tmp_path: Path) -> None:
    import os

    write_series(tmp_path, n_slices=2, rows=8, columns=8)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing.dcm")
    report = scan_with_report(tmp_path)
    assert len(report.series) == 1
    reasons = dict(report.skipped)
    assert reasons[str(tmp_path / "pipe")] == "not a regular file"
    assert reasons[str(tmp_path / "dangling")] == "not a regular file"


def test_prefaulted_output_array_behaves_like_a_normal_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle
    import sys

    load_module = sys.modules["medviewer.dicom.load"]  # the package's `load` attribute is the function

    write_series(tmp_path, n_slices=3, rows=16, columns=16)
    plain = load(tmp_path)
    monkeypatch.setattr(load_module, "_POPULATE_MIN_BYTES", 0)
    mapped = load(tmp_path)
    assert mapped.voxels.flags.writeable and mapped.voxels.flags.c_contiguous
    np.testing.assert_array_equal(mapped.voxels, plain.voxels)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mapped.voxels)), plain.voxels)
    mapped.voxels[0, 0, 0] = 123.0  # writable, independent of the source files
    assert plain.voxels[0, 0, 0] != 123.0


def test_allocator_tuning_is_the_apps_choice_not_the_loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_series leaves the process allocator alone; `medviewer` (CLI and GUI) tunes it once at start-up."""
    from medviewer import allocator, cli

    calls: list[str] = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append("tuned") or True)
    write_series(tmp_path / "s", n_slices=3, rows=16, columns=16)
    vol = load_series(scan(tmp_path / "s")[0].series[0])
    assert vol.shape == (3, 16, 16) and calls == []
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == ["tuned"]
