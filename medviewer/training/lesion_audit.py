"""Per-lesion audit of a detector evaluation: which lesions were found, by size, conspicuity and surroundings.

A FROC curve says how many lesions were found; this module says which. For every
reference lesion of a test set it measures, on the test volume itself, the
lesion's contrast (mean HU of its inner half minus the median HU of a ring 2-5 mm
outside it, in the slice through its centre) and the spread of that ring (SD),
then records the best confidence among the detector's candidates that hit it
(LUNA16 rule). Sensitivity is then tabulated by diameter and by
contrast-to-background ratio ``|contrast| / ring SD``, so a miss can be told
apart as small, faint, or conspicuous-but-missed (a domain gap), and by the
ring SD alone: a ring of 150 HU or more crosses bone or air, so the lesion lies
against the skull, the spine, a bowel-gas or sinus edge.

No Qt, no torch: the evaluation passes its cases and detections in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medviewer.training import froc as frocm

#: Diameter bins (mm) of the sensitivity table: [lo, hi).
DIAMETER_BINS_MM: tuple[tuple[float, float], ...] = ((0.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, math.inf))
#: Bins of |contrast| / ring SD.
CONSPICUITY_BINS: tuple[tuple[float, float], ...] = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, math.inf))
#: Bins of the ring SD (HU): within soft tissue or fat, or against bone or air (the ring crosses them).
SURROUNDINGS_BINS_HU: tuple[tuple[float, float], ...] = ((0.0, 150.0), (150.0, math.inf))
#: Ring around the lesion (mm outside its radius) that measures the background.
RING_MM: tuple[float, float] = (2.0, 5.0)
#: Calibrated confidence at which a finding is shown by default.
SHOWN_AT = 0.5


def lesion_contrast(volume: Any, center_mm: Sequence[float], diameter_mm: float) -> tuple[float, float]:
    """``(contrast HU, ring SD HU)`` of one lesion in the slice through its centre.

    ``volume`` is a :class:`medviewer.volume.Volume` (voxels in HU).

    >>> import numpy as np
    >>> from medviewer.volume import Volume
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> vox = np.zeros((3, 64, 64), np.float32); vox[:, np.hypot(yy - 32, xx - 32) <= 6] = 30.0
    >>> c, sd = lesion_contrast(Volume(vox, spacing=(2.0, 1.0, 1.0)), (32.0, 32.0, 2.0), 12.0)
    >>> round(c, 1), round(sd, 1)
    (30.0, 0.0)
    """
    k, j, i = volume.patient_to_index(np.asarray(center_mm, float))
    vox = volume.voxels
    k = int(np.clip(round(float(k)), 0, vox.shape[0] - 1))
    sy, sx = float(volume.spacing[1]), float(volume.spacing[2])
    r = float(diameter_mm) / 2.0
    reach = r + RING_MM[1]
    j0, j1 = max(0, int(math.floor(j - reach / sy))), min(vox.shape[1], int(math.ceil(j + reach / sy)) + 1)
    i0, i1 = max(0, int(math.floor(i - reach / sx))), min(vox.shape[2], int(math.ceil(i + reach / sx)) + 1)
    sub = np.asarray(vox[k, j0:j1, i0:i1], np.float64)
    yy, xx = np.mgrid[j0:j1, i0:i1]
    dist = np.hypot((yy - j) * sy, (xx - i) * sx)
    inner = sub[dist <= max(r / 2.0, 0.75 * max(sy, sx))]
    ring = sub[(dist >= r + RING_MM[0]) & (dist <= r + RING_MM[1])]
    if inner.size == 0 or ring.size == 0:
        return float("nan"), float("nan")
    return float(inner.mean() - np.median(ring)), float(ring.std())


def lesion_rows(cases: Sequence[Any], dets: Sequence[frocm.ScanDetections], source: Any = None) -> list[dict[str, Any]]:
    """One row per reference lesion: size, kind, contrast, ring SD and the best hitting confidence.

    ``cases`` carry ``name``, ``volume``, ``centers_mm``, ``diameters_mm``,
    ``kinds`` and ``truth`` (see ``evaluate_detector.EvalCase``); ``dets`` are
    the detector's candidates of each case (all confidences). ``source`` maps
    a case name to a group label (e.g. the real slice it was grown from).
    """
    rows: list[dict[str, Any]] = []
    for case, det in zip(cases, dets):
        _, best = frocm.match_candidates(case.truth, det)
        for n, (ctr, diam) in enumerate(zip(case.centers_mm, case.diameters_mm)):
            contrast, sd = lesion_contrast(case.volume, ctr, float(diam))
            b = float(best[n]) if n < len(best) else -math.inf
            rows.append({
                "case": case.name,
                "source": source(case.name) if source else None,
                "kind": case.kinds[n] if n < len(case.kinds) else "",
                "diameter_mm": round(float(diam), 1),
                "contrast_hu": round(contrast, 1),
                "ring_sd_hu": round(sd, 1),
                "best_confidence": None if not math.isfinite(b) else round(b, 4),
            })
    return rows


def conspicuity(row: dict[str, Any]) -> float:
    """``|contrast| / ring SD`` of a row (inf for a flat background)."""
    c, sd = abs(float(row["contrast_hu"])), float(row["ring_sd_hu"])
    if not math.isfinite(c):
        return float("nan")
    return c / sd if sd > 0 else math.inf


def sensitivity_by(rows: Sequence[dict[str, Any]], value: Any, bins: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """For each bin ``[lo, hi)`` of ``value(row)``: lesions, found as any candidate, found at >= :data:`SHOWN_AT`."""
    out = []
    for lo, hi in bins:
        sel = [r for r in rows if lo <= value(r) < hi]
        cand = sum(r["best_confidence"] is not None for r in sel)
        shown = sum(r["best_confidence"] is not None and r["best_confidence"] >= SHOWN_AT for r in sel)
        out.append({"bin": [lo, None if math.isinf(hi) else hi], "n": len(sel), "candidate": cand, "shown": shown})
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The tables that go into ``results.json`` next to the rows."""
    return {
        "by_diameter_mm": sensitivity_by(rows, lambda r: float(r["diameter_mm"]), DIAMETER_BINS_MM),
        "by_conspicuity": sensitivity_by(rows, conspicuity, CONSPICUITY_BINS),
        "by_ring_sd_hu": sensitivity_by(rows, lambda r: float(r["ring_sd_hu"]), SURROUNDINGS_BINS_HU),
    }


def _bin_label(b: list[Any], unit: str = "") -> str:
    lo, hi = b
    return f">= {lo:g}{unit}" if hi is None else f"{lo:g}-{hi:g}{unit}"


def _cell(d: dict[str, Any]) -> str:
    n = d["n"]
    if not n:
        return "-"
    return f"{d['candidate']}/{n} ({d['candidate'] / n:.2f}) · {d['shown']}/{n} ({d['shown'] / n:.2f})"


def markdown(summaries: dict[str, dict[str, Any]], misses: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Markdown lines: sensitivity by size, conspicuity and surroundings per set, then the listed misses."""
    lines = [
        "## Which lesions are found: by size, conspicuity and surroundings",
        "",
        "Each cell: lesions hit by any candidate · lesions hit by a finding of calibrated confidence >= "
        f"{SHOWN_AT:g} (shown by default). Conspicuity = |contrast| / SD of a ring {RING_MM[0]:g}-{RING_MM[1]:g} mm "
        "outside the lesion, measured on the test volume in the slice through the lesion's centre.",
        "",
    ]
    names = list(summaries)
    lines += ["| diameter | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for b in range(len(DIAMETER_BINS_MM)):
        first = summaries[names[0]]["by_diameter_mm"][b]["bin"]
        lines.append(f"| {_bin_label(first, ' mm')} | " + " | ".join(_cell(summaries[n]['by_diameter_mm'][b]) for n in names) + " |")
    lines += ["", "| conspicuity | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for b in range(len(CONSPICUITY_BINS)):
        first = summaries[names[0]]["by_conspicuity"][b]["bin"]
        lines.append(f"| {_bin_label(first)} | " + " | ".join(_cell(summaries[n]['by_conspicuity'][b]) for n in names) + " |")
    if all("by_ring_sd_hu" in summaries[n] for n in names):  # results written before this table lack it
        lines += ["", "| ring SD (surroundings) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for b, where in enumerate(("within tissue", "against bone or air")):
            first = summaries[names[0]]["by_ring_sd_hu"][b]["bin"]
            lines.append(f"| {_bin_label(first, ' HU')} ({where}) | "
                         + " | ".join(_cell(summaries[n]["by_ring_sd_hu"][b]) for n in names) + " |")
    if misses:
        lines += [
            "",
            f"Real-background lesions not shown at confidence >= {SHOWN_AT:g} (best hitting confidence, '-' for no candidate):",
            "",
            "| source slice | kind | diameter mm | contrast HU | ring SD HU | best confidence |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(misses, key=lambda r: (str(r["source"]), -conspicuity(r))):
            bc = "-" if r["best_confidence"] is None else f"{r['best_confidence']:.3f}"
            lines.append(f"| {r['source']} | {r['kind']} | {r['diameter_mm']:.1f} | {r['contrast_hu']:+.0f} | {r['ring_sd_hu']:.0f} | {bc} |")
    lines.append("")
    return lines


__all__ = [
    "DIAMETER_BINS_MM",
    "CONSPICUITY_BINS",
    "SURROUNDINGS_BINS_HU",
    "RING_MM",
    "SHOWN_AT",
    "lesion_contrast",
    "lesion_rows",
    "conspicuity",
    "sensitivity_by",
    "summarize",
    "markdown",
]
