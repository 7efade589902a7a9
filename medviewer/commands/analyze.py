"""`medviewer analyze IN --output OUT [--denoise] [--series UID] [--device auto|cpu|cuda]`.

Loads a DICOM series, runs (optionally the denoiser, then) the lesion
detector, which reads the original images (the denoised series is for reading
and the report's derived series), and writes ``OUT/findings.json``, ``OUT/confidence.nii.gz`` and
``OUT/findings_labels.nii.gz``. When IN holds several CT series and none is
chosen with ``--series``, each goes to ``OUT/<SeriesInstanceUID>/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medviewer.commands.denoise import strength_arg


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "analyze",
        help="detect lesions in a CT series (optionally denoise first); research use only, not for diagnosis",
        description="Run the lesion detector (and optionally the low-dose denoiser) on DICOM CT and write "
        "findings.json plus the confidence map. Research use only, not for diagnosis.",
    )
    p.add_argument("input", type=Path, metavar="IN", help="DICOM folder, file, .zip or DICOMDIR")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="OUT", help="output folder")
    p.add_argument("--denoise", action="store_true", help="also run the GAN denoiser (its series is for reading and --report; the detector reads the original images)")
    p.add_argument("--series", default=None, metavar="UID", help="SeriesInstanceUID to analyse (default: every CT series)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the models run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs in OUT")
    rep = p.add_argument_group("report (issue 8): PDF, DICOM SR / SEG, key images, JSON/CSV, denoised series")
    rep.add_argument("--report", action="store_true", help="also write the annotated report into OUT/report/")
    rep.add_argument("--deidentify", action="store_true", help="de-identify the report (PS3.15 Basic Profile)")
    rep.add_argument("--paper", default="A4", choices=("A4", "Letter"), help="PDF paper size")
    rep.add_argument("--impression", default="", help="the reader's free-text impression for the PDF and SR")
    rep.add_argument(
        "--all-findings", action="store_true", help="report every candidate, not only those at the model's display threshold"
    )
    rep.add_argument("--fractional-seg", action="store_true", help="also write the confidence map as a FRACTIONAL SEG")
    rep.add_argument(
        "--strength",
        type=strength_arg,
        default=1.0,
        metavar="S",
        help="with --denoise: strength of the exported denoised series, 0.1-1 (default 1); detection reads the original images",
    )
    p.set_defaults(func=_run)


def _ct_series_uids(path: Path) -> list[tuple[str, str]]:
    """(uid, modality) of each viewable image series in ``path``, CT first, without duplicates."""
    from medviewer.dicom import scan

    seen: dict[str, str] = {}
    for study in scan(path):
        for s in study.series:
            if s.viewable and s.series_uid not in seen:
                seen[s.series_uid] = (s.modality or "").upper()
    return list(seen.items())


def analyze_series(volume: Any, out_dir: Path, args: argparse.Namespace, prefix: str = "") -> list[Path]:
    """Analyse one loaded volume and write its outputs into ``out_dir``.

    Separate from the series selection so further outputs (e.g. the PDF/DICOM
    report of :mod:`medviewer.report`) can be added here for every series.
    """
    from medviewer.ai.pipeline import analyze_volume, write_analysis
    from medviewer.progress import console_progress

    result = analyze_volume(
        volume,
        denoise=bool(args.denoise),
        device=args.device,
        progress=console_progress(prefix),
        threads=args.threads,
    )
    paths = write_analysis(result, out_dir, overwrite=bool(args.force))
    if getattr(args, "report", False):
        from medviewer.ai.denoise_strength import with_strength
        from medviewer.report.export import export_report

        denoised = result.denoised
        if denoised is not None and float(getattr(args, "strength", 1.0)) != 1.0:
            denoised = with_strength(volume, denoised, float(args.strength))

        summary = export_report(
            volume,
            result.detection,
            out_dir / "report",
            denoised=denoised,
            impression=args.impression,
            deidentify=bool(args.deidentify),
            include_fractional=bool(args.fractional_seg),
            min_confidence=None if args.all_findings else result.detection.threshold,
            paper=args.paper,
            overwrite=bool(args.force),
            progress=console_progress(prefix + "report "),
        )
        print(f"{prefix}report: {len(summary.files)} file(s) in {summary.out_dir}")
        for w in summary.warnings:
            print(f"{prefix}warning: {w}", file=sys.stderr)
    det = result.detection
    above = [f for f in det.findings if f.confidence >= det.threshold]
    print(
        f"{prefix}{len(above)} finding(s) at confidence >= {det.threshold:.2f} "
        f"({len(det.findings)} listed), abnormality score {det.abnormality_score:.3f}, "
        f"{det.model.name} {det.model.version} on {result.device}, {result.timings.get('total', 0.0):.1f} s"
    )
    for f in above:
        x, y, z = f.center_mm
        print(
            f"{prefix}  #{f.id}: confidence {f.confidence:.2f}, diameter {f.diameter_mm:.1f} mm, "
            f"slices {f.slice_range[0]}-{f.slice_range[1]}, centre (LPS mm) {x:.1f}, {y:.1f}, {z:.1f}"
        )
    for p in paths:
        print(f"{prefix}wrote {p}")
    print("Research use only, not for diagnosis.")
    return paths


def _run(args: argparse.Namespace) -> int:
    from medviewer.dicom import load
    from medviewer.errors import DicomError, MedViewerError
    from medviewer.progress import console_progress

    if not args.input.exists():
        raise DicomError("no such file or folder", args.input)
    if float(getattr(args, "strength", 1.0)) != 1.0 and not (args.denoise and args.report):
        raise MedViewerError("--strength sets the exported denoised series: it needs --denoise and --report")
    if args.series:
        volume = load(args.input, series_uid=args.series, progress=console_progress("loading "))
        analyze_series(volume, args.output, args)
        return 0
    series = _ct_series_uids(args.input)
    ct = [uid for uid, modality in series if modality == "CT"]
    if not ct:
        found = ", ".join(sorted({m or "unknown" for _, m in series})) or "no viewable image series"
        raise DicomError(f"no CT series to analyse (found: {found}); the lesion detector works on CT only", args.input)
    if len(ct) == 1:
        volume = load(args.input, series_uid=ct[0], progress=console_progress("loading "))
        analyze_series(volume, args.output, args)
        return 0
    print(f"{len(ct)} CT series: each goes to {args.output}/<SeriesInstanceUID>/", file=sys.stderr)
    for n, uid in enumerate(ct, start=1):
        prefix = f"[{n}/{len(ct)}] "
        volume = load(args.input, series_uid=uid, progress=console_progress(prefix + "loading "))
        analyze_series(volume, args.output / uid, args, prefix)
    return 0
