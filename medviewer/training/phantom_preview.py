"""A picture grid of phantom slices beside real CT slices, for judging realism by eye.

The real slices come from the sample files shipped with the ``pydicom`` and
``pydicom-data`` packages (evaluation only, never used for training). Every
image is shown at the same window as its neighbours, at its true physical
scale (mm), so sizes and textures can be compared directly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.errors import ExportError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel

#: (file name, label) of real CT samples; missing ones are skipped.
REAL_SAMPLES: tuple[tuple[str, str], ...] = (
    ("explicit_VR-UN.dcm", "real: abdomen (pydicom-data explicit_VR-UN)"),
    ("693_UNCI.dcm", "real: CT (pydicom-data 693_UNCI)"),
    ("CT_small.dcm", "real: CT (pydicom CT_small)"),
    ("bad_sequence.dcm", "real: neck (pydicom-data bad_sequence)"),
)
#: Real head CT samples for ``region="head"``.
REAL_HEAD_SAMPLES: tuple[tuple[str, str], ...] = (
    ("693_UNCR.dcm", "real: head (pydicom-data 693_UNCR)"),
    ("693_UNCI.dcm", "real: head (pydicom-data 693_UNCI)"),
    ("J2K_pixelrep_mismatch.dcm", "real: skull base (J2K_pixelrep_mismatch)"),
    ("eCT_Supplemental.dcm", "real: brain (eCT_Supplemental)"),
)
SOFT = (40.0, 400.0)
LUNG = (-600.0, 1500.0)
BRAIN = (40.0, 80.0)
BONE = (600.0, 2800.0)


def _real_slices(samples: tuple[tuple[str, str], ...] = REAL_SAMPLES) -> list[tuple[NDArray[np.float32], float, str]]:
    """(HU slice, pixel mm, label) of the available real samples."""
    out: list[tuple[NDArray[np.float32], float, str]] = []
    try:
        from pydicom.data import get_testdata_file
    except ImportError:  # pragma: no cover
        return out
    from medviewer.dicom import load
    from medviewer.errors import DicomError

    for name, label in samples:
        try:
            path = get_testdata_file(name)
        except (ValueError, OSError):  # pragma: no cover - pydicom-data absent
            path = None
        if not path:
            continue
        try:
            with warnings.catch_warnings():  # the samples' own header quirks are not our concern here
                warnings.simplefilter("ignore", UserWarning)
                vol = load(path)
        except DicomError:
            continue
        if vol.is_rgb:
            continue
        k = vol.shape[0] // 2
        out.append((np.asarray(vol.voxels[k], np.float32), float(vol.spacing[2]), label))
    return out


def _show(ax: Any, img: NDArray[np.float32], pixel_mm: float, window: tuple[float, float], title: str, field_mm: float = 400.0) -> None:
    c, w = window
    h, wd = img.shape
    ext = (-wd * pixel_mm / 2, wd * pixel_mm / 2, h * pixel_mm / 2, -h * pixel_mm / 2)
    ax.imshow(img, cmap="gray", vmin=c - w / 2, vmax=c + w / 2, extent=ext, interpolation="bilinear")
    ax.set_xlim(-field_mm / 2, field_mm / 2)
    ax.set_ylim(field_mm / 2, -field_mm / 2)
    ax.set_title(f"{title}\nW {w:.0f} / L {c:.0f}", fontsize=8)
    ax.axis("off")


def render_preview(
    out_png: str | os.PathLike[str],
    seed: int = 0,
    *,
    shape: tuple[int, int, int] = (80, 512, 512),
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    dose: float | None = 1.0,
    region: str = "body",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Path:
    """Write a PNG grid: phantom slices (top rows) and real CT samples (bottom row).

    Parameters
    ----------
    out_png : path
        PNG to write (atomically).
    seed : int
        Phantom seed.
    shape, spacing : (z, y, x)
        Phantom grid.
    dose : float or None
        Add the noise of a scan at this dose fraction (1.0: routine dose,
        comparable to the real samples); None shows the noise-free phantom.
    region : {"body", "head"}
        Chest/abdomen phantom beside real body CT (soft-tissue and lung
        windows), or head phantom beside real head CT (brain and bone windows).
    progress, cancel : callables, optional

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from medviewer.training.lowdose import simulate_low_dose
    from medviewer.training.phantom import make_phantom

    out = Path(out_png)
    report = Progress(progress)
    head = region == "head"
    ph = make_phantom(seed, shape=shape, spacing=spacing, contrast=None, region=region, z_center_mm=5.0 if head else -10.0,
                      progress=report.sub(0.0, 0.6), cancel=cancel)
    vol = ph.volume.voxels
    nz = vol.shape[0]
    wide, narrow = (BONE, BRAIN) if head else (LUNG, SOFT)
    picks = [(int(nz * 0.9), wide), (int(nz * 0.72), wide), (int(nz * 0.62), narrow), (int(nz * 0.45), narrow),
             (int(nz * 0.3), narrow), (int(nz * 0.08), narrow)]
    lesion_slices = sorted({int(round(les.center_index[0])) for les in ph.lesions})[:2]
    picks += [(k, LUNG if les_kind.endswith("nodule") else narrow) for k, les_kind in
              ((int(round(les.center_index[0])), les.kind) for les in ph.lesions) if k in lesion_slices][:2]
    seen: set[int] = set()
    picks = [(k, w) for k, w in picks if not (k in seen or seen.add(k))]  # type: ignore[func-returns-value]
    rng = np.random.default_rng(seed)
    images = []
    for n, (k, win) in enumerate(picks):
        check_cancel(cancel, "phantom preview")
        sl = vol[min(max(k, 0), nz - 1)]
        if dose is not None:
            sl = simulate_low_dose(sl, dose, pixel_mm=spacing[2], seed=rng)
        images.append((sl, float(spacing[2]), win, f"phantom seed {seed}, slice {k}" + (f", dose {dose:g}" if dose is not None else "")))
        report(0.6 + 0.3 * (n + 1) / len(picks), "simulating slices")
    real = _real_slices(REAL_HEAD_SAMPLES if head else REAL_SAMPLES)
    field = 260.0 if head else 400.0
    ncols = 4
    rows_ph = (len(images) + ncols - 1) // ncols
    nrows = rows_ph + (1 if real else 0) + (1 if real else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4.3 * nrows))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for n, (img, px, win, title) in enumerate(images):
        _show(axes[n // ncols, n % ncols], img, px, win, title, field)
    for n, (img, px, label) in enumerate(real[:ncols]):
        _show(axes[rows_ph, n], img, px, narrow, label, field)
        _show(axes[rows_ph + 1, n], img, px, wide, label, field)
    fig.suptitle(f"MedViewer {'head ' if head else ''}phantom (top) vs real CT samples (bottom), same windows, "
                 f"{field:.0f} mm field", fontsize=11, y=0.998)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.975))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, dpi=72, format="png")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ExportError(f"{out}: cannot write the preview ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
    report(1.0, "preview written")
    return out


__all__ = ["render_preview", "REAL_SAMPLES", "REAL_HEAD_SAMPLES"]
