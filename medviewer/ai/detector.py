"""The lesion-detector network: a 2.5D CNN with a bidirectional ConvGRU along z.

Architecture (``LesionNet``)
----------------------------
* **Input**: ``(S, C, H, W)`` — S slices of one volume at the model's internal
  spacing (:data:`INTERNAL_SPACING`), each with its ``2 * CONTEXT + 1``
  neighbouring slices as channels (2.5D), every slice in each HU window of
  the model (``LesionNet.windows``: by default the two :data:`WINDOWS`; a
  model may add a narrow reading window), scaled to [-1, 1] by
  :func:`normalize_hu`, so ``C = len(windows) * (2 * CONTEXT + 1)`` (10 by default).
* **Encoder** (per slice, 2D): three stride-2 stages (16, 32, 48 channels) of
  conv-BN-ReLU pairs, down to 1/8 of the input size.
* **Recurrent module**: a bidirectional convolutional GRU runs over the
  bottleneck features slice by slice, forwards and backwards along z; its two
  hidden states are concatenated with the bottleneck, so every slice sees the
  whole volume and the map is consistent across slices.
* **Decoder**: two upsampling stages with skip connections back to 1/2 of the
  input size, then a 1x1 head with five outputs: a lesion **segmentation** logit (the
  per-pixel confidence map), a lesion-**centre** heat-map logit (CenterNet
  style) from which candidate extraction picks 3D peaks, and a sub-voxel
  centre **offset** (z, y, x) read at each peak.
* **Refinement** (optional, ``n_refine``): residual conv blocks at 1/2 size
  between the decoder and the head. Their last convolution starts at zero, so
  a trained network grown by such blocks gives the same output until it is
  fine-tuned (capacity where small lesions are resolved).

The network is cheap (about 0.45 GMAC per 256x256 internal slice, see
:func:`count_macs`) so the whole detector meets <= 60 ms per 512x512 source
slice on two CPU cores. No Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

#: Model input spacing (z, y, x) in mm; volumes are resampled to it and back.
INTERNAL_SPACING: tuple[float, float, float] = (2.5, 1.4, 1.4)
#: HU window applied before scaling (``normalize_hu``): the wide window.
HU_CLIP: tuple[float, float] = (-1000.0, 400.0)
#: Input windows (each clipped and scaled to [-1, 1]): wide (lung to bone) and
#: soft tissue (W400/L40), so low-contrast lesions keep their contrast.
WINDOWS: tuple[tuple[float, float], ...] = (HU_CLIP, (-160.0, 240.0))
#: Neighbouring slices on each side used as input channels (2.5D).
CONTEXT: int = 2
#: Output stride of the heads relative to the input (the maps are at 1/2 size).
OUTPUT_STRIDE: int = 2
#: Network input size must be a multiple of this.
SIZE_MULTIPLE: int = 8


Window = tuple[float, float]


def normalize_hu(hu: NDArray[np.floating[Any]] | torch.Tensor, windows: tuple[Window, ...] = WINDOWS) -> Any:
    """Window an ``(S, H, W)`` HU volume into ``(S, len(windows), H, W)`` channels in [-1, 1].

    Each window ``(lo, hi)`` (default :data:`WINDOWS`; a model's own are
    ``LesionNet.windows``) clips HU to [lo, hi] and maps it linearly to [-1, 1].
    """
    outs = []
    for lo, hi in windows:
        mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
        if isinstance(hu, torch.Tensor):
            outs.append((hu.clamp(lo, hi) - mid) / half)
        else:
            outs.append(((np.clip(hu, lo, hi) - mid) / half).astype(np.float32))
    if isinstance(hu, torch.Tensor):
        return torch.stack(outs, dim=1)
    return np.stack(outs, axis=1)


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ConvGRUCell(nn.Module):
    """A convolutional GRU cell (3x3 gates)."""

    def __init__(self, cin: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, 3, padding=1)
        self.cand = nn.Conv2d(cin + hidden, hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: input ``x`` (N, cin, H, W), state ``h`` (N, hidden, H, W)."""
        zr = torch.sigmoid(self.gates(torch.cat([x, h], dim=1)))
        z, r = zr.chunk(2, dim=1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n


class BiConvGRU(nn.Module):
    """Bidirectional ConvGRU over the slice axis of a ``(B, S, C, H, W)`` sequence."""

    def __init__(self, cin: int, hidden: int) -> None:
        super().__init__()
        self.fwd = ConvGRUCell(cin, hidden)
        self.bwd = ConvGRUCell(cin, hidden)
        self.hidden = hidden

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Return ``(B, S, 2 * hidden, H, W)``: forward and backward states per slice."""
        b, s, _, h, w = seq.shape
        hf = seq.new_zeros((b, self.hidden, h, w))
        hb = seq.new_zeros((b, self.hidden, h, w))
        outs_f: list[torch.Tensor] = []
        outs_b: list[torch.Tensor | None] = [None] * s
        for k in range(s):
            hf = self.fwd(seq[:, k], hf)
            outs_f.append(hf)
        for k in range(s - 1, -1, -1):
            hb = self.bwd(seq[:, k], hb)
            outs_b[k] = hb
        return torch.stack([torch.cat([f, bk], dim=1) for f, bk in zip(outs_f, outs_b)], dim=1)  # type: ignore[list-item]


class RefineBlock(nn.Module):
    """Residual block ``x + conv(relu(bn(conv(x))))`` whose last convolution starts at zero (the identity)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_cbr(channels, width), nn.Conv2d(width, channels, 3, padding=1, bias=False))
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the learned correction (same shape)."""
        return x + self.body(x)


class LesionNet(nn.Module):
    """2.5D CNN + bidirectional ConvGRU lesion detector (see module docstring).

    Parameters
    ----------
    context : int
        Neighbouring slices on each side used as channels.
    widths : tuple of int
        Channels of the three encoder stages.
    hidden : int
        ConvGRU hidden channels per direction.
    n_refine : int
        Residual refinement blocks at 1/2 size before the head (0: none).
    refine_width : int
        Inner channels of each refinement block.
    windows : tuple of (lo, hi)
        Input HU windows (default :data:`WINDOWS`); each neighbouring slice
        enters once per window.

    Examples
    --------
    >>> net = LesionNet().eval()
    >>> x = torch.zeros(1, 3, net.in_channels, 64, 64)  # (batch, slices, channels, H, W)
    >>> seg, heat, offset = net(x)
    >>> tuple(seg.shape), tuple(heat.shape), tuple(offset.shape)
    ((1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 3, 32, 32))
    """

    def __init__(
        self,
        context: int = CONTEXT,
        widths: tuple[int, int, int] = (16, 32, 48),
        hidden: int = 24,
        n_refine: int = 0,
        refine_width: int = 32,
        windows: tuple[Window, ...] = WINDOWS,
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.windows = tuple((float(lo), float(hi)) for lo, hi in windows)
        if not self.windows or any(not hi > lo for lo, hi in self.windows):
            raise ValueError(f"input windows must be non-empty (lo, hi) pairs with hi > lo, got {windows}")
        cin = len(self.windows) * (2 * context + 1)
        self.in_channels = cin
        self.context = context
        self.widths = widths
        self.hidden_size = hidden
        self.n_refine = n_refine
        self.refine_width = refine_width
        self.enc1 = nn.Sequential(_cbr(cin, c1, 2), _cbr(c1, c1))  # 1/2
        self.enc2 = nn.Sequential(_cbr(c1, c2, 2), _cbr(c2, c2))  # 1/4
        self.enc3 = nn.Sequential(_cbr(c2, c3, 2), _cbr(c3, c3))  # 1/8
        self.gru = BiConvGRU(c3, hidden)
        self.dec2 = _cbr(c3 + 2 * hidden + c2, c2)  # at 1/4
        self.dec1 = _cbr(c2 + c1, c1)  # at 1/2
        self.refine = nn.Sequential(*[RefineBlock(c1, refine_width) for _ in range(n_refine)])  # at 1/2
        self.head = nn.Conv2d(c1, 5, 1)  # seg logit, centre-heat logit, centre offset (z, y, x)
        bias = self.head.bias
        assert bias is not None
        nn.init.constant_(bias, 0.0)
        with torch.no_grad():
            bias[:2] = -4.0

    # The three stages are separate so inference can stream slices in batches
    # (and check cancel between batches) while the GRU sees the whole volume.
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-slice encoder: ``(N, C, H, W)`` -> skips at 1/2, 1/4 and bottleneck at 1/8."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        return e1, e2, e3

    def decode(self, e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Per-slice decoder: returns ``(N, 5, H/2, W/2)``: seg logit, heat logit, offset (z, y, x)."""
        b = torch.cat([e3, g], dim=1)
        d2 = self.dec2(torch.cat([F.interpolate(b, size=e2.shape[-2:], mode="nearest"), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="nearest"), e1], dim=1))
        return self.head(self.refine(d1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, S, C, H, W) -> seg and heat logits ``(B, S, H/2, W/2)`` and offsets ``(B, S, 3, H/2, W/2)``.

        The offset is the lesion centre minus the voxel position in output-grid
        voxels (z, y, x), meaningful next to heat-map peaks (CenterNet style).
        """
        b, s, c, h, w = x.shape
        flat = x.reshape(b * s, c, h, w)
        if x.device.type == "cpu":
            flat = flat.contiguous(memory_format=torch.channels_last)
        e1, e2, e3 = self.encode(flat)
        g = self.gru(e3.reshape(b, s, *e3.shape[1:])).reshape(b * s, -1, *e3.shape[-2:])
        out = self.decode(e1, e2, e3, g)
        out = out.reshape(b, s, 5, *out.shape[-2:])
        return out[:, :, 0], out[:, :, 1], out[:, :, 2:]


def config_windows(config: dict[str, Any] | None) -> tuple[Window, ...]:
    """The input windows a card's ``"config"`` entry names (:data:`WINDOWS` when it names none)."""
    return tuple((float(lo), float(hi)) for lo, hi in (config or {}).get("windows", WINDOWS))


def build_model(config: dict[str, Any] | None = None) -> LesionNet:
    """A :class:`LesionNet` from a model card's ``"config"`` entry (or defaults)."""
    cfg = dict(config or {})
    return LesionNet(
        context=int(cfg.get("context", CONTEXT)),
        widths=tuple(int(w) for w in cfg.get("widths", (16, 32, 48))),  # type: ignore[arg-type]
        hidden=int(cfg.get("hidden", 24)),
        n_refine=int(cfg.get("n_refine", 0)),
        refine_width=int(cfg.get("refine_width", 32)),
        windows=config_windows(cfg),
    )


def describe(model: LesionNet) -> str:
    """The model card's ``"architecture"`` line for ``model``."""
    text = (f"LesionNet 2.5D CNN ({2 * model.context + 1} neighbouring slices x {len(model.windows)} HU windows as input "
            "channels, U-Net encoder/decoder) + bidirectional ConvGRU along z")
    if model.n_refine:
        text += f"; {model.n_refine} residual refinement block{'s' if model.n_refine > 1 else ''} ({model.refine_width} channels) at 1/2 size"
    return text


def model_config(model: LesionNet) -> dict[str, Any]:
    """The card's ``"config"`` entry that rebuilds ``model`` with :func:`build_model`."""
    cfg: dict[str, Any] = {"context": model.context, "widths": list(model.widths), "hidden": model.hidden_size}
    if model.n_refine:  # absent for the original architecture, so older cards stay as they were
        cfg.update(n_refine=model.n_refine, refine_width=model.refine_width)
    if model.windows != WINDOWS:
        cfg["windows"] = [list(w) for w in model.windows]
    return cfg


def grow_input_windows(
    state: dict[str, torch.Tensor], old: tuple[Window, ...], new: tuple[Window, ...], context: int = CONTEXT
) -> dict[str, torch.Tensor]:
    """Map trained weights with input windows ``old`` onto a network with windows ``new``.

    ``old`` must be a prefix of ``new``. Channels are slice-major (slice ``s``,
    window ``w`` is channel ``s * len(windows) + w``); the first convolution's
    weights of the added windows start at zero, so the grown network computes
    what the trained one did until it is fine-tuned.
    """
    if tuple(new[: len(old)]) != tuple(old):
        raise ValueError(f"the trained windows {list(old)} must come first in {list(new)}")
    key = "enc1.0.0.weight"
    w_old = state[key]
    n_slices = 2 * context + 1
    if w_old.shape[1] != n_slices * len(old):
        raise ValueError(f"{key} has {w_old.shape[1]} input channels, expected {n_slices * len(old)}")
    w_new = w_old.new_zeros((w_old.shape[0], n_slices * len(new), *w_old.shape[2:]))
    for s in range(n_slices):
        w_new[:, s * len(new) : s * len(new) + len(old)] = w_old[:, s * len(old) : (s + 1) * len(old)]
    return {**state, key: w_new}


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: LesionNet, size: int = 256, slices: int = 8) -> float:
    """Multiply-accumulates per internal ``size x size`` slice (convolutions only).

    Counted with forward hooks on every ``Conv2d`` over a ``slices``-slice
    forward pass, then divided by ``slices``.
    """
    total = [0]

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        assert isinstance(mod, nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total[0] += int(out.numel() * k)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, slices, model.in_channels, size, size))
            model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total[0] / slices


__all__ = [
    "INTERNAL_SPACING",
    "HU_CLIP",
    "WINDOWS",
    "CONTEXT",
    "OUTPUT_STRIDE",
    "SIZE_MULTIPLE",
    "normalize_hu",
    "ConvGRUCell",
    "BiConvGRU",
    "RefineBlock",
    "grow_input_windows",
    "config_windows",
    "LesionNet",
    "build_model",
    "model_config",
    "describe",
    "count_params",
    "count_macs",
]
