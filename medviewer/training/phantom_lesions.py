"""Lesions inserted into CT volumes: nodules, liver and kidney lesions, soft-tissue masses.

A lesion is a star-shaped solid (its radius depends on the direction:
round, lobulated, or round with spicules) with a soft margin and partial-
volume edges, whose HU is chosen *relative to the local tissue* (the
median HU of the volume where it is placed), so the same code inserts
lesions into phantoms and into real CT backgrounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

LESION_KINDS: tuple[str, ...] = (
    "solid_nodule",
    "part_solid_nodule",
    "liver_hypo",
    "liver_hyper",
    "kidney_hypo",
    "kidney_hyper",
    "soft_tissue_mass",
)
LESION_SHAPES: tuple[str, ...] = ("round", "lobulated", "spiculated")

#: Where each kind may sit when only HU is known (real CT backgrounds): HU window of the host tissue.
HOST_HU: dict[str, tuple[float, float]] = {
    "solid_nodule": (-950.0, -600.0),
    "part_solid_nodule": (-950.0, -600.0),
    "liver_hypo": (20.0, 180.0),
    "liver_hyper": (20.0, 180.0),
    "kidney_hypo": (20.0, 250.0),
    "kidney_hyper": (20.0, 250.0),
    "soft_tissue_mass": (-150.0, 100.0),
}


@dataclass
class Lesion:
    """One inserted lesion (ground truth).

    Attributes
    ----------
    label : int
        Its value in the label mask.
    kind : str
        One of :data:`LESION_KINDS`.
    shape : str
        ``"round"``, ``"lobulated"`` or ``"spiculated"``.
    center_index : (k, j, i)
        Centre in fractional voxel indices.
    center_mm : (x, y, z)
        Centre in LPS mm (through ``Volume.index_to_patient`` when a Volume
        is given; otherwise index times spacing, i.e. ``(i*sx, j*sy, k*sz)``).
    diameter_mm : float
        Nominal diameter (twice the mean radius of the solid; spicules not included).
    contrast_hu : float
        Intrinsic lesion HU minus the median HU of the host tissue it
        replaced (for part-solid nodules: of the ground-glass component).
    """

    label: int
    kind: str
    shape: str
    center_index: tuple[float, float, float]
    center_mm: tuple[float, float, float]
    diameter_mm: float
    contrast_hu: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "label": int(self.label),
            "kind": self.kind,
            "shape": self.shape,
            "center_index": [float(v) for v in self.center_index],
            "center_mm": [float(v) for v in self.center_mm],
            "diameter_mm": float(self.diameter_mm),
            "contrast_hu": float(self.contrast_hu),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Lesion":
        """Inverse of :meth:`to_dict`."""
        return cls(
            label=int(d["label"]),
            kind=str(d["kind"]),
            shape=str(d["shape"]),
            center_index=tuple(float(v) for v in d["center_index"]),  # type: ignore[arg-type]
            center_mm=tuple(float(v) for v in d["center_mm"]),  # type: ignore[arg-type]
            diameter_mm=float(d["diameter_mm"]),
            contrast_hu=float(d["contrast_hu"]),
        )


def _unit_vectors(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _choose_hu(kind: str, bg: float, rng: np.random.Generator) -> tuple[float, float]:
    """(lesion HU, core HU for part-solid or nan) for a host tissue of median ``bg``."""
    core = float("nan")
    if kind == "solid_nodule":
        v = rng.uniform(-15.0, 65.0)
    elif kind == "part_solid_nodule":
        v = rng.uniform(-680.0, -420.0)
        core = rng.uniform(-15.0, 45.0)
    elif kind == "liver_hypo":
        if rng.random() < 0.35:  # cyst: water density
            v = rng.uniform(0.0, 15.0)
            v = min(v, bg - 12.0)
        else:
            v = bg + rng.uniform(-65.0, -12.0)
    elif kind == "liver_hyper":
        v = bg + rng.uniform(12.0, 60.0)
    elif kind == "kidney_hypo":
        v = max(rng.uniform(0.0, 20.0), -5.0) if rng.random() < 0.5 else bg + rng.uniform(-80.0, -12.0)
        v = min(max(v, -5.0), bg - 10.0)
    elif kind == "kidney_hyper":
        v = bg + rng.uniform(12.0, 55.0)
    elif kind == "soft_tissue_mass":
        v = rng.uniform(22.0, 60.0)
        if abs(v - bg) < 12.0:
            v = bg + (15.0 if rng.random() < 0.5 else -15.0)
    else:
        raise ValueError(f"unknown lesion kind {kind!r}; expected one of {LESION_KINDS}")
    return float(v), float(core)


def coarse_in_plane(vol: NDArray[np.floating[Any]], spacing: tuple[float, float, float], sigma_mm: float) -> NDArray[np.float64]:
    """``vol``'s in-plane detail coarser than a Gaussian of ``sigma_mm``: what is left is the image noise."""
    return ndimage.gaussian_filter(vol.astype(np.float64), (0.0, sigma_mm / spacing[1], sigma_mm / spacing[2]), mode="nearest")


def render_lesion(
    vol: NDArray[np.float32],
    labels: NDArray[np.int16],
    center: NDArray[np.float64],
    spacing: tuple[float, float, float],
    radius: float,
    shape: str,
    kind: str,
    label: int,
    rng: np.random.Generator,
    bg: float,
    thickness: float | None = None,
    keep_noise_mm: float | None = None,
) -> float:
    """Paint one lesion in place (``center`` (k, j, i) in voxels); returns its contrast.

    ``thickness`` (mm) replaces the slice spacing in the partial-volume edge
    width along z when slices are sparser than thick. With ``keep_noise_mm``
    the lesion replaces only the background's in-plane detail coarser than a
    Gaussian of that sigma (mm): the finer part, the image noise of a scan,
    stays on top of the lesion as it would in a scan of a real lesion.
    Without it the lesion replaces the background (right for noise-free
    phantoms, whose noise is simulated after the lesions are painted).
    """
    sz, sy, sx = spacing
    tz = float(thickness) if thickness else sz
    hu_les, hu_core = _choose_hu(kind, bg, rng)
    soft = float(rng.uniform(0.2, 0.6) * min(radius, 3.0)) if kind != "part_solid_nodule" else float(radius * 0.25)
    spic_len = 0.0
    if shape == "spiculated":
        spic_len = radius * float(rng.uniform(0.6, 1.2)) + 2.0
    ext = radius * 1.45 + spic_len + soft + 2.0 * max(sx, sy, sz)
    lo = [max(0, int(math.floor(center[a] - ext / s))) for a, s in enumerate((sz, sy, sx))]
    hi = [min(vol.shape[a], int(math.ceil(center[a] + ext / s)) + 1) for a, s in enumerate((sz, sy, sx))]
    if any(h <= l for l, h in zip(lo, hi)):
        return 0.0
    sl = tuple(slice(l, h) for l, h in zip(lo, hi))
    dz = ((np.arange(lo[0], hi[0]) - center[0]) * sz)[:, None, None]
    dy = ((np.arange(lo[1], hi[1]) - center[1]) * sy)[None, :, None]
    dx = ((np.arange(lo[2], hi[2]) - center[2]) * sx)[None, None, :]
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
    ux, uy, uz = dx / r, dy / r, dz / r
    rdir = np.full(r.shape, radius, np.float64)
    if shape in ("lobulated", "spiculated"):
        n_lobes = int(rng.integers(3, 7))
        amp = rng.uniform(0.12, 0.3, n_lobes) * (1.0 if shape == "lobulated" else 0.5)
        vs = _unit_vectors(rng, n_lobes)
        f = np.ones(r.shape)
        for a_i, v in zip(amp, vs):
            f = f + a_i * np.maximum(0.0, ux * v[0] + uy * v[1] + uz * v[2]) ** 4
        mean_f = 1.0 + float(np.sum(amp)) * 0.1  # E[max(0, cos)^4] over the sphere = 1/10
        rdir = radius * f / mean_f
    d = r - rdir
    w = np.abs(ux) * sx + np.abs(uy) * sy + np.abs(uz) * tz
    alpha = np.clip(0.5 - d / (w + soft), 0.0, 1.0)
    if shape == "spiculated":
        for v in _unit_vectors(rng, int(rng.integers(6, 15))):
            length = radius + spic_len * float(rng.uniform(0.5, 1.0))
            rad = float(rng.uniform(0.35, 0.8))
            t = np.clip(dx * v[0] + dy * v[1] + dz * v[2], 0.0, length)
            qx, qy, qz = dx - t * v[0], dy - t * v[1], dz - t * v[2]
            dist = np.sqrt(qx * qx + qy * qy + qz * qz) + 1e-6
            taper = rad * (1.0 - 0.7 * t / length)
            wd = (np.abs(qx) * sx + np.abs(qy) * sy + np.abs(qz) * tz) / dist
            alpha = np.maximum(alpha, np.clip(0.5 - (dist - taper) / wd, 0.0, 1.0))
    texture = rng.normal(0.0, 1.0, alpha.shape)
    texture = ndimage.gaussian_filter(texture, (0.7, 1.2, 1.2))
    texture /= texture.std() + 1e-6
    value = hu_les + 6.0 * texture
    if kind == "part_solid_nodule":
        core_r = radius * float(rng.uniform(0.3, 0.6))
        core_a = np.clip(0.5 - (r - core_r) / (w + 0.5), 0.0, 1.0)
        value = value * (1 - core_a) + (hu_core + 6.0 * texture) * core_a
        value = value + 40.0 * texture  # ground glass is heterogeneous
    if kind == "soft_tissue_mass" and radius > 10.0 and rng.random() < 0.5:  # necrotic centre
        nec = np.clip(0.5 - (r - radius * 0.45) / (w + 2.0), 0.0, 1.0)
        value = value * (1 - nec) + (hu_les - 30.0) * nec
    sub = vol[sl]
    if keep_noise_mm:
        coarse = coarse_in_plane(sub, spacing, keep_noise_mm)
        sub += (alpha * (value - coarse)).astype(np.float32)
    else:
        sub += (alpha * (value - sub)).astype(np.float32)
    lab = labels[sl]
    lab[alpha >= 0.5] = label
    ck, cj, ci = (int(round(c)) for c in center)
    if 0 <= ck < vol.shape[0] and 0 <= cj < vol.shape[1] and 0 <= ci < vol.shape[2]:
        labels[ck, cj, ci] = label
    return float(hu_les - bg)


def _allowed_masks(
    volume_hu: NDArray[np.float32], kinds: Sequence[str], allowed: NDArray[np.bool_] | Mapping[str, NDArray[np.bool_]] | None
) -> dict[str, NDArray[np.bool_]]:
    out: dict[str, NDArray[np.bool_]] = {}
    for k in kinds:
        if isinstance(allowed, Mapping):
            if k in allowed:
                out[k] = np.asarray(allowed[k], bool)
        elif allowed is not None:
            m = np.asarray(allowed, bool)
            lo, hi = HOST_HU[k]
            out[k] = m & (volume_hu >= lo) & (volume_hu <= hi)
        else:
            lo, hi = HOST_HU[k]
            out[k] = (volume_hu >= lo) & (volume_hu <= hi)
    return out


def _inner_distance(mask: NDArray[np.bool_], spacing: tuple[float, float, float]) -> tuple[NDArray[np.float32], tuple[slice, ...]]:
    """Distance (mm) to the mask's outside, computed in the mask's bounding box (2x coarser in-plane)."""
    from scipy import ndimage

    idx = np.nonzero(np.any(mask, axis=(1, 2)))[0]
    if idx.size == 0:
        return np.zeros((0, 0, 0), np.float32), (slice(0, 0),) * 3
    ys = np.nonzero(np.any(mask, axis=(0, 2)))[0]
    xs = np.nonzero(np.any(mask, axis=(0, 1)))[0]
    box = (slice(idx[0], idx[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    sub = mask[box]
    f = 3 if min(sub.shape[1:]) >= 48 else 1
    small = sub[:, ::f, ::f]
    padded = np.pad(small, 1)
    dist = ndimage.distance_transform_edt(padded, sampling=(spacing[0], spacing[1] * f, spacing[2] * f))[1:-1, 1:-1, 1:-1]
    if f > 1:
        dist = np.repeat(np.repeat(dist, f, axis=1), f, axis=2)[:, : sub.shape[1], : sub.shape[2]]
        dist = dist - spacing[1] * (f - 1)  # conservative
    dist = np.where(sub, dist, 0.0).astype(np.float32)
    return dist, box


def _in_plane_distance(mask: NDArray[np.bool_], spacing: tuple[float, float, float]) -> NDArray[np.float32]:
    """Distance (mm) of each voxel of ``mask`` to the mask's outside within its own slice (0 outside).

    The edge band of :func:`insert_lesions` is measured in-plane: a training
    crop spans few slices, so the 3D distance is bounded by the crop's ends
    everywhere and would not tell a centre beside bone from one in open tissue.
    The image's border is not an edge (tissue may go on beyond a crop).
    """
    from scipy import ndimage

    out = np.zeros(mask.shape, np.float32)
    for k in range(mask.shape[0]):
        if mask[k].any():
            out[k] = ndimage.distance_transform_edt(np.pad(mask[k], 1, mode="edge"), sampling=(spacing[1], spacing[2]))[1:-1, 1:-1]
    return out


def body_mask(vol: NDArray[np.float32], margin_px: int = 12) -> NDArray[np.bool_]:
    """Where lesion centres may go in any CT volume: inside the body, away from its edge and from bone.

    Used for real backgrounds (where no tissue map exists) and for phantom
    volumes whose lesions are placed by host HU rather than by organ.
    ``margin_px`` is the in-plane distance (pixels) kept from the body's outline:
    12 pixels at the native 0.4-1.0 mm of the real backgrounds are 5-12 mm.
    """
    body = vol > -500
    body = ndimage.binary_opening(body, iterations=2)
    lab, n = ndimage.label(body)
    if n > 1:
        sizes = ndimage.sum(body, lab, range(1, n + 1))
        body = lab == (int(np.argmax(sizes)) + 1)
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    inner = np.stack([ndimage.binary_erosion(s, iterations=margin_px) for s in body]) if body.any() and margin_px > 0 else body
    return inner & (vol < 300) & (vol > -950)


def insert_lesions(
    volume_hu: Any,
    spacing: tuple[float, float, float] | None,
    rng: np.random.Generator,
    n: int,
    kinds: Sequence[str] | None = None,
    allowed: NDArray[np.bool_] | Mapping[str, NDArray[np.bool_]] | None = None,
    diameter_range_mm: tuple[float, float] = (4.0, 30.0),
    *,
    shapes: Sequence[str] | None = None,
    first_label: int = 1,
    labels: NDArray[np.int16] | None = None,
    slice_thickness: float | None = None,
    keep_noise_mm: float | None = None,
    edge_band_mm: float | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int16], list[Lesion]]:
    """Insert ``n`` random lesions into any HU volume.

    Parameters
    ----------
    volume_hu : ndarray or Volume
        ``(z, y, x)`` HU (not modified; a copy is returned). When a
        :class:`medviewer.volume.Volume` is given, its spacing and geometry
        are used and ``Lesion.center_mm`` is in LPS mm; for a bare array
        ``center_mm`` is index-space mm ``(i*sx, j*sy, k*sz)``.
    spacing : (z, y, x) mm or None
        Voxel size (ignored, may be None, for a Volume).
    rng : numpy Generator
        Source of all randomness.
    n : int
        Number of lesions wanted; fewer are inserted when no place is left
        (check ``len(lesions)``).
    kinds : sequence of str, optional
        Allowed kinds (default: all of :data:`LESION_KINDS`), drawn uniformly
        among those that have a place to go.
    allowed : bool ndarray or mapping kind -> bool ndarray, optional
        Where lesion centres may go. A mapping gives each kind its own host
        region (the phantom passes its organ masks). A single mask is
        intersected with the kind's host HU window (:data:`HOST_HU`). None
        uses the HU windows alone (lung for nodules, soft tissue else).
    diameter_range_mm : (float, float)
        Nominal diameters are drawn log-uniformly in this range and reduced
        to fit in the host region when needed.
    shapes : sequence of str, optional
        Allowed shapes (default all three; nodules get spicules more often).
    first_label : int
        Label value of the first lesion.
    labels : int16 ndarray, optional
        Existing label mask to add to (copied).
    slice_thickness : float, optional
        Slice thickness for the partial-volume edge along z when it differs
        from the slice spacing.
    keep_noise_mm : float, optional
        For images that already carry noise: keep the background's detail
        finer than a Gaussian of this sigma (mm) inside the lesion (see
        :func:`render_lesion`).
    edge_band_mm : float, optional
        Place each centre as close to the edge of its host region as its kind
        allows: in-plane, at most this many mm deeper than the shallowest
        centre that fits, so the lesion abuts bone, air, fat or another organ
        (default: anywhere in the host region).
    progress, cancel
        Callbacks.

    Returns
    -------
    volume : float32 ndarray
    labels : int16 ndarray, 0 = background, lesion ``m`` has value ``Lesion.label``
    lesions : list of Lesion

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.full((20, 64, 64), 60.0, np.float32)
    >>> v, lab, les = insert_lesions(vol, (2.0, 1.0, 1.0), np.random.default_rng(0), 2,
    ...                              kinds=["liver_hypo"], diameter_range_mm=(6, 10))
    >>> len(les), sorted(np.unique(lab).tolist())
    (2, [0, 1, 2])
    """
    geometry = None
    if hasattr(volume_hu, "voxels") and hasattr(volume_hu, "index_to_patient"):
        geometry = volume_hu
        spacing = tuple(volume_hu.spacing)  # type: ignore[assignment]
        arr = np.asarray(volume_hu.voxels, np.float32)
    else:
        arr = np.asarray(volume_hu, np.float32)
    if arr.ndim != 3:
        raise ValueError(f"insert_lesions needs a (z, y, x) volume, got shape {arr.shape}")
    if spacing is None or len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing}")
    sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    kinds_l = list(kinds) if kinds else list(LESION_KINDS)
    for k in kinds_l:
        if k not in LESION_KINDS:
            raise ValueError(f"unknown lesion kind {k!r}; expected one of {LESION_KINDS}")
    shapes_l = list(shapes) if shapes else list(LESION_SHAPES)
    for s in shapes_l:
        if s not in LESION_SHAPES:
            raise ValueError(f"unknown lesion shape {s!r}; expected one of {LESION_SHAPES}")
    dmin, dmax = float(diameter_range_mm[0]), float(diameter_range_mm[1])
    if not (0 < dmin <= dmax):
        raise ValueError(f"diameter_range_mm must be 0 < min <= max, got {diameter_range_mm}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = arr.copy()
    lab = np.zeros(arr.shape, np.int16) if labels is None else np.array(labels, np.int16, copy=True)
    lesions: list[Lesion] = []
    if n == 0:
        return out, lab, lesions
    report = Progress(progress)
    masks = _allowed_masks(arr, kinds_l, allowed)
    dist_cache: dict[str, tuple[NDArray[np.float32], tuple[slice, ...]]] = {}
    plane_cache: dict[str, NDArray[np.float32]] = {}
    taken: list[tuple[NDArray[np.float64], float]] = []
    spv = np.array(sp)
    label = int(first_label)
    attempts = 0
    while len(lesions) < n and attempts < 20 * n:
        attempts += 1
        check_cancel(cancel, "lesion insertion")
        usable = [k for k in kinds_l if k in masks and masks[k].any()]
        if not usable:
            break
        kind = usable[int(rng.integers(len(usable)))]
        if kind not in dist_cache:
            dist_cache[kind] = _inner_distance(masks[kind], sp)
        dist, box = dist_cache[kind]
        if dist.size == 0 or float(dist.max()) <= 0:
            masks.pop(kind)
            continue
        diam = float(math.exp(rng.uniform(math.log(dmin), math.log(dmax))))
        nodule = kind.endswith("nodule")
        need = lambda r: (0.6 * r + 1.0) if nodule else (r + 1.5) if kind.startswith("liver") else (0.5 * r + 1.0)  # noqa: E731
        dmax_here = float(dist.max())
        while diam > dmin and need(diam / 2) > dmax_here:
            diam *= 0.8
        diam = max(diam, min(dmin, 2 * dmax_here))
        depth = need(diam / 2)
        cand = np.argwhere(dist >= depth)
        if edge_band_mm is not None and cand.size:
            if kind not in plane_cache:
                plane_cache[kind] = _in_plane_distance(masks[kind], sp)[box]
            plane = plane_cache[kind][tuple(cand.T)]  # the fitting centres' in-plane depth
            cand = cand[plane <= max(float(plane.min()), depth) + float(edge_band_mm)]
        if cand.size == 0:
            cand = np.argwhere(dist >= dist.max() * 0.9)
        pick = cand[int(rng.integers(len(cand)))].astype(np.float64)
        center = pick + np.array([b.start for b in box], np.float64)
        center += rng.uniform(-0.5, 0.5, 3) * np.array([0.0, 1.0, 1.0])
        cmm = center * spv
        if any(np.linalg.norm(cmm - c) < (diam / 2 + r2 + 4.0) for c, r2 in taken):
            continue
        if kind.endswith("nodule"):
            shape = str(rng.choice(shapes_l, p=_shape_p(shapes_l, (0.4, 0.25, 0.35))))
        else:
            shape = str(rng.choice(shapes_l, p=_shape_p(shapes_l, (0.5, 0.4, 0.1))))
        # host tissue HU: median inside the lesion's sphere
        k0, j0, i0 = (int(round(c)) for c in center)
        rk, rj, ri = (max(1, int(math.ceil(diam / 2 / s))) for s in sp)
        host = arr[max(0, k0 - rk) : k0 + rk + 1, max(0, j0 - rj) : j0 + rj + 1, max(0, i0 - ri) : i0 + ri + 1]
        hm = masks[kind][max(0, k0 - rk) : k0 + rk + 1, max(0, j0 - rj) : j0 + rj + 1, max(0, i0 - ri) : i0 + ri + 1]
        bg = float(np.median(host[hm])) if hm.any() else float(arr[k0, j0, i0])
        contrast = render_lesion(
            out, lab, center, sp, diam / 2, shape, kind, label, rng, bg, thickness=slice_thickness, keep_noise_mm=keep_noise_mm
        )
        if geometry is not None:
            cpat = tuple(float(v) for v in geometry.index_to_patient(center))
        else:
            cpat = (float(cmm[2]), float(cmm[1]), float(cmm[0]))
        lesions.append(Lesion(label, kind, shape, (float(center[0]), float(center[1]), float(center[2])), cpat, float(diam), contrast))  # type: ignore[arg-type]
        taken.append((cmm, diam / 2 + (diam * 0.6 if shape == "spiculated" else 0.0)))
        label += 1
        report(len(lesions) / n, f"lesion {len(lesions)}/{n}")
    return out, lab, lesions


def _shape_p(shapes: Sequence[str], base: tuple[float, float, float]) -> list[float]:
    w = [base[LESION_SHAPES.index(s)] for s in shapes]
    t = sum(w)
    return [x / t for x in w]


__all__ = ["Lesion", "LESION_KINDS", "LESION_SHAPES", "HOST_HU", "body_mask", "insert_lesions", "render_lesion"]
