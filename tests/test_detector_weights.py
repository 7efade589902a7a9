"""The shipped detector weights (resources/models/detector.*) on project phantoms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medviewer.ai.detect import detect_lesions, load_detector
from medviewer.ai.results import FINDINGS_SCHEMA
from medviewer.ai.weights import load_card
from medviewer.training.phantom import make_phantom

# a phantom at a spacing other than the model's, so the resampling path is exercised
SHAPE = (24, 320, 320)
SPACING = (2.5, 1.12, 1.12)


def test_shipped_card_is_complete():
    card = load_card("detector")
    for key in ("version", "architecture", "params", "macs_per_internal_slice", "input", "training", "calibration", "threshold", "metrics", "sha256"):
        assert key in card, key
    assert card["intended_use"] == "Research use only, not for diagnosis."
    assert card["calibration"]["temperature"] > 0
    load_detector()  # hash and architecture check


def test_obvious_lesion_is_found_at_its_centre():
    ph = make_phantom(424242, shape=SHAPE, spacing=SPACING, n_lesions=1, lesion_kinds=["solid_nodule"], diameter_range_mm=(14.0, 18.0))
    assert len(ph.lesions) == 1
    les = ph.lesions[0]
    res = detect_lesions(ph.volume, device="cpu")
    true_mm = ph.volume.index_to_patient(les.center_index)
    hits = [f for f in res.findings if np.linalg.norm(np.array(f.center_mm) - true_mm) <= les.diameter_mm / 2]
    assert hits, [(f.center_mm, f.confidence) for f in res.findings[:3]]
    assert max(f.confidence for f in hits) > 0.5
    assert res.abnormality_score > 0.5
    doc = json.loads(res.dumps())
    import jsonschema

    jsonschema.validate(doc, FINDINGS_SCHEMA)


def test_lesion_free_phantom_has_no_confident_finding():
    ph = make_phantom(424243, shape=SHAPE, spacing=SPACING, n_lesions=0)
    assert ph.lesions == [] and not ph.labels.any()
    res = detect_lesions(ph.volume, device="cpu")
    assert all(f.confidence <= 0.5 for f in res.findings), [(f.center_mm, f.confidence) for f in res.findings[:3]]
    assert res.abnormality_score <= 0.5
    assert float(res.confidence.max()) <= 1.0
