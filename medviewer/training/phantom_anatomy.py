"""Chest and upper-abdomen anatomy of the CT phantom.

Coordinates are mm: ``x`` towards the patient's left, ``y`` posterior, ``z``
superior with ``z = 0`` at the top of the right diaphragm dome (the phantom's
patient coordinates are exactly these, LPS). The patient lies supine on a
table (flat back, table posterior). Organs are analytic shapes with
partial-volume edges (:mod:`medviewer.training.phantom_shapes`) painted in
anatomical order, each with its own HU and correlated texture; lung vessels
and airways are random branching trees.

Tissue classes (``TISSUE_*``; ``Phantom.tissue``) are documented in
:data:`TISSUE_NAMES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from medviewer.progress import CancelFn, Progress, check_cancel
from medviewer.training.phantom_shapes import (
    Arr,
    Canvas,
    ShapeFn,
    capsule,
    ellipsoid,
    intersect,
    offset,
    subtract,
    smooth_noise,
    texture,
    union,
)

SCANNER_PSF_MM = 0.38
"""In-plane point spread (Gaussian sigma, mm) of the phantoms' scanner blur: a standard soft-tissue
kernel, FWHM about 0.9 mm. ``psf_mm`` of :func:`build_anatomy` and of the head builder changes it
(sharper bone kernels, or 0 for none)."""

TISSUE_AIR = 0
TISSUE_SKIN = 1
TISSUE_FAT = 2
TISSUE_MUSCLE = 3
TISSUE_LUNG = 4
TISSUE_AIRWAY = 5
TISSUE_LUNG_VESSEL = 6
TISSUE_HEART = 7
TISSUE_BLOOD = 8
TISSUE_LIVER = 9
TISSUE_SPLEEN = 10
TISSUE_KIDNEY = 11
TISSUE_BOWEL = 12
TISSUE_GAS = 13
TISSUE_CORTICAL_BONE = 14
TISSUE_MARROW = 15
TISSUE_GALLBLADDER = 16
TISSUE_STOMACH = 17
TISSUE_PANCREAS = 18
TISSUE_CARTILAGE = 19
TISSUE_TABLE = 20
TISSUE_DISC = 21
TISSUE_CSF = 22
TISSUE_GRAY_MATTER = 23
TISSUE_WHITE_MATTER = 24

TISSUE_NAMES: dict[int, str] = {
    TISSUE_AIR: "air (outside the body)",
    TISSUE_SKIN: "skin",
    TISSUE_FAT: "fat (subcutaneous, visceral, mediastinal)",
    TISSUE_MUSCLE: "skeletal muscle (and diaphragm)",
    TISSUE_LUNG: "lung parenchyma",
    TISSUE_AIRWAY: "airway lumen (trachea, bronchi; paranasal sinus and mastoid air of the head phantom)",
    TISSUE_LUNG_VESSEL: "pulmonary vessel",
    TISSUE_HEART: "heart (myocardium)",
    TISSUE_BLOOD: "blood pool (heart chambers, great vessels, liver veins)",
    TISSUE_LIVER: "liver",
    TISSUE_SPLEEN: "spleen",
    TISSUE_KIDNEY: "kidney",
    TISSUE_BOWEL: "bowel wall and content",
    TISSUE_GAS: "bowel / stomach gas",
    TISSUE_CORTICAL_BONE: "cortical bone",
    TISSUE_MARROW: "cancellous bone / marrow",
    TISSUE_GALLBLADDER: "gallbladder (bile)",
    TISSUE_STOMACH: "stomach wall and content",
    TISSUE_PANCREAS: "pancreas",
    TISSUE_CARTILAGE: "costal cartilage",
    TISSUE_TABLE: "patient table (head holder and pad of the head phantom)",
    TISSUE_DISC: "intervertebral disc",
    TISSUE_CSF: "CSF (spinal canal and cord; ventricles, sulci, subarachnoid space of the head phantom)",
    TISSUE_GRAY_MATTER: "grey matter (cortex, deep nuclei; head phantom)",
    TISSUE_WHITE_MATTER: "white matter (head phantom)",
}

#: HU ranges each tissue class must lie in (used by the tests; the wide ones
#: allow texture, contrast phase and partial volume at edges).
TISSUE_HU_RANGES: dict[int, tuple[float, float]] = {
    TISSUE_AIR: (-1010.0, -950.0),
    TISSUE_FAT: (-160.0, -40.0),
    TISSUE_MUSCLE: (10.0, 100.0),
    TISSUE_LUNG: (-950.0, -500.0),  # upper tail: partial volume of small vessels at coarse voxels
    TISSUE_LIVER: (30.0, 160.0),
    TISSUE_SPLEEN: (25.0, 160.0),
    TISSUE_KIDNEY: (10.0, 220.0),
    TISSUE_CORTICAL_BONE: (300.0, 1600.0),
    TISSUE_MARROW: (80.0, 400.0),
    TISSUE_GALLBLADDER: (-10.0, 30.0),
    TISSUE_GRAY_MATTER: (15.0, 70.0),
    TISSUE_WHITE_MATTER: (10.0, 60.0),
}


@dataclass
class Habitus:
    """Random body-build parameters of one phantom (mm)."""

    half_width: float
    half_depth: float
    fat: float
    muscle: float
    scale: float
    contrast: bool
    y_center: float
    params: dict[str, float] = field(default_factory=dict)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def elliptic_column(
    cx: Callable[[Arr], Arr] | float,
    cy: Callable[[Arr], Arr] | float,
    a: Callable[[Arr], Arr] | float,
    b: Callable[[Arr], Arr] | float,
    spacing_xyz: tuple[float, float, float],
) -> ShapeFn:
    """An elliptic cylinder along z whose centre and semi-axes may vary with z."""
    sx, sy, _ = spacing_xyz

    def val(f: Callable[[Arr], Arr] | float, z: Arr) -> Arr:
        return f(z) if callable(f) else np.float32(f)

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        ia, ib = 1.0 / val(a, z), 1.0 / val(b, z)
        qu, qv = (x - val(cx, z)) * ia, (y - val(cy, z)) * ib
        f = np.sqrt(qu * qu + qv * qv) + 1e-6
        gx, gy = qu * ia / f, qv * ib / f
        gn = np.sqrt(gx * gx + gy * gy) + 1e-6
        return (f - 1.0) / gn, (np.abs(gx) * sx + np.abs(gy) * sy) / gn

    return fn


def height_field_below(h: Callable[[Arr, Arr], Arr], grad: Callable[[Arr, Arr], tuple[Arr, Arr]], spacing_xyz: tuple[float, float, float]) -> ShapeFn:
    """The region ``z <= h(x, y)`` (e.g. below the diaphragm)."""
    sx, sy, sz = spacing_xyz

    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        gx, gy = grad(x, y)
        gn = np.sqrt(1.0 + gx * gx + gy * gy)
        d = (z - h(x, y)) / gn
        w = (np.abs(gx) * sx + np.abs(gy) * sy + sz) / gn
        return d, w

    return fn


def _negate(shape: ShapeFn) -> ShapeFn:
    def fn(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        d, w = shape(x, y, z)
        return -d, w

    return fn


def _tree(
    rng: np.random.Generator,
    start: NDArray[np.float64],
    direction: NDArray[np.float64],
    radius: float,
    inside: Callable[[NDArray[np.float64]], bool],
    min_radius: float,
    max_segments: int,
    spread: float = 0.45,
) -> list[tuple[NDArray[np.float64], NDArray[np.float64], float, float]]:
    """A random bifurcating tree of tapered segments (p0, p1, r0, r1) staying where ``inside``."""
    segs: list[tuple[NDArray[np.float64], NDArray[np.float64], float, float]] = []
    stack = [(start, direction / np.linalg.norm(direction), radius)]
    while stack and len(segs) < max_segments:
        p, d, r = stack.pop(0)
        length = 3.5 * r + rng.uniform(3.0, 8.0)
        q = None
        for _ in range(4):  # a few tries to stay inside the organ
            nd = d + rng.normal(0.0, 0.2, 3)
            nd /= np.linalg.norm(nd)
            cand = p + nd * length
            if inside(cand):
                d, q = nd, cand
                break
        if q is None:
            continue
        r_end = max(r * 0.92, min_radius)
        segs.append((p, q, r, r_end))
        child = r * rng.uniform(0.7, 0.82)
        if child < min_radius:
            continue
        perp = np.cross(d, rng.normal(size=3))
        perp /= np.linalg.norm(perp) + 1e-9
        ang = spread * rng.uniform(0.7, 1.3)
        for sgn in (1.0, -1.0):
            nd = d * math.cos(ang) + sgn * perp * math.sin(ang)
            stack.append((q, nd, child if sgn > 0 else child * rng.uniform(0.8, 1.0)))
    return segs


def build_anatomy(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    contrast: bool,
    progress: Progress | None = None,
    cancel: CancelFn | None = None,
    slice_thickness: float | None = None,
    z_center_mm: float = -10.0,
    psf_mm: float = SCANNER_PSF_MM,
) -> tuple[NDArray[np.float32], NDArray[np.uint8], Habitus, tuple[float, float, float]]:
    """Paint one random chest/upper-abdomen phantom.

    Parameters
    ----------
    rng : numpy Generator
        All randomness comes from it (deterministic for a given state).
    shape : (z, y, x)
        Voxel grid.
    spacing : (z, y, x)
        Voxel size in mm.
    contrast : bool
        Portal-venous contrast phase (enhanced blood, liver, spleen, kidneys).
    progress, cancel
        Progress (a :class:`Progress`) and cancel callbacks.
    slice_thickness : float, optional
        Reconstructed slice thickness (mm) for the partial-volume effect
        along z; default the slice spacing. Sparse slices (spacing larger
        than thickness) sample the anatomy without thick-slice blur.
    z_center_mm : float
        Craniocaudal centre of the volume (see :func:`medviewer.training.phantom.make_phantom`).
    psf_mm : float
        In-plane scanner blur, a Gaussian of this sigma in mm (:data:`SCANNER_PSF_MM`); 0 for none.

    Returns
    -------
    hu : ndarray float32 (z, y, x)
    tissue : ndarray uint8 (z, y, x)
    habitus : Habitus
    origin : (x, y, z)
        LPS position of voxel (0, 0, 0) in mm.
    """
    nz, ny, nx = shape
    sz, sy, sx = (float(s) for s in spacing)
    thick = float(slice_thickness) if slice_thickness else sz
    sp = (sx, sy, thick)
    rep = progress or Progress(None)

    # ------------------------------------------------------------- habitus
    A = _u(rng, 140.0, 190.0)
    B = A * _u(rng, 0.62, 0.74)
    fov_x, fov_y = nx * sx, ny * sy
    s = min(1.0, 0.45 * fov_x / A, 0.40 * fov_y / B)
    A *= s
    B *= s
    fat = s * (4.0 + (A / s - 140.0) / 50.0 * 26.0 + _u(rng, -3.0, 8.0))
    fat = max(fat, 3.0 * s)
    mus = s * _u(rng, 7.0, 12.0)
    enh = _u(rng, 0.8, 1.25)  # strength of contrast enhancement (dose, timing, cardiac output)
    liver_shift = float(np.clip(rng.normal(0.0, 6.0), -14.0, 12.0))  # fatty liver .. dense liver
    yc = -0.06 * B
    hab = Habitus(A, B, fat, mus, s, contrast, yc, {"enhancement": enh, "liver_shift_hu": liver_shift})

    z_extent = nz * sz
    cv = Canvas.centred(shape, (sz, sy, sx), float(z_center_mm) * s)
    hu, tissue, xs, ys, zs = cv.hu, cv.tissue, cv.x, cv.y, cv.z
    zlo, zhi = float(zs[0]) - 10, float(zs[-1]) + 10
    BIG = 1e4
    rep(0.02, "texture fields")
    check_cancel(cancel, "phantom generation")

    # ---------------------------------------------------- texture fields
    fine = smooth_noise(rng, shape, (0.6, 1.0 * 0.7 / sy, 1.0 * 0.7 / sx))
    coarse = smooth_noise(rng, shape, (4.0 / sz * 2.5, 6.0 / sy, 6.0 / sx), downsample=4)
    blob = smooth_noise(rng, shape, (6.0 / sz, 7.0 / sy, 7.0 / sx), downsample=4)
    blob2 = smooth_noise(rng, shape, (3.0 / sz, 3.0 / sy, 3.0 / sx), downsample=2)
    rep(0.25, "body")
    check_cancel(cancel, "phantom generation")

    tex = texture(fine, coarse)

    # body outline: slightly narrower chest top, flat back on the table
    def a_of(z: Arr) -> float:
        return A

    def b_of(z: Arr) -> float:
        return B

    y_back = yc + 0.88 * B
    flat_back = lambda x, y, z: (y - y_back, np.full(np.broadcast(x, y, z).shape, sy, np.float32))  # noqa: E731
    body = intersect(elliptic_column(0.0, yc, A, B, sp), flat_back)
    box_all = ((-A - 10, yc - B - 10, zlo), (A + 10, y_back + 10, zhi))

    # patient table: two thin curved carbon shells with foam between
    def table_y(x: Arr) -> Arr:
        return y_back + 6.0 * s + (x * x) / (2500.0 * s)

    for dy, th, val in ((0.0, 2.5, 250.0), (45.0 * s, 2.5, 250.0)):
        shell = lambda x, y, z, dy=dy, th=th: (np.abs(y - table_y(x) - dy) - th / 2, np.full(np.broadcast(x, y, z).shape, sy, np.float32))  # noqa: E731
        cv.paint(intersect(shell, lambda x, y, z: (np.abs(x) - 230.0 * s, np.full(np.broadcast(x, y, z).shape, sx, np.float32))),
                 (-240 * s, y_back, zlo), (240 * s, y_back + 60 * s + 80, zhi), val, 20)
    foam = lambda x, y, z: (np.maximum(table_y(x) + 1.5 - y, y - table_y(x) - 45.0 * s + 1.5), np.full(np.broadcast(x, y, z).shape, sy, np.float32))  # noqa: E731
    cv.paint(intersect(foam, lambda x, y, z: (np.abs(x) - 225.0 * s, np.full(np.broadcast(x, y, z).shape, sx, np.float32))),
             (-240 * s, y_back, zlo), (240 * s, y_back + 60 * s + 80, zhi), -850.0, 20)

    cv.paint(body, box_all[0], box_all[1], tex(35.0, 6.0), TISSUE_SKIN)
    sub = offset(body, -2.0 * s)
    cv.paint(sub, box_all[0], box_all[1], tex(-102.0, 9.0, 4.0), TISSUE_FAT)
    # muscle wall: fat is thicker anteriorly/laterally than on the back
    wall_a = lambda z: a_of(z) - 2.0 * s - fat * 1.15  # noqa: E731
    wall_b = lambda z: b_of(z) - 2.0 * s - fat * 0.9  # noqa: E731
    wall = intersect(elliptic_column(0.0, yc - 0.1 * fat, wall_a(0.0), wall_b(0.0), sp), lambda x, y, z: (y - (y_back - 2 * s - 0.6 * fat), np.full(np.broadcast(x, y, z).shape, sy, np.float32)))
    cv.paint(wall, box_all[0], box_all[1], tex(52.0, 6.0, 3.0), TISSUE_MUSCLE)
    cav_a = lambda z: wall_a(z) - 0.75 * mus  # noqa: E731
    cav_b = lambda z: wall_b(z) - 1.25 * mus  # noqa: E731
    y_vb = y_back - 2 * s - 0.6 * fat - 62.0 * s
    cavity = subtract(
        elliptic_column(0.0, yc - 0.1 * fat + 0.05 * B, cav_a(0.0), cav_b(0.0) * 0.95, sp),
        ellipsoid((0.0, y_vb + 38.0 * s, 0.0), (58.0 * s, 50.0 * s, math.inf), sp),
    )
    # fat planes between the layers of the lateral wall muscles (obliques) and the linea alba
    wall_ell = elliptic_column(0.0, yc - 0.1 * fat, wall_a(0.0), wall_b(0.0), sp)
    for depth in (0.35, 0.62):
        plane = lambda x, y, z, depth=depth: (np.abs(wall_ell(x, y, z)[0] + depth * mus) - 0.6 * s, wall_ell(x, y, z)[1])  # noqa: E731
        lateral = lambda x, y, z: (0.45 * A - np.abs(x) + 0.0 * y, np.full(np.broadcast(x, y).shape, sx, np.float32))  # noqa: E731
        cv.paint(intersect(plane, lateral, lambda x, y, z: (z + 15.0 * s + 0.0 * x, np.full(np.broadcast(x, y, z).shape, thick, np.float32))),
                 box_all[0], (box_all[1][0], box_all[1][1], 0.0), tex(-90.0, 6.0), TISSUE_FAT)
    alba = intersect(lambda x, y, z: (np.abs(x) - 3.0 * s + 0.0 * y, np.full(np.broadcast(x, y).shape, sx, np.float32)),
                     lambda x, y, z: (y - yc + 0.5 * B + 0.0 * x, np.full(np.broadcast(x, y).shape, sy, np.float32)),
                     lambda x, y, z: (z + 20.0 * s + 0.0 * x, np.full(np.broadcast(x, y, z).shape, thick, np.float32)))
    cv.paint(intersect(alba, wall_ell), (-10 * s, yc - B - 5, zlo), (10 * s, yc, 0.0), tex(-90.0, 6.0), TISSUE_FAT)
    cv.paint(cavity, box_all[0], box_all[1], tex(-95.0, 8.0, 5.0), TISSUE_FAT)
    Ai = cav_a(0.0)  # inner half-width of the body cavity
    Bi = cav_b(0.0) * 0.95
    yci = yc - 0.1 * fat + 0.05 * B

    # pectoral muscles (chest, anterior)
    for sgn in (-1.0, 1.0):
        pec = ellipsoid((sgn * 0.45 * Ai, yci - 0.9 * Bi, 90.0 * s), (0.38 * Ai, 0.12 * Bi + 4 * s, 80.0 * s), sp, angle_deg=sgn * 12.0)
        cv.paint(pec, (-A, yc - B - 5, zlo), (A, yc, zhi), tex(50.0, 6.0), TISSUE_MUSCLE)

    # ------------------------------------------------------- diaphragm
    domes = [(-0.42 * Ai, yci - 0.05 * Bi, _u(rng, -4, 4) * s), (0.45 * Ai, yci - 0.0 * Bi, _u(rng, -22, -10) * s)]
    dax, day, depth = 0.55 * Ai, 0.75 * Bi, 75.0 * s

    # two paraboloid domes; the costophrenic recesses reach lowest posteriorly (floor)
    def _floor(x: Arr, y: Arr) -> Arr:
        post = np.clip((y - yci + Bi) / (2.0 * Bi), 0.0, 1.0)  # 0 anterior .. 1 posterior
        return (-18.0 - 55.0 * post - 30.0 * (x / Ai) ** 2) * s

    def dia_h(x: Arr, y: Arr) -> Arr:
        hs = [h - depth * (((x - cx) / dax) ** 2 + ((y - cy) / day) ** 2) for cx, cy, h in domes]
        return np.maximum(np.maximum(hs[0], hs[1]), _floor(x, y))

    def dia_g(x: Arr, y: Arr) -> tuple[Arr, Arr]:
        h0 = domes[0][2] - depth * (((x - domes[0][0]) / dax) ** 2 + ((y - domes[0][1]) / day) ** 2)
        h1 = domes[1][2] - depth * (((x - domes[1][0]) / dax) ** 2 + ((y - domes[1][1]) / day) ** 2)
        use0 = h0 >= h1
        cx = np.where(use0, domes[0][0], domes[1][0])
        cy = np.where(use0, domes[0][1], domes[1][1])
        gx = -2 * depth * (x - cx) / dax**2
        gy = -2 * depth * (y - cy) / day**2
        on_floor = _floor(x, y) > np.maximum(h0, h1)
        inside = np.abs((y - yci) / Bi) < 1.0
        fgx = -60.0 * s * x / Ai**2
        fgy = np.where(inside, -27.5 * s / Bi, 0.0)
        return np.where(on_floor, fgx, gx), np.where(on_floor, fgy, gy)

    below_dia = height_field_below(dia_h, dia_g, sp)
    above_dia = _negate(below_dia)

    # ------------------------------------------------------------ lungs
    rep(0.42, "lungs")
    check_cancel(cancel, "phantom generation")
    thor = offset(cavity, -1.5 * s)
    lung_shape = intersect(thor, offset(above_dia, -4.0 * s))
    lung_box = ((-Ai - 5, yci - Bi - 5, zlo), (Ai + 5, yci + Bi + 5, zhi))

    def lung_val(sl: tuple[slice, slice, slice]) -> Arr:
        y = ys[sl[1]][None, :, None]
        grad = 55.0 * np.clip((y - yci) / Bi, -1, 1)
        return (-858.0 + grad + 14.0 * fine[sl] + 10.0 * coarse[sl]).astype(np.float32)

    lung_alpha = np.zeros(shape, np.float32)
    res = cv.alpha(lung_shape, *lung_box)
    if res is not None:
        sl, a = res
        lung_alpha[sl] = a
        sub_hu = hu[sl]
        sub_hu += a * (lung_val(sl) - sub_hu)
        tissue[sl][a >= 0.5] = TISSUE_LUNG
    # mediastinum (fat column between the lungs, wider anteriorly at the heart)
    med = intersect(lambda x, y, z: (-10.0 * s - z + 0.0 * x, np.full(np.broadcast(x, y, z).shape, thick, np.float32)), ellipsoid((6.0 * s, (yci - Bi + y_vb) / 2.0, 0.0), (0.15 * Ai, (y_vb - yci + Bi) / 2.0, math.inf), sp), above_dia)
    a_med = cv.paint(med, lung_box[0], lung_box[1], tex(-95.0, 8.0, 6.0), TISSUE_FAT)
    # diaphragm muscle sheet under the lungs
    dia_sheet = intersect(cavity, below_dia, offset(above_dia, 5.0 * s))
    cv.paint(dia_sheet, box_all[0], (box_all[1][0], box_all[1][1], 40 * s), tex(48.0, 5.0), TISSUE_MUSCLE)
    del a_med

    # ------------------------------------------------------------ spine
    rep(0.35, "spine and ribs")
    check_cancel(cancel, "phantom generation")
    # paraspinal muscles (erector spinae, multifidus) in a fat envelope, psoas
    bulge = ellipsoid((0.0, y_vb + 38.0 * s, 0.0), (58.0 * s, 50.0 * s, math.inf), sp)
    cv.paint(offset(bulge, 2.0 * s), (-80 * s, y_vb - 20 * s, zlo), (80 * s, y_back, zhi), tex(-92.0, 7.0), TISSUE_FAT)
    for sgn in (-1.0, 1.0):  # crura / psoas origin beside the vertebral body
        crus = ellipsoid((sgn * 27.0 * s, y_vb + 4.0 * s, 0.0), (15.0 * s, 16.0 * s, math.inf), sp, angle_deg=-sgn * 20.0)
        cv.paint(crus, (-60 * s, y_vb - 20 * s, zlo), (60 * s, y_vb + 30 * s, zhi), tex(50.0, 5.0), TISSUE_MUSCLE)
    for sgn in (-1.0, 1.0):
        erector = ellipsoid((sgn * 31.0 * s, y_vb + 49.0 * s, 0.0), (27.0 * s, 25.0 * s, math.inf), sp, angle_deg=sgn * 10.0)
        cv.paint(erector, (-70 * s, y_vb + 15 * s, zlo), (70 * s, y_back, zhi), tex(50.0, 5.0, 3.0), TISSUE_MUSCLE)
        multi = ellipsoid((sgn * 11.0 * s, y_vb + 45.0 * s, 0.0), (9.0 * s, 18.0 * s, math.inf), sp)
        cv.paint(multi, (-30 * s, y_vb + 20 * s, zlo), (30 * s, y_back, zhi), tex(55.0, 5.0), TISSUE_MUSCLE)
        quad = ellipsoid((sgn * 62.0 * s, y_vb + 22.0 * s, -250.0 * s), (14.0 * s, 11.0 * s, 150.0 * s), sp, angle_deg=sgn * 25.0)
        cv.paint(quad, (-90 * s, y_vb, zlo), (90 * s, y_vb + 45 * s, -100 * s), tex(52.0, 5.0), TISSUE_MUSCLE)
    for sgn in (-1.0, 1.0):
        psoas = ellipsoid((sgn * 36.0 * s, y_vb + 2.0 * s, -260.0 * s), (20.0 * s, 17.0 * s, 170.0 * s), sp)
        cv.paint(psoas, (-70 * s, y_vb - 25 * s, zlo), (70 * s, y_vb + 25 * s, -90 * s), tex(52.0, 5.0), TISSUE_MUSCLE)
    period = 30.0 * s
    phase = _u(rng, 0.0, period)
    vb_a = lambda z: (17.0 + 5.0 * np.clip(-z / (150.0 * s), 0, 1)) * s  # noqa: E731
    vb_b = lambda z: (15.0 + 3.0 * np.clip(-z / (150.0 * s), 0, 1)) * s  # noqa: E731
    vb = elliptic_column(0.0, y_vb, vb_a, vb_b, sp)
    bone_cort = 950.0
    marrow = tex(200.0, 35.0, 10.0)
    cv.paint(vb, (-40 * s, y_vb - 30 * s, zlo), (40 * s, y_vb + 30 * s, zhi), bone_cort, TISSUE_CORTICAL_BONE)
    cv.paint(offset(vb, -1.6 * s), (-40 * s, y_vb - 30 * s, zlo), (40 * s, y_vb + 30 * s, zhi), marrow, TISSUE_MARROW)
    # discs: slabs of the vertebral column every `period`
    def disc_shape(x: Arr, y: Arr, z: Arr) -> tuple[Arr, Arr]:
        zz = np.mod(z - phase, period) - period / 2.0
        d = np.abs(zz) - 3.0 * s
        return d + 0.0 * x + 0.0 * y, np.full(np.broadcast(x, y, z).shape, thick, np.float32)

    cv.paint(intersect(offset(vb, 0.8 * s), disc_shape), (-40 * s, y_vb - 30 * s, zlo), (40 * s, y_vb + 30 * s, zhi), tex(85.0, 6.0), TISSUE_DISC)
    # neural arch, spinous and transverse processes, canal
    arch = ellipsoid((0.0, y_vb + 27.0 * s, 0.0), (15.0 * s, 13.0 * s, math.inf), sp)
    cv.paint(arch, (-30 * s, y_vb, zlo), (30 * s, y_vb + 45 * s, zhi), 700.0, TISSUE_CORTICAL_BONE)
    spinous = capsule(np.array([0.0, y_vb + 35.0 * s, 0.0]), np.array([0.0, y_vb + 58.0 * s, 0.0]), 4.5 * s, 3.5 * s, sp)
    spin_col = lambda x, y, z: spinous(x, y, np.float32(0.0))  # noqa: E731
    cv.paint(spin_col, (-10 * s, y_vb + 25 * s, zlo), (10 * s, y_vb + 65 * s, zhi), 650.0, TISSUE_CORTICAL_BONE)
    for sgn in (-1.0, 1.0):
        tp = capsule(np.array([sgn * 8.0 * s, y_vb + 24.0 * s, 0.0]), np.array([sgn * 30.0 * s, y_vb + 31.0 * s, 0.0]), 4.0 * s, 3.0 * s, sp)

        def tp_level(x: Arr, y: Arr, z: Arr, tp: ShapeFn = tp) -> tuple[Arr, Arr]:
            d, w = tp(x, y, np.float32(0.0))
            zz = np.abs(np.mod(z - phase - period / 2.0, period) - period / 2.0) - 6.0 * s
            take = zz > d
            return np.where(take, zz, d), np.where(take, np.float32(thick), w)

        cv.paint(tp_level, (-45 * s, y_vb + 15 * s, zlo), (45 * s, y_vb + 40 * s, zhi), tex(520.0, 30.0), TISSUE_CORTICAL_BONE)
    canal = ellipsoid((0.0, y_vb + 25.0 * s, 0.0), (9.0 * s, 8.0 * s, math.inf), sp)
    cv.paint(canal, (-15 * s, y_vb + 15 * s, zlo), (15 * s, y_vb + 35 * s, zhi), tex(15.0, 4.0), TISSUE_CSF)

    def in_lung(p: NDArray[np.float64]) -> bool:
        d, _ = lung_shape(np.float32(p[0]), np.float32(p[1]), np.float32(p[2]))
        return bool(np.asarray(d) < -1.0)

    def lung_within(sl: tuple[slice, slice, slice]) -> Arr:
        t = tissue[sl]
        ok = (t == TISSUE_LUNG) | (t == TISSUE_LUNG_VESSEL) | (t == TISSUE_AIRWAY)
        return lung_alpha[sl] * ok

    blood = 40.0 + 110.0 * enh if contrast else 40.0
    rep(0.5, "vessels and airways")
    # ------------------------------------------------------------ heart and great vessels
    rep(0.6, "heart and vessels")
    check_cancel(cancel, "phantom generation")
    heart_c = (18.0 * s, yci - 0.42 * Bi, 30.0 * s)
    hsz = _u(rng, 0.9, 1.1) * s
    heart = intersect(ellipsoid(heart_c, (68.0 * hsz, 52.0 * hsz, 58.0 * hsz), sp, angle_deg=-28.0), offset(above_dia, -1.0))
    hbox = ((heart_c[0] - 90 * s, heart_c[1] - 80 * s, heart_c[2] - 70 * s), (heart_c[0] + 90 * s, heart_c[1] + 80 * s, heart_c[2] + 70 * s))
    cv.paint(offset(heart, 4.0 * s), hbox[0], hbox[1], tex(-90.0, 8.0), TISSUE_FAT)  # pericardial fat
    cv.paint(heart, hbox[0], hbox[1], tex(45.0 + 60.0 * enh if contrast else 45.0, 4.0), TISSUE_HEART)
    for c, semi, ang in (
        ((heart_c[0] + 22 * s, heart_c[1] + 8 * s, heart_c[2] - 5 * s), (30.0, 22.0, 32.0), -30.0),  # LV
        ((heart_c[0] - 18 * s, heart_c[1] - 14 * s, heart_c[2] - 8 * s), (30.0, 16.0, 30.0), -35.0),  # RV
        ((heart_c[0] - 10 * s, heart_c[1] + 22 * s, heart_c[2] + 22 * s), (40.0, 18.0, 22.0), 0.0),  # atria
    ):
        cv.paint(intersect(ellipsoid(c, (semi[0] * hsz, semi[1] * hsz, semi[2] * hsz), sp, angle_deg=ang), heart), hbox[0], hbox[1], tex(blood + 10.0 if contrast else 38.0, 3.0), TISSUE_BLOOD)
    vessels = [
        ((18.0 * s, y_vb - 20.0 * s), 12.5 * s, (-BIG, 75.0 * s)),  # descending aorta
        ((-22.0 * s, y_vb - 24.0 * s), 11.0 * s, (-BIG, -5.0 * s)),  # IVC
        ((4.0 * s, yci - 0.45 * Bi), 15.0 * s, (55.0 * s, BIG)),  # ascending aorta
        ((28.0 * s, yci - 0.55 * Bi), 13.0 * s, (62.0 * s, BIG)),  # pulmonary trunk
        ((-26.0 * s, yci - 0.38 * Bi), 10.0 * s, (45.0 * s, BIG)),  # SVC
    ]
    for (vx, vy), r, (za, zb) in vessels:
        def zrange(x: Arr, y: Arr, z: Arr, za: float = za, zb: float = zb) -> tuple[Arr, Arr]:
            return np.maximum(za - z, z - zb), np.full(np.broadcast(x, y, z).shape, thick, np.float32)

        col = intersect(ellipsoid((vx, vy, 0.0), (r, r, math.inf), sp), zrange)
        cv.paint(col, (vx - r - 5, vy - r - 5, max(zlo, za - 5)), (vx + r + 5, vy + r + 5, min(zhi, zb + 5)), tex(blood + 20.0 if contrast else 42.0, 3.0), TISSUE_BLOOD)

    # pulmonary vessel trees from both hila
    n_seg = 0
    for sgn in (-1.0, 1.0):
        hilum = np.array([sgn * 0.38 * Ai, yci - 0.05 * Bi, 38.0 * s])
        for dz, dy in ((1.0, 0.0), (-1.0, 0.3), (-0.3, 0.8), (0.2, -0.8), (-0.6, -0.4), (0.6, 0.6), (-1.0, -0.2), (0.5, -0.5)):
            dvec = np.array([sgn * 0.7, dy + rng.normal(0, 0.2), dz])
            segs = _tree(rng, hilum, dvec, 5.5 * s, in_lung, 0.45 * s, 700)
            for p, q, r0, r1 in segs:
                lo = tuple(np.minimum(p, q) - r0 - 2)
                hi = tuple(np.maximum(p, q) + r0 + 2)
                cv.paint(capsule(p, q, r0, r1, sp), lo, hi, blood, TISSUE_LUNG_VESSEL, within=lung_within)
                n_seg += 1
        check_cancel(cancel, "phantom generation")
    # airways: trachea, main bronchi and a few generations of bronchi
    carina = np.array([0.0, yci - 0.05 * Bi + 8 * s, 70.0 * s])
    trachea_top = carina + np.array([0.0, -6.0 * s, 200.0 * s])
    air_segs: list[tuple[NDArray[np.float64], NDArray[np.float64], float, float]] = [(trachea_top, carina, 9.0 * s, 8.0 * s)]
    for sgn in (-1.0, 1.0):
        main = carina + np.array([sgn * 35.0 * s, 4.0 * s, -25.0 * s])
        air_segs.append((carina, main, 6.5 * s, 5.5 * s))
        for dz in (1.0, -1.0):
            air_segs += _tree(rng, main, np.array([sgn * 0.6, rng.normal(0, 0.4), dz]), 4.5 * s, in_lung, 1.2 * s, 40, spread=0.5)
    for p, q, r0, r1 in air_segs:
        lo = tuple(np.minimum(p, q) - r0 - 3)
        hi = tuple(np.maximum(p, q) + r0 + 3)
        cv.paint(capsule(p, q, r0 + 1.1 * s, r1 + 0.9 * s, sp), lo, hi, 40.0, TISSUE_MUSCLE)
        cv.paint(capsule(p, q, r0, r1, sp), lo, hi, -985.0, TISSUE_AIRWAY)
    # esophagus
    eso = ellipsoid((6.0 * s, y_vb - 24.0 * s, 0.0), (8.0 * s, 7.0 * s, math.inf), sp)
    cv.paint(intersect(eso, lambda x, y, z: (z - 20.0 * s, np.full(np.broadcast(x, y, z).shape, thick, np.float32))),
             (-20 * s, y_vb - 40 * s, zlo), (30 * s, y_vb - 10 * s, zhi), tex(45.0, 4.0), TISSUE_MUSCLE)

    # ------------------------------------------------------------ abdomen
    rep(0.7, "abdominal organs")
    check_cancel(cancel, "phantom generation")
    abd = intersect(offset(cavity, -1.0 * s), offset(below_dia, -1.5 * s))
    abox = ((-Ai - 5, yci - Bi - 5, zlo), (Ai + 5, yci + Bi + 5, min(zhi, 40 * s)))
    # bowel and mesentery: a texture of loops, fluid and gas pockets
    bowel_region = intersect(abd, ellipsoid((0.0, yci - 0.25 * Bi, -190.0 * s), (0.95 * Ai, 0.75 * Bi, 130.0 * s), sp))

    wall_hu = 90.0 if contrast else 40.0

    def bowel_val(sl: tuple[slice, slice, slice]) -> Arr:
        n1, n2, f = blob[sl], blob2[sl], fine[sl]
        # iso-surfaces of a smooth random field: loops (n1 > 0) separated by mesenteric fat,
        # a ~3 mm enhancing wall at the loop border, fluid or mottled stool inside
        loop = np.clip(n1 * 5.0 + 0.5, 0.0, 1.0)
        inner = np.clip(n1 * 5.0 - 1.2, 0.0, 1.0)
        stool = np.clip(n2 * 2.0, 0.0, 1.0)
        content = (12.0 + 6.0 * f) * (1 - stool) + (-60.0 + 70.0 * f + 40.0 * n2) * stool
        bubbles = np.clip((f - 1.9) * 3.0, 0.0, 1.0) * stool  # small gas bubbles in stool
        gas = np.clip((n1 - 0.55) * 6.0, 0.0, 1.0) * np.clip((n2 + 0.3) * 3.0, 0.0, 1.0)  # gas-filled loop centres
        v = -92.0 * (1 - loop) + (wall_hu * (1 - inner) + content * inner) * loop
        v = v * (1 - bubbles) + (-850.0) * bubbles
        return (v * (1 - gas) + (-980.0) * gas).astype(np.float32)

    cv.paint(bowel_region, abox[0], abox[1], bowel_val, TISSUE_BOWEL)
    # pancreas
    pan = union(
        capsule(np.array([-25.0 * s, y_vb - 32.0 * s, -110.0 * s]), np.array([25.0 * s, y_vb - 36.0 * s, -100.0 * s]), 12.0 * s, 10.0 * s, sp),
        capsule(np.array([25.0 * s, y_vb - 36.0 * s, -100.0 * s]), np.array([70.0 * s, y_vb - 10.0 * s, -85.0 * s]), 10.0 * s, 8.0 * s, sp),
    )

    def pan_val(sl: tuple[slice, slice, slice]) -> Arr:
        lob = np.clip((blob2[sl] + 1.0) * 0.6, 0.0, 1.0)  # fatty lobulation
        base = 100.0 if contrast else 42.0
        return (base * lob + -60.0 * (1 - lob) + 5.0 * fine[sl]).astype(np.float32)

    cv.paint(intersect(pan, abd), (-45 * s, y_vb - 55 * s, -130 * s), (90 * s, y_vb + 10 * s, -65 * s), pan_val, TISSUE_PANCREAS)
    # stomach with air-fluid level (supine: gas anterior)
    st_c = (48.0 * s, yci - 0.35 * Bi, -42.0 * s)
    stomach = intersect(ellipsoid(st_c, (52.0 * s, 38.0 * s, 48.0 * s), sp, angle_deg=35.0), abd)
    stb = ((st_c[0] - 70 * s, st_c[1] - 60 * s, st_c[2] - 60 * s), (st_c[0] + 70 * s, st_c[1] + 60 * s, st_c[2] + 60 * s))
    cv.paint(stomach, stb[0], stb[1], tex(80.0 if contrast else 42.0, 4.0), TISSUE_STOMACH)
    level = st_c[1] - _u(rng, 0.0, 20.0) * s

    def stomach_content(sl: tuple[slice, slice, slice]) -> Arr:
        y = ys[sl[1]][None, :, None]
        gas = np.clip((level - y) / sy + 0.5, 0.0, 1.0)
        fluid = 18.0 + 8.0 * blob2[sl] + 3.0 * fine[sl]
        return (fluid * (1 - gas) + (-985.0) * gas).astype(np.float32)

    a_sc = cv.paint(offset(stomach, -4.0 * s), stb[0], stb[1], stomach_content, TISSUE_STOMACH)
    if a_sc is not None:
        st_sl = cv.box(*stb)
        if st_sl is not None:
            sub_t = tissue[st_sl]
            sub_t[(a_sc >= 0.5) & (hu[st_sl] < -500)] = TISSUE_GAS
    # spleen
    sp_c = (0.66 * Ai, yci + 0.42 * Bi, -58.0 * s)
    spleen = intersect(ellipsoid(sp_c, (26.0 * s, 58.0 * s, 55.0 * s), sp, angle_deg=-40.0), abd)
    cv.paint(spleen, (sp_c[0] - 70 * s, sp_c[1] - 70 * s, sp_c[2] - 70 * s), (sp_c[0] + 70 * s, sp_c[1] + 70 * s, sp_c[2] + 70 * s),
             tex(48.0 + 70.0 * enh if contrast else 48.0, 4.0, 3.0), TISSUE_SPLEEN)
    # liver (right lobe + left lobe across the midline), below the right dome
    lsz = _u(rng, 0.92, 1.08) * s
    liver = intersect(
        union(
            ellipsoid((-0.42 * Ai, yci + 0.02 * Bi, -62.0 * s), (0.62 * Ai * lsz / s, 0.86 * Bi * lsz / s, 92.0 * lsz), sp),
            ellipsoid((0.05 * Ai, yci - 0.52 * Bi, -38.0 * s), (0.42 * Ai * lsz / s, 0.30 * Bi * lsz / s, 38.0 * lsz), sp, angle_deg=-8.0),
        ),
        offset(abd, -0.5 * s),
        _negate(offset(ellipsoid((0.0, y_vb, 0.0), (30.0 * s, 30.0 * s, math.inf), sp), 0.0)),
    )
    lbox = ((-Ai - 5, yci - Bi - 5, -200 * s), (0.6 * Ai, yci + Bi + 5, 40 * s))
    liv_base = 58.0 + liver_shift + (50.0 * enh if contrast else 0.0)
    a_liv = cv.paint(liver, lbox[0], lbox[1], tex(liv_base, 4.0, 4.0), TISSUE_LIVER)
    liv_alpha = np.zeros(shape, np.float32)
    sl_l = cv.box(*lbox)
    if a_liv is not None and sl_l is not None:
        liv_alpha[sl_l] = a_liv
    # hepatic and portal veins inside the liver
    vein_val = 38.0 + 127.0 * enh if contrast else 38.0
    ivc_top = np.array([-22.0 * s, y_vb - 24.0 * s, -8.0 * s])
    veins = [(ivc_top, ivc_top + np.array([-80.0, -50.0, -25.0]) * s, 6.0 * s, 1.5 * s),
             (ivc_top, ivc_top + np.array([-25.0, -80.0, -15.0]) * s, 5.5 * s, 1.5 * s),
             (ivc_top, ivc_top + np.array([30.0, -75.0, -10.0]) * s, 5.0 * s, 1.5 * s)]
    pv0 = np.array([-12.0 * s, y_vb - 40.0 * s, -100.0 * s])
    pv1 = pv0 + np.array([-25.0, -10.0, 25.0]) * s
    veins += [(pv0, pv1, 7.0 * s, 6.0 * s), (pv1, pv1 + np.array([-55.0, 10.0, 15.0]) * s, 5.5 * s, 2.0 * s),
              (pv1, pv1 + np.array([20.0, -45.0, 20.0]) * s, 5.0 * s, 2.0 * s)]
    for p, q, r0, r1 in list(veins):
        d = (q - p) / np.linalg.norm(q - p)
        veins += _tree(rng, q, d, r1 * 1.4, lambda pt: True, 1.2 * s, 6, spread=0.6)
    for p, q, r0, r1 in veins:
        lo = tuple(np.minimum(p, q) - r0 - 2)
        hi = tuple(np.maximum(p, q) + r0 + 2)
        cv.paint(capsule(p, q, r0, r1, sp), lo, hi, vein_val, TISSUE_BLOOD, within=lambda sl: liv_alpha[sl])
    # kidneys in perirenal fat, with sinus fat at the hilum
    kz = _u(rng, -150.0, -125.0) * s
    for sgn, dz in ((-1.0, -12.0 * s), (1.0, 0.0)):
        kc = (sgn * 68.0 * s, y_vb + 4.0 * s, kz + dz)
        kid = ellipsoid(kc, (27.0 * s, 22.0 * s, 52.0 * s), sp, angle_deg=-sgn * 30.0)
        kb = ((kc[0] - 50 * s, kc[1] - 45 * s, kc[2] - 70 * s), (kc[0] + 50 * s, kc[1] + 45 * s, kc[2] + 70 * s))
        cv.paint(offset(kid, 4.0 * s), kb[0], kb[1], tex(-98.0, 7.0), TISSUE_FAT)
        cv.paint(kid, kb[0], kb[1], tex(32.0 + 128.0 * enh if contrast else 32.0, 5.0, 3.0), TISSUE_KIDNEY)
        if contrast:  # medulla enhances less in the portal-venous phase
            med_k = ellipsoid(kc, (16.0 * s, 12.0 * s, 38.0 * s), sp, angle_deg=-sgn * 30.0)
            cv.paint(med_k, kb[0], kb[1], tex(32.0 + 88.0 * enh, 5.0), TISSUE_KIDNEY)
        sinus = ellipsoid((kc[0] - sgn * 20.0 * s, kc[1] - 8.0 * s, kc[2]), (12.0 * s, 7.0 * s, 22.0 * s), sp, angle_deg=-sgn * 30.0)
        cv.paint(intersect(sinus, kid), kb[0], kb[1], tex(-60.0, 10.0), TISSUE_FAT)
    # gallbladder
    gb_c = (-0.35 * Ai, yci - 0.55 * Bi, -95.0 * s)
    gb = intersect(ellipsoid(gb_c, (14.0 * s, 30.0 * s, 20.0 * s), sp, angle_deg=30.0), abd)
    cv.paint(gb, (gb_c[0] - 40 * s, gb_c[1] - 40 * s, gb_c[2] - 30 * s), (gb_c[0] + 40 * s, gb_c[1] + 40 * s, gb_c[2] + 30 * s),
             tex(10.0, 3.0), TISSUE_GALLBLADDER)

    # ------------------------------------------------------------ ribs, sternum
    rep(0.8, "ribs")
    check_cancel(cancel, "phantom generation")
    rib_a = lambda z: wall_a(0.0) - 0.45 * mus  # noqa: E731
    rib_b = lambda z: wall_b(0.0) - 0.45 * mus  # noqa: E731
    ryc = yc - 0.1 * fat
    n_ribs = 12
    top = 150.0 * s
    post_step = 26.0 * s
    for n in range(n_ribs):
        z_post = top - n * post_step
        end_deg = 150.0 - 4.5 * max(0, n - 5) * 1.0 if n < 10 else 95.0 - 10.0 * (n - 10)
        drop = (55.0 + 2.0 * n) * s
        for sgn in (-1.0, 1.0):
            pts = [np.array([sgn * 22.0 * s, y_vb + 26.0 * s, z_post + 4.0 * s])]
            for k in range(1, 13):
                th = math.radians(18.0 + (end_deg - 18.0) * k / 12.0)
                zz = z_post - drop * (k / 12.0) ** 1.1
                px = sgn * float(rib_a(zz)) * math.sin(th)
                py = ryc + float(rib_b(zz)) * math.cos(th)
                pts.append(np.array([px, py, zz]))
            for k in range(len(pts) - 1):
                p, q = pts[k], pts[k + 1]
                lo = tuple(np.minimum(p, q) - 9)
                hi = tuple(np.maximum(p, q) + 9)
                if hi[2] < zlo or lo[2] > zhi:
                    continue
                cart = k >= 10 and n < 10
                if cart:
                    cv.paint(capsule(p, q, 4.0 * s, 4.0 * s, sp), lo, hi, tex(130.0, 8.0), TISSUE_CARTILAGE)
                else:
                    cv.paint(capsule(p, q, 4.3 * s, 4.3 * s, sp), lo, hi, 820.0, TISSUE_CORTICAL_BONE)
                    cv.paint(capsule(p, q, 2.6 * s, 2.6 * s, sp), lo, hi, tex(230.0, 30.0), TISSUE_MARROW)
    # sternum (chest, anterior midline)
    st_y = ryc - rib_b(0.0) + 2.0 * s
    stern = intersect(elliptic_column(0.0, st_y, 14.0 * s, 5.5 * s, sp),
                      lambda x, y, z: (np.maximum(-20.0 * s - z, z - 200.0 * s), np.full(np.broadcast(x, y, z).shape, thick, np.float32)))
    cv.paint(stern, (-20 * s, yc - B - 5, zlo), (20 * s, yc, zhi), 750.0, TISSUE_CORTICAL_BONE)
    cv.paint(offset(stern, -1.5 * s), (-20 * s, yc - B - 5, zlo), (20 * s, yc, zhi), tex(190.0, 25.0), TISSUE_MARROW)
    del lung_alpha, liv_alpha, fine, coarse, blob, blob2, tex
    rep(0.95, "scanner blur")
    check_cancel(cancel, "phantom generation")
    from scipy import ndimage

    # in-plane point spread of a standard reconstruction kernel (FWHM ~0.9 mm)
    sig = float(psf_mm)
    if sig > 0:
        ndimage.gaussian_filter(hu, (0.0, sig / sy, sig / sx), output=hu, truncate=3.0)
    hab.params.update({"n_vessel_segments": float(n_seg), "z_extent": z_extent})
    origin = (float(xs[0]), float(ys[0]), float(zs[0]))
    return hu, tissue, hab, origin
