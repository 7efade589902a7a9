"""Detector training volumes whose background is real structure: image slices moved along z.

The detector finds lesions on phantoms (held-out CPM 0.90) far better than
on real CT backgrounds (0.61), and four rounds of augmentation showed the gap
lies in what it has learned of real anatomy (docs/detector_evaluation.md,
"Where the real-background gap comes from"). These volumes give it real
structure around the lesions: an image slice from
:mod:`medviewer.training.image_slices` (the sample packages' MR and
radiograph images given CT values; never an evaluation file) is turned into a
volume by a slow path through it along z (a drift, a turn, a change of scale
and a smooth warp that all change from slice to slice), so every structure of
the image runs obliquely through the slices, as vessels and organ walls do,
while the lesions inserted afterwards by
:func:`medviewer.training.phantom_lesions.insert_lesions` (by host HU, as for
the ``host-hu`` phantoms) are compact in 3D. The volume is made at the
detector's internal spacing, like every training phantom.

This is not the construction of the real-background test volumes
(``grow_slice`` in :mod:`medviewer.training.evaluate_detector`, a periodic warp
of 2.5 mm around a fixed slice): here the structures travel across the field
along z, and the background images are other images altogether.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.ai.detector import INTERNAL_SPACING

DRIFT_PX_PER_SLICE = 0.6
"""Largest in-plane drift per slice (pixels of the internal grid, each axis)."""
TURN_DEG = 15.0
"""Largest turn over the whole volume (degrees)."""
ZOOM = 0.15
"""Largest change of scale over the whole volume (share)."""
WARP_MM = (1.5, 4.0)
"""Amplitude range of the smooth warp (mm)."""


def moved_along_z(base: NDArray[np.float32], n_slices: int, rng: np.random.Generator, pixel_mm: float) -> NDArray[np.float32]:
    """``n_slices`` views of ``base`` on a slow path: drift, turn, scale and warp change smoothly with z.

    Outside ``base`` is air (-1000 HU).
    """
    from scipy import ndimage

    h, w = base.shape
    vel = rng.uniform(-DRIFT_PX_PER_SLICE, DRIFT_PX_PER_SLICE, 2)
    turn = math.radians(rng.uniform(-TURN_DEG, TURN_DEG))
    zoom = rng.uniform(-ZOOM, ZOOM)
    sig = max(h, w) / 8.0
    amp = rng.uniform(*WARP_MM) / pixel_mm
    fields = []
    for _ in range(4):
        f = ndimage.gaussian_filter(rng.normal(size=(h, w)), sig)
        fields.append(f * amp / (np.abs(f).max() + 1e-9))
    omega = 2 * math.pi / rng.uniform(30, 80)
    phase = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    out = np.empty((n_slices, h, w), np.float32)
    for k in range(n_slices):
        t = (k - (n_slices - 1) / 2.0) / max(n_slices - 1, 1)  # -0.5 .. 0.5
        ang, scale = turn * t, 1.0 + zoom * t
        dy0, dx0 = vel * (k - (n_slices - 1) / 2.0)
        c, s = math.cos(ang), math.sin(ang)
        y, x = (yy - cy) / scale, (xx - cx) / scale
        sy = c * y - s * x + cy + dy0
        sx = s * y + c * x + cx + dx0
        a, b = math.cos(omega * k + phase), math.sin(omega * k + phase)
        sy += a * fields[0] + b * fields[1]
        sx += a * fields[2] + b * fields[3]
        out[k] = ndimage.map_coordinates(base, [sy, sx], order=1, mode="constant", cval=-1000.0)
    return out


def image_volume(seed: int, shape: tuple[int, int, int], n_lesions: int) -> dict[str, Any]:
    """One training volume: an image slice moved along z, with ``n_lesions`` (at most 4) placed by host HU.

    Returns the fields :func:`medviewer.training.detector_data._to_train_volume` reads
    (``volume_hu``, ``labels``, ``lesions``).
    """
    from medviewer.training.detector_augment import host_hu_lesions
    from medviewer.training.image_slices import image_slice

    rng = np.random.default_rng([seed, 13])
    pixel = INTERNAL_SPACING[2]
    base = image_slice(rng, max(shape[1], shape[2]), pixel)[: shape[1], : shape[2]]
    hu, labels, lesions = host_hu_lesions(moved_along_z(base, shape[0], rng, pixel), rng, n_lesions)
    return {"volume_hu": hu, "labels": labels, "lesions": lesions}


__all__ = ["DRIFT_PX_PER_SLICE", "TURN_DEG", "ZOOM", "WARP_MM", "moved_along_z", "image_volume"]
