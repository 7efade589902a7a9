"""Robustness of the detector to CT noise (a section of ``medviewer evaluate detector``).

The held-out phantoms are noise-free. Here the same volumes get

* simulated CT noise of a quarter-dose scan (:func:`simulate_low_dose_volume`
  at the volume's pixel, seed ``7 + i`` for the i-th phantom): shaped by
  filtered back-projection, non-stationary, with streaks; and
* white Gaussian noise of the same SD inside the body (seed ``[i, 99]``),

and the detector is scored on each with the same FROC rule. The gap between
the two rows is what the texture of CT noise, not its amount, costs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.fileio import write_npz_atomic
from medviewer.progress import Progress, ProgressFn
from medviewer.training import froc as frocm

ROBUSTNESS_DOSE = 0.25
"""Dose fraction of the simulated CT noise (quarter dose)."""
CT_NOISE_SEED0 = 7


def _ct_noise(case: Any, i: int, cache: Path | None) -> NDArray[np.float32]:
    from medviewer.training.lowdose import simulate_low_dose_volume

    path = cache / f"{case.name}-ctnoise-d{ROBUSTNESS_DOSE:g}.npz" if cache is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                noise = z["noise"].astype(np.float32)
            if noise.shape == case.volume.shape:
                return noise
        except (OSError, ValueError, KeyError):
            pass
    vox = np.asarray(case.volume.voxels, np.float32)
    noise = simulate_low_dose_volume(vox, ROBUSTNESS_DOSE, pixel_mm=float(case.volume.spacing[1]), seed=CT_NOISE_SEED0 + i) - vox
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(path, noise=noise.astype(np.float16))
        noise = noise.astype(np.float16).astype(np.float32)  # as a later run reads it back
    return noise


def _with_voxels(case: Any, voxels: NDArray[np.float32]) -> Any:
    return replace(case, volume=replace(case.volume, voxels=voxels))


def noisy_cases(cases: list[Any], cache: Path | None = None, progress: ProgressFn | None = None) -> dict[str, tuple[list[Any], float]]:
    """``{"CT noise": (cases, SD), "white noise": (cases, SD)}``: the cases with each kind of noise added.

    The SD is the mean over cases of the noise SD inside the body (HU > -500).
    """
    prog = Progress(progress)
    ct, white, sds = [], [], []
    for i, case in enumerate(cases):
        vox = np.asarray(case.volume.voxels, np.float32)
        noise = _ct_noise(case, i, cache)
        sd = float(noise[vox > -500].std())
        sds.append(sd)
        ct.append(_with_voxels(case, vox + noise))
        rng = np.random.default_rng([i, 99])
        white.append(_with_voxels(case, vox + rng.normal(0.0, sd, vox.shape).astype(np.float32)))
        prog((i + 1) / len(cases), "noisy phantoms")
    mean_sd = float(np.mean(sds)) if sds else 0.0
    return {"CT noise": (ct, mean_sd), "white noise": (white, mean_sd)}


def noise_robustness(
    cases: list[Any],
    run_detector: Any,
    device: str | None,
    folder: Path | None,
    clean_cpm: float,
    cache: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """FROC CPM of the detector on ``cases`` with CT noise and with white noise (see the module docstring)."""
    prog = Progress(progress)
    sets = noisy_cases(cases, cache, prog.sub(0.0, 0.5))
    out: dict[str, Any] = {"dose": ROBUSTNESS_DOSE, "noise_free_cpm": round(clean_cpm, 4), "rows": []}
    truths = [c.truth for c in cases]
    for n, (name, (noisy, sd)) in enumerate(sets.items()):
        det = run_detector(noisy, device, prog.sub(0.5 + 0.25 * n, 0.75 + 0.25 * n), folder)
        r = frocm.froc(truths, det["dets"])
        out["rows"].append({"noise": name, "sd_hu_body": round(sd, 1), "cpm": round(r.cpm, 4),
                            "sensitivity_at_1_fp": round(r.sens_at.get(1.0, float("nan")), 4)})
    return out


def robustness_markdown(res: dict[str, Any]) -> list[str]:
    """The section's markdown lines."""
    lines = [
        "",
        "## Robustness to CT noise (held-out phantoms)",
        "",
        f"The held-out phantoms (noise-free) with simulated CT noise of a {res['dose']:g} dose scan, and with white noise "
        "of the same SD inside the body; same FROC rule.",
        "",
        "| noise | SD in the body (HU) | CPM | sens. at 1 FP/scan |",
        "|---|---|---|---|",
        f"| none | 0 | {res['noise_free_cpm']:.3f} | |",
    ]
    for row in res["rows"]:
        lines.append(f"| {row['noise']} | {row['sd_hu_body']:.1f} | {row['cpm']:.3f} | {row['sensitivity_at_1_fp']:.3f} |")
    return lines


__all__ = ["ROBUSTNESS_DOSE", "noisy_cases", "noise_robustness", "robustness_markdown"]
