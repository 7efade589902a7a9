"""Projection-domain low-dose CT simulation.

The input image is taken as the *full-dose* reconstruction. For each slice:

1. HU -> linear attenuation ``mu = mu_water * (1 + HU / 1000)`` at ~70 keV
   (``MU_WATER_PER_MM``), negative values clipped to 0 (air).
2. Forward projection of ``mu`` (a pixel-driven, linearly splatting projector
   on a 2x down-sampled copy of the slice; the line integrals only set the
   expected photon counts of each ray, which vary smoothly).
3. Expected counts ``I0 * dose * bowtie(ray) * exp(-p)`` for every ray of a
   third-generation *fan-beam* scan (source on a circle of radius
   ``SOURCE_RADIUS_MM``, equiangular detector, views over 360 degrees), or of
   a parallel-beam scan over 180 degrees.
4. Poisson counts plus Gaussian electronic noise (SD ``electronic_noise``
   counts), clipped at ``MIN_COUNTS``, then ``-log(N / I0)``.
5. Fan-beam rays are rebinned to parallel rays (as most scanners do before
   reconstruction; the interpolation correlates neighbouring rays), the two
   conjugate measurements of each line are averaged, then filtered
   back-projection (ramp x Hann apodisation, a soft-tissue kernel).

Because FBP is linear, ``FBP(p_noisy) - FBP(p_clean) = FBP(p_noisy - p_clean)``:
we reconstruct only the *noise sinogram* and add that noise-only image to the
input. The input's own content is therefore neither blurred nor changed by
the reconstruction kernel, while the noise has the variance, texture (ramp-
shaped noise power spectrum) and streaks (along rays through dense, highly
attenuating paths such as shoulders, spine, hips) of a real low-dose scan.
The mean is preserved up to the tiny bias of the logarithm of Poisson counts.

Why not :func:`skimage.transform.radon`/``iradon``: measured on this
machine, ``radon`` of a 512x512 slice at 360 angles takes 1.3 s and ``iradon``
0.66 s (one core), together 2 s per slice, over the 1 s budget. A
``torch.nn.functional.grid_sample`` back-projector took 2.0 s (2 threads) and
a torch ``gather`` one 0.55 s. The numpy back-projector here uses the
8-fold symmetry of the parallel geometry (one index field serves 4 views) and
a 4x up-sampled projection looked up by nearest neighbour (i.e. linear
interpolation quantised to 1/4 detector bin): 0.32 s for 480 views at 512x512
on one core, so the whole simulation runs in well under 1 s per slice on
one core (no threads needed, which keeps parallel dataset generation
efficient).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

QUARTER_DOSE = 0.25
"""Dose fraction of a quarter-dose scan (the AAPM low-dose challenge setting)."""
TENTH_DOSE = 0.10
"""Dose fraction of a tenth-dose scan."""

MU_WATER_PER_MM = 0.01929
"""Linear attenuation of water at ~70 keV (effective energy of a 120 kVp beam), 1/mm."""
SOURCE_RADIUS_MM = 570.0
"""Source-to-isocentre distance of the simulated fan-beam scanner."""
DEFAULT_I0 = 1.0e5
"""Unattenuated photons per detector element per view at full dose (centre of the bowtie).

Calibrated on phantoms (0.7 mm pixels, ~32 x 21 cm body): liver noise SD
about 14-18 HU at full dose, 28-37 HU at quarter dose and 46-61 HU at tenth
dose (dome level to kidney level), i.e. the 20-45 HU of real quarter-dose CT.
"""
DEFAULT_ELECTRONIC_NOISE = 2.0
"""SD of the additive Gaussian electronic noise, in detected-photon units.

Modern detectors have a few quanta; with 4 the tenth-dose noise in wide
phantoms grew to 3.6-3.75x the full-dose noise (photon-starved lateral
rays), with 2 it stays at 3.3-3.4x (ideal 1/sqrt(0.1) = 3.16).
"""
MIN_COUNTS = 1.0
"""Counts are clipped here before the logarithm (photon starvation)."""
BOWTIE_STRENGTH = 2.0
"""Bowtie transmission ``exp(-BOWTIE_STRENGTH * (t / r_fov)**2)`` (0.14 at the FOV edge)."""

Seed = int | np.random.Generator | None


def _as_rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- geometry
@lru_cache(maxsize=8)
def _plan(n: int, n_views: int) -> dict[str, Any]:
    """Geometry shared by projector and back-projector for an n x n slice."""
    if n_views % 4:
        raise ValueError(f"n_views must be a multiple of 4, got {n_views}")
    n_det = int(math.ceil(n * math.sqrt(2))) + 4
    n_det += n_det % 2  # even count: detector centre between two bins
    theta = (np.arange(n_views) + 0.5) * math.pi / n_views
    t = np.arange(n_det) - (n_det - 1) / 2.0  # detector bin centres, in pixels
    return {"n_det": n_det, "theta": theta, "t": t}


def _ramp_filter(n_det: int) -> NDArray[np.float32]:
    """Frequency response of the ramp x Hann filter (Kak & Slaney ramp, pixel units)."""
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    k = np.arange(-(size // 2), size // 2)
    h = np.zeros(size)
    h[size // 2] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    ramp = np.abs(np.fft.rfft(np.fft.ifftshift(h)))
    f = np.fft.rfftfreq(size)  # cycles per pixel, Nyquist 0.5
    hann = 0.5 * (1.0 + np.cos(math.pi * f / 0.5))
    return (ramp * hann).astype(np.float32)


def filter_sinogram(sino: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Apply the reconstruction filter along the detector axis of ``(views, bins)``."""
    n_views, n_det = sino.shape
    filt = _ramp_filter(n_det)
    size = 2 * (filt.shape[0] - 1)
    spec = np.fft.rfft(sino.astype(np.float32), n=size, axis=1)
    spec *= filt[None, :]
    return np.fft.irfft(spec, n=size, axis=1)[:, :n_det].astype(np.float32)


def backproject(sino: NDArray[np.floating[Any]], n: int, up: int = 4) -> NDArray[np.float32]:
    """Parallel-beam back-projection of ``(views, bins)`` over [0, pi) onto an n x n grid.

    Views are at ``(m + 0.5) * pi / n_views``; the detector pitch equals the pixel
    size and is centred on the image centre (see :func:`_plan`). Uses the 8-fold
    symmetry (one index field serves views theta, pi/2 - theta, pi/2 + theta,
    pi - theta) and nearest-neighbour look-up in an ``up``-times linearly
    up-sampled projection. Returns the sum over views times ``pi / n_views``.
    """
    n_views, n_det = sino.shape
    plan = _plan(n, n_views)
    if plan["n_det"] != n_det:
        raise ValueError(f"sinogram has {n_det} bins, expected {plan['n_det']} for a {n}x{n} slice")
    n_up = (n_det - 1) * up + 1
    u = np.arange(n_up, dtype=np.float32) / up
    i0 = np.minimum(u.astype(np.int64), n_det - 2)
    w = (u - i0).astype(np.float32)
    s = sino.astype(np.float32, copy=False)
    su = np.empty((n_views, n_up + 1), np.float32)
    su[:, :n_up] = s[:, i0] * (1 - w) + s[:, i0 + 1] * w
    su[:, n_up] = 0.0  # out-of-range rays
    x = np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2.0)
    off = np.float32((n_det - 1) / 2.0 * up + 0.5)
    acc = np.zeros((4, n, n), np.float32)
    q = n_views // 4
    theta = plan["theta"]
    idx = np.empty((n, n), np.int32)
    for m in range(q):
        c = np.float32(math.cos(theta[m]) * up)
        sn = np.float32(math.sin(theta[m]) * up)
        field = (x * c + off)[None, :] + (x * sn)[:, None]
        np.copyto(idx, field, casting="unsafe")  # floor (values are positive)
        np.clip(idx, 0, n_up, out=idx)
        for k, v in enumerate((m, n_views // 2 - 1 - m, n_views // 2 + m, n_views - 1 - m)):
            acc[k] += su[v].take(idx)
    img = acc[0] + acc[1].T + acc[2][::-1].T + acc[3][:, ::-1]
    return (img * np.float32(math.pi / n_views)).astype(np.float32)


def forward_project(image: NDArray[np.floating[Any]], n_views: int) -> NDArray[np.float32]:
    """Parallel-beam line integrals ``(views, bins)`` of an n x n image (pixel units).

    A pixel-driven projector that splats each pixel linearly onto the two
    nearest detector bins, with the same geometry as :func:`backproject`
    (it is that back-projector's adjoint up to the interpolation rule).
    """
    n = image.shape[0]
    if image.shape != (n, n):
        raise ValueError(f"forward_project needs a square image, got {image.shape}")
    plan = _plan(n, n_views)
    n_det = plan["n_det"]
    img = image.astype(np.float64)
    # the image seen through each symmetric view (inverse of the backprojector's transforms)
    views_img = [img, img.T, img.T[::-1], img[:, ::-1]]
    flat = [np.ascontiguousarray(v).ravel() for v in views_img]
    x = np.arange(n) - (n - 1) / 2.0
    off = (n_det - 1) / 2.0
    sino = np.zeros((n_views, n_det), np.float64)
    q = n_views // 4
    theta = plan["theta"]
    for m in range(q):
        field = (x * math.cos(theta[m]) + off)[None, :] + (x * math.sin(theta[m]))[:, None]
        f = field.ravel()
        i0 = np.floor(f).astype(np.int64)
        w = f - i0
        np.clip(i0, 0, n_det - 2, out=i0)
        for k, v in enumerate((m, n_views // 2 - 1 - m, n_views // 2 + m, n_views - 1 - m)):
            a = flat[k]
            sino[v] += np.bincount(i0, a * (1 - w), minlength=n_det)[:n_det]
            sino[v] += np.bincount(i0 + 1, a * w, minlength=n_det)[:n_det]
    return sino.astype(np.float32)


def fbp(sino: NDArray[np.floating[Any]], n: int) -> NDArray[np.float32]:
    """Filtered back-projection (ramp x Hann) of a parallel sinogram over [0, pi)."""
    return backproject(filter_sinogram(sino), n)


def _bowtie(t_over_r: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-BOWTIE_STRENGTH * np.minimum(t_over_r**2, 1.0))


def _interp_sino(sino: NDArray[np.float32], th: NDArray[np.float64], tq: NDArray[np.float64]) -> NDArray[np.float64]:
    """Bilinear look-up of a parallel sinogram over [0, pi) at angles ``th`` (any) and bins ``tq``.

    ``tq`` in bin units relative to the detector centre; uses p(theta + pi, t) = p(theta, -t).
    """
    n_views, n_det = sino.shape
    th = np.mod(th, 2 * math.pi)
    flip = th >= math.pi
    th = np.where(flip, th - math.pi, th)
    tq = np.where(flip, -tq, tq)
    fv = th * n_views / math.pi - 0.5  # fractional view index, periodic with sign flip
    v0 = np.floor(fv).astype(np.int64)
    wv = fv - v0
    fb = tq + (n_det - 1) / 2.0
    b0 = np.clip(np.floor(fb).astype(np.int64), 0, n_det - 2)
    wb = np.clip(fb - b0, 0.0, 1.0)

    def at(v: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.float64]:
        wrap = (v < 0) | (v >= n_views)
        vv = np.mod(v, n_views)
        bb = np.where(wrap, n_det - 1 - b, b)  # wrapping across pi mirrors t
        return sino[vv, bb].astype(np.float64)

    top = at(v0, b0) * (1 - wb) + at(v0, b0 + 1) * wb
    bot = at(v0 + 1, b0) * (1 - wb) + at(v0 + 1, b0 + 1) * wb
    return top * (1 - wv) + bot * wv


def _coarse_projection(mu_px: NDArray[np.float32], n_views: int) -> tuple[NDArray[np.float32], int]:
    """Line integrals of a 2x down-sampled slice, returned in full-resolution pixel units."""
    n = mu_px.shape[0]
    if n >= 128 and n % 2 == 0:
        small = mu_px.reshape(n // 2, 2, n // 2, 2).mean(axis=(1, 3))
        return forward_project(small, n_views // 2 if (n_views // 2) % 4 == 0 else n_views) * 2.0, 2
    return forward_project(mu_px, n_views), 1


class _Scan:
    """Ray geometry of one simulated acquisition of an n x n slice (internal).

    Computes the noiseless line integrals and bowtie of every measured ray,
    and turns a per-ray log-domain noise array into a noise image (HU).
    """

    def __init__(self, work_hu: NDArray[np.float32], pixel_mm: float, geometry: str, n_views: int) -> None:
        n = work_hu.shape[0]
        self.n = n
        self.n_views = n_views
        self.pixel_mm = pixel_mm
        self.geometry = geometry
        mu_px = np.clip(MU_WATER_PER_MM * (1.0 + work_hu / 1000.0), 0.0, None).astype(np.float32) * np.float32(pixel_mm)
        coarse, factor = _coarse_projection(mu_px, n_views)
        plan = _plan(n, n_views)
        self.n_det = n_det = plan["n_det"]
        self.t = t = plan["t"]
        r_fov = n / 2.0
        if geometry == "parallel":
            th = np.repeat(plan["theta"][:, None], n_det, axis=1)
            tq = np.repeat(t[None, :], n_views, axis=0)
            self.p = _interp_sino(coarse, th, tq / factor)
            self.bow = _bowtie(tq / r_fov)
            return
        r_src = max(SOURCE_RADIUS_MM / pixel_mm, 1.05 * r_fov * math.sqrt(2))
        self.r_src = r_src
        self.gamma_max = gamma_max = math.asin(min(1.0, (n_det / 2.0) / r_src))
        self.n_fan = n_fan = n_det  # equiangular detector, as many channels as parallel bins
        gamma = (np.arange(n_fan) - (n_fan - 1) / 2.0) * (2 * gamma_max / n_fan)
        self.n_src = n_src = 2 * n_views  # source positions over 2 pi
        beta = (np.arange(n_src) + 0.5) * (2 * math.pi / n_src)
        bb, gg = np.meshgrid(beta, gamma, indexing="ij")
        tf = r_src * np.sin(gg)
        self.p = _interp_sino(coarse, bb + gg, tf / factor)
        self.bow = _bowtie(tf / r_fov)

    def expected_counts(self, i0: float) -> NDArray[np.float64]:
        # floor far below one photon: total photon starvation (metal) stays finite
        return np.maximum(i0 * self.bow * np.exp(-np.minimum(self.p, 700.0)), 1e-9)

    def noise_image(self, log_noise: NDArray[np.float64]) -> NDArray[np.float32]:
        """Reconstruct a per-ray log-domain noise array into HU (FBP; fan rays rebinned first)."""
        n_views, n_det, t = self.n_views, self.n_det, self.t
        if self.geometry == "parallel":
            sino = log_noise
        else:
            th2 = (np.arange(2 * n_views) + 0.5) * (math.pi / n_views)
            tt, th_grid = np.meshgrid(t, th2)
            g = np.arcsin(np.clip(tt / self.r_src, -1.0, 1.0))
            b = np.mod(th_grid - g, 2 * math.pi)
            fg = g / (2 * self.gamma_max / self.n_fan) + (self.n_fan - 1) / 2.0
            fb = b / (2 * math.pi / self.n_src) - 0.5
            g0 = np.clip(np.floor(fg).astype(np.int64), 0, self.n_fan - 2)
            wg = np.clip(fg - g0, 0.0, 1.0)
            b0 = np.floor(fb).astype(np.int64)
            wb = fb - b0
            b1 = np.mod(b0 + 1, self.n_src)
            b0 = np.mod(b0, self.n_src)
            fn = log_noise
            par = (fn[b0, g0] * (1 - wg) + fn[b0, g0 + 1] * wg) * (1 - wb) + (fn[b1, g0] * (1 - wg) + fn[b1, g0 + 1] * wg) * wb
            sino = 0.5 * (par[:n_views] + par[n_views:, ::-1])  # conjugate rays measure the same line
        noise_px = fbp(np.asarray(sino, np.float32), self.n)
        return (noise_px * np.float32(1000.0 / (MU_WATER_PER_MM * self.pixel_mm))).astype(np.float32)


def _log_noise(counts: NDArray[Any], lam: NDArray[np.float64], electronic_noise: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """``-log(N / I0) - (-log(lambda / I0))`` after adding electronic noise and clipping."""
    c = counts.astype(np.float64)
    if electronic_noise > 0:
        c += rng.normal(0.0, electronic_noise, size=c.shape)
    np.maximum(c, MIN_COUNTS, out=c)
    return np.log(lam / c)


def _prepare(
    slice_hu: NDArray[np.floating[Any]],
    dose_fraction: float,
    pixel_mm: float,
    i0_full: float,
    electronic_noise: float,
    geometry: str,
    n_views: int | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], tuple[int, int, int, int], int]:
    img = np.asarray(slice_hu)
    if img.ndim != 2:
        raise ValueError(f"simulate_low_dose needs a (y, x) slice, got shape {img.shape}")
    if not (0.0 < float(dose_fraction) <= 1.0):
        raise ValueError(f"dose_fraction must be in (0, 1], got {dose_fraction}")
    if not (pixel_mm > 0 and math.isfinite(pixel_mm)):
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
    if not (i0_full > 0):
        raise ValueError(f"i0_full must be positive, got {i0_full}")
    if electronic_noise < 0:
        raise ValueError(f"electronic_noise must be >= 0, got {electronic_noise}")
    if geometry not in ("fan", "parallel"):
        raise ValueError(f"geometry must be 'fan' or 'parallel', got {geometry!r}")
    h, w = img.shape
    n = max(h, w)
    n += n % 2
    work = np.full((n, n), -1000.0, np.float32)
    y0, x0 = (n - h) // 2, (n - w) // 2
    work[y0 : y0 + h, x0 : x0 + w] = np.nan_to_num(img.astype(np.float32), nan=-1000.0)
    if n_views is None:
        n_views = max(64, int(round(0.94 * n / 8.0)) * 8)
    if n_views % 8:
        raise ValueError(f"n_views must be a multiple of 8, got {n_views}")
    return img.astype(np.float32), work, (y0, y0 + h, x0, x0 + w), int(n_views)


def simulate_low_dose(
    slice_hu: NDArray[np.floating[Any]],
    dose_fraction: float,
    *,
    pixel_mm: float = 0.7,
    i0_full: float = DEFAULT_I0,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    seed: Seed = None,
    geometry: str = "fan",
    n_views: int | None = None,
    input_dose: float | None = None,
    return_noise: bool = False,
) -> NDArray[np.float32]:
    """Simulate a reduced-dose acquisition of one full-dose CT slice.

    Parameters
    ----------
    slice_hu : ndarray
        ``(y, x)`` full-dose image in HU. Non-square slices are padded with
        air to a square for the simulation and cropped back.
    dose_fraction : float
        Fraction of the full dose, in (0, 1]; e.g. :data:`QUARTER_DOSE`.
    pixel_mm : float
        In-plane pixel size (mm); sets the path lengths.
    i0_full : float
        Unattenuated photons per detector element and view at full dose,
        at the centre of the bowtie filter (:data:`DEFAULT_I0` is calibrated
        to ~14-18 HU liver noise at full dose and ~28-37 HU at quarter dose
        on ~32 cm wide phantoms with 0.7 mm pixels).
    electronic_noise : float
        SD of the Gaussian electronic (readout) noise in photon units.
    seed : int, numpy Generator or None
        Random state; an int makes the result reproducible.
    geometry : {"fan", "parallel"}
        ``"fan"``: 3rd-generation fan beam (source radius 570 mm, views over
        360 degrees) rebinned to parallel; ``"parallel"``: parallel beam over
        180 degrees.
    n_views : int, optional
        Views of the reconstruction (over 180 degrees after rebinning), a
        multiple of 8; default ``0.94 * n`` rounded.
    input_dose : float, optional
        None (default): the input is noise-free (a phantom) and the output
        has the noise of one acquisition at ``dose_fraction``, whose SD in a
        uniform region scales as ``1 / sqrt(dose)``. A number (e.g. 1.0): the
        input already carries the noise of a scan at ``input_dose``; only the
        *extra* noise is added (Poisson at the effective dose
        ``1 / (1/dose - 1/input_dose)`` with electronic noise scaled to match
        the per-ray variance difference), so the output has about the noise
        of a ``dose_fraction`` scan. Needs ``dose_fraction < input_dose``.
    return_noise : bool
        Return only the added noise image instead of ``slice_hu + noise``.

    Returns
    -------
    ndarray
        ``(y, x)`` float32 HU.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((128, 128), -1000.0, np.float32)
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img[(yy - 64) ** 2 + (xx - 64) ** 2 < 50 ** 2] = 0.0
    >>> low = simulate_low_dose(img, QUARTER_DOSE, pixel_mm=2.0, seed=0)
    >>> low.shape, low.dtype
    ((128, 128), dtype('float32'))
    """
    img, work, (ya, yb, xa, xb), nv = _prepare(slice_hu, dose_fraction, pixel_mm, i0_full, electronic_noise, geometry, n_views)
    rng = _as_rng(seed)
    dose = float(dose_fraction)
    sigma_e = float(electronic_noise)
    if input_dose is not None:
        d_in = float(input_dose)
        if not (dose < d_in <= 1.0):
            raise ValueError(f"input_dose must be in (dose_fraction, 1], got {input_dose} for dose {dose_fraction}")
        d_eff = 1.0 / (1.0 / dose - 1.0 / d_in)
        sigma_e = sigma_e * d_eff * math.sqrt(1.0 / dose**2 - 1.0 / d_in**2)
        dose = d_eff
    scan = _Scan(work, float(pixel_mm), geometry, nv)
    lam = scan.expected_counts(float(i0_full) * dose)
    noise = scan.noise_image(_log_noise(rng.poisson(lam), lam, sigma_e, rng))[ya:yb, xa:xb]
    if return_noise:
        return noise.astype(np.float32)
    return (img + noise).astype(np.float32)


def simulate_dose_pair(
    slice_hu: NDArray[np.floating[Any]],
    dose_fraction: float,
    *,
    full_dose: float = 1.0,
    pixel_mm: float = 0.7,
    i0_full: float = DEFAULT_I0,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    seed: Seed = None,
    geometry: str = "fan",
    n_views: int | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """A matched (full-dose, low-dose) pair of scans of one noise-free slice.

    The full-dose counts are Poisson at ``i0_full * full_dose``; the low-dose
    counts are their binomial thinning with probability
    ``dose_fraction / full_dose`` (exactly what a scan with fewer photons
    detects, and correlated with the full-dose scan as in the AAPM low-dose
    data), each with its own electronic noise. One forward projection serves
    both.

    Parameters
    ----------
    slice_hu : ndarray
        ``(y, x)`` noise-free HU (a phantom slice).
    dose_fraction : float
        Low dose, in (0, full_dose).
    full_dose : float
        Dose of the "full-dose" image (1.0 = routine).
    pixel_mm, i0_full, electronic_noise, seed, geometry, n_views
        As in :func:`simulate_low_dose`.

    Returns
    -------
    (full_hu, low_hu) : float32 ndarrays ``(y, x)``
    """
    img, work, (ya, yb, xa, xb), nv = _prepare(slice_hu, dose_fraction, pixel_mm, i0_full, electronic_noise, geometry, n_views)
    if not (0.0 < float(dose_fraction) < float(full_dose) <= 1.0):
        raise ValueError(f"need 0 < dose_fraction < full_dose <= 1, got {dose_fraction} and {full_dose}")
    rng = _as_rng(seed)
    scan = _Scan(work, float(pixel_mm), geometry, nv)
    lam_full = scan.expected_counts(float(i0_full) * float(full_dose))
    counts_full = rng.poisson(lam_full)
    counts_low = rng.binomial(counts_full, float(dose_fraction) / float(full_dose))
    lam_low = lam_full * (float(dose_fraction) / float(full_dose))
    full_noise = scan.noise_image(_log_noise(counts_full, lam_full, electronic_noise, rng))[ya:yb, xa:xb]
    low_noise = scan.noise_image(_log_noise(counts_low, lam_low, electronic_noise, rng))[ya:yb, xa:xb]
    return np.add(img, full_noise, dtype=np.float32), np.add(img, low_noise, dtype=np.float32)


def simulate_low_dose_volume(
    volume_hu: NDArray[np.floating[Any]],
    dose_fraction: float,
    *,
    pixel_mm: float = 0.7,
    i0_full: float = DEFAULT_I0,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    seed: Seed = None,
    geometry: str = "fan",
    input_dose: float | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> NDArray[np.float32]:
    """Apply :func:`simulate_low_dose` to every slice of a ``(z, y, x)`` volume.

    Each slice gets its own independent noise drawn from one generator seeded
    by ``seed``, so the result is reproducible.

    Parameters
    ----------
    volume_hu : ndarray
        ``(z, y, x)`` full-dose HU.
    dose_fraction, pixel_mm, i0_full, electronic_noise, geometry, input_dose
        As in :func:`simulate_low_dose`.
    seed : int, Generator or None
        Random state.
    progress, cancel : callables, optional
        ``progress(fraction, message)`` and ``cancel() -> bool``; cancellation
        raises :class:`medviewer.errors.CancelledError` between slices.

    Returns
    -------
    ndarray
        ``(z, y, x)`` float32 low-dose HU.
    """
    vol = np.asarray(volume_hu)
    if vol.ndim != 3:
        raise ValueError(f"simulate_low_dose_volume needs (z, y, x), got shape {vol.shape}")
    rng = _as_rng(seed)
    report = Progress(progress)
    out = np.empty(vol.shape, np.float32)
    nz = vol.shape[0]
    for k in range(nz):
        check_cancel(cancel, "low-dose simulation")
        out[k] = simulate_low_dose(
            vol[k],
            dose_fraction,
            pixel_mm=pixel_mm,
            i0_full=i0_full,
            electronic_noise=electronic_noise,
            seed=rng,
            geometry=geometry,
            input_dose=input_dose,
        )
        report((k + 1) / nz, f"low-dose slice {k + 1}/{nz}")
    return out


__all__ = [
    "QUARTER_DOSE",
    "TENTH_DOSE",
    "MU_WATER_PER_MM",
    "DEFAULT_I0",
    "DEFAULT_ELECTRONIC_NOISE",
    "simulate_low_dose",
    "simulate_low_dose_volume",
    "simulate_dose_pair",
    "forward_project",
    "backproject",
    "filter_sinogram",
    "fbp",
]

