"""Atomic writes: no partial files, no silent overwrite, clear errors on a full or read-only disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from medviewer.errors import ExportError
from medviewer.report.atomic import AtomicExportDir, write_bytes, write_text


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_write_bytes_creates_and_refuses_overwrite(tmp_path: Path) -> None:
    p = write_bytes(tmp_path / "a.bin", b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(ExportError, match="already exists"):
        write_bytes(p, b"two")
    assert p.read_bytes() == b"one"
    write_bytes(p, b"two", overwrite=True)
    assert p.read_bytes() == b"two"
    assert _listing(tmp_path) == ["a.bin"]  # no temporary file left


def test_full_disk_gives_clear_error_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ExportError, match="disk is full") as info:
        write_text(tmp_path / "report.json", "{}")
    assert "report.json" in str(info.value)
    monkeypatch.undo()
    assert _listing(tmp_path) == []


def test_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def ro_open(path: object, flags: int, *args: object) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", ro_open)
    with pytest.raises(ExportError, match="read-only"):
        write_bytes(tmp_path / "x.dcm", b"data")
    monkeypatch.undo()
    assert _listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_by_permissions(tmp_path: Path) -> None:  # pragma: no cover - CI runs as root here
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="permission denied"):
            write_bytes(ro / "x", b"1")
        with pytest.raises(ExportError):
            with AtomicExportDir(ro / "out"):
                pass
    finally:
        ro.chmod(0o755)


def test_export_dir_appears_at_once(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with AtomicExportDir(dest) as d:
        write_text(d.path / "a.txt", "a")
        (d.path / "sub").mkdir()
        write_text(d.path / "sub" / "b.txt", "b")
        assert not dest.exists() and d.path.name.startswith(".partial-out-")
        final = d.commit()
    assert final == dest.absolute()
    assert _listing(tmp_path) == ["out", "out/a.txt", "out/sub", "out/sub/b.txt"]


def test_export_dir_error_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with AtomicExportDir(tmp_path / "out") as d:
            write_text(d.path / "a.txt", "a")
            raise RuntimeError("boom")
    assert _listing(tmp_path) == []


def test_export_dir_refuses_non_empty_destination(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    write_text(dest / "old.txt", "old")
    with pytest.raises(ExportError, match="not empty"):
        AtomicExportDir(dest)
    assert (dest / "old.txt").read_text() == "old"
    # an empty existing folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    with AtomicExportDir(empty) as d:
        write_text(d.path / "n.txt", "n")
        d.commit()
    assert _listing(empty) == ["n.txt"]


def test_export_dir_overwrite_replaces_content(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    write_text(dest / "old.txt", "old")
    with AtomicExportDir(dest, overwrite=True) as d:
        write_text(d.path / "new.txt", "new")
        d.commit()
    assert _listing(tmp_path) == ["out", "out/new.txt"]
