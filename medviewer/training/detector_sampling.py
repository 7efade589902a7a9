"""Training batches of the lesion detector and their loss.

:func:`sample_batch` draws 2.5D crops from the training volumes
(:class:`~medviewer.training.detector_data.TrainVolume`), centred on a lesion,
on a mined hard negative or at a random place, with the online augmentations
of :mod:`medviewer.training.detector_augment`, together with their targets:
the soft lesion mask, the centre heat map (:func:`heat_target`) and the centre
offsets. :func:`detector_loss` scores the network's three outputs against them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from medviewer.ai.detector import CONTEXT, INTERNAL_SPACING, OUTPUT_STRIDE, WINDOWS, normalize_hu
from medviewer.training.detector_augment import add_texture, cut_crop, paste_lesion, paste_vessel
from medviewer.training.detector_data import TrainVolume
from medviewer.training.detector_noise import add_ct_noise
from medviewer.training.detector_spatial import SCALE, draw_transform, spatial_view

CROP_SLICES = 8
CROP_SIZE = 112


# --------------------------------------------------------------------------- sampling
def heat_target(
    centers: NDArray[np.float64],
    diameters: NDArray[np.float64],
    origin: tuple[int, int, int],
    out_shape: tuple[int, int, int],
    spacing: tuple[float, float, float] = INTERNAL_SPACING,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gaussian centre heat map and centre-offset target on the output grid of a crop.

    Output voxel ``(s, a, b)`` sits at internal index
    ``(k0 + s, j0 + 2a + 0.5, i0 + 2b + 0.5)``; each lesion contributes
    ``exp(-d^2 / 2 sigma^2)`` with ``sigma = max(diameter / 4, 1.5 mm)``, and
    the output voxel nearest to its centre is set to exactly 1.

    Returns
    -------
    heat : ndarray (S, H, W)
    offset : ndarray (S, 3, H, W)
        Lesion centre minus voxel position (output voxels, z/y/x) in the
        3x3x3 neighbourhood of each centre voxel, NaN elsewhere.
    """
    s, h, w = out_shape
    k0, j0, i0 = origin
    tgt = np.zeros(out_shape, np.float32)
    off = np.full((s, 3, h, w), np.nan, np.float32)
    if len(centers) == 0:
        return tgt, off
    kk = (k0 + np.arange(s)) * spacing[0]
    jj = (j0 + OUTPUT_STRIDE * np.arange(h) + 0.5) * spacing[1]
    ii = (i0 + OUTPUT_STRIDE * np.arange(w) + 0.5) * spacing[2]
    order = np.argsort(-np.asarray(diameters))  # small lesions written last win shared voxels
    for c, d in zip(centers[order], np.asarray(diameters)[order]):
        cm = c * np.array(spacing)
        sigma = max(d / 4.0, 1.5)
        reach = 3 * sigma
        if (
            cm[0] < kk[0] - reach
            or cm[0] > kk[-1] + reach
            or cm[1] < jj[0] - reach
            or cm[1] > jj[-1] + reach
            or cm[2] < ii[0] - reach
            or cm[2] > ii[-1] + reach
        ):
            continue
        gz = np.exp(-((kk - cm[0]) ** 2) / (2 * sigma**2)).astype(np.float32)
        gy = np.exp(-((jj - cm[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
        gx = np.exp(-((ii - cm[2]) ** 2) / (2 * sigma**2)).astype(np.float32)
        np.maximum(tgt, gz[:, None, None] * gy[None, :, None] * gx[None, None, :], out=tgt)
        co = np.array([c[0] - k0, (c[1] - j0 - 0.5) / OUTPUT_STRIDE, (c[2] - i0 - 0.5) / OUTPUT_STRIDE])
        pk = tuple(int(round(v)) for v in co)
        if all(0 <= p < n for p, n in zip(pk, out_shape)):
            tgt[pk] = 1.0
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (pk[0] + dz, pk[1] + dy, pk[2] + dx)
                    if all(0 <= p < n for p, n in zip(q, out_shape)):
                        off[q[0], :, q[1], q[2]] = co - np.array(q)
    return tgt, off


def sample_batch(
    vols: list[TrainVolume],
    rng: np.random.Generator,
    batch: int,
    hard_negatives: list[tuple[int, int, int, int]],
    slices: int = CROP_SLICES,
    crop: int = CROP_SIZE,
    p_lesion: float = 0.6,
    p_hard: float = 0.2,
    augment: bool = True,
    windows: tuple[tuple[float, float], ...] = WINDOWS,
    p_paste: float = 0.0,
    p_vessel: float = 0.0,
    p_texture: float = 0.0,
    p_paste_edge: float = 0.0,
    p_ct_noise: float = 0.0,
    ct_noise: NDArray[np.float32] | None = None,
    p_cut: float = 0.0,
    p_spatial: float = 0.0,
    spatial_scale: tuple[float, float] = SCALE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a batch of crops (input in the network's HU ``windows``).

    With probability ``p_paste`` a crop gets one more lesion pasted anywhere
    in the body (:func:`paste_lesion`; online copy-paste augmentation), so
    lesions are also seen next to the spine, the skull or the body wall (a
    share ``p_paste_edge`` of the pasted lesions abut the edge of their host
    tissue: ``paste_lesion(edge=True)``); with
    probability ``p_vessel`` it gets a tube of enhanced-vessel HU pasted as a
    negative (:func:`paste_vessel`); with probability ``p_texture`` its fat and
    soft tissue get correlated texture (:func:`add_texture`); with probability
    ``p_ct_noise`` it gets simulated CT noise from the bank ``ct_noise``
    (:func:`medviewer.training.detector_noise.add_ct_noise`) instead of the
    white noise of the plain augmentation; with probability ``p_cut`` it is
    cut straight to -1024 HU padding first (:func:`cut_crop`: a field of view,
    an inner mask or a skull strip), so lesions also meet hard edges. With
    probability ``p_spatial`` the crop is cut from the volume rotated and
    scaled in-plane about its centre first
    (:func:`medviewer.training.detector_spatial.spatial_view`; magnifications
    log-uniform in ``spatial_scale``), so every later augmentation and the
    targets see the transformed anatomy.

    Returns
    -------
    x : Tensor (B, S, (2*CONTEXT+1) * len(windows), crop, crop)
        Normalised 2.5D input.
    seg : Tensor (B, S, crop/2, crop/2)
        Soft lesion-mask target.
    heat : Tensor (B, S, crop/2, crop/2)
        Centre heat-map target.
    offset : Tensor (B, S, 3, crop/2, crop/2)
        Centre-offset target near lesion centres, NaN elsewhere.
    """
    xs, segs, heats, offs = [], [], [], []
    with_lesions = [i for i, v in enumerate(vols) if len(v.centers)]
    for _ in range(batch):
        u = rng.random()
        if u < p_lesion and with_lesions:
            vi = int(rng.choice(with_lesions))
            v = vols[vi]
            c = v.centers[rng.integers(len(v.centers))]
            jit = np.array([slices / 3.0, crop / 3.0, crop / 3.0])
            centre = c + rng.uniform(-1, 1, 3) * jit
        elif u < p_lesion + p_hard and hard_negatives:
            vi, k, j, i = hard_negatives[rng.integers(len(hard_negatives))]
            v = vols[vi]
            centre = np.array([k, j, i], float) + rng.uniform(-1, 1, 3) * np.array([2, crop / 6, crop / 6])
        else:
            vi = int(rng.integers(len(vols)))
            v = vols[vi]
            centre = rng.uniform(0, 1, 3) * np.array(v.hu.shape)
        if p_spatial > 0 and rng.random() < p_spatial:  # no draw when off: old recipes replay
            angle, scale = draw_transform(rng, spatial_scale)
            v, centre = spatial_view(v, centre, slices, crop, angle, scale)
        zs, hs, ws = v.hu.shape
        k0 = int(np.clip(round(centre[0] - slices / 2), 0, max(0, zs - slices)))
        j0 = int(np.clip(round(centre[1] - crop / 2), 0, max(0, hs - crop)))
        i0 = int(np.clip(round(centre[2] - crop / 2), 0, max(0, ws - crop)))
        kidx = np.clip(np.arange(k0 - CONTEXT, k0 + slices + CONTEXT), 0, zs - 1)
        hu = v.hu[kidx, j0 : j0 + crop, i0 : i0 + crop].astype(np.float32)
        lab = v.labels[k0 : k0 + slices, j0 : j0 + crop, i0 : i0 + crop].astype(np.float32)
        if hu.shape[1:] != (crop, crop):  # volume smaller than the crop: pad with air
            ph, pw = crop - hu.shape[1], crop - hu.shape[2]
            hu = np.pad(hu, ((0, 0), (0, ph), (0, pw)), constant_values=-1000.0)
            lab = np.pad(lab, ((0, 0), (0, ph), (0, pw)))
        if lab.shape[0] < slices:
            lab = np.pad(lab, ((0, slices - lab.shape[0]), (0, 0), (0, 0)), mode="edge")
        centers, diameters = v.centers, v.diameters
        if p_cut > 0 and rng.random() < p_cut:  # no draw when off: old recipes replay
            hu, lab, centers, diameters = cut_crop(v.hu, hu, lab, (k0, j0, i0), centers, diameters, rng)
        if p_paste > 0 and rng.random() < p_paste:
            edge = p_paste_edge > 0 and rng.random() < p_paste_edge  # no draw when off: old recipes replay
            hu, lab, pc, pd = paste_lesion(hu, lab, rng, edge=edge)
            if len(pd):  # crop indices -> volume indices (hu starts CONTEXT slices above k0)
                centers = np.concatenate([centers.reshape(-1, 3), pc + np.array([k0 - CONTEXT, j0, i0])])
                diameters = np.concatenate([diameters, pd])
        if p_vessel > 0 and rng.random() < p_vessel:
            hu, _ = paste_vessel(hu, lab, rng)
        if p_texture > 0 and rng.random() < p_texture:
            hu = add_texture(hu, rng)
        ct_noisy = p_ct_noise > 0 and ct_noise is not None and rng.random() < p_ct_noise  # no draw when off
        if ct_noisy:
            hu = add_ct_noise(hu, rng, ct_noise)  # type: ignore[arg-type]
        if augment:
            if not ct_noisy and rng.random() < 0.5:
                hu = hu + rng.normal(0.0, rng.uniform(2.0, 30.0), hu.shape).astype(np.float32)
            hu = hu * rng.uniform(0.97, 1.03) + rng.uniform(-15, 15)
        seg = lab.reshape(slices, crop // 2, 2, crop // 2, 2).mean(axis=(2, 4))
        heat, off = heat_target(centers, diameters, (k0, j0, i0), seg.shape)  # type: ignore[arg-type]
        xn = normalize_hu(hu, windows)  # (S + 2 * CONTEXT, windows, H, W)
        ctx = np.arange(slices)[:, None] + np.arange(2 * CONTEXT + 1)[None, :]
        x = xn[ctx].reshape(slices, -1, crop, crop)  # (S, context * windows, H, W), slice-major
        if augment and rng.random() < 0.5:  # left-right flip; the x offset changes sign
            x, seg, heat, off = x[..., ::-1], seg[..., ::-1], heat[..., ::-1], off[..., ::-1].copy()
            off[:, 2] *= -1
        xs.append(np.ascontiguousarray(x))
        segs.append(np.ascontiguousarray(seg))
        heats.append(np.ascontiguousarray(heat))
        offs.append(np.ascontiguousarray(off))
    return (
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.stack(segs)),
        torch.from_numpy(np.stack(heats)),
        torch.from_numpy(np.stack(offs)),
    )


# --------------------------------------------------------------------------- loss
def detector_loss(
    seg_logit: torch.Tensor,
    heat_logit: torch.Tensor,
    offset: torch.Tensor,
    seg_t: torch.Tensor,
    heat_t: torch.Tensor,
    offset_t: torch.Tensor,
    ohem_fraction: float = 0.02,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Segmentation BCE (+ OHEM term + soft Dice), CenterNet focal loss on the heat map, L1 on offsets.

    The OHEM term is the mean BCE of the hardest ``ohem_fraction`` of the
    negative pixels (at least as many as there are positive pixels), so false
    positives on lesion-like tissue keep a large gradient after the easy
    background is learnt; a matching term averages the BCE over the positive
    (lesion) pixels so small lesions are not drowned by the background.
    """
    seg_logit = seg_logit.float()
    heat_logit = heat_logit.float()
    bce = F.binary_cross_entropy_with_logits(seg_logit, seg_t, reduction="none")
    neg = seg_t < 0.5
    neg_losses = bce[neg]
    n_pos = int((~neg).sum())
    k = min(neg_losses.numel(), max(int(ohem_fraction * bce.numel()), n_pos, 1))
    ohem = neg_losses.topk(k).values.mean() if k > 0 else bce.new_zeros(())
    # positive pixels get their own mean so tiny lesions are not drowned by the background
    pos_px = ~neg
    pos_term = bce[pos_px].mean() if bool(pos_px.any()) else bce.new_zeros(())
    p = torch.sigmoid(seg_logit)
    inter = (p * seg_t).sum()
    dice = 1.0 - (2 * inter + 1.0) / (p.sum() + seg_t.sum() + 1.0)
    seg_loss = bce.mean() + ohem + pos_term + 0.5 * dice
    # CenterNet focal loss (alpha 2, beta 4)
    hp = torch.sigmoid(heat_logit).clamp(1e-4, 1 - 1e-4)
    pos = heat_t >= 1.0
    logp = F.logsigmoid(heat_logit)
    log1mp = F.logsigmoid(-heat_logit)
    pos_loss = -(((1 - hp) ** 2) * logp)[pos].sum()
    neg_loss = -((((1 - heat_t) ** 4) * hp**2) * log1mp)[~pos].sum()
    n_peaks = max(int(pos.sum()), 1)
    heat_loss = (pos_loss + neg_loss) / n_peaks
    known = ~torch.isnan(offset_t)
    if bool(known.any()):
        off_loss = F.smooth_l1_loss(offset.float()[known], offset_t[known], beta=0.5)
    else:
        off_loss = offset.sum() * 0.0
    total = seg_loss + heat_loss + off_loss
    return total, {
        "loss": float(total.detach()),
        "offset": float(off_loss.detach()),
        "seg": float(seg_loss.detach()),
        "ohem": float(ohem.detach()),
        "dice": float(dice.detach()),
        "heat": float(heat_loss.detach()),
    }


__all__ = [
    "heat_target",
    "sample_batch",
    "detector_loss",
]
