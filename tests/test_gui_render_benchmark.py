"""benchmarks/render.py stays runnable (tiny size, offscreen; the figures are not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

ROOT = Path(__file__).resolve().parent.parent


def test_render_benchmark_runs_tiny():
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "render.py"),
        "--slices", "4", "--size", "64", "--frames", "6", "--stall-seconds", "0.3", "--no-torch",
    ]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for needle in ("1x1:", "1x3:", "peer: bare pyqtgraph", "ratio viewer 1x1 / peer", "first slice on screen",
                   "worst GUI stall while loading", "with a worker computing"):
        assert needle in out, out
