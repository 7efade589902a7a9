"""Low-dose CT denoising of a whole volume with the shipped GAN generator (no Qt).

:func:`denoise_volume` runs the generator of :mod:`medviewer.ai.denoiser`
slice by slice in batches (``torch.inference_mode``, ``channels_last``);
CUDA in half precision when present, fp32 on CPU (bf16 autocast on CPUs
without native bf16 is ~200x slower, STYLE.md section 7). Slices larger than
:data:`TILE` pixels a side are processed in overlapping tiles, so memory stays
bounded. HU in, HU out; the source volume is never modified.

Examples
--------
>>> from medviewer.ai.denoise import denoiser_info
>>> denoiser_info().name  # doctest: +SKIP
'denoiser'
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from medviewer.ai.denoise_strength import (
    DEFAULT_STRENGTH,
    DERIVED_LABEL,
    MIN_STRENGTH,
    blend,
    check_strength,
    labelled,
    strength_label,
    with_strength,
)
from medviewer.ai.denoiser import SIZE_MULTIPLE, DenoiserConfig, DenoiserNet
from medviewer.ai.device import resolve_device
from medviewer.ai.results import ModelInfo
from medviewer.ai.weights import INTENDED_USE, load_card, load_state_into, load_weights, weights_path
from medviewer.errors import ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.volume import Volume

MODEL_NAME = "denoiser"
TILE = 1024
"""Slices with a side above this are split into tiles of this size."""
TILE_OVERLAP = 64
"""Margin (px) each tile reads beyond the part it writes: more than the generator's
receptive-field radius (47 px measured), and a multiple of 8 so tiles keep the
pixel-unshuffle / stride grid; tiled and untiled results then agree."""
PADDING_HU = -1500.0
"""Values below this are padding outside the field of view (-2000, -3024, ...), not
attenuation (air is -1000, even with low-dose noise rarely below -1200)."""
AIR_FLOOR_HU = -1024.0
"""The network sees values clipped here, as in its training data (int16 HU >= -1024)."""
BATCH_PIXELS = 4 * 512 * 512
"""Pixels per forward batch on CPU (GPU: 8x)."""

_cache: dict[tuple[str, str, str], tuple[DenoiserNet, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _folder_key(folder: Path | None) -> str:
    return str(Path(weights_path(MODEL_NAME, folder)).resolve())


def load_denoiser(
    device: str | torch.device | None = None, folder: Path | None = None
) -> tuple[DenoiserNet, dict[str, Any]]:
    """The generator on ``device`` and its model card (loaded once, then cached).

    Parameters
    ----------
    device : str or torch.device, optional
        ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``.
    folder : Path, optional
        Folder with ``denoiser.safetensors`` + ``denoiser.json`` (default: resources/models).

    Raises
    ------
    ModelError
        Weights or card missing, SHA-256 mismatch, corrupt file, or weights
        that do not fit the architecture in the card.
    """
    dev = resolve_device(device)
    half = dev.type == "cuda"
    key = (_folder_key(folder), str(dev), "fp16" if half else "fp32")
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
        tensors, card = load_weights(MODEL_NAME, folder)
        arch = card.get("architecture", {}).get("config", {})
        try:
            config = DenoiserConfig.from_json(arch if isinstance(arch, dict) else {})
            model = DenoiserNet(config)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model card {MODEL_NAME}.json has an invalid architecture: {exc}") from exc
        load_state_into(model, tensors, str(weights_path(MODEL_NAME, folder)))
        model.eval().requires_grad_(False)
        model = model.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]
        if half:
            model = model.half()
        _cache[key] = (model, card)
        return model, card


def clear_cache() -> None:
    """Forget loaded models (after new weights were installed)."""
    with _cache_lock:
        _cache.clear()


def denoiser_info(folder: Path | None = None) -> ModelInfo:
    """Name and version of the installed denoiser (from its model card).

    Raises
    ------
    ModelError
        The model card is missing or invalid.
    """
    card = load_card(MODEL_NAME, folder)
    return ModelInfo(
        name=str(card.get("name", MODEL_NAME)),
        version=str(card["version"]),
        manufacturer="MedViewer",
        intended_use=str(card.get("intended_use", INTENDED_USE)),
    )


def _pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def _run(model: DenoiserNet, batch: torch.Tensor) -> torch.Tensor:
    """Denoise ``(n, 1, h, w)`` HU (any h, w) on the model's device; returns the same shape.

    The network sees HU clipped at :data:`AIR_FLOOR_HU` (as in training);
    padding outside the scan field (below :data:`PADDING_HU`, e.g. -2000 or
    -3024) is returned unchanged.
    """
    dtype = next(model.parameters()).dtype
    clipped = batch.clamp_min(AIR_FLOOR_HU)
    x, h, w = _pad_to_multiple(clipped, SIZE_MULTIPLE)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    noise = model.noise(x)[..., :h, :w].float()
    return torch.where(batch < PADDING_HU, batch, clipped - noise)


def _tiles(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(read_start, read_end, write_start, write_end)`` along one axis of length n."""
    if n <= tile:
        return [(0, n, 0, n)]
    core = tile - 2 * overlap
    if core <= 0 or core % SIZE_MULTIPLE:
        raise ValueError(f"tile {tile} must exceed twice the overlap {overlap} by a multiple of {SIZE_MULTIPLE}")
    out = []
    start = 0
    while start < n:
        end = min(n, start + core)
        rs, re_ = max(0, start - overlap), min(n, end + overlap)
        out.append((rs, re_, start, end))
        start = end
    return out


def denoise_slices(
    slices_hu: NDArray[Any],
    device: str | torch.device | None = None,
    folder: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    tile: int = TILE,
) -> NDArray[np.float32]:
    """Denoise a ``(z, y, x)`` HU stack with the shipped generator; returns float32 HU.

    Parameters
    ----------
    slices_hu : ndarray
        ``(z, y, x)`` (or one ``(y, x)`` slice) in HU.
    device : str or torch.device, optional
    folder : Path, optional
        Weights folder (default: resources/models).
    progress, cancel : callables, optional
        Cancel is checked between batches.
    tile : int
        Slices with a side above this are processed in overlapping tiles.
    """
    arr = np.asarray(slices_hu, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected (z, y, x) slices, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ModelError("the volume contains NaN or infinite values; cannot denoise it")
    model, _card = load_denoiser(device, folder)
    param = next(model.parameters())
    dev = param.device
    z, h, w = arr.shape
    out = np.empty_like(arr)
    ys, xs = _tiles(h, tile, TILE_OVERLAP), _tiles(w, tile, TILE_OVERLAP)
    tile_px = max(r[1] - r[0] for r in ys) * max(r[1] - r[0] for r in xs)
    per_batch = max(1, (BATCH_PIXELS * (8 if dev.type == "cuda" else 1)) // tile_px)
    prog = Progress(progress)
    jobs = [(ty, tx) for ty in ys for tx in xs]
    total = z * len(jobs)
    done = 0
    with torch.inference_mode():
        for ty in ys:
            for tx in xs:
                for k0 in range(0, z, per_batch):
                    check_cancel(cancel, "denoising")
                    k1 = min(z, k0 + per_batch)
                    block = torch.from_numpy(np.ascontiguousarray(arr[k0:k1, ty[0] : ty[1], tx[0] : tx[1]]))
                    y = _run(model, block[:, None].to(dev))
                    y = y[:, 0, ty[2] - ty[0] : ty[3] - ty[0], tx[2] - tx[0] : tx[3] - tx[0]]
                    out[k0:k1, ty[2] : ty[3], tx[2] : tx[3]] = y.cpu().numpy()
                    done += k1 - k0
                    prog(done / total, f"denoising slice {min(z, k1)}/{z}")
    check_cancel(cancel, "denoising")
    return out[0] if single else out


def denoise_volume(
    volume: Volume,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    folder: Path | None = None,
    strength: float = DEFAULT_STRENGTH,
) -> Volume:
    """Denoise a CT volume; returns a new derived Volume (the source is untouched).

    Parameters
    ----------
    volume : Volume
        Grey-scale CT volume in HU.
    device : str or torch.device, optional
        ``None``/``"auto"`` (CUDA + half precision when present), ``"cpu"``, ``"cuda"``.
    progress : callable, optional
        ``progress(fraction, message)``.
    cancel : callable, optional
        Checked between batches; raises :class:`~medviewer.errors.CancelledError`.
    folder : Path, optional
        Weights folder (default: resources/models).
    strength : float
        Share of the predicted noise removed, in [:data:`MIN_STRENGTH`, 1]
        (:mod:`medviewer.ai.denoise_strength`).

    Returns
    -------
    Volume
        Same geometry; ``metadata.derived_from == "AI denoised"``, series
        description suffixed with ``" [AI denoised]"`` (``" [AI denoised 70 %]"``
        below full strength), the model's name, version and the strength in
        ``metadata.extra["denoiser"]``.

    Raises
    ------
    ValueError
        ``strength`` outside [:data:`MIN_STRENGTH`, 1].
    ModelError
        Missing/corrupt weights, a colour or non-CT volume, NaN voxels.
    CancelledError
        ``cancel()`` returned True.

    Examples
    --------
    >>> out = denoise_volume(volume, device="cpu")  # doctest: +SKIP
    >>> out.metadata.series_description  # doctest: +SKIP
    'Chest 1.0 [AI denoised]'
    """
    if volume.is_rgb:
        raise ModelError("the denoiser needs a grey-scale CT volume, not a colour image")
    modality = (volume.metadata.modality or "CT").upper()
    if modality != "CT":
        raise ModelError(f"the denoiser is trained for CT in HU; this series is {modality}")
    s = check_strength(strength)
    info = denoiser_info(folder)
    voxels = denoise_slices(volume.voxels, device=device, folder=folder, progress=progress, cancel=cancel)
    if s != 1.0:
        voxels = blend(volume.voxels, voxels, s)
    return labelled(volume, voxels, s, {"name": info.name, "version": info.version, "intended_use": info.intended_use})


__all__ = [
    "denoise_volume",
    "denoise_slices",
    "denoiser_info",
    "load_denoiser",
    "clear_cache",
    "check_strength",
    "strength_label",
    "with_strength",
    "DERIVED_LABEL",
    "DEFAULT_STRENGTH",
    "MIN_STRENGTH",
]
