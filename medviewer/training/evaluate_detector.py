"""Evaluation of the lesion detector (``medviewer evaluate detector``).

Two test sets, both never used in training:

* **Held-out phantoms**: :func:`medviewer.training.phantom.make_phantom` with
  seeds >= 1,000,000 (training uses seeds < 100,000), about 20 % lesion-free.
* **Real-background volumes**: the real CT slices shipped with pydicom
  (CT_small, J2K_pixelrep_mismatch) and pydicom-data (693_*, explicit_VR-UN,
  bad_sequence, eCT_Supplemental), each *grown* into a short volume of 2.5 mm
  slices by extruding the slice with a smooth, slowly varying in-plane
  deformation (a few mm, different per slice) plus 8 HU of independent noise
  per slice, and lesions inserted with
  :func:`medviewer.training.phantom.insert_lesions` inside the body. The
  background anatomy and its noise texture are real; the third dimension and
  the lesions are synthetic.

For each set: FROC with the LUNA16 hit rule, sensitivity at 1/8..8 false
positives per scan and the CPM, for the detector and for a classical baseline
(Laplacian-of-Gaussian blob detection as in scikit-image's ``blob_log``, 3D,
on the soft-tissue windowed image, bright and dark blobs) in the same run; calibration
(reliability diagram, ECE) of the finding confidences; case-level ROC AUC of
the abnormality score (lesion-free vs lesion-bearing volumes) with a k-fold
cross-validated logistic estimate; robustness of the held-out phantoms' CPM
to simulated CT noise and to white noise of the same SD
(:mod:`medviewer.training.detector_robustness`); CPU speed per 512x512 slice. Writes
``results.json``, ``results.md`` and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage

from medviewer.ai.detect import _index_map, _resample, detect_lesions, internal_shape, load_detector
from medviewer.ai.device import resolve_device
from medviewer.ai.weights import card_path, load_card, write_json_atomic
from medviewer.errors import ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel, console_progress
from medviewer.resources import cache_dir
from medviewer.training import froc as frocm
from medviewer.training import lesion_audit
from medviewer.training.datasets import DATASET_VERSION
from medviewer.training.phantom_lesions import body_mask
from medviewer.volume import Volume, VolumeMetadata

EVAL_SEED0 = 1_000_000
#: Held-out phantom volumes (full / quick) and their size and spacing.
N_PHANTOMS = 20
PHANTOM_SHAPE: tuple[int, int, int] = (40, 320, 320)
PHANTOM_SPACING: tuple[float, float, float] = (2.5, 1.12, 1.12)
QUICK_SHAPE: tuple[int, int, int] = (16, 128, 128)
QUICK_SPACING: tuple[float, float, float] = (2.5, 2.8, 2.8)
#: Real CT slices used (evaluation only).
REAL_SLICES: tuple[str, ...] = (
    "CT_small.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "693_UNCR.dcm",
    "693_UNCI.dcm",
    "693_J2KR.dcm",
    "693_J2KI.dcm",
    "explicit_VR-UN.dcm",
    "bad_sequence.dcm",
    "eCT_Supplemental.dcm",
)
REAL_SLICES_PER_VOLUME = 24
REAL_VOLUMES_PER_SLICE = 3
LESION_FREE_FRACTION = 0.2
SOFT_WINDOW = (-160.0, 240.0)


@dataclass
class EvalCase:
    """One test volume with its reference lesions (centres in LPS mm, diameters in mm)."""

    name: str
    volume: Volume
    centers_mm: NDArray[np.float64]
    diameters_mm: NDArray[np.float64]
    kinds: list[str]

    @property
    def truth(self) -> frocm.ScanTruth:
        return frocm.ScanTruth(self.centers_mm, self.diameters_mm)


# --------------------------------------------------------------------------- test sets
def _lesion_truth(volume: Volume, lesions: list[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    cs, ds, ks = [], [], []
    for les in lesions:
        get = les.get if isinstance(les, dict) else (lambda k, d=None, _l=les: getattr(_l, k, d))
        cs.append(volume.index_to_patient(np.asarray(get("center_index"), float)))
        ds.append(float(get("diameter_mm") or 0.0))
        ks.append(str(get("kind", "")))
    return np.array(cs, float).reshape(-1, 3), np.array(ds, float), ks


def phantom_cases(
    n: int,
    seed0: int,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: Path | None = None,
) -> list[EvalCase]:
    """Held-out phantoms (seeds ``seed0 ..``); every 5th one is lesion-free."""
    from medviewer.training.phantom import make_phantom

    prog = Progress(progress)
    out = []
    tag = "x".join(map(str, shape)) + "_" + "x".join(f"{s:g}" for s in spacing)
    for i in range(n):
        check_cancel(cancel, "building evaluation phantoms")
        name = f"phantom-{seed0 + i}-{tag}"
        cached = load_case(cache, name) if cache is not None else None
        if cached is not None:
            out.append(cached)
            prog((i + 1) / n, "evaluation phantoms")
            continue
        lesion_free = i % 5 == 4
        ph = make_phantom(seed0 + i, shape=shape, spacing=spacing, n_lesions=0 if lesion_free else None)
        vol = ph.volume
        if not lesion_free and not ph.lesions:
            ph = make_phantom(seed0 + i, shape=shape, spacing=spacing, n_lesions=3)
            vol = ph.volume
        vol.metadata.modality = vol.metadata.modality or "CT"
        c, d, k = _lesion_truth(vol, ph.lesions)
        case = EvalCase(name, vol, c, d, k)
        if cache is not None:
            save_case(case, cache)
        out.append(case)
        prog((i + 1) / n, "evaluation phantoms")
    return out


def _read_real_slice(name: str) -> tuple[NDArray[np.float32], tuple[float, float]]:
    """HU pixels of the first frame of a real CT sample and its pixel spacing (row, col)."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise ModelError(f"real CT sample {name} not found (install pydicom-data)")
    ds = pydicom.dcmread(path)
    arr = np.asarray(ds.pixel_array, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[0]
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    spacing = ds.get("PixelSpacing")
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if seq in ds:
            grp = ds[seq][0]
            if (slope is None or intercept is None) and "PixelValueTransformationSequence" in grp:
                pv = grp.PixelValueTransformationSequence[0]
                slope, intercept = pv.get("RescaleSlope"), pv.get("RescaleIntercept")
            if spacing is None and "PixelMeasuresSequence" in grp:
                spacing = grp.PixelMeasuresSequence[0].get("PixelSpacing")
    hu = arr * float(slope if slope is not None else 1.0) + float(intercept if intercept is not None else 0.0)
    sp = (float(spacing[0]), float(spacing[1])) if spacing is not None else (0.7, 0.7)
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32), sp


def grow_slice(
    hu2d: NDArray[np.float32], n_slices: int, rng: np.random.Generator, pixel_mm: float, amplitude_mm: float = 2.5
) -> NDArray[np.float32]:
    """Extrude a real slice into ``n_slices`` by a smooth deformation varying slowly along z.

    Slice ``k`` is the source slice warped by ``A cos(w k + p) + B sin(w k + p)``
    where A and B are smooth random displacement fields (Gaussian-filtered
    noise scaled to ``amplitude_mm``) and ``w`` a period of ~30 slices; each
    slice then gets 8 HU of independent Gaussian noise.
    """
    h, w = hu2d.shape
    sig = max(h, w) / 8.0
    fields = []
    for _ in range(4):
        f = ndimage.gaussian_filter(rng.normal(size=(h, w)), sig)
        f *= (amplitude_mm / pixel_mm) / (np.abs(f).max() + 1e-9)
        fields.append(f)
    omega = 2 * math.pi / rng.uniform(24, 40)
    phase = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n_slices, h, w), np.float32)
    for k in range(n_slices):
        a, b = math.cos(omega * k + phase), math.sin(omega * k + phase)
        dy = a * fields[0] + b * fields[1]
        dx = a * fields[2] + b * fields[3]
        out[k] = ndimage.map_coordinates(hu2d, [yy + dy, xx + dx], order=1, mode="nearest")
    out += rng.normal(0.0, 8.0, out.shape).astype(np.float32)
    return out


def grown_case(
    hu2d: NDArray[np.float32],
    pixel_mm: tuple[float, float],
    n_slices: int,
    rng: np.random.Generator,
    name: str,
    series_uid: str,
    lesion_free: bool,
) -> EvalCase:
    """One slice grown into a volume (:func:`grow_slice`, 2.5 mm slices) with 1-3 lesions inserted in its body.

    The construction of the real-background test volumes; ``rng`` draws the growth, then the lesions.
    Lesions are 5 mm to a fifth of the field of view (at most 25 mm) across and keep 3 slices from either end.
    """
    from medviewer.training.phantom import insert_lesions

    py, px = pixel_mm
    vol_hu = grow_slice(hu2d, n_slices, rng, min(py, px))
    spacing = (2.5, py, px)
    allowed = body_mask(vol_hu)
    allowed[:3] = False
    allowed[-3:] = False
    lesions: list[Any] = []
    if not lesion_free and allowed.any():
        fov = min(hu2d.shape[0] * py, hu2d.shape[1] * px)
        dmax = float(min(25.0, fov / 5.0))
        n = int(rng.integers(1, 4))
        vol_hu, _, lesions = insert_lesions(vol_hu, spacing, rng, n, allowed=allowed, diameter_range_mm=(5.0, max(6.0, dmax)))
    vol = Volume(np.asarray(vol_hu, np.float32), spacing=spacing, metadata=VolumeMetadata(modality="CT", series_uid=series_uid))
    c, d, k = _lesion_truth(vol, lesions)
    return EvalCase(name, vol, c, d, k)


def real_background_cases(
    per_slice: int = REAL_VOLUMES_PER_SLICE,
    n_slices: int = REAL_SLICES_PER_VOLUME,
    seed: int = EVAL_SEED0,
    names: tuple[str, ...] = REAL_SLICES,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: Path | None = None,
) -> list[EvalCase]:
    """Real CT slices grown into short volumes with inserted lesions (see module docstring and :func:`grown_case`)."""
    prog = Progress(progress)
    out: list[EvalCase] = []
    total = len(names) * per_slice
    for si, name in enumerate(names):
        hu2d, (py, px) = _read_real_slice(name)
        for r in range(per_slice):
            check_cancel(cancel, "building real-background volumes")
            case_name = f"real-{name}-{r}-{seed}-{n_slices}"
            cached = load_case(cache, case_name) if cache is not None else None
            if cached is not None:
                out.append(cached)
                prog(len(out) / total, "real-background volumes")
                continue
            rng = np.random.default_rng([seed, si, r])
            lesion_free = (si * per_slice + r) % 5 == 4
            case = grown_case(hu2d, (py, px), n_slices, rng, case_name, f"real-{name}-{r}", lesion_free)
            if cache is not None:
                save_case(case, cache)
            out.append(case)
            prog(len(out) / total, "real-background volumes")
    return out


# --------------------------------------------------------------------------- cache
def eval_cache_dir() -> Path:
    """Cache of the test volumes and baseline results, per phantom engine version.

    The LoG baseline results cached next to the volumes depend on them, so
    the whole folder is versioned (an older engine's cache is never read).
    """
    return cache_dir() / f"detector_eval_v{DATASET_VERSION}"


def _case_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.npz"


def save_case(case: EvalCase, folder: Path) -> None:
    """Store a test case (atomically) so later evaluations skip generating it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _case_path(folder, case.name)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    v = case.volume
    with open(tmp, "wb") as f:
        np.savez(
            f,
            voxels=v.voxels.astype(np.float32),
            spacing=np.array(v.spacing),
            origin=np.array(v.origin),
            direction=v.direction,
            modality=np.array(v.metadata.modality or "CT"),
            series_uid=np.array(v.metadata.series_uid),
            centers=case.centers_mm,
            diameters=case.diameters_mm,
            kinds=np.array(case.kinds, dtype="U32"),
            dataset_version=np.array(DATASET_VERSION),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_case(folder: Path, name: str) -> EvalCase | None:
    """A cached test case, or None (also when it was made by another phantom engine version).

    The cache is stamped with :data:`medviewer.training.datasets.DATASET_VERSION`:
    test phantoms made by an older engine differ in anatomy from what current
    training data and users see, so they are regenerated rather than reused.
    """
    path = _case_path(folder, name)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if "dataset_version" not in z.files or int(z["dataset_version"]) != DATASET_VERSION:
                return None
            vol = Volume(
                z["voxels"],
                tuple(z["spacing"].tolist()),  # type: ignore[arg-type]
                tuple(z["origin"].tolist()),  # type: ignore[arg-type]
                z["direction"],
                VolumeMetadata(modality=str(z["modality"]), series_uid=str(z["series_uid"])),
            )
            return EvalCase(name, vol, z["centers"].reshape(-1, 3), z["diameters"].reshape(-1), [str(k) for k in z["kinds"]])
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------- methods
def run_detector(
    cases: list[EvalCase], device: str | None = None, progress: ProgressFn | None = None, folder: Path | None = None
) -> dict[str, Any]:
    """Run :func:`detect_lesions` (all candidates, no masks) on every case."""
    prog = Progress(progress)
    dets, confs, hits, abn, feats = [], [], [], [], []
    for i, case in enumerate(cases):
        res = detect_lesions(case.volume, device=device, min_confidence=0.0, masks=False, max_findings=1000, models_folder=folder)
        c = np.array([f.center_mm for f in res.findings], float).reshape(-1, 3)
        s = np.array([f.confidence for f in res.findings], float)
        d = frocm.ScanDetections(c, s)
        is_tp, _ = frocm.match_candidates(case.truth, d)
        dets.append(d)
        confs.append(s)
        hits.append(is_tp)
        abn.append(res.abnormality_score)
        top = np.sort(s)[::-1]
        feats.append([top[0] if len(top) else 0.0, top[1] if len(top) > 1 else 0.0, float((s >= 0.5).sum())])
        prog((i + 1) / len(cases), f"detector on {case.name}")
    return {
        "dets": dets,
        "conf": np.concatenate(confs) if confs else np.zeros(0),
        "hit": np.concatenate(hits) if hits else np.zeros(0, bool),
        "conf_by_scan": confs,
        "hit_by_scan": hits,
        "abnormality": np.array(abn),
        "features": np.array(feats).reshape(-1, 3),
    }


def log_blob_baseline(volume: Volume, max_candidates: int = 100) -> frocm.ScanDetections:
    """Classical baseline: 3D Laplacian-of-Gaussian blob detection on the soft-tissue window.

    The algorithm of scikit-image's ``blob_log``: the volume is resampled to
    the detector's internal spacing (same view of the data), windowed to
    W400/L40 and scaled to [0, 1]; a scale-normalised LoG scale space
    (``-sigma^2 * LoG``, anisotropic sigmas in voxels matching 4-30 mm
    lesions) is built for bright blobs and for dark blobs (the negated image),
    and its local maxima over space and scale are found with
    ``skimage.feature.peak_local_max``. The score is the normalised LoG
    response at the maximum; maxima outside the body or in bone/air
    (outside -700..300 HU) are dropped. ``blob_log`` itself is not called because its
    pairwise overlap pruning exhausted memory on these volumes (thousands of
    weak maxima in real CT texture); keeping the strongest
    ``max_candidates`` maxima separated by at least one sigma-sized
    neighbourhood plays that role.
    """
    from skimage.feature import peak_local_max

    ishape = internal_shape(volume.shape, volume.spacing)
    with torch.inference_mode():
        v = _resample(torch.from_numpy(np.asarray(volume.voxels, np.float32)), ishape).numpy()
    lo, hi = SOFT_WINDOW
    img = np.clip((v - lo) / (hi - lo), 0, 1).astype(np.float32)
    sp = np.array(volume.shape, float) * np.array(volume.spacing) / np.array(ishape, float)
    radii_mm = np.geomspace(2.0, 15.0, 6)
    cube = np.empty((len(radii_mm),) + img.shape, np.float32)
    for n, r in enumerate(radii_mm):
        sig = (r / math.sqrt(3)) / sp
        cube[n] = -ndimage.gaussian_laplace(img, sigma=sig) * float(np.mean(sig) ** 2)
    # simple domain rules so the baseline is not swamped by anatomy: centres inside the body
    # (filled HU > -500 region per slice), not in bone or air (-700 < HU < 300)
    body = np.stack([ndimage.binary_fill_holes(sl) for sl in (v > -500)])
    plausible = body & (v > -700) & (v < 300)
    cents, scores = [], []
    for sign in (1.0, -1.0):
        best = (cube * sign).max(axis=0)
        best[~plausible] = 0.0
        fp = np.ones((3, 5, 5), bool)
        peaks = peak_local_max(best, footprint=fp, threshold_abs=0.01, num_peaks=max_candidates, exclude_border=False)
        for p in peaks:
            cents.append(p.astype(float))
            scores.append(float(best[tuple(p)]))
    if not cents:
        return frocm.ScanDetections(np.zeros((0, 3)), np.zeros(0))
    cents_a = np.array(cents, float)
    sc = np.array(scores, float)
    order = np.argsort(-sc)[:max_candidates]
    src_idx = np.stack([_index_map(n_i, n_s, cents_a[order, a]) for a, (n_i, n_s) in enumerate(zip(ishape, volume.shape))], axis=1)
    return frocm.ScanDetections(volume.index_to_patient(src_idx), sc[order])


def run_baseline(cases: list[EvalCase], progress: ProgressFn | None = None, cache: Path | None = None) -> list[frocm.ScanDetections]:
    """:func:`log_blob_baseline` on every case (results cached per case: they do not depend on the model)."""
    prog = Progress(progress)
    out = []
    for i, case in enumerate(cases):
        path = cache / f"{case.name}.log.json" if cache is not None else None
        det = None
        if path is not None and path.is_file():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                det = frocm.ScanDetections(np.array(d["centers_mm"], float).reshape(-1, 3), np.array(d["scores"], float))
            except (OSError, ValueError, KeyError):
                det = None
        if det is None:
            det = log_blob_baseline(case.volume)
            if path is not None:
                write_json_atomic(path, {"centers_mm": det.centers_mm.tolist(), "scores": det.scores.tolist()})
        out.append(det)
        prog((i + 1) / len(cases), f"LoG baseline on {case.name}")
    return out


def measure_speed(device: str | None = None, threads: int = 2, n_slices: int = 24, repeats: int = 2, folder: Path | None = None) -> dict[str, float]:
    """Whole-detector time per 512x512 slice (0.7 mm, 2.5 mm slices) with ``threads`` CPU threads."""
    rng = np.random.default_rng(0)
    vox = rng.normal(40, 20, (n_slices, 512, 512)).astype(np.float32)
    vox[:, :60] = -1000
    vol = Volume(vox, spacing=(2.5, 0.7, 0.7), metadata=VolumeMetadata(modality="CT"))
    detect_lesions(vol, device=device, threads=threads, models_folder=folder)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        detect_lesions(vol, device=device, threads=threads, models_folder=folder)
        best = min(best, time.perf_counter() - t)
    return {"ms_per_slice": 1000 * best / n_slices, "threads": threads, "slices": n_slices, "slice_size": 512}


# --------------------------------------------------------------------------- plots and tables
def _plot_froc(curves: dict[str, frocm.FrocResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = {"detector": "-", "baseline": "--"}
    for label, r in curves.items():
        st = styles["baseline" if "baseline" in label else "detector"]
        ax.plot(np.maximum(r.fps_per_scan, 1e-3), r.sensitivity, st, lw=1.6, label=f"{label} (CPM {r.cpm:.3f})")
    for x in frocm.FP_RATES:
        ax.axvline(x, color="0.85", lw=0.6, zorder=0)
    ax.set_xscale("log", base=2)
    ax.set_xlim(1 / 16, 16)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("sensitivity (LUNA16 hit rule)")
    ax.set_title("FROC: MedViewer detector vs LoG baseline")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_reliability(tables: dict[str, tuple[float, list[dict[str, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    for label, (ece, table) in tables.items():
        if not table:
            continue
        conf = [b["mean_confidence"] for b in table]
        acc = [b["accuracy"] for b in table]
        ax.plot(conf, acc, "o-", ms=4, label=f"{label} (ECE {ece:.3f})")
    ax.set_xlabel("finding confidence (calibrated)")
    ax.set_ylabel("fraction that are true lesions")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[tuple[str, frocm.FrocResult]]) -> str:
    head = "| method / set | " + " | ".join(f"{r:g}" for r in frocm.FP_RATES) + " | CPM |\n"
    head += "|---" * (len(frocm.FP_RATES) + 2) + "|\n"
    for name, r in rows:
        head += f"| {name} | " + " | ".join(f"{r.sens_at[x]:.3f}" for x in frocm.FP_RATES) + f" | **{r.cpm:.3f}** |\n"
    return head


# --------------------------------------------------------------------------- main
def source_of(case_name: str) -> str:
    """The real slice a real-background case was grown from (``"phantom"`` for phantom cases)."""
    if not case_name.startswith("real-"):
        return "phantom"
    return case_name[len("real-"):].rsplit("-", 3)[0].removesuffix(".dcm")


def froc_by_source(cases: list[EvalCase], dets: list[frocm.ScanDetections]) -> dict[str, dict[str, Any]]:
    """FROC summary of each real source slice's volumes (few lesions each: a diagnostic, not a score)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault(source_of(c.name), []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for src, idx in groups.items():
        r = frocm.froc([cases[i].truth for i in idx], [dets[i] for i in idx])
        if r.n_lesions == 0:
            continue
        out[src] = {
            "n_volumes": len(idx),
            "n_lesions": r.n_lesions,
            "cpm": round(r.cpm, 3),
            "sensitivity_at_1fp": round(r.sens_at.get(1.0, float("nan")), 3),
            "sensitivity_at_8fp": round(r.sens_at.get(8.0, float("nan")), 3),
        }
    return out


def evaluate(
    out: Path,
    quick: bool = False,
    device: str | None = "auto",
    seed: int = 0,
    folder: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> dict[str, Any]:
    """Run the whole evaluation and write ``results.json``, ``results.md`` and plots into ``out``."""
    prog = Progress(progress)
    model, card = load_detector(folder)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if quick:
        n_ph, shape, spacing = 3, QUICK_SHAPE, QUICK_SPACING
        real_names: tuple[str, ...] = ("CT_small.dcm",)
        per_slice, n_sl = 2, 12
    else:
        n_ph = int(os.environ.get("MEDVIEWER_EVAL_PHANTOMS", N_PHANTOMS))
        shape, spacing = PHANTOM_SHAPE, PHANTOM_SPACING
        real_names, per_slice, n_sl = REAL_SLICES, REAL_VOLUMES_PER_SLICE, REAL_SLICES_PER_VOLUME
    seed0 = EVAL_SEED0 + 1000 * int(seed)
    cache = eval_cache_dir()
    phantoms = phantom_cases(n_ph, seed0, shape, spacing, prog.sub(0.0, 0.3), cancel, cache)
    real = real_background_cases(per_slice, n_sl, seed0, real_names, prog.sub(0.3, 0.4), cancel, cache)
    sets = {"held-out phantoms": phantoms, "real-background": real}
    results: dict[str, Any] = {
        "model": {"name": card.get("display_name", card["name"]), "version": card["version"]},
        "quick": quick,
        "rule": "LUNA16: a hit is a finding whose centre lies within the lesion's radius; several hits on one lesion count once",
        "sets": {},
    }
    curves: dict[str, frocm.FrocResult] = {}
    rel_tables: dict[str, tuple[float, list[dict[str, float]]]] = {}
    rows: list[tuple[str, frocm.FrocResult]] = []
    all_abn, all_lab, all_feat = [], [], []
    for si, (set_name, cases) in enumerate(sets.items()):
        check_cancel(cancel, "evaluation")
        base = 0.4 + 0.25 * si
        det = run_detector(cases, device, prog.sub(base, base + 0.12), folder)
        bl = run_baseline(cases, prog.sub(base + 0.12, base + 0.25), cache)
        truths = [c.truth for c in cases]
        r_det = frocm.froc(truths, det["dets"])
        r_bl = frocm.froc(truths, bl)
        ci = frocm.bootstrap_cpm(truths, det["dets"], n_boot=100 if quick else 300)
        sel = det["conf"] >= 0.05
        ece, table = frocm.expected_calibration_error(det["conf"][sel], det["hit"][sel])
        ece_all, _ = frocm.expected_calibration_error(det["conf"], det["hit"])
        ece_ci = frocm.bootstrap_ece(det["conf_by_scan"], det["hit_by_scan"], 0.05, n_boot=100 if quick else 300)
        labels = np.array([len(c.diameters_mm) > 0 for c in cases])
        auc = frocm.roc_auc(det["abnormality"], labels)
        all_abn.append(det["abnormality"])
        all_lab.append(labels)
        all_feat.append(det["features"])
        curves[f"detector, {set_name}"] = r_det
        curves[f"LoG baseline, {set_name}"] = r_bl
        rel_tables[set_name] = (ece, table)
        rows += [(f"detector, {set_name}", r_det), (f"LoG baseline, {set_name}", r_bl)]
        kinds: dict[str, int] = {}
        for c in cases:
            for k in c.kinds:
                kinds[k] = kinds.get(k, 0) + 1
        results["sets"][set_name] = {
            "n_volumes": len(cases),
            "n_lesion_free": int((~labels).sum()),
            "n_lesions": r_det.n_lesions,
            "lesion_kinds": kinds,
            "detector": {**r_det.to_json(), "cpm_95ci_bootstrap": [round(ci[0], 4), round(ci[1], 4)]},
            "baseline_log": r_bl.to_json(),
            "cpm_gain_over_baseline": round(r_det.cpm - r_bl.cpm, 4),
            "ece_findings_conf_ge_0.05": round(ece, 4),
            "ece_95ci_bootstrap": [round(ece_ci[0], 4), round(ece_ci[1], 4)],
            "ece_all_candidates": round(ece_all, 4),
            "n_findings_conf_ge_0.05": int(sel.sum()),
            "reliability": table,
            "case_auc_abnormality": None if not np.isfinite(auc) else round(auc, 4),
        }
        lesions = lesion_audit.lesion_rows(cases, det["dets"], source_of)
        results["sets"][set_name]["lesions"] = lesions
        results["sets"][set_name]["lesion_audit"] = lesion_audit.summarize(lesions)
        if set_name == "real-background":
            results["sets"][set_name]["by_source_slice"] = froc_by_source(cases, det["dets"])
    abn = np.concatenate(all_abn)
    lab = np.concatenate(all_lab)
    feat = np.concatenate(all_feat)
    auc_all = frocm.roc_auc(abn, lab)
    n_folds = 5 if min(lab.sum(), (~lab).sum()) >= 5 else 2
    cv_auc, fold_aucs = frocm.cross_validated_auc(feat, lab, k=n_folds) if min(lab.sum(), (~lab).sum()) >= 2 else (float("nan"), [])
    results["case_level"] = {
        "n_lesion_free": int((~lab).sum()),
        "n_lesion_bearing": int(lab.sum()),
        "auc_abnormality_score": None if not np.isfinite(auc_all) else round(auc_all, 4),
        "cv_auc_logistic": None if not np.isfinite(cv_auc) else round(cv_auc, 4),
        "cv_folds": n_folds,
        "cv_fold_aucs": [round(a, 4) for a in fold_aucs],
        "cv_features": "max, second-highest finding confidence, number of findings >= 0.5",
    }
    check_cancel(cancel, "evaluation")
    if not quick:
        from medviewer.training.detector_robustness import noise_robustness

        results["noise_robustness"] = noise_robustness(
            phantoms, run_detector, device, folder, results["sets"]["held-out phantoms"]["detector"]["cpm"], cache, prog.sub(0.88, 0.92)
        )
        check_cancel(cancel, "evaluation")
        prog(0.92, "timing")
        results["speed_cpu"] = measure_speed("cpu", threads=2, folder=folder)
    results["seconds"] = round(time.time() - t0, 1)
    _plot_froc(curves, out / "froc.png")
    _plot_reliability(rel_tables, out / "reliability.png")
    write_json_atomic(out / "results.json", results)
    md = [f"# Lesion detector evaluation ({results['model']['name']} {results['model']['version']})", ""]
    md.append("Research use only, not for diagnosis. " + results["rule"] + ".")
    md.append("")
    for name, s in results["sets"].items():
        md.append(f"- {name}: {s['n_volumes']} volumes ({s['n_lesion_free']} lesion-free), {s['n_lesions']} lesions, kinds {s['lesion_kinds']}")
    md += ["", "## FROC (sensitivity at false positives per scan)", "", _table(rows)]
    md.append("## Calibration and case level\n")
    for name, s in results["sets"].items():
        md.append(
            f"- {name}: ECE {s['ece_findings_conf_ge_0.05']:.3f} (95% bootstrap CI {s['ece_95ci_bootstrap']}, scans resampled) over "
            f"{s['n_findings_conf_ge_0.05']} findings with confidence >= 0.05 "
            f"(all candidates: {s['ece_all_candidates']:.3f}); CPM 95% bootstrap CI {s['detector']['cpm_95ci_bootstrap']}; "
            f"case AUC {s['case_auc_abnormality']}"
        )
    cl = results["case_level"]
    md.append(
        f"- case-level ROC AUC of the abnormality score (all sets, {cl['n_lesion_bearing']} lesion-bearing vs "
        f"{cl['n_lesion_free']} lesion-free volumes): {cl['auc_abnormality_score']}; {cl['cv_folds']}-fold cross-validated "
        f"logistic estimate: {cl['cv_auc_logistic']}"
    )
    by_src = results["sets"].get("real-background", {}).get("by_source_slice")
    if by_src:
        md += ["", "## Real backgrounds by source slice (few lesions each: a diagnostic)", "",
               "| source slice | volumes | lesions | CPM | sens. at 1 FP/scan | sens. at 8 FP/scan |", "|---|---|---|---|---|---|"]
        md += [f"| {k} | {v['n_volumes']} | {v['n_lesions']} | {v['cpm']:.3f} | {v['sensitivity_at_1fp']:.3f} | {v['sensitivity_at_8fp']:.3f} |"
               for k, v in by_src.items()]
        md.append("")
    real_rows = results["sets"].get("real-background", {}).get("lesions", [])
    misses = [r for r in real_rows if r["best_confidence"] is None or r["best_confidence"] < lesion_audit.SHOWN_AT]
    md += lesion_audit.markdown({k: v["lesion_audit"] for k, v in results["sets"].items()}, misses)
    if "noise_robustness" in results:
        from medviewer.training.detector_robustness import robustness_markdown

        md += robustness_markdown(results["noise_robustness"]) + [""]
    if "speed_cpu" in results:
        sp = results["speed_cpu"]
        md.append(f"- speed: {sp['ms_per_slice']:.1f} ms per 512x512 slice on {sp['threads']} CPU threads (whole detector)")
    md.append("\nPlots: froc.png, reliability.png.\n")
    (out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    prog(1.0, "evaluation done")
    return results


def record_metrics_in_card(results: dict[str, Any], folder: Path | None = None, note: str | None = None) -> None:
    """Copy the headline figures of a full evaluation into the model card (weights untouched).

    ``note`` says how the figures were obtained (command, machine load).
    """
    card = load_card("detector", folder)
    m = dict(card.get("metrics", {}))
    ev: dict[str, Any] = {}
    for name, s in results["sets"].items():
        ev[name] = {
            "n_volumes": s["n_volumes"],
            "n_lesions": s["n_lesions"],
            "cpm": s["detector"]["cpm"],
            "sensitivity_at_fp": s["detector"]["sensitivity_at_fp"],
            "cpm_95ci_bootstrap": s["detector"].get("cpm_95ci_bootstrap"),
            "baseline_log_cpm": s["baseline_log"]["cpm"],
            "ece": s["ece_findings_conf_ge_0.05"],
            "ece_95ci_bootstrap": s.get("ece_95ci_bootstrap"),
            "n_findings_conf_ge_0.05": s.get("n_findings_conf_ge_0.05"),
            "case_auc_abnormality": s.get("case_auc_abnormality"),
        }
        if "lesion_audit" in s:
            ev[name]["sensitivity_by_diameter_mm"] = s["lesion_audit"]["by_diameter_mm"]
    ev["case_level"] = results["case_level"]
    for key, val in results.items():
        if key.startswith("speed_cpu"):
            ev[key] = val
    if note:
        ev["note"] = note
    m["evaluation"] = ev
    card["metrics"] = m
    write_json_atomic(card_path("detector", folder), card)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``medviewer evaluate detector``."""
    device = str(resolve_device(getattr(args, "device", "auto")))
    out = Path(args.out)
    if getattr(args, "selection", False):
        from medviewer.training.detector_selection import main_selection

        sel = main_selection(out, getattr(args, "weights", None), device, console_progress("selection "))
        print(json.dumps(sel, indent=2))
        return 0
    res = evaluate(out, bool(getattr(args, "quick", False)), device, int(getattr(args, "seed", 0) or 0) % 1000, getattr(args, "weights", None), console_progress("evaluate "))
    print((out / "results.md").read_text(encoding="utf-8"))
    return 0 if res else 1


__all__ = [
    "EvalCase",
    "phantom_cases",
    "grow_slice",
    "body_mask",
    "real_background_cases",
    "run_detector",
    "log_blob_baseline",
    "run_baseline",
    "measure_speed",
    "evaluate",
    "save_case",
    "eval_cache_dir",
    "load_case",
    "record_metrics_in_card",
    "main",
]
