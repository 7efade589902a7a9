"""`medviewer info PATH [--json]`: what DICOM is in a folder, zip, DICOMDIR or file.

Prints the patient / study / series tree (modality, description, images,
size, spacing, whether it can be viewed and why not) and the files that could
not be used, with the reason. ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_MAX_SKIPPED_LINES = 50


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``info`` sub-command."""
    p = sub.add_parser("info", help="list the patients, studies and series in a folder, zip, DICOMDIR or file")
    p.add_argument("path", nargs="+", type=Path, help="folder, DICOMDIR, .zip or DICOM file(s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a tree")
    p.set_defaults(func=run)


def _series_dict(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "series_uid": s.series_uid,
        "number": s.number,
        "modality": s.modality,
        "description": s.description,
        "kind": s.kind,
        "images": s.n_images,
        "files": s.n_files,
        "viewable": s.viewable,
        "reason": s.reason,
        "rows": s.rows,
        "columns": s.columns,
        "slices": len(s.frames),
        "spacing_mm": list(s.spacing) if s.spacing else None,
        "volume_bytes": s.volume_bytes if s.viewable else 0,
        "file_bytes": s.size_bytes,
        "warnings": list(s.warnings),
    }
    if s.sub_series:
        out["sub_series"] = [
            {
                "label": b.label,
                "slices": len(b.frames),
                "rows": b.rows,
                "columns": b.columns,
                "spacing_mm": list(b.spacing) if b.spacing else None,
                "warnings": list(b.warnings),
            }
            for b in s.sub_series
        ]
    return out


def report_dict(report: Any) -> dict[str, Any]:
    """The scan report as plain JSON-able data.

    Parameters
    ----------
    report : medviewer.dicom.ScanReport

    Returns
    -------
    dict
        ``{"studies": [...], "skipped": [{"path", "reason"}]}``.
    """
    return {
        "studies": [
            {
                "patient_name": st.patient_name,
                "patient_id": st.patient_id,
                "birth_date": st.birth_date,
                "study_uid": st.study_uid,
                "study_date": st.study_date,
                "study_description": st.study_description,
                "accession": st.accession,
                "series": [_series_dict(s) for s in st.series],
            }
            for st in report.studies
        ],
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def format_tree(report: Any) -> str:
    """The scan report as an indented text tree (what ``medviewer info`` prints)."""
    lines: list[str] = []
    last_patient: tuple[str, str] | None = None
    for st in report.studies:
        patient = (st.patient_name, st.patient_id)
        if patient != last_patient:
            born = f", born {st.birth_date}" if st.birth_date else ""
            lines.append(f"Patient {st.patient_name or '(no name)'} [{st.patient_id or 'no ID'}]{born}")
            last_patient = patient
        acc = f", accession {st.accession}" if st.accession else ""
        lines.append(f"  Study {st.study_date or '(no date)'} {st.study_description!r}{acc}  UID {st.study_uid}")
        for s in st.series:
            head = f"    Series {s.number if s.number is not None else '-'} {s.modality or '?'} {s.description!r} ({s.kind})"
            if s.viewable:
                sp = " x ".join(f"{v:.3g}" for v in s.spacing) if s.spacing else "?"
                lines.append(
                    f"{head}: {s.n_images} images, {len(s.frames)} x {s.rows} x {s.columns}"
                    f"{' RGB' if s.is_color else ''}, spacing {sp} mm (z y x), {_mib(s.volume_bytes)}"
                )
            else:
                lines.append(f"{head}: {s.n_files} file(s), not viewable: {s.reason}")
            for w in s.warnings:
                lines.append(f"      ! {w}")
            for b in s.sub_series:
                lines.append(f"      - {b.label}")
    if not report.studies:
        lines.append("No DICOM studies found.")
    if report.skipped:
        lines.append(f"Files not used ({len(report.skipped)}):")
        for p, r in report.skipped[:_MAX_SKIPPED_LINES]:
            lines.append(f"  {p}: {r}")
        if len(report.skipped) > _MAX_SKIPPED_LINES:
            lines.append(f"  ... and {len(report.skipped) - _MAX_SKIPPED_LINES} more (see --json)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handle ``medviewer info``; returns the exit code (1 when nothing was found)."""
    from medviewer.dicom import scan_with_report
    from medviewer.progress import console_progress

    progress = console_progress("scan ") if sys.stderr.isatty() and not args.json else None
    paths = args.path[0] if len(args.path) == 1 else list(args.path)
    report = scan_with_report(paths, progress=progress)
    if args.json:
        print(json.dumps(report_dict(report), indent=2))
    else:
        print(format_tree(report))
    return 0 if report.studies else 1
