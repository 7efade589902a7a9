"""The Logic/Widget split: only medviewer.gui may import Qt (STYLE.md section 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contract_holds():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    proc = subprocess.run(cmd + ["--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout


def test_core_packages_import_without_qt():
    code = (
        "import sys, medviewer.volume, medviewer.errors, medviewer.dicom, medviewer.ai, "
        "medviewer.training, medviewer.report, medviewer.cli;"
        "bad=[m for m in sys.modules if m.startswith(('PySide6','pyqtgraph','medviewer.gui'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
