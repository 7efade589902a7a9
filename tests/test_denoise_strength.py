"""Denoising strength: blend, labels, `denoise_volume(strength=)`, `medviewer denoise --strength`."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medviewer.ai import denoise as dn
from medviewer.ai.denoise_strength import blend, check_strength, strength_label, with_strength
from medviewer.cli import main as cli_main
from medviewer.dicom import load
from medviewer.dicom.synthetic import write_series
from medviewer.volume import Volume, VolumeMetadata


def test_blend_puts_back_the_share_of_removed_noise_and_keeps_padding():
    rng = np.random.default_rng(0)
    src = rng.normal(40.0, 30.0, (2, 16, 16)).astype(np.float32)
    src[:, :2] = -3024.0  # padding: the generator returns it unchanged
    den = np.where(src < -1500, src, 40.0).astype(np.float32)
    out = blend(src, den, 0.7)
    np.testing.assert_allclose(out, src + 0.7 * (den - src), atol=1e-4)
    assert np.all(out[:, :2] == -3024.0)
    inner = (out - den)[:, 2:]
    assert inner.std() == pytest.approx(0.3 * (src - den)[:, 2:].std(), rel=1e-4)  # noise SD scales by 1 - strength
    full = blend(src, den, 1.0)
    np.testing.assert_array_equal(full, den)
    assert full is not den and full.dtype == np.float32


@pytest.mark.parametrize("bad", [0.0, 0.05, 1.01, -1.0, float("nan")])
def test_strength_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="between 0.1 and 1"):
        check_strength(bad)


def test_labels():
    assert strength_label(1.0) == "AI denoised"
    assert strength_label(0.7) == "AI denoised 70 %"


def test_with_strength_matches_denoise_volume_and_labels_the_series(tmp_path):
    import tests.test_denoiser as td_tests

    weights = tmp_path / "w"
    td_tests.make_weights(weights)
    rng = np.random.default_rng(1)
    vox = (rng.normal(40.0, 25.0, (3, 64, 64))).astype(np.float32)
    vol = Volume(vox, (2.5, 0.7, 0.7), metadata=VolumeMetadata(modality="CT", series_description="Chest"))
    full = dn.denoise_volume(vol, device="cpu", folder=weights)
    soft = dn.denoise_volume(vol, device="cpu", folder=weights, strength=0.6)
    np.testing.assert_allclose(soft.voxels, with_strength(vol, full, 0.6).voxels, atol=1e-4)
    np.testing.assert_allclose(soft.voxels, vox + 0.6 * (full.voxels - vox), atol=1e-3)
    assert full.metadata.series_description == "Chest [AI denoised]"
    assert soft.metadata.series_description == "Chest [AI denoised 60 %]"
    assert soft.metadata.extra["denoiser"]["strength"] == 0.6 and soft.metadata.extra["denoiser"]["version"]
    assert full.metadata.extra["denoiser"]["strength"] == 1.0
    np.testing.assert_array_equal(vol.voxels, vox)  # the source is untouched
    with pytest.raises(ValueError):
        dn.denoise_volume(vol, device="cpu", folder=weights, strength=0.0)


def test_denoise_command_with_strength(tmp_path, capsys):
    import tests.test_denoiser as td_tests

    folder = tmp_path / "src"
    write_series(folder, n_slices=3, rows=40, columns=40, spacing=2.0, description="A" * 60)
    weights = tmp_path / "w"
    td_tests.make_weights(weights)
    assert cli_main(["denoise", str(folder), str(tmp_path / "d"), "--device", "cpu", "--weights", str(weights), "--strength", "0.7"]) == 0
    back = load(tmp_path / "d")
    desc = back.metadata.series_description
    assert len(desc) <= 64 and desc.endswith(" [AI denoised 70 %]")  # the source part is cut, not the tag
    ds = pydicom.dcmread(next((tmp_path / "d").iterdir()))
    assert "strength 70 %" in ds.DerivationDescription and "30 % of the removed noise put back" in ds.DerivationDescription
    with pytest.raises(SystemExit):
        cli_main(["denoise", str(folder), str(tmp_path / "e"), "--strength", "1.5"])
    assert "between 0.1 and 1" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_analyze_report_exports_the_denoised_series_at_the_strength(tmp_path, monkeypatch):
    import torch

    import tests.test_denoiser as td_tests
    from medviewer.ai.detector import build_model, model_config
    from medviewer.ai.weights import save_weights

    models = tmp_path / "resources" / "models"
    td_tests.make_weights(models)
    torch.manual_seed(0)
    net = build_model()
    save_weights("detector", net.state_dict(), {"version": "0.0.0-test", "config": model_config(net)}, models)
    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(tmp_path / "resources"))
    write_series(tmp_path / "in", n_slices=6, rows=48, columns=48, description="Chest")
    args = ["analyze", str(tmp_path / "in"), "--device", "cpu", "--denoise", "--strength", "0.7"]
    assert cli_main([*args, "--output", str(tmp_path / "bad")]) == 2  # --strength without --report: refused
    assert not (tmp_path / "bad").exists()
    assert cli_main([*args, "--report", "--output", str(tmp_path / "out")]) == 0
    src = load(tmp_path / "in")
    back = load(tmp_path / "out" / "report" / "denoised")
    assert back.metadata.series_description == "Chest [AI denoised 70 %]"
    full = dn.denoise_volume(src, device="cpu")
    np.testing.assert_allclose(back.voxels, np.rint(src.voxels + 0.7 * (full.voxels - src.voxels)), atol=1.0)
