"""Inference passes of the detector: in-plane scales and flips named by the model card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medviewer.ai import detect
from medviewer.ai.detect_passes import Pass, _to_grid, inference_passes, pass_grid, passes_json, predict_maps_passes
from medviewer.ai.weights import weights_path
from medviewer.errors import ModelError
from medviewer.resources import models_dir
from medviewer.volume import Volume, VolumeMetadata


@pytest.fixture(scope="module")
def shipped():
    if not weights_path("detector").is_file():
        pytest.skip("shipped detector weights are absent")
    return detect.load_detector()


def test_card_passes_are_read_and_checked():
    assert inference_passes({}) == [Pass(1.0, False)]
    assert inference_passes({"inference": {"flip_tta": True}}) == [Pass(1.0, True)]
    two = [Pass(1.0, True), Pass(1.2, False)]
    assert inference_passes({"inference": passes_json(two)}) == two
    assert passes_json(two)["flip_tta"] is True
    for bad in ([], [{"flip": True}], [{"scale": 5.0}], "1.2"):
        with pytest.raises(ModelError):
            inference_passes({"inference": {"passes": bad}})


def test_shifted_passes_round_trip_through_the_card():
    passes = [Pass(1.0, True), Pass(1.0, True, 4)]
    js = passes_json(passes)
    assert js["passes"] == [{"scale": 1.0, "flip": True}, {"scale": 1.0, "flip": True, "shift": 4}]  # older cards unchanged
    assert inference_passes({"inference": js}) == passes
    assert [p.spec() for p in passes] == ["1:flip", "1:flip:shift4"]
    for shift in (3, -2, 16, "x"):
        with pytest.raises(ModelError):
            inference_passes({"inference": {"passes": [{"scale": 1.0, "shift": shift}]}})


def test_pass_grid_refines_only_in_plane():
    assert pass_grid((10, 200, 300), (2.5, 1.4, 1.4), 1.0) == (10, 200, 300)
    z, y, x = pass_grid((10, 200, 300), (2.5, 1.4, 1.4), 1.5)
    assert (z, y, x) == (10, 300, 450)


def test_offsets_scale_with_the_grid():
    seg = np.zeros((2, 4, 6), np.float32)
    off = np.zeros((2, 3, 4, 6), np.float32)
    off[:, 0] = 0.5  # z: unchanged by an in-plane resampling
    off[:, 1] = 1.0
    off[:, 2] = -1.0
    s2, h2, o2 = _to_grid(seg, seg.copy(), off, (8, 12))
    assert s2.shape == h2.shape == (2, 8, 12) and o2.shape == (2, 3, 8, 12)
    np.testing.assert_allclose(o2[:, 0], 0.5)
    np.testing.assert_allclose(o2[:, 1], 2.0)
    np.testing.assert_allclose(o2[:, 2], -2.0)


def _blob_volume() -> np.ndarray:
    rng = np.random.default_rng(3)
    hu = rng.normal(40.0, 20.0, (6, 48, 64)).astype(np.float32)
    hu[:, 20:30, 10:22] += 300.0
    return hu


def test_one_pass_is_the_flip_pipeline(shipped):
    model, _ = shipped
    hu = _blob_volume()
    a = detect.predict_maps_tta(model, hu, "cpu", flip_tta=True)
    b = predict_maps_passes(model, hu, (2.5, 1.4, 1.4), [Pass(1.0, True)], "cpu")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_two_passes_average_on_the_finer_grid(shipped):
    model, _ = shipped
    hu = _blob_volume()
    sp = (2.5, 1.4, 1.4)
    coarse = predict_maps_passes(model, hu, sp, [Pass(1.0, False)], "cpu")
    fine = predict_maps_passes(model, hu, sp, [Pass(1.5, False)], "cpu")
    both = predict_maps_passes(model, hu, sp, [Pass(1.0, False), Pass(1.5, False)], "cpu")
    assert both[0].shape == fine[0].shape == (6, 36, 48)
    up = _to_grid(*coarse, fine[0].shape[1:])  # type: ignore[arg-type]
    for b, f, u in zip(both, fine, up):
        np.testing.assert_allclose(b, 0.5 * (f + u), atol=1e-5)


def _lesion_volume() -> np.ndarray:
    """A 59 mm soft-tissue disc in air with a 14 mm, +70 HU sphere, on the internal grid."""
    z, y, x = np.mgrid[:12, :96, :96]
    hu = np.where((y - 48) ** 2 + (x - 48) ** 2 < 42**2, 40.0, -1000.0).astype(np.float32)
    hu[((z - 6) * 2.5 / 1.4) ** 2 + (y - 40) ** 2 + (x - 58) ** 2 < 5**2] = 110.0
    return hu + np.random.default_rng(3).normal(0.0, 8.0, hu.shape).astype(np.float32)


@pytest.mark.parametrize("flip", [False, True])
def test_a_shifted_pass_is_shifted_back(shipped, flip):
    model, _ = shipped
    hu = _lesion_volume()
    sp = (2.5, 1.4, 1.4)
    plain = predict_maps_passes(model, hu, sp, [Pass(1.0, flip)], "cpu")
    peak = np.unravel_index(np.argmax(plain[1]), plain[1].shape)
    assert peak == (6, 20, 29)  # the sphere's centre on the output grid (stride 2)
    for shift in (4, 8):
        shifted = predict_maps_passes(model, hu, sp, [Pass(1.0, flip, shift)], "cpu")
        assert all(a.shape == b.shape for a, b in zip(plain, shifted))
        assert np.unravel_index(np.argmax(shifted[1]), shifted[1].shape) == peak  # shifted back, not by +-shift/2
    # 8 internal pixels is one period of the encoder's lattice: the same phase, so inside the body the maps agree
    inner = (slice(None), slice(10, 38), slice(10, 38))
    assert np.corrcoef(plain[1][inner].ravel(), shifted[1][inner].ravel())[0, 1] > 0.97


def test_detect_lesions_follows_the_card_passes(shipped, tmp_path):
    model, card = shipped
    shutil.copy(models_dir() / "detector.safetensors", tmp_path)
    c = dict(card)
    c["inference"] = passes_json([Pass(1.0, True), Pass(1.25, False, 2)])
    (tmp_path / "detector.json").write_text(json.dumps(c))
    vol = Volume(_blob_volume(), spacing=(2.5, 1.4, 1.4), metadata=VolumeMetadata(modality="CT"))
    res = detect.detect_lesions(vol, device="cpu", models_folder=tmp_path, min_confidence=0.0, masks=False)
    assert res.extra["passes"] == [{"scale": 1.0, "flip": True}, {"scale": 1.25, "flip": False, "shift": 2}]
    assert res.extra["output_shape"][1:] == [30, 40]
    assert res.confidence.shape == vol.shape
