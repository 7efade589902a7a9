"""Per-lesion audit of the detector evaluation (sizes, conspicuity, which lesions were found)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from medviewer.training import froc as frocm
from medviewer.training import lesion_audit as la
from medviewer.volume import Volume


@dataclass
class _Case:
    name: str
    volume: Volume
    centers_mm: np.ndarray
    diameters_mm: np.ndarray
    kinds: list[str] = field(default_factory=list)

    @property
    def truth(self) -> frocm.ScanTruth:
        return frocm.ScanTruth(self.centers_mm, self.diameters_mm)


def _case() -> _Case:
    rng = np.random.default_rng(0)
    vox = rng.normal(40.0, 10.0, (5, 96, 96)).astype(np.float32)
    yy, xx = np.mgrid[0:96, 0:96]
    vox[:, np.hypot(yy - 30, xx - 30) <= 8] -= 40.0  # 16 mm hypodense, conspicuity ~4
    vox[:, np.hypot(yy - 70, xx - 70) <= 2.5] += 5.0  # 5 mm faint, conspicuity ~0.5
    vol = Volume(vox, spacing=(2.0, 1.0, 1.0))
    centers = np.array([vol.index_to_patient((2, 30, 30)), vol.index_to_patient((2, 70, 70))])
    return _Case("real-CT_small.dcm-0-1000000-24", vol, centers, np.array([16.0, 5.0]), ["liver_hypo", "liver_hyper"])


def test_contrast_and_ring_sd_are_measured_on_the_volume():
    case = _case()
    c, sd = la.lesion_contrast(case.volume, case.centers_mm[0], 16.0)
    assert c == pytest.approx(-40.0, abs=4.0)
    assert sd == pytest.approx(10.0, abs=2.0)


def test_rows_record_the_best_hit_and_tables_bin_the_lesions():
    case = _case()
    det = frocm.ScanDetections(np.array([case.centers_mm[0] + [1.0, 0, 0], case.centers_mm[0], [0.0, 0.0, 0.0]]),
                               np.array([0.7, 0.4, 0.9]))
    rows = la.lesion_rows([case], [det], lambda name: "CT_small")
    assert [r["best_confidence"] for r in rows] == [0.7, None]  # the far candidate hits nothing
    assert rows[0]["source"] == "CT_small" and rows[0]["kind"] == "liver_hypo" and rows[0]["diameter_mm"] == 16.0
    summary = la.summarize(rows)
    by_d = {tuple(b["bin"]): (b["n"], b["candidate"], b["shown"]) for b in summary["by_diameter_mm"]}
    assert by_d[(0.0, 6.0)] == (1, 0, 0) and by_d[(10.0, 20.0)] == (1, 1, 1)
    assert sum(b["n"] for b in summary["by_conspicuity"]) == 2
    assert [b["n"] for b in summary["by_ring_sd_hu"]] == [2, 0]  # both in uniform tissue, none against bone or air
    assert la.conspicuity(rows[0]) > 2.0
    md = "\n".join(la.markdown({"real-background": summary}, [rows[1]]))
    assert "| 10-20 mm | 1/1 (1.00) · 1/1 (1.00) |" in md
    assert "| 0-150 HU (within tissue) | 1/2 (0.50) · 1/2 (0.50) |" in md and "| >= 150 HU (against bone or air) | - |" in md
    assert "| CT_small | liver_hyper | 5.0 |" in md and md.rstrip().endswith("| - |")
