"""benchmarks/load_series.py stays runnable (tiny size; the figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_load_series_benchmark_runs_small() -> None:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "load_series.py"),
        "--slices", "3", "--size", "32", "--repeat", "1", "--methods", "medviewer,simpleitk",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "ratio medviewer / simpleitk" in out and "uncompressed vs SimpleITK" in out
    assert "peak memory RLE" in out and "error" not in out
