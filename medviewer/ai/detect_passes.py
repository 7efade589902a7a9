"""Test-time passes of the lesion detector: in-plane scales, left-right flips and shifts.

The network runs on a grid of :data:`~medviewer.ai.detector.INTERNAL_SPACING`
(1.4 mm in-plane). A lesion of 5 mm then spans under four pixels, and its
centre heat-map peak is weak. A second pass on a finer in-plane grid (scale
``s``: pixel ``1.4 / s`` mm) shows the same network the lesion larger, within
the range of sizes it was trained on; the two passes' outputs are brought to
the finest pass's output grid and averaged, as the flip pass is. The model
card lists the passes (``"inference": {"passes": [{"scale": 1.0, "flip":
true}, {"scale": 1.2, "flip": false}]}``); a card with only ``"flip_tta"``
means one pass at scale 1. The calibration is fitted on the same passes.

A pass may also shift the grid by an even number of internal pixels in both
in-plane directions (``"shift": 4``). The encoder downsamples by 8, so its
response depends on where a lesion falls against that lattice; a shifted
pass sees the volume at another phase. The outputs (stride 2) are shifted
back exactly, by ``shift / 2`` output pixels. (Averaging a shift-4 pass did
not raise 1.8.0's validation CPM: docs/detector_evaluation.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from scipy.special import expit

from medviewer.ai.detect import Candidate, _resample, extract_candidates, internal_shape, predict_maps_tta
from medviewer.ai.detector import LesionNet
from medviewer.errors import ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

#: Finest in-plane scale accepted from a card (4x the pixels of scale 1 at 2.0).
MAX_SCALE = 2.0
#: Largest in-plane shift (internal pixels) accepted from a card: the encoder's lattice repeats every 8.
MAX_SHIFT = 14


@dataclass(frozen=True)
class Pass:
    """One network pass: in-plane scale of the internal grid, whether its mirror image runs too, and its shift."""

    scale: float = 1.0
    flip: bool = False
    shift: int = 0
    """Even in-plane shift in internal pixels (rows and columns alike); the outputs are shifted back."""

    def spec(self) -> str:
        """The pass as ``medviewer calibrate detector --passes`` writes it (``1:flip:shift4``)."""
        return f"{self.scale:g}" + (":flip" if self.flip else "") + (f":shift{self.shift}" if self.shift else "")


def pass_json(p: Pass) -> dict[str, Any]:
    """A pass as the card stores it (``shift`` only when there is one, so older cards stay as they were)."""
    out: dict[str, Any] = {"scale": p.scale, "flip": p.flip}
    if p.shift:
        out["shift"] = p.shift
    return out


def inference_passes(card: dict[str, Any]) -> list[Pass]:
    """The passes a model card asks for (default: one pass at scale 1, flipped when ``"flip_tta"``)."""
    inf = card.get("inference") or {}
    if not isinstance(inf, dict):
        raise ModelError("the detector's model card has an invalid 'inference' entry")
    raw = inf.get("passes")
    if raw is None:
        return [Pass(1.0, bool(inf.get("flip_tta", False)))]
    try:
        passes = [Pass(float(p["scale"]), bool(p.get("flip", False)), int(p.get("shift", 0))) for p in raw]
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelError(f"the detector's model card has invalid inference passes: {raw!r}") from exc
    if not passes or any(not (0.5 <= p.scale <= MAX_SCALE) for p in passes):
        raise ModelError(f"the detector's inference passes need scales in [0.5, {MAX_SCALE}]: {raw!r}")
    if any(p.shift % 2 or not (0 <= p.shift <= MAX_SHIFT) for p in passes):
        raise ModelError(f"the detector's inference passes need even shifts in [0, {MAX_SHIFT}]: {raw!r}")
    return passes


def passes_json(passes: list[Pass]) -> dict[str, Any]:
    """The card's ``"inference"`` entry for ``passes`` (``flip_tta`` kept for older readers)."""
    return {
        "flip_tta": bool(passes[0].flip) if len(passes) == 1 else any(p.flip for p in passes),
        "passes": [pass_json(p) for p in passes],
    }


def pass_grid(shape: tuple[int, int, int], spacing: tuple[float, float, float], scale: float) -> tuple[int, int, int]:
    """Grid of a pass: the internal grid with its in-plane pixel divided by ``scale``."""
    return internal_shape(shape, (spacing[0], spacing[1] * scale, spacing[2] * scale))


def _to_grid(
    seg: NDArray[np.float32], heat: NDArray[np.float32], off: NDArray[np.float32], size: tuple[int, int]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Bilinear in-plane resampling of one pass's outputs to the output grid ``size`` (rows, cols).

    Offsets are in output voxels, so their in-plane components scale with the grid.
    """
    h, w = seg.shape[1:]
    if (h, w) == size:
        return seg, heat, off
    with torch.inference_mode():
        stacked = torch.from_numpy(np.concatenate([seg[:, None], heat[:, None], off], axis=1))
        maps = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False).numpy()
    out_off = np.array(maps[:, 2:], dtype=np.float32)
    out_off[:, 1] *= size[0] / h
    out_off[:, 2] *= size[1] / w
    return np.ascontiguousarray(maps[:, 0]), np.ascontiguousarray(maps[:, 1]), out_off


def _shifted(
    model: LesionNet,
    hu: NDArray[np.float32],
    p: Pass,
    device: torch.device | str | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """One pass on ``hu`` shifted by ``p.shift`` pixels down and right (edge values fill in); outputs shifted back."""
    k = p.shift
    h, w = hu.shape[1:]
    padded = np.pad(hu, ((0, 0), (k, 0), (k, 0)), mode="edge")
    seg, heat, off = predict_maps_tta(model, padded, device, progress, cancel, p.flip)
    o, oh, ow = k // 2, (h + 1) // 2, (w + 1) // 2
    crop = (slice(None), slice(o, o + oh), slice(o, o + ow))
    return (np.ascontiguousarray(seg[crop]), np.ascontiguousarray(heat[crop]),
            np.ascontiguousarray(off[(slice(None), slice(None), *crop[1:])]))


def predict_maps_passes(
    model: LesionNet,
    src: NDArray[np.float32] | torch.Tensor,
    spacing: tuple[float, float, float],
    passes: list[Pass],
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Network outputs of a volume averaged over ``passes``, on the finest pass's output grid.

    Parameters
    ----------
    model : LesionNet
    src : ndarray or Tensor
        ``(Z, Y, X)`` HU at ``spacing`` (the source volume, or one already at the internal spacing).
    spacing : (float, float, float)
        ``src``'s voxel spacing (z, y, x) in mm.
    passes : list of Pass
    device, progress, cancel :
        As for :func:`~medviewer.ai.detect.predict_maps`.

    Returns
    -------
    seg_logit, heat_logit, offset :
        As for :func:`~medviewer.ai.detect.predict_maps`, on the output grid of
        the pass with the largest scale.
    """
    if not passes:
        raise ValueError("at least one detector pass is needed")
    t = torch.as_tensor(src, dtype=torch.float32) if not isinstance(src, torch.Tensor) else src.float()
    shape = (int(t.shape[0]), int(t.shape[1]), int(t.shape[2]))
    grids = [pass_grid(shape, spacing, p.scale) for p in passes]
    finest = max(range(len(passes)), key=lambda i: grids[i][1] * grids[i][2])
    prog = Progress(progress)
    weights = [float(g[0] * g[1] * g[2]) * (2 if p.flip else 1) for g, p in zip(grids, passes)]
    total, done = sum(weights), 0.0
    results = []
    for p, g, wt in zip(passes, grids, weights):
        with torch.inference_mode():
            hu = _resample(t, g).numpy()
        sub = prog.sub(done / total, (done + wt) / total).__call__
        results.append(_shifted(model, hu, p, device, sub, cancel) if p.shift else predict_maps_tta(model, hu, device, sub, cancel, p.flip))
        done += wt
    size = results[finest][0].shape[1:]
    acc_seg, acc_heat, acc_off = (np.zeros_like(a) for a in results[finest])
    for seg, heat, off in results:
        s2, h2, o2 = _to_grid(seg, heat, off, size)  # type: ignore[arg-type]
        acc_seg += s2
        acc_heat += h2
        acc_off += o2
    n = np.float32(len(results))
    return acc_seg / n, acc_heat / n, acc_off / n


def passes_candidates(
    model: LesionNet,
    src: NDArray[np.float32],
    spacing: tuple[float, float, float],
    passes: list[Pass],
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[list[Candidate], NDArray[np.int32], NDArray[np.float32], tuple[float, float, float]]:
    """Lesion candidates of ``src`` (``(Z, Y, X)`` HU at ``spacing``) through ``passes``.

    Returns
    -------
    candidates, labels :
        As for :func:`~medviewer.ai.detect.extract_candidates`, on the output grid.
    seg_prob : ndarray
        The averaged confidence map on the output grid.
    output_spacing : (float, float, float)
        Voxel size (mm) of the output grid, which covers ``src``'s extent.
    """
    prog = Progress(progress)
    seg_logit, heat_logit, offset = predict_maps_passes(model, src, spacing, passes, device, prog.sub(0.0, 0.95).__call__, cancel)
    check_cancel(cancel, "lesion detection")
    prog(0.95, "detector: extracting findings")
    seg_prob = expit(seg_logit).astype(np.float32)
    ospacing = tuple(n * s / m for n, s, m in zip(src.shape, spacing, seg_prob.shape))
    cands, labels = extract_candidates(seg_prob, heat_logit, ospacing, offset=offset)  # type: ignore[arg-type]
    return cands, labels, seg_prob, ospacing  # type: ignore[return-value]


__all__ = ["Pass", "MAX_SHIFT", "pass_json", "inference_passes", "passes_json", "pass_grid", "predict_maps_passes", "passes_candidates"]
