"""The native-resolution selection phantoms: where candidate detectors are chosen, apart from the test volumes.

``medviewer evaluate detector --selection`` scores a detector folder (its weights,
passes and calibration as ``detect_lesions`` runs them) on 20 phantoms from the
held-out generator rendered at a native body-CT pixel: 40 x 512 x 512 at 0.7 mm,
seeds :data:`SELECTION_SEED0` + i, every fifth lesion-free. The internal-grid
validation phantoms cannot show what a pass finer than the 1.4 mm grid gains
(they are generated at that grid, so a finer pass sees interpolated pixels);
these can. Their seeds are apart from the test phantoms (1,000,000+), the native
calibration phantoms (3,000,000+, :mod:`medviewer.training.recalibrate_detector`)
and every training and validation seed (below 100,000), so a rule can choose
among candidates here and run only its pick on the test volumes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from medviewer.progress import ProgressFn, Progress
from medviewer.resources import cache_dir
from medviewer.training import froc as frocm
from medviewer.training.evaluate_detector import EvalCase, phantom_cases, run_detector

SELECTION_SEED0 = 2_000_000
"""Seeds of the selection phantoms (apart from every test, calibration, training and validation seed)."""
SELECTION_N = 20
SELECTION_SHAPE: tuple[int, int, int] = (40, 512, 512)
SELECTION_SPACING: tuple[float, float, float] = (2.5, 0.7, 0.7)


def selection_cases(
    n: int = SELECTION_N,
    shape: tuple[int, int, int] = SELECTION_SHAPE,
    spacing: tuple[float, float, float] = SELECTION_SPACING,
    progress: ProgressFn | None = None,
    cache: Path | None = None,
) -> list[EvalCase]:
    """The selection phantoms (generated once, then read from the cache)."""
    folder = cache if cache is not None else cache_dir() / "detector_native_selection"
    return phantom_cases(n, SELECTION_SEED0, shape, spacing, progress, None, folder)


def score_selection(
    weights: Path | None, cases: list[EvalCase], device: str | None = "cpu", progress: ProgressFn | None = None
) -> dict[str, Any]:
    """FROC of the detector in ``weights`` (default: the shipped one) on ``cases``: CPM and sensitivities."""
    t0 = time.perf_counter()
    r = run_detector(cases, device=device, progress=progress, folder=weights)
    res = frocm.froc([c.truth for c in cases], r["dets"])
    return {
        "weights": str(weights) if weights is not None else "resources/models",
        "cpm": round(float(res.cpm), 4),
        "sensitivity_at_fp": {str(k): round(float(v), 4) for k, v in res.sens_at.items()},
        "n_volumes": len(cases),
        "n_lesions": int(sum(len(c.diameters_mm) for c in cases)),
        "n_lesions_under_6mm": int(sum(int((c.diameters_mm < 6.0).sum()) for c in cases)),
        "seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main_selection(out: Path, weights: Path | None, device: str | None, progress: ProgressFn | None = None, n: int = SELECTION_N) -> dict[str, Any]:
    """Score ``weights`` on the selection phantoms; write ``out/selection.json`` and return it."""
    prog = Progress(progress)
    cases = selection_cases(n, progress=prog.sub(0.0, 0.5))
    result = score_selection(weights, cases, device, prog.sub(0.5, 1.0))
    result["set"] = (f"{n} phantoms {'x'.join(map(str, SELECTION_SHAPE))} at {SELECTION_SPACING[1]:g} mm, seeds "
                     f"{SELECTION_SEED0}..{SELECTION_SEED0 + n - 1}, every fifth lesion-free")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".selection.json.partial"
    tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    os.replace(tmp, out / "selection.json")
    return result


__all__ = ["SELECTION_SEED0", "SELECTION_N", "SELECTION_SHAPE", "SELECTION_SPACING", "selection_cases", "score_selection", "main_selection"]
