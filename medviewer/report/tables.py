"""Findings as JSON (the ``findings.json`` schema of issue 6 plus report fields) and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from medviewer.ai.results import DetectionResult, Finding

CSV_COLUMNS = [
    "id",
    "status",
    "confidence",
    "diameter_mm",
    "mean_hu",
    "center_x_mm",
    "center_y_mm",
    "center_z_mm",
    "slice_index_first",
    "slice_index_last",
    "volume_mm3",
    "note",
]
"""Column order of ``findings.csv``; slice indices are 0-based as in ``findings.json``."""


def _identity(s: str) -> str:
    return s


def findings_document(
    result: DetectionResult,
    *,
    header: dict[str, Any] | None = None,
    volumes_mm3: dict[int, float | None] | None = None,
    text_filter: Callable[[str], str] = _identity,
) -> dict[str, Any]:
    """The JSON document: ``result.findings_json()`` plus report context.

    Parameters
    ----------
    result : DetectionResult
    header : dict, optional
        Patient / study / report fields (already de-identified when asked).
    volumes_mm3 : dict, optional
        Volume of each finding by id.
    text_filter : callable
        Applied to free text (notes, impression).

    Returns
    -------
    dict
        Valid against :data:`medviewer.ai.results.FINDINGS_SCHEMA`.
    """
    doc = result.findings_json()
    for entry in doc["findings"]:
        entry["note"] = text_filter(entry.get("note", ""))
        if volumes_mm3 is not None and volumes_mm3.get(entry["id"]) is not None:
            entry["volume_mm3"] = round(float(volumes_mm3[entry["id"]]), 3)  # type: ignore[arg-type]
    if header:
        doc["report"] = dict(header)
    return doc


def findings_json_text(doc: dict[str, Any]) -> str:
    """``doc`` as indented JSON text (UTF-8, non-ASCII kept)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def findings_csv_text(
    findings: list[Finding],
    *,
    volumes_mm3: dict[int, float | None] | None = None,
    text_filter: Callable[[str], str] = _identity,
) -> str:
    """One CSV row per finding, columns :data:`CSV_COLUMNS` (RFC 4180 quoting)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for f in findings:
        vol = (volumes_mm3 or {}).get(f.id)
        writer.writerow(
            {
                "id": f.id,
                "status": f.status.value,
                "confidence": f"{float(f.confidence):.5f}",
                "diameter_mm": f"{float(f.diameter_mm):.2f}",
                "mean_hu": "" if f.mean_hu is None else f"{float(f.mean_hu):.1f}",
                "center_x_mm": f"{float(f.center_mm[0]):.2f}",
                "center_y_mm": f"{float(f.center_mm[1]):.2f}",
                "center_z_mm": f"{float(f.center_mm[2]):.2f}",
                "slice_index_first": int(f.slice_range[0]),
                "slice_index_last": int(f.slice_range[1]),
                "volume_mm3": "" if vol is None else f"{float(vol):.1f}",
                "note": text_filter(f.note or ""),
            }
        )
    return buf.getvalue()


__all__ = ["CSV_COLUMNS", "findings_document", "findings_json_text", "findings_csv_text"]
