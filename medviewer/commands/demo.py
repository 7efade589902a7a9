"""`medviewer demo [--out DIR]`: write the deterministic demo study as DICOM.

Two series of one synthetic chest/upper-abdomen CT (routine dose and
simulated quarter dose) plus ``lesions.json`` with the ground truth.
Without ``--out`` the study goes to the user cache, where
``medviewer --demo`` finds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="write the demo CT study (two series + lesions.json) as DICOM")
    p.add_argument("--out", type=Path, default=None, help="destination folder (default: the cache folder used by `medviewer --demo`)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    p.add_argument("--quick", action="store_true", help="a small 16 x 96 x 96 study (for smoke tests)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the demo study; prints its folder."""
    from medviewer.progress import console_progress
    from medviewer.training.demo import ensure_demo_study, write_demo_study

    progress = console_progress("demo ")
    if args.out is None and not args.quick:
        folder = ensure_demo_study(progress)
    else:
        out = args.out
        if out is None:
            from medviewer.resources import cache_dir

            out = cache_dir() / "demo-quick"
        kw = {"shape": (16, 96, 96), "spacing": (5.0, 3.7, 3.7)} if args.quick else {}
        folder = write_demo_study(out, progress, overwrite=args.overwrite or (args.out is None), **kw)  # type: ignore[arg-type]
    print(folder)
    return 0
