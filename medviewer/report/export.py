"""One call that writes the whole annotated report of an analysis (CLI ``--report`` and the GUI).

Layout of ``out_dir`` (every file optional by ``formats``)::

    report.pdf                 PDF report (A4 or Letter)
    findings.json              findings (issue 6 schema) + report header
    findings.csv               one row per finding
    sr.dcm                     Comprehensive 3D SR, TID 1500
    seg.dcm                    binary SEG, one segment per (non-rejected) finding
    confidence_seg.dcm         FRACTIONAL SEG of the confidence map (include_fractional)
    keyimages/finding_NN.png   key images (whole slice, overlays burned in)
    keyimages/finding_NN.dcm   the same as DICOM Secondary Capture
    denoised/                  derived denoised series (medviewer.report.derived)

Everything is written into a ``.partial-*`` folder beside ``out_dir`` and
renamed at the end (:class:`~medviewer.report.atomic.AtomicExportDir`): on
an error, a full disk or a cancel nothing is left behind, and an existing
non-empty ``out_dir`` is only replaced with ``overwrite=True``.

With ``deidentify=True`` one :class:`~medviewer.report.deid.Deidentifier`
processes every DICOM object (PS3.15 Basic Profile, the same UID mapping
everywhere), and the PDF, JSON and CSV show the pseudonym instead of the
patient, no birth date, sex, accession, descriptions or institution, and free
text cleaned of every identifying value of the source.  The profile does not
clean pixels: when the source declares BurnedInAnnotation YES, the key
images, the PDF's images and the denoised series are withheld (with a
warning) from a de-identified export.

The CLI (``medviewer analyze IN --output OUT --report``) writes the report to
``OUT/report`` with the analysis' detection result and denoised volume; the
GUI's export dialog calls the same function from a worker thread, passing its
progress and cancel callbacks.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.ai.results import DetectionResult, ReviewStatus
from medviewer.errors import ExportError
from medviewer.progress import CancelFn, Progress, ProgressFn, check_cancel
from medviewer.report import atomic
from medviewer.report.deid import Deidentifier
from medviewer.volume import Volume

ALL_FORMATS: tuple[str, ...] = ("pdf", "sr", "seg", "keyimages", "json", "csv", "denoised")
"""Every output :func:`export_report` can write."""

_DICOM_FORMATS = frozenset({"sr", "seg", "keyimages"})
_OWN_DESCRIPTIONS = ("SeriesDescription", "DerivationDescription", "ImageComments")
"""Attributes of the objects MedViewer builds whose text it wrote (restored, cleaned, after de-identification)."""


@dataclass
class ExportSummary:
    """What :func:`export_report` wrote.

    Attributes
    ----------
    out_dir : Path
        The final folder.
    files : list of Path
        Every file written, inside ``out_dir``.
    warnings : list of str
        Outputs skipped or degraded, in words for the user.
    deidentified : bool
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deidentified: bool = False


def _validate(volume: Volume, result: DetectionResult, formats: Collection[str], paper: str, signed: bool, reader_name: str) -> set[str]:
    chosen = {str(f).strip().lower() for f in formats}
    unknown = chosen - set(ALL_FORMATS)
    if unknown:
        raise ExportError(f"unknown export format(s) {sorted(unknown)}: choose from {', '.join(ALL_FORMATS)}")
    if not chosen:
        raise ExportError("no export format chosen")
    if str(paper).strip().upper() not in ("A4", "LETTER"):
        raise ExportError(f"unknown paper size {paper!r}: use A4 or Letter")
    if signed and not reader_name.strip():
        raise ExportError("a signed report needs the reader's name")
    if volume.is_rgb:
        raise ExportError("reports need a grey-scale volume (this one is colour)")
    if result.confidence is not None and np.shape(result.confidence) != volume.shape:
        raise ExportError(f"the confidence map {np.shape(result.confidence)} does not match the volume {volume.shape}")
    for f in result.findings:
        if f.mask is not None and f.mask.shape != volume.shape:
            raise ExportError(f"finding {f.id}: its mask {f.mask.shape} does not match the volume {volume.shape}")
    return chosen


def _header(volume: Volume, reader_name: str, signed: bool, deid: Deidentifier | None) -> Any:
    from medviewer import __version__ as mv_version  # type: ignore[attr-defined]
    from medviewer.report.pdf import ReportHeader

    m = volume.metadata
    now = _dt.datetime.now().astimezone()
    h = ReportHeader(
        patient_name=m.patient_name,
        patient_id=m.patient_id,
        patient_birth_date=m.patient_birth_date,
        patient_sex=m.patient_sex,
        study_date=m.study_date,
        study_description=m.study_description,
        accession_number=m.accession_number,
        series_description=m.series_description,
        series_uid=m.series_uid,
        modality=m.modality,
        institution=m.institution_name,
        report_datetime=now.strftime("%Y-%m-%d %H:%M"),
        reader_name=reader_name.strip(),
        signed=signed,
        software=f"MedViewer {mv_version}",
    )
    if deid is not None:
        pseudo = deid.pseudonym(m.patient_id, m.patient_name)
        removed = "(removed)"
        h.patient_name = pseudo
        h.patient_id = pseudo
        h.patient_birth_date = removed
        h.patient_sex = removed
        h.study_date = removed
        h.study_description = removed
        h.accession_number = removed
        h.series_description = removed
        h.institution = removed
        h.series_uid = deid.uid(m.series_uid) if m.series_uid else ""
        h.reader_name = "ANONYMIZED" if h.reader_name else ""
        shifted = deid.shift_date(now.strftime("%Y%m%d"))
        h.report_datetime = f"{shifted[0:4]}-{shifted[4:6]}-{shifted[6:8]} (shifted)"
        h.deidentified = True
    return h


def export_report(
    volume: Volume,
    result: DetectionResult,
    out_dir: str | Path,
    *,
    denoised: Volume | None = None,
    impression: str = "",
    reader_name: str = "",
    signed: bool = False,
    deidentify: bool = False,
    formats: Collection[str] = ALL_FORMATS,
    include_fractional: bool = False,
    include_rejected_in_seg: bool = False,
    min_confidence: float | None = None,
    paper: str = "A4",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ExportSummary:
    """Write the annotated report of ``result`` on ``volume`` into ``out_dir``.

    Parameters
    ----------
    volume : Volume
        The source series (loaded from DICOM for the DICOM outputs).
    result : DetectionResult
        Findings with the reader's review (status, notes).
    out_dir : str or Path
        Folder to create; must not exist or be empty unless ``overwrite``.
    denoised : Volume, optional
        The denoised series, written as a derived DICOM series.
    impression : str
        The reader's free-text impression.
    reader_name : str
        DICOM person name of the reader (``Family^Given``).
    signed : bool
        The reader signed: SR VERIFIED + COMPLETE (needs ``reader_name``).
    deidentify : bool
        Apply the PS3.15 Basic Profile to every output.
    formats : collection of str
        Subset of :data:`ALL_FORMATS`.
    include_fractional : bool
        Also write the confidence map as a FRACTIONAL SEG.
    include_rejected_in_seg : bool
        Keep rejected findings as segments of the binary SEG.
    min_confidence : float, optional
        Report only findings at or above this confidence (e.g. the display
        threshold the reader used) plus every finding the reader reviewed
        (accepted, rejected or annotated); None reports all findings.
    paper : {"A4", "Letter"}
    overwrite : bool
        Replace a non-empty ``out_dir``.
    progress : callable, optional
        ``progress(fraction, message)``.
    cancel : callable, optional
        Returns True to stop; then :class:`CancelledError` and nothing is written.

    Returns
    -------
    ExportSummary

    Raises
    ------
    ExportError
        Invalid arguments, ``out_dir`` not empty, a write failed (read-only
        folder, full disk); nothing partial is left.
    CancelledError
        ``cancel()`` returned True; nothing is left.

    Examples
    --------
    >>> summary = export_report(volume, result, "out/report", impression="No change.")  # doctest: +SKIP
    >>> [p.name for p in summary.files]  # doctest: +SKIP
    ['findings.json', 'findings.csv', 'seg.dcm', 'sr.dcm', 'keyimages/finding_01.png', ..., 'report.pdf']
    """
    chosen = _validate(volume, result, formats, paper, signed, reader_name)
    omitted = 0
    if min_confidence is not None:
        kept = [
            f for f in result.findings
            if f.confidence >= min_confidence or f.status is not ReviewStatus.PENDING or f.note
        ]
        omitted = len(result.findings) - len(kept)
        result = replace(result, findings=kept)
    out_dir = Path(out_dir)
    prog = Progress(progress)
    check_cancel(cancel, "report export")
    dest = out_dir.absolute()
    for src in volume.metadata.source_files:
        if dest == Path(src).absolute() or dest in Path(src).absolute().parents:
            raise ExportError(f"{out_dir}: holds the source images ({src}); choose another folder for the report")
    export_dir = atomic.AtomicExportDir(out_dir, overwrite=overwrite)  # refuses a non-empty folder up front
    deid: Deidentifier | None = None
    if deidentify:
        deid = Deidentifier()
        deid.collect(volume.metadata.headers)
        m = volume.metadata
        for v in (m.patient_name, m.patient_id, m.patient_birth_date, m.accession_number, m.study_description,
                  m.series_description, m.institution_name, m.study_date):
            deid.add_phi(v)
        for part in str(m.patient_name).replace("=", "^").split("^"):
            deid.add_phi(part)
    text: Callable[[str], str] = deid.clean_text if deid is not None else (lambda s: s)
    # The Basic Profile does not clean pixels: images that declare burned-in text may show PHI.
    warnings: list[str] = []
    if omitted:
        warnings.append(
            f"{omitted} unreviewed candidate(s) below {min_confidence:.0%} confidence not reported (see findings.json of the analysis)"
        )
    burned_in = deid is not None and any(
        str(h.get("BurnedInAnnotation", "")).upper() == "YES" for h in volume.metadata.headers
    )
    if burned_in:
        dropped = sorted(chosen & {"keyimages", "denoised"}) + (["PDF key images"] if "pdf" in chosen else [])
        chosen -= {"keyimages", "denoised"}
        if dropped:
            warnings.append(
                "the source images declare burned-in annotation (identifying text may be in the pixels): "
                f"{', '.join(dropped)} not written in the de-identified export"
            )
    header = _header(volume, reader_name, signed, deid)
    volumes = {f.id: _volume_mm3(volume, f) for f in result.findings}

    def dicom_out(ds: Any) -> Any:
        # UTF-8, so any reader name, note or impression survives (sources are often Latin-1)
        ds.SpecificCharacterSet = "ISO_IR 192"
        if deid is None:
            return ds
        # Descriptions MedViewer wrote itself are put back after the profile removed them
        # (cleaned of every identifying value of the source), so PACS still label the objects.
        saved = {k: str(ds.get(k)) for k in _OWN_DESCRIPTIONS if ds.get(k)}
        for k in saved:  # not identifying: keep them out of the values the profile collects
            delattr(ds, k)
        out = deid.apply(ds)  # a copy: highdicom objects share data elements with the source headers
        for k, v in saved.items():
            setattr(out, k, deid.clean_text(v))
        return out

    files: list[Path] = []
    with export_dir as tmp:
        root = tmp.path

        def put(rel: str, data: bytes) -> None:
            path = root / rel
            if path.parent != root and not path.parent.exists():
                try:
                    path.parent.mkdir(parents=True)
                except OSError as exc:
                    raise atomic.export_error(path.parent, exc, "cannot create folder") from exc
            atomic.write_bytes(path, data)
            files.append(Path(rel))

        # 1. Tables.
        prog(0.02, "writing findings tables")
        if "json" in chosen:
            from medviewer.report.tables import findings_document, findings_json_text

            doc = findings_document(result, header=_json_header(header), volumes_mm3=volumes, text_filter=text)
            if deid is not None:
                doc["series_uid"] = deid.uid(result.series_uid) if result.series_uid else ""
            doc["report"]["impression"] = text(impression)
            put("findings.json", findings_json_text(doc).encode("utf-8"))
        if "csv" in chosen:
            from medviewer.report.tables import findings_csv_text

            put("findings.csv", findings_csv_text(result.findings, volumes_mm3=volumes, text_filter=text).encode("utf-8"))
        check_cancel(cancel, "report export")

        # 2. Key images (rendered once, used by the PDF and the SC objects).
        images = []
        if chosen & {"pdf", "keyimages"} and result.findings and not burned_in:
            from medviewer.report.keyimages import render_key_image
            from medviewer.report.pdf import FindingImages

            n = len(result.findings)
            for idx, f in enumerate(result.findings):
                check_cancel(cancel, "report export")
                prog(0.05 + 0.3 * idx / n, f"rendering key image of finding {f.id}")
                fov = max(40.0, 4.0 * float(f.diameter_mm))
                overview = render_key_image(volume, f, result.confidence, threshold=result.threshold, size=512,
                                            box_mm=fov)
                detail = render_key_image(volume, f, result.confidence, threshold=result.threshold, size=512, fov_mm=fov,
                                          window=overview.window)
                images.append(FindingImages(f, overview, detail))

        # 3. DICOM objects.
        sources = None
        if chosen & _DICOM_FORMATS:
            from medviewer.report.seg import source_images

            try:
                sources = source_images(volume)
            except ExportError as exc:
                warnings.append(f"DICOM SR/SEG/key-image objects not written: {exc}")
        tracking: dict[int, str] = {}
        seg_ds = None
        seg_numbers: dict[int, int] = {}
        if sources is not None:
            from medviewer.report.sr import contributing_equipment

            equipment = contributing_equipment(result)
            if "seg" in chosen:
                check_cancel(cancel, "report export")
                prog(0.4, "building DICOM SEG")
                from medviewer.report.seg import build_fractional_segmentation, build_segmentation

                built = build_segmentation(volume, result, sources, include_rejected=include_rejected_in_seg,
                                           tracking_uids=tracking, contributing_equipment=equipment)
                if built is None:
                    warnings.append("no finding left for the DICOM SEG (all rejected or none found)")
                else:
                    seg_ds, seg_numbers = built
                    put("seg.dcm", atomic.dicom_bytes(dicom_out(seg_ds)))
                if include_fractional:
                    check_cancel(cancel, "report export")
                    prog(0.5, "building fractional DICOM SEG")
                    frac = build_fractional_segmentation(volume, result, sources, contributing_equipment=equipment)
                    put("confidence_seg.dcm", atomic.dicom_bytes(dicom_out(frac)))
            elif include_fractional:
                warnings.append("fractional SEG skipped: the 'seg' format was not chosen")
            if "sr" in chosen:
                check_cancel(cancel, "report export")
                prog(0.6, "building DICOM SR")
                from medviewer.report.sr import build_sr

                sr = build_sr(volume, result, sources, impression=impression, reader_name=reader_name, signed=signed,
                              tracking_uids=tracking, text_filter=text)
                put("sr.dcm", atomic.dicom_bytes(dicom_out(sr)))
            if "keyimages" in chosen and images:
                import highdicom as hd

                from medviewer.report.keyimages import secondary_capture

                series_uid = str(hd.UID())
                for n_img, fi in enumerate(images, start=1):
                    check_cancel(cancel, "report export")
                    prog(0.65 + 0.1 * n_img / len(images), f"key image {n_img} as DICOM")
                    k = fi.overview.slice_index
                    ref = sources[k] if len(sources) > 1 else sources[0]
                    try:
                        sc = secondary_capture(fi.overview, fi.finding, result, ref, series_instance_uid=series_uid,
                                               series_number=904, instance_number=n_img, contributing_equipment=equipment)
                    except (ValueError, TypeError, AttributeError, KeyError) as exc:
                        raise ExportError(f"cannot build the key image of finding {fi.finding.id}: {exc}") from exc
                    put(f"keyimages/finding_{fi.finding.id:02d}.dcm", atomic.dicom_bytes(dicom_out(sc)))
        if "keyimages" in chosen:
            for fi in images:
                put(f"keyimages/finding_{fi.finding.id:02d}.png", fi.overview.png_bytes())

        # 4. Denoised derived series.
        if "denoised" in chosen and denoised is not None:
            check_cancel(cancel, "report export")
            prog(0.78, "writing the denoised series")
            written = _export_denoised(denoised, volume, result, root / "denoised", warnings, prog.sub(0.78, 0.9), cancel)
            for p in written:
                if deid is not None and p.suffix.lower() == ".dcm":
                    _deidentify_file(p, deid)
                files.append(p.relative_to(root))

        # 5. PDF.
        if "pdf" in chosen:
            check_cancel(cancel, "report export")
            prog(0.9, "laying out the PDF")
            from medviewer.report.pdf import build_pdf

            pdf = build_pdf(header, result, images, impression=text(impression),
                            notes={f.id: text(f.note) for f in result.findings}, paper=paper,
                            n_slices=volume.n_slices, volumes_mm3=volumes)
            put("report.pdf", pdf)

        check_cancel(cancel, "report export")
        final = tmp.commit()
    prog(1.0, "report written")
    return ExportSummary(final, [final / p for p in files], warnings, deidentified=deid is not None)


def _json_header(h: Any) -> dict[str, Any]:
    keys = ("patient_name", "patient_id", "patient_birth_date", "patient_sex", "study_date", "study_description",
            "accession_number", "series_description", "modality", "institution", "report_datetime", "reader_name",
            "signed", "deidentified", "software")
    d = h.as_dict()
    out = {k: d[k] for k in keys}
    out["verification"] = "VERIFIED" if h.signed else "UNVERIFIED"
    return out


def _volume_mm3(volume: Volume, f: Any) -> float | None:
    if f.mask is None:
        return None
    sz, sy, sx = volume.spacing
    return float(np.count_nonzero(f.mask) * sz * sy * sx)


def _export_denoised(
    denoised: Volume,
    source: Volume,
    result: DetectionResult,
    folder: Path,
    warnings: list[str],
    progress: Progress,
    cancel: CancelFn | None,
) -> list[Path]:
    """Write the derived series with :func:`medviewer.report.derived.write_derived_series`."""
    from medviewer.ai.results import ModelInfo
    from medviewer.report.derived import write_derived_series

    if denoised.shape != source.shape:
        raise ExportError(f"the denoised volume {denoised.shape} does not match the source {source.shape}")
    model = result.denoiser
    if model is None:
        model = ModelInfo(denoised.metadata.derived_from or "AI denoiser", "unknown")
        warnings.append("the result names no denoiser model: the derived series is labelled with version 'unknown'")
    try:
        written = write_derived_series(denoised, source, folder, model=model, progress=progress, cancel=cancel)
    except OSError as exc:
        raise atomic.export_error(folder, exc, "cannot write the denoised series") from exc
    return [Path(p) for p in written]


def _deidentify_file(path: Path, deid: Deidentifier) -> None:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ExportError(f"{path}: cannot re-read the derived image to de-identify it: {exc}") from exc
    # SeriesDescription = source description + " [AI denoised]": kept with the source part removed
    description = str(ds.get("SeriesDescription", "") or "")
    if description:
        del ds.SeriesDescription  # the whole string is not PHI, only its source part
    deid.apply(ds, in_place=True)
    if description:
        ds.SeriesDescription = deid.clean_text(description)[:64]
    atomic.write_bytes(path, atomic.dicom_bytes(ds), overwrite=True)


__all__ = ["export_report", "ExportSummary", "ALL_FORMATS"]
