"""Weight averages of two denoisers (``medviewer average denoiser``).

The denoiser's counterpart of :mod:`medviewer.training.average_detector`:
two generators continued from the same weights (e.g. 1.12.0 and runs that
started from it) averaged tensor by tensor
(:func:`medviewer.training.weight_average.average_tensors`). The generator has
no batch statistics, so nothing is re-fitted: the average is written to
``OUT/model`` (the layout of a training run's output, which
``medviewer evaluate denoiser --weights OUT/model`` scores) with a model card
that keeps the base's architecture, loss and data description and names both
parents, their weights and hashes. Its metrics are left empty: the evaluation
decides, as for a trained denoiser.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from medviewer.ai.denoise import MODEL_NAME
from medviewer.ai.denoiser import DenoiserConfig, DenoiserNet
from medviewer.ai.weights import load_card, load_state_into, load_weights, save_weights
from medviewer.errors import ModelError
from medviewer.training.weight_average import average_tensors, parent_entry


def average_denoisers(base: Path, partner: Path, weight: float, out: Path, version: str) -> dict[str, Any]:
    """Average the denoiser in ``base`` with the one in ``partner`` (``weight`` on the partner) into ``out/model``.

    Both folders hold ``denoiser.safetensors`` + ``denoiser.json`` (a models
    folder or a training run's ``model`` folder). Returns the model card as written (with its SHA-256).

    Raises
    ------
    ModelError
        Missing or corrupt weights, different architectures, or a weight outside [0, 1].
    """
    t_base, c_base = load_weights(MODEL_NAME, base)
    t_partner, c_partner = load_weights(MODEL_NAME, partner)
    arch_base = (c_base.get("architecture") or {}).get("config")
    if arch_base != (c_partner.get("architecture") or {}).get("config"):
        raise ModelError(f"the denoisers in {base} and {partner} have different architectures (model-card 'config')")
    try:
        model = DenoiserNet(DenoiserConfig.from_json(arch_base if isinstance(arch_base, dict) else {}))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model card {base / (MODEL_NAME + '.json')} has an invalid architecture: {exc}") from exc
    load_state_into(model, average_tensors(t_base, t_partner, weight), f"the average of {base} and {partner}")
    parents = [parent_entry(c_base, base, 1.0 - weight, MODEL_NAME), parent_entry(c_partner, partner, weight, MODEL_NAME)]
    data_base = (c_base.get("training") or {}).get("data", "")
    data_partner = (c_partner.get("training") or {}).get("data", "")
    card = copy.deepcopy(c_base)
    for key in ("sha256", "weights_file"):
        card.pop(key, None)
    card["version"] = version
    card["training"] = {
        "data": data_base if data_base == data_partner
        else f"{parents[0]['model']}: {data_base} {parents[1]['model']}: {data_partner}",
        "method": f"weight average (model soup), no training: (1 - {weight:g}) x {parents[0]['model']} + {weight:g} x "
        f"{parents[1]['model']}, tensor by tensor",
        "parents": parents,
        "command": f"medviewer average denoiser {base} {partner} --weight {weight:g} --out {out} --version {version}",
        "steps": 0,
    }
    card["metrics"] = {}
    save_weights(MODEL_NAME, model.state_dict(), card, out / "model")
    return load_card(MODEL_NAME, out / "model")


__all__ = ["average_denoisers"]
