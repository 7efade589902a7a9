"""Tests of the DICOM series writer, the demo study and the phantom/demo commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.dicom import load, scan
from medviewer.dicom.write import write_series
from medviewer.errors import CancelledError, ExportError
from medviewer.training.demo import GROUND_TRUTH, LOW_DIR, NORMAL_DIR, ensure_demo_study, write_demo_study
from medviewer.volume import Volume, VolumeMetadata, WindowPreset

SMALL = {"shape": (6, 64, 64), "spacing": (5.0, 5.6, 5.6)}


def _volume() -> Volume:
    rng = np.random.default_rng(0)
    vox = rng.uniform(-1000, 1500, (4, 20, 24)).astype(np.float32)
    direction = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])  # slices advance inferiorly
    meta = VolumeMetadata(modality="CT", patient_name="TEST^ONE", patient_id="T1", slice_thickness=3.0,
                          windows=[WindowPreset(50.0, 350.0, "abdomen")])
    return Volume(vox, spacing=(2.5, 0.8, 0.6), origin=(-10.0, 20.0, 30.0), direction=direction, metadata=meta)


def test_write_series_round_trip(tmp_path: Path) -> None:
    vol = _volume()
    seen: list[float] = []
    files = write_series(vol, tmp_path / "s", series_description="round trip", series_number=7,
                         progress=lambda f, m: seen.append(f))
    assert [f.name for f in files] == [f"CT{k:05d}.dcm" for k in range(1, 5)] and seen[-1] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ds = pydicom.dcmread(files[1])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.SeriesNumber == 7 and ds.InstanceNumber == 2 and ds.PatientName == "TEST^ONE"
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-10.0, 20.0, 27.5])
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.8, 0.6])
    assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 2.5
    assert float(ds.WindowCenter) == 50.0 and float(ds.WindowWidth) == 350.0
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == 4
    back = load(tmp_path / "s")
    assert back.shape == vol.shape
    assert np.allclose(back.spacing, vol.spacing, atol=1e-4)
    # the loader orders slices along the orientation normal (+z here), so the
    # inferiorly advancing volume comes back flipped: compare in patient space
    assert np.allclose(back.origin, vol.index_to_patient((3, 0, 0)), atol=1e-4)
    assert np.allclose(back.index_to_patient((3, 5, 7)), vol.index_to_patient((0, 5, 7)), atol=1e-4)
    assert np.abs(back.voxels[::-1] - vol.voxels).max() <= 0.5 + 1e-3


def test_write_series_refuses_and_overwrites(tmp_path: Path) -> None:
    vol = _volume()
    target = tmp_path / "s"
    write_series(vol, target, series_description="first")
    with pytest.raises(ExportError, match="not empty"):
        write_series(vol, target, series_description="second")
    assert pydicom.dcmread(target / "CT00001.dcm").SeriesDescription == "first"
    write_series(vol, target, series_description="second", overwrite=True)
    assert pydicom.dcmread(target / "CT00001.dcm").SeriesDescription == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_write_series_cancel_and_extra_hook(tmp_path: Path) -> None:
    vol = _volume()
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        write_series(vol, tmp_path / "c", series_description="x", cancel=cancel)
    assert list(tmp_path.iterdir()) == []

    def hook(ds: pydicom.Dataset, k: int) -> None:
        ds.DerivationDescription = f"slice {k}"

    files = write_series(vol, tmp_path / "h", series_description="x", extra=hook)
    assert pydicom.dcmread(files[3]).DerivationDescription == "slice 3"
    with pytest.raises(ExportError, match="colour"):
        write_series(Volume(np.zeros((1, 4, 4, 3), np.uint8)), tmp_path / "rgb", series_description="x")


def test_deterministic_uids(tmp_path: Path) -> None:
    vol = _volume()
    a = write_series(vol, tmp_path / "a", series_description="x", uid_seed="seed")
    b = write_series(vol, tmp_path / "b", series_description="x", uid_seed="seed")
    c = write_series(vol, tmp_path / "c", series_description="x")
    assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
    assert pydicom.dcmread(a[0]).SOPInstanceUID != pydicom.dcmread(c[0]).SOPInstanceUID


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_study(tmp_path_factory.mktemp("demo") / "study", **SMALL)  # type: ignore[arg-type]


def test_demo_study_loads(demo: Path) -> None:
    truth = json.loads((demo / GROUND_TRUTH).read_text())
    studies = scan(demo)
    assert len(studies) == 1 and len(studies[0].series) == 2
    normal = load(demo / NORMAL_DIR)
    low = load(demo / LOW_DIR)
    assert normal.shape == low.shape == tuple(truth["shape_zyx"])
    assert np.allclose(normal.spacing, truth["spacing_zyx_mm"], atol=1e-4)
    assert np.allclose(normal.origin, truth["origin_lps_mm"], atol=1e-3)
    m1, m2 = normal.metadata, low.metadata
    assert m1.study_uid == m2.study_uid == truth["study_instance_uid"]
    assert m1.frame_of_reference_uid == m2.frame_of_reference_uid == truth["frame_of_reference_uid"]
    assert m1.series_uid != m2.series_uid
    assert len(truth["lesions"]) >= 4
    for les in truth["lesions"]:
        assert np.allclose(normal.index_to_patient(les["center_index"]), les["center_mm"], atol=1e-3)
    body = normal.voxels > -300
    assert np.std((low.voxels - normal.voxels)[body]) > 1.0  # the low-dose series is noisier


def test_demo_study_is_deterministic(demo: Path, tmp_path: Path) -> None:
    again = write_demo_study(tmp_path / "again", **SMALL)  # type: ignore[arg-type]
    files_a = sorted(p.relative_to(demo) for p in demo.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files_a == files_b
    assert all((demo / f).read_bytes() == (again / f).read_bytes() for f in files_a)
    with pytest.raises(ExportError):
        write_demo_study(again, **SMALL)  # type: ignore[arg-type]


def test_ensure_demo_study_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medviewer.training.demo as demo_mod

    monkeypatch.setenv("MEDVIEWER_CACHE", str(tmp_path))
    monkeypatch.setattr(demo_mod, "DEMO_SHAPE", SMALL["shape"])
    monkeypatch.setattr(demo_mod, "DEMO_SPACING", SMALL["spacing"])
    folder = ensure_demo_study()
    assert folder == tmp_path / "demo" and (folder / GROUND_TRUTH).exists()
    stamp = (folder / GROUND_TRUTH).stat().st_mtime_ns
    assert ensure_demo_study() == folder and (folder / GROUND_TRUTH).stat().st_mtime_ns == stamp
    (folder / GROUND_TRUTH).unlink()  # incomplete copy: rewritten
    assert (ensure_demo_study() / GROUND_TRUTH).exists()


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 0
    assert str(tmp_path / "d") in capsys.readouterr().out
    assert (tmp_path / "d" / NORMAL_DIR).is_dir()
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 2  # refuses a non-empty folder


def test_phantom_command(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    assert main(["phantom", "--preview", str(out), "--seed", "2", "--slices", "12", "--size", "96",
                 "--dicom", str(tmp_path / "dcm")]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    vol = load(tmp_path / "dcm")
    assert vol.shape == (12, 96, 96)
    assert "lesions" in json.loads((tmp_path / "dcm" / "lesions.json").read_text())
    assert main(["phantom"]) == 2
    head = tmp_path / "head.png"
    assert main(["phantom", "--region", "head", "--preview", str(head), "--seed", "3", "--slices", "12", "--size", "96",
                 "--lesions", "2", "--dicom", str(tmp_path / "head")]) == 0
    assert head.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hv = load(tmp_path / "head")
    assert hv.shape == (12, 96, 96) and abs(hv.spacing[2] - 0.45 * 512 / 96) < 1e-3
    assert float(hv.voxels.max()) > 900  # the skull
    assert all("nodule" not in les["kind"] for les in json.loads((tmp_path / "head" / "lesions.json").read_text())["lesions"])
