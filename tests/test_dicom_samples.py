"""Every sample file shipped by pydicom, pydicom-data and deid-data.

Each file either loads into a Volume whose pixels equal pydicom's own decoded
and rescaled pixels, or gives a DicomError / a not-viewable series / a
skipped-file entry with a reason. No other exception may escape. A
DicomError is only accepted where pydicom itself cannot produce the pixels.
"""

from __future__ import annotations

import glob
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_color_lut, apply_modality_lut

from medviewer.dicom import load, load_series, scan_with_report
from medviewer.errors import DicomError, TooLargeError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def _sample_files() -> list[str]:
    files = set(get_testdata_files())  # pydicom's test_files + pydicom-data (data_store)
    try:
        import deid_data

        root = Path(deid_data.__file__).parent / "data"
        files.update(p for p in glob.glob(str(root / "**" / "*"), recursive=True) if os.path.isfile(p))
    except ImportError:  # pragma: no cover - deid-data is a test dependency
        pass
    return sorted(f for f in files if "__pycache__" not in f)


FILES = _sample_files()

#: Files we load although pydicom's pixel_array raises, so there is no reference to compare with.
LOADED_BEYOND_PYDICOM = {
    # NumberOfFrames is "1A" (invalid IS): pydicom's pixel_array fails on int("1A"); we read it as 1 frame
    "test_files/badVR.dcm",
}


def _short(path: str) -> str:
    parts = Path(path).parts
    for anchor in ("test_files", "data_store", "deid_data"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return Path(path).name


def _open_source(path: str) -> bytes:
    """The DICOM bytes: a zip member ("archive.zip/member") or a plain file."""
    if ".zip/" in path:
        archive, member = path.split(".zip/", 1)
        with zipfile.ZipFile(archive + ".zip") as zf:
            return zf.read(member)
    return Path(path).read_bytes()


def _reference(path: str) -> np.ndarray:
    """pydicom's decoded pixels after modality LUT / rescale, (frames, rows, cols[, 3])."""
    ds = pydicom.dcmread(io.BytesIO(_open_source(path)), force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
    arr = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    color = int(ds.get("SamplesPerPixel", 1)) > 1 or pi in ("RGB", "PALETTE COLOR") or pi.startswith("YBR")
    if n == 1:
        arr = arr[None]
    if color:
        if pi == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            bits = 8 * arr.dtype.itemsize
        else:
            bits = int(ds.get("BitsStored", 8 * arr.dtype.itemsize))
        if arr.dtype != np.uint8:
            arr = ((arr.astype(np.uint64) >> max(0, bits - 8)) & 0xFF).astype(np.uint8)
        return arr
    if arr.ndim == 4:
        arr = arr[..., 0]
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")

    def pvt(i: int):
        for groups in ([per[i]] if per is not None and i < len(per) else []) + (list(shared[:1]) if shared else []):
            seq = groups.get("PixelValueTransformationSequence")
            if seq:
                return float(seq[0].RescaleSlope), float(seq[0].RescaleIntercept)
        return None

    out = np.empty(arr.shape, np.float32)
    for i in range(arr.shape[0]):
        t = pvt(i)
        if t is not None:
            out[i] = arr[i].astype(np.float64) * t[0] + t[1]
        else:
            out[i] = apply_modality_lut(arr[i], ds)
    return out


def _pydicom_can_decode(path: str) -> bool:
    try:
        _reference(path)
    except Exception:  # noqa: BLE001 - any failure means pydicom cannot either
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", FILES, ids=[_short(f) for f in FILES])
def test_sample_file_loads_like_pydicom_or_fails_cleanly(path: str) -> None:
    report = scan_with_report(path)
    for skipped_path, reason in report.skipped:
        assert reason, skipped_path
    for series in report.series:
        if not series.viewable:
            assert series.reason, series
            continue
        try:
            volume = load_series(series)
        except TooLargeError:
            continue
        except DicomError as exc:
            assert exc.reason
            assert exc.path is not None
            assert not _pydicom_can_decode(str(exc.path)), f"pydicom decodes it but we raised: {exc}"
            continue
        assert volume.voxels.dtype == (np.uint8 if volume.is_rgb else np.float32)
        slice_files = volume.metadata.extra["slice_files"]
        frame_numbers = volume.metadata.extra["frame_numbers"]
        assert len(slice_files) == volume.n_slices == len(volume.metadata.sop_instance_uids)
        assert len(volume.metadata.headers) == len(volume.metadata.source_files)
        assert all("PixelData" not in h for h in volume.metadata.headers)
        refs: dict[str, np.ndarray] = {}
        for k, (f, frame) in enumerate(zip(slice_files, frame_numbers)):
            if f not in refs:
                if _short(f) in LOADED_BEYOND_PYDICOM:
                    assert np.isfinite(volume.voxels).all()
                    assert not _pydicom_can_decode(f), "listed as beyond pydicom, but pydicom decodes it now"
                    break
                refs[f] = _reference(f)
            np.testing.assert_array_equal(volume.voxels[k], refs[f][frame - 1], err_msg=f"{f} frame {frame}")


def test_the_walk_covers_all_three_packages() -> None:
    names = {_short(f).split("/")[0] for f in FILES}
    assert {"test_files", "data_store", "deid_data"} <= names
    assert len(FILES) > 250


def test_known_samples_give_the_expected_outcome() -> None:
    from pydicom.data import get_testdata_file

    ct = load(get_testdata_file("CT_small.dcm"))
    assert ct.metadata.units == "HU" and ct.metadata.modality == "CT"
    assert ct.metadata.patient_name == "CompressedSamples^CT1"
    mr = load(get_testdata_file("MR_small.dcm"))
    assert [(w.center, w.width) for w in mr.metadata.windows] == [(600.0, 1600.0)]
    seg = scan_with_report(get_testdata_file("liver_1frame.dcm")).series[0]
    assert not seg.viewable and seg.kind == "Segmentation"
    report = scan_with_report(get_testdata_file("rtplan.dcm"))
    assert [(s.kind, s.viewable) for s in report.series] == [("RT Plan", False)]
    sr = scan_with_report(get_testdata_file("test-SR.dcm")).series[0]
    assert not sr.viewable and "SR" in sr.kind and sr.reason
    with pytest.raises(DicomError, match="MR_truncated"):
        load(get_testdata_file("MR_truncated.dcm"))
    dose = load(get_testdata_file("rtdose.dcm"))
    assert dose.shape[0] == 15 and dose.spacing[0] > 0
