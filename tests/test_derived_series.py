"""Derived DICOM series writer and `medviewer denoise IN OUT`."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medviewer.ai import denoise as dn
from medviewer.ai.results import ModelInfo
from medviewer.cli import main as cli_main
from medviewer.dicom import load
from medviewer.dicom.synthetic import write_series
from medviewer.errors import CancelledError, ExportError
from medviewer.report.derived import write_derived_series

INFO = ModelInfo(name="denoiser", version="9.9.9")


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "src"
    write_series(
        folder, n_slices=5, rows=48, columns=40, spacing=2.0, orientation=(1, 0, 0, 0, 0.8, -0.6), description="Chest low dose"
    )
    return folder, load(folder)


def test_derived_series_loads_with_geometry_uids_and_references(source, tmp_path):
    folder, vol = source
    derived = vol.with_voxels(vol.voxels - 5.0, derived_from="AI denoised", series_description="Chest low dose [AI denoised]")
    files = write_derived_series(derived, vol, tmp_path / "out", model=INFO)
    assert len(files) == vol.n_slices
    assert not list(tmp_path.glob(".partial-*"))
    back = load(tmp_path / "out")
    assert back.shape == vol.shape
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-3)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)
    np.testing.assert_allclose(back.voxels, np.rint(derived.voxels), atol=0.5)
    m = back.metadata
    assert m.series_uid != vol.metadata.series_uid
    assert not set(m.sop_instance_uids) & set(vol.metadata.sop_instance_uids)
    assert m.study_uid == vol.metadata.study_uid and m.frame_of_reference_uid == vol.metadata.frame_of_reference_uid
    assert m.series_description == "Chest low dose [AI denoised]"
    refs = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        eq = ds.ContributingEquipmentSequence[0]
        assert eq.ManufacturerModelName == "denoiser" and "9.9.9" in list(eq.SoftwareVersions)
        assert eq.PurposeOfReferenceCodeSequence[0].CodeValue == "109103"
        assert "research" in eq.ContributionDescription.lower()
        assert "denoiser 9.9.9" in ds.DerivationDescription
        src = ds.SourceImageSequence[0]
        assert src.ReferencedSOPClassUID == vol.metadata.sop_class_uid
        refs.add(src.ReferencedSOPInstanceUID)
        assert ds.PatientID == "SYN0001"
    assert refs == set(vol.metadata.sop_instance_uids)
    # each slice references the source slice at the same position
    by_uid = dict(zip(vol.metadata.sop_instance_uids, range(vol.n_slices)))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID] == k


def test_never_overwrites_and_cancel_leaves_nothing(source, tmp_path):
    folder, vol = source
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        write_derived_series(vol, vol, out, model=INFO)
    assert (out / "keep.txt").read_text() == "x"
    with pytest.raises(ExportError, match="input"):
        write_derived_series(vol, vol, folder / "inner", model=INFO)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        write_derived_series(vol, vol, tmp_path / "new", model=INFO, cancel=cancel)
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".partial-*"))


def test_denoise_command_end_to_end(source, tmp_path, monkeypatch):
    import tests.test_denoiser as td_tests

    folder, vol = source
    weights = tmp_path / "w"
    td_tests.make_weights(weights)
    before = sorted(p.read_bytes() for p in folder.iterdir())
    rc = cli_main(["denoise", str(folder), str(tmp_path / "den"), "--device", "cpu", "--weights", str(weights)])
    assert rc == 0
    assert sorted(p.read_bytes() for p in folder.iterdir()) == before  # input untouched
    back = load(tmp_path / "den")
    assert back.shape == vol.shape and back.metadata.series_description == "Chest low dose [AI denoised]"
    # a second run refuses to overwrite
    assert cli_main(["denoise", str(folder), str(tmp_path / "den"), "--weights", str(weights)]) == 2
    dn.clear_cache()
    assert cli_main(["denoise", str(folder), str(tmp_path / "den2"), "--weights", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "den2").exists()


def test_multiframe_source_referenced_by_frame(tmp_path):
    from pydicom.data import get_testdata_file

    src = load(get_testdata_file("eCT_Supplemental.dcm"))
    files = write_derived_series(src, src, tmp_path / "mf", model=INFO)
    frames = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ref = ds.SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.metadata.sop_instance_uids[0]
        frames[int(ds.InstanceNumber) - 1] = int(ref.ReferencedFrameNumber)
    assert frames == dict(enumerate(src.metadata.extra["frame_numbers"]))
    back = load(tmp_path / "mf")
    np.testing.assert_allclose(back.voxels, np.rint(src.voxels), atol=0.5)
    np.testing.assert_allclose(back.origin, src.origin, atol=1e-3)
