"""CT noise for detector training crops (``medviewer train detector --ct-noise P``).

The detector's training phantoms are noise-free; its augmentation added white
Gaussian noise. Real CT noise is not white: filtered back-projection shapes
its spectrum (ramp x apodisation), the fan beam and bowtie make it
non-stationary, and dense paths leave streaks. After the detector's
resampling to its internal 1.4 mm grid it is blotchy at the scale of small
lesions. Measured on the 20 held-out phantoms of ``medviewer evaluate
detector`` (detector 1.6.0): simulated quarter-dose noise (SD about 20 HU in
the body) lowered the CPM from 0.870 to 0.673, white noise of the same SD only
to 0.797-0.847 (two noise draws).

:func:`build_noise_bank` simulates that noise once: phantoms at a native
0.7 mm (chest/abdomen) or 0.5 mm (head) pixel, the projection-domain
simulator's noise image at quarter dose (:func:`simulate_low_dose` with
``return_noise=True``), then the detector's own antialiased resampling to
the internal grid, as a scan's noise reaches the network. :func:`add_ct_noise`
adds a random crop of it, scaled to another dose, to a training crop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from medviewer.ai.detector import CONTEXT, INTERNAL_SPACING
from medviewer.errors import ExportError
from medviewer.fileio import write_json_atomic, write_npz_atomic
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

NOISE_BANK_VERSION = 1
NOISE_BANK_SEED0 = 12_000
"""Phantom seeds of the noise bank (training range, apart from every volume group's seeds)."""
NOISE_BANK_DOSE = 0.25
"""Dose fraction of the simulated noise (quarter dose)."""
NOISE_BANK_PIXEL_MM = {"body": 0.7, "head": 0.5}
"""Native pixel of the simulated scans, before resampling to the internal grid."""
NOISE_SCALE = (0.35, 1.6)
"""Log-uniform factor on the bank's noise: SD x 0.35 (a bit below full dose, whose SD is half the
quarter-dose one) to x 1.6 (tenth dose)."""


def _bank_file(folder: Path, n_body: int, n_head: int, slices: int, size: int) -> Path:
    return folder / f"ct_noise_v{NOISE_BANK_VERSION}_{n_body}b{n_head}h_{slices}x{size}.npz"


def build_noise_bank(
    folder: Path,
    n_body: int = 12,
    n_head: int = 4,
    slices: int = 16,
    size: int = 512,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> NDArray[np.float32]:
    """Simulated quarter-dose CT noise on the detector's internal grid, ``(n, z, y, x)`` HU.

    Built once and cached in ``folder`` (an ``.npz`` named by its parameters).

    Parameters
    ----------
    folder : Path
        Cache folder.
    n_body, n_head : int
        Chest/abdomen and head phantoms (seeds from :data:`NOISE_BANK_SEED0`).
    slices : int
        Slices per phantom (2.5 mm, the internal slice spacing); at least a
        training crop's depth with its context.
    size : int
        Native slice size in pixels (square).
    progress, cancel : callables, optional
        Progress per phantom; cancel between slices.
    """
    from medviewer.ai.detect import _resample, internal_shape
    from medviewer.training.detector_sampling import CROP_SLICES
    from medviewer.training.lowdose import simulate_low_dose
    from medviewer.training.phantom import make_phantom

    if n_body + n_head < 1:
        raise ValueError("the noise bank needs at least one phantom")
    depth = CROP_SLICES + 2 * CONTEXT
    if slices < depth:
        raise ValueError(f"slices must be >= {depth} (a training crop with its context), got {slices}")
    path = _bank_file(folder, n_body, n_head, slices, size)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return np.ascontiguousarray(f["noise"], dtype=np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ExportError(f"{path}: cannot read the cached noise bank ({exc}); delete it to rebuild") from exc
    prog = Progress(progress)
    regions = ["body"] * n_body + ["head"] * n_head
    out = []
    for n, region in enumerate(regions):
        px = NOISE_BANK_PIXEL_MM[region]
        seed = NOISE_BANK_SEED0 + n
        ph = make_phantom(seed, shape=(slices, size, size), spacing=(INTERNAL_SPACING[0], px, px), n_lesions=0, region=region,
                          z_center_mm=0.0 if region == "head" else float(np.random.default_rng(seed).uniform(-140.0, 20.0)))
        vox = np.asarray(ph.volume.voxels, np.float32)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
        noise = np.empty_like(vox)
        for k in range(slices):
            check_cancel(cancel, "CT noise bank")
            noise[k] = simulate_low_dose(vox[k], NOISE_BANK_DOSE, pixel_mm=px, seed=rng, return_noise=True)
        target = internal_shape(noise.shape, (INTERNAL_SPACING[0], px, px))
        with torch.inference_mode():
            small = _resample(torch.from_numpy(noise), target).numpy()
        out.append(small.astype(np.float32))
        prog((n + 1) / len(regions), f"CT noise bank {n + 1}/{len(regions)}")
    side = min(min(a.shape[1], a.shape[2]) for a in out)
    bank = np.stack([a[:, :side, :side] for a in out]).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(path, noise=bank)
    info = {"version": NOISE_BANK_VERSION, "dose": NOISE_BANK_DOSE, "pixel_mm": NOISE_BANK_PIXEL_MM, "n_body": n_body,
            "n_head": n_head, "slices": slices, "size": size, "seed0": NOISE_BANK_SEED0, "shape": list(bank.shape),
            "sd_hu": round(float(bank.std()), 2)}
    write_json_atomic(path.with_suffix(".json"), info)
    return bank


def add_ct_noise(hu: NDArray[np.float32], rng: np.random.Generator, bank: NDArray[np.float32]) -> NDArray[np.float32]:
    """``hu`` ``(z, y, x)`` plus a random crop of ``bank``'s noise scaled by a factor in :data:`NOISE_SCALE`."""
    nz, ny, nx = hu.shape
    b = int(rng.integers(bank.shape[0]))
    src = bank[b]
    if src.shape[0] < nz or src.shape[1] < ny or src.shape[2] < nx:
        raise ValueError(f"noise bank volumes {src.shape} are smaller than the crop {hu.shape}")
    k0 = int(rng.integers(src.shape[0] - nz + 1))
    j0 = int(rng.integers(src.shape[1] - ny + 1))
    i0 = int(rng.integers(src.shape[2] - nx + 1))
    scale = math.exp(rng.uniform(math.log(NOISE_SCALE[0]), math.log(NOISE_SCALE[1])))
    noise = src[k0 : k0 + nz, j0 : j0 + ny, i0 : i0 + nx]
    if rng.random() < 0.5:  # the bank holds few scans: turn them too
        noise = noise[:, ::-1, :]
    if rng.random() < 0.5:
        noise = np.swapaxes(noise, 1, 2) if ny == nx else noise
    return (hu + np.float32(scale) * noise).astype(np.float32)


def bank_info(bank: NDArray[np.float32]) -> dict[str, Any]:
    """What the model card says about the bank."""
    return {"volumes": int(bank.shape[0]), "shape": list(bank.shape[1:]), "sd_hu": round(float(bank.std()), 1)}


__all__ = ["NOISE_BANK_DOSE", "NOISE_SCALE", "build_noise_bank", "add_ct_noise", "bank_info"]
