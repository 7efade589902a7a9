"""`medviewer phantom`: generate a CT phantom; preview it beside real CT or write it as DICOM.

``medviewer phantom --preview OUT.png [--seed N] [--region head]`` draws phantom
slices next to real CT slices from pydicom / pydicom-data at the same windows.
``medviewer phantom --dicom DIR [--seed N] [--dose F]`` writes the phantom
(optionally with simulated scan noise at dose fraction F) as a CT series,
with its lesions in ``DIR/lesions.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``phantom`` sub-command."""
    p = sub.add_parser("phantom", help="generate a CT phantom: --preview PNG beside real CT, or --dicom DIR")
    p.add_argument("--preview", type=Path, default=None, metavar="OUT.png", help="write a PNG grid of phantom vs real CT slices")
    p.add_argument("--dicom", type=Path, default=None, metavar="DIR", help="write the phantom as a DICOM CT series")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--slices", type=int, default=80, help="number of 2.5 mm slices (default 80)")
    p.add_argument("--size", type=int, default=512, help="rows and columns (default 512, 0.7 mm pixels scaled to keep a 358 mm field)")
    p.add_argument("--lesions", type=int, default=None, help="number of lesions (default random 0-6)")
    p.add_argument("--dose", type=float, default=1.0, help="add scan noise at this dose fraction (default 1.0; 0 = noise-free)")
    p.add_argument("--region", choices=("body", "head"), default="body",
                   help="chest/upper abdomen (default) or head (0.45 mm pixels at --size 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --dicom folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the phantom command."""
    import json

    from medviewer.errors import ExportError
    from medviewer.progress import console_progress

    if args.preview is None and args.dicom is None:
        raise ExportError("nothing to do: give --preview OUT.png and/or --dicom DIR")
    if args.size < 32 or args.slices < 1:
        raise ExportError("--size must be >= 32 and --slices >= 1")
    if not 0.0 <= args.dose <= 1.0:
        raise ExportError("--dose must be in [0, 1] (0 = noise-free)")
    px = (0.45 if args.region == "head" else 0.7) * 512 / args.size
    shape = (args.slices, args.size, args.size)
    spacing = (2.5, px, px)
    dose = args.dose if args.dose > 0 else None
    if args.preview is not None:
        from medviewer.training.phantom_preview import render_preview

        out = render_preview(args.preview, args.seed, shape=shape, spacing=spacing, dose=dose, region=args.region,
                             progress=console_progress("preview "))
        print(out)
    if args.dicom is not None:
        from medviewer.dicom.write import write_series
        from medviewer.training.lowdose import simulate_low_dose_volume
        from medviewer.training.phantom import make_phantom

        ph = make_phantom(args.seed, shape=shape, spacing=spacing, n_lesions=args.lesions, region=args.region,
                          z_center_mm=5.0 if args.region == "head" else -10.0, progress=console_progress("phantom "))
        vol = ph.volume
        if dose is not None:
            vol = vol.with_voxels(simulate_low_dose_volume(vol.voxels, dose, pixel_mm=px, seed=args.seed, progress=console_progress("scan    ")))
        desc = f"Phantom seed {args.seed}" + (f", dose {dose:g}" if dose is not None else ", noise-free")
        files = write_series(vol, args.dicom, series_description=desc, uid_seed=f"medviewer-phantom-{args.seed}",
                             overwrite=args.overwrite, progress=console_progress("write   "))
        truth = {"phantom_seed": args.seed, "dose_fraction": dose, "contrast": ph.contrast,
                 "note": "Synthetic phantom. Research use only, not for diagnosis.",
                 "lesions": [les.to_dict() for les in ph.lesions]}
        from medviewer.fileio import write_text_atomic

        write_text_atomic(Path(args.dicom) / "lesions.json", json.dumps(truth, indent=2) + "\n")
        print(f"{args.dicom} ({len(files)} files)")
    return 0
