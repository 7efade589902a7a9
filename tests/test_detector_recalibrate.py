"""`medviewer calibrate detector`: new inference passes, weights unchanged, calibration re-fitted."""

from __future__ import annotations

import pytest
import torch

from medviewer.ai.detect_passes import Pass, inference_passes
from medviewer.ai.detector import build_model
from medviewer.ai.weights import load_weights, save_weights
from medviewer.cli import main as cli_main
from medviewer.errors import ModelError
from medviewer.resources import models_dir
from medviewer.training.detector_data import volume_groups
from medviewer.training.recalibrate_detector import parse_pass, recalibrate_detector


def test_pass_specs():
    assert parse_pass("1.2") == Pass(1.2, False)
    assert parse_pass("1.0:flip") == Pass(1.0, True)
    assert parse_pass("1.0:flip:shift4") == Pass(1.0, True, 4) == parse_pass("1.0:shift4:flip")
    assert parse_pass("1.0:shift2") == Pass(1.0, False, 2)
    for bad in ("1.2:mirror", "fine", "1.0:flip:x", "1.0:shift3", "1.0:shift", "1.0:shift4:shift4", "1.0:flip:flip"):
        with pytest.raises(ModelError):
            parse_pass(bad)


def test_recalibration_keeps_the_weights_and_records_the_passes(tmp_path):
    torch.manual_seed(0)
    m = build_model()
    save_weights("detector", m.state_dict(), {"version": "1.0-a", "steps": 12, "training": {"method": "trained"}}, tmp_path / "a")
    groups = volume_groups(["chest=1/1", "kidney=0/0", "host-hu=0/0", "head=0/0"])
    passes = [Pass(1.0, True), Pass(1.25, False)]
    card = recalibrate_detector(tmp_path / "a", passes, tmp_path / "b", tmp_path / "data", "1.1-test",
                                device="cpu", groups=groups, shape=(16, 128, 128))
    tensors, saved = load_weights("detector", tmp_path / "b")
    for k, v in m.state_dict().items():
        assert torch.equal(tensors[k], v)
    assert saved["version"] == card["version"] == "1.1-test"
    assert inference_passes(saved) == passes
    assert saved["training"]["method"] == "trained" and saved["steps"] == 12
    rec = saved["training"]["recalibrated"]
    assert rec["from"] == "detector 1.0-a" and rec["weights"] == "unchanged"
    assert "--passes 1:flip 1.25" in rec["command"]
    assert saved["calibration"]["temperature"] > 0 and saved["calibration"]["validation_seeds"] == [90000]


def test_calibrate_cli_refuses_a_bad_pass_before_writing(tmp_path, capsys):
    save_weights("detector", build_model().state_dict(), {"version": "1"}, tmp_path / "a")
    rc = cli_main(["calibrate", "detector", str(tmp_path / "a"), "--passes", "9", "--out", str(tmp_path / "b"),
                   "--version", "x", "--data", str(tmp_path / "data")])
    assert rc == 2
    assert "scales in" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_native_calibration_is_fitted_on_native_phantoms(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    save_weights("detector", build_model().state_dict(), {"version": "1.0-a"}, tmp_path / "a")
    groups = volume_groups(["chest=1/1", "kidney=0/0", "host-hu=0/0", "head=0/0"])
    card = recalibrate_detector(tmp_path / "a", [Pass(1.0, False), Pass(1.4, False)], tmp_path / "b", tmp_path / "data",
                                "1.1-test", device="cpu", groups=groups, shape=(16, 128, 128), native=2,
                                native_grid=((12, 96, 96), (2.5, 2.8, 2.8)))
    cal = card["calibration"]
    assert "native CT pixel" in cal["method"] and cal["calibration_seeds"] == [3_000_000, 3_000_001]
    assert cal["temperature"] > 0 and cal["n_candidates"] >= 0
    assert card["training"]["recalibrated"]["command"].endswith("--native 2")
    assert "on 2 phantoms rendered at a native CT pixel" in card["training"]["recalibrated"]["note"]
    assert load_weights("detector", tmp_path / "b")[1]["calibration"] == cal  # the saved card, hash checked
    assert list((tmp_path / "cache" / "detector_native_calibration").glob("*.npz"))  # the phantoms are cached


def _shipped_copy(folder):
    """The shipped detector (trained weights: they raise candidates) copied to ``folder``; the options of a small
    recalibration on one chest validation phantom."""
    tensors, shipped = load_weights("detector", models_dir())
    save_weights("detector", tensors, {k: v for k, v in shipped.items() if k != "sha256"}, folder)
    groups = volume_groups(["chest=1/1", "kidney=0/0", "host-hu=0/0", "head=0/0"])
    return dict(device="cpu", groups=groups, shape=(16, 128, 128))


@pytest.mark.skipif(not (models_dir() / "detector.safetensors").is_file(), reason="no shipped detector")
def test_textured_calibration_pools_the_textured_candidates(tmp_path):
    kw = _shipped_copy(tmp_path / "a")
    plain = recalibrate_detector(tmp_path / "a", [Pass(1.0, True)], tmp_path / "p", tmp_path / "data", "1.1-p", **kw)
    pooled = recalibrate_detector(tmp_path / "a", [Pass(1.0, True)], tmp_path / "t", tmp_path / "data", "1.1-t",
                                  textured=True, **kw)
    cal = pooled["calibration"]
    assert "tissue texture" in cal["method"] and cal["n_candidates"] > plain["calibration"]["n_candidates"]
    assert cal["temperature"] > 0
    assert pooled["training"]["recalibrated"]["command"].endswith("--textured")
    assert "plain and with tissue texture, pooled" in pooled["training"]["recalibrated"]["note"]
    with pytest.raises(ModelError, match="not both"):
        recalibrate_detector(tmp_path / "a", [Pass(1.0, True)], tmp_path / "x", tmp_path / "data", "1.1-x",
                             textured=True, native=2, **kw)


def test_pooled_calibration_fits_all_candidates_together():
    import numpy as np

    from medviewer.training import froc as frocm
    from medviewer.training.train_detector import pooled_calibration

    rng = np.random.default_rng(0)
    a = {"logits": rng.normal(0, 2, 200), "hits": (rng.random(200) < 0.3).astype(float)}
    b = {"logits": rng.normal(-1, 2, 300), "hits": (rng.random(300) < 0.1).astype(float)}
    fit = pooled_calibration(a, b)
    t, bias = frocm.fit_temperature(np.concatenate([a["logits"], b["logits"]]), np.concatenate([a["hits"], b["hits"]]))
    assert (fit["temperature"], fit["bias"], fit["n_candidates"]) == (pytest.approx(t), pytest.approx(bias), 500)
    assert 0.0 <= fit["ece"] < 0.1 and fit["ece_raw"] >= 0.0


def test_image_background_cases_are_built_like_the_test_volumes(tmp_path):
    import numpy as np

    from medviewer.training.recalibrate_detector import IMAGE_SEED0, image_background_cases

    kw = dict(grid=(96, 2.8), n_slices=12)
    cases = image_background_cases(5, IMAGE_SEED0, cache=tmp_path / "cache", **kw)
    again = image_background_cases(5, IMAGE_SEED0, **kw)  # seeded: the same volumes without the cache
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 5
    for c, d in zip(cases, again):
        assert np.array_equal(c.volume.voxels, d.volume.voxels) and np.array_equal(c.centers_mm, d.centers_mm)
        assert c.volume.shape == (12, 96, 96) and c.volume.spacing == (2.5, 2.8, 2.8)
        assert c.name.startswith("image-") and c.volume.metadata.modality == "CT"
        assert -1100 < float(c.volume.voxels.min()) and float(c.volume.voxels.max()) < 3100
    assert [len(c.diameters_mm) > 0 for c in cases] == [True, True, True, True, False]  # every fifth lesion-free
    assert all(1 <= len(c.diameters_mm) <= 3 and (c.diameters_mm >= 5.0).all() for c in cases[:4])
    other = image_background_cases(1, IMAGE_SEED0 + 1, **kw)[0]
    assert not np.array_equal(other.volume.voxels, cases[0].volume.voxels)


@pytest.mark.skipif(not (models_dir() / "detector.safetensors").is_file(), reason="no shipped detector")
def test_image_calibration_pools_the_image_volumes_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_CACHE", str(tmp_path / "cache"))
    kw = _shipped_copy(tmp_path / "a")
    plain = recalibrate_detector(tmp_path / "a", [Pass(1.0, False)], tmp_path / "p", tmp_path / "data", "1.1-p", **kw)
    pooled = recalibrate_detector(tmp_path / "a", [Pass(1.0, False)], tmp_path / "i", tmp_path / "data", "1.1-i",
                                  images=2, image_grid=(96, 2.8), **kw)
    cal = pooled["calibration"]
    assert "from image slices" in cal["method"] and cal["n_candidates"] > plain["calibration"]["n_candidates"]
    assert cal["temperature"] > 0
    assert pooled["training"]["recalibrated"]["command"].endswith("--images 2")
    assert "with 2 image-background volumes" in pooled["training"]["recalibrated"]["note"]
    assert pooled["metrics"]["validation"]["cpm"] == plain["metrics"]["validation"]["cpm"]  # the same phantoms score it
    assert list((tmp_path / "cache" / "detector_image_calibration").glob("*.npz"))
    with pytest.raises(ModelError, match="not both"):
        recalibrate_detector(tmp_path / "a", [Pass(1.0, False)], tmp_path / "x", tmp_path / "data", "1.1-x",
                             images=2, native=2, **kw)
    with pytest.raises(ModelError, match="0 or more"):
        recalibrate_detector(tmp_path / "a", [Pass(1.0, False)], tmp_path / "y", tmp_path / "data", "1.1-y",
                             images=-1, **kw)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
