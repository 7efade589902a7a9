"""`medviewer denoise IN OUT`: write an AI-denoised copy of a CT series as a derived series."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "denoise",
        help="denoise a low-dose CT series into a new derived DICOM series (research use, not for diagnosis)",
    )
    p.add_argument("input", type=Path, metavar="IN", help="DICOM folder, file, zip or DICOMDIR")
    p.add_argument("output", type=Path, metavar="OUT", help="new folder for the derived series (must not exist)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--series", default=None, metavar="UID", help="Series Instance UID when IN holds several series")
    p.add_argument(
        "--strength",
        type=strength_arg,
        default=1.0,
        metavar="S",
        help="share of the predicted noise removed, 0.1-1 (default 1: all of it); e.g. 0.7 keeps some noise grain, "
        "as vendors' iterative-reconstruction blend levels do; tagged in the series description",
    )
    p.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def strength_arg(text: str) -> float:
    """argparse type of ``--strength``: a float in [0.1, 1] (:func:`~medviewer.ai.denoise_strength.check_strength`)."""
    from medviewer.ai.denoise_strength import check_strength

    try:
        return check_strength(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    import time

    from medviewer.ai.denoise import denoise_volume, denoiser_info
    from medviewer.dicom import load
    from medviewer.errors import ExportError
    from medviewer.progress import console_progress
    from medviewer.report.derived import write_derived_series

    src_path: Path = args.input
    out: Path = args.output
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: already exists and is not empty (never overwritten); choose a new folder")
    info = denoiser_info(args.weights)  # fail early on missing weights
    volume = load(src_path, series_uid=args.series, progress=console_progress("load    "))
    t1 = time.perf_counter()
    denoised = denoise_volume(
        volume, device=args.device, progress=console_progress("denoise "), folder=args.weights, strength=args.strength
    )
    t2 = time.perf_counter()
    files = write_derived_series(
        denoised, volume, out, model=info, protected=[src_path], progress=console_progress("write   ")
    )
    print(
        f"wrote {len(files)} slices to {out} ({denoised.metadata.series_description!r}; "
        f"{info.name} {info.version}; denoising {1000 * (t2 - t1) / max(1, volume.n_slices):.0f} ms/slice). "
        f"{info.intended_use}"
    )
    return 0
