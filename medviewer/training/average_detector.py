"""Weight averages of two lesion detectors (``medviewer average detector``).

Two detectors fine-tuned from the same weights (e.g. 1.5.0 and a run that
started from it with ``--texture``) stay in one basin of the loss, so a
weighted average of their weights, tensor by tensor, is a model in its own
right -- a "model soup" (Wortsman et al., ICML 2022) -- that often keeps
what each parent learned. It costs no training. The average is calibrated and
validated on the same validation phantoms as a trained detector
(:func:`medviewer.training.train_detector.finalize`), and its model card names
both parents, their weights and hashes.

BatchNorm running statistics are averaged like every other float tensor;
integer buffers (``num_batches_tracked``) are taken from the base
(:func:`medviewer.training.weight_average.average_tensors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medviewer.ai.detector import build_model
from medviewer.ai.device import resolve_device
from medviewer.ai.detect import MODEL_NAME
from medviewer.ai.weights import load_state_into, load_weights
from medviewer.errors import ModelError
from medviewer.progress import Progress, ProgressFn
from medviewer.training.detector_data import load_validation
from medviewer.training.train_detector import finalize
from medviewer.training.weight_average import average_tensors, parent_entry


def average_detectors(
    base: Path,
    partner: Path,
    weight: float,
    out: Path,
    data: Path,
    version: str,
    install: bool = False,
    device: str = "auto",
    progress: ProgressFn | None = None,
    groups: dict[str, tuple[int, int]] | None = None,
    shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Average the detector in ``base`` with the one in ``partner`` (``weight`` on the partner).

    Both folders hold ``detector.safetensors`` + ``detector.json`` (a models
    folder or a training run's output). The average is calibrated on the
    validation phantoms in ``data/val`` (generated there if missing) and
    written to ``out``; with ``install`` also to ``resources/models``.
    ``groups`` and ``shape`` choose the validation phantoms (default: those
    of ``medviewer train detector``). Returns the model card.
    """
    prog = Progress(progress)
    t_base, c_base = load_weights(MODEL_NAME, base)
    t_partner, c_partner = load_weights(MODEL_NAME, partner)
    if (c_base.get("config") or {}) != (c_partner.get("config") or {}):
        raise ModelError(f"the detectors in {base} and {partner} have different architectures (model-card 'config')")
    model = build_model(c_base.get("config"))
    load_state_into(model, average_tensors(t_base, t_partner, weight), f"the average of {base} and {partner}")
    val = load_validation(data, groups, shape, prog.sub(0.0, 0.2))
    parents = [parent_entry(c_base, base, 1.0 - weight, MODEL_NAME), parent_entry(c_partner, partner, weight, MODEL_NAME)]
    data_base = (c_base.get("training") or {}).get("data", "project-generated CT phantoms only")
    data_partner = (c_partner.get("training") or {}).get("data", "project-generated CT phantoms only")
    train_info = {
        "data": data_base if data_base == data_partner
        else f"{parents[0]['model']}: {data_base}. {parents[1]['model']}: {data_partner}",
        "method": f"weight average (model soup), no training: (1 - {weight:g}) x {parents[0]['model']} + {weight:g} x "
        f"{parents[1]['model']}, tensor by tensor (BatchNorm running statistics included), then calibrated on the "
        "validation phantoms",
        "parents": parents,
        "command": f"medviewer average detector {base} {partner} --weight {weight:g} --out {out} --version {version}",
        "steps": 0,
    }
    state = {"step": 0}
    out.mkdir(parents=True, exist_ok=True)
    return finalize(out, model, state, val, train_info, resolve_device(device), install, version, prog.sub(0.2, 1.0))


__all__ = ["average_tensors", "average_detectors"]
