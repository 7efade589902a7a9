"""Denoising strength: put back a share of the noise the generator removed (no torch, no Qt).

``original + strength x (denoised - original)``: at strength 1 the generator's output, below it a
share ``1 - strength`` of the removed noise is kept. Scanner vendors offer the same choice as
blend levels of iterative or AI reconstruction with filtered back-projection; readers who find a
fully denoised image too smooth keep some of the familiar noise grain. The detector always runs on
the full-strength output; the strength changes what is displayed and exported.

Examples
--------
>>> strength_label(0.7)
'AI denoised 70 %'
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.volume import Volume

DERIVED_LABEL = "AI denoised"
DEFAULT_STRENGTH = 1.0
"""Share of the predicted noise that is removed by default (all of it)."""
MIN_STRENGTH = 0.1
"""Lowest accepted strength (below it the output is the input with a trace of denoising)."""
STRENGTH_LEVELS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
"""The levels the viewer offers."""


def check_strength(strength: float) -> float:
    """``strength`` as a float in [:data:`MIN_STRENGTH`, 1]; ValueError otherwise."""
    s = float(strength)
    if not MIN_STRENGTH <= s <= 1.0:  # also rejects NaN
        raise ValueError(
            f"denoising strength must be between {MIN_STRENGTH:g} and 1 (1 removes all predicted noise), got {strength!r}"
        )
    return s


def strength_label(strength: float) -> str:
    """The series-description tag: ``"AI denoised"`` at full strength, else ``"AI denoised 70 %"``."""
    s = check_strength(strength)
    return DERIVED_LABEL if s == 1.0 else f"{DERIVED_LABEL} {round(100 * s)} %"


def strength_of(volume: Volume | None) -> float:
    """The strength a derived volume was made at (``extra["denoiser"]["strength"]``); 1 when not recorded."""
    if volume is None:
        return 1.0
    value = (volume.metadata.extra.get("denoiser") or {}).get("strength")
    return 1.0 if value is None else float(value)


def blend(original: NDArray[Any], denoised: NDArray[Any], strength: float) -> NDArray[np.float32]:
    """``original + strength x (denoised - original)`` as a new float32 array (a copy at 1)."""
    s = check_strength(strength)
    out = np.array(denoised, dtype=np.float32)  # a new array, filled in place (no temporaries)
    if s != 1.0:
        out -= original
        out *= np.float32(s)
        out += original
    return out


def with_strength(original: Volume, denoised: Volume, strength: float) -> Volume:
    """The derived volume at another strength, from the full-strength output.

    Parameters
    ----------
    original : Volume
        The source volume (HU).
    denoised : Volume
        Its full-strength output of :func:`medviewer.ai.denoise.denoise_volume` (same grid).
    strength : float
        In [:data:`MIN_STRENGTH`, 1]; 1 returns a copy of ``denoised``'s voxels.

    Returns
    -------
    Volume
        ``original``'s metadata with ``denoised``'s model record, the description tag of :func:`strength_label` and
        ``extra["denoiser"]["strength"]``; padding outside the field of view stays as it
        is (the generator leaves it unchanged).

    Raises
    ------
    ValueError
        Strength out of range, or the two volumes differ in shape.
    """
    s = check_strength(strength)
    if original.shape != denoised.shape:
        raise ValueError(f"denoised volume {denoised.shape} does not match the original {original.shape}")
    return labelled(original, blend(original.voxels, denoised.voxels, s), s, denoised.metadata.extra.get("denoiser") or {})


def labelled(original: Volume, voxels: NDArray[Any], strength: float, denoiser: dict[str, Any]) -> Volume:
    """``voxels`` as the derived volume of ``original`` at ``strength``.

    ``denoiser`` (the model's name, version, intended use) goes to ``extra["denoiser"]``
    with the strength; the description gets the tag of :func:`strength_label`.
    """
    s = check_strength(strength)
    desc = (original.metadata.series_description or "").strip()
    extra = dict(original.metadata.extra)
    extra["denoiser"] = {**denoiser, "strength": s}
    return original.with_voxels(
        voxels,
        derived_from=DERIVED_LABEL,
        series_description=f"{desc} [{strength_label(s)}]".strip(),
        extra=extra,
        warnings=list(original.metadata.warnings),
    )


__all__ = [
    "blend",
    "check_strength",
    "labelled",
    "strength_label",
    "strength_of",
    "with_strength",
    "DERIVED_LABEL",
    "DEFAULT_STRENGTH",
    "MIN_STRENGTH",
    "STRENGTH_LEVELS",
]
