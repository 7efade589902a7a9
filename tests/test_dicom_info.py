"""`medviewer info PATH [--json]` on pydicom's sample data and synthetic series."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom.data
import pytest

from medviewer.cli import main
from medviewer.dicom.synthetic import write_series

TEST_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning:pydicom")]


def test_info_prints_a_tree_of_pydicom_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(TEST_FILES)]) == 0
    out = capsys.readouterr().out
    assert "Patient CompressedSamples^CT1" in out
    assert "Series 1 CT '' (CT Image): 1 images, 1 x 128 x 128, spacing 5 x 0.661 x 0.661 mm" in out
    assert "(RT Plan): 2 file(s), not viewable: no pixel data (RT Plan)" in out
    assert "(Segmentation): 2 file(s), not viewable: segmentation" in out
    assert "(RT Dose): 49 images, 15 x 10 x 10" in out
    assert "Files not used" in out and "README.txt: not a DICOM file" in out
    assert "DICOMDIR: DICOMDIR index" in out


def test_info_json_is_valid_and_complete(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", n_slices=5, rows=16, columns=16)
    (tmp_path / "notes.txt").write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "medviewer", "info", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (study,) = data["studies"]
    assert study["patient_name"] == "Phantom^Synthetic"
    (series,) = study["series"]
    assert series["modality"] == "CT" and series["images"] == 5 and series["viewable"] is True
    assert series["slices"] == 5 and series["rows"] == 16 and series["spacing_mm"][0] == pytest.approx(2.5)
    assert series["volume_bytes"] == 5 * 16 * 16 * 4
    assert data["skipped"] == [{"path": str(tmp_path / "notes.txt"), "reason": "not a DICOM file"}]


def test_info_json_on_all_pydicom_test_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(TEST_FILES), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    series = [s for st in data["studies"] for s in st["series"]]
    assert len(series) > 40
    assert all(s["viewable"] or s["reason"] for s in series)
    kinds = {s["kind"] for s in series}
    assert {"CT Image", "RT Plan", "RT Structure Set", "Segmentation"} <= kinds
    assert all(item["reason"] for item in data["skipped"])


def test_info_on_nothing_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 1
    assert "No DICOM studies found." in capsys.readouterr().out
