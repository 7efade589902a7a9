"""Cached, resumable, parallel training sets built from phantoms.

Two builders:

* :func:`build_denoising_pairs` — (full-dose, low-dose) slice pairs for the
  denoiser. Each phantom contributes ``slices_per_phantom`` axial slices
  spread over the chest and upper abdomen; for each slice a dose is drawn
  log-uniformly in ``doses`` and :func:`~medviewer.training.lowdose.simulate_dose_pair`
  produces the *full-dose image with its own realistic full-dose noise*
  (``full_dose_noise=True``, the default, as in clinical training pairs) and
  the low-dose image as the binomial thinning of the same photon counts.
  The noise-free phantom slice is stored too (:meth:`DenoisingPairs.clean`),
  so a trainer may use it as the target instead.
* :func:`build_detection_volumes` — (volume, label mask, lesion list) for
  the detector, a fraction of them lesion-free, with scanner noise at a
  chosen dose.

Seeds (never mix training and evaluation): a data set uses phantom seeds
``seed, seed + 1, ..., seed + n - 1``, which must lie entirely in the
training range ``[0, TRAINING_SEED_LIMIT)`` (= [0, 100000)) or entirely in
the evaluation range ``[EVALUATION_SEED_BASE, ...)`` (>= 1000000). The demo
study uses :data:`~medviewer.training.phantom.DEMO_SEED`, in neither range.

Cache layout: ``cache_dir/<kind>-<hash of the parameters>/``; each phantom
writes its arrays as ``.npy`` files (int16 HU, atomically: temporary file in
the folder, fsync, rename) and then a ``<seed>.json`` marker. A rebuild skips
phantoms whose marker exists, so an interrupted build resumes where it
stopped, and different parameters never mix. Items are read through memory
maps, so a data set larger than memory is fine.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.errors import CancelledError, ExportError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.training.phantom import EVALUATION_SEED_BASE, TRAINING_SEED_LIMIT, make_phantom
from medviewer.fileio import write_bytes_atomic

DATASET_VERSION = 2
"""Bumped when the generator changes in a way that invalidates caches."""
HU_MIN, HU_MAX = -1024, 3071
Z_SPAN_MM = 200.0
"""Craniocaudal span from which denoising slices are taken (upper chest to kidneys)."""
REGIONS: tuple[str, ...] = ("body", "head", "leaves", "images", "photos")
"""What a denoising set's slices are made from (:func:`build_denoising_pairs`' ``region``)."""


def check_seed_range(seed: int, n: int) -> str:
    """Return ``"train"`` or ``"eval"`` for seeds ``seed..seed+n-1``; raise if they mix or fall outside.

    Examples
    --------
    >>> check_seed_range(0, 100), check_seed_range(1_000_000, 5)
    ('train', 'eval')
    """
    if n < 1:
        raise ValueError(f"need at least one item, got {n}")
    lo, hi = int(seed), int(seed) + int(n) - 1
    if lo >= 0 and hi < TRAINING_SEED_LIMIT:
        return "train"
    if lo >= EVALUATION_SEED_BASE:
        return "eval"
    raise ValueError(
        f"phantom seeds {lo}..{hi} must lie entirely in the training range [0, {TRAINING_SEED_LIMIT}) "
        f"or in the evaluation range [{EVALUATION_SEED_BASE}, ...)"
    )


def _param_folder(cache_dir: Path, kind: str, params: dict[str, Any]) -> Path:
    blob = json.dumps({"kind": kind, "version": DATASET_VERSION, **params}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"{kind}-{digest}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        info = root / "dataset.json"
        if not info.exists():
            write_bytes_atomic(info, (json.dumps({"kind": kind, "version": DATASET_VERSION, "params": params}, indent=2, sort_keys=True) + "\n").encode())
    except OSError as exc:
        raise ExportError(f"cannot create the data set folder {root}: {exc.strerror or exc}") from exc
    return root


def _atomic_save_npy(path: Path, arr: NDArray[Any]) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ExportError(f"{path.parent}: cannot write the data set ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ExportError(f"{path}: cannot write the data set ({exc.strerror or exc}); finished items are kept") from exc
        raise


def _to_int16(hu: NDArray[np.floating[Any]]) -> NDArray[np.int16]:
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)


def _run_jobs(
    job: Callable[..., Any],
    args: list[tuple[Any, ...]],
    workers: int | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    what: str,
    already: int,
    total: int,
) -> None:
    """Run ``job(*a)`` for each ``a``, in a process pool when ``workers > 1``."""
    report = Progress(progress)
    done = already
    report(done / total if total else 1.0, f"{what}: {done}/{total}")
    if not args:
        report(1.0, f"{what}: {total}/{total}")
        return
    n_workers = _default_workers(len(args)) if workers is None else max(1, int(workers))
    if n_workers <= 1 or len(args) == 1:
        for a in args:
            check_cancel(cancel, what)
            job(*a, cancel=cancel)
            done += 1
            report(done / total, f"{what}: {done}/{total}")
        return
    # fork where available (the jobs use numpy/scipy only, and scripts need no __main__ guard); spawn elsewhere
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=min(n_workers, len(args)), mp_context=ctx, initializer=_worker_init) as pool:
        pending: set[Future[Any]] = {pool.submit(job, *a) for a in args}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for fut in finished:
                    fut.result()  # re-raise a worker's error here
                    done += 1
                    report(done / total, f"{what}: {done}/{total}")
                if cancel is not None and cancel():
                    raise CancelledError(f"{what} cancelled ({done}/{total} done; finished items are kept)")
        except BaseException:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _default_workers(n_jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_jobs, cores))


def _worker_init() -> None:
    try:  # one thread per worker process: the pool provides the parallelism
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


# --------------------------------------------------------------------------- denoising pairs
@dataclass
class DenoisingPairs:
    """(full-dose, low-dose) slice pairs on disk.

    ``pairs[i]`` is ``(full_hu, low_hu, dose)`` with ``(y, x)`` float32 HU
    arrays and the low dose fraction; :meth:`clean` gives the noise-free
    phantom slice of item ``i``.
    """

    root: Path
    seeds: list[int]
    slices_per_phantom: int
    pixel_mm: float
    doses: NDArray[np.float32] = field(repr=False)
    _maps: dict[tuple[int, str], NDArray[np.int16]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.seeds) * self.slices_per_phantom

    def _array(self, seed: int, name: str) -> NDArray[np.int16]:
        key = (seed, name)
        if key not in self._maps:
            path = self.root / f"{seed:07d}.{name}.npy"
            try:
                self._maps[key] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ExportError(f"{path}: cannot read cached data ({exc}); delete the folder to rebuild") from exc
        return self._maps[key]

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} pairs")
        i %= n
        return self.seeds[i // self.slices_per_phantom], i % self.slices_per_phantom

    def __getitem__(self, i: int) -> tuple[NDArray[np.float32], NDArray[np.float32], float]:
        seed, k = self._locate(i)
        full = np.asarray(self._array(seed, "full")[k], np.float32)
        low = np.asarray(self._array(seed, "low")[k], np.float32)
        return full, low, float(self.doses[i % len(self)])

    def clean(self, i: int) -> NDArray[np.float32]:
        """The noise-free phantom slice of item ``i``."""
        seed, k = self._locate(i)
        return np.asarray(self._array(seed, "clean")[k], np.float32)


def _denoise_job(root: str, pseed: int, slices: int, size: int, pixel_mm: float, thickness: float,
                 doses: tuple[float, float], full_dose_noise: bool, region: str = "body",
                 psf_mm: tuple[float, float] | None = None, cut: float = 0.0, cancel: CancelFn | None = None) -> None:
    rootp = Path(root)
    marker = rootp / f"{pseed:07d}.json"
    if marker.exists():
        return
    psf = None  # the phantom's scanner blur: the default, or drawn log-uniformly from psf_mm per phantom
    if psf_mm is not None:
        psf_rng = np.random.default_rng(np.random.SeedSequence([pseed, 2025]))  # apart from the dose draws
        psf = float(math.exp(psf_rng.uniform(math.log(psf_mm[0]), math.log(psf_mm[1]))))
    lesions: list[dict[str, Any]] = []
    if region == "leaves":  # dead-leaves slices (a generic image prior), not a phantom
        from medviewer.training.dead_leaves import dead_leaves_slice

        leaves_rng = np.random.default_rng(np.random.SeedSequence([pseed, 2027]))
        clean = np.stack([dead_leaves_slice(leaves_rng, size, pixel_mm, psf) for _ in range(slices)])
        contrast = False
    elif region == "images":  # real non-CT images (MR, radiographs) given CT values: real structure, not a phantom
        from medviewer.training.image_slices import image_slice

        images_rng = np.random.default_rng(np.random.SeedSequence([pseed, 2028]))
        clean = np.stack([image_slice(images_rng, size, pixel_mm, psf) for _ in range(slices)])
        contrast = False
    elif region == "photos":  # scikit-image's bundled photographs given CT values: real-world structure, no anatomy
        from medviewer.training.image_slices import image_slice, load_photo_sources

        photos_rng = np.random.default_rng(np.random.SeedSequence([pseed, 2029]))
        clean = np.stack([image_slice(photos_rng, size, pixel_mm, psf, sources=load_photo_sources()) for _ in range(slices)])
        contrast = False
    elif region == "head":
        from medviewer.training.phantom_head import HEAD_Z_RANGE_MM

        lo_z, hi_z = HEAD_Z_RANGE_MM
        dz = max(thickness, (hi_z - lo_z) / slices)
        ph = make_phantom(pseed, shape=(slices, size, size), spacing=(dz, pixel_mm, pixel_mm), slice_thickness=thickness,
                          cancel=cancel, region="head", z_center_mm=(lo_z + hi_z) / 2.0, psf_mm=psf)
        clean, contrast, lesions = ph.volume.voxels, ph.contrast, [les.to_dict() for les in ph.lesions]
    else:
        dz = max(thickness, Z_SPAN_MM / slices)
        ph = make_phantom(pseed, shape=(slices, size, size), spacing=(dz, pixel_mm, pixel_mm), slice_thickness=thickness,
                          cancel=cancel, psf_mm=psf)
        clean, contrast, lesions = ph.volume.voxels, ph.contrast, [les.to_dict() for les in ph.lesions]
    rng = np.random.default_rng(np.random.SeedSequence([pseed, 2024]))
    from medviewer.training.lowdose import simulate_dose_pair, simulate_low_dose

    cuts: list[bool] = []
    if cut > 0:  # hard steps to padding on a share of the slices, before the scanner is simulated
        from medviewer.training.hard_edges import cut_slice

        cut_rng = np.random.default_rng(np.random.SeedSequence([pseed, 2026]))  # apart from the dose draws
        clean = np.array(clean, dtype=np.float32, copy=True)
        for k in range(slices):
            cuts.append(bool(cut_rng.random() < cut))
            if cuts[-1]:
                clean[k] = cut_slice(clean[k], pixel_mm, cut_rng)
    full = np.empty_like(clean)
    low = np.empty_like(clean)
    lo, hi = math.log(doses[0]), math.log(doses[1])
    dose_list = []
    for k in range(slices):
        check_cancel(cancel, "denoising pairs")
        d = float(math.exp(rng.uniform(lo, hi)))
        dose_list.append(d)
        if full_dose_noise:
            full[k], low[k] = simulate_dose_pair(clean[k], d, pixel_mm=pixel_mm, seed=rng)
        else:
            full[k] = clean[k]
            low[k] = simulate_low_dose(clean[k], d, pixel_mm=pixel_mm, seed=rng)
    _atomic_save_npy(rootp / f"{pseed:07d}.clean.npy", _to_int16(clean))
    _atomic_save_npy(rootp / f"{pseed:07d}.full.npy", _to_int16(full))
    _atomic_save_npy(rootp / f"{pseed:07d}.low.npy", _to_int16(low))
    meta = {"seed": pseed, "doses": dose_list, "contrast": contrast, "lesions": lesions}
    if psf is not None:
        meta["psf_mm"] = psf
    if cuts:
        meta["cut_slices"] = cuts
    write_bytes_atomic(marker, (json.dumps(meta, indent=1) + "\n").encode())


def build_denoising_pairs(
    cache_dir: str | Path,
    n_phantoms: int,
    slices_per_phantom: int = 8,
    doses: tuple[float, float] = (0.1, 0.5),
    seed: int = 0,
    size: int = 512,
    spacing: tuple[float, float] = (2.5, 0.7),
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    full_dose_noise: bool = True,
    region: str = "body",
    psf_mm: tuple[float, float] | None = None,
    cut: float = 0.0,
) -> DenoisingPairs:
    """Build (or resume, or just open) a cached set of denoising pairs.

    Parameters
    ----------
    cache_dir : path
        Parent folder; the set lives in a sub-folder named by its parameters.
    n_phantoms : int
        Phantoms (seeds ``seed .. seed + n_phantoms - 1``).
    slices_per_phantom : int
        Axial slices per phantom, spread evenly over :data:`Z_SPAN_MM`.
    doses : (float, float)
        Range of low-dose fractions, drawn log-uniformly per slice.
    seed : int
        First phantom seed (see the module's seed convention).
    size : int
        Slice size in pixels (square).
    spacing : (slice thickness, pixel) in mm
        Slice thickness (partial volume along z) and in-plane pixel size.
    workers : int, optional
        Processes; default: the available cores (1 = in this process).
    progress, cancel : callables, optional
        Progress per phantom; cancel stops between phantoms (finished ones are kept).
    full_dose_noise : bool
        True: ``full`` carries realistic full-dose noise (paired with the low
        dose by binomial thinning). False: ``full`` is the noise-free phantom.
    region : {"body", "head", "leaves", "images", "photos"}
        Chest/abdomen phantoms (slices over :data:`Z_SPAN_MM`), head phantoms
        (slices over :data:`medviewer.training.phantom_head.HEAD_Z_RANGE_MM`),
        dead-leaves slices (:mod:`medviewer.training.dead_leaves`; a generic
        image prior, no anatomy) or slices from the sample packages' MR and
        radiograph images given CT values (:mod:`medviewer.training.image_slices`;
        real structure, no CT evaluation file), or slices from scikit-image's
        bundled photographs given CT values (same module; real-world structure).
    psf_mm : (float, float), optional
        Range of the phantoms' in-plane scanner blur (Gaussian sigma, mm), one
        value per phantom drawn log-uniformly; default every phantom at
        :data:`medviewer.training.phantom_anatomy.SCANNER_PSF_MM`. Real scans
        reconstructed with sharp kernels have edges far steeper than that.
    cut : float
        Share of the slices cut straight to padding (a field-of-view circle or
        a mask; :func:`medviewer.training.hard_edges.cut_slice`) before the
        scanner is simulated; default 0.

    Returns
    -------
    DenoisingPairs

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pairs = build_denoising_pairs(d, 1, slices_per_phantom=2, size=64, spacing=(2.5, 5.6), workers=1)
    ...     full, low, dose = pairs[0]
    ...     len(pairs), full.shape, 0.1 <= dose <= 0.5
    (2, (64, 64), True)
    """
    check_seed_range(seed, n_phantoms)
    if slices_per_phantom < 1:
        raise ValueError(f"slices_per_phantom must be >= 1, got {slices_per_phantom}")
    if not (0.0 < doses[0] <= doses[1] < 1.0):
        raise ValueError(f"doses must satisfy 0 < low <= high < 1, got {doses}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    thickness, pixel = float(spacing[0]), float(spacing[1])
    if not (thickness > 0 and pixel > 0):
        raise ValueError(f"spacing must be positive, got {spacing}")
    params = {"slices_per_phantom": int(slices_per_phantom), "doses": [float(doses[0]), float(doses[1])], "size": int(size),
              "thickness": thickness, "pixel_mm": pixel, "full_dose_noise": bool(full_dose_noise)}
    if region not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    if region != "body":  # body sets keep their cache folder names
        params["region"] = str(region)
    psf: tuple[float, float] | None = None
    if psf_mm is not None:
        psf = (float(psf_mm[0]), float(psf_mm[1]))
        if not (0.0 < psf[0] <= psf[1] <= 5.0):
            raise ValueError(f"psf_mm must satisfy 0 < low <= high <= 5 mm, got {psf_mm}")
        params["psf_mm"] = list(psf)  # sets at the default blur keep their cache folder names
    if not 0.0 <= cut <= 1.0:
        raise ValueError(f"cut must lie in [0, 1], got {cut}")
    if cut > 0:  # sets without cuts keep their cache folder names
        params["cut"] = float(cut)
    root = _param_folder(Path(cache_dir), "denoise", params)
    seeds = list(range(int(seed), int(seed) + int(n_phantoms)))
    todo = [s for s in seeds if not (root / f"{s:07d}.json").exists()]
    args = [(str(root), s, int(slices_per_phantom), int(size), pixel, thickness, (float(doses[0]), float(doses[1])), bool(full_dose_noise), str(region), psf, float(cut)) for s in todo]
    _run_jobs(_denoise_job, args, workers, progress, cancel, "denoising pairs", len(seeds) - len(todo), len(seeds))
    dose_arr = np.empty(len(seeds) * slices_per_phantom, np.float32)
    for n, s in enumerate(seeds):
        try:
            meta = json.loads((root / f"{s:07d}.json").read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"{root / f'{s:07d}.json'}: unreadable marker ({exc}); delete it to regenerate") from exc
        dose_arr[n * slices_per_phantom : (n + 1) * slices_per_phantom] = meta["doses"]
    return DenoisingPairs(root, seeds, int(slices_per_phantom), pixel, dose_arr)


# --------------------------------------------------------------------------- detection volumes
@dataclass
class DetectionVolumes:
    """Phantom volumes with lesion masks on disk; ``vols[i]`` is a dict.

    Keys: ``volume_hu`` (z, y, x) float32, ``labels`` (z, y, x) int16,
    ``lesions`` (list of :meth:`Lesion.to_dict` dicts), ``spacing`` (z, y, x),
    ``origin`` (x, y, z) LPS mm, ``seed``, ``contrast``.
    """

    root: Path
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"volume {i} out of range for {n}")
        s = self.seeds[i % n]
        try:
            meta = json.loads((self.root / f"{s:07d}.json").read_text())
            vol = np.load(self.root / f"{s:07d}.volume.npy", mmap_mode="r", allow_pickle=False)
            lab = np.load(self.root / f"{s:07d}.labels.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ExportError(f"{self.root}: cannot read cached volume {s} ({exc}); delete its files to rebuild") from exc
        return {
            "volume_hu": np.asarray(vol, np.float32),
            "labels": np.asarray(lab, np.int16),
            "lesions": meta["lesions"],
            "spacing": tuple(meta["spacing"]),
            "origin": tuple(meta["origin"]),
            "seed": s,
            "contrast": meta["contrast"],
        }


def _detect_job(root: str, vseed: int, shape: tuple[int, int, int], spacing: tuple[float, float, float], free_fraction: float,
                n_range: tuple[int, int], kinds: list[str] | None, noise_dose: float | None, cancel: CancelFn | None = None) -> None:
    rootp = Path(root)
    marker = rootp / f"{vseed:07d}.json"
    if marker.exists():
        return
    rng = np.random.default_rng(np.random.SeedSequence([vseed, 7]))
    n_les = 0 if rng.random() < free_fraction else int(rng.integers(n_range[0], n_range[1] + 1))
    ph = make_phantom(vseed, shape=shape, spacing=spacing, n_lesions=n_les, lesion_kinds=kinds, cancel=cancel)
    vol = ph.volume.voxels
    if noise_dose is not None:
        from medviewer.training.lowdose import simulate_low_dose_volume

        vol = simulate_low_dose_volume(vol, noise_dose, pixel_mm=spacing[2], seed=rng, cancel=cancel)
    _atomic_save_npy(rootp / f"{vseed:07d}.volume.npy", _to_int16(vol))
    _atomic_save_npy(rootp / f"{vseed:07d}.labels.npy", ph.labels.astype(np.int16))
    meta = {"seed": vseed, "spacing": list(ph.volume.spacing), "origin": list(ph.volume.origin), "contrast": ph.contrast,
            "lesions": [les.to_dict() for les in ph.lesions]}
    write_bytes_atomic(marker, (json.dumps(meta, indent=1) + "\n").encode())


def build_detection_volumes(
    cache_dir: str | Path,
    n_volumes: int,
    seed: int = 0,
    shape: tuple[int, int, int] = (64, 256, 256),
    spacing: tuple[float, float, float] = (2.5, 1.4, 1.4),
    lesion_free_fraction: float = 0.2,
    n_lesions: tuple[int, int] = (1, 6),
    lesion_kinds: Sequence[str] | None = None,
    noise_dose: float | None = 1.0,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> DetectionVolumes:
    """Build (or resume, or open) a cached set of phantom volumes with lesions.

    Parameters
    ----------
    cache_dir : path
        Parent folder; the set lives in a sub-folder named by its parameters.
    n_volumes : int
        Volumes (phantom seeds ``seed .. seed + n_volumes - 1``).
    seed : int
        First seed (see the module's seed convention).
    shape, spacing : (z, y, x)
        Grid and voxel size (mm).
    lesion_free_fraction : float
        Probability that a volume has no lesion (drawn per seed, reproducibly).
    n_lesions : (int, int)
        Inclusive range of lesions in the other volumes.
    lesion_kinds : sequence of str, optional
        Allowed kinds (default all).
    noise_dose : float or None
        Add the noise of a scan at this dose fraction (1.0 = routine dose);
        None keeps the noise-free phantom.
    workers, progress, cancel
        As in :func:`build_denoising_pairs`.

    Returns
    -------
    DetectionVolumes
    """
    check_seed_range(seed, n_volumes)
    if not 0.0 <= lesion_free_fraction <= 1.0:
        raise ValueError(f"lesion_free_fraction must be in [0, 1], got {lesion_free_fraction}")
    if not (1 <= n_lesions[0] <= n_lesions[1]):
        raise ValueError(f"n_lesions must be a range 1 <= lo <= hi, got {n_lesions}")
    if noise_dose is not None and not 0.0 < noise_dose <= 1.0:
        raise ValueError(f"noise_dose must be in (0, 1] or None, got {noise_dose}")
    shape_t = (int(shape[0]), int(shape[1]), int(shape[2]))
    spacing_t = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    kinds = list(lesion_kinds) if lesion_kinds else None
    params = {"shape": list(shape_t), "spacing": list(spacing_t), "lesion_free_fraction": float(lesion_free_fraction),
              "n_lesions": [int(n_lesions[0]), int(n_lesions[1])], "kinds": kinds, "noise_dose": noise_dose}
    root = _param_folder(Path(cache_dir), "detect", params)
    seeds = list(range(int(seed), int(seed) + int(n_volumes)))
    todo = [s for s in seeds if not (root / f"{s:07d}.json").exists()]
    args = [(str(root), s, shape_t, spacing_t, float(lesion_free_fraction), (int(n_lesions[0]), int(n_lesions[1])), kinds, noise_dose) for s in todo]
    _run_jobs(_detect_job, args, workers, progress, cancel, "detection volumes", len(seeds) - len(todo), len(seeds))
    return DetectionVolumes(root, seeds)


__all__ = [
    "DATASET_VERSION",
    "DenoisingPairs",
    "DetectionVolumes",
    "build_denoising_pairs",
    "build_detection_volumes",
    "check_seed_range",
    "TRAINING_SEED_LIMIT",
    "EVALUATION_SEED_BASE",
]
