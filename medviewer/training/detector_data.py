"""Training and validation volumes of the lesion detector.

CT phantoms with inserted lesions, generated at the network's internal
spacing (:class:`TrainVolume`) and cached as ``.npz`` files stamped with the
phantom engine's version (:func:`load_volumes`); the volume groups (chest,
kidney level, host-HU placement, head) with their seeds and default counts
(:func:`volume_groups`); the validation phantoms every detector is calibrated
on (:func:`load_validation`) and their textured copies (:func:`with_texture`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medviewer.ai.detector import INTERNAL_SPACING
from medviewer.errors import ModelError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.training.datasets import DATASET_VERSION
from medviewer.training.detector_augment import add_texture, host_hu_lesions, host_hu_margin_px

#: Seed of the texture laid on the validation volumes for the textured validation CPM (:func:`with_texture`).
TEXTURED_VAL_SEED = 7
#: Size (slices, rows, columns) of the training phantoms at the internal spacing.
TRAIN_SHAPE: tuple[int, int, int] = (40, 256, 256)
TRAIN_SEED0 = 0
VAL_SEED0 = 90_000
N_TRAIN = 64
N_VAL = 16
#: Extra volumes centred lower in the body (kidneys, bowel, lower liver), with their own seeds.
Z_ABDOMEN_MM = -120.0
N_TRAIN_ABDOMEN = 32
N_VAL_ABDOMEN = 8
TRAIN_ABDOMEN_SEED0 = 5_000
VAL_ABDOMEN_SEED0 = 90_500
#: Extra volumes whose lesions are placed by host HU, not by organ (half at each level).
N_TRAIN_HOST_HU = 32
N_VAL_HOST_HU = 8
TRAIN_HOST_HU_SEED0 = 7_000
VAL_HOST_HU_SEED0 = 90_700
#: Head phantoms (brain CT in a head holder), lesions placed by host HU anywhere in the head.
Z_HEAD_MM = 5.0
N_TRAIN_HEAD = 32
N_VAL_HEAD = 8
TRAIN_HEAD_SEED0 = 9_000
VAL_HEAD_SEED0 = 90_900
#: Image volumes (:mod:`medviewer.training.detector_images`: real structure of MR and radiograph images moved along z),
#: lesions placed by host HU; training only (0 by default), validation stays on phantoms.
TRAIN_IMAGES_SEED0 = 11_000
#: Default training / validation volume counts per group (``--volumes GROUP=TRAIN/VAL``).
VOLUME_GROUPS: dict[str, tuple[int, int]] = {
    "chest": (N_TRAIN, N_VAL),
    "kidney": (N_TRAIN_ABDOMEN, N_VAL_ABDOMEN),
    "host-hu": (N_TRAIN_HOST_HU, N_VAL_HOST_HU),
    "head": (N_TRAIN_HEAD, N_VAL_HEAD),
    "images": (0, 0),
}


@dataclass
class TrainVolume:
    """One training volume at the internal spacing."""

    hu: NDArray[np.float16]
    labels: NDArray[np.uint8]
    centers: NDArray[np.float64]
    """(n, 3) lesion centres as (k, j, i) indices."""
    diameters: NDArray[np.float64]
    kinds: list[str] = field(default_factory=list)
    seed: int = 0


def _lesion_fields(les: Any) -> tuple[tuple[float, float, float], float, str]:
    get = les.get if isinstance(les, dict) else (lambda k, d=None: getattr(les, k, d))
    c = get("center_index")
    d = get("diameter_mm")
    if c is None or d is None:
        raise ValueError(f"lesion record without centre or diameter: {les!r}")
    return (float(c[0]), float(c[1]), float(c[2])), float(d), str(get("kind", ""))


def _to_train_volume(item: Any, seed: int) -> TrainVolume:
    if isinstance(item, dict):
        hu, labels, lesions = item["volume_hu"], item["labels"], item["lesions"]
    else:  # a Phantom
        hu, labels, lesions = item.volume.voxels, item.labels, item.lesions
    fields = [_lesion_fields(les) for les in lesions]
    return TrainVolume(
        hu=np.asarray(hu, dtype=np.float32).clip(-1024, 3071).astype(np.float16),
        labels=(np.asarray(labels) > 0).astype(np.uint8),
        centers=np.array([f[0] for f in fields], dtype=np.float64).reshape(-1, 3),
        diameters=np.array([f[1] for f in fields], dtype=np.float64),
        kinds=[f[2] for f in fields],
        seed=seed,
    )


def _generate_volume(
    seed: int,
    shape: tuple[int, int, int],
    lesion_free: bool,
    z_center_mm: float = -10.0,
    placement: str = "anatomical",
    region: str = "body",
) -> TrainVolume:
    """One training phantom; ``placement`` "anatomical" puts each lesion kind in its organ,
    "host_hu" anywhere in the body whose HU suits the kind (as on real backgrounds, where
    no organ map exists: a kidney-like lesion may then sit in muscle or spleen).
    ``region`` "head" paints a head phantom instead of the chest/abdomen, "images" an image slice
    moved along z (:mod:`medviewer.training.detector_images`; lesions by host HU)."""
    from medviewer.training.phantom import make_phantom

    n_lesions = 0 if lesion_free else int(np.random.default_rng([seed, 7]).integers(1, 7))
    if region == "images":
        from medviewer.training.detector_images import image_volume

        return _to_train_volume(image_volume(seed, shape, n_lesions), seed)
    if placement == "anatomical":
        ph = make_phantom(seed, shape=shape, spacing=INTERNAL_SPACING, n_lesions=n_lesions, z_center_mm=z_center_mm, region=region)
        return _to_train_volume(ph, seed)
    if placement != "host_hu":
        raise ValueError(f"unknown lesion placement {placement!r}")
    ph = make_phantom(seed, shape=shape, spacing=INTERNAL_SPACING, n_lesions=0, z_center_mm=z_center_mm, region=region)
    hu, labels, lesions = host_hu_lesions(np.asarray(ph.volume.voxels, np.float32), np.random.default_rng([seed, 11]), n_lesions)
    return _to_train_volume({"volume_hu": hu, "labels": labels, "lesions": lesions}, seed)


def _save_volume(v: TrainVolume, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.partial.npz")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            hu=v.hu,
            labels=v.labels,
            centers=v.centers,
            diameters=v.diameters,
            kinds=np.array(v.kinds, dtype="U32"),
            seed=np.array(v.seed),
            dataset_version=np.array(DATASET_VERSION),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_volume(path: Path, check_version: bool = True) -> TrainVolume:
    """Read a cached training volume.

    Raises ``ValueError`` when the file was written by another version of the
    phantom engine (:data:`medviewer.training.datasets.DATASET_VERSION`, or
    none recorded): the anatomy changed between versions, and training on
    stale phantoms while evaluating on current ones silently opens a gap.
    """
    with np.load(path) as z:
        if check_version:
            found = int(z["dataset_version"]) if "dataset_version" in z.files else None
            if found != DATASET_VERSION:
                raise ValueError(f"{path} holds phantom data version {found}, expected {DATASET_VERSION}")
        return TrainVolume(
            hu=z["hu"],
            labels=z["labels"],
            centers=z["centers"].reshape(-1, 3),
            diameters=z["diameters"].reshape(-1),
            kinds=[str(k) for k in z["kinds"]],
            seed=int(z["seed"]),
        )


def load_volumes(
    folder: Path,
    n: int,
    seed0: int,
    shape: tuple[int, int, int] = TRAIN_SHAPE,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    lesion_free_fraction: float = 0.2,
    z_center_mm: float = -10.0,
    placement: str = "anatomical",
    region: str = "body",
) -> list[TrainVolume]:
    """Generate (or read from the cache in ``folder``) ``n`` phantoms at the internal spacing.

    Volume ``i`` is :func:`medviewer.training.phantom.make_phantom` with seed
    ``seed0 + i``, shape ``shape`` and spacing :data:`INTERNAL_SPACING`; every
    volume whose index falls on the ``lesion_free_fraction`` grid is
    lesion-free, the others carry 1-6 lesions. Each volume is cached as
    ``<seed>_<shape>.npz`` (written atomically, stamped with the phantom
    engine's ``DATASET_VERSION``), so an interrupted generation resumes where
    it stopped; a cached volume of another engine version is regenerated.
    ``z_center_mm`` places the volumes along the body (see ``make_phantom``):
    the default shows lung bases and liver, :data:`Z_ABDOMEN_MM` kidneys and bowel;
    ``placement`` chooses where lesions go and ``region`` the anatomy (see :func:`_generate_volume`).
    """
    prog = Progress(progress)
    folder.mkdir(parents=True, exist_ok=True)
    every = max(1, int(round(1.0 / lesion_free_fraction))) if lesion_free_fraction > 0 else 0
    out = []
    for i in range(n):
        check_cancel(cancel, "generating training volumes")
        seed = seed0 + i
        zpart = "" if z_center_mm == -10.0 else f"_z{z_center_mm:g}"
        zpart += "" if placement == "anatomical" else f"_{placement}"
        zpart += f"{host_hu_margin_px()}px" if placement == "host_hu" else ""
        zpart += "" if region == "body" else f"_{region}"
        path = folder / f"{seed}_{'x'.join(map(str, shape))}{zpart}.npz"
        vol = None
        if path.is_file():
            try:
                vol = _read_volume(path)
            except (OSError, ValueError, KeyError):
                vol = None
        if vol is None:
            vol = _generate_volume(seed, shape, bool(every) and i % every == every - 1, z_center_mm, placement, region)
            _save_volume(vol, path)
        out.append(vol)
        prog((i + 1) / n, f"phantom {i + 1}/{n}")
    return out


def volume_groups(specs: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """Training / validation volume counts per group, defaults overridden by ``GROUP=TRAIN/VAL`` specs.

    Groups (see :data:`VOLUME_GROUPS`): ``chest`` (diaphragm level, lesions in
    their organs), ``kidney`` (120 mm lower), ``host-hu`` (lesions placed by
    host HU, half at each level), ``head`` and ``images`` (training only; none by default).
    ``head=0/0`` drops a group; ``chest=8`` sets only the training count.
    """
    out = dict(VOLUME_GROUPS)
    for spec in specs or []:
        name, sep, counts = spec.partition("=")
        name = name.strip()
        if not sep or name not in out:
            raise ModelError(f"--volumes {spec!r}: expected GROUP=TRAIN[/VAL] with GROUP one of {', '.join(out)}")
        train_s, _, val_s = counts.partition("/")
        try:
            n_train = int(train_s)
            n_val = int(val_s) if val_s else out[name][1]
        except ValueError:
            raise ModelError(f"--volumes {spec!r}: the counts must be whole numbers") from None
        if n_train < 0 or n_val < 0:
            raise ModelError(f"--volumes {spec!r}: the counts must not be negative")
        out[name] = (n_train, n_val)
    if out["images"][1]:
        raise ModelError("--volumes images=TRAIN: image volumes are for training only; validation stays on phantoms")
    if out["chest"][0] < 1 or out["chest"][1] < 1:
        raise ModelError("--volumes chest=TRAIN/VAL: training and calibration need at least one volume each")
    return out


def host_hu_halves(n: int) -> list[tuple[float, int, int]]:
    """Host-HU volumes split over the two levels: ``(z centre mm, count, seed offset)``, the odd one at the diaphragm."""
    first = n // 2 + n % 2
    return [(-10.0, first, 0), (Z_ABDOMEN_MM, n // 2, first)]


def load_validation(
    data: Path,
    groups: dict[str, tuple[int, int]] | None = None,
    shape: tuple[int, int, int] | None = None,
    progress: ProgressFn | None = None,
) -> list[TrainVolume]:
    """The validation phantoms of every group (:func:`volume_groups`), generated into ``data/val`` once.

    They are the same for every run with the same groups (fixed seeds), so a
    model made without training (e.g. a weight average) is calibrated and
    validated on exactly the volumes a trained one is.
    """
    groups = groups or volume_groups()
    shape = shape or TRAIN_SHAPE
    prog = Progress(progress)
    n_val = groups["chest"][1]
    val = load_volumes(data / "val", n_val, VAL_SEED0, shape, prog.sub(0.0, 0.4))  # type: ignore[arg-type]
    n_val_abd = groups["kidney"][1]
    if n_val_abd:
        val += load_volumes(data / "val", n_val_abd, VAL_ABDOMEN_SEED0, shape, prog.sub(0.4, 0.6), z_center_mm=Z_ABDOMEN_MM)  # type: ignore[arg-type]
    for part, (zc, nvh, offset) in enumerate(host_hu_halves(groups["host-hu"][1])):
        if nvh:
            val += load_volumes(data / "val", nvh, VAL_HOST_HU_SEED0 + offset, shape,  # type: ignore[arg-type]
                                prog.sub(0.6 + 0.1 * part, 0.7 + 0.1 * part), z_center_mm=zc, placement="host_hu")
    n_val_head = groups["head"][1]
    if n_val_head:
        val += load_volumes(data / "val", n_val_head, VAL_HEAD_SEED0, shape, prog.sub(0.8, 1.0),  # type: ignore[arg-type]
                            z_center_mm=Z_HEAD_MM, placement="host_hu", region="head")
    return val


def with_texture(vols: list[TrainVolume], seed: int = TEXTURED_VAL_SEED) -> list[TrainVolume]:
    """Copies of ``vols`` with tissue texture (:func:`add_texture`, generator ``[seed, i]`` for volume ``i``).

    The textured validation CPM tells how well a model finds lesions in
    mottled tissue, as on real CT, where 1.5.0 lost most of its sensitivity
    (validation CPM 0.782 plain, 0.482 textured).
    """
    return [
        replace(v, hu=add_texture(np.asarray(v.hu, np.float32), np.random.default_rng([seed, i])).astype(np.float16))
        for i, v in enumerate(vols)
    ]


def data_summary(vols: list[TrainVolume]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for v in vols:
        for k in v.kinds:
            kinds[k] = kinds.get(k, 0) + 1
    diam = np.concatenate([v.diameters for v in vols]) if vols else np.zeros(0)
    return {
        "n_volumes": len(vols),
        "lesion_free_volumes": int(sum(len(v.centers) == 0 for v in vols)),
        "n_lesions": int(len(diam)),
        "lesion_kinds": kinds,
        "diameter_mm_range": [round(float(diam.min()), 2), round(float(diam.max()), 2)] if len(diam) else [],
        "seeds": [vols[0].seed, vols[-1].seed] if vols else [],
    }


__all__ = [
    "TrainVolume",
    "load_volumes",
    "volume_groups",
    "host_hu_halves",
    "load_validation",
    "with_texture",
    "data_summary",
]
