"""Left-right flip test-time augmentation of the detector (switched on by the model card)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.ai import detect
from medviewer.ai.detect_passes import inference_passes
from medviewer.ai.weights import weights_path


@pytest.fixture(scope="module")
def shipped():
    if not weights_path("detector").is_file():
        pytest.skip("shipped detector weights are absent")
    return detect.load_detector()


def test_flip_tta_averages_the_mirrored_pass(shipped):
    model, card = shipped
    rng = np.random.default_rng(3)
    hu = rng.normal(0.0, 60.0, (6, 48, 64)).astype(np.float32)
    hu[:, 20:30, 10:22] += 400.0  # an asymmetric bright blob
    seg_t, heat_t, off_t = detect.predict_maps_tta(model, hu, "cpu", flip_tta=True)
    seg_a, heat_a, off_a = detect.predict_maps(model, hu, "cpu")
    seg_b, heat_b, off_b = detect.predict_maps(model, np.ascontiguousarray(hu[..., ::-1]), "cpu")
    np.testing.assert_allclose(seg_t, 0.5 * (seg_a + seg_b[..., ::-1]), atol=1e-5)
    np.testing.assert_allclose(heat_t, 0.5 * (heat_a + heat_b[..., ::-1]), atol=1e-5)
    # the mirrored pass's x offset changes sign when flipped back
    np.testing.assert_allclose(off_t[:, 2], 0.5 * (off_a[:, 2] - off_b[:, 2][..., ::-1]), atol=1e-5)
    # off: plain predict_maps
    seg_n, _, _ = detect.predict_maps_tta(model, hu, "cpu", flip_tta=False)
    np.testing.assert_array_equal(seg_n, seg_a)
    # the shipped card names its passes, and its flip_tta flag (kept for older readers) says whether one is mirrored
    passes = inference_passes(card)
    assert passes and card["inference"]["flip_tta"] is any(p.flip for p in passes)
