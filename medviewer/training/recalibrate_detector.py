"""A detector's inference passes changed, weights unchanged (``medviewer calibrate detector``).

The calibration (temperature and offset on the centre heat-map logit) is
fitted for one inference pipeline: averaging a finer in-plane pass or a mirror
pass changes the logits (:mod:`medviewer.ai.detect_passes`). This re-fits it on
the same validation phantoms as a trained detector
(:func:`medviewer.training.train_detector.finalize`) and writes a model card
that keeps the training record and names the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medviewer.ai.detect import MODEL_NAME
from medviewer.ai.detect_passes import Pass, passes_json
from medviewer.ai.detector import build_model
from medviewer.ai.device import resolve_device
from medviewer.ai.weights import load_state_into, load_weights
from medviewer.errors import ModelError
from medviewer.progress import Progress, ProgressFn
from medviewer.training.detector_data import load_validation
from medviewer.training.train_detector import finalize


def parse_pass(spec: str) -> Pass:
    """``"1.2"`` or ``"1.0:flip"``: an in-plane scale, optionally with its mirror pass."""
    scale, _, flag = spec.partition(":")
    if flag not in ("", "flip"):
        raise ModelError(f"detector pass {spec!r}: write SCALE or SCALE:flip")
    try:
        return Pass(float(scale), flag == "flip")
    except ValueError as exc:
        raise ModelError(f"detector pass {spec!r}: the scale is not a number") from exc


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
) -> dict[str, Any]:
    """Calibrate the detector in ``base`` for ``passes`` on the validation phantoms; write it to ``out``.

    Returns the new model card. ``groups`` and ``shape`` choose the validation
    phantoms (default: those of ``medviewer train detector``).
    """
    from medviewer.ai.detect_passes import inference_passes

    if not passes:
        raise ModelError("name at least one detector pass")
    inference_passes({"inference": passes_json(list(passes))})  # the same checks as a card gets
    prog = Progress(progress)
    tensors, card = load_weights(MODEL_NAME, base)
    model = build_model(card.get("config"))
    load_state_into(model, tensors, str(base))
    val = load_validation(data, groups, shape, prog.sub(0.0, 0.2))
    training = dict(card.get("training") or {})
    desc = ", ".join(f"{p.scale:g}{' with its mirror image' if p.flip else ''}" for p in passes)
    training["recalibrated"] = {
        "from": f"{card.get('name', MODEL_NAME)} {card.get('version')}",
        "sha256": card.get("sha256"),
        "weights": "unchanged",
        "inference_passes": passes_json(list(passes))["passes"],
        "note": f"inference passes at in-plane scales {desc} of the internal grid, averaged; calibration re-fitted "
        "on the validation phantoms for them",
        "command": f"medviewer calibrate detector {base} --passes "
        + " ".join(f"{p.scale:g}{':flip' if p.flip else ''}" for p in passes)
        + f" --out {out} --version {version}",
    }
    state = {"step": int(card.get("steps", 0))}
    out.mkdir(parents=True, exist_ok=True)
    return finalize(out, model, state, val, training, resolve_device(device), install, version, prog.sub(0.2, 1.0), passes)


__all__ = ["parse_pass", "recalibrate_detector"]
