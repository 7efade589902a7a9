"""Train the GAN low-dose CT denoiser on phantom (full dose, low dose) pairs.

``medviewer train denoiser`` calls :func:`main`. The data come from
:func:`medviewer.training.datasets.build_denoising_pairs`: slices of
project-generated phantoms (seeds < 100000) and the same slices passed
through the projection-domain low-dose simulator at several dose fractions.
Real CT never enters training.

Schedule: pixel + gradient loss only for the first ``gan_start`` fraction of
the steps (the generator learns to denoise), then the PatchGAN adversarial
term is added at a small weight. Adam, cosine learning-rate decay.

Run folder (``--out``)::

    checkpoint.safetensors   generator, discriminator, optimiser moments, torch RNG
    checkpoint.json          step, loss history, numpy RNG, optimiser hyper-parameters
    loss_curves.png          training curves (updated at every checkpoint)
    model/denoiser.*         final weights + model card (without evaluation metrics)

Nothing is pickled: tensors go to safetensors, the rest to JSON.

The recipe (:class:`TrainConfig`) lives in :mod:`medviewer.training.denoiser_config` and
the model card in :mod:`medviewer.training.denoiser_card`; both are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medviewer.ai.denoiser import (
    PIXEL_NORMS,
    DenoiserConfig,
    DenoiserNet,
    PatchDiscriminator,
    generator_loss,
    lsgan_discriminator_loss,
)
from medviewer.ai.weights import INTENDED_USE, save_weights, sha256_of, write_json_atomic
from medviewer.errors import CancelledError, ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel, console_progress
from medviewer.training.denoiser_card import build_card
from medviewer.training.denoiser_config import (
    AIR_PATCH_DRAWS,
    AIR_PATCH_MEAN_HU,
    DOSES,
    MODEL_NAME,
    MODEL_VERSION,
    PIXEL_NORM_NAMES,
    TARGETS,
    TrainConfig,
)

# --------------------------------------------------------------- sampling
class PatchSampler:
    """Random training patches from (full, low) slice pairs, with flips and 90-degree turns.

    Parameters
    ----------
    full, low : ndarray
        ``(n, H, W)`` float32 HU slices; pair i is the same slice at full and low dose.
    patch : int
        Patch side (a multiple of 8).
    rng : numpy Generator
    min_mean_hu : float
        Patches whose full-dose mean is below this (mostly air) are redrawn a few times.
    air_share : float
        Share of the patches taken where they fall, air or not (no redraw).
    """

    def __init__(
        self,
        full: NDArray[np.float32],
        low: NDArray[np.float32],
        patch: int,
        rng: np.random.Generator,
        min_mean_hu: float = AIR_PATCH_MEAN_HU,
        noise_scale: tuple[float, float] | None = None,
        hu_offset: tuple[float, float] | None = None,
        air_share: float = 0.0,
    ) -> None:
        if full.shape != low.shape or full.ndim != 3:
            raise ValueError(f"full {full.shape} and low {low.shape} must be equal (n, H, W) stacks")
        if patch % 8 or patch > min(full.shape[1:]):
            raise ValueError(f"patch {patch} must be a multiple of 8 and fit in {full.shape[1:]}")
        self.full, self.low, self.patch, self.rng, self.min_mean_hu = full, low, patch, rng, min_mean_hu
        self.noise_scale, self.hu_offset = noise_scale, hu_offset
        if not 0.0 <= air_share <= 1.0:
            raise ValueError(f"air_share {air_share} must lie in [0, 1]")
        self.air_share = air_share

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(full, low)`` tensors ``(batch, 1, patch, patch)`` in HU."""
        n, h, w = self.full.shape
        p = self.patch
        fulls = np.empty((batch, p, p), np.float32)
        lows = np.empty((batch, p, p), np.float32)
        for b in range(batch):
            tries = 1 if self.air_share and self.rng.random() < self.air_share else AIR_PATCH_DRAWS
            for _ in range(tries):
                i = int(self.rng.integers(n))
                y = int(self.rng.integers(h - p + 1))
                x = int(self.rng.integers(w - p + 1))
                f = self.full[i, y : y + p, x : x + p]
                if f.mean() >= self.min_mean_hu:
                    break
            lo = self.low[i, y : y + p, x : x + p]
            if self.noise_scale is not None and self.rng.random() < 0.5:
                # another dose of the same scan: the noise of the input relative to the target scaled
                # by a. Target "clean": the whole low-dose noise, i.e. dose d' = d / a^2; target
                # "full": the extra low-dose noise (independent of the full-dose noise under binomial
                # thinning), i.e. 1/d' - 1 = a^2 (1/d - 1). Widens the noise range beyond the doses.
                a = float(np.exp(self.rng.uniform(*np.log(self.noise_scale))))
                lo = f + (lo - f) * np.float32(a)
            if self.hu_offset is not None and self.rng.random() < 0.3:
                # scanner calibration: air at -1024 instead of -1000, water a few HU off
                dh = np.float32(self.rng.uniform(*self.hu_offset))
                f, lo = f + dh, lo + dh
            k = int(self.rng.integers(4))
            flip = bool(self.rng.integers(2))
            f, lo = np.rot90(f, k), np.rot90(lo, k)
            if flip:
                f, lo = f[:, ::-1], lo[:, ::-1]
            fulls[b], lows[b] = f, lo
        return torch.from_numpy(fulls)[:, None], torch.from_numpy(lows)[:, None]


# ------------------------------------------------------------ checkpoints
def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            tensors[f"{prefix}.{idx}.{key}"] = t.reshape(-1) if t.ndim == 0 else t
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t.reshape(()) if key == "step" else t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    out: Path,
    step: int,
    gen: DenoiserNet,
    disc: PatchDiscriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    history: dict[str, list[float]],
    rng: np.random.Generator,
    cfg: TrainConfig,
) -> None:
    """Write ``checkpoint.safetensors`` + ``checkpoint.json`` atomically (json last)."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"G.{k}": v for k, v in gen.state_dict().items()})
    tensors.update({f"D.{k}": v for k, v in disc.state_dict().items()})
    tg, mg = _flatten_optimizer("optG", opt_g)
    td, md = _flatten_optimizer("optD", opt_d)
    tensors.update(tg)
    tensors.update(td)
    tensors["rng.torch"] = torch.get_rng_state()
    _atomic_save_tensors(tensors, out / "checkpoint.safetensors")
    meta = {
        "step": step,
        "history": history,
        "numpy_rng": rng.bit_generator.state,
        "optG": mg,
        "optD": md,
        "config": cfg.to_json(),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(out / "checkpoint.json", meta)


def load_checkpoint(
    out: Path,
    gen: DenoiserNet,
    disc: PatchDiscriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> tuple[int, dict[str, list[float]]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns (step, history)."""
    tpath, jpath = out / "checkpoint.safetensors", out / "checkpoint.json"
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
        tensors = load_file(str(tpath))
    except FileNotFoundError as exc:
        raise ModelError(f"no checkpoint to resume in {out}: {exc.filename} is missing") from exc
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelError(f"checkpoint in {out} is unreadable: {exc}") from exc
    try:
        gen.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
        disc.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
        _restore_optimizer("optG", opt_g, tensors, meta["optG"])
        _restore_optimizer("optD", opt_d, tensors, meta["optD"])
        torch.set_rng_state(tensors["rng.torch"])
        rng.bit_generator.state = meta["numpy_rng"]
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(f"checkpoint in {out} does not fit this model: {exc}") from exc
    return int(meta["step"]), {k: list(v) for k, v in meta["history"].items()}


# ----------------------------------------------------------------- curves
def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss curves (moving averages) and validation PSNR to a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(v: list[float], k: int = 25) -> NDArray[np.float64]:
        a = np.asarray(v, dtype=np.float64)
        if a.size < k:
            return a
        return np.convolve(a, np.ones(k) / k, mode="valid")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = history.get("step", [])
    positive = False
    for key in ("pixel", "gradient"):
        if history.get(key):
            s = smooth(history[key])
            axes[0].plot(steps[len(steps) - len(s) :], s, label=key)
            positive = positive or bool((s > 0).any())
    if positive:  # a loss of exactly 0 (a student that starts as its teacher) has no log scale
        axes[0].set_yscale("log")
    axes[0].set_title("generator fidelity losses (units of 1000 HU)")
    axes[0].set_xlabel("step")
    axes[0].legend()
    if history.get("adv_step"):
        axes[1].plot(history["adv_step"], smooth(history["adversarial"], 1), label="G adversarial", alpha=0.5)
        axes[1].plot(history["adv_step"], smooth(history["disc"], 1), label="D", alpha=0.5)
        axes[1].legend()
    axes[1].set_title("LSGAN losses (after warm-up)")
    axes[1].set_xlabel("step")
    if history.get("val_step"):
        axes[2].plot(history["val_step"], history["val_psnr_noisy"], label="low-dose input")
        axes[2].plot(history["val_step"], history["val_psnr"], label="denoised")
        axes[2].legend()
    axes[2].set_title("validation PSNR (dB, held-out phantom slices)")
    axes[2].set_xlabel("step")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


# ------------------------------------------------------------------ train
def _lr_at(step: int, frac: float, cfg: TrainConfig, base: float) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay over the schedule fraction."""
    if step < cfg.warmup:
        return base * (step + 1) / cfg.warmup
    t = min(1.0, max(0.0, frac))
    return cfg.lr_min + 0.5 * (base - cfg.lr_min) * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def _validate(gen: DenoiserNet, full: torch.Tensor, low: torch.Tensor) -> tuple[float, float]:
    from medviewer.training.metrics import psnr_hu

    gen.eval()
    try:
        out = gen(low).numpy()
    finally:
        gen.train()
    f, lo = full.numpy(), low.numpy()
    return (
        float(np.mean([psnr_hu(f[i, 0], out[i, 0]) for i in range(len(f))])),
        float(np.mean([psnr_hu(f[i, 0], lo[i, 0]) for i in range(len(f))])),
    )


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    generator: DenoiserNet
    step: int
    history: dict[str, list[float]]
    seconds: float


def load_teacher(cfg: TrainConfig, device: torch.device) -> DenoiserNet | None:
    """The frozen generator of ``cfg.teacher`` (None without one), loaded as inference loads it
    (:func:`medviewer.ai.denoise.load_denoiser`: eval mode, ``channels_last``, half precision on CUDA).

    Raises
    ------
    ModelError
        ``distill`` outside [0, 1], or the teacher's weights are missing or corrupt.
    """
    if not 0.0 <= cfg.distill <= 1.0:
        raise ModelError(f"--distill {cfg.distill:g}: choose a share between 0 and 1")
    if not cfg.teacher or cfg.distill == 0.0:
        return None
    from medviewer.ai.denoise import load_denoiser

    return load_denoiser(device, Path(cfg.teacher))[0]


def train(
    full: NDArray[np.float32],
    low: NDArray[np.float32],
    cfg: TrainConfig,
    out: Path,
    *,
    val: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None,
    device: torch.device | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TrainResult:
    """Train generator and discriminator; checkpoints into ``out``.

    Parameters
    ----------
    full, low : ndarray
        ``(n, H, W)`` float32 HU training pairs.
    cfg : TrainConfig
    out : Path
        Run folder (created).
    val : tuple of ndarray, optional
        ``(full, low)`` validation slices ``(m, h, w)`` (h, w multiples of 8).
    device : torch.device, optional
        Default CPU.
    resume : bool
        Continue from ``out/checkpoint.*``.
    progress, cancel : callables, optional
        On cancel a checkpoint is written before :class:`CancelledError` is raised.

    Returns
    -------
    TrainResult
    """
    device = device or torch.device("cpu")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = DenoiserNet(cfg.arch).to(device)
    disc = PatchDiscriminator().to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.99))
    history: dict[str, list[float]] = {
        k: []
        for k in ("step", "pixel", "gradient", "total", "adv_step", "adversarial", "disc", "val_step", "val_psnr", "val_psnr_noisy")
    }
    step = 0
    elapsed_before = 0.0
    if resume:
        step, loaded = load_checkpoint(out, gen, disc, opt_g, opt_d, rng)
        elapsed_before = float(loaded.pop("elapsed_s", [0.0])[0])
        history.update(loaded)
    elif cfg.init:
        from medviewer.ai.weights import load_state_into, load_weights, with_new_blocks

        state, _card = load_weights(MODEL_NAME, Path(cfg.init))
        source = str(Path(cfg.init) / f"{MODEL_NAME}.safetensors")
        # a grown generator: the added refinement blocks start as the identity
        load_state_into(gen, with_new_blocks(state, gen, "refine."), source)
    gen = gen.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    disc = disc.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    teacher = load_teacher(cfg, device)
    sampler = PatchSampler(
        full, low, cfg.patch, rng, noise_scale=cfg.noise_scale, hu_offset=cfg.hu_offset, air_share=cfg.air_patches
    )
    val_t = None
    if val is not None:
        val_t = (torch.from_numpy(val[0])[:, None].to(device), torch.from_numpy(val[1])[:, None].to(device))
    prog = Progress(progress)
    start_step, t0 = step, time.perf_counter()

    def fraction() -> float:
        f = step / max(1, cfg.steps)
        if cfg.time_budget_s:
            f = max(f, (elapsed_before + time.perf_counter() - t0) / cfg.time_budget_s)
        return f

    def checkpoint() -> None:
        hist = dict(history)
        hist["elapsed_s"] = [round(elapsed_before + time.perf_counter() - t0, 1)]
        save_checkpoint(out, step, gen, disc, opt_g, opt_d, hist, rng, cfg)
        plot_curves(history, out / "loss_curves.png")

    gen.train()
    disc.train()
    try:
        while (frac := fraction()) < 1.0:
            check_cancel(cancel, "denoiser training")
            f_cpu, l_cpu = sampler.sample(cfg.batch_size)
            f_t = f_cpu.to(device).contiguous(memory_format=torch.channels_last)
            l_t = l_cpu.to(device).contiguous(memory_format=torch.channels_last)
            for g in opt_g.param_groups:
                g["lr"] = _lr_at(step, frac, cfg, cfg.lr)
            use_gan = frac >= cfg.loss.gan_start and cfg.loss.adversarial > 0
            target = f_t
            if teacher is not None:
                with torch.no_grad():
                    taught = teacher(l_t.to(next(teacher.parameters()).dtype)).to(f_t.dtype)
                    target = torch.lerp(f_t, taught, cfg.distill)
            pred = gen(l_t)
            if use_gan:
                for g in opt_d.param_groups:
                    g["lr"] = _lr_at(step, frac, cfg, cfg.lr_d)
                d_loss = lsgan_discriminator_loss(disc(f_t), disc(pred.detach()))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                for p in disc.parameters():
                    p.requires_grad_(False)
                loss, parts = generator_loss(pred, target, cfg.loss, disc(pred))
                for p in disc.parameters():
                    p.requires_grad_(True)
            else:
                loss, parts = generator_loss(pred, target, cfg.loss)
            if not torch.isfinite(loss):
                raise ModelError(f"training diverged at step {step} (loss {float(loss)}); lower the learning rate")
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
            opt_g.step()
            step += 1
            history["step"].append(step)
            for key in ("pixel", "gradient", "total"):
                history[key].append(round(parts[key], 6))
            if use_gan:
                history["adv_step"].append(step)
                history["adversarial"].append(round(parts["adversarial"], 6))
                history["disc"].append(round(float(d_loss.detach()), 6))
            last = fraction() >= 1.0
            if val_t is not None and (step % cfg.val_every == 0 or last):
                vp, vn = _validate(gen, *val_t)
                history["val_step"].append(step)
                history["val_psnr"].append(round(vp, 3))
                history["val_psnr_noisy"].append(round(vn, 3))
            if step % cfg.ckpt_every == 0 or last:
                checkpoint()
            rate = (step - start_step) / max(1e-9, time.perf_counter() - t0)
            msg = (
                f"step {step}/{cfg.steps} {PIXEL_NORM_NAMES[cfg.loss.pixel_norm]} {parts['pixel'] * 1000:.1f} HU"
                f" {rate:.2f} it/s"
            )
            if history["val_psnr"]:
                msg += f" val {history['val_psnr'][-1]:.2f} dB"
            prog(min(1.0, fraction()), msg)
    except (CancelledError, KeyboardInterrupt):
        if step > start_step:
            checkpoint()
        raise
    if step == start_step and not (out / "loss_curves.png").exists():
        checkpoint()
    gen.eval()
    return TrainResult(gen.to(memory_format=torch.contiguous_format), step, history, time.perf_counter() - t0)  # type: ignore[call-overload]


# ------------------------------------------------------------------- data
def _open_dataset_folder(folder: Path, cfg: TrainConfig) -> Any:
    """Open a finished dataset folder of :func:`build_denoising_pairs` as it is (no rebuild).

    Lets a run resume on exactly its data after the engine's cache version changed.
    """
    from medviewer.training import datasets

    try:
        params = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["params"]
        seeds = list(range(cfg.seed, cfg.seed + cfg.n_phantoms))
        doses: list[float] = []
        for s in seeds:
            doses += json.loads((folder / f"{s:07d}.json").read_text(encoding="utf-8"))["doses"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{folder} is not a complete denoising dataset for seeds {cfg.seed}..: {exc}") from exc
    if int(params["slices_per_phantom"]) != cfg.slices_per_phantom:
        raise ModelError(f"{folder} holds {params['slices_per_phantom']} slices per phantom, not {cfg.slices_per_phantom}")
    return datasets.DenoisingPairs(
        folder, seeds, int(params["slices_per_phantom"]), float(params["pixel_mm"]), np.asarray(doses, np.float32)
    )


def load_training_pairs(
    cache: Path,
    cfg: TrainConfig,
    workers: int = 1,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], dict[str, Any]]:
    """Build (or read from the cache) phantom pairs; returns train full/low, val full/low, data info.

    Each pixel size of ``cfg.pixel_sizes`` gets its own ``cfg.n_phantoms``
    phantoms (consecutive seed blocks); the last phantom of each block is held
    out for the validation curves (two of its slices, centre 256 x 256).
    """
    from medviewer.training import datasets

    if (cache / "dataset.json").is_file():  # an existing dataset folder: reuse it exactly
        sets = [_open_dataset_folder(cache, cfg)]
    else:
        # seed blocks: one per chest/abdomen pixel size, then one per head pixel size, then dead leaves and image slices
        # per body pixel size
        blocks = [("body", px, cfg.n_phantoms) for px in cfg.pixel_sizes]
        blocks += [("head", px, cfg.n_head_phantoms) for px in cfg.head_pixel_sizes if cfg.n_head_phantoms > 0]
        blocks += [("leaves", px, cfg.n_leaves) for px in cfg.pixel_sizes if cfg.n_leaves > 0]
        blocks += [("images", px, cfg.n_images) for px in cfg.pixel_sizes if cfg.n_images > 0]
        blocks += [("photos", px, cfg.n_photos) for px in cfg.pixel_sizes if cfg.n_photos > 0]
        sets, seed0 = [], cfg.seed
        for region, px, n in blocks:
            sets.append(
                datasets.build_denoising_pairs(
                    cache,
                    n_phantoms=n,
                    slices_per_phantom=cfg.slices_per_phantom,
                    doses=cfg.doses,
                    seed=seed0,
                    size=cfg.slice_size,
                    spacing=(2.5, float(px)),
                    workers=workers,
                    progress=progress,
                    cancel=cancel,
                    region=region,
                    psf_mm=cfg.psf_mm,
                    cut=cfg.cut,
                )
            )
            seed0 += n
    n_total = sum(len(p) for p in sets)
    if n_total < 2 * len(sets):
        raise ModelError(f"need at least 2 training pairs per pixel size, got {n_total}")
    h, w = sets[0][0][0].shape
    # target (cfg.target): "clean", the noise-free phantom slice, or "full", the
    # simulated full-dose scan whose binomially thinned version is the input.
    if cfg.target not in TARGETS:
        raise ModelError(f"unknown denoiser target {cfg.target!r}; choose one of {', '.join(TARGETS)}")
    n_val_per = min(cfg.slices_per_phantom, 2) if cfg.n_phantoms > 1 else 1
    full = np.empty((n_total, h, w), np.float32)
    low = np.empty((n_total, h, w), np.float32)
    doses = np.empty(n_total, np.float32)
    vf_list, vl_list = [], []
    c = 256 if min(h, w) >= 256 else (min(h, w) // 8) * 8
    y0, x0 = (h - c) // 2, (w - c) // 2
    n_train = 0
    for pairs in sets:
        n = len(pairs)
        n_ph = len(getattr(pairs, "seeds", ())) or cfg.n_phantoms
        held = cfg.slices_per_phantom if n_ph > 1 else 1  # the last phantom's slices
        val_idx = set(np.linspace(n - held, n - 1, n_val_per).round().astype(int).tolist())
        for i in range(n):
            f, lo, d = pairs[i]
            if cfg.target == "clean":
                f = pairs.clean(i)
            if f.shape != (h, w):
                raise ModelError(f"training slices differ in size: {f.shape} vs {(h, w)}")
            if i >= n - held:
                if i in val_idx:
                    vf_list.append(f[y0 : y0 + c, x0 : x0 + c])
                    vl_list.append(lo[y0 : y0 + c, x0 : x0 + c])
                continue
            full[n_train], low[n_train], doses[n_train] = f, lo, d
            n_train += 1
    vf = np.ascontiguousarray(np.stack(vf_list), dtype=np.float32)
    vl = np.ascontiguousarray(np.stack(vl_list), dtype=np.float32)
    seeds = [int(s) for p in sets for s in getattr(p, "seeds", [])]
    pixels = [round(float(getattr(p, "pixel_mm", 0.7)), 3) for p in sets]
    info: dict[str, Any] = {
        "pairs": n_train,
        "validation_pairs": len(vf_list),
        "slice_shape": [int(h), int(w)],
        "phantom_seeds": f"{min(seeds)}..{max(seeds)} ({len(seeds)} phantoms: {cfg.n_phantoms} chest/abdomen per pixel size"
        + (f", {cfg.n_head_phantoms} head per head pixel size" if cfg.n_head_phantoms > 0 and cfg.head_pixel_sizes else "")
        + (f", {cfg.n_leaves} sets of dead-leaves slices per body pixel size" if cfg.n_leaves > 0 else "")
        + (f", {cfg.n_images} sets of slices from MR and radiograph images per body pixel size" if cfg.n_images > 0 else "")
        + (f", {cfg.n_photos} sets of slices from photographs per body pixel size" if cfg.n_photos > 0 else "")
        + "; the last one of each held out for validation)"
        if seeds
        else None,
        "regions": ["chest/abdomen"] + (["head"] if cfg.n_head_phantoms > 0 and cfg.head_pixel_sizes else [])
        + (["dead leaves (random occluding ellipses with CT values inside a body outline: a generic image prior, no anatomy)"]
           if cfg.n_leaves > 0 else [])
        + (["MR and radiograph images given CT values (real structure of other modalities; not attenuation)"]
           if cfg.n_images > 0 else [])
        + (["photographs bundled with scikit-image given CT values (real-world structure; reflectance, not attenuation)"]
           if cfg.n_photos > 0 else []),
        "slices_per_phantom": cfg.slices_per_phantom,
        "pixel_mm": pixels,
        "slice_thickness_mm": 2.5,
        "scanner_blur_psf_mm": (
            f"Gaussian sigma drawn log-uniformly per phantom from {cfg.psf_mm[0]:g}-{cfg.psf_mm[1]:g} mm"
            if cfg.psf_mm
            else "Gaussian sigma 0.38 mm (FWHM about 0.9 mm, a soft-tissue kernel) for every phantom"
        ),
        "hard_cuts": (
            f"{100 * cfg.cut:g} % of the slices cut straight to -1024 HU padding (a field-of-view circle through the "
            "body, a mask 4-20 mm inside its outline, or the largest soft-tissue region, as skull-stripping leaves a "
            "brain) before the scanner is simulated"
            if cfg.cut
            else None
        ),
        "dose_fraction_range": list(cfg.doses),
        "dose_fractions_used": [round(float(doses[:n_train].min()), 3), round(float(doses[:n_train].max()), 3)],
        "simulator": _simulator_parameters(),
        "targets": (
            "the noise-free phantom slices; inputs are simulated low-dose scans of them (full-dose scans "
            "binomially thinned to the low dose, as in the AAPM low-dose data)"
            if cfg.target == "clean"
            else "simulated full-dose scans of the phantom (Poisson at the full-dose flux); inputs are their "
            "binomially thinned low-dose versions (same photons, fewer), as in the AAPM low-dose data"
        ),
    }
    return full[:n_train], low[:n_train], vf, vl, info


def _simulator_parameters() -> dict[str, Any]:
    from medviewer.training import lowdose

    names = ("DEFAULT_I0", "DEFAULT_ELECTRONIC_NOISE", "MU_WATER_PER_MM", "SOURCE_RADIUS_MM", "BOWTIE_STRENGTH")
    params: dict[str, Any] = {n.lower(): getattr(lowdose, n) for n in names if hasattr(lowdose, n)}
    params["geometry"] = "fan beam rebinned to parallel, FBP (ramp x Hann)"
    return params


def _install(out: Path, metrics: dict[str, Any] | None, card: dict[str, Any]) -> Path:
    """Copy ``out/model/denoiser.safetensors`` byte for byte into resources/models with its card.

    The shipped file is exactly the one ``medviewer evaluate denoiser --weights out/model``
    scored (safetensors headers are not byte-stable across saves, so it is copied, not re-saved).
    """
    from medviewer.resources import models_dir

    src = out / "model" / f"{MODEL_NAME}.safetensors"
    dest_dir = models_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    fd, tmp = tempfile.mkstemp(prefix=f".{src.name}.", suffix=".partial", dir=dest_dir)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shipped resource is world-readable
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    card = dict(card)
    card["metrics"] = metrics or {}
    card["name"] = MODEL_NAME
    card["sha256"] = sha256_of(dest)
    card["weights_file"] = dest.name
    card.setdefault("intended_use", INTENDED_USE)
    write_json_atomic(dest_dir / f"{MODEL_NAME}.json", card)
    evaluated = (metrics or {}).get("evaluated_weights_sha256")
    if evaluated and evaluated != card["sha256"]:
        print(f"warning: the evaluation in {out / 'evaluation'} scored other weights (sha256 {evaluated[:12]}...)")
    docs = dest_dir.parent.parent / "docs"
    if (out / "loss_curves.png").is_file() and docs.is_dir():
        shutil.copyfile(out / "loss_curves.png", docs / "denoiser_loss_curves.png")
    return dest


def _evaluation_metrics(out: Path) -> dict[str, Any] | None:
    """Summary metrics from ``out/evaluation/results.json`` (written by ``medviewer evaluate denoiser``)."""
    path = out / "evaluation" / "results.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    metrics = dict(doc.get("summary", {}))
    metrics["evaluated_weights_sha256"] = (doc.get("model") or {}).get("sha256")
    metrics["quick"] = doc.get("quick")
    metrics["protocol"] = doc.get("protocol", "")
    metrics["source"] = "medviewer evaluate denoiser (results.json / results.md)"
    return metrics


def main(args: argparse.Namespace) -> int:
    """Entry point of ``medviewer train denoiser`` (see :mod:`medviewer.commands.train`)."""
    from medviewer.ai.device import resolve_device
    from medviewer.resources import cache_dir

    patch = getattr(args, "patch", None)
    if patch is not None and (int(patch) % 8 or not 32 <= int(patch) <= 512):
        raise ModelError(f"--patch {patch}: choose a multiple of 8 from 32 to 512 pixels")
    if args.threads:
        torch.set_num_threads(int(args.threads))
    device = resolve_device(args.device)
    out: Path = args.out or Path("runs") / MODEL_NAME
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(seed=int(args.seed))
    resuming = bool(args.resume) and (out / "checkpoint.json").is_file()
    if resuming:  # continue as started: the run's recipe, with only the options given now changed
        try:
            cfg = TrainConfig.from_json(json.loads((out / "checkpoint.json").read_text(encoding="utf-8"))["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot resume from {out}: its checkpoint.json has no readable config ({exc})") from exc
        print(f"resuming {out} with its recipe (seed {cfg.seed}, air patches {cfg.air_patches:g}, target {cfg.target})", flush=True)
    if args.steps is not None:
        cfg.steps = int(args.steps)
    if args.batch_size:
        cfg.batch_size = int(args.batch_size)
    cfg.target = str(getattr(args, "target", None) or cfg.target)
    init = getattr(args, "init", None)
    base: dict[str, Any] = {}  # the card of the --init weights
    if init is not None and not resuming:
        from medviewer.ai.weights import load_card

        cfg.init = str(init)
        cfg.lr = 3e-4  # fine-tuning: a gentler start than from scratch
        base = load_card(MODEL_NAME, Path(init))
        arch = (base.get("architecture") or {}).get("config") or {}
        cfg.arch = DenoiserConfig.from_json(arch if isinstance(arch, dict) else {})
    elif resuming and cfg.init:  # provenance for the card; the weights come from the checkpoint
        from medviewer.ai.weights import load_card

        try:
            base = load_card(MODEL_NAME, Path(cfg.init))
        except ModelError:
            base = {}
    refine = getattr(args, "refine", None)
    if refine is not None and not resuming:
        if int(refine) < cfg.arch.n_refine or int(refine) > 8:
            raise ModelError(f"--refine {refine}: choose {cfg.arch.n_refine}..8 (the init weights have {cfg.arch.n_refine})")
        cfg.arch = replace(cfg.arch, n_refine=int(refine))
    if getattr(args, "version", None):
        cfg.version = str(args.version)
    air = getattr(args, "air_patches", None)
    if air is not None:
        if not 0.0 <= float(air) <= 1.0:
            raise ModelError(f"--air-patches {air}: choose a share between 0 and 1")
        cfg.air_patches = float(air)
    if patch is not None:
        cfg.patch = int(patch)
    norm = getattr(args, "pixel_loss", None)
    if norm is not None:
        if norm not in PIXEL_NORMS:
            raise ModelError(f"--pixel-loss {norm}: choose one of {', '.join(PIXEL_NORMS)}")
        cfg.loss = replace(cfg.loss, pixel_norm=str(norm))
    grad_w = getattr(args, "gradient_weight", None)
    if grad_w is not None:
        if not 0.0 <= float(grad_w) <= 5.0:
            raise ModelError(f"--gradient-weight {grad_w}: choose a weight between 0 and 5")
        cfg.loss = replace(cfg.loss, gradient=float(grad_w))
    lr = getattr(args, "lr", None)
    if lr is not None:
        if not 1e-6 <= float(lr) <= 1e-2:
            raise ModelError(f"--lr {lr}: choose a learning rate between 1e-6 and 1e-2")
        cfg.lr = float(lr)
        cfg.lr_min = min(cfg.lr_min, cfg.lr)
    teacher = getattr(args, "teacher", None)
    if teacher is not None:
        cfg.teacher = str(teacher)
        cfg.distill = 0.5 if getattr(args, "distill", None) is None else float(args.distill)
    elif getattr(args, "distill", None) is not None:
        if cfg.teacher is None:
            raise ModelError("--distill needs --teacher MODELS (a folder with denoiser.safetensors and denoiser.json)")
        cfg.distill = float(args.distill)
    ssim_w = getattr(args, "ssim_weight", None)
    if ssim_w is not None:
        if not 0.0 <= float(ssim_w) <= 5.0:
            raise ModelError(f"--ssim-weight {ssim_w}: choose a weight between 0 and 5")
        cfg.loss = replace(cfg.loss, ssim=float(ssim_w))
    cut = getattr(args, "cut", None)
    if cut is not None:
        if not 0.0 <= float(cut) <= 1.0:
            raise ModelError(f"--cut {cut}: choose a share between 0 and 1")
        cfg.cut = float(cut)
    psf = getattr(args, "psf_mm", None)
    if psf is not None:
        lo, hi = (float(v) for v in psf)
        if not (0.0 < lo <= hi <= 5.0):
            raise ModelError(f"--psf-mm {lo:g} {hi:g}: choose 0 < LOW <= HIGH <= 5 (mm)")
        cfg.psf_mm = (lo, hi)
    sizes = {"phantoms": "n_phantoms", "head_phantoms": "n_head_phantoms", "slices_per_phantom": "slices_per_phantom",
             "leaves": "n_leaves", "images": "n_images", "photos": "n_photos"}
    for option, attr in sizes.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        if int(value) < (0 if option in ("head_phantoms", "leaves", "images", "photos") else 1):
            raise ModelError(f"--{option.replace('_', '-')} {value} is too small")
        setattr(cfg, attr, int(value))
    cfg.ckpt_every = max(1, min(cfg.ckpt_every, cfg.steps))
    t_start = time.perf_counter()
    minutes = getattr(args, "minutes", None)  # wall-clock budget incl. data generation

    stop = {"flag": False}

    def on_term(signum: int, frame: object) -> None:
        stop["flag"] = True

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        cache = args.data or cache_dir() / "denoising-pairs"
        bar = console_progress("data  ")
        full, low, vf, vl, info = load_training_pairs(
            Path(cache), cfg, workers=int(args.threads or 1), progress=bar, cancel=lambda: stop["flag"]
        )
        notes = out / "run_notes.json"  # free-form facts about this run, copied into the card
        if notes.is_file():
            try:
                info.update(json.loads(notes.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise ModelError(f"{notes} is not valid JSON: {exc}") from exc
        if getattr(args, "note", None):
            info["note"] = str(args.note)
        if getattr(args, "command_line", None):
            info["command"] = str(args.command_line)
        if cfg.init:
            info["initialised_from"] = {
                "model": f"{MODEL_NAME} {base.get('version')}",
                "steps": (base.get("training") or {}).get("steps"),
                "trained_pixel_spacing_mm": (base.get("inputs") or {}).get("trained_pixel_spacing_mm"),
                "sha256": base.get("sha256"),
            }
        if minutes:
            cfg.time_budget_s = max(60.0, float(minutes) * 60.0 - (time.perf_counter() - t_start))
        print(
            f"training pairs {full.shape}, validation {vf.shape}, device {device}, "
            f"threads {torch.get_num_threads()}, steps <= {cfg.steps}, budget {cfg.time_budget_s or 0:.0f} s",
            flush=True,
        )
        result = train(
            full,
            low,
            cfg,
            out,
            val=(vf, vl),
            device=device,
            resume=bool(args.resume),
            progress=console_progress("train "),
            cancel=lambda: stop["flag"],
        )
    finally:
        signal.signal(signal.SIGTERM, old)
    gen = result.generator.cpu()
    plot_curves(result.history, out / "loss_curves.png")
    card = build_card(gen, cfg, result.step, result.history, info)
    model_card = out / "model" / f"{MODEL_NAME}.json"
    saved_steps = None
    if model_card.is_file():
        try:
            saved_steps = json.loads(model_card.read_text(encoding="utf-8"))["training"]["steps"]
        except (OSError, ValueError, KeyError, TypeError):
            saved_steps = None
    if saved_steps != result.step or not (out / "model" / f"{MODEL_NAME}.safetensors").is_file():
        save_weights(MODEL_NAME, gen.state_dict(), card, out / "model")
        print(f"\nsaved {out / 'model' / (MODEL_NAME + '.safetensors')} after {result.step} steps", flush=True)
    if args.install:
        metrics = _evaluation_metrics(out)
        path = _install(out, metrics, card)
        print(f"installed {path}" + ("" if metrics else " (no evaluation metrics found in --out/evaluation)"))
    return 0


__all__ = [
    "TrainConfig",
    "PatchSampler",
    "TrainResult",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "plot_curves",
    "build_card",
    "load_training_pairs",
    "main",
    "DOSES",
    "MODEL_NAME",
    "MODEL_VERSION",
]
