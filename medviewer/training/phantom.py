"""Seeded, deterministic CT phantoms of the chest and upper abdomen, or of the head, with lesions.

:func:`make_phantom` paints a random patient (habitus, organs, vessels,
airways, bones, table; optional portal-venous contrast; see
:mod:`medviewer.training.phantom_anatomy`) and inserts lesions into the
organs where they occur (nodules in the lungs, hypo/hyperdense lesions in
liver and kidneys, soft-tissue masses in fat or muscle; see
:mod:`medviewer.training.phantom_lesions`). ``region="head"`` paints a head
instead (scalp, skull, cortex and white matter, ventricles; see
:mod:`medviewer.training.phantom_head`), with focal hypo- and hyperdense
lesions and masses in the brain.

The phantom is noise-free ground truth with scanner blur and partial-volume
edges; add realistic acquisition noise with
:func:`medviewer.training.lowdose.simulate_low_dose_volume` (dose 1.0 for a
full-dose look).

Seed convention (see :mod:`medviewer.training.datasets`): training data uses
seeds below :data:`TRAINING_SEED_LIMIT`, held-out evaluation seeds at or
above :data:`EVALUATION_SEED_BASE`, the demo study :data:`DEMO_SEED`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.training.phantom_anatomy import (
    SCANNER_PSF_MM,
    TISSUE_FAT,
    TISSUE_GRAY_MATTER,
    TISSUE_HU_RANGES,
    TISSUE_KIDNEY,
    TISSUE_LIVER,
    TISSUE_LUNG,
    TISSUE_MUSCLE,
    TISSUE_NAMES,
    TISSUE_WHITE_MATTER,
    build_anatomy,
)
from medviewer.training.phantom_lesions import LESION_KINDS, LESION_SHAPES, Lesion, insert_lesions
from medviewer.volume import Volume, VolumeMetadata, WindowPreset

TRAINING_SEED_LIMIT = 100_000
"""Training phantoms use seeds in ``[0, TRAINING_SEED_LIMIT)``."""
EVALUATION_SEED_BASE = 1_000_000
"""Held-out evaluation phantoms use seeds ``>= EVALUATION_SEED_BASE``."""
DEMO_SEED = 424_242
"""Seed of the demo study (neither a training nor an evaluation seed)."""
REGIONS = ("body", "head")
"""Anatomical regions :func:`make_phantom` paints."""

CT_WINDOWS = [
    WindowPreset(40.0, 400.0, "soft tissue"),
    WindowPreset(-600.0, 1500.0, "lung"),
    WindowPreset(400.0, 1800.0, "bone"),
    WindowPreset(60.0, 160.0, "liver"),
]
HEAD_WINDOWS = [
    WindowPreset(40.0, 80.0, "brain"),
    WindowPreset(80.0, 200.0, "subdural"),
    WindowPreset(600.0, 2800.0, "bone"),
]


@dataclass
class Phantom:
    """A generated CT phantom and its ground truth.

    Attributes
    ----------
    volume : Volume
        float32 HU, axial, LPS geometry (identity direction: columns go to
        the patient's left, rows posterior, slices superior), modality CT.
    labels : ndarray int16 (z, y, x)
        0 = background, ``n`` = voxels of the lesion with ``Lesion.label == n``.
    tissue : ndarray uint8 (z, y, x)
        Anatomical tissue class of each voxel before lesion insertion
        (classes in :data:`medviewer.training.phantom_anatomy.TISSUE_NAMES`).
    lesions : list of Lesion
    seed : int
    contrast : bool
        Whether the portal-venous contrast phase was simulated.
    """

    volume: Volume
    labels: NDArray[np.int16]
    tissue: NDArray[np.uint8]
    lesions: list[Lesion]
    seed: int
    contrast: bool = False


def _child_rngs(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] = (80, 512, 512),
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    n_lesions: int | None = None,
    lesion_kinds: Sequence[str] | None = None,
    contrast: bool | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    diameter_range_mm: tuple[float, float] = (3.0, 30.0),
    lesion_shapes: Sequence[str] | None = None,
    slice_thickness: float | None = None,
    z_center_mm: float = -10.0,
    region: str = "body",
    psf_mm: float | None = None,
) -> Phantom:
    """Generate one deterministic chest/upper-abdomen (or head) CT phantom with lesions.

    Parameters
    ----------
    seed : int
        Same arguments and seed give byte-identical results.
    shape : (z, y, x)
        Voxel grid. The volume is centred 10 mm below the right diaphragm
        dome, so even a few slices show lung bases and liver; 80 slices of
        2.5 mm span from the upper chest to the kidneys.
    spacing : (z, y, x) mm
        Voxel size. Anatomy is in mm; if the field of view is too small for
        the body, the whole anatomy is scaled down to fit (a smaller patient).
    n_lesions : int, optional
        Number of lesions; None draws 0..6; 0 gives a lesion-free phantom.
        Fewer are inserted if the organs in the field of view leave no room.
    lesion_kinds : sequence of str, optional
        Allowed kinds (:data:`LESION_KINDS`); default all.
    contrast : bool, optional
        Portal-venous contrast phase; None draws it (50 %).
    progress, cancel : callables, optional
        ``progress(fraction, message)``; ``cancel() -> bool`` raises
        :class:`medviewer.errors.CancelledError`.
    diameter_range_mm : (float, float)
        Range of nominal lesion diameters (default 3-30 mm).
    lesion_shapes : sequence of str, optional
        Allowed shapes (:data:`LESION_SHAPES`).
    slice_thickness : float, optional
        Slice thickness (mm) for partial volume along z when it differs from
        the slice spacing (e.g. a few sparse 2.5 mm slices spread over the
        whole chest and abdomen); default the spacing.
    z_center_mm : float
        Craniocaudal centre of the volume relative to the right diaphragm
        dome (mm, superior positive, before habitus scaling): -10 (default)
        shows lung bases and liver, about -120 the kidneys and bowel. For
        ``region="head"``: mm from the widest level of the cranium
        (:data:`medviewer.training.phantom_head.HEAD_Z_RANGE_MM`).
    region : {"body", "head"}
        ``"body"``: chest / upper abdomen; ``"head"``: an axial brain CT in a
        head holder. Head lesions (every kind but the lung nodules) sit in the
        brain parenchyma.
    psf_mm : float, optional
        In-plane scanner blur, the sigma (mm) of a Gaussian point spread;
        default :data:`medviewer.training.phantom_anatomy.SCANNER_PSF_MM`
        (0.38 mm, a standard kernel), smaller for a sharper (bone) kernel,
        0 for none.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom(7, shape=(8, 96, 96), spacing=(5.0, 4.0, 4.0), n_lesions=1)
    >>> ph.volume.shape, ph.volume.voxels.dtype, ph.labels.dtype
    ((8, 96, 96), dtype('float32'), dtype('int16'))
    """
    shape_t = tuple(int(v) for v in shape)
    spacing_t = tuple(float(v) for v in spacing)
    if len(shape_t) != 3 or min(shape_t) < 1 or shape_t[1] < 16 or shape_t[2] < 16:
        raise ValueError(f"shape must be (z, y, x) with y, x >= 16, got {shape}")
    if len(spacing_t) != 3 or not all(s > 0 and np.isfinite(s) for s in spacing_t):
        raise ValueError(f"spacing must be three positive numbers, got {spacing}")
    if n_lesions is not None and n_lesions < 0:
        raise ValueError(f"n_lesions must be >= 0 or None, got {n_lesions}")
    if lesion_kinds is not None:
        for k in lesion_kinds:
            if k not in LESION_KINDS:
                raise ValueError(f"unknown lesion kind {k!r}; expected one of {LESION_KINDS}")
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    if psf_mm is not None and not (np.isfinite(psf_mm) and 0.0 <= float(psf_mm) <= 5.0):
        raise ValueError(f"psf_mm must be between 0 and 5 mm, got {psf_mm}")
    if region == "head":
        lung_free = [k for k in (lesion_kinds or LESION_KINDS) if k not in ("solid_nodule", "part_solid_nodule")]
        if not lung_free:
            raise ValueError("head phantoms have no lungs: choose lesion kinds other than nodules")
        lesion_kinds = lung_free
    rng_main, rng_anat, rng_les = _child_rngs(seed, 3)
    if contrast is None:
        contrast = bool(rng_main.random() < 0.5)
    if n_lesions is None:
        n_lesions = int(rng_main.integers(0, 7))
    report = Progress(progress)
    check_cancel(cancel, "phantom generation")
    if region == "head":
        from medviewer.training.phantom_head import build_head_anatomy

        contrast = False  # non-contrast head CT
        hu, tissue, hab, origin = build_head_anatomy(
            rng_anat, shape_t, spacing_t, report.sub(0.0, 0.85), cancel, slice_thickness,  # type: ignore[arg-type]
            z_center_mm=float(z_center_mm), psf_mm=psf_mm,
        )
    else:
        hu, tissue, hab, origin = build_anatomy(
            rng_anat, shape_t, spacing_t, bool(contrast), report.sub(0.0, 0.85), cancel, slice_thickness,  # type: ignore[arg-type]
            z_center_mm=float(z_center_mm), psf_mm=SCANNER_PSF_MM if psf_mm is None else float(psf_mm),
        )
    meta = VolumeMetadata(
        modality="CT",
        patient_name=f"PHANTOM^{int(seed)}",
        patient_id=f"PH{int(seed):07d}",
        study_description="MedViewer phantom (synthetic, research use only)",
        series_description=("Phantom head" if region == "head" else "Phantom full dose") + (" contrast" if contrast else ""),
        slice_thickness=float(slice_thickness) if slice_thickness else spacing_t[0],
        windows=list(HEAD_WINDOWS if region == "head" else CT_WINDOWS),
        units="HU",
        manufacturer="MedViewer phantom",
        extra={"phantom_seed": int(seed), "contrast": bool(contrast), "habitus": {
            "half_width_mm": hab.half_width, "half_depth_mm": hab.half_depth, "fat_mm": hab.fat, "scale": hab.scale,
            "enhancement": hab.params.get("enhancement"), "liver_shift_hu": hab.params.get("liver_shift_hu")}},
    )
    volume = Volume(hu, spacing_t, origin, np.eye(3), meta)  # type: ignore[arg-type]
    labels = np.zeros(shape_t, np.int16)
    lesions: list[Lesion] = []
    if n_lesions > 0:
        check_cancel(cancel, "phantom generation")
        brain = (tissue == TISSUE_GRAY_MATTER) | (tissue == TISSUE_WHITE_MATTER)
        hosts = {k: brain for k in LESION_KINDS} if region == "head" else {
            "solid_nodule": tissue == TISSUE_LUNG,
            "part_solid_nodule": tissue == TISSUE_LUNG,
            "liver_hypo": tissue == TISSUE_LIVER,
            "liver_hyper": tissue == TISSUE_LIVER,
            "kidney_hypo": tissue == TISSUE_KIDNEY,
            "kidney_hyper": tissue == TISSUE_KIDNEY,
            "soft_tissue_mass": (tissue == TISSUE_MUSCLE) | (tissue == TISSUE_FAT),
        }
        kinds = list(lesion_kinds) if lesion_kinds else list(LESION_KINDS)
        new, labels, lesions = insert_lesions(
            volume,
            None,
            rng_les,
            n_lesions,
            kinds=kinds,
            allowed={k: v for k, v in hosts.items() if k in kinds},
            diameter_range_mm=diameter_range_mm,
            shapes=lesion_shapes,
            slice_thickness=slice_thickness,
            progress=report.sub(0.85, 1.0),
            cancel=cancel,
        )
        volume.voxels = new
    report(1.0, "phantom ready")
    return Phantom(volume=volume, labels=labels, tissue=tissue, lesions=lesions, seed=int(seed), contrast=bool(contrast))


__all__ = [
    "Lesion",
    "Phantom",
    "make_phantom",
    "insert_lesions",
    "LESION_KINDS",
    "LESION_SHAPES",
    "TISSUE_NAMES",
    "TISSUE_HU_RANGES",
    "TRAINING_SEED_LIMIT",
    "EVALUATION_SEED_BASE",
    "DEMO_SEED",
    "REGIONS",
    "CT_WINDOWS",
    "HEAD_WINDOWS",
]


