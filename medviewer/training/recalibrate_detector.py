"""A detector's inference passes changed, weights unchanged (``medviewer calibrate detector``).

The calibration (temperature and offset on the centre heat-map logit) is
fitted for one inference pipeline: averaging a finer in-plane pass or a mirror
pass changes the logits (:mod:`medviewer.ai.detect_passes`). This re-fits it on
the same validation phantoms as a trained detector
(:func:`medviewer.training.train_detector.finalize`) and writes a model card
that keeps the training record and names the change. Other calibration sets:
phantoms at a native CT pixel (``--native``), and volumes built like the
real-background test volumes from image slices pooled with the validation
phantoms (``--images``, :func:`image_background_cases`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from medviewer.ai.detect import MODEL_NAME, _index_map
from medviewer.ai.detect_passes import Pass, inference_passes, passes_candidates, passes_json
from medviewer.ai.detector import LesionNet, build_model
from medviewer.ai.device import resolve_device
from medviewer.ai.weights import load_state_into, load_weights, save_weights
from medviewer.errors import ModelError
from medviewer.progress import Progress, ProgressFn
from medviewer.resources import cache_dir, models_dir
from medviewer.training import froc as frocm
from medviewer.training.detector_data import load_validation
from medviewer.training.train_detector import finalize, pooled_calibration
from medviewer.volume import Volume

#: Seeds of the native-resolution calibration phantoms (apart from the test phantoms' 1,000,000+ and
#: from every training and validation seed, which lie below 100,000).
NATIVE_SEED0 = 3_000_000
#: Shape and spacing of a native-resolution calibration phantom: a 512 x 512 body CT at 0.7 mm.
NATIVE_SHAPE: tuple[int, int, int] = (40, 512, 512)
NATIVE_SPACING: tuple[float, float, float] = (2.5, 0.7, 0.7)
#: First part of the seeds ``[IMAGE_SEED0, i]`` of the image-background calibration volumes (:func:`image_background_cases`).
IMAGE_SEED0 = 4_000_000
#: Pixels per side and mm per pixel of an image-background calibration volume's slices: a 512 x 512 CT at 0.7 mm.
IMAGE_GRID: tuple[int, float] = (512, 0.7)


def parse_pass(spec: str) -> Pass:
    """``"1.2"``, ``"1.0:flip"`` or ``"1.0:flip:shift4"``: an in-plane scale, its mirror pass, a grid shift."""
    scale, *flags = spec.split(":")
    flip, shift = False, 0
    for flag in flags:
        if flag == "flip" and not flip:
            flip = True
        elif flag.startswith("shift") and flag[5:].isdigit() and not shift:
            shift = int(flag[5:])
        else:
            raise ModelError(f"detector pass {spec!r}: write SCALE, SCALE:flip, SCALE:shiftN or SCALE:flip:shiftN")
    try:
        p = Pass(float(scale), flip, shift)
    except ValueError as exc:
        raise ModelError(f"detector pass {spec!r}: the scale is not a number") from exc
    inference_passes({"inference": passes_json([p])})  # the card's range checks
    return p


def volume_logits(
    model: LesionNet, volume: Volume, passes: Sequence[Pass], device: torch.device | str = "cpu"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every candidate of ``volume`` as ``detect_lesions`` finds it: centres (m, 3) in patient mm, raw logits (m,)."""
    src = np.asarray(volume.voxels, dtype=np.float32)
    cands, _, seg_prob, _ = passes_candidates(model, src, volume.spacing, list(passes), device)
    oshape = seg_prob.shape
    centres = []
    for c in cands:
        idx = [float(np.clip(_index_map(no, ns, v), 0, ns - 1)) for no, ns, v in zip(oshape, volume.shape, c.center)]
        centres.append(volume.index_to_patient(tuple(idx)))
    return np.array(centres, dtype=np.float64).reshape(-1, 3), np.array([c.logit for c in cands], dtype=np.float64)


def candidate_pool(
    model: LesionNet, cases: Sequence[Any], passes: Sequence[Pass], device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Raw logits of every candidate on ``cases`` (evaluation cases with their lesions) and whether it hits one."""
    prog = Progress(progress)
    logits, hits = [np.zeros(0)], [np.zeros(0)]
    for i, case in enumerate(cases):
        c, lg = volume_logits(model, case.volume, passes, device)
        is_tp, _ = frocm.match_candidates(case.truth, frocm.ScanDetections(c, lg))
        logits.append(lg)
        hits.append(is_tp.astype(float))
        prog((i + 1) / len(cases), f"candidates on {case.name}")
    return {"logits": np.concatenate(logits), "hits": np.concatenate(hits)}


def image_background_cases(
    n: int,
    seed0: int = IMAGE_SEED0,
    grid: tuple[int, float] = IMAGE_GRID,
    n_slices: int | None = None,
    progress: ProgressFn | None = None,
    cache: Path | None = None,
) -> list[Any]:
    """``n`` volumes built as the real-background test volumes are, from image slices instead of CT slices.

    Volume ``i`` is :func:`medviewer.training.image_slices.image_slice` (seed ``[seed0, i]``, ``grid``: pixels
    per side and mm per pixel) grown and given lesions by
    :func:`medviewer.training.evaluate_detector.grown_case`, every fifth one lesion-free. The image slices are
    MR and radiograph images given CT values, none of them an evaluation file; no test slice is used.
    ``n_slices`` defaults to the test volumes' slice count.
    """
    from medviewer.training.evaluate_detector import REAL_SLICES_PER_VOLUME, grown_case, load_case, save_case
    from medviewer.training.image_slices import image_slice

    n_slices = REAL_SLICES_PER_VOLUME if n_slices is None else n_slices
    prog = Progress(progress)
    size, pixel_mm = grid
    out = []
    for i in range(n):
        name = f"image-{seed0}-{i}-{size}x{pixel_mm:g}mm-{n_slices}"
        case = load_case(cache, name) if cache is not None else None
        if case is None:
            rng = np.random.default_rng([seed0, i])
            hu2d = image_slice(rng, size, pixel_mm)
            case = grown_case(hu2d, (pixel_mm, pixel_mm), n_slices, rng, name, f"image-{seed0}-{i}", i % 5 == 4)
            if cache is not None:
                save_case(case, cache)
        out.append(case)
        prog((i + 1) / n, "image-background calibration volumes")
    return out


def native_calibration(
    model: LesionNet,
    passes: Sequence[Pass],
    n: int,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    cache: Path | None = None,
    shape: tuple[int, int, int] = NATIVE_SHAPE,
    spacing: tuple[float, float, float] = NATIVE_SPACING,
) -> dict[str, Any]:
    """Temperature and offset fitted on ``n`` phantoms rendered at a native CT pixel (seeds :data:`NATIVE_SEED0` + i).

    A pass finer than the internal grid sees real detail only on such volumes;
    on the internal-grid validation phantoms it sees interpolated pixels, and
    the logits a calibration is fitted on must be those a scan gives.
    """
    from medviewer.training.evaluate_detector import phantom_cases

    prog = Progress(progress)
    cases = phantom_cases(n, NATIVE_SEED0, shape, spacing, prog.sub(0.0, 0.3), None, cache)
    fit = pooled_calibration(candidate_pool(model, cases, passes, device, prog.sub(0.3, 1.0)))
    temperature, bias, ece_raw, ece = fit["temperature"], fit["bias"], fit["ece_raw"], fit["ece"]
    return {
        "method": "temperature scaling (with offset) of the centre heat-map peak logit, fitted by NLL on phantoms "
        f"rendered at a native CT pixel ({n} volumes, {shape[1]} x {shape[2]} at {spacing[1]:g} mm)",
        "temperature": round(float(temperature), 5),
        "bias": round(float(bias), 5),
        "calibration_seeds": [NATIVE_SEED0, NATIVE_SEED0 + n - 1],
        "n_candidates": fit["n_candidates"],
        "ece_before": round(float(ece_raw), 4),
        "ece_after": round(float(ece), 4),
    }


def recalibrate_detector(
    base: Path,
    passes: Sequence[Pass],
    out: Path,
    data: Path,
    version: str,
    install: bool = False,
    device: str = "auto",
    progress: ProgressFn | None = None,
    groups: dict[str, tuple[int, int]] | None = None,
    shape: tuple[int, int, int] | None = None,
    native: int = 0,
    native_grid: tuple[tuple[int, int, int], tuple[float, float, float]] = (NATIVE_SHAPE, NATIVE_SPACING),
    textured: bool = False,
    images: int = 0,
    image_grid: tuple[int, float] = IMAGE_GRID,
) -> dict[str, Any]:
    """Calibrate the detector in ``base`` for ``passes``; write it to ``out``.

    Returns the new model card. The calibration is fitted on the validation
    phantoms (``groups`` and ``shape`` choose them; default: those of
    ``medviewer train detector``), or with ``native`` > 0 on that many phantoms
    rendered at a native CT pixel (:func:`native_calibration`, ``native_grid``
    their shape and spacing); the validation metrics in the card come from the
    validation phantoms either way. ``textured`` pools the validation phantoms'
    candidates with those of the same volumes with tissue texture for the fit. ``images`` > 0 pools the
    candidates of that many volumes built like the real-background test volumes from image slices
    (:func:`image_background_cases`, ``image_grid`` their slices' size and pixel) into the validation fit.
    """
    if native > 0 and (textured or images > 0):
        raise ModelError("--native fits on native phantoms alone: choose it or --textured / --images, not both")
    if not passes:
        raise ModelError("name at least one detector pass")
    if images < 0:
        raise ModelError("--images counts calibration volumes: 0 or more")
    inference_passes({"inference": passes_json(list(passes))})  # the same checks as a card gets
    prog = Progress(progress)
    tensors, card = load_weights(MODEL_NAME, base)
    model = build_model(card.get("config"))
    load_state_into(model, tensors, str(base))
    val = load_validation(data, groups, shape, prog.sub(0.0, 0.2))
    training = dict(card.get("training") or {})
    desc = ", ".join(f"{p.scale:g}{' with its mirror image' if p.flip else ''}{f' shifted {p.shift} px' if p.shift else ''}"
                     for p in passes)
    training["recalibrated"] = {
        "from": f"{card.get('name', MODEL_NAME)} {card.get('version')}",
        "sha256": card.get("sha256"),
        "weights": "unchanged",
        "inference_passes": passes_json(list(passes))["passes"],
        "note": f"inference passes at in-plane scales {desc} of the internal grid, averaged; calibration re-fitted "
        + (
            f"on {int(native)} phantoms rendered at a native CT pixel"
            if native > 0
            else "on the validation phantoms" + (", plain and with tissue texture, pooled," if textured else "")
            + (f" with {int(images)} image-background volumes built like the real-background test volumes" if images > 0 else "")
        )
        + " for them",
        "command": f"medviewer calibrate detector {base} --passes "
        + " ".join(p.spec() for p in passes)
        + f" --out {out} --version {version}"
        + (" --textured" if textured else "")
        + (f" --images {int(images)}" if images > 0 else ""),
    }
    state = {"step": int(card.get("steps", 0))}
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    extra = None
    if images > 0:
        cases = image_background_cases(int(images), IMAGE_SEED0, image_grid, progress=prog.sub(0.2, 0.3),
                                       cache=cache_dir() / "detector_image_calibration")
        extra = {**candidate_pool(model.to(dev), cases, passes, dev, prog.sub(0.3, 0.5)),
                 "note": f"{int(images)} volumes built like the real-background test volumes from image slices (MR and "
                 f"radiograph images given CT values, no CT; seeds [{IMAGE_SEED0}, i], {image_grid[0]} px at "
                 f"{image_grid[1]:g} mm)"}
    end = 0.6 if native > 0 else 1.0
    new_card = finalize(out, model, state, val, training, dev, install and native <= 0, version,
                        prog.sub(0.5 if images > 0 else 0.2, end), passes, calibrate_textured=textured,
                        extra_candidates=extra)
    if native > 0:
        cal = native_calibration(model.to(dev), passes, int(native), dev, prog.sub(0.6, 1.0),
                                 cache_dir() / "detector_native_calibration", *native_grid)
        new_card = dict(new_card)
        new_card["calibration"] = cal
        training["recalibrated"]["command"] += f" --native {int(native)}"
        new_card["training"] = training
        model = model.cpu()
        save_weights(MODEL_NAME, model.state_dict(), new_card, out)
        if install:
            save_weights(MODEL_NAME, model.state_dict(), new_card, models_dir())
        new_card = load_weights(MODEL_NAME, out)[1]
    return new_card


__all__ = ["NATIVE_SEED0", "IMAGE_SEED0", "parse_pass", "volume_logits", "candidate_pool", "image_background_cases",
           "native_calibration", "recalibrate_detector"]
