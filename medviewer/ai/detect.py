"""Lesion detection on a CT volume: ``detect_lesions``.

The volume is resampled to the network's internal spacing
(:data:`medviewer.ai.detector.INTERNAL_SPACING`), run through
:class:`~medviewer.ai.detector.LesionNet` slice batch by slice batch (cancel
is checked between batches), candidate lesions are extracted in 3D from the
centre heat map and the segmentation map, their scores are calibrated with the
temperature fitted at training time (model card ``"calibration"``), and
everything is mapped back to the source grid and patient coordinates. The
card's ``"inference"`` entry may add passes on the left-right mirror image and
on a finer in-plane grid (:mod:`medviewer.ai.detect_passes`).

No Qt here; the GUI calls this from a worker thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage
from scipy.special import expit

from medviewer.ai.detector import CONTEXT, INTERNAL_SPACING, OUTPUT_STRIDE, SIZE_MULTIPLE, LesionNet, build_model, normalize_hu
from medviewer.ai.device import describe_device, resolve_device
from medviewer.ai.results import DetectionResult, Finding, ModelInfo
from medviewer.ai.weights import load_state_into, load_weights, weights_path
from medviewer.errors import ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.volume import Volume

MODEL_NAME = "detector"
DISPLAY_NAME = "medviewer-lesion-detector"
#: Slices per encoder/decoder batch on the CPU (GPU: 4x); cancel is checked between batches.
SLICE_BATCH = 4
#: Use channels_last for the convolutions on the CPU (STYLE.md section 7).
CHANNELS_LAST = True
#: Candidates whose raw centre probability is below this are not considered.
MIN_PEAK_PROB = 0.02
#: At most this many candidates per volume.
MAX_CANDIDATES = 100


# --------------------------------------------------------------------------- model loading
_CACHE: dict[tuple[str, str], tuple[LesionNet, dict[str, Any]]] = {}
_CACHE_LOCK = threading.Lock()


def load_detector(folder: Path | None = None) -> tuple[LesionNet, dict[str, Any]]:
    """Load the shipped detector and its model card (cached per weight file + hash).

    Parameters
    ----------
    folder : Path, optional
        Models folder; default ``resources/models``.

    Returns
    -------
    model : LesionNet
        In eval mode, on the CPU.
    card : dict
        The model card.

    Raises
    ------
    ModelError
        Weights or card missing, corrupt, or not matching the architecture.
    """
    tensors, card = load_weights(MODEL_NAME, folder)
    key = (str(weights_path(MODEL_NAME, folder).resolve()), str(card.get("sha256", "")))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        cfg = card.get("config")
        if cfg is not None and not isinstance(cfg, dict):
            raise ModelError(f"model card of {MODEL_NAME} has an invalid 'config' entry")
        try:
            model = build_model(cfg)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model card of {MODEL_NAME} has an invalid 'config' entry: {exc}") from exc
        load_state_into(model, tensors, str(weights_path(MODEL_NAME, folder)))
        model.eval()
        _CACHE.clear()
        _CACHE[key] = (model, card)
        return model, card


def calibrate(logit: NDArray[np.floating[Any]] | float, calibration: dict[str, Any] | None) -> Any:
    """Calibrated probability ``sigmoid(logit / T + b)`` from a card's ``"calibration"``."""
    cal = calibration or {}
    t = float(cal.get("temperature", 1.0))
    b = float(cal.get("bias", 0.0))
    z = np.asarray(logit, dtype=np.float64) / max(t, 1e-6) + b
    out = expit(z)
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------- resampling
def internal_shape(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Grid size at the internal spacing covering the same extent (in-plane sizes even)."""
    out = []
    for ax, (n, s, t) in enumerate(zip(shape, spacing, INTERNAL_SPACING)):
        m = max(1, int(round(n * s / t)))
        if ax > 0:
            m = max(SIZE_MULTIPLE, 2 * int(round(m / 2)))
        out.append(m)
    return out[0], out[1], out[2]


def _resample(t: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Resample a ``(Z, Y, X)`` tensor to ``size`` (extent-preserving, align_corners=False).

    In-plane uses antialiased bilinear when shrinking; z uses linear interpolation.
    """
    z, y, x = t.shape
    if (y, x) != size[1:]:
        shrink = size[1] < y or size[2] < x
        t = F.interpolate(t[:, None], size=size[1:], mode="bilinear", align_corners=False, antialias=shrink)[:, 0]
    if z != size[0]:
        zz = t.permute(1, 2, 0).reshape(1, -1, z)
        zz = F.interpolate(zz, size=size[0], mode="linear", align_corners=False)
        t = zz.reshape(size[1], size[2], size[0]).permute(2, 0, 1).contiguous()
    return t


def _index_map(n_from: int, n_to: int, idx: NDArray[np.floating[Any]] | float) -> Any:
    """Map a (fractional) index of an ``n_from`` grid to an ``n_to`` grid over the same extent."""
    return (np.asarray(idx, dtype=np.float64) + 0.5) * (n_to / n_from) - 0.5


# --------------------------------------------------------------------------- network
def stack_context(x: torch.Tensor, context: int = CONTEXT) -> torch.Tensor:
    """``(S, W, H, X)`` -> ``(S, (2*context+1) * W, H, X)``: neighbouring slices as channels.

    ``x`` holds ``W`` windows per slice (from :func:`normalize_hu`); slices
    beyond the ends are replicated. Channel order is slice-major.
    """
    s = x.shape[0]
    idx = torch.arange(s)[:, None] + torch.arange(-context, context + 1)[None, :]
    idx = idx.clamp(0, s - 1)
    return x[idx.to(x.device)].flatten(1, 2)


def predict_maps(
    model: LesionNet,
    hu: NDArray[np.floating[Any]] | torch.Tensor,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    slice_batch: int = SLICE_BATCH,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Run the network on a volume already at the internal spacing.

    Parameters
    ----------
    model : LesionNet
    hu : ndarray or Tensor
        ``(S, H, W)`` HU volume at :data:`INTERNAL_SPACING`; H and W are padded
        to a multiple of 8 here.
    device : torch.device or str, optional
    progress, cancel : callbacks
        Cancel is checked between slice batches and every few GRU steps.
    slice_batch : int

    Returns
    -------
    seg_logit, heat_logit : ndarray
        ``(S, ceil(H/2), ceil(W/2))`` float32 logits.
    offset : ndarray
        ``(S, 3, ceil(H/2), ceil(W/2))`` float32 centre offsets (output voxels).
    """
    x = torch.as_tensor(np.asarray(hu, dtype=np.float32) if not isinstance(hu, torch.Tensor) else hu, dtype=torch.float32)
    dev = resolve_device(device)
    prog = Progress(progress)
    s, h, w = x.shape
    ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
    xn = normalize_hu(x, model.windows)  # (S, windows, H, W)
    if ph or pw:
        xn = F.pad(xn, (0, pw, 0, ph), mode="replicate")
    oh, ow = (h + 1) // OUTPUT_STRIDE, (w + 1) // OUTPUT_STRIDE
    model = model.to(dev)
    use_amp = dev.type == "cuda"
    # channels_last helps the wide encoder/decoder convolutions on the CPU; the recurrent
    # cell runs on one slice at a time and is fastest in the default layout
    channels_last = dev.type == "cpu" and CHANNELS_LAST
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs lack memory_format
    model.gru.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    if dev.type == "cuda":
        slice_batch *= 4
    n_batches = max(1, math.ceil(s / slice_batch))
    total_steps = 2 * n_batches + 2 * s
    done = 0

    def tick(msg: str) -> None:
        prog(done / total_steps, msg)

    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
        e1s, e2s, e3s = [], [], []
        for b0 in range(0, s, slice_batch):
            check_cancel(cancel, "lesion detection")
            idx = torch.arange(b0, min(s, b0 + slice_batch))
            ctx = idx[:, None] + torch.arange(-model.context, model.context + 1)[None, :]
            inp = xn[ctx.clamp(0, s - 1)].flatten(1, 2).to(dev)  # (B, context * windows, H, W)
            inp = inp.contiguous(memory_format=fmt)
            e1, e2, e3 = model.encode(inp)
            e1s.append(e1)
            e2s.append(e2)
            e3s.append(e3.contiguous())
            done += 1
            tick("detector: encoding slices")
        e3 = torch.cat(e3s)
        gru = model.gru
        hf = e3.new_zeros((1, gru.hidden, *e3.shape[-2:]))
        hb = hf.clone()
        fwd: list[torch.Tensor] = []
        bwd: list[torch.Tensor | None] = [None] * s
        for k in range(s):
            if k % 8 == 0:
                check_cancel(cancel, "lesion detection")
            hf = gru.fwd(e3[k : k + 1], hf)
            fwd.append(hf)
            done += 1
        tick("detector: recurrent pass along z")
        for k in range(s - 1, -1, -1):
            if k % 8 == 0:
                check_cancel(cancel, "lesion detection")
            hb = gru.bwd(e3[k : k + 1], hb)
            bwd[k] = hb
            done += 1
        tick("detector: recurrent pass along z")
        g = torch.cat([torch.cat([f, b], dim=1) for f, b in zip(fwd, bwd)], dim=0)  # type: ignore[list-item]
        outs = []
        for bi, b0 in enumerate(range(0, s, slice_batch)):
            check_cancel(cancel, "lesion detection")
            b1 = min(s, b0 + slice_batch)
            out = model.decode(e1s[bi], e2s[bi], e3[b0:b1].contiguous(memory_format=fmt), g[b0:b1].contiguous(memory_format=fmt))
            outs.append(out[:, :, :oh, :ow].float().cpu())
            done += 1
            tick("detector: decoding slices")
    out_all = torch.cat(outs).numpy()
    return np.ascontiguousarray(out_all[:, 0]), np.ascontiguousarray(out_all[:, 1]), np.ascontiguousarray(out_all[:, 2:])


def predict_maps_tta(
    model: LesionNet,
    hu: NDArray[np.floating[Any]] | torch.Tensor,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    flip_tta: bool = True,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """:func:`predict_maps`, optionally with left-right flip test-time augmentation.

    With ``flip_tta`` the network also runs on the left-right mirrored volume;
    the mirrored outputs are flipped back (the x component of the centre
    offset changes sign) and the two logit maps and offsets are averaged.
    Training used left-right flips as augmentation, so both passes see
    in-distribution data and the average has less variance (on validation
    phantoms the CPM rose by 0.02-0.06). It needs an even width (always true
    on the internal grid, see :func:`internal_shape`) and is skipped
    otherwise. It doubles the network time.

    Parameters and returns as for :func:`predict_maps`.
    """
    x = np.asarray(hu.detach().cpu().numpy() if isinstance(hu, torch.Tensor) else hu, dtype=np.float32)
    if not flip_tta or x.shape[-1] % 2:
        return predict_maps(model, x, device, progress, cancel)
    prog = Progress(progress)
    seg_a, heat_a, off_a = predict_maps(model, x, device, prog.sub(0.0, 0.5).__call__, cancel)
    seg_b, heat_b, off_b = predict_maps(model, np.ascontiguousarray(x[..., ::-1]), device, prog.sub(0.5, 1.0).__call__, cancel)
    off_b = np.array(off_b[..., ::-1], dtype=np.float32)
    off_b[:, 2] *= -1.0
    seg = 0.5 * (seg_a + seg_b[..., ::-1])
    heat = 0.5 * (heat_a + heat_b[..., ::-1])
    off = 0.5 * (off_a + off_b)
    return np.ascontiguousarray(seg, np.float32), np.ascontiguousarray(heat, np.float32), np.ascontiguousarray(off, np.float32)


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """A 3D lesion candidate on the network's output grid."""

    center: tuple[float, float, float]
    """Fractional (k, j, i) index on the output grid."""
    logit: float
    """Centre heat-map logit at the peak (ranking score before calibration)."""
    label: int
    """Label of the candidate in the label volume returned with it."""
    voxels: int
    """Voxels of the candidate's mask on the output grid."""
    mask_threshold: float


def extract_candidates(
    seg_prob: NDArray[np.floating[Any]],
    heat_logit: NDArray[np.floating[Any]],
    spacing: tuple[float, float, float],
    min_prob: float = MIN_PEAK_PROB,
    max_candidates: int = MAX_CANDIDATES,
    seg_threshold: float = 0.5,
    offset: NDArray[np.floating[Any]] | None = None,
) -> tuple[list[Candidate], NDArray[np.int32]]:
    """3D candidates from the centre heat map (peaks) and the segmentation map (extent).

    Peaks are 3D local maxima of the heat map within about +-5 mm whose
    probability is at least ``min_prob``. Each peak takes the connected
    component of ``seg_prob >= seg_threshold`` that contains it (or, for faint
    candidates, the component of ``seg_prob >= seg_prob[peak] / 2`` in a box
    around it); a peak falling inside a stronger candidate's mask is a
    duplicate and is dropped. The centre is the peak plus the predicted
    sub-voxel ``offset`` (``(S, 3, H, W)``, clipped to +-1 voxel) when given,
    else the heat-weighted centroid of the peak's 3x3x3 neighbourhood.

    Returns
    -------
    candidates : list of Candidate
        Sorted by decreasing logit.
    labels : ndarray of int32
        Label volume (``candidate.label``) on the output grid.
    """
    heat_logit = np.asarray(heat_logit, dtype=np.float32)
    seg_prob = np.asarray(seg_prob, dtype=np.float32)
    fz = max(1, int(round(5.0 / spacing[0])))
    fy = max(1, int(round(5.0 / spacing[1])))
    fx = max(1, int(round(5.0 / spacing[2])))
    size = (2 * fz + 1, 2 * fy + 1, 2 * fx + 1)
    local_max = ndimage.maximum_filter(heat_logit, size=size, mode="nearest")
    min_logit = math.log(min_prob / (1 - min_prob))
    peaks = np.argwhere((heat_logit == local_max) & (heat_logit >= min_logit))
    order = np.argsort(-heat_logit[tuple(peaks.T)], kind="stable")
    peaks = peaks[order]
    comp, _ = ndimage.label(seg_prob >= seg_threshold)
    labels = np.zeros(heat_logit.shape, dtype=np.int32)
    cands: list[Candidate] = []
    box = (max(2, int(round(15.0 / spacing[0]))), max(2, int(round(15.0 / spacing[1]))), max(2, int(round(15.0 / spacing[2]))))
    for p in peaks:
        if len(cands) >= max_candidates:
            break
        pk = tuple(int(v) for v in p)
        if labels[pk] != 0:
            continue
        lab = len(cands) + 1
        sl = tuple(slice(max(0, c - b), c + b + 1) for c, b in zip(pk, box))
        local_p = tuple(c - s.start for c, s in zip(pk, sl))
        cid = comp[pk]
        if cid != 0:
            region = comp[sl] == cid
            thr = seg_threshold
        else:
            thr = max(float(seg_prob[pk]) / 2.0, 0.02)
            sub, _ = ndimage.label(seg_prob[sl] >= thr)
            region = sub == sub[local_p] if sub[local_p] != 0 else np.zeros(sub.shape, bool)
            if not region.any():
                region[local_p] = True
        region &= labels[sl] == 0
        region[local_p] = True
        labels[sl][region] = lab
        if offset is not None:
            off = np.clip(np.asarray(offset[pk[0], :, pk[1], pk[2]], dtype=np.float64), -1.0, 1.0)
            centre = tuple(float(c + o) for c, o in zip(pk, off))
        else:  # heat-weighted centroid of the 3x3x3 neighbourhood of the peak
            nb = tuple(slice(max(0, c - 1), c + 2) for c in pk)
            wts = expit(heat_logit[nb].astype(np.float64))
            grid = np.indices(wts.shape).reshape(3, -1).T + np.array([s.start for s in nb])
            ww = wts.reshape(-1)
            centre = tuple(float(v) for v in (grid * ww[:, None]).sum(0) / max(ww.sum(), 1e-9))
        cands.append(Candidate(centre, float(heat_logit[pk]), lab, int(region.sum()), thr))  # type: ignore[arg-type]
    return cands, labels


# --------------------------------------------------------------------------- main API
def _check_volume(volume: Volume) -> None:
    if not isinstance(volume, Volume):
        raise ModelError(f"detect_lesions needs a medviewer Volume, got {type(volume).__name__}")
    if volume.is_rgb:
        raise ModelError("the lesion detector works on grey-scale CT in HU; this series is an RGB (colour) image")
    modality = (volume.metadata.modality or "").upper()
    if modality and modality != "CT":
        raise ModelError(f"the lesion detector is trained on CT only; this series is {modality}")
    if modality == "" and volume.metadata.units and volume.metadata.units.upper() != "HU":
        raise ModelError(f"the lesion detector needs CT in HU; this volume is in {volume.metadata.units}")
    if min(volume.shape) < 1 or volume.shape[1] < 8 or volume.shape[2] < 8:
        raise ModelError(f"the volume {volume.shape} is too small for the lesion detector")


def detect_lesions(
    volume: Volume,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    threads: int | None = None,
    models_folder: Path | None = None,
    min_confidence: float | None = None,
    masks: bool = True,
    max_findings: int = 50,
) -> DetectionResult:
    """Detect focal lesions in a CT volume.

    The model card's ``"inference"`` entry names the network passes (in-plane
    scales of the internal grid, left-right mirror images) whose outputs are
    averaged (:mod:`medviewer.ai.detect_passes`); the card's calibration was
    fitted on those same passes.

    Parameters
    ----------
    volume : Volume
        Grey-scale CT in HU, any spacing and orientation.
    device : str or torch.device, optional
        ``"auto"``/None (CUDA when present), ``"cpu"`` or ``"cuda"``.
    progress : callable, optional
        ``progress(fraction, message)``.
    cancel : callable, optional
        Returns True to stop; checked between slice batches (well under 1 s).
    threads : int, optional
        Torch CPU threads for this call (restored afterwards); the GUI passes
        ``cores - 1``.
    models_folder : Path, optional
        Where ``detector.safetensors`` / ``detector.json`` live.
    min_confidence : float, optional
        Findings below this calibrated confidence are dropped; default the
        card's ``"min_confidence"`` (0.05). Use 0 for FROC evaluation.
    masks : bool
        Build each finding's source-grid mask (and mean HU). Without masks the
        diameter comes from the internal grid.
    max_findings : int

    Returns
    -------
    DetectionResult
        Findings sorted by decreasing calibrated confidence, the confidence
        map (float32, source grid), the case-level abnormality score (maximum
        calibrated finding confidence) and the card's display threshold.

    Raises
    ------
    ModelError
        Missing/corrupt weights, or a volume that is not grey-scale CT.
    CancelledError
        ``cancel()`` returned True.

    Examples
    --------
    >>> from medviewer.ai.detect import detect_lesions  # doctest: +SKIP
    >>> result = detect_lesions(volume, device="cpu")  # doctest: +SKIP
    >>> [round(f.confidence, 2) for f in result.findings]  # doctest: +SKIP
    """
    _check_volume(volume)
    prog = Progress(progress)
    t0 = time.perf_counter()
    model, card = load_detector(models_folder)
    dev = resolve_device(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        check_cancel(cancel, "lesion detection")
        prog(0.0, "detector: resampling")
        src = np.asarray(volume.voxels, dtype=np.float32)
        if not np.isfinite(src).all():
            src = np.nan_to_num(src, nan=-1000.0, posinf=3000.0, neginf=-1000.0)
        from medviewer.ai.detect_passes import inference_passes, pass_json, passes_candidates  # it builds on this module

        passes = inference_passes(card)
        prog(0.05, "detector: running the network")
        cands, labels, seg_prob, ospacing = passes_candidates(
            model, src, volume.spacing, passes, dev, prog.sub(0.05, 0.9).__call__, cancel
        )
        oshape = seg_prob.shape
        calibration = card.get("calibration")
        min_conf = float(card.get("min_confidence", 0.05)) if min_confidence is None else float(min_confidence)
        confs = [calibrate(c.logit, calibration) for c in cands]
        abnormality = float(max(confs)) if confs else 0.0
        check_cancel(cancel, "lesion detection")
        with torch.inference_mode():
            conf_map = _resample(torch.from_numpy(seg_prob), volume.shape).clamp_(0, 1).numpy().astype(np.float32)
        prog(0.92, "detector: mapping findings to the source grid")
        keep = [(c, p) for c, p in zip(cands, confs) if p >= min_conf][:max_findings]
        findings: list[Finding] = []
        for c, p in keep:
            check_cancel(cancel, "lesion detection")
            findings.append(_to_finding(volume, src, c, p, labels, conf_map, oshape, ospacing, masks))  # type: ignore[arg-type]
        findings.sort(key=lambda f: -f.confidence)
        for i, f in enumerate(findings, start=1):
            f.id = i
        prog(1.0, "detector: done")
        return DetectionResult(
            series_uid=volume.metadata.series_uid,
            model=ModelInfo(name=DISPLAY_NAME, version=str(card.get("version", "0"))),
            findings=findings,
            confidence=conf_map,
            abnormality_score=abnormality,
            threshold=float(card.get("threshold", 0.5)),
            device=describe_device(dev),
            extra={
                "seconds": time.perf_counter() - t0,
                "flip_tta": any(p.flip for p in passes),
                "passes": [pass_json(p) for p in passes],
                "output_shape": list(oshape),
                "n_candidates": len(cands),
            },
        )
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)


def _to_finding(
    volume: Volume,
    src: NDArray[np.float32],
    cand: Candidate,
    conf: float,
    labels: NDArray[np.int32],
    conf_map: NDArray[np.float32],
    oshape: tuple[int, int, int],
    ospacing: tuple[float, float, float],
    masks: bool,
) -> Finding:
    shape = volume.shape
    centre = tuple(float(_index_map(no, ns, c)) for no, ns, c in zip(oshape, shape, cand.center))
    centre = tuple(float(np.clip(c, 0, n - 1)) for c, n in zip(centre, shape))
    where = np.argwhere(labels == cand.label)
    lo_o, hi_o = where.min(0), where.max(0)
    mask = None
    mean_hu = None
    if masks:
        # bounding box of the candidate on the source grid
        lo_s = [max(0, int(math.floor(_index_map(no, ns, lo - 0.5)))) for no, ns, lo in zip(oshape, shape, lo_o)]
        hi_s = [min(ns - 1, int(math.ceil(_index_map(no, ns, hi + 0.5)))) for no, ns, hi in zip(oshape, shape, hi_o)]
        sl = tuple(slice(a, b + 1) for a, b in zip(lo_s, hi_s))
        # nearest output voxel of every source voxel in the box
        idx = [
            np.clip(np.floor((np.arange(a, b + 1) + 0.5) * (no / ns)).astype(np.int64), 0, no - 1)
            for a, b, no, ns in zip(lo_s, hi_s, oshape, shape)
        ]
        lab_nn = labels[np.ix_(*idx)] == cand.label
        sub = lab_nn & (conf_map[sl] >= min(cand.mask_threshold, 0.5))
        if not sub.any():
            sub = lab_nn
        mask = np.zeros(shape, dtype=bool)
        mask[sl] = sub
        if not mask.any():
            mask[tuple(int(round(c)) for c in centre)] = True
        n_vox = int(mask.sum())
        vol_mm3 = n_vox * float(np.prod(volume.spacing))
        mean_hu = float(src[mask].mean())
        ks = np.nonzero(mask.any(axis=(1, 2)))[0]
        slice_range = (int(ks.min()), int(ks.max()))
    else:
        vol_mm3 = cand.voxels * float(np.prod(ospacing))
        k0 = int(math.floor(_index_map(oshape[0], shape[0], lo_o[0] - 0.5) + 0.5))
        k1 = int(math.ceil(_index_map(oshape[0], shape[0], hi_o[0] + 0.5) - 0.5))
        slice_range = (max(0, k0), min(shape[0] - 1, max(k0, k1)))
    diameter = float((6.0 * vol_mm3 / math.pi) ** (1.0 / 3.0))
    center_mm = tuple(float(v) for v in volume.index_to_patient(centre))
    return Finding(
        id=0,
        center_mm=center_mm,  # type: ignore[arg-type]
        center_index=centre,  # type: ignore[arg-type]
        diameter_mm=diameter,
        slice_range=slice_range,
        confidence=float(np.clip(conf, 0.0, 1.0)),
        mask=mask,
        mean_hu=mean_hu,
    )


__all__ = [
    "MODEL_NAME",
    "DISPLAY_NAME",
    "load_detector",
    "calibrate",
    "internal_shape",
    "stack_context",
    "predict_maps",
    "predict_maps_tta",
    "Candidate",
    "extract_candidates",
    "detect_lesions",
]
