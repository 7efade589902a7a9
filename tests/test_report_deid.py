"""De-identification (PS3.15 Basic Profile) of the exported objects, with real PHI from deid-data."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pypdf import PdfReader
from test_report_support import make_case, phi_source

from medviewer.report.deid import ACTIONS, Deidentifier, _resolve
from medviewer.report.export import export_report

DEID_DATA = Path(__import__("deid_data").__file__).parent / "data"


def _phi_strings(ds: Dataset) -> set[str]:
    """Every identifying value (profile attributes, any depth) long enough to search for."""
    found: set[str] = set()
    for elem in ds.iterall():
        if elem.tag not in ACTIONS or elem.VR == "SQ" or elem.value in (None, "", b""):
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        for v in values:
            s = str(v).strip()
            if len(s) >= 4 and not _is_number(s):
                found.add(s)
    return found


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return len(s) < 6  # short numbers (weights, "0.0") are not identifying; long digit strings (IDs, dates) are


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def test_profile_table_is_resolved() -> None:
    assert len(ACTIONS) > 350
    assert ACTIONS[pydicom.tag.Tag("PatientName")] == "Z"
    assert ACTIONS[pydicom.tag.Tag("StudyInstanceUID")] == "U"
    assert ACTIONS[pydicom.tag.Tag("InstitutionName")] == "X/Z/D"
    assert _resolve("X/Z/D", "LO") == "Z" and _resolve("X/D", "DA") == "D" and _resolve("X/D", "LO") == "X"
    for tag in ACTIONS:  # every tag is a real, known attribute (catches typos in the table)
        assert pydicom.datadict.dictionary_has_tag(tag) or tag.group in (0x0000, 0xFFFA, 0xFFFC), hex(tag)


def test_every_profile_attribute_of_the_source_is_handled() -> None:
    src = phi_source()
    src.add_new((0x0009, 0x0010), "LO", "ACME PRIVATE")
    src.add_new((0x0009, 0x1001), "LO", "private secret")
    src.add_new((0x6000, 0x3000), "OW", b"\x01\x00" * 8)  # overlay data
    src.add_new((0x6000, 0x0010), "US", 4)
    src.add_new((0x5000, 0x0005), "US", 1)  # curve dimensions (retired)
    d = Deidentifier(date_shift_days=400)
    out = d.apply(src)
    present = [t for t in src.keys() if t in ACTIONS]
    assert len(present) > 40
    for tag in present:
        orig = src[tag]
        act = _resolve(ACTIONS[tag], orig.VR)
        name = orig.keyword
        if tag in (pydicom.tag.Tag("PatientName"), pydicom.tag.Tag("PatientID")):
            assert str(out[tag].value).startswith("ANON") and str(out[tag].value) != str(orig.value), name
        elif act == "X":
            assert tag not in out, name
        elif act == "Z":
            assert out[tag].value in (None, "", b"") or (orig.VR == "SQ" and len(out[tag].value) == 0), name
        elif act == "U":
            assert out[tag].value == d.uid(orig.value) != orig.value, name
        elif act == "D" and orig.VR == "DA" and orig.value:
            assert out[tag].value == d.shift_date(orig.value) != orig.value, name
        elif act == "D" and orig.value not in (None, ""):
            assert out[tag].value != orig.value, name
        elif act == "U*":
            for item in out[tag].value:
                assert item.ReferencedSOPInstanceUID not in {i.ReferencedSOPInstanceUID for i in orig.value}
                assert item.ReferencedSOPClassUID in {i.ReferencedSOPClassUID for i in orig.value}
    assert not any(t.is_private for t in out.keys())
    assert not any(0x5000 <= t.group <= 0x60FF and (t.group >> 8) in (0x50, 0x60) for t in out.keys())
    assert out.PatientIdentityRemoved == "YES"
    assert "113100" in {c.CodeValue for c in out.DeidentificationMethodCodeSequence}
    assert out.SOPClassUID == src.SOPClassUID  # class UIDs are not identifiers
    blob = _encode(out)
    for value in _phi_strings(src):
        assert value.encode() not in blob, value


@pytest.mark.parametrize(
    "name",
    ["humans/ctbrain1.dcm", "humans/ctbrain2.dcm", "animals/cat.dcm"] + [f"dicom-cookies/image{i}.dcm" for i in range(1, 8)],
)
def test_no_phi_left_in_deid_data_samples(name: str) -> None:
    src = pydicom.dcmread(DEID_DATA / name, stop_before_pixels=True)
    d = Deidentifier()
    out = d.apply(src)
    blob = _encode(out)
    phi = _phi_strings(src)
    leaked = [v for v in phi if v.encode() in blob]
    assert leaked == []
    for tag in src.keys():
        if src[tag].VR == "UI" and tag in ACTIONS and src[tag].value:
            assert str(src[tag].value).encode() not in blob


def test_uid_mapping_is_consistent_and_salted() -> None:
    a, b = Deidentifier(), Deidentifier()
    uid = "1.2.840.113696.376376.500.4315"
    assert a.uid(uid) == a.uid(uid) != uid
    assert a.uid(uid) != b.uid(uid)
    assert a.uid(uid).startswith("2.25.") and len(a.uid(uid)) <= 64
    assert pydicom.uid.UID(a.uid(uid)).is_valid


def test_clean_text() -> None:
    d = Deidentifier()
    d.collect([phi_source()])
    text = d.clean_text("Homer Simpson seen at SGH SPRINGFIELD GENERAL HOSPITAL by Dr Hibbard; nodule 8 mm.")
    assert "Simpson" not in text and "HOSPITAL" not in text and "Hibbard" not in text
    assert "nodule 8 mm." in text


@pytest.fixture(scope="module")
def deid_export(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    case = make_case(tmp_path_factory.mktemp("deidcase"))
    headers_before = [copy.deepcopy(h) for h in case.volume.metadata.headers]
    out = tmp_path_factory.mktemp("deid") / "report"
    desc = case.volume.metadata.series_description
    denoised = case.volume.with_voxels(  # as medviewer.ai.denoise.denoise_volume labels it
        case.volume.voxels * 0.5, derived_from="AI denoised", series_description=f"{desc} [AI denoised]"
    )
    summary = export_report(
        case.volume,
        case.result,
        out,
        denoised=denoised,
        deidentify=True,
        reader_name="Hibbard^Julius",
        signed=True,
        include_fractional=True,
        impression="Patient SIMPSON^HOMER (ID 00007041776): 8 mm nodule, follow-up.",
    )
    return case, summary, headers_before


def test_deidentified_export_has_no_phi(deid_export) -> None:  # type: ignore[no-untyped-def]
    case, summary, headers_before = deid_export
    phi: set[str] = set()
    for h in case.volume.metadata.headers:
        phi |= _phi_strings(h)
    uids = {str(e.value) for h in case.volume.metadata.headers for e in h.iterall() if e.VR == "UI" and e.tag in ACTIONS}
    uids |= set(case.volume.metadata.sop_instance_uids)
    assert len(phi) > 25 and len(uids) > 10
    dicoms = [p for p in summary.files if p.suffix == ".dcm"]
    # sr, seg, fractional seg, key images, denoised series
    assert len(dicoms) == 3 + len(case.result.findings) + case.volume.n_slices
    texts = {str(p.relative_to(summary.out_dir)): p.read_bytes() for p in summary.files if p.suffix in (".dcm", ".json", ".csv")}
    texts["report.pdf (text)"] = "\n".join(pg.extract_text() for pg in PdfReader(summary.out_dir / "report.pdf").pages).encode()
    for name, blob in texts.items():
        leaked = sorted(v for v in phi | uids if v.encode() in blob)
        assert leaked == [], name
    pdf_text = texts["report.pdf (text)"].decode()
    assert "ANON" in pdf_text and "[removed]" in pdf_text and "8 mm nodule, follow-up." in pdf_text
    for p in dicoms:
        ds = pydicom.dcmread(p)
        assert ds.PatientIdentityRemoved == "YES", p.name
        assert str(ds.PatientID).startswith("ANON") and ds.PatientID == ds.PatientName
        assert not any(t.is_private for t in ds.keys())
    # the caller's headers are untouched
    assert [h.to_json_dict() for h in case.volume.metadata.headers] == [h.to_json_dict() for h in headers_before]


def test_deidentified_uids_are_consistent(deid_export) -> None:  # type: ignore[no-untyped-def]
    case, summary, _ = deid_export
    d = summary.out_dir
    sr = pydicom.dcmread(d / "sr.dcm")
    seg = pydicom.dcmread(d / "seg.dcm")
    frac = pydicom.dcmread(d / "confidence_seg.dcm")
    scs = [pydicom.dcmread(p) for p in sorted((d / "keyimages").glob("*.dcm"))]
    denoised = [pydicom.dcmread(p) for p in sorted((d / "denoised").glob("*.dcm"))]
    assert len(denoised) == case.volume.n_slices
    objects = [sr, seg, frac, *scs, *denoised]
    assert len({o.StudyInstanceUID for o in objects}) == 1
    assert {o.FrameOfReferenceUID for o in denoised} == {seg.FrameOfReferenceUID}
    # MedViewer's own descriptions survive, the source's do not
    assert seg.SeriesDescription == "MedViewer AI findings SEG (research use only)"
    assert sr.SeriesDescription == "MedViewer AI findings (research use only)"
    assert "Finding 1" in scs[0].ImageComments and scs[0].DerivationDescription
    assert denoised[0].SeriesDescription == "[removed] [AI denoised]"
    assert len({o.PatientID for o in objects}) == 1
    assert seg.FrameOfReferenceUID == frac.FrameOfReferenceUID
    evidence = [
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    ]
    assert len(set(evidence)) == case.volume.n_slices
    seg_refs = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert seg_refs <= set(evidence)
    assert {sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in scs} <= set(evidence)
    series = {seg.ReferencedSeriesSequence[0].SeriesInstanceUID, frac.ReferencedSeriesSequence[0].SeriesInstanceUID}
    assert series == {json.loads((d / "findings.json").read_text())["series_uid"]}
    # SR groups and SEG segments still share their tracking UIDs, and highdicom still reads both
    sr_hd = hd.sr.srread(d / "sr.dcm")
    groups = sr_hd.content.get_volumetric_roi_measurement_groups()
    tracking = {str(g.tracking_identifier): str(g.tracking_uid) for g in groups}
    for s in seg.SegmentSequence:
        assert tracking[s.TrackingID] == s.TrackingUID
    assert {str(g.roi.frame_of_reference_uid) for g in groups} == {seg.FrameOfReferenceUID}
    assert sr.VerificationFlag == "VERIFIED"
    # SEG frames still equal the masks, looked up through the remapped source UIDs
    seg_hd = hd.seg.segread(d / "seg.dcm")
    z_of_slice = [float(h.ImagePositionPatient[2]) for h in case.volume.metadata.headers]
    uid_of_slice: dict[int, str] = {}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        k = z_of_slice.index(float(frame.PlanePositionSequence[0].ImagePositionPatient[2]))
        uid_of_slice[k] = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    ks = sorted(uid_of_slice)
    kept = [f for f in case.result.findings if f.status.value != "rejected"]
    for n, f in enumerate(kept, start=1):
        px = seg_hd.get_pixels_by_source_instance([uid_of_slice[k] for k in ks], segment_numbers=[n])[..., 0]
        np.testing.assert_array_equal(px.astype(bool), f.mask[ks])
        assert f.mask.sum() == f.mask[ks].sum()


def test_burned_in_annotation_keeps_pixels_out(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    headers = [copy.deepcopy(h) for h in case.volume.metadata.headers]
    for h in headers:
        h.BurnedInAnnotation = "YES"
    vol = case.volume.with_voxels(case.volume.voxels, headers=headers)
    s = export_report(vol, case.result, tmp_path / "r", deidentify=True, denoised=vol)
    names = sorted(str(p.relative_to(s.out_dir)) for p in s.files)
    assert names == ["findings.csv", "findings.json", "report.pdf", "seg.dcm", "sr.dcm"]
    assert any("burned-in" in w for w in s.warnings)
    assert [img for page in PdfReader(s.out_dir / "report.pdf").pages for img in page.images] == []
    # without de-identification nothing is withheld
    s2 = export_report(vol, case.result, tmp_path / "r2", formats=["keyimages"])
    assert len(s2.files) == 2 * len(case.result.findings)
