"""Weight averages of two detectors (`medviewer average detector`): tensors, card, errors."""

from __future__ import annotations

import pytest
import torch

from medviewer.ai.detector import build_model
from medviewer.ai.weights import load_weights, save_weights
from medviewer.cli import main as cli_main
from medviewer.errors import ModelError
from medviewer.training.average_detector import average_detectors, average_tensors
from medviewer.training.detector_data import volume_groups


def test_average_tensors_interpolates_floats_and_keeps_integer_buffers():
    a = {"w": torch.zeros(2, 3), "bn.num_batches_tracked": torch.tensor(7)}
    b = {"w": torch.full((2, 3), 4.0), "bn.num_batches_tracked": torch.tensor(99)}
    assert torch.equal(average_tensors(a, b, 0.0)["w"], a["w"])
    assert torch.equal(average_tensors(a, b, 1.0)["w"], b["w"])
    mid = average_tensors(a, b, 0.25)
    assert torch.allclose(mid["w"], torch.full((2, 3), 1.0)) and mid["w"].dtype == torch.float32
    assert int(mid["bn.num_batches_tracked"]) == 7
    assert torch.equal(a["w"], torch.zeros(2, 3))  # inputs untouched


@pytest.mark.parametrize(
    "b, weight, message",
    [
        ({"w": torch.zeros(2, 3)}, 1.5, "must lie in"),
        ({"v": torch.zeros(2, 3)}, 0.5, "different tensors"),
        ({"w": torch.zeros(3, 2)}, 0.5, "shape"),
    ],
)
def test_average_tensors_refuses_what_cannot_be_averaged(b, weight, message):
    with pytest.raises(ModelError, match=message):
        average_tensors({"w": torch.zeros(2, 3)}, b, weight)


def test_average_detectors_writes_a_calibrated_card_naming_both_parents(tmp_path):
    torch.manual_seed(0)
    m1, m2 = build_model(), build_model()
    save_weights("detector", m1.state_dict(), {"version": "1.0-a"}, tmp_path / "a")
    save_weights("detector", m2.state_dict(), {"version": "1.0-b"}, tmp_path / "b")
    groups = volume_groups(["chest=1/1", "kidney=0/0", "host-hu=0/0", "head=0/0"])
    card = average_detectors(
        tmp_path / "a", tmp_path / "b", 0.25, tmp_path / "avg", tmp_path / "data", "2.0-test",
        device="cpu", groups=groups, shape=(16, 128, 128),
    )
    tensors, saved = load_weights("detector", tmp_path / "avg")  # the hash in the card matches
    assert saved["version"] == card["version"] == "2.0-test"
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    expected = 0.75 * m1.state_dict()[key] + 0.25 * m2.state_dict()[key]
    assert torch.allclose(tensors[key], expected, atol=1e-6)
    parents = saved["training"]["parents"]
    assert [p["model"] for p in parents] == ["detector 1.0-a", "detector 1.0-b"]
    assert [p["weight"] for p in parents] == [0.75, 0.25]
    assert "weight average" in saved["training"]["method"]
    assert saved["calibration"]["validation_seeds"] == [90000]
    assert saved["calibration"]["temperature"] > 0
    assert "cpm_textured" in saved["metrics"]["validation"]


def test_average_cli_names_a_missing_partner(tmp_path, capsys):
    torch.manual_seed(0)
    save_weights("detector", build_model().state_dict(), {"version": "1.0-a"}, tmp_path / "a")
    rc = cli_main(["average", "detector", str(tmp_path / "a"), str(tmp_path / "nowhere"), "--weight", "0.5",
                   "--out", str(tmp_path / "avg"), "--version", "x", "--data", str(tmp_path / "data")])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "avg").exists()


def test_average_refuses_two_architectures(tmp_path):
    save_weights("detector", build_model().state_dict(), {"version": "1", "config": {}}, tmp_path / "a")
    grown = build_model({"n_refine": 1})
    save_weights("detector", grown.state_dict(), {"version": "2", "config": {"n_refine": 1}}, tmp_path / "b")
    with pytest.raises(ModelError, match="different architectures"):
        average_detectors(tmp_path / "a", tmp_path / "b", 0.5, tmp_path / "avg", tmp_path / "data", "x", device="cpu")
