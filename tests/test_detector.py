"""Lesion detector: model, losses, training steps, candidate extraction, checkpoints (no shipped weights needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medviewer.ai.detect import extract_candidates, internal_shape, stack_context
from medviewer.ai.detector import (
    CONTEXT,
    INTERNAL_SPACING,
    LesionNet,
    build_model,
    count_macs,
    count_params,
    describe,
    model_config,
)
from medviewer.errors import ModelError
from medviewer.training import detector_augment as da
from medviewer.training import train_detector as td
from medviewer.training.detector_checkpoint import grown_config, load_checkpoint, parse_window, run_config, save_checkpoint
from medviewer.training.detector_data import (
    N_TRAIN_ABDOMEN,
    N_VAL,
    N_VAL_ABDOMEN,
    Z_HEAD_MM,
    TrainVolume,
    _generate_volume,
    load_volumes,
    volume_groups,
    with_texture,
)
from medviewer.training.detector_sampling import detector_loss, heat_target, sample_batch


def blob_volume(seed: int, n: int = 2, shape=(16, 96, 96)) -> TrainVolume:
    """Tiny synthetic training volume: bright spheres in noisy soft tissue (tests only)."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 10, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    zz, yy, xx = np.indices(shape)
    cs, ds = [], []
    for _ in range(n):
        c = np.array([rng.uniform(4, shape[0] - 4), rng.uniform(20, shape[1] - 20), rng.uniform(20, shape[2] - 20)])
        d = rng.uniform(8, 14)
        r = np.sqrt(((zz - c[0]) * 2.5) ** 2 + ((yy - c[1]) * 1.4) ** 2 + ((xx - c[2]) * 1.4) ** 2)
        m = r <= d / 2
        hu[m] += 150
        lab[m] = 1
        cs.append(c)
        ds.append(d)
    return TrainVolume(hu.astype(np.float16), lab, np.array(cs), np.array(ds), ["blob"] * n, seed)


def test_model_shapes_budget_and_config_roundtrip():
    torch.manual_seed(0)
    net = LesionNet().eval()
    x = torch.randn(1, 6, net.in_channels, 64, 96)
    with torch.inference_mode():
        seg, heat, offset = net(x)
    assert seg.shape == heat.shape == (1, 6, 32, 48)
    assert offset.shape == (1, 6, 3, 32, 48)
    macs = count_macs(net, 256)
    assert 0.2e9 < macs < 1.0e9  # design budget: <= 1 GMAC per internal 256^2 slice
    assert count_params(net) < 1_000_000
    clone = build_model(model_config(net))
    clone.load_state_dict(net.state_dict())


def test_recurrent_module_carries_context_across_slices():
    torch.manual_seed(0)
    net = LesionNet().eval()
    x = torch.zeros(1, 8, net.in_channels, 32, 32)
    x2 = x.clone()
    x2[0, 6] = 3.0  # change only slice 6 (its own five channels)
    with torch.inference_mode():
        a = net(x)[0]
        b = net(x2)[0]
    # slice 0 is 6 slices away, beyond the 2.5D context: only the GRU can carry the change
    assert float((a[0, 0] - b[0, 0]).abs().max()) > 0.0
    net.gru.forward = lambda seq: torch.zeros(*seq.shape[:2], 2 * net.gru.hidden, *seq.shape[-2:])  # type: ignore[method-assign]
    with torch.inference_mode():
        a = net(x)[0]
        b = net(x2)[0]
    assert torch.equal(a[0, 0], b[0, 0])


def test_stack_context_replicates_ends():
    x = torch.arange(4.0)[:, None, None, None].expand(4, 2, 2, 2).clone()
    x[:, 1] += 10  # second window
    s = stack_context(x, 2)
    assert s.shape == (4, 10, 2, 2)
    assert s[0, :, 0, 0].tolist() == [0, 10, 0, 10, 0, 10, 1, 11, 2, 12]
    assert s[3, ::2, 0, 0].tolist() == [1, 2, 3, 3, 3]


def test_heat_target_peaks_at_lesion_centre():
    c = np.array([[4.0, 40.5, 20.5]])
    t, off = heat_target(c, np.array([10.0]), (0, 0, 0), (9, 32, 32))
    k, j, i = np.unravel_index(np.argmax(t), t.shape)
    assert (k, j, i) == (4, 20, 10)
    assert t[k, j, i] == 1.0
    assert t[k, j, i + 3] < 0.2
    # offsets point from each neighbour voxel to the centre (output voxels)
    assert np.allclose(off[4, :, 20, 10], (0.0, 0.0, 0.0))
    assert np.allclose(off[3, :, 21, 9], (1.0, -1.0, 1.0))
    assert np.isnan(off[0, 0, 0, 0]) and int((~np.isnan(off[:, 0])).sum()) == 27


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    vols = [blob_volume(i) for i in range(3)]
    rng = np.random.default_rng(0)
    batch = sample_batch(vols, rng, 2, [], slices=3, crop=32, p_lesion=1.0, augment=False)
    net = build_model()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)

    def loss_now() -> float:
        net.train()  # batch statistics: the running BN statistics lag after a few steps
        with torch.no_grad():
            return detector_loss(*net(batch[0]), *batch[1:])[0].item()

    before = loss_now()
    for _ in range(6):
        net.train()
        loss, parts = detector_loss(*net(batch[0]), *batch[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(parts["loss"]) and parts["ohem"] >= 0
    assert loss_now() < 0.8 * before


def test_sample_batch_shapes_and_targets():
    vols = [blob_volume(1)]
    x, seg, heat, off = sample_batch(vols, np.random.default_rng(3), 3, [(0, 8, 48, 48)], slices=5, crop=64)
    assert x.shape == (3, 5, 10, 64, 64) and x.dtype == torch.float32
    assert seg.shape == heat.shape == (3, 5, 32, 32)
    assert off.shape == (3, 5, 3, 32, 32)
    assert float(x.min()) >= -1.001 and float(x.max()) <= 1.001
    assert 0.0 <= float(seg.min()) and float(seg.max()) <= 1.0


def test_extract_candidates_finds_two_blobs_in_order():
    shape = (12, 40, 40)
    zz, yy, xx = np.indices(shape)
    heat = np.full(shape, -8.0, np.float32)
    seg = np.zeros(shape, np.float32)
    for (c, peak, r) in (((3, 10, 10), 4.0, 3), ((8, 30, 25), 1.0, 2)):
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        heat = np.maximum(heat, peak - 0.5 * d2).astype(np.float32)
        seg[d2 <= r * r] = 0.9
    cands, labels = extract_candidates(seg, heat, (2.5, 2.8, 2.8))
    assert len(cands) == 2
    assert cands[0].logit == pytest.approx(4.0) and cands[1].logit == pytest.approx(1.0)
    assert np.allclose(cands[0].center, (3, 10, 10), atol=0.3)
    assert np.allclose(cands[1].center, (8, 30, 25), atol=0.3)
    assert (labels == cands[0].label).sum() == cands[0].voxels == int(((zz - 3) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 <= 9).sum())


def test_internal_shape_keeps_extent():
    assert internal_shape((80, 512, 512), (2.5, 0.7, 0.7)) == (80, 256, 256)
    z, y, x = internal_shape((100, 300, 200), (1.0, 0.5, 0.9))
    assert z == 40 and y % 2 == 0 and x % 2 == 0
    assert abs(y * INTERNAL_SPACING[1] - 150) < 2.8 and abs(x * INTERNAL_SPACING[2] - 180) < 2.8


def test_checkpoint_roundtrip_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    vols = [blob_volume(2)]
    net = build_model()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(5)
    x, *targets = sample_batch(vols, rng, 1, [], slices=3, crop=32)
    loss, _ = detector_loss(*net(x), *targets)
    loss.backward()
    opt.step()
    save_checkpoint(tmp_path, net, opt, {"step": 7, "history": [{"step": 1, "loss": 1.0}]}, rng)
    assert not list(tmp_path.glob("*.partial"))
    expected_next = np.random.default_rng(5)
    expected_next.bit_generator.state = rng.bit_generator.state
    net2 = build_model()
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    rng2 = np.random.default_rng(99)
    state = load_checkpoint(tmp_path, net2, opt2, rng2)
    assert state["step"] == 7
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    p = next(net2.parameters())
    assert torch.equal(opt2.state[p]["exp_avg"], opt.state[next(net.parameters())]["exp_avg"])
    assert rng2.random() == expected_next.random()


def test_host_hu_placement_puts_lesions_anywhere_suitable_and_caches_by_group(tmp_path):
    shape = (16, 96, 96)
    vols = load_volumes(tmp_path, 3, 7_000, shape, z_center_mm=-120.0, placement="host_hu", lesion_free_fraction=0.0)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [f"{s}_16x96x96_z-120_host_hu{da.host_hu_margin_px()}px.npz" for s in (7000, 7001, 7002)]
    assert all(len(v.centers) >= 1 for v in vols)
    for v in vols:  # every lesion is in the mask, inside the volume, with its kind recorded
        assert v.labels.any() and len(v.kinds) == len(v.centers)
        for c in v.centers:
            assert all(0 <= x < n for x, n in zip(c, shape))
    again = load_volumes(tmp_path, 3, 7_000, shape, z_center_mm=-120.0, placement="host_hu", lesion_free_fraction=0.0)
    assert all(np.array_equal(a.hu, b.hu) for a, b in zip(vols, again))  # read back from the cache
    with pytest.raises(ValueError, match="placement"):
        _generate_volume(1, shape, False, placement="nowhere")


def test_host_hu_margin_is_in_mm_like_the_real_backgrounds():
    """Training keeps lesion centres ~6 mm inside the body outline, as 12 native pixels do on
    the real backgrounds, not the 17 mm that 12 pixels of the internal 1.4 mm grid meant."""
    from scipy import ndimage

    from medviewer.training.phantom_lesions import body_mask

    yy, xx = np.mgrid[:96, :96]
    disc = np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 40**2, 40.0, -1000.0).astype(np.float32)[None].repeat(9, 0)
    body = disc[4] > -500
    depth = ndimage.distance_transform_edt(body)  # pixels to the outline
    wide, narrow = body_mask(disc)[4], body_mask(disc, margin_px=da.host_hu_margin_px())[4]
    assert (narrow | ~wide).all() and narrow.sum() > wide.sum()
    assert depth[narrow].min() * INTERNAL_SPACING[2] <= da.HOST_HU_MARGIN_MM + 1.5
    assert depth[wide].min() >= 8  # 12 city-block pixels (erosion by the cross)
    assert da.host_hu_margin_px() * INTERNAL_SPACING[2] == pytest.approx(da.HOST_HU_MARGIN_MM, abs=0.7)


def test_head_volumes_carry_lesions_in_the_head():
    from medviewer.training.phantom_anatomy import TISSUE_GRAY_MATTER  # noqa: F401 - the head anatomy exists

    v = _generate_volume(9_000, (16, 128, 128), False, z_center_mm=Z_HEAD_MM, placement="host_hu", region="head")
    hu = v.hu.astype(np.float32)
    assert len(v.centers) >= 1 and v.labels.any()
    assert float(hu.max()) > 900  # the skull
    for c in v.centers:  # lesion centres lie in soft tissue of the head, not in air or bone
        k, j, i = (int(round(x)) for x in c)
        assert -200 < hu[k, j, i] < 300


def test_train_main_fine_tunes_from_init_weights_on_every_volume_group(tmp_path, monkeypatch):
    import argparse
    import json

    from medviewer.ai.weights import save_weights

    torch.manual_seed(3)
    start = build_model()
    save_weights("detector", start.state_dict(), {"version": "0.9-test"}, tmp_path / "models")
    args = argparse.Namespace(
        steps=1, batch_size=1, out=tmp_path / "run", data=tmp_path / "data", init=tmp_path / "models",
        threads=None, device="cpu", seed=0, resume=False, install=False, minutes=None, version="1.3.0-test",
        volumes=["chest=1/1", "kidney=1/0", "host-hu=2/1", "head=1/1"], shape="16x128x128", checkpoint_every=1,
        note="a test run", texture=0.5, paste=0.5, paste_edge=0.5, ct_noise=0.5, cut=0.5, spatial=0.5, spatial_scale="0.8:1.6",
        command_line="medviewer train detector --steps 1 --note 'a test run'",
    )
    tiny_bank = np.random.default_rng(0).normal(0.0, 20.0, (2, 12, 128, 128)).astype(np.float32)
    monkeypatch.setattr(td, "build_noise_bank", lambda folder, progress=None: tiny_bank)
    assert td.main(args) == 0
    names = sorted(p.name for p in (tmp_path / "data" / "train").glob("*.npz"))
    m = f"host_hu{da.host_hu_margin_px()}px"
    assert names == [
        "0_16x128x128.npz", "5000_16x128x128_z-120.npz", f"7000_16x128x128_{m}.npz",
        f"7001_16x128x128_z-120_{m}.npz", f"9000_16x128x128_z5_{m}_head.npz",
    ]
    card = json.loads((tmp_path / "run" / "detector.json").read_text())
    assert card["training"]["initialised_from"]["model"] == "detector 0.9-test"
    assert "AdamW lr 0.001" in card["training"]["optimizer"]  # the fine-tuning schedule
    assert card["calibration"]["validation_seeds"] == [90000, 90700, 90900]
    assert "head" in card["training"]["groups"]
    assert card["version"] == "1.3.0-test" and card["training"]["note"] == "a test run"
    assert card["training"]["command"] == "medviewer train detector --steps 1 --note 'a test run'"  # provenance
    assert "tissue texture" in card["training"]["augmentation"]
    assert "50% of them against the edge of their host tissue" in card["training"]["augmentation"]
    assert "simulated CT noise instead of the Gaussian noise in 50% of the crops (a bank of 2 phantom scans" in card["training"]["augmentation"]
    assert "50% of the crops cut straight to -1024 HU padding first" in card["training"]["augmentation"]
    assert "50% of the crops cut from the volume rotated in-plane by up to +-30 degrees" in card["training"]["augmentation"]
    assert "magnified 0.8-1.6x (log-uniform)" in card["training"]["augmentation"]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["options"]["spatial_scale"] == "0.8:1.6"  # resumed as started
    assert 0.0 <= card["metrics"]["validation"]["cpm_textured"] <= 1.0  # validation also on textured volumes


@pytest.mark.parametrize(
    "options, message",
    [({"paste_edge": 0.5}, "needs --paste"), ({"paste": 1.5}, "--paste 1.5"), ({"paste": 0.5, "paste_edge": -0.1}, "--paste-edge"),
     ({"texture": 2.0}, "--texture"), ({"vessels": -1.0}, "--vessels"), ({"ct_noise": 1.5}, "--ct-noise 1.5"),
     ({"cut": -0.5}, "--cut -0.5"), ({"spatial": 1.2}, "--spatial 1.2"), ({"spatial_scale": "0.8:1.6"}, "needs --spatial"),
     ({"spatial": 0.5, "spatial_scale": "1.6:0.8"}, "LO < HI"), ({"spatial": 0.5, "spatial_scale": "0.8:3"}, "HI <= 2"),
     ({"spatial": 0.5, "spatial_scale": "1.4"}, "expected LO:HI")],
)
def test_augmentation_options_are_checked_before_any_data_is_made(tmp_path, options, message):
    import argparse

    args = argparse.Namespace(steps=1, out=tmp_path / "run", data=tmp_path / "data", device="cpu", resume=False, **options)
    with pytest.raises(ModelError, match=message):
        td.main(args)
    assert not (tmp_path / "data").exists()


def test_with_texture_copies_validation_volumes_reproducibly():
    vols = [blob_volume(6), blob_volume(7)]
    a, b = with_texture(vols), with_texture(vols)
    assert all(np.array_equal(x.hu, y.hu) for x, y in zip(a, b))  # fixed seeds: the same texture every time
    assert not np.array_equal(a[0].hu, vols[0].hu) and a[0].hu.dtype == vols[0].hu.dtype
    np.testing.assert_array_equal(a[1].labels, vols[1].labels)
    assert not np.array_equal(a[0].hu - vols[0].hu, a[1].hu - vols[1].hu)


def test_paste_lesion_adds_one_lesion_in_the_body_that_keeps_the_image_noise():
    rng = np.random.default_rng(0)
    ctx = CONTEXT
    hu = np.full((8 + 2 * ctx, 96, 96), -1000.0, np.float32)
    yy, xx = np.mgrid[0:96, 0:96]
    body = np.hypot(yy - 48, xx - 48) < 40
    hu[:, body] = 50.0
    noise = rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
    hu += noise
    lab = np.zeros((8, 96, 96), np.float32)
    out, lab2, centres, diams = da.paste_lesion(hu, lab, np.random.default_rng(1))
    assert len(centres) == 1 and da.PASTE_DIAMETER_MM[0] <= diams[0] <= da.PASTE_DIAMETER_MM[1]
    k, j, i = np.round(centres[0]).astype(int)
    assert ctx < k < ctx + 7 and body[j, i] and lab2[k - ctx, j, i] == 1.0 and lab2.sum() > lab.sum()
    changed = np.abs(out - hu) > 1.0
    assert changed[:, ~body].sum() == 0  # nothing outside the body
    # the image's fine noise survives inside the lesion: its residual against the smooth lesion still has the noise SD
    inner = lab2[k - ctx] > 0
    resid = (out[k] - hu[k])[inner] - np.median((out[k] - hu[k])[inner])
    assert np.corrcoef(out[k][inner], noise[k][inner])[0, 1] > 0.5 and resid.std() < 15.0
    # no room (all air): nothing pasted
    air = np.full_like(hu, -1000.0)
    assert len(da.paste_lesion(air, lab, np.random.default_rng(1))[3]) == 0


def test_edge_band_places_lesions_against_the_edge_of_their_host_tissue():
    from medviewer.training.phantom_lesions import insert_lesions

    sp = (2.5, 1.4, 1.4)
    vol = np.full((20, 96, 96), 60.0, np.float32)
    vol[:, :, :20] = 700.0  # bone along one side
    host = vol < 300

    def depths(edge: float | None) -> list[float]:
        out = []
        for seed in range(6):
            _, _, les = insert_lesions(vol, sp, np.random.default_rng(seed), 1, kinds=["liver_hypo"], diameter_range_mm=(6, 10),
                                       edge_band_mm=edge)
            k, j, i = (int(round(c)) for c in les[0].center_index)
            out.append((i - 19.5) * sp[2] - (les[0].diameter_mm / 2 + 1.5))  # depth beyond the least a liver lesion needs
        return out

    edge = depths(2.0)
    # against the bone (the image's border is no edge); 3 mm: the fit test's conservative 3x coarser grid and rounding
    assert all(-1.0 <= d <= 2.0 + 3.0 for d in edge)
    assert np.mean(depths(None)) > np.mean(edge) + 5.0  # anywhere otherwise


def test_sample_batch_pastes_edge_lesions_only_when_asked_and_keeps_old_streams():
    vols = [TrainVolume(np.asarray(blob_volume(4, n=0).hu, np.float16) * 0 + np.float16(45), np.zeros((16, 96, 96), np.uint8),
                           np.zeros((0, 3)), np.zeros(0), [], 4)]
    x, _, heat, _ = sample_batch(vols, np.random.default_rng(2), 3, [], slices=5, crop=64, p_paste=1.0, p_paste_edge=1.0, augment=False)
    assert heat.amax(dim=(1, 2, 3)).min() == 1.0
    # off (the default) draws nothing more from the generator: recipes without it replay exactly
    a = sample_batch(vols, np.random.default_rng(5), 2, [], slices=5, crop=64, p_paste=1.0, augment=False)[0]
    b = sample_batch(vols, np.random.default_rng(5), 2, [], slices=5, crop=64, p_paste=1.0, p_paste_edge=0.0, augment=False)[0]
    assert torch.equal(a, b)


def test_paste_vessel_adds_an_unlabelled_bright_tube_in_soft_tissue_away_from_lesions():

    ctx = CONTEXT
    shape = (8 + 2 * ctx, 96, 96)
    yy, xx = np.mgrid[0:96, 0:96]
    body = np.hypot(yy - 48, xx - 48) < 40
    lab = np.zeros((8, 96, 96), np.float32)
    lab[2:6, 20:28, 44:52] = 1.0  # a lesion near the top of the body
    lesion_zone = np.zeros(shape, bool)
    lesion_zone[ctx + 2 : ctx + 6, 20:28, 44:52] = True
    near = ndimage.distance_transform_edt(~lesion_zone, sampling=INTERNAL_SPACING) < da.VESSEL_LESION_GAP_MM
    pasted = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        hu = np.full(shape, -1000.0, np.float32)
        hu[:, body] = 60.0
        hu += rng.normal(0.0, 10.0, shape).astype(np.float32)
        lab_before = lab.copy()
        out, ok = da.paste_vessel(hu, lab, rng)
        assert ok
        np.testing.assert_array_equal(lab, lab_before)  # a negative: the lesion mask is unchanged
        diff = out - hu
        tube = diff > 6.0
        assert tube.any() and not (np.abs(diff) > 1e-3)[:, ~body].any()  # only inside the body
        assert not (np.abs(diff) > 1e-3)[near].any()  # and away from the lesion
        # inside the host tissue, brighter by the hyperdense lesions' contrast; and longer than it is wide
        inner = np.broadcast_to(ndimage.binary_erosion(body, iterations=4), shape)
        core = tube & inner
        core &= diff >= np.percentile(diff[core], 50)
        assert da.VESSEL_CONTRAST_HU[0] - 3 <= float(np.median(diff[core])) <= da.VESSEL_CONTRAST_HU[1] + 3
        pts = np.argwhere(tube) * np.array(INTERNAL_SPACING)
        extent = np.ptp(pts @ np.linalg.svd(pts - pts.mean(0))[2][0])
        assert extent > 2 * da.VESSEL_RADIUS_MM[1] or extent > 10.0
        pasted += 1
    assert pasted == 6
    # no soft tissue (all air): nothing pasted
    air = np.full(shape, -1000.0, np.float32)
    out, ok = da.paste_vessel(air, lab, np.random.default_rng(0))
    assert not ok and np.array_equal(out, air)


def test_texture_field_has_unit_sd_and_the_asked_correlation_length_and_direction():

    shape = (8, 128, 128)
    f = da.texture_field(shape, np.random.default_rng(0), (2.5, 8.0, 2.0), angle=0.0)  # long along the columns
    assert f.shape == shape and f.dtype == np.float32
    assert abs(float(f.mean())) < 0.2 and abs(float(f.std()) - 1.0) < 1e-3

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    lag = 3  # pixels of 1.4 mm: the correlation at 4.2 mm follows exp(-d^2 / (4 sigma^2))
    along = corr(f[:, :, :-lag], f[:, :, lag:])
    across = corr(f[:, :-lag], f[:, lag:])
    d = lag * INTERNAL_SPACING[2]
    assert abs(along - math.exp(-(d**2) / (4 * 8.0**2))) < 0.1 and abs(across - math.exp(-(d**2) / (4 * 2.0**2))) < 0.1
    turned = da.texture_field(shape, np.random.default_rng(0), (2.5, 8.0, 2.0), angle=math.pi / 2)  # now along the rows
    assert corr(turned[:, :-lag], turned[:, lag:]) > corr(turned[:, :, :-lag], turned[:, :, lag:]) + 0.3


def test_add_texture_mottles_fat_and_soft_tissue_only_and_keeps_a_lesion_contrast():

    shape = (8 + 2 * CONTEXT, 96, 96)
    hu = np.full(shape, -1000.0, np.float32)
    yy, xx = np.mgrid[0:96, 0:96]
    body = np.hypot(yy - 48, xx - 48) < 40
    hu[:, body] = 50.0
    hu[:, 40:56, 40:56] = 700.0  # bone
    lesion = np.zeros(shape, bool)
    lesion[4:10, 20:30, 44:54] = True
    hu[lesion] = 90.0  # +40 HU
    sds, contrasts = [], []
    for seed in range(12):
        out = da.add_texture(hu, np.random.default_rng(seed))
        diff = out - hu
        assert not np.any(diff[:, ~body]) and np.abs(diff[:, 40:56, 40:56]).max() < 1e-3  # no air, no bone
        inner = np.broadcast_to(ndimage.binary_erosion(body, iterations=3), shape) & ~lesion
        inner[:, 37:59, 37:59] = False
        sds.append(float(diff[inner].std()))
        contrasts.append(float(out[lesion].mean() - out[inner].mean()))
    assert da.TEXTURE_SD_HU[0] * 0.5 < min(sds) and max(sds) < da.TEXTURE_SD_HU[1] * 1.5 and np.ptp(sds) > 3.0
    assert abs(float(np.median(contrasts)) - 40.0) < 6.0  # zero-mean texture: the lesion stays 40 HU brighter


def test_sample_batch_with_texture_changes_the_input_not_the_targets():
    vols = [blob_volume(5)]  # one crop: the texture's random draws come after its position's
    x, seg, heat, off = sample_batch(vols, np.random.default_rng(3), 1, [], slices=5, crop=64, p_texture=1.0, augment=False)
    x0, seg0, heat0, off0 = sample_batch(vols, np.random.default_rng(3), 1, [], slices=5, crop=64, augment=False)
    assert seg.max() > 0 and torch.equal(seg, seg0) and torch.equal(heat, heat0)
    assert not torch.equal(x, x0)


def test_sample_batch_with_vessels_adds_no_lesion_target():
    vols = [TrainVolume(np.asarray(blob_volume(4, n=0).hu, np.float16) * 0 + np.float16(60), np.zeros((16, 96, 96), np.uint8),
                           np.zeros((0, 3)), np.zeros(0), [], 4)]
    x, seg, heat, off = sample_batch(vols, np.random.default_rng(2), 3, [], slices=5, crop=64, p_vessel=1.0, augment=False)
    x0, _, _, _ = sample_batch(vols, np.random.default_rng(2), 3, [], slices=5, crop=64, augment=False)
    assert heat.max() == 0.0 and seg.max() == 0.0  # vessels are negatives
    assert not torch.equal(x, x0)  # but the input changed


def test_sample_batch_with_paste_puts_a_centre_target_in_every_crop():
    vols = [TrainVolume(np.asarray(blob_volume(4, n=0).hu, np.float16) * 0 + np.float16(45), np.zeros((16, 96, 96), np.uint8),
                           np.zeros((0, 3)), np.zeros(0), [], 4)]
    x, seg, heat, off = sample_batch(vols, np.random.default_rng(2), 3, [], slices=5, crop=64, p_paste=1.0, augment=False)
    assert heat.amax(dim=(1, 2, 3)).min() == 1.0 and seg.amax(dim=(1, 2, 3)).min() > 0.0
    x0, _, heat0, _ = sample_batch(vols, np.random.default_rng(2), 3, [], slices=5, crop=64, augment=False)
    assert heat0.max() == 0.0


def test_refinement_blocks_grow_a_trained_network_without_changing_its_output():
    torch.manual_seed(4)
    base = build_model().eval()
    for m in base.modules():  # non-trivial batch-norm statistics, as in trained weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    cfg = grown_config(model_config(base), 2)
    assert cfg["n_refine"] == 2 and cfg["widths"] == [16, 32, 48]
    grown = build_model(cfg).eval()
    own = grown.state_dict()
    grown.load_state_dict({**base.state_dict(), **{k: v for k, v in own.items() if k.startswith("refine.")}})
    x = torch.randn(1, 4, base.in_channels, 48, 48)
    with torch.inference_mode():
        for a, b in zip(base(x), grown(x)):
            assert torch.equal(a, b)
    assert count_macs(grown, 256) > count_macs(base, 256)
    assert model_config(build_model(model_config(grown))) == model_config(grown)
    assert "n_refine" not in model_config(base)  # cards of the original architecture stay as they were
    with pytest.raises(ModelError, match="choose 2..8"):
        grown_config(cfg, 1)


def test_an_added_input_window_starts_with_zero_weights_and_keeps_the_output():
    from medviewer.ai.detect import predict_maps
    from medviewer.ai.detector import WINDOWS, grow_input_windows, normalize_hu

    torch.manual_seed(5)
    base = build_model().eval()
    cfg = grown_config(model_config(base), None, [parse_window("-20:100")])
    grown = build_model(cfg).eval()
    assert grown.windows == (*WINDOWS, (-20.0, 100.0)) and grown.in_channels == 15
    grown.load_state_dict(grow_input_windows(base.state_dict(), base.windows, grown.windows, base.context))
    hu = np.random.default_rng(0).normal(40, 30, (6, 48, 48)).astype(np.float32)
    for a, b in zip(predict_maps(base, hu, "cpu"), predict_maps(grown, hu, "cpu")):
        np.testing.assert_allclose(a, b, atol=1e-5)
    x = normalize_hu(hu, grown.windows)
    assert x.shape == (6, 3, 48, 48) and x[:, 2].min() >= -1.0 and x[:, 2].max() <= 1.0
    assert "3 HU windows" in describe(grown) and model_config(build_model(model_config(grown)))["windows"][-1] == [-20.0, 100.0]
    for bad, message in (("100:-20", "LO < HI"), ("a:b", "LO:HI")):
        with pytest.raises(ModelError, match=message):
            parse_window(bad)
    with pytest.raises(ModelError, match="must be new"):
        grown_config(cfg, None, [(-20.0, 100.0)])


def test_train_main_grows_init_weights_and_resumes_the_grown_run(tmp_path):
    import argparse
    import json

    from medviewer.ai.weights import save_weights

    torch.manual_seed(3)
    save_weights("detector", build_model().state_dict(), {"version": "0.9-test", "config": model_config(build_model())},
                 tmp_path / "models")
    common = dict(
        batch_size=1, out=tmp_path / "run", data=tmp_path / "data", init=tmp_path / "models", threads=None,
        device="cpu", seed=0, install=False, minutes=None, version="1.5.0-test", shape="16x96x96",
        volumes=["chest=1/1", "kidney=0/0", "host-hu=0/0", "head=0/0"], checkpoint_every=1, note=None,
    )
    assert td.main(argparse.Namespace(steps=1, resume=False, refine=1, window=["-20:100"], texture=0.3, **common)) == 0
    card = json.loads((tmp_path / "run" / "detector.json").read_text())
    assert card["config"]["n_refine"] == 1 and card["macs_per_internal_slice"] > 0.6e9
    assert card["input"]["windows_hu"][-1] == [-20.0, 100.0] and "3 HU windows" in card["architecture"]
    from medviewer.ai.detect import detect_lesions
    from medviewer.volume import Volume

    hu = np.full((12, 64, 64), 40.0, np.float32)
    res = detect_lesions(Volume(hu, spacing=(2.5, 1.4, 1.4)), device="cpu", models_folder=tmp_path / "run")
    assert res.model.version == "1.5.0-test" and res.confidence.shape == hu.shape  # the grown network runs in the app
    assert run_config(tmp_path / "run")["n_refine"] == 1
    # a finished run resumed without a larger step cap says so instead of finishing again
    with pytest.raises(ModelError, match="already at step 1 and the step cap is 1"):
        td.main(argparse.Namespace(steps=None, resume=True, refine=None, window=None, **common))
    # resuming rebuilds the grown architecture from the run, whatever --refine says, and keeps the
    # options the run was started with (here --texture) unless they are given again
    assert td.main(argparse.Namespace(steps=2, resume=True, refine=None, window=None, **common)) == 0
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 2 and state["options"]["texture"] == 0.3 and state["options"]["steps"] == 2
    assert "tissue texture" in json.loads((tmp_path / "run" / "detector.json").read_text())["training"]["augmentation"]


@pytest.mark.parametrize(
    "spec, message",
    [("lungs=3/1", "GROUP=TRAIN"), ("chest=a/1", "whole numbers"), ("head=-1/0", "negative"), ("chest=0/1", "at least one"),
     ("images=4/2", "training only")],
)
def test_volume_group_specs_are_checked(spec, message):
    with pytest.raises(ModelError, match=message):
        volume_groups([spec])


def test_volume_groups_and_shape_parse():
    groups = volume_groups(["head=0/0", "chest=8"])
    assert groups["head"] == (0, 0) and groups["chest"] == (8, N_VAL) and groups["kidney"] == (N_TRAIN_ABDOMEN, N_VAL_ABDOMEN)
    assert groups["images"] == (0, 0) and volume_groups(["images=4"])["images"] == (4, 0)  # training only, none by default
    assert td.parse_shape("16x128x96") == (16, 128, 96)
    for bad in ("16x128", "axbxc", "4x128x128"):
        with pytest.raises(ModelError):
            td.parse_shape(bad)


def test_add_ct_noise_adds_a_scaled_crop_of_the_bank():
    from medviewer.training.detector_noise import NOISE_SCALE, add_ct_noise

    bank = np.random.default_rng(1).normal(0.0, 10.0, (3, 14, 80, 80)).astype(np.float32)
    hu = np.full((12, 64, 64), 40.0, np.float32)
    rng = np.random.default_rng(2)
    sds = []
    for _ in range(40):
        out = add_ct_noise(hu, rng, bank)
        assert out.shape == hu.shape and out.dtype == np.float32
        assert abs(float(out.mean()) - 40.0) < 2.0  # zero-mean noise
        sds.append(float((out - hu).std()))
    assert 10.0 * NOISE_SCALE[0] * 0.9 < min(sds) and max(sds) < 10.0 * NOISE_SCALE[1] * 1.1 and np.ptp(sds) > 5.0
    with pytest.raises(ValueError, match="smaller than the crop"):
        add_ct_noise(np.zeros((20, 64, 64), np.float32), rng, bank)


def test_noise_bank_is_ct_noise_on_the_internal_grid_and_cached(tmp_path):
    from medviewer.training.detector_noise import build_noise_bank

    bank = build_noise_bank(tmp_path, n_body=1, n_head=1, slices=12, size=128)
    assert bank.shape == (2, 12, 46, 46) and bank.dtype == np.float32  # 128 px of 0.5-0.7 mm on the 1.4 mm grid
    assert 2.0 < float(bank.std()) < 60.0 and abs(float(bank.mean())) < 3.0
    # CT noise is correlated between neighbouring pixels of the internal grid (white noise would not be)
    a = bank[:, :, :, :-1].ravel() - bank.mean()
    b = bank[:, :, :, 1:].ravel() - bank.mean()
    assert abs(float(np.corrcoef(a, b)[0, 1])) > 0.05
    files = sorted(p.name for p in tmp_path.iterdir())
    again = build_noise_bank(tmp_path, n_body=1, n_head=1, slices=12, size=128)
    assert np.array_equal(bank, again) and sorted(p.name for p in tmp_path.iterdir()) == files
    with pytest.raises(ValueError, match="slices"):
        build_noise_bank(tmp_path, n_body=1, n_head=0, slices=4, size=128)


def test_sample_batch_with_ct_noise_changes_the_input_not_the_targets_and_keeps_old_streams():
    vols = [blob_volume(5)]
    bank = np.random.default_rng(0).normal(0.0, 15.0, (2, 12, 96, 96)).astype(np.float32)
    x, seg, heat, _ = sample_batch(vols, np.random.default_rng(3), 1, [], slices=5, crop=64, p_ct_noise=1.0, ct_noise=bank, augment=False)
    x0, seg0, heat0, _ = sample_batch(vols, np.random.default_rng(3), 1, [], slices=5, crop=64, augment=False)
    assert torch.equal(seg, seg0) and torch.equal(heat, heat0) and not torch.equal(x, x0)
    # off (the default) draws nothing more from the generator: recipes without it replay exactly
    a = sample_batch(vols, np.random.default_rng(4), 2, [], slices=5, crop=64)[0]
    b = sample_batch(vols, np.random.default_rng(4), 2, [], slices=5, crop=64, p_ct_noise=0.0, ct_noise=bank)[0]
    assert torch.equal(a, b)


def body_volume(seed: int, shape=(16, 96, 96)) -> TrainVolume:
    """A disk of soft tissue in air with a lesion at its centre and one near its outline (tests only)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    hu = np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 40**2, 40.0, -1000.0) + rng.normal(0, 5, shape)
    lab = np.zeros(shape, np.uint8)
    cs = np.array([[8.0, 48.0, 48.0], [8.0, 48.0, 84.0]])
    for c in cs:
        m = ((zz - c[0]) * 2.5) ** 2 + ((yy - c[1]) * 1.4) ** 2 + ((xx - c[2]) * 1.4) ** 2 <= 5.0**2
        hu[m] += 150
        lab[m] = 1
    return TrainVolume(hu.astype(np.float16), lab, cs, np.array([10.0, 10.0]), ["blob"] * 2, seed)


def test_cut_crop_pads_outside_one_cut_on_every_slice_and_drops_lesions_cut_away():
    from medviewer.training.detector_augment import cut_crop
    from medviewer.training.hard_edges import PAD_HU

    v = body_volume(0)
    hu0 = v.hu[0:16].astype(np.float32)  # the whole volume as the crop (context included)
    lab0 = v.labels[2:14].astype(np.float32)
    cut_any, dropped_any = False, False
    for seed in range(12):
        hu, lab, c, d = cut_crop(v.hu.astype(np.float32), hu0, lab0, (2, 0, 0), v.centers, v.diameters, np.random.default_rng(seed))
        cut = hu == np.float32(PAD_HU)
        assert (cut == cut[0]).all(), "one cut, the same on every slice"
        assert np.array_equal(hu[~cut], hu0[~cut])  # nothing else changes
        assert not lab[:, cut[0]].any()  # no lesion label where the image is cut away
        assert len(c) == len(d) and len(c) <= 2
        for k, j, i in c:  # every lesion kept has its centre in the image
            assert not cut[0, int(round(j)), int(round(i))]
        cut_any |= bool(cut.any())
        dropped_any |= len(c) < 2
    assert cut_any and dropped_any
    assert np.array_equal(hu0, v.hu[0:16].astype(np.float32))  # the input is not modified


def test_sample_batch_with_cuts_changes_inputs_and_keeps_old_streams_when_off():
    vols = [body_volume(1)]
    x = sample_batch(vols, np.random.default_rng(5), 3, [], slices=5, crop=64, p_cut=1.0, augment=False)[0]
    x0 = sample_batch(vols, np.random.default_rng(5), 3, [], slices=5, crop=64, augment=False)[0]
    assert not torch.equal(x, x0)  # cut crops (the later crops also draw other positions)
    a = sample_batch(vols, np.random.default_rng(6), 2, [], slices=5, crop=64)[0]
    b = sample_batch(vols, np.random.default_rng(6), 2, [], slices=5, crop=64, p_cut=0.0)[0]
    assert torch.equal(a, b)



def test_spatial_view_moves_lesion_centres_with_the_anatomy_and_scales_diameters():
    from medviewer.training.detector_spatial import MARGIN_PX, spatial_view

    v = body_volume(2)
    centre = np.array([8.0, 50.0, 60.0])
    for angle, scale in [(0.0, 1.0), (25.0, 1.0), (-30.0, 1.2), (12.0, 0.8)]:
        view, c = spatial_view(v, centre, slices=5, crop=64, angle_deg=angle, scale=scale)
        n = 64 + 2 * MARGIN_PX
        assert view.hu.shape[1:] == (n, n) and view.labels.shape == view.hu.shape
        assert np.allclose(c[1:], (n - 1) / 2) and view.hu.shape[0] >= 5
        assert np.allclose(view.diameters, v.diameters * scale)
        # the lesion mask's centroid on its central slice lands on the moved centre (within a pixel)
        for lc in view.centers:
            k, j, i = lc
            if not (0 <= j < n and 0 <= i < n):
                continue
            sl = view.labels[int(round(k))]
            yy, xx = np.nonzero(sl)
            near = (yy - j) ** 2 + (xx - i) ** 2 < (8 * scale) ** 2
            assert near.sum() > 10
            assert abs(yy[near].mean() - j) < 1.0 and abs(xx[near].mean() - i) < 1.0
            # the lesion is 150 HU brighter than the disk around it, also after resampling
            assert view.hu[int(round(k)), int(round(j)), int(round(i))] > 120
        # outside the source volume is air
        if angle:
            assert view.hu.min() < -900
    # no rotation, no scaling: the slab is the volume's own voxels
    n = 64 + 2 * MARGIN_PX
    view, c = spatial_view(v, np.array([8.0, 47.5, 47.5]), slices=5, crop=64, angle_deg=0.0, scale=1.0)
    z0 = 8 - int(round(c[0]))
    j0 = int(47.5 - (n - 1) / 2)
    zz = slice(z0, z0 + view.hu.shape[0])
    assert j0 + n <= 96
    assert np.allclose(view.hu, v.hu[zz, j0 : j0 + n, j0 : j0 + n].astype(np.float32), atol=1e-3)
    assert np.array_equal(view.labels, v.labels[zz, j0 : j0 + n, j0 : j0 + n])
    with pytest.raises(ValueError, match="scale"):
        spatial_view(v, centre, slices=5, crop=64, angle_deg=0.0, scale=0.0)


def test_sample_batch_with_spatial_augmentation_keeps_heat_peaks_on_lesions_and_old_streams_when_off():
    vols = [body_volume(3)]
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(6):
        x, seg, heat, _ = sample_batch(vols, rng, 1, [], slices=5, crop=64, p_spatial=1.0, augment=False, p_lesion=1.0)
        h = heat[0].numpy()
        s = seg[0].numpy()
        if h.max() < 0.99:
            continue  # the lesion centre left the crop
        found += 1
        k, a, b = np.unravel_index(np.argmax(h), h.shape)
        assert s[k, max(0, a - 1) : a + 2, max(0, b - 1) : b + 2].max() > 0.5  # the mask is where the centre is
    assert found >= 3
    a = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64)[0]
    b = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64, p_spatial=0.0)[0]
    assert torch.equal(a, b)
    c = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64, p_spatial=1.0)[0]
    assert not torch.equal(a, c)


def test_spatial_scale_range_sets_the_magnifications_and_leaves_the_default_stream_alone():
    from medviewer.training.detector_spatial import SCALE, draw_transform, parse_scale_range

    assert parse_scale_range(None) == SCALE
    assert parse_scale_range("0.8:1.6") == (0.8, 1.6)
    rng = np.random.default_rng(5)
    scales = [draw_transform(rng, (1.3, 1.6))[1] for _ in range(200)]
    assert 1.3 <= min(scales) and max(scales) <= 1.6 and max(scales) - min(scales) > 0.2
    # the default range draws exactly what recipes before --spatial-scale drew
    assert draw_transform(np.random.default_rng(9)) == draw_transform(np.random.default_rng(9), SCALE)
    vols = [body_volume(3)]
    a = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64, p_spatial=1.0)[0]
    b = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64, p_spatial=1.0, spatial_scale=SCALE)[0]
    c = sample_batch(vols, np.random.default_rng(8), 2, [], slices=5, crop=64, p_spatial=1.0, spatial_scale=(1.5, 1.6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_image_volumes_move_real_structure_along_z_and_carry_lesions(tmp_path):
    """Image volumes: an MR or radiograph slice given CT values, moved along z, with lesions placed by host HU."""
    from medviewer.training.detector_data import TRAIN_IMAGES_SEED0, load_volumes
    from medviewer.training.detector_images import image_volume, moved_along_z

    base = np.full((64, 64), -1000.0, np.float32)
    base[20:44, 20:44] = 40.0
    moved = moved_along_z(base, 20, np.random.default_rng(0), 1.4)
    assert moved.shape == (20, 64, 64) and moved.min() >= -1000.0 and moved.max() <= 40.0
    assert np.abs(moved[0] - moved[-1]).max() > 500  # the structure travels across the field along z
    assert np.abs(moved[9] - moved[10]).mean() < np.abs(moved[0] - moved[-1]).mean()  # slowly

    d = image_volume(TRAIN_IMAGES_SEED0, (16, 96, 96), 3)
    again = image_volume(TRAIN_IMAGES_SEED0, (16, 96, 96), 3)
    np.testing.assert_array_equal(d["volume_hu"], again["volume_hu"])  # seeded
    assert d["volume_hu"].shape == d["labels"].shape == (16, 96, 96) and 1 <= len(d["lesions"]) <= 3
    assert d["labels"].max() == len(d["lesions"])
    for les in d["lesions"]:
        k, j, i = (int(round(c)) for c in les.center_index)
        assert d["labels"][k, j, i] > 0 and 3 <= k <= 12  # never in the first or last 3 slices
    vols = load_volumes(tmp_path, 2, TRAIN_IMAGES_SEED0, (16, 96, 96), lesion_free_fraction=0.5, placement="host_hu",
                        region="images")
    assert len(vols[0].centers) >= 1 and len(vols[1].centers) == 0  # every second one lesion-free
    assert any(p.name.endswith("_images.npz") for p in tmp_path.iterdir())  # cached apart from the phantoms
