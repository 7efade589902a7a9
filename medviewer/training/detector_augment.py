"""Online augmentations of the detector's training crops: lesions pasted anywhere, vessels pasted as negatives, tissue texture.

:func:`paste_lesion` (``train detector --paste P``) puts one more lesion
anywhere in the body, so the network does not learn where lesions are
*allowed* (next to the spine, in paraspinal muscle, under the skull).
:func:`paste_vessel` (``--vessels P``) puts a tube of enhanced-vessel HU into
soft tissue *without* a label: a hyperdense lesion and the cross-section of
an enhanced vessel look alike on one slice, and only the tube's course,
in-plane or across slices, tells them apart (the false positive, on an
enhanced hepatic vein, of the candidate that became detector 1.5.0 with this
augmentation; docs/detector_evaluation.md).

:func:`add_texture` (``--texture P``) overlays correlated tissue texture
(a "lumpy background") on fat and soft tissue: real muscle, fat and brain
vary by 10-50 HU over a few millimetres, phantom organs far less. With such
texture on its validation phantoms, detector 1.5.0's CPM fell from 0.782 to
0.482 (``detector_data.with_texture``).

:func:`cut_crop` (``--cut P``) cuts the crop straight to -1024 HU padding
outside a field-of-view circle, an inner body mask or a skull-stripping-like
region (:func:`medviewer.training.hard_edges.cut_mask`, the cuts that gave the
denoiser 1.6.0 its gain on pydicom-data's skull-stripped eCT_Supplemental):
phantom edges are all blurred, real images also hold such steps, and every
real-background lesion on eCT_Supplemental went unseen by detector 1.7.0.

All work on a crop ``hu`` of the training volume at the internal spacing
with ``context`` extra slices at each end; the pastes also take ``lab``, the
lesion mask of its central slices, and keep the image's noise finer than
about 1 mm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medviewer.ai.detector import CONTEXT, INTERNAL_SPACING
from medviewer.training.hard_edges import PAD_HU, cut_mask
from medviewer.training.phantom_lesions import HOST_HU, body_mask, coarse_in_plane, insert_lesions

#: Distance (mm) that host-HU placement keeps lesion centres from the body outline. The
#: real-background test volumes erode 12 pixels at their native 0.4-1.0 mm (5-12 mm);
#: 12 pixels at the internal 1.4 mm (17 mm, recipes up to 1.3.0) kept training lesions
#: a centimetre deeper, so none abutted the skull's inner table or the abdominal wall.
HOST_HU_MARGIN_MM = 6.0
#: Online copy-paste augmentation (``--paste``): pasted lesions keep the image noise finer than
#: this Gaussian sigma (mm), and their diameters are drawn log-uniformly in this range (mm).
PASTE_KEEP_NOISE_MM = 1.0
PASTE_DIAMETER_MM: tuple[float, float] = (5.0, 25.0)
#: Edge pastes (``--paste-edge``): the pasted lesion's centre lies in-plane at most this many mm deeper in
#: its host tissue than the shallowest centre that fits, so it abuts the skull, the spine, air or fat. 11 of
#: the 28 real-background lesions detector 1.6.0 did not show sit there (ring SD 150-540 HU around them).
PASTE_EDGE_BAND_MM = 2.0
#: Vessel negatives (``--vessels``): tube radius and length (mm), drawn uniformly, and contrast
#: above the host tissue (HU) - the range of the hyperdense liver and kidney lesions
#: (``phantom_lesions._choose_hu``), so HU alone cannot tell them apart.
VESSEL_RADIUS_MM: tuple[float, float] = (1.5, 4.5)
VESSEL_LENGTH_MM: tuple[float, float] = (15.0, 60.0)
VESSEL_CONTRAST_HU: tuple[float, float] = (12.0, 60.0)
#: Host tissue of a vessel's centre (HU, smoothed): that of the hyperdense lesion kinds.
VESSEL_HOST_HU: tuple[float, float] = HOST_HU["liver_hyper"]
#: Tissue a tube may run through (HU, smoothed): fat and soft tissue, not air, lung or bone.
VESSEL_PATH_HU: tuple[float, float] = (-200.0, 300.0)
#: Distance (mm) kept between a pasted vessel and the crop's lesions.
VESSEL_LESION_GAP_MM = 3.0
#: Tissue texture (``--texture``): SD (HU, log-uniform), in-plane correlation length (Gaussian
#: sigma, mm; the longer axis up to TEXTURE_ANISOTROPY times the shorter, in any in-plane
#: direction, for striated muscle) and correlation across slices (sigma, mm, log-uniform:
#: from a detail on one slice to anatomy that runs on through the crop).
TEXTURE_SD_HU: tuple[float, float] = (3.0, 20.0)
TEXTURE_SIGMA_MM: tuple[float, float] = (1.0, 4.0)
TEXTURE_ANISOTROPY: tuple[float, float] = (1.0, 4.0)
TEXTURE_Z_SIGMA_MM: tuple[float, float] = (1.0, 10.0)
#: Tissue that gets texture (HU, smoothed): fat and soft tissue, not air, lung or bone.
TEXTURE_TISSUE_HU: tuple[float, float] = (-250.0, 250.0)


def host_hu_margin_px() -> int:
    """:data:`HOST_HU_MARGIN_MM` in pixels of the internal grid."""
    return max(1, int(round(HOST_HU_MARGIN_MM / INTERNAL_SPACING[2])))


def host_hu_lesions(
    hu: NDArray[np.float32], rng: np.random.Generator, n: int
) -> tuple[NDArray[np.float32], NDArray[np.int16], list[Any]]:
    """Up to ``n`` (at most 4) lesions of 5-25 mm placed by host HU in a training volume at the internal spacing.

    Centres lie :data:`HOST_HU_MARGIN_MM` inside the body outline, away from bone and out of the first and last
    3 slices; returns the volume with them, their labels and records (``hu`` unchanged and none when nothing fits).
    """
    labels = np.zeros(hu.shape, np.int16)
    allowed = body_mask(hu, margin_px=host_hu_margin_px())
    allowed[:3] = False
    allowed[-3:] = False
    if n <= 0 or not allowed.any():
        return hu, labels, []
    out, labels, lesions = insert_lesions(hu, INTERNAL_SPACING, rng, min(n, 4), allowed=allowed, diameter_range_mm=(5.0, 25.0))
    return out, labels, list(lesions)


def _lesion_region(shape: tuple[int, ...], lab: NDArray[np.float32], context: int, gap_px: int) -> NDArray[np.bool_]:
    """The crop's lesions (mask of the central slices placed in the full crop), dilated by ``gap_px``."""
    taken = np.zeros(shape, bool)
    if lab.any():
        taken[context : context + lab.shape[0]] = lab > 0
        taken = ndimage.binary_dilation(taken, iterations=max(1, gap_px))
    return taken


def paste_lesion(
    hu: NDArray[np.float32], lab: NDArray[np.float32], rng: np.random.Generator, context: int = CONTEXT, *, edge: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64], NDArray[np.float64]]:
    """Paste one more lesion into a training crop, anywhere in the body that suits its kind.

    ``hu`` is the crop with ``context`` extra slices at each end, ``lab`` the
    lesion mask of its central slices. The lesion's centre goes on a central
    slice, inside the body (:func:`body_mask` with the host-HU margin), off
    bone and at least 4 mm from the crop's lesions; its kind follows the host
    HU (:func:`insert_lesions`) and it keeps the crop's noise. With ``edge``
    the centre lies in-plane within :data:`PASTE_EDGE_BAND_MM` of the
    shallowest centre that fits, so the lesion abuts the edge of its host tissue. Returns the new
    crop and mask and the lesion's centre (crop indices, as ``hu``) and
    diameter; no lesion (empty arrays) when there is no room.
    """
    allowed = body_mask(hu, margin_px=host_hu_margin_px())
    allowed[: context + 1] = False
    allowed[hu.shape[0] - context - 1 :] = False
    allowed &= ~_lesion_region(hu.shape, lab, context, round(4.0 / INTERNAL_SPACING[2]))
    none = (hu, lab, np.zeros((0, 3)), np.zeros(0))
    if not allowed.any():
        return none
    out, new, lesions = insert_lesions(
        hu,
        INTERNAL_SPACING,
        rng,
        1,
        allowed=allowed,
        diameter_range_mm=PASTE_DIAMETER_MM,
        keep_noise_mm=PASTE_KEEP_NOISE_MM,
        edge_band_mm=PASTE_EDGE_BAND_MM if edge else None,
    )
    if not lesions:
        return none
    lab = np.maximum(lab, (new[context : context + lab.shape[0]] > 0).astype(np.float32))
    return out, lab, np.array([les.center_index for les in lesions], float), np.array([les.diameter_mm for les in lesions], float)


def paste_vessel(
    hu: NDArray[np.float32], lab: NDArray[np.float32], rng: np.random.Generator, context: int = CONTEXT
) -> tuple[NDArray[np.float32], bool]:
    """Paste one enhanced-vessel-like tube into soft tissue of a crop, as a negative.

    The tube (a capsule: radius :data:`VESSEL_RADIUS_MM`, length
    :data:`VESSEL_LENGTH_MM`, any direction in 3D, so it crosses slices as a
    round or oval spot or runs in-plane) is centred on a central slice inside
    the body, in tissue of :data:`VESSEL_HOST_HU`, and brightened by
    :data:`VESSEL_CONTRAST_HU` above that tissue, with a 1 mm partial-volume
    edge. It stays :data:`VESSEL_LESION_GAP_MM` from the crop's lesions and
    only runs through fat and soft tissue. The lesion mask is not changed.
    Returns the new crop and whether a vessel was pasted.
    """
    smooth = coarse_in_plane(hu, INTERNAL_SPACING, PASTE_KEEP_NOISE_MM)
    near_lesion = _lesion_region(hu.shape, lab, context, round(VESSEL_LESION_GAP_MM / INTERNAL_SPACING[2]))
    host = body_mask(hu, margin_px=host_hu_margin_px()) & (smooth >= VESSEL_HOST_HU[0]) & (smooth <= VESSEL_HOST_HU[1]) & ~near_lesion
    host[: context + 1] = False
    host[hu.shape[0] - context - 1 :] = False
    if not host.any():
        return hu, False
    cands = np.argwhere(host)
    centre = cands[rng.integers(len(cands))].astype(float)
    radius = rng.uniform(*VESSEL_RADIUS_MM)
    half = rng.uniform(*VESSEL_LENGTH_MM) / 2.0
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    # distance (mm) of every voxel from the tube's axis segment
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in hu.shape), indexing="ij"), axis=-1)
    rel = (grid - centre) * np.array(INTERNAL_SPACING)
    t = np.clip(rel @ u, -half, half)
    dist = np.linalg.norm(rel - t[..., None] * u, axis=-1)
    alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)  # 1 mm partial-volume edge
    alpha[(smooth < VESSEL_PATH_HU[0]) | (smooth > VESSEL_PATH_HU[1]) | near_lesion] = 0.0
    value = float(smooth[tuple(centre.astype(int))]) + rng.uniform(*VESSEL_CONTRAST_HU)
    out = (hu + alpha * (value - smooth)).astype(np.float32)  # the tube's mean HU, the image's fine noise
    return out, True


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A draw whose logarithm is uniform between the logarithms of ``bounds``."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def texture_field(
    shape: tuple[int, int, int], rng: np.random.Generator, sigma_mm: tuple[float, float, float], angle: float
) -> NDArray[np.float32]:
    """Gaussian random field of unit SD with Gaussian correlation ``sigma_mm`` = (z, u, v).

    ``u`` is the x (column index) axis and ``v`` the y (row index) axis, both
    turned by ``angle`` (radians): a long sigma on ``u`` at angle 0 gives
    horizontal streaks. The field is white noise filtered in the Fourier
    domain (periodic, so it has no edge effects).
    """
    white = rng.standard_normal(shape)
    kz, ky, kx = np.meshgrid(*(np.fft.fftfreq(n, d=s) for n, s in zip(shape, INTERNAL_SPACING)), indexing="ij", sparse=True)
    ku = kx * np.cos(angle) + ky * np.sin(angle)
    kv = -kx * np.sin(angle) + ky * np.cos(angle)
    sz, su, sv = sigma_mm
    gain = np.exp(-2.0 * np.pi**2 * ((sz * kz) ** 2 + (su * ku) ** 2 + (sv * kv) ** 2))
    field = np.fft.ifftn(np.fft.fftn(white) * gain).real
    return (field / (field.std() + 1e-9)).astype(np.float32)


def add_texture(hu: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """Overlay correlated texture on the fat and soft tissue of a training crop (lesions included).

    SD :data:`TEXTURE_SD_HU`, in-plane correlation :data:`TEXTURE_SIGMA_MM`
    (one axis up to :data:`TEXTURE_ANISOTROPY` times longer, at a random
    angle), across slices :data:`TEXTURE_Z_SIGMA_MM`; only where the smoothed
    HU is in :data:`TEXTURE_TISSUE_HU`, faded over about a millimetre at the
    tissue's edges. The texture has zero mean, so a lesion keeps its contrast
    on average while its outline and its surroundings get the mottling of real
    tissue; the lesion mask does not change.
    """
    sd = _log_uniform(rng, TEXTURE_SD_HU)
    sigma = rng.uniform(*TEXTURE_SIGMA_MM)
    long = sigma * rng.uniform(*TEXTURE_ANISOTROPY)
    z_sigma = _log_uniform(rng, TEXTURE_Z_SIGMA_MM)
    field = texture_field(hu.shape, rng, (z_sigma, long, sigma), rng.uniform(0.0, np.pi))  # type: ignore[arg-type]
    smooth = coarse_in_plane(hu, INTERNAL_SPACING, PASTE_KEEP_NOISE_MM)
    tissue = ((smooth >= TEXTURE_TISSUE_HU[0]) & (smooth <= TEXTURE_TISSUE_HU[1])).astype(np.float32)
    weight = ndimage.gaussian_filter(tissue, (0.0, 1.0 / INTERNAL_SPACING[1], 1.0 / INTERNAL_SPACING[2])) * tissue
    return (hu + sd * weight * field).astype(np.float32)


def cut_crop(
    volume_hu: NDArray[np.float16] | NDArray[np.float32],
    hu: NDArray[np.float32],
    lab: NDArray[np.float32],
    origin: tuple[int, int, int],
    centers: NDArray[np.float64],
    diameters: NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64], NDArray[np.float64]]:
    """The crop with a hard cut to :data:`~medviewer.training.hard_edges.PAD_HU`, the same on every slice.

    The cut (:func:`~medviewer.training.hard_edges.cut_mask`, kind drawn) is
    made on the whole volume slice through the crop's centre, as a field of
    view or a mask cuts a whole image, and applied to every slice of the crop
    ``hu`` (with its context) and of its lesion mask ``lab``. Lesions whose
    centre is cut away are dropped from ``centers`` / ``diameters`` (volume
    indices; ``origin`` is the crop's first central slice, row and column);
    a lesion the cut only clips keeps its centre and its uncut voxels.
    """
    k0, j0, i0 = origin
    nz = volume_hu.shape[0]
    kmid = int(np.clip(k0 + lab.shape[0] // 2, 0, nz - 1))
    keep_full = cut_mask(np.asarray(volume_hu[kmid], np.float32), INTERNAL_SPACING[1], rng)
    if keep_full is None:
        return hu, lab, centers, diameters
    ny, nx = hu.shape[1:]
    keep = np.zeros((ny, nx), bool)
    piece = keep_full[j0 : j0 + ny, i0 : i0 + nx]
    keep[: piece.shape[0], : piece.shape[1]] = piece
    if keep.all():
        return hu, lab, centers, diameters
    hu = np.array(hu, np.float32, copy=True)
    hu[:, ~keep] = PAD_HU
    lab = np.array(lab, np.float32, copy=True)
    lab[:, ~keep] = 0.0
    c = np.asarray(centers, np.float64).reshape(-1, 3)
    d = np.asarray(diameters, np.float64).reshape(-1)
    if len(c):
        jj = np.round(c[:, 1]).astype(int)
        ii = np.round(c[:, 2]).astype(int)
        h, w = keep_full.shape
        inside = (jj >= 0) & (jj < h) & (ii >= 0) & (ii < w)
        kept = ~inside | keep_full[np.clip(jj, 0, h - 1), np.clip(ii, 0, w - 1)]
        c, d = c[kept], d[kept]
    return hu, lab, c, d
