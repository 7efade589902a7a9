"""GAN low-dose CT denoiser: generator, discriminator and training losses (no Qt).

The generator is a small residual U-Net that works on a pixel-unshuffled
slice (2x2 pixels -> 4 channels), so its first stage runs at a quarter of
the pixels; it predicts the *noise* and subtracts it from the input:
``denoised = x - G(x)``. Inputs and outputs are Hounsfield units; the model
scales them internally by :data:`HU_SCALE`.

The discriminator is a PatchGAN (Isola et al. 2017) on soft-tissue-windowed
images; the adversarial term uses the least-squares GAN loss (Mao et al.
2017), which trains more stably than the log loss at small weights.

Examples
--------
>>> import torch
>>> g = DenoiserNet()
>>> x = torch.zeros(1, 1, 64, 64)
>>> g(x).shape
torch.Size([1, 1, 64, 64])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HU_SCALE = 1000.0
"""HU are divided by this inside the networks (water 0, air -1, dense bone ~ +1)."""

SIZE_MULTIPLE = 8
"""Slice height and width must be multiples of this (the pipeline pads)."""


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture hyper-parameters of :class:`DenoiserNet` (stored in the model card).

    Parameters
    ----------
    c0, c1, c2 : int
        Channels at 1/2, 1/4 and 1/8 of the input resolution.
    n_bottom : int
        3x3 convolutions at the lowest resolution (receptive field for streaks).
    n_refine : int
        Residual blocks at 1/2 resolution before the output layers (0 in 1.0-1.2):
        capacity where edges and bone are, where the net kept most of the noise.
    refine_width : int
        Inner channels of each refinement block.
    """

    c0: int = 16
    c1: int = 32
    c2: int = 64
    n_bottom: int = 4
    n_refine: int = 0
    refine_width: int = 32

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DenoiserConfig":
        return cls(**{k: int(d[k]) for k in ("c0", "c1", "c2", "n_bottom", "n_refine", "refine_width") if k in d})


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class RefineBlock(nn.Module):
    """``x + conv(act(conv(x)))`` whose last convolution starts at zero, so adding blocks
    to a trained generator leaves its output unchanged until they are trained."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, width), _act(), _conv(width, channels))
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DenoiserNet(nn.Module):
    """Residual U-Net generator: HU in, HU out, predicts the noise.

    Parameters
    ----------
    config : DenoiserConfig, optional
        Channel widths; the default is the shipped architecture.

    Notes
    -----
    Layout (for an ``H x W`` slice): pixel-unshuffle 2 -> ``c0`` channels at
    ``H/2`` (2 convs) -> stride-2 conv to ``c1`` at ``H/4`` (2 convs) ->
    stride-2 conv to ``c2`` at ``H/8`` (``n_bottom`` + 1 convs) -> 1x1 conv +
    pixel-shuffle up with additive skips -> ``n_refine`` residual blocks at
    ``H/2`` -> 4 channels -> pixel-shuffle to the noise estimate. No
    normalisation layers, so inference is identical for any batch size and tile.
    """

    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        cfg = config or DenoiserConfig()
        self.config = cfg
        c0, c1, c2 = cfg.c0, cfg.c1, cfg.c2
        self.head = nn.Sequential(_conv(4, c0), _act(), _conv(c0, c0), _act())
        self.down1 = nn.Sequential(_conv(c0, c1, 2), _act(), _conv(c1, c1), _act())
        bottom: list[nn.Module] = [_conv(c1, c2, 2), _act()]
        for _ in range(cfg.n_bottom):
            bottom += [_conv(c2, c2), _act()]
        self.down2 = nn.Sequential(*bottom)
        self.up2 = nn.Sequential(_conv(c2, c1 * 4, k=1), nn.PixelShuffle(2))
        self.dec1 = nn.Sequential(_conv(c1, c1), _act())
        self.up1 = nn.Sequential(_conv(c1, c0 * 4, k=1), nn.PixelShuffle(2))
        self.refine = nn.Sequential(*[RefineBlock(c0, cfg.refine_width) for _ in range(cfg.n_refine)])
        self.dec0 = nn.Sequential(_conv(c0, c0), _act(), _conv(c0, 4))
        # start close to the identity: the last layer predicts little noise
        last = self.dec0[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()

    def noise(self, x_hu: Tensor) -> Tensor:
        """The predicted noise (HU) of ``x_hu`` ``(N, 1, H, W)``, H and W multiples of 8."""
        z = F.pixel_unshuffle(x_hu / HU_SCALE, 2)
        a = self.head(z)
        b = self.down1(a)
        d = self.down2(b)
        b = self.dec1(self.up2(d) + b)
        a = self.dec0(self.refine(self.up1(b) + a))
        return F.pixel_shuffle(a, 2) * HU_SCALE

    def forward(self, x_hu: Tensor) -> Tensor:
        """Denoised slices (HU) ``(N, 1, H, W)`` = input minus predicted noise."""
        return x_hu - self.noise(x_hu)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic: one realism score per ~46 px patch of a soft-tissue-windowed slice.

    Parameters
    ----------
    width : int
        Channels of the first layer (doubled per stride-2 stage).
    window : tuple of float
        HU window (low, high) mapped to [-1, 1] before scoring: noise texture
        matters where radiologists read, in soft tissue.
    """

    def __init__(self, width: int = 32, window: tuple[float, float] = (-160.0, 240.0)) -> None:
        super().__init__()
        self.window = (float(window[0]), float(window[1]))
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, w * 2, 4, 2, 1),
            nn.GroupNorm(8, w * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w * 2, w * 4, 4, 2, 1),
            nn.GroupNorm(8, w * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w * 4, 1, 3, 1, 1),
        )

    def forward(self, x_hu: Tensor) -> Tensor:
        lo, hi = self.window
        x = (x_hu.clamp(lo - 200.0, hi + 200.0) - (lo + hi) / 2) / ((hi - lo) / 2)
        return self.net(x)


# ------------------------------------------------------------------ losses
PIXEL_NORMS = ("l1", "rmse")
"""Norms of the generator's pixel loss (:attr:`LossWeights.pixel_norm`)."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss terms (recorded in the model card).

    The pixel term (L1 in units of :data:`HU_SCALE`) carries fidelity and
    drives PSNR; the gradient term (L1 of finite differences) penalises
    blurred edges and removed fine structure, which the pixel term alone
    tolerates; the adversarial term is small so it only restores a natural
    noise texture and sharpness without trading away fidelity or inventing
    structure. It is switched on after a pixel-only warm-up (``gan_start``
    fraction of the steps), once the generator already denoises.

    ``pixel_norm`` picks the pixel term's norm: ``"l1"`` (mean absolute error)
    or ``"rmse"`` (root mean squared error, whose optimum is the one of PSNR and
    which weighs large errors, as at bone and air edges, more than L1 does; its
    value is in the same HU/1000 units as L1, so the weights keep their meaning).

    ``ssim`` weighs ``1 - SSIM`` (:func:`ssim_loss`), the structural similarity
    the evaluation scores, computed the same way (HU clipped to [-1000, 1000],
    data range 2000, 7 x 7 windows); 0, the default, leaves it out.
    """

    pixel: float = 1.0
    gradient: float = 0.5
    adversarial: float = 0.001
    gan_start: float = 0.6
    pixel_norm: str = "l1"
    ssim: float = 0.0

    def __post_init__(self) -> None:
        if self.pixel_norm not in PIXEL_NORMS:
            raise ValueError(f"unknown pixel loss {self.pixel_norm!r}; choose one of {', '.join(PIXEL_NORMS)}")

    def to_json(self) -> dict[str, float | str]:
        return {k: (v if isinstance(v, str) else float(v)) for k, v in asdict(self).items()}


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward finite differences along x and y of ``(N, C, H, W)``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def pixel_loss(pred_hu: Tensor, target_hu: Tensor, norm: str = "l1") -> Tensor:
    """Mean absolute (``"l1"``) or root mean squared (``"rmse"``) error in units of :data:`HU_SCALE`."""
    if norm == "rmse":
        return torch.sqrt(F.mse_loss(pred_hu / HU_SCALE, target_hu / HU_SCALE) + 1e-12)
    if norm != "l1":
        raise ValueError(f"unknown pixel loss {norm!r}; choose one of {', '.join(PIXEL_NORMS)}")
    return F.l1_loss(pred_hu / HU_SCALE, target_hu / HU_SCALE)


def gradient_loss(pred_hu: Tensor, target_hu: Tensor) -> Tensor:
    """L1 between the image gradients of prediction and target (edge fidelity)."""
    pgx, pgy = image_gradients(pred_hu / HU_SCALE)
    tgx, tgy = image_gradients(target_hu / HU_SCALE)
    return F.l1_loss(pgx, tgx) + F.l1_loss(pgy, tgy)


SSIM_WINDOW = 7
"""Side of the SSIM windows: scikit-image's default, which :func:`medviewer.training.metrics.ssim_hu` scores with."""


def ssim_hu_torch(pred_hu: Tensor, target_hu: Tensor) -> Tensor:
    """Mean SSIM of ``(N, 1, H, W)`` HU images, differentiable, as the evaluation computes it.

    It follows :func:`skimage.metrics.structural_similarity` with the
    arguments :func:`medviewer.training.metrics.ssim_hu` uses: HU clipped to
    [-1000, 1000], data range 2000, uniform 7 x 7 windows with the sample
    covariance, K1 = 0.01, K2 = 0.03, and the mean taken over the windows that
    lie inside the image (scikit-image crops the border the same way).
    """
    x = torch.clamp(pred_hu / HU_SCALE, -1.0, 1.0)
    y = torch.clamp(target_hu / HU_SCALE, -1.0, 1.0)
    w = SSIM_WINDOW
    n = w * w
    cov = n / (n - 1.0)
    ux, uy = F.avg_pool2d(x, w, 1), F.avg_pool2d(y, w, 1)
    vx = cov * (F.avg_pool2d(x * x, w, 1) - ux * ux)
    vy = cov * (F.avg_pool2d(y * y, w, 1) - uy * uy)
    vxy = cov * (F.avg_pool2d(x * y, w, 1) - ux * uy)
    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2  # data range 2000 HU = 2.0 in HU_SCALE units
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean()


def ssim_loss(pred_hu: Tensor, target_hu: Tensor) -> Tensor:
    """``1 - SSIM`` (:func:`ssim_hu_torch`): 0 for a perfect prediction."""
    return 1.0 - ssim_hu_torch(pred_hu, target_hu)


def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """Least-squares GAN loss of the generator (wants fakes scored 1)."""
    return torch.mean((fake_scores - 1.0) ** 2)


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Least-squares GAN loss of the discriminator (real -> 1, fake -> 0)."""
    return 0.5 * (torch.mean((real_scores - 1.0) ** 2) + torch.mean(fake_scores**2))


def generator_loss(
    pred_hu: Tensor,
    target_hu: Tensor,
    weights: LossWeights,
    fake_scores: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total generator loss and its parts (for the loss curves).

    Parameters
    ----------
    pred_hu, target_hu : Tensor
        Denoised and full-dose patches ``(N, 1, H, W)`` in HU.
    weights : LossWeights
    fake_scores : Tensor, optional
        Discriminator scores of ``pred_hu``; None during the pixel warm-up.
    """
    lp = pixel_loss(pred_hu, target_hu, weights.pixel_norm)
    lg = gradient_loss(pred_hu, target_hu)
    total = weights.pixel * lp + weights.gradient * lg
    parts = {"pixel": float(lp.detach()), "gradient": float(lg.detach())}
    if weights.ssim > 0:
        ls = ssim_loss(pred_hu, target_hu)
        total = total + weights.ssim * ls
        parts["ssim"] = float(ls.detach())
    if fake_scores is not None:
        la = lsgan_generator_loss(fake_scores)
        total = total + weights.adversarial * la
        parts["adversarial"] = float(la.detach())
    parts["total"] = float(total.detach())
    return total, parts


def count_macs(model: nn.Module, height: int = 512, width: int = 512) -> int:
    """Multiply-accumulates of one forward pass on a ``height x width`` slice.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2).
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(1, 1, height, width, dtype=param.dtype, device=param.device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops() // 2)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


__all__ = [
    "HU_SCALE",
    "SIZE_MULTIPLE",
    "DenoiserConfig",
    "DenoiserNet",
    "RefineBlock",
    "PatchDiscriminator",
    "LossWeights",
    "PIXEL_NORMS",
    "pixel_loss",
    "gradient_loss",
    "ssim_hu_torch",
    "ssim_loss",
    "lsgan_generator_loss",
    "lsgan_discriminator_loss",
    "generator_loss",
    "count_macs",
    "count_parameters",
]
