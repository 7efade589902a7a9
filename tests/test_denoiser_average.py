"""Weight averages of two denoisers (`medviewer average denoiser`): tensors, card, errors."""

from __future__ import annotations

import pytest
import torch

from medviewer.ai.denoise import denoise_slices
from medviewer.ai.denoiser import DenoiserConfig, DenoiserNet
from medviewer.ai.weights import INTENDED_USE, load_weights, save_weights
from medviewer.cli import main as cli_main
from medviewer.errors import ModelError
from medviewer.training.average_denoiser import average_denoisers


def _save(folder, seed, config=DenoiserConfig(c0=8, c1=8, c2=8, n_bottom=1), version="1.0.0"):
    torch.manual_seed(seed)
    model = DenoiserNet(config)
    card = {"name": "denoiser", "version": version, "architecture": {"config": config.to_json()},
            "training": {"data": "phantoms", "steps": 10 * seed, "command": f"train {seed}"},
            "metrics": {"psnr": 1.0}, "intended_use": INTENDED_USE}
    save_weights("denoiser", model.state_dict(), card, folder)
    return model.state_dict()


def test_average_denoisers_interpolates_and_names_both_parents(tmp_path):
    a = _save(tmp_path / "a", 1)
    b = _save(tmp_path / "b", 2, version="1.1.0")
    card = average_denoisers(tmp_path / "a", tmp_path / "b", 0.25, tmp_path / "soup", "2.0.0")
    tensors, saved = load_weights("denoiser", tmp_path / "soup" / "model")
    for name, t in tensors.items():
        assert torch.allclose(t, 0.75 * a[name] + 0.25 * b[name], atol=1e-6), name
    assert saved["version"] == "2.0.0" and saved["sha256"] == card["sha256"]
    assert [p["model"] for p in saved["training"]["parents"]] == ["denoiser 1.0.0", "denoiser 1.1.0"]
    assert [p["weight"] for p in saved["training"]["parents"]] == [0.75, 0.25]
    assert saved["training"]["steps"] == 0 and saved["training"]["data"] == "phantoms"
    assert saved["metrics"] == {} and saved["intended_use"] == INTENDED_USE  # the evaluation decides
    out = denoise_slices(torch.zeros(1, 32, 32).numpy() + 40.0, device="cpu", folder=tmp_path / "soup" / "model")
    assert out.shape == (1, 32, 32)


def test_average_denoiser_cli_and_refusals(tmp_path, capsys):
    _save(tmp_path / "a", 1)
    _save(tmp_path / "b", 2)
    assert cli_main(["average", "denoiser", str(tmp_path / "a"), str(tmp_path / "b"), "--weight", "0.5",
                     "--out", str(tmp_path / "soup"), "--version", "3.0.0"]) == 0
    assert (tmp_path / "soup" / "model" / "denoiser.safetensors").is_file()
    assert "weight average" in capsys.readouterr().out
    _save(tmp_path / "c", 3, config=DenoiserConfig(c0=8, c1=8, c2=16, n_bottom=1))
    with pytest.raises(ModelError, match="different architectures"):
        average_denoisers(tmp_path / "a", tmp_path / "c", 0.5, tmp_path / "bad", "x")
    with pytest.raises(ModelError, match="must lie in"):
        average_denoisers(tmp_path / "a", tmp_path / "b", 1.5, tmp_path / "bad", "x")
    with pytest.raises(ModelError):
        average_denoisers(tmp_path / "a", tmp_path / "missing", 0.5, tmp_path / "bad", "x")
    assert not (tmp_path / "bad").exists()  # nothing written when refused
