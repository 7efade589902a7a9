"""export_report round trips: SR and SEG read back with highdicom/pydicom, PDF text and pages, key images, tables."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pypdf import PdfReader
from test_report_support import Case, case, make_case  # noqa: F401  (fixture)

from medviewer.ai.results import FINDINGS_SCHEMA, ReviewStatus
from medviewer.errors import CancelledError, ExportError
from medviewer.report.export import ALL_FORMATS, export_report
from medviewer.report.sr import CONFIDENCE, PRESENCE_VALUES, REVIEW_VALUES

IMPRESSION = "Solid nodule in the right lung, 8 mm.\n\nRecommend follow-up CT in 3 months."


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One full export shared by the read-only round-trip tests."""
    case = make_case(tmp_path_factory.mktemp("case"))
    out = tmp_path_factory.mktemp("export") / "report"
    summary = export_report(
        case.volume,
        case.result,
        out,
        impression=IMPRESSION,
        reader_name="Doe^Jane",
        signed=True,
        include_fractional=True,
    )
    return case, summary


def _code_values(items: object) -> set[str]:
    return {str(getattr(x, "value", "")) for x in items}  # type: ignore[attr-defined]


def test_files_written_atomically(exported) -> None:  # type: ignore[no-untyped-def]
    case, summary = exported
    names = sorted(str(p.relative_to(summary.out_dir)) for p in summary.files)
    n = len(case.result.findings)
    expected = ["confidence_seg.dcm", "findings.csv", "findings.json", "report.pdf", "seg.dcm", "sr.dcm"]
    expected += [f"keyimages/finding_{f.id:02d}.{ext}" for f in case.result.findings for ext in ("dcm", "png")]
    assert names == sorted(expected) and len(names) == 6 + 2 * n
    assert all(p.is_file() and p.stat().st_size > 0 for p in summary.files)
    leftovers = [p.name for p in summary.out_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert summary.warnings == []  # the denoised series was not given: nothing to warn about


def test_sr_round_trip(exported) -> None:  # type: ignore[no-untyped-def]
    case, summary = exported
    path = summary.out_dir / "sr.dcm"
    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert raw.VerificationFlag == "VERIFIED" and raw.CompletionFlag == "COMPLETE"
    assert str(raw.VerifyingObserverSequence[0].VerifyingObserverName) == "Doe^Jane"
    assert raw.StudyInstanceUID == case.volume.metadata.study_uid
    # IHE AI Results: contributing equipment names each algorithm with its version
    equipment = {(e.ManufacturerModelName, str(e.SoftwareVersions)) for e in raw.ContributingEquipmentSequence}
    assert ("MedViewer lesion detector", "1.2.0") in equipment
    assert ("MedViewer low-dose denoiser", "0.9.1") in equipment
    # evidence: every source slice
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in raw.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert evidence == set(case.volume.metadata.sop_instance_uids)

    sr = hd.sr.srread(path)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(case.result.findings)
    seg = pydicom.dcmread(summary.out_dir / "seg.dcm")
    seg_tracking = {s.TrackingID: s.TrackingUID for s in seg.SegmentSequence}
    for f, g in zip(case.result.findings, groups):
        assert str(g.tracking_identifier) == f"Finding {f.id}"
        if f.status != ReviewStatus.REJECTED:
            assert seg_tracking[f"Finding {f.id}"] == str(g.tracking_uid)  # SR group <-> SEG segment link
        values = {m.name.value: (m.value, m.unit.value) for m in g.get_measurements()}
        assert values["81827009"][0] == pytest.approx(f.diameter_mm, abs=1e-3) and values["81827009"][1] == "mm"
        assert values[CONFIDENCE.value][0] == pytest.approx(f.confidence * 100, abs=1e-3)
        assert values[CONFIDENCE.value][1] == "%"
        assert values["112031"][0] == pytest.approx(f.mean_hu, abs=0.01) and values["112031"][1] == "[hnsf'U]"
        assert values["118565006"][0] == pytest.approx(float(f.mask.sum()) * 2.5 * 0.8 * 0.75, rel=1e-4)
        evals = _code_values(q.value for q in g.get_qualitative_evaluations())
        assert PRESENCE_VALUES[f.status].value in evals and REVIEW_VALUES[f.status].value in evals
        # location: SCOORD3D ellipsoid in the source frame of reference, centred on the finding
        roi = g.roi
        assert roi.frame_of_reference_uid == case.volume.metadata.frame_of_reference_uid
        assert roi.graphic_type == hd.sr.GraphicTypeValues3D.ELLIPSOID
        assert str(roi.source_series_for_segmentation.value) == case.volume.metadata.series_uid
        pts = np.asarray(roi.graphic_data, dtype=np.float64).reshape(-1, 3)
        np.testing.assert_allclose(pts.mean(axis=0), f.center_mm, atol=1e-3)
        np.testing.assert_allclose(np.linalg.norm(pts[1] - pts[0]), f.diameter_mm, atol=1e-3)
    # notes and impression as TEXT items
    texts = [
        str(item.TextValue)
        for item in _walk_content(raw)
        if item.get("ValueType") == "TEXT"
    ]
    assert "solid nodule, follow-up per guideline" in texts
    assert IMPRESSION.strip() in texts


def _walk_content(ds: pydicom.Dataset):  # type: ignore[no-untyped-def]
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk_content(item)


def test_sr_unverified_without_signature(case: Case, tmp_path: Path) -> None:
    s = export_report(case.volume, case.result, tmp_path / "r", formats=["sr"], reader_name="Doe^Jane")
    raw = pydicom.dcmread(s.out_dir / "sr.dcm")
    assert raw.VerificationFlag == "UNVERIFIED" and raw.CompletionFlag == "PARTIAL"
    assert "VerifyingObserverSequence" not in raw
    with pytest.raises(ExportError, match="reader"):
        export_report(case.volume, case.result, tmp_path / "r2", formats=["sr"], signed=True)


def test_seg_round_trip(exported) -> None:  # type: ignore[no-untyped-def]
    case, summary = exported
    raw = pydicom.dcmread(summary.out_dir / "seg.dcm")
    assert raw.SegmentationType == "BINARY"
    kept = [f for f in case.result.findings if f.status != ReviewStatus.REJECTED]
    assert [s.SegmentLabel for s in raw.SegmentSequence] == [f"Finding {f.id}" for f in kept]
    uids = case.volume.metadata.sop_instance_uids
    # every frame references the source slice at its position
    for frame in raw.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(ref)
        z = float(frame.PlanePositionSequence[0].ImagePositionPatient[2])
        assert z == pytest.approx(float(case.volume.metadata.headers[k].ImagePositionPatient[2]))
    seg = hd.seg.segread(summary.out_dir / "seg.dcm")
    for n, f in enumerate(kept, start=1):
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[n], assert_missing_frames_are_empty=True
        )
        np.testing.assert_array_equal(pixels[..., 0].astype(bool), f.mask)

    frac = hd.seg.segread(summary.out_dir / "confidence_seg.dcm")
    assert frac.SegmentationType == "FRACTIONAL"
    conf = frac.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], assert_missing_frames_are_empty=True
    )[..., 0]
    np.testing.assert_allclose(conf, case.result.confidence, atol=1.0 / 255 + 1e-6)


def test_rejected_findings_can_be_kept_in_seg(case: Case, tmp_path: Path) -> None:
    s = export_report(case.volume, case.result, tmp_path / "r", formats=["seg"], include_rejected_in_seg=True)
    raw = pydicom.dcmread(s.out_dir / "seg.dcm")
    assert len(raw.SegmentSequence) == len(case.result.findings)


def test_min_confidence_reports_reviewed_and_confident_findings(case: Case, tmp_path: Path) -> None:
    import dataclasses

    findings = [dataclasses.replace(f) for f in case.result.findings]
    low = findings[-1]
    low.status, low.note = ReviewStatus.PENDING, ""  # an unreviewed candidate below the threshold
    result = dataclasses.replace(case.result, findings=findings)
    s = export_report(case.volume, result, tmp_path / "r", formats=["json"], min_confidence=0.5)
    reported = json.loads((s.out_dir / "findings.json").read_text())["findings"]
    assert [f["id"] for f in reported] == [f.id for f in findings if f.confidence >= 0.5]
    assert any("below 50%" in w for w in s.warnings)
    # a reviewed finding is reported whatever its confidence
    low.status = ReviewStatus.REJECTED
    s = export_report(case.volume, result, tmp_path / "r2", formats=["json"], min_confidence=0.5)
    assert len(json.loads((s.out_dir / "findings.json").read_text())["findings"]) == len(findings)
    assert not s.warnings


def _pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_pdf_content_and_pages(exported) -> None:  # type: ignore[no-untyped-def]
    case, summary = exported
    path = summary.out_dir / "report.pdf"
    reader = PdfReader(path)
    width, height = (float(v) for v in reader.pages[0].mediabox.upper_right)
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    text = " ".join(_pdf_text(path).split())
    for needle in ("SIMPSON, HOMER J", "00007041776", "2023-01-01", "Doe, Jane", "Signed (verified)",
                   "MedViewer lesion detector", "1.2.0", "MedViewer low-dose denoiser", "0.9.1",
                   "Research use only, not for diagnosis.", "Solid nodule in the right lung, 8 mm.",
                   "Recommend follow-up CT in 3 months."):
        assert needle in text, needle
    for f in case.result.findings:
        a, b = f.slice_range[0] + 1, f.slice_range[1] + 1
        for needle in (f"F{f.id}", f"{f.diameter_mm:.1f} mm", f"{f.confidence * 100:.0f}%", f"{f.mean_hu:.0f}",
                       f.status.value, f"slices {a}\u2013{b} of 10", f"{f.center_mm[0]:.1f}"):
            assert needle in text, (f.id, needle)
        if f.note:
            assert f.note in text
    # the key images are embedded: one overview + one detail per finding
    images = [img for page in reader.pages for img in page.images]
    assert len(images) == 2 * len(case.result.findings)
    # the pages render
    if shutil.which("pdftoppm"):
        prefix = summary.out_dir.parent / "page"
        subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(prefix)], check=True, timeout=60)
        pages = sorted(summary.out_dir.parent.glob("page*.png"))
        assert len(pages) == len(reader.pages)
        for p in pages:
            page = np.asarray(Image.open(p).convert("L"))
            assert page.shape[0] > page.shape[1] and page.std() > 10  # portrait, not blank
    else:
        img = Image.open(io.BytesIO(images[0].data))
        assert np.asarray(img).std() > 10


def test_pdf_letter(case: Case, tmp_path: Path) -> None:
    s = export_report(case.volume, case.result, tmp_path / "r", formats=["pdf"], paper="Letter")
    page = PdfReader(s.out_dir / "report.pdf").pages[0]
    assert tuple(round(float(v)) for v in page.mediabox.upper_right) == (612, 792)
    text = " ".join(_pdf_text(s.out_dir / "report.pdf").split())
    assert "Not signed (unverified)" in text and "No impression entered" in text


def test_key_images(exported) -> None:  # type: ignore[no-untyped-def]
    case, summary = exported
    for f in case.result.findings:
        png = np.asarray(Image.open(summary.out_dir / "keyimages" / f"finding_{f.id:02d}.png"))
        sc = pydicom.dcmread(summary.out_dir / "keyimages" / f"finding_{f.id:02d}.dcm")
        assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
        np.testing.assert_array_equal(sc.pixel_array, png)
        k = int(round(f.center_index[0]))
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == case.volume.metadata.sop_instance_uids[k]
        assert sc.StudyInstanceUID == case.volume.metadata.study_uid
        assert "MedViewer lesion detector" in {e.ManufacturerModelName for e in sc.ContributingEquipmentSequence}
        # overlays burned in: the status colour of the outline is present; the source pixels were not changed
        colour = {ReviewStatus.ACCEPTED: (60, 220, 90), ReviewStatus.PENDING: (255, 215, 0),
                  ReviewStatus.REJECTED: (230, 60, 60)}[f.status]
        assert np.all(png == colour, axis=-1).sum() > 20
    assert case.volume.voxels.dtype == np.float32 and float(case.volume.voxels.max()) < 200


def test_tables(exported) -> None:  # type: ignore[no-untyped-def]
    import jsonschema

    case, summary = exported
    doc = json.loads((summary.out_dir / "findings.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, FINDINGS_SCHEMA)
    assert doc["series_uid"] == case.volume.metadata.series_uid
    assert doc["report"]["verification"] == "VERIFIED" and doc["report"]["impression"] == IMPRESSION
    rows = list(csv.DictReader(io.StringIO((summary.out_dir / "findings.csv").read_text(encoding="utf-8"))))
    assert len(rows) == len(doc["findings"]) == len(case.result.findings)
    for f, j, r in zip(case.result.findings, doc["findings"], rows):
        assert j["id"] == f.id == int(r["id"])
        assert j["status"] == r["status"] == f.status.value
        assert float(r["diameter_mm"]) == pytest.approx(f.diameter_mm, abs=0.01)
        assert float(r["confidence"]) == pytest.approx(f.confidence, abs=1e-5)
        assert [int(r["slice_index_first"]), int(r["slice_index_last"])] == j["slice_range"]
        assert r["note"] == f.note


def test_no_overwrite_without_asking(case: Case, tmp_path: Path) -> None:
    out = tmp_path / "r"
    export_report(case.volume, case.result, out, formats=["json"])
    before = (out / "findings.json").read_bytes()
    with pytest.raises(ExportError, match="not empty"):
        export_report(case.volume, case.result, out, formats=["csv"])
    assert sorted(p.name for p in out.iterdir()) == ["findings.json"]
    assert (out / "findings.json").read_bytes() == before
    export_report(case.volume, case.result, out, formats=["csv"], overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["findings.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "source"]


@pytest.mark.parametrize("stop_after", [1, 3, 6])
def test_cancel_leaves_nothing(case: Case, tmp_path: Path, stop_after: int) -> None:
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) >= stop_after

    with pytest.raises(CancelledError):
        export_report(case.volume, case.result, tmp_path / "r", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


@pytest.mark.parametrize("fail_at", [1, 4])
def test_full_disk_leaves_nothing(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    real_write = os.write
    count = []

    def write(fd: int, data: bytes) -> int:
        count.append(1)
        if len(count) >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(ExportError, match="disk is full"):
        export_report(case.volume, case.result, tmp_path / "r")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_read_only_parent(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ro_mkdir(path: object, mode: int = 0o777, **kw: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    with pytest.raises(ExportError, match="read-only"):
        export_report(case.volume, case.result, tmp_path / "r", formats=["json"])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_bad_arguments(case: Case, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        export_report(case.volume, case.result, tmp_path / "a", formats=["pdf", "docx"])
    with pytest.raises(ExportError, match="paper"):
        export_report(case.volume, case.result, tmp_path / "b", paper="A3")
    assert set(ALL_FORMATS) >= {"pdf", "sr", "seg", "keyimages", "json", "csv", "denoised"}


def test_volume_without_dicom_headers(case: Case, tmp_path: Path) -> None:
    bare = case.volume.with_voxels(case.volume.voxels, headers=[], source_files=[])
    assert bare.metadata is not case.volume.metadata
    s = export_report(bare, case.result, tmp_path / "r", formats=["json", "pdf", "sr", "seg", "keyimages"])
    names = sorted(p.name for p in s.files)
    assert "report.pdf" in names and "findings.json" in names and "sr.dcm" not in names
    assert any("DICOM" in w for w in s.warnings)


def test_headers_fall_back_to_source_files(case: Case, tmp_path: Path) -> None:
    stripped = [pydicom.Dataset() for _ in case.volume.metadata.headers]
    vol = case.volume.with_voxels(case.volume.voxels, headers=stripped)
    s = export_report(vol, case.result, tmp_path / "r", formats=["seg"])
    raw = pydicom.dcmread(s.out_dir / "seg.dcm")
    refs = {i.ReferencedSOPInstanceUID for i in raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs <= set(case.volume.metadata.sop_instance_uids) and refs


def test_progress_reported(case: Case, tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    export_report(case.volume, case.result, tmp_path / "r", formats=["json", "pdf"], progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3


def test_denoised_series_written(case: Case, tmp_path: Path) -> None:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(case.volume.voxels, (0, 1, 1)).astype(np.float32)
    denoised = case.volume.with_voxels(smooth, derived_from="AI denoised")
    s = export_report(case.volume, case.result, tmp_path / "r", formats=["denoised", "json"], denoised=denoised)
    files = sorted(p for p in s.files if p.parent.name == "denoised")
    assert len(files) == case.volume.n_slices and s.warnings == []
    ds = [pydicom.dcmread(p) for p in files]
    assert all("DERIVED" in d.ImageType for d in ds)
    assert len({d.SeriesInstanceUID for d in ds}) == 1 and ds[0].SeriesInstanceUID != case.volume.metadata.series_uid
    stored = sorted(ds, key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in stored])
    np.testing.assert_allclose(hu, smooth, atol=1.0)
    # without a denoised volume the format is simply skipped
    s2 = export_report(case.volume, case.result, tmp_path / "r2", formats=["denoised", "json"])
    assert [p.name for p in s2.files] == ["findings.json"]


def test_overlapping_masks_and_mask_free_findings(case: Case, tmp_path: Path) -> None:
    from dataclasses import replace

    f1, f2, f3 = case.result.findings
    grown = np.zeros_like(f1.mask)
    grown[f1.mask.any(axis=(1, 2))] = f1.mask.any(axis=0)  # overlaps f1 completely
    g = replace(f2, mask=grown | f2.mask, status=ReviewStatus.ACCEPTED)
    no_mask = replace(f3, mask=None, status=ReviewStatus.PENDING)  # e.g. read back from JSON: drawn as a sphere
    result = replace(case.result, findings=[f1, g, no_mask])
    s = export_report(case.volume, result, tmp_path / "r", formats=["seg", "sr"])
    seg = hd.seg.segread(s.out_dir / "seg.dcm")
    uids = case.volume.metadata.sop_instance_uids
    got = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3], assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(got[..., 0].astype(bool), f1.mask)
    np.testing.assert_array_equal(got[..., 1].astype(bool), g.mask)
    sphere = got[..., 2].astype(bool)
    vox = 2.5 * 0.8 * 0.75
    assert abs(sphere.sum() * vox - np.pi / 6 * f3.diameter_mm**3) < 0.5 * np.pi / 6 * f3.diameter_mm**3
    k, j, i = (int(round(c)) for c in f3.center_index)
    assert sphere[k, j, i]


def test_no_findings(case: Case, tmp_path: Path) -> None:
    from dataclasses import replace

    empty = replace(case.result, findings=[])
    s = export_report(case.volume, empty, tmp_path / "r")
    names = sorted(str(p.relative_to(s.out_dir)) for p in s.files)
    assert names == ["findings.csv", "findings.json", "report.pdf", "sr.dcm"]
    assert any("no finding" in w for w in s.warnings)
    sr = hd.sr.srread(s.out_dir / "sr.dcm")
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    (group,) = sr.content.get_image_measurement_groups()
    assert str(group.tracking_identifier) == "No findings"
    assert PRESENCE_VALUES[ReviewStatus.REJECTED].value in _code_values(q.value for q in group.get_qualitative_evaluations())
    assert "no finding" in _pdf_text(s.out_dir / "report.pdf")


def test_never_replaces_the_source_folder(case: Case, tmp_path: Path) -> None:
    src_dir = case.files[0].parent
    before = sorted(p.name for p in src_dir.iterdir())
    for target in (src_dir, tmp_path):
        with pytest.raises(ExportError, match="source images"):
            export_report(case.volume, case.result, target, formats=["json"], overwrite=True)
    assert sorted(p.name for p in src_dir.iterdir()) == before


def test_unicode_reader_note_and_impression(case: Case, tmp_path: Path) -> None:
    case.result.findings[0].note = "Läsion – größenprogredient, 結節"
    s = export_report(case.volume, case.result, tmp_path / "r", formats=["sr", "pdf"], reader_name="Müller^Anna",
                      signed=True, impression="Keine Änderung. 結節")
    raw = pydicom.dcmread(s.out_dir / "sr.dcm")
    assert raw.SpecificCharacterSet == "ISO_IR 192"
    assert str(raw.VerifyingObserverSequence[0].VerifyingObserverName) == "Müller^Anna"
    texts = [str(i.TextValue) for i in _walk_content(raw) if i.get("ValueType") == "TEXT"]
    assert "Keine Änderung. 結節" in texts and "Läsion – größenprogredient, 結節" in texts
    text = _pdf_text(s.out_dir / "report.pdf")
    assert "Müller, Anna" in text and "größenprogredient" in text
