"""Head anatomy of the CT phantom (axial brain CT).

Coordinates are mm, as in :mod:`medviewer.training.phantom_anatomy`: ``x``
towards the patient's left, ``y`` posterior, ``z`` superior, here with
``z = 0`` at the widest level of the cranium (about the bodies of the lateral
ventricles). The patient lies supine with the occiput in a curved head holder.

Layers from outside in: scalp (skin, a thin fat layer), skull (outer and inner
cortical tables with diploe between), a thin subarachnoid CSF space, the
cortex (grey matter folded into gyri: CSF-filled sulci down to 8-18 mm deep),
white matter, deep grey nuclei (basal ganglia, thalami), the lateral and third
ventricles, the interhemispheric fissure with the falx, pineal and choroid
plexus calcifications, and, at the skull base, paranasal sinus and mastoid
air with dense petrous bone. Values follow non-contrast head CT (grey matter
34-42 HU, white matter 24-31 HU, CSF 2-12 HU, skull 1,100-1,700 HU).

Why it exists: most real CT slices the project is evaluated on are heads
(pydicom-data's 693_*, eCT_Supplemental and J2K_pixelrep_mismatch); models
trained on chest/abdomen phantoms alone had never seen a brain, a skull or
their noise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from medviewer.progress import CancelFn, Progress, check_cancel
from medviewer.training.phantom_anatomy import (
    SCANNER_PSF_MM,
    TISSUE_AIRWAY,
    TISSUE_CORTICAL_BONE,
    TISSUE_CSF,
    TISSUE_FAT,
    TISSUE_GRAY_MATTER,
    TISSUE_MARROW,
    TISSUE_SKIN,
    TISSUE_TABLE,
    TISSUE_WHITE_MATTER,
    Habitus,
)
from medviewer.training.phantom_shapes import Arr, Canvas, ShapeFn, capsule, ellipsoid, intersect, offset, smooth_noise, texture

HEAD_Z_RANGE_MM: tuple[float, float] = (-45.0, 55.0)
"""Useful craniocaudal centres of a head volume (mm from the widest level): from the
skull base (sinuses, petrous bone) to near the vertex."""


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _slab(axis: int, lo: float, hi: float, width: float) -> ShapeFn:
    """The slab ``lo <= coordinate <= hi`` along x (0), y (1) or z (2)."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        c = (x, y, z)[axis]
        d = np.maximum(lo - c, c - hi)
        return d, np.full(np.broadcast(x, y, z).shape, width, np.float32)

    return fn


def build_head_anatomy(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    progress: Progress | None = None,
    cancel: CancelFn | None = None,
    slice_thickness: float | None = None,
    z_center_mm: float = 0.0,
    psf_mm: float | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.uint8], Habitus, tuple[float, float, float]]:
    """Paint one random head phantom (same contract as :func:`phantom_anatomy.build_anatomy`).

    Parameters
    ----------
    rng : numpy Generator
        All randomness comes from it.
    shape, spacing : (z, y, x)
        Voxel grid and voxel size (mm). A field of view too small for the head
        scales the whole anatomy down (a child's or small adult's head).
    progress, cancel
        Progress (a :class:`Progress`) and cancel callbacks.
    slice_thickness : float, optional
        Slice thickness (mm) for partial volume along z; default the spacing.
    z_center_mm : float
        Craniocaudal centre of the volume (see :data:`HEAD_Z_RANGE_MM`).
    psf_mm : float, optional
        In-plane scanner blur (Gaussian sigma, mm); default
        :data:`medviewer.training.phantom_anatomy.SCANNER_PSF_MM`, 0 for none.

    Returns
    -------
    hu, tissue, habitus, origin
        As :func:`medviewer.training.phantom_anatomy.build_anatomy`.
    """
    nz, ny, nx = shape
    sz, sy, sx = (float(v) for v in spacing)
    thick = float(slice_thickness) if slice_thickness else sz
    sp = (sx, sy, thick)
    rep = progress or Progress(None)

    # ------------------------------------------------------------- habitus
    A = _u(rng, 66.0, 79.0)  # lateral semi-axis of the head (with scalp)
    B = A * _u(rng, 1.15, 1.32)  # antero-posterior
    C = _u(rng, 92.0, 108.0)  # vertical
    fov_x, fov_y = nx * sx, ny * sy
    s = min(1.0, 0.44 * fov_x / A, 0.42 * fov_y / B)
    A, B, C = A * s, B * s, C * s
    yc = _u(rng, -8.0, 8.0) * s
    tilt = _u(rng, -7.0, 7.0)  # head rotated a little in the holder
    scalp = _u(rng, 4.0, 7.5) * s
    skull_t = _u(rng, 4.5, 9.0) * s
    csf_t = _u(rng, 0.8, 3.0) * s  # subarachnoid space; wider with atrophy
    atrophy = _u(rng, 0.0, 1.0)
    gm_hu, wm_hu = _u(rng, 34.0, 42.0), _u(rng, 24.0, 31.0)
    csf_hu = _u(rng, 2.0, 12.0)
    bone_hu = _u(rng, 1100.0, 1700.0)
    hab = Habitus(A, B, 0.0, 0.0, s, False, yc, {"skull_mm": skull_t, "scalp_mm": scalp, "atrophy": atrophy,
                                                 "gray_hu": gm_hu, "white_hu": wm_hu})

    cv = Canvas.centred(shape, (sz, sy, sx), float(z_center_mm) * s)
    hu, tissue, xs, ys, zs = cv.hu, cv.tissue, cv.x, cv.y, cv.z
    zlo, zhi = float(zs[0]) - 10, float(zs[-1]) + 10
    rep(0.05, "texture fields")
    check_cancel(cancel, "phantom generation")

    fine = smooth_noise(rng, shape, (0.6, 0.8 * 0.7 / sy, 0.8 * 0.7 / sx))
    coarse = smooth_noise(rng, shape, (4.0 / sz * 2.5, 6.0 / sy, 6.0 / sx), downsample=4)
    # gyral pattern: sulci lie along the zero set of a smooth field (3 mm Gaussian)
    gyri = smooth_noise(rng, shape, (max(0.5, 4.0 / sz), 3.0 / sy, 3.0 / sx), downsample=2)
    depth_field = smooth_noise(rng, shape, (max(0.5, 8.0 / sz), 10.0 / sy, 10.0 / sx), downsample=4)

    tex = texture(fine, coarse)

    rep(0.2, "head holder and scalp")
    check_cancel(cancel, "phantom generation")
    # head holder: a curved carbon shell under the occiput with a foam pad
    y_rest = yc + B * math.cos(math.radians(tilt)) + _u(rng, 1.0, 6.0) * s
    r_rest = _u(rng, 110.0, 160.0) * s

    def rest_y(x: Arr) -> Arr:
        return y_rest + (x * x) / (2.0 * r_rest)

    shell = lambda x, y, z: (np.abs(y - rest_y(x) - 9.0 * s) - 1.4, np.full(np.broadcast(x, y, z).shape, sy, np.float32))  # noqa: E731
    half = 0.95 * A + 25.0 * s
    cv.paint(intersect(shell, _slab(0, -half, half, sx)), (-half - 5, y_rest - 5, zlo), (half + 5, y_rest + 90 * s, zhi),
             _u(rng, 150.0, 300.0), TISSUE_TABLE)
    pad = lambda x, y, z: (np.maximum(rest_y(x) - y, y - rest_y(x) - 8.0 * s), np.full(np.broadcast(x, y, z).shape, sy, np.float32))  # noqa: E731
    cv.paint(intersect(pad, _slab(0, -half + 8, half - 8, sx)), (-half, y_rest - 5, zlo), (half, y_rest + 90 * s, zhi),
             -900.0, TISSUE_TABLE)

    head = ellipsoid((0.0, yc, 0.0), (A, B, C), sp, angle_deg=tilt)
    box = ((-A - 5, yc - B - 5, zlo), (A + 5, yc + B + 5, zhi))
    cv.paint(head, *box, tex(38.0, 4.0), TISSUE_SKIN)
    cv.paint(offset(head, -1.6 * s), *box, tex(-85.0, 8.0), TISSUE_FAT)
    cv.paint(offset(head, -min(scalp - 0.8 * s, _u(rng, 2.6, 4.0) * s)), *box, tex(40.0, 4.0), TISSUE_SKIN)
    # temporalis muscles over the temporal squama (thicker scalp laterally)
    for sgn in (-1.0, 1.0):
        tm = ellipsoid((sgn * (A - scalp), yc - 0.1 * B, -5.0 * s), (scalp + 4.0 * s, 0.45 * B, 0.45 * C), sp, angle_deg=tilt)
        cv.paint(intersect(tm, head), *box, tex(48.0, 4.0), TISSUE_SKIN)

    rep(0.35, "skull")
    check_cancel(cancel, "phantom generation")
    skull = offset(head, -scalp)
    cv.paint(skull, *box, tex(bone_hu, 60.0, 30.0), TISSUE_CORTICAL_BONE)
    if skull_t > 3.4 * s:  # diploe between the tables
        diploe = intersect(offset(skull, -1.5 * s), _outside(offset(head, -(scalp + skull_t - 1.5 * s))))
        cv.paint(diploe, *box, tex(_u(rng, 450.0, 750.0), 80.0, 40.0), TISSUE_MARROW)
    inner = offset(head, -(scalp + skull_t))
    cv.paint(inner, *box, tex(csf_hu, 1.5), TISSUE_CSF)
    brain = offset(inner, -csf_t * (1.0 + atrophy))

    rep(0.5, "cortex and white matter")
    check_cancel(cancel, "phantom generation")
    a_brain = cv.alpha(brain, *box)
    if a_brain is not None:
        sl, ab = a_brain
        x, y, z = cv.grids(sl)
        d, _ = brain(x, y, z)
        depth = np.broadcast_to(-d, ab.shape).astype(np.float32)  # mm below the brain surface
        # grey matter everywhere, then white matter below a wavy cortex
        val = gm_hu + 1.6 * fine[sl]
        # sulci: thin CSF clefts along the zero set of the gyral field, down to a varying depth
        sulcal_depth = (_u(rng, 8.0, 14.0) + 4.0 * depth_field[sl]) * s
        width = _u(rng, 0.10, 0.17) * (1.0 + atrophy)
        g = np.abs(gyri[sl])
        cleft = np.clip(1.0 - g / width, 0.0, 1.0) * np.clip((sulcal_depth - depth) / 2.0, 0.0, 1.0)
        # white matter where the nearest CSF (brain surface or a sulcus) is farther than the
        # cortical thickness: it fills the gyral cores, grey matter lines every sulcus.
        # |field| / |gradient| approximates the distance to the sulcus (about 4.2 mm per unit).
        cortex = np.clip(_u(rng, 2.4, 3.4) + 0.8 * depth_field[sl], 1.5, 5.0) * s
        to_sulcus = np.sqrt((4.2 * s * g) ** 2 + np.maximum(depth - sulcal_depth, 0.0) ** 2)
        w_wm = np.clip((np.minimum(depth, to_sulcus) - cortex) / 1.0, 0.0, 1.0)
        val = val + w_wm * (wm_hu - gm_hu + 1.2 * coarse[sl])
        val = val + cleft * (csf_hu - val)
        sub = hu[sl]
        sub += ab * (val.astype(np.float32) - sub)
        t = tissue[sl]
        t[(ab >= 0.5) & (w_wm >= 0.5)] = TISSUE_WHITE_MATTER
        t[(ab >= 0.5) & (w_wm < 0.5)] = TISSUE_GRAY_MATTER
        t[(ab >= 0.5) & (cleft >= 0.5)] = TISSUE_CSF
        del depth, val, w_wm, cleft, sub, g, to_sulcus

    rep(0.65, "deep structures")
    check_cancel(cancel, "phantom generation")
    ca, sa = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))

    def rot(px: float, py: float) -> tuple[float, float]:  # head frame -> patient frame
        return px * ca - py * sa, yc + px * sa + py * ca

    def blob(px: float, py: float, pz: float, semi: tuple[float, float, float], ang: float = 0.0) -> tuple[ShapeFn, tuple[tuple[float, float, float], tuple[float, float, float]]]:
        cx, cy = rot(px * s, py * s)
        sm = (semi[0] * s, semi[1] * s, semi[2] * s)
        r = max(sm) + 4.0
        return ellipsoid((cx, cy, pz * s), sm, sp, angle_deg=tilt + ang), ((cx - r, cy - r, pz * s - r), (cx + r, cy + r, pz * s + r))

    inside_brain = lambda sl: (tissue[sl] == TISSUE_GRAY_MATTER) | (tissue[sl] == TISSUE_WHITE_MATTER) | (tissue[sl] == TISSUE_CSF)  # noqa: E731
    # basal ganglia and thalami (grey), below the ventricle bodies
    for sgn in (-1.0, 1.0):
        for (px, py, pz), semi, ang in (
            ((sgn * 20.0, -12.0, -10.0), (8.0, 15.0, 12.0), -sgn * 15.0),  # lentiform nucleus
            ((sgn * 9.0, 8.0, -8.0), (8.0, 12.0, 10.0), sgn * 10.0),  # thalamus
        ):
            shp, bx = blob(px, py, pz, semi, ang)
            cv.paint(shp, *bx, tex(gm_hu - 1.0, 1.6), TISSUE_GRAY_MATTER, within=inside_brain)
    # lateral ventricles: frontal horns, bodies, trigones; size grows with atrophy
    vs = 1.0 + 0.9 * atrophy
    for sgn in (-1.0, 1.0):
        for (px, py, pz), semi, ang in (
            ((sgn * 7.0, -22.0, 2.0), (4.0 * vs, 14.0, 8.0 * vs), sgn * 25.0),  # frontal horn
            ((sgn * 9.0, 2.0, 14.0), (4.5 * vs, 20.0, 7.0 * vs), -sgn * 6.0),  # body
            ((sgn * 17.0, 24.0, 4.0), (6.0 * vs, 9.0, 9.0 * vs), -sgn * 30.0),  # trigone
        ):
            shp, bx = blob(px, py, pz, semi, ang)
            cv.paint(shp, *bx, tex(csf_hu, 1.0), TISSUE_CSF, within=inside_brain)
        if rng.random() < 0.6:  # choroid plexus calcification in the trigone
            shp, bx = blob(sgn * 17.0, 26.0, 4.0, (2.2, 3.0, 2.0))
            cv.paint(shp, *bx, _u(rng, 90.0, 260.0), TISSUE_CSF, within=inside_brain)
    shp, bx = blob(0.0, 4.0, -12.0, (1.6 * vs, 12.0, 8.0))  # third ventricle
    cv.paint(shp, *bx, tex(csf_hu, 1.0), TISSUE_CSF, within=inside_brain)
    if rng.random() < 0.7:  # pineal calcification
        shp, bx = blob(0.0, 20.0, -6.0, (2.0, 2.5, 2.0))
        cv.paint(shp, *bx, _u(rng, 120.0, 400.0), TISSUE_CSF, within=inside_brain)
    # interhemispheric fissure with the falx (not across the corpus callosum / deep nuclei)
    fiss_w = (0.8 + 1.2 * atrophy) * s
    for y_lo, y_hi, z_lo in ((-B, -18.0 * s, -60.0 * s), (28.0 * s, B, -60.0 * s), (-B, B, 26.0 * s)):
        plane = intersect(_slab(0, -fiss_w, fiss_w, sx), _slab(1, yc + y_lo, yc + y_hi, sy), _slab(2, z_lo, 2 * C, thick))
        cv.paint(plane, *box, tex(csf_hu, 1.0), TISSUE_CSF, within=inside_brain)
        falx = intersect(_slab(0, -0.35 * s, 0.35 * s, sx), _slab(1, yc + y_lo, yc + y_hi, sy), _slab(2, z_lo, 2 * C, thick))
        cv.paint(falx, *box, _u(rng, 55.0, 95.0), None, within=inside_brain)

    rep(0.8, "skull base")
    check_cancel(cancel, "phantom generation")
    if zlo < -25.0 * s:
        # frontal / ethmoid sinus air between the tables, anterior midline
        by = B * math.sqrt(max(0.0, 1.0 - (42.0 * s / C) ** 2))  # AP half-depth of the head at that level
        shp, bx = blob(0.0, -(by - scalp - 0.5 * skull_t) / s, -42.0, (_u(rng, 8.0, 16.0), 6.0, 12.0))
        cv.paint(shp, *bx, tex(-960.0, 15.0), TISSUE_AIRWAY)
        for sgn in (-1.0, 1.0):
            # petrous bone (dense ridge running antero-medially) with mastoid air cells behind it
            p = np.array([*rot(sgn * (A - scalp - 0.5 * skull_t), 0.22 * B), -50.0 * s])
            q = np.array([*rot(sgn * 0.42 * A, 0.05 * B), -46.0 * s])
            lo = tuple(np.minimum(p, q) - 14.0)
            hi = tuple(np.maximum(p, q) + 14.0)
            cv.paint(capsule(p, q, 5.0 * s, 2.5 * s, sp), lo, hi, tex(bone_hu, 60.0), TISSUE_CORTICAL_BONE)
            shp, bx = blob(sgn * (A / s - scalp / s - 10.0), 0.35 * B / s, -46.0, (8.0, 10.0, 9.0))
            cv.paint(shp, *bx, tex(-800.0, 120.0), TISSUE_AIRWAY, within=lambda sl: tissue[sl] != TISSUE_SKIN)
    del fine, coarse, gyri, depth_field, tex

    rep(0.95, "scanner blur")
    check_cancel(cancel, "phantom generation")
    from scipy import ndimage

    sig = SCANNER_PSF_MM if psf_mm is None else float(psf_mm)  # as the body phantom
    if sig > 0:
        ndimage.gaussian_filter(hu, (0.0, sig / sy, sig / sx), output=hu, truncate=3.0)
    origin = (float(xs[0]), float(ys[0]), float(zs[0]))
    return hu, tissue, hab, origin


def _outside(shape: ShapeFn) -> ShapeFn:
    """The complement of a shape."""

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d, w = shape(x, y, z)
        return -d, w

    return fn


__all__ = ["HEAD_Z_RANGE_MM", "build_head_anatomy"]
