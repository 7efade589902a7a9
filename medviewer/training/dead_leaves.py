"""Dead-leaves CT slices: a generic image prior for the denoiser's training data.

A dead-leaves image is a stack of random occluding shapes whose sizes follow a
power law (``p(r) ~ r^-3``), which makes it scale invariant: edges of every
length and contrast, at every scale, as in real images. Denoisers trained on
such images alone come close to those trained on natural photographs
(Achddou, Gousseau, Ladjal, "Synthetic images as a regularity prior for image
restoration neural networks", SSVM 2021). A denoiser trained only on one
family of smooth, model-made scenes (the phantoms) can learn that family's
shapes rather than what separates structure from noise in general.

Here the leaves are ellipses with CT values (soft tissue, fat, fluid, bone,
air, enhanced vessels) inside a body outline surrounded by air, blurred by the
scanner's point spread like the phantoms; the low-dose simulator then sees
them exactly as it sees a phantom slice. They add anatomy-free structure (fine
edges, thin bright and dark lines, small blobs, textures at every scale) to
the anatomy of :mod:`medviewer.training.phantom`; they stand in for no organ.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

#: (share, HU low, HU high) of the leaves' materials.
MATERIALS: tuple[tuple[float, float, float], ...] = (
    (0.60, 10.0, 80.0),  # soft tissue: most edges are faint, as in CT
    (0.16, -130.0, -60.0),  # fat
    (0.10, -5.0, 20.0),  # fluid
    (0.05, 250.0, 1400.0),  # bone
    (0.04, -1000.0, -600.0),  # air, lung
    (0.05, 120.0, 350.0),  # enhanced vessels, contrast
)
RADIUS_MM = (0.6, 45.0)
"""Range of the leaves' semi-major axes (mm); sizes drawn from ``p(r) ~ r^-3``."""
COVERAGE = 2.0
"""Expected number of leaves over a point of the body (the later ones occlude the earlier)."""


def _radii(rng: np.random.Generator, n: int, lo: float, hi: float) -> NDArray[np.float64]:
    """``n`` radii with density ``~ r^-3`` on ``[lo, hi]`` (inverse transform sampling)."""
    u = rng.random(n)
    return 1.0 / np.sqrt(lo**-2 - u * (lo**-2 - hi**-2))


def body_outline(rng: np.random.Generator, size: int, pixel_mm: float) -> tuple[NDArray[np.bool_], tuple[float, float, float, float]]:
    """A body outline: an ellipse filling 55-90 % of the field, a little off centre.

    Returns the ``(size, size)`` mask and the ellipse's semi-axes and centre
    ``(a, b, cx, cy)`` in mm from the field's centre (x to the right, y down).
    """
    fov = size * pixel_mm
    yy, xx = (np.arange(size, dtype=np.float32) * pixel_mm - fov / 2 for _ in range(2))
    a = fov / 2 * rng.uniform(0.55, 0.9)
    b = a * rng.uniform(0.6, 1.0)
    cx, cy = rng.uniform(-0.05, 0.05, 2) * fov
    body = ((xx[None, :] - cx) / a) ** 2 + ((yy[:, None] - cy) / b) ** 2 <= 1.0
    return body, (float(a), float(b), float(cx), float(cy))


def scanner_blur(img: NDArray[np.float32], pixel_mm: float, psf_mm: float | None = None) -> NDArray[np.float32]:
    """``img`` blurred by the scanner's point spread (Gaussian sigma ``psf_mm``; default
    :data:`medviewer.training.phantom_anatomy.SCANNER_PSF_MM`, 0 for none)."""
    from scipy import ndimage

    from medviewer.training.phantom_anatomy import SCANNER_PSF_MM

    sig = SCANNER_PSF_MM if psf_mm is None else float(psf_mm)
    if sig > 0:
        img = ndimage.gaussian_filter(img, sig / pixel_mm, truncate=3.0).astype(np.float32)
    return img


def dead_leaves_slice(rng: np.random.Generator, size: int, pixel_mm: float, psf_mm: float | None = None) -> NDArray[np.float32]:
    """One ``(size, size)`` slice in HU: dead leaves inside a body outline, air around it.

    Parameters
    ----------
    rng : numpy Generator
        All randomness comes from it.
    size : int
        Pixels per side.
    pixel_mm : float
        In-plane pixel size (mm); the leaves' sizes are in mm.
    psf_mm : float, optional
        Scanner blur (Gaussian sigma, mm); default
        :data:`medviewer.training.phantom_anatomy.SCANNER_PSF_MM`, 0 for none.

    Examples
    --------
    >>> img = dead_leaves_slice(np.random.default_rng(0), 64, 2.0)
    >>> img.shape, img.dtype, float(img.min()) >= -1000.0
    ((64, 64), dtype('float32'), True)
    """
    if size < 8 or not pixel_mm > 0:
        raise ValueError(f"size must be >= 8 and pixel_mm > 0, got {size}, {pixel_mm}")
    fov = size * pixel_mm
    yy, xx = (np.arange(size, dtype=np.float32) * pixel_mm - fov / 2 for _ in range(2))
    body, (a, b, cx, cy) = body_outline(rng, size, pixel_mm)
    img = np.full((size, size), -1000.0, np.float32)
    img[body] = rng.uniform(20.0, 60.0)
    lo, hi = RADIUS_MM[0], min(RADIUS_MM[1], 0.5 * a)
    mean_area = math.pi * 2 * lo**2 * math.log(hi / lo) / 1.5  # E[pi r^2 x minor/major], minor/major ~ U(0.33, 1)
    n = int(COVERAGE * math.pi * a * b / mean_area)
    n = min(n, 60_000)
    radii = _radii(rng, n, lo, hi)  # in random order: a late large leaf covers the small ones before it
    shares = np.array([m[0] for m in MATERIALS])
    kinds = rng.choice(len(MATERIALS), size=n, p=shares / shares.sum())
    for r, kind in zip(radii, kinds):
        r_minor = r * rng.uniform(0.33, 1.0)
        ang = rng.uniform(0, math.pi)
        # centre inside the body ellipse
        t, rho = rng.uniform(0, 2 * math.pi), math.sqrt(rng.random())
        px, py = cx + rho * a * math.cos(t), cy + rho * b * math.sin(t)
        i0 = max(0, int((px - r + fov / 2) / pixel_mm))
        i1 = min(size, int((px + r + fov / 2) / pixel_mm) + 2)
        j0 = max(0, int((py - r + fov / 2) / pixel_mm))
        j1 = min(size, int((py + r + fov / 2) / pixel_mm) + 2)
        if i1 <= i0 or j1 <= j0:
            continue
        dx = xx[None, i0:i1] - px
        dy = yy[j0:j1, None] - py
        c, s = math.cos(ang), math.sin(ang)
        u = (dx * c + dy * s) / r
        v = (-dx * s + dy * c) / r_minor
        m = (u * u + v * v <= 1.0) & body[j0:j1, i0:i1]
        if m.any():
            _, hu_lo, hu_hi = MATERIALS[int(kind)]
            img[j0:j1, i0:i1][m] = rng.uniform(hu_lo, hu_hi)
    return scanner_blur(img, pixel_mm, psf_mm)


__all__ = ["MATERIALS", "RADIUS_MM", "COVERAGE", "body_outline", "scanner_blur", "dead_leaves_slice"]
