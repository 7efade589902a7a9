"""`medviewer screenshot PATH --out FILE.png`: render the real main window offscreen.

Used for the README pictures and in tests. Qt is imported only when the command
runs; ``QT_QPA_PLATFORM=offscreen`` is set unless the caller chose a platform.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "screenshot",
        help="render the viewer window on a study to a PNG (offscreen)",
        description="Open PATH in the real main window offscreen, show one series and save a PNG.",
    )
    p.add_argument("path", type=Path, help="folder, DICOMDIR, zip or DICOM file")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument(
        "--series",
        default=None,
        help="SeriesNumber to show (else its 1-based position in the study browser); default: the largest series",
    )
    p.add_argument("--slice", type=int, default=None, help="1-based slice number (as in the corner text); default: middle")
    p.add_argument("--preset", default=None, help="window preset: soft-tissue, lung, liver, bone, brain, or 0-5")
    p.add_argument("--layout", choices=("1x1", "1x3"), default="1x1", help="viewer layout")
    p.add_argument("--size", default="1600x1000", help="window size WIDTHxHEIGHT in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--analyze", action="store_true", help="run Analyze (denoise + detect) first and show its overlays and findings"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medviewer.errors import ExportError, MedViewerError

    try:
        width, height = (int(v) for v in str(args.size).lower().split("x"))
    except ValueError as exc:
        raise MedViewerError(f"--size must look like 1600x1000, got {args.size!r}") from exc
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ExportError(f"{out} exists; pass --overwrite to replace it")
    from medviewer.gui.screenshot import render_screenshot

    path = render_screenshot(
        args.path,
        out,
        series=args.series,
        slice_number=args.slice,
        preset=args.preset,
        layout=args.layout,
        size=(width, height),
        overwrite=bool(args.overwrite),
        analyze=bool(args.analyze),
    )
    print(f"wrote {path}")
    return 0
