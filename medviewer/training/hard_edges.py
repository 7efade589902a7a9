"""Hard edges for denoiser training data: tissue cut straight against padding.

Phantom edges are blurred by the scanner's point spread. Real images also hold
steps no scanner blur softens: tissue cut by the reconstruction circle when the
body is wider than the field of view (the scanner pads outside it), and images
masked before they reach the reader (skull-stripped brains such as pydicom-data's
eCT_Supplemental, where the denoiser lost most of its PSNR at those steps).
:func:`cut_slice` makes either kind on a noise-free phantom slice; the low-dose
simulator then runs on the cut slice, as a scanner would see it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: HU written outside the cut (air as scanners pad it; the evaluation clips below -1000 HU).
PAD_HU = -1024.0
KINDS = ("fov", "mask", "strip")


def cut_mask(hu: NDArray[np.float32], pixel_mm: float, rng: np.random.Generator, kind: str | None = None) -> NDArray[np.bool_] | None:
    """Where a hard cut of the slice ``hu`` keeps the image (True), or None for a slice without body.

    ``"fov"``: inside a circle (centre near the image centre) whose radius
    cuts through the body. ``"mask"``: inside the body outline moved inwards
    by 4-20 mm with a smoothly varying depth (as an organ mask leaves it).
    ``"strip"``: inside the largest connected region of soft tissue (-150 to
    150 HU, holes filled), with bone and whatever lies beyond it removed, as
    skull-stripping leaves a brain. ``kind`` None draws one.
    """
    kind = kind or str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"unknown cut kind {kind!r}; use one of {KINDS}")
    body = ndimage.binary_fill_holes(hu > -500)
    if not body.any():
        return None
    h, w = hu.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "fov":
        cy, cx = (h - 1) / 2 + rng.normal(0, 0.03 * h), (w - 1) / 2 + rng.normal(0, 0.03 * w)
        r = np.hypot(yy - cy, xx - cx)
        r_body = float(np.percentile(r[body], 95))
        keep = r <= rng.uniform(0.55, 0.95) * r_body
    elif kind == "strip":
        lab, n = ndimage.label(ndimage.binary_opening((hu > -150) & (hu < 150), iterations=1))
        if n == 0:
            return None
        sizes = ndimage.sum(np.ones_like(hu), lab, range(1, n + 1))
        keep = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)) + 1)
    else:
        depth_px = ndimage.distance_transform_edt(body)
        wobble = ndimage.gaussian_filter(rng.normal(size=hu.shape), 20.0 / pixel_mm)
        wobble = wobble / (np.abs(wobble).max() + 1e-9)
        lo, hi = 4.0 / pixel_mm, 20.0 / pixel_mm
        mid, amp = rng.uniform(lo, hi), rng.uniform(0.0, 0.5) * (hi - lo)
        keep = depth_px > np.clip(mid + amp * wobble, lo, hi)
    return np.asarray(keep, dtype=bool) if keep.any() else None


def cut_slice(hu: NDArray[np.float32], pixel_mm: float, rng: np.random.Generator, kind: str | None = None) -> NDArray[np.float32]:
    """A copy of the slice ``hu`` with a hard cut to :data:`PAD_HU` outside :func:`cut_mask`.

    A slice without body (or a cut that would keep nothing) is returned as is.
    """
    keep = cut_mask(hu, pixel_mm, rng, kind)
    out = np.array(hu, dtype=np.float32, copy=True)
    if keep is not None:
        out[~keep] = PAD_HU
    return out


__all__ = ["PAD_HU", "KINDS", "cut_mask", "cut_slice"]
