"""DICOM Comprehensive 3D SR (TID 1500 Measurement Report) of the findings, via highdicom.

Content, one TID 1411 *Volumetric ROI Measurements and Qualitative
Evaluations* group per finding:

* Tracking Identifier (``Finding <id>``) and Tracking Unique Identifier,
  shared with the finding's segment in the SEG, so the two objects link;
* the location as a SCOORD3D ``ELLIPSOID`` (a sphere of the finding's
  diameter around its centre: six points, the ends of its three axes along
  the image axes; their mean is the centre) in the source Frame of
  Reference, with the source series.  TID 1411 allows one region reference
  per group, so the SEG is linked through the shared Tracking UID rather
  than a segment reference;
* measurements with UCUM units: Diameter (SCT 81827009, ``mm``), Volume
  (SCT 118565006, ``mm3``, from the mask), mean Attenuation Coefficient
  (DCM 112031 with derivation Mean, ``[hnsf'U]``), and the model's
  confidence as a numeric measurement in percent (``%``) named with a local
  code (``99MEDVIEWER`` ``MV-CONF`` "AI lesion confidence") because DICOM
  has no standard concept for a detector's calibrated probability;
* qualitative evaluations: Presence (SCT 705057003) = Present (accepted),
  Absent (rejected) or Indeterminate (pending), and the reader's review
  status with local codes (``MV-REVIEW``: accepted / rejected / pending);
* the reader's note as a TEXT Comment (DCM 121106);
* without findings, a single TID 1501 group "No findings" with Presence =
  Absent (highdicom needs at least one group);
* algorithm identification (name, version) of the detector.

The document: VerificationFlag ``UNVERIFIED`` and CompletionFlag ``PARTIAL``
unless ``signed`` with a ``reader_name`` (then ``VERIFIED`` with the
Verifying Observer, and ``COMPLETE``); a Qualitative Evaluations container
with the reader's Impression (DCM 121073); the Contributing Equipment
Sequence names each algorithm and version with purpose of reference
Processing Equipment (DCM 109102), as IHE AI Results asks; the observer
context names the detector as a device observer and the reader as a
person observer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from medviewer.ai.results import DENOISER_ROLE, DetectionResult, Finding, ModelInfo, ReviewStatus
from medviewer.errors import ExportError
from medviewer.volume import Volume

LOCAL_SCHEME = "99MEDVIEWER"
CONFIDENCE = Code("MV-CONF", LOCAL_SCHEME, "AI lesion confidence")
REVIEW_STATUS = Code("MV-REVIEW", LOCAL_SCHEME, "Reader review status")
REVIEW_VALUES: dict[ReviewStatus, Code] = {
    ReviewStatus.ACCEPTED: Code("MV-ACCEPTED", LOCAL_SCHEME, "Accepted by reader"),
    ReviewStatus.REJECTED: Code("MV-REJECTED", LOCAL_SCHEME, "Rejected by reader"),
    ReviewStatus.PENDING: Code("MV-PENDING", LOCAL_SCHEME, "Not reviewed"),
}
PRESENCE = Code("705057003", "SCT", "Presence")
PRESENCE_VALUES: dict[ReviewStatus, Code] = {
    ReviewStatus.ACCEPTED: Code("52101004", "SCT", "Present"),
    ReviewStatus.REJECTED: Code("272519000", "SCT", "Absent"),
    ReviewStatus.PENDING: Code("82334004", "SCT", "Indeterminate"),
}
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")


def contributing_equipment(result: DetectionResult) -> list[Any]:
    """highdicom ``ContributingEquipment`` items naming every algorithm (IHE AI Results)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    models: list[tuple[ModelInfo, str]] = []
    if result.denoiser is not None:
        models.append((result.denoiser, DENOISER_ROLE))
    models.append((result.model, "detected lesions and their confidence"))
    return [
        hd.ContributingEquipment(
            manufacturer=(m.manufacturer or "MedViewer")[:64],
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=m.name[:64],
            software_versions=m.version[:64],
            contribution_description=f"{m.name} {m.version} (artificial intelligence) {what}. {m.intended_use}"[:1024],
        )
        for m, what in models
    ]


def algorithm_id(model: ModelInfo) -> Any:
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version[:64])


def _axes(volume: Volume) -> np.ndarray:
    """Unit LPS vectors of the i, j, k axes (columns of ``direction``)."""
    return np.asarray(volume.direction, dtype=np.float64).T


def finding_volume_mm3(volume: Volume, finding: Finding) -> float | None:
    if finding.mask is None:
        return None
    sz, sy, sx = volume.spacing
    return float(np.count_nonzero(finding.mask) * sz * sy * sx)


def _ellipsoid(volume: Volume, finding: Finding) -> np.ndarray:
    c = np.asarray(finding.center_mm, dtype=np.float64)
    r = max(float(finding.diameter_mm) / 2.0, 1e-3)
    pts = []
    for axis in _axes(volume):
        pts += [c - r * axis, c + r * axis]
    return np.asarray(pts)


def build_sr(
    volume: Volume,
    result: DetectionResult,
    source_images: Sequence[Dataset],
    *,
    impression: str = "",
    reader_name: str = "",
    signed: bool = False,
    organization: str = "",
    tracking_uids: dict[int, str] | None = None,
    series_number: int = 901,
    text_filter: Any = None,
) -> Any:
    """Build the Comprehensive 3D SR of ``result``.

    Parameters
    ----------
    volume : Volume
        The source series (frame of reference, geometry).
    result : DetectionResult
    source_images : sequence of Dataset
        Source headers, recorded as evidence (Current Requested Procedure Evidence).
    impression : str
        The reader's free-text impression.
    reader_name : str
        The reader, as DICOM person name (``Family^Given``); a person observer.
    signed : bool
        The reader verified the report: VerificationFlag VERIFIED (needs ``reader_name``).
    organization : str
        Verifying organization (default: institution of the source, else "MedViewer").
    tracking_uids : dict of int to str, optional
        Tracking UID per finding id; pass the mapping given to the SEG so a
        group and its segment carry the same Tracking UID (the link between
        the two objects). Missing ones are created and added.
    series_number : int
    text_filter : callable, optional
        Applied to free text (notes, impression), e.g. de-identification cleaning.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    ExportError
        No source images, missing frame of reference, ``signed`` without a
        reader, or highdicom rejected the content.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not source_images:
        raise ExportError("the SR needs the source DICOM images (none in the volume's headers)")
    for_uid = volume.metadata.frame_of_reference_uid or str(source_images[0].get("FrameOfReferenceUID", ""))
    if not for_uid:
        raise ExportError("the SR needs the source Frame of Reference UID (missing)")
    if signed and not reader_name.strip():
        raise ExportError("a signed (VERIFIED) report needs the reader's name")
    text = text_filter or (lambda s: s)
    tracking_uids = tracking_uids if tracking_uids is not None else {}
    series_uid = str(source_images[0].SeriesInstanceUID)

    try:
        device = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(),
                name=result.model.name[:64],
                manufacturer_name=(result.model.manufacturer or "MedViewer")[:64],
                model_name=f"{result.model.name} {result.model.version}"[:64],
            ),
        )
        person = None
        if reader_name.strip():
            person = hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=reader_name.strip()[:64]),
            )
        context = hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)

        groups: list[Any] = []
        algo = algorithm_id(result.model)
        for f in result.findings:
            uid = tracking_uids.setdefault(f.id, str(hd.UID()))
            tracking = hd.sr.TrackingIdentifier(uid=uid, identifier=f"Finding {f.id}")
            region = hd.sr.VolumeSurface(
                graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSOID,
                graphic_data=_ellipsoid(volume, f),
                frame_of_reference_uid=for_uid,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
            )
            measurements = [
                hd.sr.Measurement(
                    name=codes.SCT.Diameter,
                    value=round(float(f.diameter_mm), 3),
                    unit=codes.UCUM.Millimeter,
                    algorithm_id=algo,
                ),
                hd.sr.Measurement(
                    name=CONFIDENCE,
                    value=round(float(f.confidence) * 100.0, 3),
                    unit=codes.UCUM.Percent,
                    algorithm_id=algo,
                ),
            ]
            vol_mm3 = finding_volume_mm3(volume, f)
            if vol_mm3 is not None:
                measurements.append(
                    hd.sr.Measurement(name=codes.SCT.Volume, value=round(vol_mm3, 3), unit=codes.UCUM.CubicMillimeter, algorithm_id=algo)
                )
            if f.mean_hu is not None and np.isfinite(f.mean_hu) and volume.metadata.units.upper() == "HU":
                measurements.append(
                    hd.sr.Measurement(
                        name=codes.DCM.AttenuationCoefficient,
                        value=round(float(f.mean_hu), 2),
                        unit=codes.UCUM.HounsfieldUnit,
                        derivation=codes.SCT.Mean,
                        algorithm_id=algo,
                    )
                )
            evaluations = [
                hd.sr.QualitativeEvaluation(PRESENCE, PRESENCE_VALUES[f.status]),
                hd.sr.QualitativeEvaluation(REVIEW_STATUS, REVIEW_VALUES[f.status]),
            ]
            group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=codes.SCT.Lesion,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                algorithm_id=algo,
                measurements=measurements,
                qualitative_evaluations=evaluations,
                referenced_volume_surface=region,
            )
            note = text(f.note or "").strip()
            if note:
                group[0].ContentSequence.append(
                    hd.sr.TextContentItem(
                        name=codes.DCM.Comment, value=note[:10240], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
                    )
                )
            groups.append(group)

        if not groups:
            # highdicom needs one group: a TID 1501 group stating that no lesion was found.
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="No findings"),
                    finding_type=codes.SCT.Lesion,
                    algorithm_id=algo,
                    qualitative_evaluations=[hd.sr.QualitativeEvaluation(PRESENCE, PRESENCE_VALUES[ReviewStatus.REJECTED])],
                )
            )
        report = hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion if volume.metadata.modality.upper() in ("CT", "") else Code("P0-0099A", "SRT", "Imaging procedure"),
            imaging_measurements=groups,
        )
        impression_text = text(impression or "").strip()
        if impression_text:
            container = hd.sr.ContainerContentItem(
                name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
            container.ContentSequence = hd.sr.ContentSequence(
                [
                    hd.sr.TextContentItem(
                        name=codes.DCM.Impression,
                        value=impression_text[:10240],
                        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
                    )
                ]
            )
            report[0].ContentSequence.append(container)

        org = organization or volume.metadata.institution_name or "MedViewer"
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(source_images),
            content=report[0],
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=(result.model.manufacturer or "MedViewer")[:64],
            is_complete=bool(signed),
            is_final=bool(signed),
            is_verified=bool(signed),
            verifying_observer_name=reader_name.strip()[:64] if signed else None,
            verifying_organization=org[:64] if signed else None,
            contributing_equipment=contributing_equipment(result),
        )
    except ExportError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ExportError(f"cannot build the DICOM SR: {exc}") from exc
    sr.SeriesDescription = "MedViewer AI findings (research use only)"
    return sr


__all__ = [
    "build_sr",
    "contributing_equipment",
    "algorithm_id",
    "CONFIDENCE",
    "REVIEW_STATUS",
    "REVIEW_VALUES",
    "PRESENCE",
    "PRESENCE_VALUES",
]
