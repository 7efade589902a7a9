"""Tests of the CT phantom generator (small grids, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medviewer.errors import CancelledError
from medviewer.training.phantom import (
    LESION_KINDS,
    TISSUE_HU_RANGES,
    Phantom,
    insert_lesions,
    make_phantom,
)
from medviewer.training.phantom_anatomy import TISSUE_LIVER, TISSUE_LUNG, TISSUE_NAMES

SMALL = dict(shape=(16, 128, 128), spacing=(2.5, 2.8, 2.8))


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(3, n_lesions=5, contrast=False, **SMALL)


def test_same_seed_same_bytes(phantom: Phantom) -> None:
    again = make_phantom(3, n_lesions=5, contrast=False, **SMALL)
    assert again.volume.voxels.tobytes() == phantom.volume.voxels.tobytes()
    assert again.labels.tobytes() == phantom.labels.tobytes()
    assert again.tissue.tobytes() == phantom.tissue.tobytes()
    assert [l.to_dict() for l in again.lesions] == [l.to_dict() for l in phantom.lesions]
    other = make_phantom(4, n_lesions=5, contrast=False, **SMALL)
    assert other.volume.voxels.tobytes() != phantom.volume.voxels.tobytes()


def test_volume_geometry_and_types(phantom: Phantom) -> None:
    vol = phantom.volume
    assert vol.shape == SMALL["shape"]
    assert vol.voxels.dtype == np.float32
    assert phantom.labels.dtype == np.int16 and phantom.labels.shape == vol.shape
    assert phantom.tissue.dtype == np.uint8 and phantom.tissue.shape == vol.shape
    assert vol.spacing == SMALL["spacing"]
    assert vol.metadata.modality == "CT"
    assert np.allclose(vol.direction, np.eye(3))
    assert vol.metadata.windows and vol.metadata.windows[0].width > 0
    assert set(np.unique(phantom.tissue)).issubset(TISSUE_NAMES)


def test_lesions_match_the_mask(phantom: Phantom) -> None:
    assert len(phantom.lesions) == 5
    sz, sy, sx = phantom.volume.spacing
    voxel_mm3 = sz * sy * sx
    assert sorted(np.unique(phantom.labels).tolist()) == [0] + [l.label for l in phantom.lesions]
    for les in phantom.lesions:
        assert les.kind in LESION_KINDS
        assert les.shape in ("round", "lobulated", "spiculated")
        assert 3.0 <= les.diameter_mm <= 30.0
        mask = phantom.labels == les.label
        assert mask.any()
        centroid = np.array(ndimage.center_of_mass(mask))
        dist_mm = np.linalg.norm((centroid - np.array(les.center_index)) * np.array([sz, sy, sx]))
        assert dist_mm <= max(les.diameter_mm / 2, 0.6 * max(sz, sy, sx)) + 1.0, (les, dist_mm)
        # equivalent diameter of the mask, allowing for partial volume of small lesions
        eq = (6.0 * mask.sum() * voxel_mm3 / math.pi) ** (1 / 3)
        if les.diameter_mm >= 3 * max(sz, sy, sx):
            assert 0.6 * les.diameter_mm <= eq <= 1.5 * les.diameter_mm, (les, eq)
        assert np.allclose(phantom.volume.index_to_patient(les.center_index), les.center_mm)


def test_lesions_sit_in_plausible_tissue() -> None:
    ph = make_phantom(11, n_lesions=4, lesion_kinds=["solid_nodule", "liver_hypo"], **SMALL)
    for les in ph.lesions:
        k, j, i = (int(round(c)) for c in les.center_index)
        host = ph.tissue[k, j, i]
        assert host == (TISSUE_LUNG if les.kind == "solid_nodule" else TISSUE_LIVER), les
        inside = ph.volume.voxels[ph.labels == les.label].mean()
        if les.kind == "solid_nodule":
            assert inside > -700  # denser than lung
        else:
            assert les.contrast_hu < 0


def test_hu_ranges_per_tissue(phantom: Phantom) -> None:
    v = phantom.volume.voxels
    free = phantom.labels == 0
    checked = 0
    for cls, (lo, hi) in TISSUE_HU_RANGES.items():
        core = ndimage.binary_erosion(phantom.tissue == cls, iterations=2) & free
        if core.sum() < 20:
            continue
        p5, p95 = np.percentile(v[core], [5, 95])
        assert lo <= p5 and p95 <= hi, (TISSUE_NAMES[cls], p5, p95)
        checked += 1
    assert checked >= 5
    assert v.min() >= -1100 and v.max() <= 2000


def test_zero_lesions_and_contrast_phase() -> None:
    plain = make_phantom(5, n_lesions=0, contrast=False, **SMALL)
    enh = make_phantom(5, n_lesions=0, contrast=True, **SMALL)
    assert plain.lesions == [] and not plain.labels.any()
    liver = (plain.tissue == TISSUE_LIVER) & (enh.tissue == TISSUE_LIVER)
    assert liver.sum() > 100
    assert enh.volume.voxels[liver].mean() - plain.volume.voxels[liver].mean() > 25


def test_cancel_and_progress() -> None:
    seen: list[float] = []
    make_phantom(1, shape=(4, 64, 64), spacing=(5.0, 5.6, 5.6), n_lesions=1, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
    with pytest.raises(CancelledError):
        make_phantom(1, shape=(4, 64, 64), spacing=(5.0, 5.6, 5.6), cancel=lambda: True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shape"):
        make_phantom(1, shape=(4, 8, 8))
    with pytest.raises(ValueError, match="kind"):
        make_phantom(1, lesion_kinds=["brain_tumour"], **SMALL)
    with pytest.raises(ValueError, match="spacing"):
        make_phantom(1, shape=(4, 64, 64), spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="psf_mm"):
        make_phantom(1, psf_mm=-0.1, **SMALL)


@pytest.mark.parametrize("region", ["body", "head"])
def test_scanner_blur_sets_edge_sharpness(region: str) -> None:
    """``psf_mm`` is the in-plane blur: the default equals SCANNER_PSF_MM, a smaller one keeps steeper edges."""
    from medviewer.training.phantom_anatomy import SCANNER_PSF_MM

    kw = dict(shape=(2, 160, 160), spacing=(2.5, 0.5, 0.5), n_lesions=0, region=region)
    default = make_phantom(4, **kw).volume.voxels
    assert np.array_equal(default, make_phantom(4, psf_mm=SCANNER_PSF_MM, **kw).volume.voxels)
    sharp = make_phantom(4, psf_mm=0.1, **kw).volume.voxels

    def steepest(v: np.ndarray) -> float:
        return float(np.percentile(np.abs(np.diff(v[0], axis=1)), 99.5))

    assert steepest(sharp) > 1.3 * steepest(default)
    assert abs(float(sharp.mean()) - float(default.mean())) < 2.0  # blur moves edges' sharpness, not HU


def test_insert_lesions_into_plain_array() -> None:
    rng = np.random.default_rng(0)
    bg = np.full((20, 64, 64), 55.0, np.float32)
    bg[:, :, :20] = -850.0  # a "lung" strip
    out, labels, lesions = insert_lesions(bg, (2.0, 1.0, 1.0), rng, 3, kinds=["liver_hypo", "solid_nodule"], diameter_range_mm=(6.0, 12.0))
    assert np.array_equal(bg[:, :, :20], np.full((20, 64, 20), -850.0, np.float32))  # input untouched
    assert len(lesions) == 3
    for les in lesions:
        m = labels == les.label
        assert m.any()
        k, j, i = les.center_index
        assert np.allclose(les.center_mm, (i * 1.0, j * 1.0, k * 2.0))
        if les.kind == "solid_nodule":
            assert i < 22 and out[m].mean() > -600
        else:
            assert out[m].mean() < 50


def test_insert_lesions_into_a_volume_uses_its_geometry() -> None:
    from medviewer.volume import Volume

    direction = np.array([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    vol = Volume(np.full((10, 48, 48), 60.0, np.float32), spacing=(3.0, 1.5, 1.5), origin=(100.0, -50.0, 20.0), direction=direction)
    out, labels, lesions = insert_lesions(vol, None, np.random.default_rng(1), 2, kinds=["liver_hyper"], diameter_range_mm=(8.0, 10.0))
    assert len(lesions) == 2 and out.shape == vol.shape
    for les in lesions:
        assert np.allclose(vol.index_to_patient(les.center_index), les.center_mm)
        assert out[labels == les.label].mean() > 65.0 and les.contrast_hu > 0


def test_z_centre_moves_the_volume_down_to_the_kidneys() -> None:
    from medviewer.training.phantom_anatomy import TISSUE_KIDNEY

    upper = make_phantom(5, n_lesions=0, contrast=False, **SMALL)
    lower = make_phantom(5, n_lesions=0, contrast=False, z_center_mm=-120.0, **SMALL)
    # same patient (seed), 110 mm lower (scaled by the habitus): kidneys appear, lungs go
    assert lower.volume.origin[2] < upper.volume.origin[2] - 50.0
    assert (lower.tissue == TISSUE_KIDNEY).sum() > 10 * max(1, (upper.tissue == TISSUE_KIDNEY).sum())
    assert (lower.tissue == TISSUE_LUNG).sum() < (upper.tissue == TISSUE_LUNG).sum()
    default = make_phantom(5, n_lesions=0, contrast=False, z_center_mm=-10.0, **SMALL)
    assert np.array_equal(default.volume.voxels, upper.volume.voxels)  # the default is unchanged


def test_head_phantom_anatomy_values_and_lesions_in_the_brain() -> None:
    from medviewer.training.phantom_anatomy import (
        TISSUE_CORTICAL_BONE,
        TISSUE_CSF,
        TISSUE_GRAY_MATTER,
        TISSUE_WHITE_MATTER,
    )

    ph = make_phantom(21, shape=(12, 256, 256), spacing=(2.5, 0.9, 0.9), n_lesions=3, region="head", z_center_mm=5.0)
    again = make_phantom(21, shape=(12, 256, 256), spacing=(2.5, 0.9, 0.9), n_lesions=3, region="head", z_center_mm=5.0)
    assert again.volume.voxels.tobytes() == ph.volume.voxels.tobytes()  # deterministic
    v, t = ph.volume.voxels, ph.tissue
    free = ph.labels == 0

    def median(cls: int) -> float:
        core = ndimage.binary_erosion(t == cls, iterations=1) & free
        assert core.sum() > 50, TISSUE_NAMES[cls]
        return float(np.median(v[core]))

    gm, wm, csf, bone = (median(c) for c in (TISSUE_GRAY_MATTER, TISSUE_WHITE_MATTER, TISSUE_CSF, TISSUE_CORTICAL_BONE))
    # non-contrast head CT: bone >> grey matter > white matter > CSF
    assert bone > 900 and 30 < gm < 46 and 20 < wm < 35 and csf < 16 and gm - wm > 3
    assert ph.volume.metadata.windows[0].name == "brain" and not ph.contrast
    assert ph.lesions and all(les.kind not in ("solid_nodule", "part_solid_nodule") for les in ph.lesions)
    for les in ph.lesions:
        k, j, i = (int(round(c)) for c in les.center_index)
        assert t[k, j, i] in (TISSUE_GRAY_MATTER, TISSUE_WHITE_MATTER), les
    with pytest.raises(ValueError, match="no lungs"):
        make_phantom(1, region="head", lesion_kinds=["solid_nodule"], **SMALL)
    with pytest.raises(ValueError, match="unknown region"):
        make_phantom(1, region="knee", **SMALL)
