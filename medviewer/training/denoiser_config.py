"""The denoiser's training recipe: :class:`TrainConfig` and the defaults behind it (no Qt, no training loop).

Held apart from :mod:`medviewer.training.train_denoiser` (the loop, checkpoints and the
command) so that the model card (:mod:`medviewer.training.denoiser_card`) and the loop
read one recipe. A run stores ``TrainConfig.to_json()`` in its checkpoint, so
``--resume`` continues with the recipe it was started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from medviewer.ai.denoiser import DenoiserConfig, LossWeights

MODEL_NAME = "denoiser"
PIXEL_NORM_NAMES = {"l1": "L1", "rmse": "RMSE"}
"""How the model card and the progress line name each pixel-loss norm."""
MODEL_VERSION = "1.2.0"
DOSES: tuple[float, float] = (0.08, 0.5)
"""Range of dose fractions of the training pairs (drawn log-uniformly per slice)."""
HEAD_PIXEL_SIZES_MM: tuple[float, ...] = (0.35, 0.45)
"""Pixel sizes of the head-phantom slices (head scans use a 17-25 cm field of view)."""
TARGETS = ("clean", "full")
"""Training targets. ``full`` (1.0.0, 1.1.0) taught the generator to stop at the noise of a
full-dose scan *of a body phantom at that pixel size*: on a slice whose low-dose noise is
already that low (a head at 0.39 mm with 19 HU) it removed almost nothing (5.6 HU of
18.8). ``clean`` asks for everything that is noise, which is what PSNR against a
noise-free or full-dose reference rewards."""
AIR_PATCH_MEAN_HU = -800.0
"""Training patches whose full-dose mean is below this (HU) are mostly air."""
AIR_PATCH_DRAWS = 6
"""Draws per patch while they come out mostly air (see ``TrainConfig.air_patches``)."""
PIXEL_SIZES_MM: tuple[float, ...] = (0.3, 0.4, 0.5, 0.7, 0.9)
"""Pixel sizes of the training slices: clinical reconstructions range from ~0.3 mm (small
field of view) to ~0.9 mm (large patients); the noise texture in pixels changes with them."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (stored in the checkpoint and the card)."""

    steps: int = 20000
    batch_size: int = 12
    patch: int = 96
    lr: float = 1e-3
    lr_min: float = 1e-5
    lr_d: float = 2e-4
    warmup: int = 100
    time_budget_s: float | None = None
    """Wall-clock budget: the schedule (lr decay, GAN phase, end) follows
    ``max(step / steps, elapsed / time_budget_s)``, so a run on a busy machine
    still ends on time with a fully decayed learning rate."""
    ckpt_every: int = 250
    val_every: int = 100
    seed: int = 0
    n_phantoms: int = 12
    """Phantoms per pixel size (the last one of each is held out for validation)."""
    slices_per_phantom: int = 8
    pixel_sizes: tuple[float, ...] = PIXEL_SIZES_MM
    """In-plane pixel sizes (mm) of the training slices, each with its own phantoms."""
    slice_size: int = 512
    """Side of the generated training slices (pixels)."""
    noise_scale: tuple[float, float] | None = (0.7, 1.8)
    """Half of the patches get their extra low-dose noise scaled by a log-uniform factor in
    this range (another dose of the same scan); None switches it off."""
    hu_offset: tuple[float, float] | None = (-24.0, 4.0)
    """30 % of the patches are shifted by a uniform HU offset in this range (scanner
    calibration; air at -1024 rather than -1000); None switches it off."""
    air_patches: float = 0.0
    """Share of the patches drawn anywhere in the slice, air included. The others are redrawn
    (up to 6 times) while mostly air (full-dose mean below -800 HU), which spends the steps on
    anatomy but shows the generator little air and little skin-air boundary, although PSNR
    over a head slice is two thirds air."""
    psf_mm: tuple[float, float] | None = None
    """Range of the training phantoms' in-plane scanner blur (Gaussian sigma, mm), one value per
    phantom drawn log-uniformly; None keeps every phantom at the default 0.38 mm (a soft-tissue
    kernel). A generator that only saw that blur treats anything sharper as noise: on head phantoms
    blurred at 0.15 mm its lead over tuned NLM fell from 1.8 to 0.2 dB at quarter dose."""
    cut: float = 0.0
    """Share of the training slices cut straight to padding (-1024 HU) before the scanner is simulated:
    outside a field-of-view circle through the body, or outside a mask moved 4-20 mm into it
    (:mod:`medviewer.training.hard_edges`). Such steps, which no scanner blur softens, cost the
    generator most of its PSNR deficit on the skull-stripped eCT_Supplemental slice."""
    init: str | None = None
    """Models folder whose generator weights start the run (fine-tuning), or None."""
    teacher: str | None = None
    """Models folder of a trained denoiser whose outputs the generator also learns from (distillation), or None."""
    distill: float = 0.0
    """Share of the teacher's output in the generator's pixel and edge targets: ``clean + distill * (teacher - clean)``.
    The teacher's output is close to the best estimate the low-dose input allows, without the clean target's
    irreducible part, so a smaller generator fits it with less gradient noise; the adversarial term still sees
    only clean slices as real. 0 = no teacher."""
    head_pixel_sizes: tuple[float, ...] = HEAD_PIXEL_SIZES_MM
    """In-plane pixel sizes (mm) of the head-phantom slices; each gets ``n_head_phantoms``."""
    n_head_phantoms: int = 12
    """Head phantoms per head pixel size (the last one of each held out); 0 = body only."""
    n_leaves: int = 0
    """Sets of dead-leaves slices (:mod:`medviewer.training.dead_leaves`, a generic image prior) per body
    pixel size, each of ``slices_per_phantom`` slices (the last set of each held out); 0 = none."""
    n_images: int = 0
    """Sets of slices made from the sample packages' MR and radiograph images (:mod:`medviewer.training.image_slices`,
    real structure given CT values) per body pixel size, each of ``slices_per_phantom`` slices (the last set of each
    held out); 0 = none."""
    n_photos: int = 0
    """Sets of slices made from scikit-image's bundled photographs (:data:`medviewer.training.image_slices.PHOTO_SOURCES`,
    real-world structure given CT values) per body pixel size, as ``n_images``; 0 = none."""
    target: str = "clean"
    """``"clean"``: the generator learns the noise-free phantom (E[clean | low dose]);
    ``"full"``: the simulated full-dose scan (E[full dose | low dose], which keeps the
    full-dose noise). See :data:`TARGETS`."""
    doses: tuple[float, float] = DOSES
    version: str = MODEL_VERSION
    """Version written to the model card (``--version``)."""
    loss: LossWeights = field(default_factory=LossWeights)
    arch: DenoiserConfig = field(default_factory=DenoiserConfig)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["doses"] = list(self.doses)
        d["pixel_sizes"] = list(self.pixel_sizes)
        d["head_pixel_sizes"] = list(self.head_pixel_sizes)
        d["noise_scale"] = list(self.noise_scale) if self.noise_scale else None
        d["hu_offset"] = list(self.hu_offset) if self.hu_offset else None
        d["psf_mm"] = list(self.psf_mm) if self.psf_mm else None
        d["loss"] = self.loss.to_json()
        d["arch"] = self.arch.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_json` (unknown keys ignored, missing ones at their defaults)."""
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in names}
        for key in ("doses", "pixel_sizes", "head_pixel_sizes", "noise_scale", "hu_offset", "psf_mm"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if isinstance(kw.get("loss"), dict):
            kw["loss"] = LossWeights(**kw["loss"])
        if isinstance(kw.get("arch"), dict):
            kw["arch"] = DenoiserConfig.from_json(kw["arch"])
        return cls(**kw)


__all__ = [
    "TrainConfig",
    "MODEL_NAME",
    "MODEL_VERSION",
    "PIXEL_NORM_NAMES",
    "DOSES",
    "HEAD_PIXEL_SIZES_MM",
    "TARGETS",
    "AIR_PATCH_MEAN_HU",
    "AIR_PATCH_DRAWS",
    "PIXEL_SIZES_MM",
]
