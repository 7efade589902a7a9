"""The deterministic demo study: a chest/upper-abdomen CT phantom as real DICOM.

:func:`write_demo_study` writes, into one folder,

* ``normal_dose/`` — series 1, the phantom with simulated routine-dose noise;
* ``low_dose/`` — series 2, the same acquisition at quarter dose (binomial
  thinning of the same photon counts, see
  :func:`medviewer.training.lowdose.simulate_dose_pair`);
* ``lesions.json`` — the ground truth: every lesion's kind, shape, centre
  (voxel and LPS mm), diameter and contrast, plus the UIDs.

Both series share the Study Instance UID and the Frame of Reference UID.
Everything (pixels, UIDs, dates) is derived from fixed seeds, so the study
is byte-for-byte reproducible. :func:`ensure_demo_study` writes it once into
the user cache (``medviewer --demo`` opens it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.errors import CancelledError, ExportError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.fileio import write_text_atomic

DEMO_VERSION = 1
"""Bumped when the demo content changes; :func:`ensure_demo_study` then rewrites it."""
DEMO_UID_SEED = "medviewer-demo-study-v1"
DEMO_SHAPE = (80, 512, 512)
DEMO_SPACING = (2.5, 0.7, 0.7)
#: (kind, diameter range mm) of the demo's lesions, one each.
DEMO_LESIONS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("solid_nodule", (7.0, 12.0)),
    ("part_solid_nodule", (12.0, 18.0)),
    ("solid_nodule", (4.0, 6.0)),
    ("liver_hypo", (14.0, 22.0)),
    ("liver_hyper", (10.0, 16.0)),
    ("kidney_hypo", (12.0, 18.0)),
    ("soft_tissue_mass", (20.0, 28.0)),
)
NORMAL_DIR = "normal_dose"
LOW_DIR = "low_dose"
GROUND_TRUTH = "lesions.json"


def write_demo_study(
    out_dir: str | os.PathLike[str],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the demo study (two series and ``lesions.json``) into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Destination folder; must not exist or be empty unless ``overwrite``.
        The study is assembled in a ``.partial-*`` folder and renamed at the end.
    progress, cancel : callables, optional
        Progress (phantom, noise simulation, writing) and cancellation (nothing is left behind).
    shape, spacing : (z, y, x), optional
        Grid, default :data:`DEMO_SHAPE` (80 x 512 x 512) at :data:`DEMO_SPACING`
        (2.5 x 0.7 x 0.7 mm); smaller ones are for tests and quick looks.
    overwrite : bool
        Replace an existing non-empty folder.

    Returns
    -------
    Path
        ``out_dir``.

    Examples
    --------
    >>> import tempfile, json
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_demo_study(d + "/demo", shape=(6, 64, 64), spacing=(5.0, 5.6, 5.6))
    ...     sorted(x.name for x in p.iterdir())
    ['lesions.json', 'low_dose', 'normal_dose']
    """
    from medviewer.dicom.write import write_series
    from medviewer.training.lowdose import QUARTER_DOSE, simulate_dose_pair
    from medviewer.training.phantom import DEMO_SEED, insert_lesions, make_phantom

    shape = tuple(shape) if shape is not None else DEMO_SHAPE  # type: ignore[assignment]
    spacing = tuple(spacing) if spacing is not None else DEMO_SPACING  # type: ignore[assignment]
    assert shape is not None and spacing is not None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"{out}: exists and is not an empty folder (choose another folder or allow overwriting)")
    report = Progress(progress)
    ph = make_phantom(DEMO_SEED, shape=shape, spacing=spacing, n_lesions=0, contrast=True, progress=report.sub(0.0, 0.2), cancel=cancel)
    vol = ph.volume
    rng = np.random.default_rng(np.random.SeedSequence([DEMO_SEED, 1]))
    from medviewer.training.phantom_anatomy import TISSUE_FAT, TISSUE_KIDNEY, TISSUE_LIVER, TISSUE_LUNG, TISSUE_MUSCLE

    hosts = {
        "solid_nodule": ph.tissue == TISSUE_LUNG,
        "part_solid_nodule": ph.tissue == TISSUE_LUNG,
        "liver_hypo": ph.tissue == TISSUE_LIVER,
        "liver_hyper": ph.tissue == TISSUE_LIVER,
        "kidney_hypo": ph.tissue == TISSUE_KIDNEY,
        "soft_tissue_mass": (ph.tissue == TISSUE_MUSCLE) | (ph.tissue == TISSUE_FAT),
    }
    hu = vol.voxels
    labels = np.zeros(vol.shape, np.int16)
    lesions: list[Any] = []
    for kind, drange in DEMO_LESIONS:
        check_cancel(cancel, "demo study")
        free = hosts[kind] & (labels == 0)
        hu, labels, new = insert_lesions(vol.with_voxels(hu), None, rng, 1, kinds=[kind], allowed={kind: free},
                                         diameter_range_mm=drange, first_label=len(lesions) + 1, labels=labels)
        lesions += new
    report(0.25, "lesions inserted")
    normal = np.empty_like(hu)
    low = np.empty_like(hu)
    sub = report.sub(0.25, 0.85)
    for k in range(vol.shape[0]):
        check_cancel(cancel, "demo study")
        normal[k], low[k] = simulate_dose_pair(hu[k], QUARTER_DOSE, pixel_mm=float(spacing[2]), seed=rng)
        sub((k + 1) / vol.shape[0], f"simulating the scan: slice {k + 1}/{vol.shape[0]}")

    meta = vol.metadata
    meta.patient_name = "DEMO^PHANTOM"
    meta.patient_id = "MVDEMO01"
    meta.patient_sex = "O"
    meta.study_description = "MedViewer demo: synthetic CT phantom (research only)"
    meta.study_date = "20240101"
    meta.study_time = "090000"
    meta.accession_number = "MVDEMO0001"
    meta.institution_name = "MedViewer synthetic data"
    base = vol.with_voxels(normal)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{out.name}-", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"{out.parent}: cannot create a folder there ({exc.strerror or exc})") from exc
    try:
        from medviewer.dicom.write import _uid

        study_uid = _uid(DEMO_UID_SEED, "study")
        frame_uid = _uid(DEMO_UID_SEED, "frame")
        files_n = write_series(base, partial / NORMAL_DIR, series_description="Phantom chest-abdomen, routine dose",
                               series_number=1, study_uid=study_uid, frame_of_reference_uid=frame_uid,
                               uid_seed=DEMO_UID_SEED, progress=report.sub(0.85, 0.92), cancel=cancel)
        files_l = write_series(base.with_voxels(low), partial / LOW_DIR,
                               series_description="Phantom chest-abdomen, quarter dose (simulated)",
                               series_number=2, study_uid=study_uid, frame_of_reference_uid=frame_uid,
                               uid_seed=DEMO_UID_SEED, progress=report.sub(0.92, 0.99), cancel=cancel)
        import pydicom

        series_uids = [str(pydicom.dcmread(f[0], stop_before_pixels=True).SeriesInstanceUID) for f in (files_n, files_l)]
        truth = {
            "version": DEMO_VERSION,
            "note": "Synthetic phantom. Research use only, not for diagnosis.",
            "phantom_seed": DEMO_SEED,
            "study_instance_uid": study_uid,
            "frame_of_reference_uid": frame_uid,
            "series": [
                {"folder": NORMAL_DIR, "series_number": 1, "series_instance_uid": series_uids[0], "dose_fraction": 1.0},
                {"folder": LOW_DIR, "series_number": 2, "series_instance_uid": series_uids[1], "dose_fraction": QUARTER_DOSE},
            ],
            "shape_zyx": list(vol.shape),
            "spacing_zyx_mm": list(vol.spacing),
            "origin_lps_mm": list(vol.origin),
            "contrast_phase": "portal venous",
            "lesions": [les.to_dict() for les in lesions],
        }
        write_text_atomic(partial / GROUND_TRUTH, json.dumps(truth, indent=2) + "\n")
        if out.exists():
            if any(out.iterdir()):
                if not overwrite:
                    raise ExportError(f"{out}: folder appeared while writing and is not empty; nothing was replaced")
                shutil.rmtree(out)
            else:
                out.rmdir()
        os.replace(partial, out)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ExportError(f"{out}: cannot write the demo study ({exc.strerror or exc}); nothing was written") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    report(1.0, "demo study written")
    return out


def _demo_complete(folder: Path) -> bool:
    try:
        truth = json.loads((folder / GROUND_TRUTH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if truth.get("version") != DEMO_VERSION:
        return False
    n = int(truth.get("shape_zyx", [0])[0])
    return all(len(list((folder / d).glob("*.dcm"))) == n for d in (NORMAL_DIR, LOW_DIR))


def ensure_demo_study(progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> Path:
    """The demo study folder in the user cache, written on first use.

    Returns ``medviewer.resources.cache_dir() / "demo"``, holding
    ``normal_dose/``, ``low_dose/`` and ``lesions.json``. An incomplete or
    outdated copy is replaced. Takes about a minute or two the first time.

    Parameters
    ----------
    progress, cancel : callables, optional
        Passed to :func:`write_demo_study`.

    Returns
    -------
    Path
    """
    from medviewer.resources import cache_dir

    folder = cache_dir() / "demo"
    if _demo_complete(folder):
        if progress is not None:
            progress(1.0, "demo study ready")
        return folder
    try:
        return write_demo_study(folder, progress, cancel, overwrite=True)
    except CancelledError:
        raise
    except ExportError:
        if _demo_complete(folder):  # written meanwhile by another MedViewer process
            return folder
        raise


__all__ = ["write_demo_study", "ensure_demo_study", "DEMO_VERSION", "DEMO_LESIONS", "NORMAL_DIR", "LOW_DIR", "GROUND_TRUTH"]
