"""DICOM Segmentation of the findings (binary) and of the confidence map (fractional), via highdicom.

* Binary SEG: one segment per finding (label ``Finding <id>``, tracking ID
  and UID shared with the SR, property Morphologically Abnormal Structure /
  Lesion, algorithm type AUTOMATIC with the detector's name and version).
  Findings the reader **rejected are left out** by default (``include_rejected``):
  a PACS shows every segment of a SEG, and a rejected finding is, by the
  reader's decision, not a lesion; the SR still records it with its status.
  A finding without a mask (read back from JSON) is drawn as a sphere of its
  diameter.  Frames are referenced to the source SOP instances.
* Fractional SEG (``PROBABILITY``, 8 bit): the confidence map as one segment,
  for viewers that overlay probabilities.

The source images are the volume's headers (pixel data is not needed by
highdicom, only the image geometry), re-read from ``metadata.source_files``
when the headers lack the image attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medviewer.ai.results import DetectionResult, Finding, ReviewStatus
from medviewer.errors import ExportError
from medviewer.volume import Volume

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "Rows", "Columns", "FrameOfReferenceUID")


def source_images(volume: Volume) -> list[Dataset]:
    """The source datasets the DICOM objects reference, in slice order.

    Uses ``volume.metadata.headers`` (one per slice, or one multi-frame
    header); falls back to reading ``metadata.source_files`` without pixels.

    Raises
    ------
    ExportError
        The volume did not come from DICOM images (no headers, no files), or
        their number does not match the slices.
    """
    meta = volume.metadata
    headers = list(meta.headers)
    if headers and all(all(k in h for k in _REQUIRED) for h in headers):
        return _check_count(volume, headers)
    if meta.source_files:
        import pydicom

        read: list[Dataset] = []
        for path in meta.source_files:
            try:
                read.append(pydicom.dcmread(path, stop_before_pixels=True))
            except Exception as exc:  # pydicom raises many types on bad files
                raise ExportError(f"{path}: cannot re-read the source image for the DICOM export: {exc}") from exc
        if all(all(k in h for k in _REQUIRED) for h in read):
            return _check_count(volume, read)
    raise ExportError("the volume has no DICOM source images with geometry; DICOM SEG/SR/key images need them")


def _check_count(volume: Volume, headers: list[Dataset]) -> list[Dataset]:
    n = volume.n_slices
    if len(headers) == n:
        return headers
    if len(headers) == 1 and int(headers[0].get("NumberOfFrames", 1) or 1) == n:
        return headers
    raise ExportError(f"{len(headers)} source headers for {n} slices: cannot reference the source images")


def finding_mask(volume: Volume, finding: Finding) -> NDArray[np.bool_]:
    """The finding's mask, or a sphere of its diameter when it has none."""
    if finding.mask is not None:
        if finding.mask.shape != volume.shape:
            raise ExportError(f"finding {finding.id}: mask shape {finding.mask.shape} differs from the volume {volume.shape}")
        return np.asarray(finding.mask, dtype=bool)
    sz, sy, sx = volume.spacing
    ck, cj, ci = finding.center_index
    kk, jj, ii = np.ogrid[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    r = max(finding.diameter_mm / 2.0, 0.5)
    return np.asarray(((kk - ck) * sz) ** 2 + ((jj - cj) * sy) ** 2 + ((ii - ci) * sx) ** 2 <= r * r)


def _algorithm(result: DetectionResult) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=result.model.name[:64], family=codes.DCM.ArtificialIntelligence, version=result.model.version[:64]
    )


def build_segmentation(
    volume: Volume,
    result: DetectionResult,
    sources: Sequence[Dataset],
    *,
    include_rejected: bool = False,
    tracking_uids: dict[int, str] | None = None,
    series_number: int = 902,
    contributing_equipment: Sequence[Any] | None = None,
) -> tuple[Any, dict[int, int]] | None:
    """Binary SEG with one segment per finding.

    Parameters
    ----------
    volume : Volume
    result : DetectionResult
    sources : sequence of Dataset
        :func:`source_images` of ``volume``.
    include_rejected : bool
        Also export findings the reader rejected.
    tracking_uids : dict of int to str, optional
        Tracking UID per finding id (shared with the SR).
    series_number : int
    contributing_equipment : sequence, optional

    Returns
    -------
    (highdicom.seg.Segmentation, dict) or None
        The SEG and the segment number of each exported finding id; None
        when no finding is left to export.

    Raises
    ------
    ExportError
        A mask does not fit the volume, or highdicom rejected the input.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    chosen = [f for f in result.findings if include_rejected or f.status != ReviewStatus.REJECTED]
    if not chosen:
        return None
    tracking_uids = tracking_uids if tracking_uids is not None else {}
    masks = [finding_mask(volume, f) for f in chosen]
    # A label map (z, y, x) costs one byte per voxel whatever the number of findings;
    # overlapping masks need one binary plane per segment instead.
    coverage = np.zeros(volume.shape, dtype=np.uint16)
    for m in masks:
        coverage += m
    if int(coverage.max(initial=0)) <= 1 and len(chosen) < 256:
        labels: NDArray[Any] = np.zeros(volume.shape, dtype=np.uint8)
        for n, m in enumerate(masks, start=1):
            labels[m] = n
    else:
        labels = np.stack(masks, axis=-1).astype(np.uint8)
    del coverage
    descriptions = []
    numbers: dict[int, int] = {}
    for n, f in enumerate(chosen, start=1):
        numbers[f.id] = n
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=f"Finding {f.id}",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Lesion,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=_algorithm(result),
                tracking_uid=tracking_uids.setdefault(f.id, str(hd.UID())),
                tracking_id=f"Finding {f.id}",
            )
        )
    pixels = labels
    try:
        seg = hd.seg.Segmentation(
            source_images=list(sources),
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=(result.model.manufacturer or "MedViewer")[:64],
            manufacturer_model_name=result.model.name[:64],
            software_versions=result.model.version[:64],
            device_serial_number="0",
            content_label="FINDINGS",
            content_description="AI lesion findings (research use only)",
            omit_empty_frames=True,
            contributing_equipment=contributing_equipment,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ExportError(f"cannot build the DICOM SEG of the findings: {exc}") from exc
    seg.SeriesDescription = "MedViewer AI findings SEG (research use only)"
    return seg, numbers


def build_fractional_segmentation(
    volume: Volume,
    result: DetectionResult,
    sources: Sequence[Dataset],
    *,
    series_number: int = 903,
    contributing_equipment: Sequence[Any] | None = None,
) -> Any:
    """FRACTIONAL (PROBABILITY) SEG of the confidence map, one segment, 8-bit.

    Raises
    ------
    ExportError
        The confidence map does not fit the volume or highdicom rejected it.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    conf = np.asarray(result.confidence, dtype=np.float32)
    if conf.shape != volume.shape:
        raise ExportError(f"confidence map shape {conf.shape} differs from the volume {volume.shape}")
    conf = np.nan_to_num(conf, nan=0.0).clip(0.0, 1.0)
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion confidence",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(result),
        tracking_uid=str(hd.UID()),
        tracking_id="Lesion confidence map",
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=list(sources),
            pixel_array=conf,
            segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
            fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
            max_fractional_value=255,
            segment_descriptions=[desc],
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=(result.model.manufacturer or "MedViewer")[:64],
            manufacturer_model_name=result.model.name[:64],
            software_versions=result.model.version[:64],
            device_serial_number="0",
            content_label="CONFIDENCE",
            content_description="AI lesion confidence map (research use only)",
            omit_empty_frames=True,
            contributing_equipment=contributing_equipment,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ExportError(f"cannot build the fractional DICOM SEG of the confidence map: {exc}") from exc
    seg.SeriesDescription = "MedViewer AI confidence map (research use only)"
    return seg


__all__ = ["source_images", "finding_mask", "build_segmentation", "build_fractional_segmentation"]
