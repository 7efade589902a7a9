"""`medviewer analyze`: one CT series -> OUT/, several -> OUT/<SeriesInstanceUID>/ (tmp weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medviewer.ai.detector import build_model, model_config
from medviewer.ai.results import FINDINGS_SCHEMA
from medviewer.ai.weights import save_weights
from medviewer.cli import main


@pytest.fixture
def resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch.manual_seed(0)
    net = build_model()
    folder = tmp_path / "resources"
    save_weights("detector", net.state_dict(), {"version": "0.0.0-test", "config": model_config(net)}, folder / "models")
    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(folder))
    return folder


def _validate(path: Path) -> dict:
    import jsonschema

    doc = json.loads(path.read_text())
    jsonschema.validate(doc, FINDINGS_SCHEMA)
    return doc


def test_analyze_single_series_writes_outputs(resources, tmp_path, capsys):
    from medviewer.dicom.synthetic import write_series

    write_series(tmp_path / "in", n_slices=6, rows=48, columns=48, series_uid="1.2.826.0.1.3680043.8.498.1")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in"), "--output", str(out), "--device", "cpu"]) == 0
    doc = _validate(out / "findings.json")
    assert doc["series_uid"] == "1.2.826.0.1.3680043.8.498.1"
    assert (out / "confidence.nii.gz").stat().st_size > 0
    captured = capsys.readouterr()
    assert "Research use only" in captured.out
    # existing outputs are not overwritten without --force
    assert main(["analyze", str(tmp_path / "in"), "--output", str(out), "--device", "cpu"]) == 2
    assert main(["analyze", str(tmp_path / "in"), "--output", str(out), "--device", "cpu", "--force"]) == 0


def test_analyze_several_series_goes_to_one_folder_each(resources, tmp_path):
    from medviewer.dicom.synthetic import write_series

    uids = ["1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"]
    for n, uid in enumerate(uids):
        write_series(tmp_path / "in" / f"s{n}", n_slices=5, rows=40, columns=40, series_uid=uid, seed=n,
                     series_number=n + 1, study_uid="1.2.826.0.1.3680043.8.498.10")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in"), "--output", str(out), "--device", "cpu"]) == 0
    for uid in uids:
        assert _validate(out / uid / "findings.json")["series_uid"] == uid
    # --series picks one, written straight into OUT
    out2 = tmp_path / "out2"
    assert main(["analyze", str(tmp_path / "in"), "--output", str(out2), "--series", uids[1], "--device", "cpu"]) == 0
    assert _validate(out2 / "findings.json")["series_uid"] == uids[1]


def test_analyze_refuses_non_ct_and_missing_weights(tmp_path, monkeypatch, capsys):
    from medviewer.dicom.synthetic import write_series

    write_series(tmp_path / "mr", n_slices=3, rows=32, columns=32, modality="MR")
    assert main(["analyze", str(tmp_path / "mr"), "--output", str(tmp_path / "o1")]) == 2
    assert "no CT series" in capsys.readouterr().err
    write_series(tmp_path / "ct", n_slices=3, rows=32, columns=32)
    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(tmp_path / "empty"))
    assert main(["analyze", str(tmp_path / "ct"), "--output", str(tmp_path / "o2"), "--device", "cpu"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "findings.json").exists()


def test_cli_records_its_command_line_for_model_cards(monkeypatch):
    """Every command gets ``args.command_line`` (quoted like a shell would), which training writes into its card."""
    import argparse

    from medviewer import cli

    seen: dict[str, str] = {}

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="medviewer")
        sub = p.add_subparsers()
        train = sub.add_parser("train")
        train.add_argument("name")
        train.set_defaults(func=lambda a: seen.update(command=a.command_line) or 0)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli.main(["train", "a run"]) == 0
    assert seen["command"] == "medviewer train 'a run'"
