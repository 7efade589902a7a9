"""``medviewer evaluate detector``: the quick evaluation end to end, and its per-source breakdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medviewer.training import evaluate_detector as ev
from medviewer.training import froc as frocm


def test_source_of_names_the_real_slice():
    assert ev.source_of("real-explicit_VR-UN.dcm-2-1000000-24") == "explicit_VR-UN"
    assert ev.source_of("real-693_UNCR.dcm-0-1000000-24") == "693_UNCR"
    assert ev.source_of("phantom-1000003") == "phantom"


def test_froc_by_source_scores_each_slice_on_its_own_volumes():
    from medviewer.volume import Volume

    vol = Volume(np.zeros((4, 8, 8), np.float32), spacing=(1.0, 1.0, 1.0))
    centre = np.array([[2.0, 2.0, 2.0]])

    def case(name: str, with_lesion: bool) -> ev.EvalCase:
        c = centre if with_lesion else np.zeros((0, 3))
        return ev.EvalCase(name, vol, c, np.full(len(c), 4.0), ["liver_hypo"] * len(c))

    cases = [case("real-A.dcm-0-1-24", True), case("real-A.dcm-1-1-24", False), case("real-B.dcm-0-1-24", True)]
    hit = frocm.ScanDetections(centre.copy(), np.array([0.9]))
    miss = frocm.ScanDetections(np.array([[50.0, 50.0, 50.0]]), np.array([0.3]))
    out = ev.froc_by_source(cases, [hit, miss, miss])
    assert out["A"]["n_volumes"] == 2 and out["A"]["n_lesions"] == 1 and out["A"]["cpm"] == 1.0
    assert out["B"]["cpm"] == 0.0


@pytest.mark.timeout(600)
def test_quick_evaluation_writes_tables_plots_per_source_rows_and_the_lesion_audit(tmp_path):
    res = ev.evaluate(tmp_path, quick=True, device="cpu")
    assert {"held-out phantoms", "real-background"} <= set(res["sets"])
    for s in res["sets"].values():
        assert 0.0 <= s["detector"]["cpm"] <= 1.0 and 0.0 <= s["baseline_log"]["cpm"] <= 1.0
        assert set(s["detector"]["sensitivity_at_fp"]) == {str(r) for r in frocm.FP_RATES}
        lo, hi = s["ece_95ci_bootstrap"]
        assert 0.0 <= lo <= hi <= 1.0
    real = res["sets"]["real-background"]
    assert set(real["by_source_slice"]) == {"CT_small"}
    assert real["by_source_slice"]["CT_small"]["n_lesions"] == real["n_lesions"]
    assert (tmp_path / "froc.png").stat().st_size > 0 and (tmp_path / "reliability.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["model"]["version"]
    assert len(real["lesions"]) == real["n_lesions"]  # the per-lesion audit covers every lesion
    assert all(r["source"] == "CT_small" and r["diameter_mm"] > 0 for r in real["lesions"])
    assert sum(b["n"] for b in real["lesion_audit"]["by_diameter_mm"]) == real["n_lesions"]
    md = (tmp_path / "results.md").read_text()
    assert "by source slice" in md and "by size, conspicuity and surroundings" in md and "against bone or air" in md
    assert "95% bootstrap CI" in md.split("## Calibration and case level")[1].split("ECE")[1][:40]
    # the headline figures go into a copy of the model card
    import shutil

    from medviewer.resources import models_dir

    models = tmp_path / "models"
    models.mkdir()
    for f in ("detector.safetensors", "detector.json"):
        shutil.copy(models_dir() / f, models / f)
    ev.record_metrics_in_card(res, models, note="quick test")
    card = json.loads((models / "detector.json").read_text())["metrics"]["evaluation"]
    assert card["real-background"]["cpm"] == real["detector"]["cpm"] and card["note"] == "quick test"
    assert card["real-background"]["sensitivity_by_diameter_mm"] == real["lesion_audit"]["by_diameter_mm"]
    assert card["held-out phantoms"]["cpm_95ci_bootstrap"] == res["sets"]["held-out phantoms"]["detector"]["cpm_95ci_bootstrap"]
    assert card["real-background"]["ece_95ci_bootstrap"] == real["ece_95ci_bootstrap"]


def test_noise_robustness_adds_ct_noise_and_white_noise_of_the_same_sd(tmp_path):
    """The robustness section: CT noise from the simulator (cached), white noise of its SD in the body."""
    from medviewer.training.detector_robustness import noise_robustness, noisy_cases, robustness_markdown

    cases = ev.phantom_cases(2, ev.EVAL_SEED0, (4, 64, 64), (2.5, 5.0, 5.0))
    sets = noisy_cases(cases, cache=tmp_path)
    (ct, sd), (white, sd_w) = sets["CT noise"], sets["white noise"]
    assert sd == sd_w and 2.0 < sd < 200.0 and len(list(tmp_path.glob("*ctnoise*.npz"))) == 2
    for c, n, w in zip(cases, ct, white):
        body = np.asarray(c.volume.voxels) > -500
        assert np.asarray(c.volume.voxels).max() > -500  # the source cases are left as they were
        d_ct = np.asarray(n.volume.voxels) - np.asarray(c.volume.voxels)
        d_w = np.asarray(w.volume.voxels) - np.asarray(c.volume.voxels)
        assert d_ct[body].std() > 1.0 and abs(d_w[body].std() / d_ct[body].std() - 1.0) < 0.5
        np.testing.assert_array_equal(n.centers_mm, c.centers_mm)
    again = noisy_cases(cases, cache=tmp_path)["CT noise"][0]  # read back from the cache
    np.testing.assert_array_equal(np.asarray(again[0].volume.voxels), np.asarray(ct[0].volume.voxels))

    def fake_detector(cs, device, progress, folder):
        return {"dets": [frocm.ScanDetections(c.centers_mm, np.ones(len(c.centers_mm))) for c in cs]}

    res = noise_robustness(cases, fake_detector, "cpu", None, 0.9, cache=tmp_path)
    assert [r["noise"] for r in res["rows"]] == ["CT noise", "white noise"] and res["noise_free_cpm"] == 0.9
    assert "| CT noise |" in "\n".join(robustness_markdown(res))


def test_selection_scores_a_detector_folder_on_its_own_seeds_and_leaves_the_test_volumes_alone(tmp_path, monkeypatch):
    import argparse

    import medviewer.training.detector_selection as sel

    cases = sel.selection_cases(2, (24, 128, 128), (2.5, 1.4, 1.4), cache=tmp_path / "cache")
    assert [c.name.split("-")[1] for c in cases] == ["2000000", "2000001"]  # apart from the test phantoms' 1,000,000+
    monkeypatch.setattr(sel, "selection_cases", lambda n=20, **kw: cases)
    args = argparse.Namespace(out=tmp_path / "out", device="cpu", weights=None, selection=True, quick=False, seed=0)
    assert ev.main(args) == 0
    res = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert 0.0 <= res["cpm"] <= 1.0 and set(res["sensitivity_at_fp"]) == {"0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0"}
    assert res["n_volumes"] == 2 and res["n_lesions"] == sum(len(c.diameters_mm) for c in cases) > 0
    assert "seeds 2000000..2000019" in res["set"]
    assert not (tmp_path / "out" / "results.md").exists()  # the test volumes were not run
