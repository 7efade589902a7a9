"""Robustness: mutated sample files give a DicomError or a Volume, nothing else.

A fixed seed keeps the few hundred mutations reproducible. Mutations: flipped
bytes (header-biased), truncation, huge Rows/Columns/NumberOfFrames, deep
sequence nesting, a deflate bomb and a zip member that lies about its size.
Every case runs under a timeout and a small memory budget, and the peak RSS
of the process must not jump.
"""

from __future__ import annotations

import io
import resource
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medviewer.dicom import load_series, scan_with_report
from medviewer.errors import DicomError, TooLargeError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

BASES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "rtdose.dcm",
    "image_dfl.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPGExtended.dcm",
    "emri_small_RLE.dcm",
]
BUDGET = 64 * 2**20
N_BATCHES = 8
PER_BATCH = 40  # 320 mutated files in all


def _pixel_offset(data: bytes) -> int:
    """Offset of the top-level (7FE0,0010) tag, or len(data)."""
    ds_io = io.BytesIO(data)
    pydicom.dcmread(ds_io, stop_before_pixels=True, force=True)
    return ds_io.tell()


def _exercise(path: Path) -> str:
    """Scan and load everything in ``path``; only DicomError may escape."""
    report = scan_with_report(path, memory_budget_bytes=BUDGET)
    outcome = "skipped" if report.skipped else "empty"
    for series in report.series:
        if not series.viewable:
            assert series.reason
            outcome = "not viewable"
            continue
        try:
            vol = load_series(series, memory_budget_bytes=BUDGET)
        except DicomError as exc:
            assert exc.reason
            outcome = type(exc).__name__
            continue
        assert vol.voxels.nbytes <= BUDGET
        assert vol.n_slices >= 1
        outcome = "volume"
    return outcome


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(0, 4)
    buf = bytearray(data)
    if kind == 0:  # flip bytes, mostly in the header
        head = _pixel_offset(data) if rng.random() < 0.8 else len(buf)
        for _ in range(int(rng.integers(1, 12))):
            pos = int(rng.integers(128, max(129, min(head + 16, len(buf)))))
            buf[pos] = int(rng.integers(0, 256))
    elif kind == 1:  # truncate
        return bytes(buf[: int(rng.integers(0, len(buf)))])
    elif kind == 2:  # overwrite 2- or 4-byte values with extremes
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(132, len(buf) - 4))
            buf[pos : pos + 4] = struct.pack("<I", int(rng.choice([0, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000])))
    else:  # insert or delete a run of bytes
        pos = int(rng.integers(132, len(buf)))
        if rng.random() < 0.5:
            del buf[pos : pos + int(rng.integers(1, 64))]
        else:
            buf[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return bytes(buf)


@pytest.fixture(scope="module")
def base_bytes() -> dict[str, bytes]:
    return {name: Path(get_testdata_file(name)).read_bytes() for name in BASES}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("batch", range(N_BATCHES))
def test_mutated_files_give_dicom_error_or_volume(batch: int, base_bytes: dict[str, bytes], tmp_path: Path) -> None:
    rng = np.random.default_rng(20260 + batch)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes: dict[str, int] = {}
    for i in range(PER_BATCH):
        name = BASES[int(rng.integers(0, len(BASES)))]
        path = tmp_path / f"{i:03d}_{name}"
        path.write_bytes(_mutate(base_bytes[name], rng))
        try:
            outcome = _exercise(path)
        except DicomError as exc:  # pragma: no cover - scan reports, it should not raise
            pytest.fail(f"scan raised for {path.name}: {exc}")
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__} escaped for {path.name} (seed batch {batch}, case {i})") from exc
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB"
    assert sum(outcomes.values()) == PER_BATCH


def _with_header_values(name: str, **values: object) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name))
    for key, value in values.items():
        setattr(ds, key, value)
    out = io.BytesIO()
    with pydicom.config.disable_value_validation():
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "name, values",
    [
        ("CT_small.dcm", {"Rows": 65535, "Columns": 65535}),
        ("MR_small_RLE.dcm", {"Rows": 65535, "Columns": 65535}),
        ("rtdose.dcm", {"NumberOfFrames": 2**31 - 1}),
        ("emri_small_RLE.dcm", {"NumberOfFrames": 10**9}),
        ("JPEG2000.dcm", {"Rows": 60000, "Columns": 60000, "NumberOfFrames": 1000}),
        ("CT_small.dcm", {"Rows": 0, "Columns": 0}),
        ("CT_small.dcm", {"BitsAllocated": 12}),
        ("MR_small.dcm", {"SamplesPerPixel": 4}),
    ],
    ids=["ct-huge", "rle-huge", "dose-frames", "rle-frames", "j2k-all", "zero", "bits12", "spp4"],
)
def test_absurd_sizes_are_refused_before_decoding(name: str, values: dict, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(_with_header_values(name, **values))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = scan_with_report(path, memory_budget_bytes=BUDGET)
    for series in report.series:
        if series.viewable:
            with pytest.raises(DicomError):
                load_series(series, memory_budget_bytes=BUDGET)
        else:
            assert series.reason
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 < 200


def _nested_sequence(depth: int) -> bytes:
    tag = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (tag + item) * depth + (item_end + seq_end) * depth


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [50, 5000])
def test_deep_sequence_nesting(depth: int, tmp_path: Path) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    pos = _pixel_offset(data)
    path = tmp_path / "nested.dcm"
    path.write_bytes(data[:pos] + _nested_sequence(depth) + data[pos:])
    report = scan_with_report(path)
    if depth >= 5000:
        assert report.skipped and "deeply" in report.skipped[0][1]
    else:
        assert report.series[0].viewable
        assert load_series(report.series[0]).shape == (1, 128, 128)


def _deflate_bomb(inflated_mib: int) -> bytes:
    """A deflated-explicit-VR file whose pixel data inflates to ``inflated_mib`` MiB of zeros."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    head = io.BytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(head), meta, enforce_standard=True)
    n = inflated_mib * 2**20
    body = (
        struct.pack("<HH", 0x0008, 0x0016) + b"UI" + struct.pack("<H", 26) + b"1.2.840.10008.5.1.4.1.1.7\x00"
        + struct.pack("<HH", 0x0028, 0x0010) + b"US" + struct.pack("<HH", 2, 1024)
        + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", n)
    )
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(body) + comp.flush(zlib.Z_FULL_FLUSH)
    zeros = b"\x00" * 2**20
    # after a full flush the history is reset, so one compressed MiB of zeros can be repeated
    chunk = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH) == chunk
    return head.getvalue() + first + chunk * (inflated_mib - 2) + chunk + comp.flush()


@pytest.mark.timeout(60)
def test_deflate_bomb_is_refused(tmp_path: Path) -> None:
    data = _deflate_bomb(512)
    assert len(data) < 2**20  # < 1 MiB on disk, 512 MiB inflated
    path = tmp_path / "bomb.dcm"
    path.write_bytes(data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = scan_with_report(path)
    assert report.skipped and "deflate bomb" in report.skipped[0][1]
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 < 200


def test_genuine_deflated_file_still_loads() -> None:
    report = scan_with_report(get_testdata_file("image_dfl.dcm"))
    assert load_series(report.series[0]).n_slices == 1


@pytest.mark.timeout(60)
def test_zip_member_larger_than_budget_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\x00" * (8 * 2**20))
    report = scan_with_report(archive, memory_budget_bytes=2**20)
    assert report.series == []
    assert "memory budget" in report.skipped[0][1]


def test_corrupt_zip_is_reported(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    report = scan_with_report(archive)
    assert report.series == [] and "zip" in report.skipped[0][1]


def test_too_large_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    path.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    report = scan_with_report(path)
    with pytest.raises(TooLargeError) as info:
        load_series(report.series[0], memory_budget_bytes=1000)
    assert str(path) in str(info.value)
