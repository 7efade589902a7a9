"""Analytic shapes with partial-volume edges, painted onto a voxel grid.

Every shape is a function of physical coordinates (mm) returning an
approximate signed distance ``d`` (negative inside) and the *width* ``w`` of a
voxel projected on the surface normal (``|nx| sx + |ny| sy + |nz| sz``). The
coverage ``alpha = clip(0.5 - d / w, 0, 1)`` is then the fraction of the voxel
inside the shape to first order — the box-filtered (partial-volume) edge of a
real CT voxel, computed without supersampling. Shapes are evaluated only in
their bounding box, so small structures cost little.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Arr = Any
"""Array-like broadcastable coordinates or values (numpy arrays or scalars)."""
ShapeFn = Callable[[Arr, Arr, Arr], tuple[Arr, Arr]]
"""(X, Y, Z) broadcastable mm grids -> (signed distance mm, voxel width mm)."""

_EPS = 1e-6


def ellipsoid(
    center: tuple[float, float, float],
    semi: tuple[float, float, float],
    spacing_xyz: tuple[float, float, float],
    angle_deg: float = 0.0,
) -> ShapeFn:
    """An ellipsoid rotated by ``angle_deg`` about z (semi-axes in mm, ``inf`` = unbounded).

    With an infinite z semi-axis (an elliptic cylinder along z) only the
    in-plane distance is computed, shape ``(1, y, x)``, broadcast later.
    """
    cx, cy, cz = (float(v) for v in center)
    a, b, c = (float(v) for v in semi)
    sx, sy, sz = (float(v) for v in spacing_xyz)
    ca, sa = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    inv = [0.0 if not math.isfinite(s) else 1.0 / s for s in (a, b, c)]
    flat = inv[2] == 0.0

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        dx, dy = x - cx, y - cy
        u = dx * ca + dy * sa
        v = -dx * sa + dy * ca
        qu, qv = u * inv[0], v * inv[1]
        if flat:
            f = np.sqrt(qu * qu + qv * qv) + _EPS
            gu, gv = qu * (inv[0] / f), qv * (inv[1] / f)
            gx = gu * ca - gv * sa
            gy = gu * sa + gv * ca
            gn = np.sqrt(gx * gx + gy * gy) + _EPS
            return (f - 1.0) / gn, (np.abs(gx) * sx + np.abs(gy) * sy) / gn
        qz = (z - cz) * inv[2]
        f = np.sqrt(qu * qu + qv * qv + qz * qz) + _EPS
        gu, gv, gz = qu * inv[0] / f, qv * inv[1] / f, qz * inv[2] / f
        gx = gu * ca - gv * sa
        gy = gu * sa + gv * ca
        gn = np.sqrt(gx * gx + gy * gy + gz * gz) + _EPS
        d = (f - 1.0) / gn
        w = (np.abs(gx) * sx + np.abs(gy) * sy + np.abs(gz) * sz) / gn
        return d, w

    return fn


def half_space(point: tuple[float, float, float], normal: tuple[float, float, float], spacing_xyz: tuple[float, float, float]) -> ShapeFn:
    """The half-space ``n . (p - point) <= 0`` (``normal`` points outside)."""
    nv = np.asarray(normal, float)
    nv = nv / np.linalg.norm(nv)
    n = [float(v) for v in nv]
    px, py, pz = (float(v) for v in point)
    w0 = float(abs(n[0]) * spacing_xyz[0] + abs(n[1]) * spacing_xyz[1] + abs(n[2]) * spacing_xyz[2])

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d = (x - px) * n[0] + (y - py) * n[1] + (z - pz) * n[2]
        return d, np.full_like(d, w0)

    return fn


def intersect(*shapes: ShapeFn) -> ShapeFn:
    """Inside all shapes (max of distances)."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d, w = shapes[0](x, y, z)
        for s in shapes[1:]:
            d2, w2 = s(x, y, z)
            take = d2 > d
            d = np.where(take, d2, d)
            w = np.where(take, w2, w)
        return d, w

    return fn


def union(*shapes: ShapeFn) -> ShapeFn:
    """Inside any shape (min of distances)."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d, w = shapes[0](x, y, z)
        for s in shapes[1:]:
            d2, w2 = s(x, y, z)
            take = d2 < d
            d = np.where(take, d2, d)
            w = np.where(take, w2, w)
        return d, w

    return fn


def subtract(a: ShapeFn, b: ShapeFn) -> ShapeFn:
    """Inside ``a`` and outside ``b``."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d1, w1 = a(x, y, z)
        d2, w2 = b(x, y, z)
        d2 = -d2
        take = d2 > d1
        return np.where(take, d2, d1), np.where(take, w2, w1)

    return fn


def offset(shape: ShapeFn, mm: float) -> ShapeFn:
    """Grow (mm > 0) or shrink (mm < 0) a shape (exact for true distances, approximate here)."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d, w = shape(x, y, z)
        return d - mm, w

    return fn


def capsule(p0: NDArray[np.float64], p1: NDArray[np.float64], r0: float, r1: float, spacing_xyz: tuple[float, float, float]) -> ShapeFn:
    """A tapered tube from ``p0`` (radius r0) to ``p1`` (radius r1), points (x, y, z) in mm."""
    a0 = np.asarray(p0, float)
    ab0 = np.asarray(p1, float) - a0
    L2 = float(ab0 @ ab0) + _EPS
    a = [float(v) for v in a0]
    ab = [float(v) for v in ab0]
    r0, r1 = float(r0), float(r1)
    sx, sy, sz = spacing_xyz

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        px, py, pz = x - a[0], y - a[1], z - a[2]
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / L2, 0.0, 1.0)
        qx, qy, qz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        dist = np.sqrt(qx * qx + qy * qy + qz * qz) + _EPS
        r = r0 + (r1 - r0) * t
        d = dist - r
        w = (np.abs(qx) * sx + np.abs(qy) * sy + np.abs(qz) * sz) / dist
        return d, w

    return fn


def coverage(d: Arr, w: Arr, soft_mm: float = 0.0) -> F32:
    """Voxel coverage from distance and width; ``soft_mm`` widens the edge (a soft margin)."""
    width = w + soft_mm
    return np.clip(0.5 - d / np.maximum(width, 1e-3), 0.0, 1.0).astype(np.float32)


@dataclass
class Canvas:
    """A volume being painted: HU, tissue class, and the mm coordinates of the voxel centres.

    ``x``/``y``/``z`` are 1-D coordinate vectors (mm) of columns, rows and slices.
    """

    hu: F32
    tissue: NDArray[np.uint8]
    x: NDArray[np.float32]
    y: NDArray[np.float32]
    z: NDArray[np.float32]

    @classmethod
    def centred(cls, shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float], z_center: float) -> Canvas:
        """An air-filled canvas (-1000 HU, tissue 0) centred on x = y = 0 and ``z_center`` (mm)."""
        nz, ny, nx = shape
        sz, sy, sx = spacing_zyx
        z0 = z_center - (nz - 1) * sz / 2.0
        x0 = -(nx - 1) * sx / 2.0
        y0 = -(ny - 1) * sy / 2.0
        xs = (x0 + np.arange(nx) * sx).astype(np.float32)
        ys = (y0 + np.arange(ny) * sy).astype(np.float32)
        zs = (z0 + np.arange(nz) * sz).astype(np.float32)
        return cls(np.full(shape, -1000.0, np.float32), np.zeros(shape, np.uint8), xs, ys, zs)

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        def step(v: NDArray[np.float32]) -> float:
            return float(abs(v[1] - v[0])) if v.size > 1 else 1.0

        return step(self.x), step(self.y), step(self.z)

    def box(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) covering the mm box [lo, hi] (x, y, z), or None if empty."""
        out = []
        for v, a, b in ((self.z, lo[2], hi[2]), (self.y, lo[1], hi[1]), (self.x, lo[0], hi[0])):
            s = self.spacing_step(v)
            i0 = int(math.floor((a - float(v[0])) / s)) - 1
            i1 = int(math.ceil((b - float(v[0])) / s)) + 2
            i0, i1 = max(i0, 0), min(i1, v.size)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    @staticmethod
    def spacing_step(v: NDArray[np.float32]) -> float:
        return float(v[1] - v[0]) if v.size > 1 else 1.0

    def grids(self, sl: tuple[slice, slice, slice]) -> tuple[Arr, Arr, Arr]:
        z = self.z[sl[0]][:, None, None]
        y = self.y[sl[1]][None, :, None]
        x = self.x[sl[2]][None, None, :]
        return x, y, z

    def alpha(self, shape: ShapeFn, lo: tuple[float, float, float], hi: tuple[float, float, float], soft_mm: float = 0.0) -> tuple[tuple[slice, slice, slice], F32] | None:
        """Coverage of ``shape`` inside the mm box, with the box's index slices."""
        sl = self.box(lo, hi)
        if sl is None:
            return None
        x, y, z = self.grids(sl)
        d, w = shape(x, y, z)
        a = coverage(d, w, soft_mm)
        a = np.broadcast_to(a, (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start))
        return sl, a

    def paint(
        self,
        shape: ShapeFn,
        lo: tuple[float, float, float],
        hi: tuple[float, float, float],
        value: float | Callable[[tuple[slice, slice, slice]], Arr],
        tissue: int | None,
        soft_mm: float = 0.0,
        within: Callable[[tuple[slice, slice, slice]], Arr] | None = None,
    ) -> F32 | None:
        """Alpha-composite ``value`` inside ``shape``; returns the coverage used.

        ``value`` is a number or a function of the box slices returning HU
        (for textures). ``within`` optionally multiplies the coverage (e.g.
        keep vessels inside the lungs). Tissue is set where coverage >= 0.5.
        """
        res = self.alpha(shape, lo, hi, soft_mm)
        if res is None:
            return None
        sl, a = res
        if within is not None:
            a = a * within(sl)
        if not np.any(a):
            return None
        val = value(sl) if callable(value) else np.float32(value)
        sub = self.hu[sl]
        sub += a * (val - sub)
        if tissue is not None:
            self.tissue[sl][a >= 0.5] = tissue
        return np.asarray(a, np.float32)


def texture(fine: F32, coarse: F32) -> Callable[..., Callable[[tuple[slice, slice, slice]], Arr]]:
    """``tex(base, a_fine, a_coarse=0)``: a textured HU value ``base + a_fine * fine + a_coarse * coarse``
    for :meth:`Canvas.paint` (evaluated on the painted box only)."""

    def tex(base: float, a_fine: float, a_coarse: float = 0.0) -> Callable[[tuple[slice, slice, slice]], Arr]:
        def f(sl: tuple[slice, slice, slice]) -> Arr:
            v = np.float32(base) + np.float32(a_fine) * fine[sl]
            if a_coarse:
                v = v + np.float32(a_coarse) * coarse[sl]
            return v

        return f

    return tex


def _interp_index(n_out: int, n_in: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]:
    """Periodic, grid-centred linear interpolation from n_in to n_out samples: (i0, i1, w1)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    i0 = np.floor(pos).astype(np.intp)
    w = (pos - i0).astype(np.float32)
    return np.mod(i0, n_in), np.mod(i0 + 1, n_in), w


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], sigma_vox: tuple[float, float, float], downsample: int = 1) -> F32:
    """Unit-variance Gaussian-filtered white noise (a correlated texture field), ``(z, y, x)``.

    ``downsample`` > 1 draws the noise on an in-plane grid that much coarser
    (faster for long correlation lengths) and interpolates linearly back
    (separable gathers; no BLAS threads, which stall badly on a busy machine).
    """
    from scipy import ndimage

    nz, ny, nx = shape
    if downsample > 1:
        my, mx = max(4, -(-ny // downsample)), max(4, -(-nx // downsample))
        sig = (sigma_vox[0], sigma_vox[1] * my / ny, sigma_vox[2] * mx / nx)
        small = rng.standard_normal((nz, my, mx), dtype=np.float32)
        small = ndimage.gaussian_filter(small, sig, mode="wrap")
        y0, y1, wy = _interp_index(ny, my)
        x0, x1, wx = _interp_index(nx, mx)
        rows = small[:, y0, :] * (1 - wy)[None, :, None] + small[:, y1, :] * wy[None, :, None]
        field = rows[:, :, x0] * (1 - wx)[None, None, :]
        field += rows[:, :, x1] * wx[None, None, :]
    else:
        field = rng.standard_normal(shape, dtype=np.float32)
        ndimage.gaussian_filter(field, sigma_vox, mode="wrap", output=field)
    sd = float(field[:: max(1, nz // 8), ::4, ::4].std()) or 1.0
    field *= np.float32(1.0 / sd)
    return field
