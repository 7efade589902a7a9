"""Spatial augmentation of the detector's training crops: in-plane rotation and scaling (``train detector --spatial P``).

Every detector up to 1.8.0 saw its training phantoms only at their canonical
pose and size, on one sampling lattice: a crop is a block of whole voxels of a
training volume already resampled to the internal grid, with a left-right flip
as the one geometric change. Real scans differ from the phantoms in pose
(tilted heads, crops around a vertebra), in size and in where structures fall
against the lattice, and 1.8.0's response to a lesion is brittle under shifts
of a fraction of an internal voxel (docs/detector_evaluation.md, thirteenth
session). Detection frameworks train with random rotations and scalings for
this (nnDetection and nnU-Net by default; MONAI's ``RandAffined``).

:func:`spatial_view` resamples the slab of a training volume around a crop
centre, rotated in-plane by an angle drawn uniformly in
+-:data:`ROTATION_DEG` and magnified by a factor drawn log-uniformly in
:data:`SCALE` (bilinear for the image, nearest for the lesion mask, air
outside the volume). It returns a small volume that the crop is then cut from
as from any other, so every later augmentation (cuts, pastes, vessels,
texture, noise) and the targets work on the transformed anatomy: lesion
centres move with it and diameters scale with it. Slices are not changed
(the slice spacing is the scan's).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medviewer.ai.detector import CONTEXT
from medviewer.training.detector_checkpoint import parse_range
from medviewer.training.detector_data import TrainVolume

ROTATION_DEG = 30.0
"""In-plane rotations are drawn uniformly in +-this many degrees."""
SCALE: tuple[float, float] = (0.8, 1.25)
"""Magnifications are drawn log-uniformly in this range by default (lesions keep the 5-30 mm the issue names,
about); ``train detector --spatial-scale LO:HI`` widens it, e.g. up to the 1.4x at which the internal 1.4 mm grid
looks like the 1.0 mm grid of a finer inference pass (:mod:`medviewer.ai.detect_passes`)."""
SCALE_LIMITS: tuple[float, float] = (0.5, 2.0)
"""Magnification ranges outside this are refused: the crop would hold too little or too much anatomy."""
AIR_HU = -1000.0
"""Value outside the training volume (its border is air or padding)."""
MARGIN_PX = 8
"""Extra pixels around the crop in the resampled slab, so the crop fits however it is rounded."""


def draw_transform(rng: np.random.Generator, scale_range: tuple[float, float] = SCALE) -> tuple[float, float]:
    """A random ``(angle in degrees, magnification)``, the magnification log-uniform in ``scale_range``."""
    angle = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    scale = float(math.exp(rng.uniform(math.log(scale_range[0]), math.log(scale_range[1]))))
    return angle, scale


def parse_scale_range(spec: str | None) -> tuple[float, float]:
    """``"LO:HI"`` -> ``(lo, hi)`` magnifications (``None``: :data:`SCALE`); a ModelError names a bad spec.

    >>> parse_scale_range("0.8:1.6")
    (0.8, 1.6)
    """
    if spec is None:
        return SCALE
    return parse_range(spec, "--spatial-scale", "magnifications", "0.8:1.6", SCALE_LIMITS)


def spatial_view(
    v: TrainVolume,
    centre: NDArray[np.floating],
    slices: int,
    crop: int,
    angle_deg: float,
    scale: float,
    context: int = CONTEXT,
) -> tuple[TrainVolume, NDArray[np.float64]]:
    """The slab of ``v`` around ``centre``, rotated by ``angle_deg`` and magnified by ``scale`` in-plane.

    Parameters
    ----------
    v : TrainVolume
        Training volume at the internal spacing.
    centre : array (3,)
        ``(k, j, i)`` index the crop will be centred on.
    slices, crop : int
        Depth and side of the crop that will be cut from the result.
    angle_deg, scale : float
        In-plane rotation and magnification (> 1 enlarges).
    context : int
        2.5D context slices the crop reads beyond its ends.

    Returns
    -------
    view : TrainVolume
        ``(depth, n, n)`` with ``n = crop + 2 * MARGIN_PX``, its lesion centres (moved, including those
        outside it) and diameters (times ``scale``) in its own indices.
    centre : array (3,)
        ``centre`` in the view's indices (its in-plane middle).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    zs = v.hu.shape[0]
    kc = int(round(float(centre[0])))
    z0 = max(0, kc - slices - context)
    z1 = min(zs, kc + slices + context + 1)
    n = crop + 2 * MARGIN_PX
    mid = (n - 1) / 2.0
    t = math.radians(angle_deg)
    # output pixel o -> source pixel src = c + m @ (o - mid): one output step is 1 / scale source steps
    m = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]) / scale
    c = np.asarray(centre, np.float64)[1:]
    offset2 = c - m @ np.array([mid, mid])
    matrix = np.eye(3)
    matrix[1:, 1:] = m
    offset = np.concatenate([[0.0], offset2])
    hu = ndimage.affine_transform(
        np.asarray(v.hu[z0:z1], np.float32), matrix, offset, output_shape=(z1 - z0, n, n), order=1, mode="constant", cval=AIR_HU
    )
    labels = ndimage.affine_transform(
        np.asarray(v.labels[z0:z1]), matrix, offset, output_shape=(z1 - z0, n, n), order=0, mode="constant", cval=0
    )
    centers = np.asarray(v.centers, np.float64).reshape(-1, 3).copy()
    if len(centers):
        inv = np.linalg.inv(m)
        centers[:, 1:] = (centers[:, 1:] - c) @ inv.T + mid
        centers[:, 0] -= z0
    view = TrainVolume(
        hu.astype(np.float32),
        labels.astype(np.uint8),
        centers,
        np.asarray(v.diameters, np.float64).reshape(-1) * scale,
        list(v.kinds),
        v.seed,
    )
    return view, np.array([float(centre[0]) - z0, mid, mid])
