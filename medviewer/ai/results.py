"""Results of the AI pipeline, shared by the CLI, the GUI and the exporters.

AI output never alters source pixels: findings and confidence maps are kept
beside the source :class:`~medviewer.volume.Volume`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

DENOISER_ROLE = "made the denoised series for reading; the detector read the original images"
"""What the denoiser did in an analysis (findings.json, DICOM SR Contributing Equipment)."""


class ReviewStatus(str, Enum):
    """The reader's decision about a finding."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass
class Finding:
    """One 3D lesion candidate.

    Attributes
    ----------
    id : int
        1-based, in order of decreasing confidence.
    center_mm : tuple of float
        Centre in patient coordinates (DICOM LPS, mm), ``(x, y, z)``.
    center_index : tuple of float
        Centre as fractional voxel index ``(k, j, i)`` of the source volume.
    diameter_mm : float
        Equivalent-sphere diameter (mm) of ``mask``.
    slice_range : tuple of int
        First and last slice index (inclusive) the finding covers.
    confidence : float
        Calibrated probability in [0, 1] that this is a true lesion.
    mask : ndarray of bool or None
        ``(z, y, x)`` mask in the source volume's grid (may be None when
        read back from JSON).
    mean_hu : float or None
        Mean value of the source volume inside ``mask``.
    """

    id: int
    center_mm: tuple[float, float, float]
    center_index: tuple[float, float, float]
    diameter_mm: float
    slice_range: tuple[int, int]
    confidence: float
    mask: NDArray[np.bool_] | None = None
    mean_hu: float | None = None
    status: ReviewStatus = ReviewStatus.PENDING
    note: str = ""

    def __post_init__(self) -> None:
        self.status = ReviewStatus(self.status)
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    def to_json(self) -> dict[str, Any]:
        """The findings.json entry (schema of issue 6, plus review fields)."""
        return {
            "id": int(self.id),
            "center_mm": [round(float(c), 3) for c in self.center_mm],
            "center_index": [round(float(c), 3) for c in self.center_index],
            "diameter_mm": round(float(self.diameter_mm), 3),
            "slice_range": [int(self.slice_range[0]), int(self.slice_range[1])],
            "confidence": round(float(self.confidence), 5),
            "mean_hu": None if self.mean_hu is None else round(float(self.mean_hu), 2),
            "status": self.status.value,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Finding":
        return cls(
            id=int(d["id"]),
            center_mm=tuple(float(c) for c in d["center_mm"]),  # type: ignore[arg-type]
            center_index=tuple(float(c) for c in d.get("center_index", (0, 0, 0))),  # type: ignore[arg-type]
            diameter_mm=float(d["diameter_mm"]),
            slice_range=(int(d["slice_range"][0]), int(d["slice_range"][1])),
            confidence=float(d["confidence"]),
            mean_hu=d.get("mean_hu"),
            status=ReviewStatus(d.get("status", "pending")),
            note=d.get("note", ""),
        )


@dataclass
class ModelInfo:
    """Name and version of a model that contributed to a result."""

    name: str
    version: str
    manufacturer: str = "MedViewer"
    intended_use: str = "Research use only, not for diagnosis."


@dataclass
class DetectionResult:
    """Output of :func:`medviewer.ai.detect_lesions` for one series.

    ``confidence`` is a float32 ``(z, y, x)`` map in [0, 1] on the source
    volume's grid; ``findings`` are sorted by decreasing confidence.
    """

    series_uid: str
    model: ModelInfo
    findings: list[Finding]
    confidence: NDArray[np.float32]
    abnormality_score: float
    threshold: float = 0.5
    """Display threshold recommended by the model card."""
    denoiser: ModelInfo | None = None
    """The denoiser that made the denoised series shown with the findings (the detector itself
    reads the source images; see :func:`medviewer.ai.pipeline.analyze_volume`)."""
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def findings_json(self) -> dict[str, Any]:
        """The findings.json document (schema of issue 6)."""
        doc: dict[str, Any] = {
            "series_uid": self.series_uid,
            "model": {"name": self.model.name, "version": self.model.version},
            "abnormality_score": round(float(self.abnormality_score), 5),
            "threshold": float(self.threshold),
            "intended_use": self.model.intended_use,
            "findings": [f.to_json() for f in self.findings],
        }
        if self.denoiser is not None:
            doc["denoiser"] = {"name": self.denoiser.name, "version": self.denoiser.version, "role": DENOISER_ROLE}
        return doc

    def dumps(self) -> str:
        return json.dumps(self.findings_json(), indent=2)


FINDINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["series_uid", "model", "findings"],
    "properties": {
        "series_uid": {"type": "string"},
        "model": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "center_mm", "diameter_mm", "slice_range", "confidence"],
                "properties": {
                    "id": {"type": "integer"},
                    "center_mm": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                    "diameter_mm": {"type": "number", "minimum": 0},
                    "slice_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
    },
}

__all__ = ["ReviewStatus", "Finding", "ModelInfo", "DetectionResult", "FINDINGS_SCHEMA", "DENOISER_ROLE"]
