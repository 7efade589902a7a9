"""detect_lesions and the analysis pipeline: geometry, errors, cancel, outputs (tmp weights, no shipped model)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.ai import detect as det
from medviewer.ai.detector import build_model, model_config
from medviewer.ai.pipeline import AnalysisResult, analyze_volume, write_analysis
from medviewer.ai.results import FINDINGS_SCHEMA
from medviewer.ai.weights import save_weights
from medviewer.errors import CancelledError, ExportError, ModelError
from medviewer.volume import Volume, VolumeMetadata


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = build_model()
    card = {"version": "0.0.0-test", "config": model_config(net), "calibration": {"temperature": 1.0, "bias": 0.0}, "threshold": 0.5}
    folder = tmp_path / "models"
    save_weights("detector", net.state_dict(), card, folder)
    return folder


def _bright_sphere_volume(center_idx=(10, 70, 90), radius_mm=8.0, shape=(24, 160, 192), spacing=(2.0, 0.8, 0.9)) -> Volume:
    zz, yy, xx = np.indices(shape)
    r = np.sqrt(((zz - center_idx[0]) * spacing[0]) ** 2 + ((yy - center_idx[1]) * spacing[1]) ** 2 + ((xx - center_idx[2]) * spacing[2]) ** 2)
    vox = np.full(shape, 40.0, np.float32)
    vox[r <= radius_mm] = 1000.0
    direction = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # rotated, slices going feet-wards
    return Volume(vox, spacing, origin=(-50.0, 30.0, 100.0), direction=direction, metadata=VolumeMetadata(modality="CT", series_uid="1.2.3"))


def _oracle_maps(model, hu, device=None, progress=None, cancel=None, slice_batch=8):
    """Stand-in network: the 'lesion' is whatever is brighter than 500 HU (tests the geometry only)."""
    x = torch.as_tensor(np.asarray(hu, np.float32))
    s, h, w = x.shape
    bright = (x > 500).float()[:, None]
    pooled = torch.nn.functional.avg_pool2d(bright, 2, ceil_mode=True)[:, 0].numpy()
    seg = np.where(pooled > 0.5, 6.0, -6.0).astype(np.float32)
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(pooled > 0.5, sampling=(2.5, 2.8, 2.8))
    heat = (np.where(pooled > 0.5, dist - dist.max(), -20.0) + 4.0).astype(np.float32)
    offset = np.zeros((s, 3) + seg.shape[1:], np.float32)
    return seg, heat, offset


def test_findings_map_back_to_patient_coordinates(model_folder, monkeypatch):
    vol = _bright_sphere_volume()
    monkeypatch.setattr(det, "predict_maps", _oracle_maps)
    res = det.detect_lesions(vol, device="cpu", models_folder=model_folder)
    assert res.findings, "the bright sphere must be found"
    f = res.findings[0]
    true_mm = vol.index_to_patient((10, 70, 90))
    assert np.linalg.norm(np.array(f.center_mm) - true_mm) < 3.0
    assert np.allclose(vol.index_to_patient(f.center_index), f.center_mm)
    assert f.slice_range[0] <= 10 <= f.slice_range[1]
    assert f.mask is not None and f.mask.shape == vol.shape and f.mask[10, 70, 90]
    assert f.diameter_mm == pytest.approx(16.0, rel=0.3)
    assert f.mean_hu is not None and f.mean_hu > 500
    assert res.confidence.shape == vol.shape and res.confidence.dtype == np.float32
    assert res.confidence[10, 70, 90] > 0.9 and res.confidence[2, 10, 10] < 0.1
    assert res.series_uid == "1.2.3" and res.model.name == "medviewer-lesion-detector" and res.model.version == "0.0.0-test"
    assert 0.0 <= res.abnormality_score <= 1.0 and res.abnormality_score == pytest.approx(max(x.confidence for x in res.findings))
    assert [x.id for x in res.findings] == list(range(1, len(res.findings) + 1))
    assert all(a.confidence >= b.confidence for a, b in zip(res.findings, res.findings[1:]))


def test_real_network_runs_and_is_deterministic(model_folder):
    vol = _bright_sphere_volume(shape=(6, 64, 72))
    a = det.detect_lesions(vol, device="cpu", models_folder=model_folder, threads=1)
    b = det.detect_lesions(vol, device="cpu", models_folder=model_folder)
    assert np.allclose(a.confidence, b.confidence, atol=1e-5)  # thread count may change summation order
    assert a.threshold == 0.5 and a.device.startswith("CPU")
    assert torch.get_num_threads() >= 1


def test_missing_and_corrupt_weights_raise_model_error(tmp_path, model_folder):
    vol = _bright_sphere_volume(shape=(4, 32, 32))
    with pytest.raises(ModelError, match="not found"):
        det.detect_lesions(vol, models_folder=tmp_path / "nowhere")
    w = model_folder / "detector.safetensors"
    data = bytearray(w.read_bytes())
    data[-20:] = b"\x00" * 20
    w.write_bytes(bytes(data))
    det._CACHE.clear()
    with pytest.raises(ModelError, match="SHA-256|corrupt"):
        det.detect_lesions(vol, models_folder=model_folder)


def test_non_ct_and_rgb_volumes_are_refused(model_folder):
    mr = Volume(np.zeros((4, 32, 32), np.float32), metadata=VolumeMetadata(modality="MR", units=""))
    with pytest.raises(ModelError, match="CT only"):
        det.detect_lesions(mr, models_folder=model_folder)
    rgb = Volume(np.zeros((2, 32, 32, 3), np.uint8), metadata=VolumeMetadata(modality="CT"))
    with pytest.raises(ModelError, match="RGB"):
        det.detect_lesions(rgb, models_folder=model_folder)


def test_cancel_stops_within_a_second(model_folder):
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 50, (64, 512, 512)).astype(np.float32), spacing=(2.5, 0.7, 0.7), metadata=VolumeMetadata(modality="CT"))
    det.load_detector(model_folder)  # loading is not what we time
    flag = threading.Event()
    asked: list[float] = []

    def cancel() -> bool:
        return flag.is_set()

    def progress(fraction: float, message: str) -> None:
        if fraction > 0.1 and not flag.is_set():
            asked.append(time.perf_counter())
            flag.set()

    with pytest.raises(CancelledError):
        det.detect_lesions(vol, device="cpu", progress=progress, cancel=cancel, models_folder=model_folder)
    assert asked and time.perf_counter() - asked[0] < 1.0


def test_pipeline_writes_valid_findings_json_and_nifti(model_folder, monkeypatch, tmp_path):
    import jsonschema
    import SimpleITK as sitk

    vol = _bright_sphere_volume()
    monkeypatch.setattr(det, "predict_maps", _oracle_maps)
    monkeypatch.setattr(det, "load_detector", lambda folder=None, _f=det.load_detector: _f(model_folder))
    seen: list[float] = []
    result = analyze_volume(vol, device="cpu", progress=lambda f, m: seen.append(f))
    assert isinstance(result, AnalysisResult) and result.denoised is None
    assert seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
    assert set(result.timings) >= {"detect", "total"}
    paths = write_analysis(result, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["confidence.nii.gz", "findings.json", "findings_labels.nii.gz"]
    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    jsonschema.validate(doc, FINDINGS_SCHEMA)
    assert doc["findings"] and doc["model"]["name"] == "medviewer-lesion-detector"
    img = sitk.ReadImage(str(tmp_path / "out" / "confidence.nii.gz"))
    assert img.GetSize() == (vol.shape[2], vol.shape[1], vol.shape[0])
    assert np.allclose(img.GetSpacing(), vol.spacing[::-1])
    assert np.allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    assert np.allclose(np.array(img.GetDirection()).reshape(3, 3), vol.direction, atol=1e-6)
    # the peak of the written map sits at the finding, in patient coordinates
    arr = sitk.GetArrayFromImage(img)
    k, j, i = np.unravel_index(np.argmax(arr), arr.shape)
    peak_mm = img.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
    assert np.linalg.norm(np.array(peak_mm) - np.array(doc["findings"][0]["center_mm"])) < 10.0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "findings_labels.nii.gz")))
    assert labels[10, 70, 90] == 1
    with pytest.raises(ExportError, match="already holds"):
        write_analysis(result, tmp_path / "out")
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_pipeline_with_denoise_detects_on_the_source_images(model_folder, monkeypatch):
    """``denoise=True`` gives the denoised volume for reading; the detector still reads the source images."""
    import jsonschema

    import medviewer.ai.denoise as dn
    from medviewer.ai.results import DENOISER_ROLE, ModelInfo

    vol = _bright_sphere_volume()
    read: list[Volume] = []

    def fake_denoise(volume, device=None, progress=None, cancel=None, **kw):
        from dataclasses import replace

        return replace(volume, voxels=np.full(volume.shape, -1000.0, np.float32))

    real_detect = det.detect_lesions

    def spy(volume, *a, **kw):
        read.append(volume)
        return real_detect(volume, *a, **kw)

    monkeypatch.setattr(dn, "denoise_volume", fake_denoise)
    monkeypatch.setattr(dn, "denoiser_info", lambda folder=None: ModelInfo("medviewer-denoiser", "0.0-test"))
    monkeypatch.setattr(det, "detect_lesions", spy)
    monkeypatch.setattr(det, "predict_maps", _oracle_maps)
    monkeypatch.setattr(det, "load_detector", lambda folder=None, _f=det.load_detector: _f(model_folder))
    result = analyze_volume(vol, denoise=True, device="cpu")
    assert result.denoised is not None and float(np.asarray(result.denoised.voxels).max()) == -1000.0
    assert len(read) == 1 and read[0] is vol  # the source, not the (here blank) denoised volume
    assert result.detection.findings  # found in the source images
    doc = result.detection.findings_json()
    jsonschema.validate(doc, FINDINGS_SCHEMA)
    assert doc["denoiser"] == {"name": "medviewer-denoiser", "version": "0.0-test", "role": DENOISER_ROLE}
