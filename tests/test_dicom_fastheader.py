"""The fast header reader gives the same data sets as pydicom's dcmread."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from medviewer.dicom.fastheader import NEED_MORE, FastHeader, build_dataset, parse_header
from medviewer.dicom.reader import _locate_pixels, read_entry
from medviewer.dicom.synthetic import write_series

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning:pydicom")]


def _pydicom_header(data: bytes):
    fp = io.BytesIO(data)
    ds = pydicom.dcmread(fp, stop_before_pixels=True)
    implicit, little = ds.original_encoding
    return ds, _locate_pixels(fp, fp.tell(), bool(little), bool(implicit))


def _same(a, b, where: str) -> None:
    assert sorted(a.keys()) == sorted(b.keys()), where
    for tag in a.keys():
        ea, eb = a[tag], b[tag]
        assert ea.VR == eb.VR, f"{where} {tag} VR"
        if ea.VR == "SQ":
            assert len(ea.value) == len(eb.value), f"{where} {tag}"
            for i, (ia, ib) in enumerate(zip(ea.value, eb.value)):
                _same(ia, ib, f"{where} {tag}[{i}]")
        else:
            assert ea.value == eb.value, f"{where} {tag}"


def _files() -> list[str]:
    return sorted(f for f in get_testdata_files() if Path(f).is_file())


def test_fast_header_equals_pydicom_on_every_sample() -> None:
    used = 0
    for f in _files():
        data = Path(f).read_bytes()
        result = parse_header(data, eof=True)
        if result is None:
            continue
        assert isinstance(result, FastHeader), f
        try:
            ref, loc = _pydicom_header(data)
        except Exception:  # noqa: BLE001 - pydicom cannot read it at all: nothing to compare
            continue
        ours = build_dataset(result, f, data[:128])
        _same(ours, ref, Path(f).name)
        _same(ours.file_meta, ref.file_meta, Path(f).name + " meta")
        assert ours.original_encoding == ref.original_encoding, f
        if loc is None:
            assert result.pixel_keyword is None, f
        else:
            assert (result.pixel_keyword, result.pixel_offset, result.pixel_length) == (
                loc.keyword,
                loc.offset,
                loc.length,
            ), f
        used += 1
    assert used > 150  # the fast path really covers most samples


def test_fast_header_on_truncated_buffers_asks_for_more() -> None:
    f = next(f for f in _files() if f.endswith("CT_small.dcm"))
    data = Path(f).read_bytes()
    full = parse_header(data, eof=True)
    assert isinstance(full, FastHeader)
    for cut in (150, 500, full.pixel_offset - 20):
        assert parse_header(data[:cut], eof=False) is NEED_MORE
        assert parse_header(data[:cut], eof=True) is None


def test_read_entry_uses_the_fast_path_and_reads_large_headers(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, n_slices=1, rows=8, columns=8)
    ds = pydicom.dcmread(path)
    # a header larger than the first read: 100 kB of private text
    block = ds.private_block(0x0011, "MEDVIEWER TEST", create=True)
    block.add_new(0x01, "UT", "x" * 100_000)
    ds.save_as(path)
    entry = read_entry(str(path))
    assert entry.header[0x00110010].value == "MEDVIEWER TEST"
    assert len(entry.header[0x00111001].value) == 100_000
    ref, loc = _pydicom_header(path.read_bytes())
    assert entry.pixels is not None and loc is not None and entry.pixels.offset == loc.offset
    _same(entry.header, ref, "large header")
