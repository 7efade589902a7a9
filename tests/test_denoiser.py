"""GAN denoiser: model, losses, training loop, checkpoints, weights and inference."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medviewer.ai import denoise as dn
from medviewer.ai.denoiser import (
    DenoiserConfig,
    DenoiserNet,
    LossWeights,
    PatchDiscriminator,
    count_macs,
    generator_loss,
)
from medviewer.ai.weights import save_weights, sha256_of
from medviewer.errors import CancelledError, ModelError
from medviewer.resources import models_dir
from medviewer.training import train_denoiser as td
from medviewer.training.train_denoiser import TrainConfig
from medviewer.volume import Volume, VolumeMetadata

SMALL = DenoiserConfig(c0=8, c1=8, c2=16, n_bottom=1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny convolutions run fastest on one thread (2 threads on a busy 2-core CI were 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_pairs(n: int = 6, size: int = 64, noise: float = 60.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth blobs (full dose) and a correlated-noise copy (low dose): a test stand-in only."""
    rng = np.random.default_rng(seed)
    full = np.stack([gaussian_filter(rng.normal(0, 1, (size, size)), 3) * 2000 for _ in range(n)]).astype(np.float32)
    low = full + gaussian_filter(rng.normal(0, noise * 2.0, full.shape), (0, 0.8, 0.8)).astype(np.float32)
    return full, low.astype(np.float32)


def small_cfg(steps: int, **kw: object) -> TrainConfig:
    cfg = TrainConfig(steps=steps, batch_size=4, patch=32, lr=2e-3, warmup=1, ckpt_every=1000, val_every=5)
    cfg.arch = SMALL
    cfg.loss = LossWeights(gan_start=0.5)
    cfg.n_head_phantoms = 0
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def make_weights(folder: Path, seed: int = 0, config: DenoiserConfig = SMALL) -> DenoiserNet:
    """A non-trivial (random) generator saved as denoiser.safetensors + card in ``folder``."""
    torch.manual_seed(seed)
    net = DenoiserNet(config)
    torch.nn.init.normal_(net.dec0[-1].weight, std=0.1)
    card = {"version": "0.0-test", "architecture": {"config": config.to_json()}}
    save_weights("denoiser", net.state_dict(), card, folder)
    dn.clear_cache()
    return net


def test_generator_shape_identity_start_and_budget():
    net = DenoiserNet()
    x = torch.randn(2, 1, 64, 96) * 100
    with torch.no_grad():
        assert net(x).shape == x.shape
    macs = count_macs(net, 512, 512)
    assert 0.5e9 < macs <= 15e9  # issue: <= 15 GMAC per 512^2 slice
    d = PatchDiscriminator()
    assert d(torch.zeros(2, 1, 96, 96)).shape == (2, 1, 12, 12)


def test_generator_loss_parts():
    t = torch.zeros(1, 1, 16, 16)
    p = t + 10.0
    loss, parts = generator_loss(p, t, LossWeights())
    assert parts["pixel"] == pytest.approx(0.01)
    assert parts["gradient"] == 0.0
    loss2, parts2 = generator_loss(p, t, LossWeights(), torch.zeros(1, 1, 2, 2))
    assert parts2["adversarial"] == pytest.approx(1.0)
    assert float(loss2) > float(loss)


def test_ssim_loss_is_the_evaluation_ssim_and_differentiable():
    from medviewer.ai.denoiser import ssim_hu_torch, ssim_loss
    from medviewer.training.metrics import ssim_hu

    rng = np.random.default_rng(4)
    ref = np.cumsum(rng.normal(0, 40, (48, 40)), axis=1).astype(np.float32) - 300.0  # structure, some of it past the clip
    ref[:, :6] = -1200.0
    test = ref + rng.normal(0, 25, ref.shape).astype(np.float32)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    assert float(ssim_hu_torch(t(test), t(ref))) == pytest.approx(ssim_hu(ref, test), abs=1e-5)
    assert float(ssim_loss(t(ref), t(ref))) == pytest.approx(0.0, abs=1e-6)
    pred = t(test).clone().requires_grad_(True)
    ssim_loss(pred, t(ref)).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    _, parts = generator_loss(t(test), t(ref), LossWeights())
    assert "ssim" not in parts  # off by default: earlier recipes replay
    loss, parts = generator_loss(t(test), t(ref), LossWeights(ssim=0.5))
    assert parts["ssim"] == pytest.approx(1.0 - ssim_hu(ref, test), abs=1e-5)
    assert float(loss) == pytest.approx(parts["pixel"] + 0.5 * parts["gradient"] + 0.5 * parts["ssim"], rel=1e-5)


def test_rmse_pixel_loss_weighs_large_errors_more():
    t = torch.zeros(1, 1, 10, 10)
    p = t.clone()
    p[0, 0, 0, 0] = 100.0  # one large error (an edge) among exact pixels: 1 HU mean absolute, 10 HU RMS
    _, l1 = generator_loss(p, t, LossWeights())
    _, rmse = generator_loss(p, t, LossWeights(pixel_norm="rmse"))
    assert l1["pixel"] == pytest.approx(0.001) and rmse["pixel"] == pytest.approx(0.01)
    uniform = t + 10.0  # equal errors everywhere: both norms agree, in the same HU/1000 units
    assert generator_loss(uniform, t, LossWeights(pixel_norm="rmse"))[1]["pixel"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown pixel loss"):
        LossWeights(pixel_norm="l2")


def test_few_training_steps_reduce_loss(tmp_path):
    full, low = synthetic_pairs()
    ft, lt = torch.from_numpy(full[:, None, :32, :32]), torch.from_numpy(low[:, None, :32, :32])
    before = float(torch.nn.functional.l1_loss(lt, ft))
    res = td.train(full, low, small_cfg(150), tmp_path / "run", val=(full[:2, :32, :32], low[:2, :32, :32]))
    with torch.no_grad():
        after = float(torch.nn.functional.l1_loss(res.generator(lt), ft))
    assert after < 0.85 * before
    assert res.history["adv_step"], "the adversarial phase ran"
    assert res.history["val_psnr"][-1] > res.history["val_psnr_noisy"][-1]
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 1000
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()


def test_resume_continues_identically(tmp_path):
    full, low = synthetic_pairs(n=3)
    straight = td.train(full, low, small_cfg(8), tmp_path / "a")
    calls = {"n": 0}

    def cancel_after_5() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(CancelledError):  # interrupted in the adversarial phase, checkpoint at step 5
        td.train(full, low, small_cfg(8), tmp_path / "b", cancel=cancel_after_5)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == 5
    resumed = td.train(full, low, small_cfg(8), tmp_path / "b", resume=True)
    assert resumed.step == 8 and resumed.history["step"] == list(range(1, 9))
    assert resumed.history["total"] == pytest.approx(straight.history["total"], rel=1e-4)
    for a, b in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_resume_without_checkpoint_is_model_error(tmp_path):
    full, low = synthetic_pairs(n=2)
    with pytest.raises(ModelError, match="no checkpoint"):
        td.train(full, low, small_cfg(2), tmp_path / "none", resume=True)


def test_cancel_training_writes_checkpoint(tmp_path):
    full, low = synthetic_pairs(n=2)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(CancelledError):
        td.train(full, low, small_cfg(50), tmp_path / "c", cancel=cancel)
    assert json.loads((tmp_path / "c" / "checkpoint.json").read_text())["step"] == 3


def test_weights_round_trip_through_safetensors(tmp_path):
    net = make_weights(tmp_path)
    model, card = dn.load_denoiser("cpu", tmp_path)
    assert card["sha256"] == sha256_of(tmp_path / "denoiser.safetensors")
    x = torch.randn(1, 1, 40, 48) * 200
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-3)
    assert dn.load_denoiser("cpu", tmp_path)[0] is model  # cached
    assert dn.denoiser_info(tmp_path).version == "0.0-test"


def test_missing_weights_give_model_error(tmp_path):
    dn.clear_cache()
    with pytest.raises(ModelError, match="not found"):
        dn.load_denoiser("cpu", tmp_path)


def test_corrupt_weights_give_model_error(tmp_path):
    make_weights(tmp_path)
    w = tmp_path / "denoiser.safetensors"
    data = bytearray(w.read_bytes())
    data[100:140] = b"\x00" * 40
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        dn.load_denoiser("cpu", tmp_path)
    # a truncated file whose hash was (wrongly) updated still fails cleanly
    w.write_bytes(bytes(data[:50]))
    card = json.loads((tmp_path / "denoiser.json").read_text())
    card["sha256"] = sha256_of(w)
    (tmp_path / "denoiser.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="corrupt"):
        dn.load_denoiser("cpu", tmp_path)


def test_weights_of_another_architecture_give_model_error(tmp_path):
    make_weights(tmp_path)
    card = json.loads((tmp_path / "denoiser.json").read_text())
    card["architecture"]["config"]["c0"] = 12
    (tmp_path / "denoiser.json").write_text(json.dumps(card))
    dn.clear_cache()
    with pytest.raises(ModelError, match="do not fit"):
        dn.load_denoiser("cpu", tmp_path)


def test_tiled_equals_untiled_and_padding_kept(tmp_path):
    make_weights(tmp_path, config=DenoiserConfig())
    rng = np.random.default_rng(1)
    img = (gaussian_filter(rng.normal(0, 1, (300, 203)), 2) * 800 + rng.normal(0, 40, (300, 203))).astype(np.float32)
    img[:, :5] = -3024.0  # outside the scan field
    whole = dn.denoise_slices(img, device="cpu", folder=tmp_path)
    tiled = dn.denoise_slices(img, device="cpu", folder=tmp_path, tile=256)
    assert whole.shape == img.shape and whole.dtype == np.float32
    assert np.abs(whole - img).max() > 1.0  # the model does something
    np.testing.assert_allclose(tiled, whole, atol=0.05)
    assert np.array_equal(whole[:, :5], img[:, :5])


def test_denoise_volume_metadata_and_cancel(tmp_path):
    make_weights(tmp_path)
    vox = np.random.default_rng(2).normal(0, 30, (3, 40, 40)).astype(np.float32)
    src = Volume(vox.copy(), (2.0, 0.7, 0.7), metadata=VolumeMetadata(modality="CT", series_description="Chest"))
    seen: list[float] = []
    out = dn.denoise_volume(src, device="cpu", folder=tmp_path, progress=lambda f, m: seen.append(f))
    assert np.array_equal(src.voxels, vox) and src.metadata.derived_from == ""
    assert out.metadata.derived_from == "AI denoised"
    assert out.metadata.series_description == "Chest [AI denoised]"
    assert out.metadata.extra["denoiser"]["version"] == "0.0-test"
    assert out.spacing == src.spacing and out.shape == src.shape
    assert seen and seen[-1] == pytest.approx(1.0)
    with pytest.raises(CancelledError):
        dn.denoise_volume(src, device="cpu", folder=tmp_path, cancel=lambda: True)
    mr = Volume(vox, metadata=VolumeMetadata(modality="MR"))
    with pytest.raises(ModelError, match="CT"):
        dn.denoise_volume(mr, folder=tmp_path)


def test_train_main_installs_weights_and_card(tmp_path, monkeypatch):
    full, low = synthetic_pairs(n=4)

    def fake_pairs(cache, cfg, workers=1, progress=None, cancel=None):
        return full[:3], low[:3], full[3:, :32, :32], low[3:, :32, :32], {"pairs": 4, "pixel_mm": 0.7}

    monkeypatch.setattr(td, "load_training_pairs", fake_pairs)
    res = tmp_path / "resources"
    (res / "models").mkdir(parents=True)
    monkeypatch.setenv("MEDVIEWER_RESOURCES", str(res))
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    (run / "evaluation" / "results.json").write_text(json.dumps({"summary": {"real_dose0.25": {"ai": {"psnr": 40.0}}}}))
    monkeypatch.setattr(td, "TrainConfig", lambda seed=0: small_cfg(4, seed=seed))
    args = argparse.Namespace(
        steps=4, out=run, resume=False, seed=3, device="cpu", batch_size=None, threads=None, data=tmp_path / "d", install=True,
        version="1.2.0-test", note="a test run", phantoms=3, head_phantoms=0, slices_per_phantom=2, minutes=None,
        command_line="medviewer train denoiser --steps 4 --install", lr=5e-4,
    )
    assert td.main(args) == 0
    card = json.loads((res / "models" / "denoiser.json").read_text())
    assert json.loads((run / "checkpoint.json").read_text())["config"]["lr"] == 5e-4  # --lr
    assert card["version"] == "1.2.0-test" and card["training"]["note"] == "a test run"
    assert card["training"]["command"] == "medviewer train denoiser --steps 4 --install"  # provenance
    config = json.loads((run / "checkpoint.json").read_text())["config"]
    assert (config["n_phantoms"], config["n_head_phantoms"], config["slices_per_phantom"]) == (3, 0, 2)
    assert card["intended_use"] == "Research use only, not for diagnosis."
    assert card["training"]["steps"] == 4 and card["metrics"]["real_dose0.25"]["ai"]["psnr"] == 40.0
    assert card["macs_per_512x512_slice"] > 0 and card["parameters"] > 0
    assert card["sha256"] == sha256_of(res / "models" / "denoiser.safetensors")
    dn.clear_cache()
    model, _ = dn.load_denoiser("cpu", res / "models")
    assert model.config == SMALL


def test_train_main_resume_keeps_the_runs_recipe(tmp_path, monkeypatch):
    full, low = synthetic_pairs(n=4)

    def fake_pairs(cache, cfg, workers=1, progress=None, cancel=None):
        return full[:3], low[:3], full[3:, :32, :32], low[3:, :32, :32], {"pairs": 4, "pixel_mm": 0.7}

    def small(seed: int = 0) -> TrainConfig:
        return small_cfg(2, seed=seed)

    small.from_json = TrainConfig.from_json  # type: ignore[attr-defined]
    monkeypatch.setattr(td, "load_training_pairs", fake_pairs)
    monkeypatch.setattr(td, "TrainConfig", small)
    run = tmp_path / "run"
    common = dict(out=run, device="cpu", batch_size=None, threads=None, data=tmp_path / "d", install=False, note=None,
                  phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None)
    assert td.main(argparse.Namespace(steps=2, resume=False, seed=3, air_patches=0.25, target="full", version="9.1-test",
                                      psf_mm=[0.1, 0.4], cut=0.3, pixel_loss="rmse", gradient_weight=0.1, ssim_weight=0.5,
                                      patch=40, **common)) == 0
    # resumed with a larger step cap only: seed, air share, target and version stay the run's
    assert td.main(argparse.Namespace(steps=3, resume=True, seed=0, **common)) == 0
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["step"] == 3
    config = meta["config"]
    assert (config["seed"], config["air_patches"], config["target"], config["version"]) == (3, 0.25, "full", "9.1-test")
    assert config["psf_mm"] == [0.1, 0.4] and config["cut"] == 0.3 and config["loss"]["pixel_norm"] == "rmse"
    assert config["loss"]["gradient"] == 0.1 and config["patch"] == 40
    assert TrainConfig.from_json(config).to_json() == config  # the recipe round-trips
    card = json.loads((run / "model" / "denoiser.json").read_text())
    assert "taken wherever they fall" in card["training"]["patch_sampling"] and card["training"]["steps"] == 3
    assert card["loss"]["why"].startswith("RMSE pixel loss") and card["loss"]["weights"]["pixel_norm"] == "rmse"
    assert card["loss"]["weights"]["gradient"] == 0.1 and "(weight 0.1)" in card["loss"]["why"]
    assert card["training"]["patch_px"] == 40
    assert config["loss"]["ssim"] == 0.5 and "1 - SSIM computed as the evaluation scores it (weight 0.5)" in card["loss"]["why"]
    with pytest.raises(ModelError, match="--patch 36"):  # not a multiple of 8: refused before anything is trained
        td.main(argparse.Namespace(steps=2, resume=False, seed=0, patch=36, **dict(common, out=tmp_path / "bad")))
    assert not (tmp_path / "bad").exists()


SHIPPED = models_dir() / "denoiser.safetensors"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped weights resources/models/denoiser.safetensors not trained yet")
def test_shipped_weights_keep_mean_and_lower_noise():
    from medviewer.training.lowdose import QUARTER_DOSE, simulate_low_dose

    dn.clear_cache()
    size = 256
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - size / 2) ** 2 + (xx - size / 2) ** 2
    img = np.where(r2 < 110**2, 40.0, -1000.0).astype(np.float32)  # uniform soft-tissue cylinder
    low = simulate_low_dose(img, QUARTER_DOSE, pixel_mm=0.7, seed=5)
    out = dn.denoise_slices(low[None], device="cpu")[0]
    roi = r2 < 70**2
    assert abs(float(out[roi].mean()) - float(low[roi].mean())) <= 3.0
    assert abs(float(out[roi].mean()) - 40.0) <= 3.0
    assert float(out[roi].std()) < 0.6 * float(low[roi].std())


def test_training_pairs_cover_every_pixel_size_with_held_out_phantoms(tmp_path):
    cfg = small_cfg(1, n_phantoms=2, slices_per_phantom=2, pixel_sizes=(5.6, 8.0), slice_size=64,
                    head_pixel_sizes=(4.0,), n_head_phantoms=2)
    full, low, vf, vl, info = td.load_training_pairs(tmp_path, cfg)
    # per pixel size (two body, one head): phantom 1 trains (2 slices), phantom 2 validates (2 slices)
    assert full.shape == low.shape == (6, 64, 64) and vf.shape == vl.shape == (6, 64, 64)
    assert info["pixel_mm"] == [5.6, 8.0, 4.0] and info["pairs"] == 6 and info["validation_pairs"] == 6
    assert info["regions"] == ["chest/abdomen", "head"]
    assert len(list(tmp_path.iterdir())) == 3  # one cached dataset folder per pixel size and region
    head = json.loads(next(d for d in tmp_path.iterdir() if "region" in (d / "dataset.json").read_text()).joinpath("dataset.json").read_text())
    assert head["params"]["region"] == "head" and head["params"]["pixel_mm"] == 4.0
    assert not any(np.array_equal(v, f) for v in vf for f in full)  # validation slices are not trained on
    again = td.load_training_pairs(tmp_path, cfg)  # second call reads the cache
    assert np.array_equal(again[0], full) and np.array_equal(again[3], vl)


def test_training_targets_clean_phantom_or_simulated_full_dose(tmp_path):

    cfg = small_cfg(1, n_phantoms=2, slices_per_phantom=2, pixel_sizes=(5.6,), slice_size=64)
    clean, low, vc, _, info = td.load_training_pairs(tmp_path, cfg)
    full, low2, vf, _, info_full = td.load_training_pairs(tmp_path, replace(cfg, target="full"))
    assert np.array_equal(low, low2)  # same inputs, different targets
    assert "noise-free" in info["targets"] and "full-dose" in info_full["targets"]
    body = clean > -300
    # the clean target carries no noise; the full-dose target carries part of the low-dose noise
    assert float(np.abs(clean - full)[body].mean()) > 1.0
    assert float(np.abs(low - clean)[body].std()) > float(np.abs(low - full)[body].std())
    assert not np.array_equal(vc, vf)
    with pytest.raises(ModelError, match="unknown denoiser target"):
        td.load_training_pairs(tmp_path, replace(cfg, target="nonsense"))


def test_init_starts_training_from_shipped_style_weights(tmp_path):
    start = make_weights(tmp_path / "models", seed=4)
    full, low = synthetic_pairs(n=3)
    cfg = small_cfg(1, lr=1e-12, lr_min=1e-12, init=str(tmp_path / "models"))
    res = td.train(full, low, cfg, tmp_path / "run")
    for k, v in start.state_dict().items():
        assert torch.allclose(res.generator.state_dict()[k], v, atol=1e-6), k
    bad = tmp_path / "bad"
    make_weights(bad, config=DenoiserConfig(c0=8, c1=16, c2=16, n_bottom=1))
    with pytest.raises(ModelError, match="do not fit"):
        td.train(full, low, small_cfg(1, init=str(bad)), tmp_path / "run2")


def test_distillation_targets_the_teachers_output_and_is_recorded(tmp_path):
    """--teacher/--distill: at share 1 a student that starts as the teacher has nothing to learn at its first step;
    at share 0.5 it learns from both; the card names the teacher; bad shares are clear errors."""
    make_weights(tmp_path / "teacher", seed=4)
    full, low = synthetic_pairs(n=3)
    same = small_cfg(1, lr=1e-12, lr_min=1e-12, init=str(tmp_path / "teacher"), teacher=str(tmp_path / "teacher"), distill=1.0)
    first = td.train(full, low, same, tmp_path / "same").history
    plain = td.train(full, low, small_cfg(1, lr=1e-12, lr_min=1e-12, init=str(tmp_path / "teacher")), tmp_path / "plain").history
    assert first["pixel"][0] < 1e-4 < plain["pixel"][0] and first["gradient"][0] < 1e-4  # target = teacher's output
    half = small_cfg(1, lr=1e-12, lr_min=1e-12, init=str(tmp_path / "teacher"), teacher=str(tmp_path / "teacher"), distill=0.5)
    mid = td.train(full, low, half, tmp_path / "half").history
    assert mid["pixel"][0] == pytest.approx(0.5 * plain["pixel"][0], rel=1e-3)  # halfway to the clean slice
    card = td.build_card(DenoiserNet(SMALL), half, 1, mid, {})
    assert card["training"]["teacher"]["version"] == "0.0-test" and card["training"]["teacher"]["target_share"] == 0.5
    assert "teacher" in card["loss"]["why"] and td.build_card(DenoiserNet(SMALL), small_cfg(1), 1, mid, {})["training"]["teacher"] is None
    with pytest.raises(ModelError, match="--distill 1.5"):
        td.train(full, low, small_cfg(1, teacher=str(tmp_path / "teacher"), distill=1.5), tmp_path / "bad")
    args = argparse.Namespace(
        steps=1, out=tmp_path / "run", resume=False, seed=0, device="cpu", batch_size=None, threads=None, data=tmp_path / "d",
        install=False, version=None, note=None, phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None,
        distill=0.3,
    )
    with pytest.raises(ModelError, match="--distill needs --teacher"):
        td.main(args)


def test_refinement_blocks_grow_a_trained_generator_without_changing_its_output(tmp_path):
    start = make_weights(tmp_path / "models", seed=5)
    grown_cfg = replace(SMALL, n_refine=2, refine_width=8)
    assert DenoiserConfig.from_json(grown_cfg.to_json()) == grown_cfg
    assert DenoiserConfig.from_json(SMALL.to_json() | {"n_refine": 0}) == SMALL  # older cards: no refinement
    full, low = synthetic_pairs(n=3)
    cfg = replace(small_cfg(1, lr=1e-12, lr_min=1e-12, init=str(tmp_path / "models")), arch=grown_cfg)
    res = td.train(full, low, cfg, tmp_path / "run")
    x = torch.from_numpy(low[:1, None, :32, :32].copy())
    with torch.no_grad():
        assert torch.allclose(res.generator.cpu()(x), start(x), atol=1e-3)  # new blocks start as the identity
    assert len(res.generator.refine) == 2
    assert count_macs(res.generator, 512, 512) > count_macs(start, 512, 512)
    with torch.no_grad():  # once trained they change the output
        res.generator.refine[0].body[-1].weight.normal_(std=0.1)
        assert not torch.allclose(res.generator.cpu()(x), start(x), atol=1e-3)


def test_patch_sampler_noise_scaling_keeps_the_target_and_scales_the_extra_noise():
    full = np.full((2, 64, 64), 40.0, np.float32)
    low = full + 10.0  # a known "extra noise" of +10 HU everywhere
    sampler = td.PatchSampler(full, low, 32, np.random.default_rng(1), noise_scale=(1.5, 1.5), hu_offset=(-24.0, -24.0))
    f, lo = sampler.sample(200)
    extra = (lo - f).flatten(1).mean(dim=1).numpy()
    target = f.flatten(1).mean(dim=1).numpy()
    # about half the patches carry 1.5x the extra noise; 30 % are shifted by -24 HU, target and input alike
    assert np.all(np.isclose(extra, 15.0, atol=1e-3) | np.isclose(extra, 10.0, atol=1e-3))
    assert 60 < int(np.isclose(extra, 15.0, atol=1e-3).sum()) < 140
    assert np.all(np.isclose(target, 16.0, atol=1e-3) | np.isclose(target, 40.0, atol=1e-3))
    assert 30 < int(np.isclose(target, 16.0, atol=1e-3).sum()) < 90
    plain = td.PatchSampler(full, low, 32, np.random.default_rng(1))
    f0, l0 = plain.sample(20)
    assert torch.all(l0 - f0 == 10.0) and torch.all(f0 == 40.0)


def test_patch_sampler_air_share_lets_air_patches_through():
    # a slice that is air except for one body column: patches are mostly air almost everywhere
    full = np.full((1, 256, 256), -1000.0, np.float32)
    full[:, :, 200:] = 40.0
    low = full.copy()

    def air_fraction(share: float) -> float:
        f, _ = td.PatchSampler(full, low, 32, np.random.default_rng(3), air_share=share).sample(300)
        return float((f.flatten(1).mean(dim=1) < -800).float().mean())

    assert air_fraction(0.0) < 0.4  # mostly-air patches are redrawn
    assert air_fraction(1.0) > 0.6  # taken where they fall: about the slice's air share
    assert air_fraction(0.0) < air_fraction(0.3) < air_fraction(1.0)
    with pytest.raises(ValueError, match="air_share"):
        td.PatchSampler(full, low, 32, np.random.default_rng(3), air_share=1.5)


def test_refine_option_cannot_shrink_the_init_generator(tmp_path):
    grown = replace(SMALL, n_refine=2, refine_width=8)
    make_weights(tmp_path / "models", config=grown)
    args = argparse.Namespace(
        steps=1, out=tmp_path / "run", resume=False, seed=0, device="cpu", batch_size=None, threads=None, data=tmp_path / "d",
        install=False, version=None, note=None, phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None,
        init=tmp_path / "models", refine=1,
    )
    with pytest.raises(ModelError, match="--refine 1"):
        td.main(args)


def test_cut_option_is_checked(tmp_path):
    args = argparse.Namespace(
        steps=1, out=tmp_path / "run", resume=False, seed=0, device="cpu", batch_size=None, threads=None, data=tmp_path / "d",
        install=False, version=None, note=None, phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None,
        cut=1.5,
    )
    with pytest.raises(ModelError, match="--cut 1.5"):
        td.main(args)


def test_lr_option_is_checked(tmp_path):
    args = argparse.Namespace(
        steps=1, out=tmp_path / "run", resume=False, seed=0, device="cpu", batch_size=None, threads=None, data=tmp_path / "d",
        install=False, version=None, note=None, phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None,
        lr=0.5,
    )
    with pytest.raises(ModelError, match="--lr 0.5"):
        td.main(args)


def test_psf_option_is_checked(tmp_path):
    args = argparse.Namespace(
        steps=1, out=tmp_path / "run", resume=False, seed=0, device="cpu", batch_size=None, threads=None, data=tmp_path / "d",
        install=False, version=None, note=None, phantoms=None, head_phantoms=None, slices_per_phantom=None, minutes=None,
        psf_mm=[0.4, 0.1],
    )
    with pytest.raises(ModelError, match="--psf-mm 0.4 0.1"):
        td.main(args)


def test_dead_leaves_pairs_build_and_stay_in_ct_range(tmp_path):
    """Dead-leaves slices (a generic image prior) go through the same low-dose simulator as phantoms."""
    from medviewer.training.dead_leaves import dead_leaves_slice
    from medviewer.training.datasets import build_denoising_pairs

    img = dead_leaves_slice(np.random.default_rng(3), 96, 2.0, psf_mm=0.0)
    inside = img > -900
    assert 0.1 < inside.mean() < 0.7 and img.min() >= -1000.0 and img.max() <= 1400.0
    # many leaves: plenty of distinct values inside the body, with faint soft-tissue edges among them
    vals = np.unique(img[inside])
    assert len(vals) > 30 and ((vals > 10) & (vals < 80)).sum() > 10
    again = dead_leaves_slice(np.random.default_rng(3), 96, 2.0, psf_mm=0.0)
    np.testing.assert_array_equal(img, again)  # seeded
    pairs = build_denoising_pairs(tmp_path, 1, slices_per_phantom=2, size=64, spacing=(2.5, 3.0), workers=1, region="leaves")
    full, low, dose = pairs[0]
    assert full.shape == low.shape == (64, 64) and 0.1 <= dose <= 0.5
    assert np.abs(low - full)[full > -900].mean() > 1.0  # simulated noise on the leaves
    with pytest.raises(ValueError, match="region"):
        build_denoising_pairs(tmp_path, 1, slices_per_phantom=2, size=64, spacing=(2.5, 3.0), workers=1, region="feet")


def test_image_slice_sources_are_no_evaluation_file():
    """The MR and radiograph sources of the image slices are none of either issue's evaluation slices."""
    from medviewer.training.evaluate_denoiser import REAL_CASES
    from medviewer.training.evaluate_detector import REAL_SLICES
    from medviewer.training.image_slices import EVALUATION_FILES, SOURCES

    assert {f for _, f, _ in REAL_CASES} | set(REAL_SLICES) <= EVALUATION_FILES
    names = {name.rsplit("/", 1)[-1] for _, name, _, _ in SOURCES}
    assert not names & EVALUATION_FILES and not any(n.startswith("693_") for n in names)
    assert abs(sum(w for *_, w in SOURCES) - 1.0) < 1e-9


def test_image_slices_map_real_images_to_ct_values_and_build_pairs(tmp_path):
    """Image slices: seeded crops of the sample images, monotone in grey level, CT values, through the simulator."""
    import pydicom

    from medviewer.training.datasets import build_denoising_pairs
    from medviewer.training.image_slices import SOURCES, _source_path, ct_curve, image_slice, load_sources

    grey = np.linspace(0.0, 1.0, 4096, dtype=np.float32).reshape(64, 64)
    hu = ct_curve(np.random.default_rng(1), grey)
    assert np.all(np.diff(hu.ravel()) >= 0)  # monotone: the image's order of grey levels is kept
    assert -1000.0 <= hu.min() <= -900.0 and 600.0 <= hu.max() <= 1400.0
    assert 0.5 < ((hu >= 0) & (hu <= 80)).mean() < 0.95  # most of it soft tissue, as in CT

    sources = load_sources()
    assert len(sources) == len(SOURCES) and all(s.dtype == np.float32 and 0 <= s.min() and s.max() <= 1 for s in sources)
    assert max(max(s.shape) for s in sources) <= 1024
    with pytest.raises(ModelError, match="not found"):  # a missing source is named, not a traceback
        _source_path("deid-data", "animals/no-such-file.dcm")
    modalities = {str(pydicom.dcmread(_source_path(p, n), stop_before_pixels=True).Modality) for p, n, _, _ in SOURCES}
    assert "CT" not in modalities and {"MR", "CR"} <= modalities

    img = image_slice(np.random.default_rng(5), 128, 2.0, psf_mm=0.0)
    again = image_slice(np.random.default_rng(5), 128, 2.0, psf_mm=0.0)
    np.testing.assert_array_equal(img, again)  # seeded
    inside = img > -1000.0
    assert img.shape == (128, 128) and img.dtype == np.float32 and 0.1 < inside.mean() < 0.8
    assert img.min() >= -1000.0 and img.max() <= 1400.0 and img[0, 0] == -1000.0  # air around the body outline
    assert len(np.unique(img[inside])) > 100  # real structure, not a few flat regions
    pairs = build_denoising_pairs(tmp_path, 1, slices_per_phantom=2, size=64, spacing=(2.5, 3.0), workers=1, region="images")
    full, low, dose = pairs[0]
    assert full.shape == low.shape == (64, 64) and 0.1 <= dose <= 0.5
    assert np.abs(low - full)[full > -900].mean() > 1.0  # simulated noise on the image slice


def test_photo_slices_come_from_scikit_images_bundled_pictures_and_build_pairs(tmp_path):
    """--photos slices: scikit-image's bundled pictures (read offline), grey levels in [0, 1], CT values, simulator."""
    from medviewer.training.datasets import build_denoising_pairs
    from medviewer.training.image_slices import PHOTO_SOURCES, image_slice, load_photo_sources

    photos = load_photo_sources()
    assert len(photos) == len(PHOTO_SOURCES) >= 10
    assert all(p.ndim == 2 and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1 and p.std() > 0.05 for p in photos)
    assert max(max(p.shape) for p in photos) <= 1024  # the 1411-px fundus photograph is reduced once
    img = image_slice(np.random.default_rng(3), 96, 2.0, psf_mm=0.0, sources=photos)
    np.testing.assert_array_equal(img, image_slice(np.random.default_rng(3), 96, 2.0, psf_mm=0.0, sources=photos))
    assert img.shape == (96, 96) and img.min() >= -1000.0 and img.max() <= 1400.0 and img[0, 0] == -1000.0
    pairs = build_denoising_pairs(tmp_path, 1, slices_per_phantom=2, size=64, spacing=(2.5, 3.0), workers=1, region="photos")
    full, low, dose = pairs[0]
    assert full.shape == low.shape == (64, 64) and 0.1 <= dose <= 0.5
    assert len(np.unique(full[full > -900])) > 20 and np.abs(low - full)[full > -900].mean() > 1.0
    images = build_denoising_pairs(tmp_path, 1, slices_per_phantom=2, size=64, spacing=(2.5, 3.0), workers=1, region="images")
    assert pairs.root != images.root and not np.array_equal(full, images[0][0])  # their own cache folder and slices
