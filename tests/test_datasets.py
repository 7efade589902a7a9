"""Tests of the cached training-set builders (tiny grids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medviewer.errors import CancelledError
from medviewer.training.datasets import (
    build_denoising_pairs,
    build_detection_volumes,
    check_seed_range,
)

PAIR_ARGS = dict(slices_per_phantom=2, size=64, spacing=(2.5, 5.6), doses=(0.1, 0.5))


def test_seed_convention() -> None:
    assert check_seed_range(0, 10) == "train"
    assert check_seed_range(99_990, 10) == "train"
    assert check_seed_range(1_000_000, 3) == "eval"
    for bad in ((99_995, 10), (500_000, 1), (-1, 2)):
        with pytest.raises(ValueError, match="range"):
            check_seed_range(*bad)


def test_denoising_pairs_cached_and_resumable(tmp_path: Path) -> None:
    seen: list[float] = []
    pairs = build_denoising_pairs(tmp_path, 2, seed=10, workers=1, progress=lambda f, m: seen.append(f), **PAIR_ARGS)
    assert len(pairs) == 4 and seen[-1] == 1.0
    full, low, dose = pairs[3]
    assert full.shape == low.shape == (64, 64) and full.dtype == np.float32
    assert 0.1 <= dose <= 0.5
    clean = pairs.clean(3)
    body = clean > -500
    # the low-dose image is noisier than the full-dose one, both around the phantom
    assert np.std((low - clean)[body]) > np.std((full - clean)[body]) > 0.5
    assert abs(float(np.mean((low - clean)[body]))) < 10.0
    # a rebuild with one more phantom only generates the new one and keeps the old bytes
    files = sorted(p.name for p in pairs.root.iterdir())
    before = (pairs.root / "0000010.low.npy").read_bytes()
    more = build_denoising_pairs(tmp_path, 3, seed=10, workers=1, **PAIR_ARGS)
    assert len(more) == 6 and more.root == pairs.root
    assert (pairs.root / "0000010.low.npy").read_bytes() == before
    assert len(list(pairs.root.iterdir())) == len(files) + 4
    assert not list(pairs.root.glob("*.tmp"))
    np.testing.assert_array_equal(more[1][1], pairs[1][1])
    with pytest.raises(IndexError):
        more[6]
    # other parameters go to another folder
    other = build_denoising_pairs(tmp_path, 1, seed=10, workers=1, slices_per_phantom=1, size=64, spacing=(2.5, 5.6))
    assert other.root != pairs.root


def test_denoising_pairs_with_a_blur_range(tmp_path: Path) -> None:
    """``psf_mm``: each phantom's blur is drawn from the range (recorded), the doses stay those of the default set."""
    import json

    plain = build_denoising_pairs(tmp_path, 2, seed=30, workers=1, **PAIR_ARGS)
    sharp = build_denoising_pairs(tmp_path, 2, seed=30, workers=1, psf_mm=(0.1, 0.4), **PAIR_ARGS)
    assert sharp.root != plain.root  # the default set keeps its folder, the new one gets its own
    psfs = [json.loads((sharp.root / f"{s:07d}.json").read_text())["psf_mm"] for s in (30, 31)]
    assert all(0.1 <= v <= 0.4 for v in psfs) and psfs[0] != psfs[1]
    assert "psf_mm" not in json.loads((plain.root / "0000030.json").read_text())
    np.testing.assert_array_equal(sharp.doses, plain.doses)
    with pytest.raises(ValueError, match="psf_mm"):
        build_denoising_pairs(tmp_path, 1, seed=30, workers=1, psf_mm=(0.4, 0.1), **PAIR_ARGS)


def test_denoising_pairs_with_hard_cuts(tmp_path: Path) -> None:
    """``cut``: the chosen slices are cut to padding before the scanner is simulated; other slices stay as they were."""
    import json

    plain = build_denoising_pairs(tmp_path, 2, seed=42, workers=1, **PAIR_ARGS)
    cut = build_denoising_pairs(tmp_path, 2, seed=42, workers=1, cut=0.5, **PAIR_ARGS)
    assert cut.root != plain.root
    flags = [f for s in (42, 43) for f in json.loads((cut.root / f"{s:07d}.json").read_text())["cut_slices"]]
    assert len(flags) == 4 and any(flags) and not all(flags)  # seed 42 starts uncut, 43 cut
    for i, was_cut in enumerate(flags):
        if was_cut:  # more padding than the uncut phantom; the low-dose scan is of the cut slice
            assert (cut.clean(i) <= -1020).sum() > (plain.clean(i) <= -1020).sum()
            assert np.corrcoef(cut[i][1].ravel(), cut.clean(i).ravel())[0, 1] > 0.9
        else:
            np.testing.assert_array_equal(cut.clean(i), plain.clean(i))
    with pytest.raises(ValueError, match="cut"):
        build_denoising_pairs(tmp_path, 1, seed=40, workers=1, cut=2.0, **PAIR_ARGS)


def test_cut_slice_makes_a_hard_step() -> None:
    from medviewer.training.hard_edges import PAD_HU, cut_slice
    from medviewer.training.phantom import make_phantom

    hu = np.asarray(make_phantom(3, shape=(1, 128, 128), spacing=(2.5, 2.8, 2.8), n_lesions=0).volume.voxels[0], np.float32)
    body = hu > -500
    for kind in ("fov", "mask", "strip"):
        out = cut_slice(hu, 2.8, np.random.default_rng(1), kind)
        padded = out == PAD_HU
        assert (padded & body).sum() > 0.05 * body.sum()  # tissue was cut away
        kept = ~padded
        np.testing.assert_array_equal(out[kept], hu[kept])  # the rest is untouched, so the step is one pixel wide
    with pytest.raises(ValueError, match="cut kind"):
        cut_slice(hu, 2.8, np.random.default_rng(1), "circle")
    np.testing.assert_array_equal(cut_slice(np.full((16, 16), -1000, np.float32), 1.0, np.random.default_rng(0)), -1000)


def test_denoising_pairs_parallel_matches_serial(tmp_path: Path) -> None:
    a = build_denoising_pairs(tmp_path / "a", 2, seed=20, workers=2, **PAIR_ARGS)
    b = build_denoising_pairs(tmp_path / "b", 2, seed=20, workers=1, **PAIR_ARGS)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][1], b[i][1])
        assert a[i][2] == b[i][2]


def test_cancel_keeps_finished_items(tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(CancelledError):
        build_denoising_pairs(tmp_path, 3, seed=30, workers=1, cancel=cancel, **PAIR_ARGS)
    done = list(tmp_path.glob("denoise-*/*.json"))
    assert not list(tmp_path.glob("denoise-*/*.tmp"))
    assert all(p.name == "dataset.json" or p.name.startswith("00000") for p in done)


def test_detection_volumes(tmp_path: Path) -> None:
    vols = build_detection_volumes(tmp_path, 3, seed=1_000_000, shape=(8, 64, 64), spacing=(5.0, 5.6, 5.6),
                                   lesion_free_fraction=0.0, n_lesions=(1, 2), workers=1)
    assert len(vols) == 3
    item = vols[0]
    assert item["volume_hu"].shape == (8, 64, 64) and item["labels"].dtype == np.int16
    assert item["spacing"] == (5.0, 5.6, 5.6) and len(item["origin"]) == 3
    assert 1 <= len(item["lesions"]) <= 2
    for les in item["lesions"]:
        assert (item["labels"] == les["label"]).any()
        assert {"kind", "shape", "center_mm", "diameter_mm", "contrast_hu"} <= set(les)
    free = build_detection_volumes(tmp_path, 2, seed=1_000_000, shape=(8, 64, 64), spacing=(5.0, 5.6, 5.6),
                                   lesion_free_fraction=1.0, workers=1)
    assert all(free[i]["lesions"] == [] and not free[i]["labels"].any() for i in range(2))
