"""The run folder of a detector training: checkpoints, the run's architecture, loss curves.

:func:`save_checkpoint` / :func:`load_checkpoint` write and restore
``checkpoint.safetensors`` (model, optimizer moments, torch RNG state) and
``state.json`` (step, history, hard negatives, numpy RNG state, config);
:func:`run_config` reads the architecture a run was saved with,
:func:`resume_options` the training options it was started with, and
:func:`grown_config` (with :func:`parse_window` for ``--window``) gives the one
a new run grows from its ``--init`` weights; :func:`plot_losses` draws the loss
curves.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from medviewer.ai.detector import LesionNet, config_windows
from medviewer.ai.weights import write_json_atomic
from medviewer.errors import ModelError


def _optimizer_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key, val in st.items():
                if isinstance(val, torch.Tensor):
                    out[f"opt.{names[id(p)]}.{key}"] = val.detach().clone().reshape(val.shape)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for key, val in tensors.items():
        if not key.startswith("opt."):
            continue
        pname, skey = key[4:].rsplit(".", 1)
        if pname in params:
            opt.state[params[pname]][skey] = val.clone()


def save_checkpoint(
    run: Path, model: LesionNet, opt: torch.optim.Optimizer, state: dict[str, Any], rng: np.random.Generator
) -> Path:
    """Atomically write ``checkpoint.safetensors`` + ``state.json`` into ``run``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.cpu().contiguous() for k, v in _optimizer_tensors(opt, model).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    path = run / "checkpoint.safetensors"
    tmp = run / ".checkpoint.safetensors.partial"
    save_file(tensors, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    st = dict(state)
    st["numpy_rng"] = rng.bit_generator.state
    write_json_atomic(run / "state.json", st)
    return path


def load_checkpoint(
    run: Path, model: LesionNet, opt: torch.optim.Optimizer | None, rng: np.random.Generator | None
) -> dict[str, Any]:
    """Restore a run written by :func:`save_checkpoint`; returns the state dict."""
    path = run / "checkpoint.safetensors"
    try:
        tensors = load_file(str(path))
        state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot resume from {run}: {exc}") from exc
    msd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(msd, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"checkpoint {path} does not fit the model: {exc}") from exc
    if opt is not None:
        _load_optimizer(opt, model, tensors)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if rng is not None and "numpy_rng" in state:
        rng.bit_generator.state = state["numpy_rng"]
    return state


#: Training options a run keeps across ``--resume`` unless given again (``state.json`` "options").
RUN_OPTIONS: tuple[str, ...] = ("steps", "batch_size", "minutes", "paste", "paste_edge", "vessels", "texture", "ct_noise", "cut", "spatial", "spatial_scale", "hard_negative_every")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`RUN_OPTIONS` of ``args`` (``None`` where neither given nor taken from the run)."""
    return {name: getattr(args, name, None) for name in RUN_OPTIONS}


def resume_options(args: argparse.Namespace, run: Path) -> tuple[argparse.Namespace, list[str]]:
    """``args`` with the options the run was started with filled in where this command line leaves them out.

    A resumed run then continues as it was started (step cap, budget, augmentation) instead of
    falling back to the defaults. Returns the new namespace and the ``--option value`` texts taken
    from the run. Runs saved before options were recorded give ``args`` back unchanged.
    """
    try:
        saved = json.loads((run / "state.json").read_text(encoding="utf-8")).get("options") or {}
    except (OSError, ValueError, AttributeError):
        saved = {}
    merged = argparse.Namespace(**vars(args))
    taken: list[str] = []
    for name in RUN_OPTIONS:
        if getattr(args, name, None) is None and saved.get(name) is not None:
            setattr(merged, name, saved[name])
            taken.append(f"--{name.replace('_', '-')} {saved[name]}")
    return merged, taken


def run_config(run: Path) -> dict[str, Any]:
    """The architecture (``model_config``) a run's checkpoint was saved with; {} for the default one."""
    try:
        cfg = json.loads((run / "state.json").read_text(encoding="utf-8")).get("config") or {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the run state in {run}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ModelError(f"the run state in {run} has an invalid 'config' entry")
    return cfg


def parse_range(spec: str, option: str, what: str, example: str, limits: tuple[float, float], unit: str = "") -> tuple[float, float]:
    """An option's ``"LO:HI"`` -> ``(lo, hi)`` with ``limits[0] <= lo < hi <= limits[1]``; a ModelError names a bad spec.

    >>> parse_range("0.8:1.6", "--spatial-scale", "magnifications", "0.8:1.6", (0.5, 2.0))
    (0.8, 1.6)
    """
    try:
        lo, hi = (float(v) for v in str(spec).split(":"))
    except ValueError:
        raise ModelError(f"{option} {spec!r}: expected LO:HI {what}, e.g. {example}") from None
    if not (limits[0] <= lo < hi <= limits[1]):
        raise ModelError(f"{option} {spec!r}: need {limits[0]:g} <= LO < HI <= {limits[1]:g}{unit}")
    return lo, hi


def parse_window(spec: str) -> tuple[float, float]:
    """``"LO:HI"`` (HU) -> ``(lo, hi)``; a ModelError names a bad spec.

    >>> parse_window("-20:100")
    (-20.0, 100.0)
    """
    return parse_range(spec, "--window", "in HU", "-20:100", (-1100.0, 3100.0), " HU")


def grown_config(
    base: dict[str, Any] | None, refine: int | None, add_windows: Sequence[tuple[float, float]] = ()
) -> dict[str, Any]:
    """The architecture of a run: ``base`` (an --init card's config) grown by refinement blocks and input windows.

    ``refine`` is the total number of refinement blocks; ``add_windows`` are
    appended to the input windows. Both can only grow: a trained network
    keeps what it has.

    >>> cfg = grown_config({"context": 2, "widths": [16, 32, 48], "hidden": 24}, 2, [(-20.0, 100.0)])
    >>> cfg["n_refine"], cfg["windows"][-1]
    (2, [-20.0, 100.0])
    """
    cfg = dict(base or {})
    have = int(cfg.get("n_refine", 0))
    if refine is not None:
        if not have <= int(refine) <= 8:
            raise ModelError(f"--refine {refine}: choose {have}..8 (the init weights have {have})")
        if int(refine):
            cfg["n_refine"] = int(refine)
            cfg.setdefault("refine_width", 32)
    if add_windows:
        old = config_windows(cfg)
        new = tuple((float(lo), float(hi)) for lo, hi in add_windows)
        if any(w in old for w in new) or len(set(new)) < len(new):
            raise ModelError(f"--window: each added window must be new (the network has {[list(w) for w in old]})")
        cfg["windows"] = [list(w) for w in old + new]
    return cfg


def plot_losses(history: list[dict[str, float]], path: Path) -> None:
    """Write the loss curves (raw and moving average) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = np.array([h["step"] for h in history])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, ax in (("loss", axes[0]), ("heat", axes[1])):
        vals = np.array([h[key] for h in history])
        win = max(1, len(vals) // 50)
        ma = np.convolve(vals, np.ones(win) / win, mode="valid")
        ax.plot(steps, vals, alpha=0.25, lw=0.6, label="per step")
        ax.plot(steps[win - 1 :], ma, lw=1.5, label=f"moving mean ({win})")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title({"loss": "total loss", "heat": "centre heat-map loss (focal)"}[key])
        ax.legend(fontsize=8)
    segs = np.array([h["seg"] for h in history])
    win = max(1, len(segs) // 50)
    axes[0].plot(steps[win - 1 :], np.convolve(segs, np.ones(win) / win, mode="valid"), lw=1.2, label="segmentation (BCE+OHEM+Dice)")
    axes[0].legend(fontsize=8)
    fig.suptitle("MedViewer lesion detector training (phantoms)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


__all__ = [
    "RUN_OPTIONS",
    "resume_options",
    "run_options",
    "save_checkpoint",
    "load_checkpoint",
    "run_config",
    "parse_window",
    "grown_config",
    "plot_losses",
]
