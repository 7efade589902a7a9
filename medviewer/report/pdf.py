"""The PDF report (reportlab): header, models, findings table, key images, impression.

Layout (A4 or Letter, 15 mm margins, every table scales to the text width):

1. Title band with the research-use banner.
2. Patient / study / report block (name, ID, birth date, sex; study date,
   accession, description, series; report date, reader, sign-off status).
3. AI models: role, name, version, manufacturer, device, and the intended
   use statement ("Research use only, not for diagnosis.").
4. Summary line (case abnormality score, threshold, findings by status).
5. Findings table: id, location (slice range and centre in LPS mm),
   diameter, mean HU, confidence, reader status, note.
6. A key image per finding (whole slice and zoomed detail, outline and heat
   map burned in, scale bar), with a caption.
7. The reader's impression.

Every page has a footer with the patient ID, "Research use only, not for
diagnosis" and the page number.  Text uses DejaVu Sans (shipped with
matplotlib), so any name renders; the PDF's text is extractable.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviewer.ai.results import DetectionResult, Finding, ModelInfo, ReviewStatus
from medviewer.errors import ExportError
from medviewer.report.keyimages import STATUS_COLOURS, KeyImage

PAPER_SIZES = ("A4", "Letter")
RESEARCH_USE = "Research use only, not for diagnosis."


@dataclass
class ReportHeader:
    """Everything the PDF header shows, already de-identified when asked."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_description: str = ""
    series_uid: str = ""
    modality: str = ""
    institution: str = ""
    report_datetime: str = ""
    reader_name: str = ""
    signed: bool = False
    deidentified: bool = False
    software: str = "MedViewer"
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class FindingImages:
    """Key images of one finding: the whole slice and a zoomed detail."""

    finding: Finding
    overview: KeyImage
    detail: KeyImage | None = None


_FONTS_READY = False


def _fonts() -> tuple[str, str]:
    """Register DejaVu Sans with reportlab once; fall back to Helvetica."""
    global _FONTS_READY
    if _FONTS_READY:
        return "DejaVuSans", "DejaVuSans-Bold"
    try:
        import matplotlib
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(ttf / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(ttf / "DejaVuSans-Bold.ttf")))
        from reportlab.lib.fonts import addMapping

        addMapping("DejaVuSans", 0, 0, "DejaVuSans")
        addMapping("DejaVuSans", 1, 0, "DejaVuSans-Bold")
        addMapping("DejaVuSans", 0, 1, "DejaVuSans")
        addMapping("DejaVuSans", 1, 1, "DejaVuSans-Bold")
        _FONTS_READY = True
        return "DejaVuSans", "DejaVuSans-Bold"
    except Exception:  # pragma: no cover - matplotlib ships the fonts
        return "Helvetica", "Helvetica-Bold"


def _esc(text: Any) -> str:
    from xml.sax.saxutils import escape

    return escape(str(text if text is not None else ""))


def format_dicom_date(value: str) -> str:
    """``YYYYMMDD`` -> ``YYYY-MM-DD`` (other values unchanged, empty -> '-')."""
    v = (value or "").strip()
    if len(v) >= 8 and v[:8].isdigit():
        return f"{v[0:4]}-{v[4:6]}-{v[6:8]}"
    return v or "-"


def format_person_name(value: str) -> str:
    """DICOM ``Family^Given^Middle^Prefix^Suffix`` -> ``FAMILY, Given Middle``."""
    v = (value or "").strip()
    if "^" not in v:
        return v or "-"
    parts = [p.strip() for p in v.split("=")[0].split("^")]
    family = parts[0]
    rest = " ".join(p for p in parts[1:4] if p)
    return f"{family}, {rest}" if rest else family or "-"


def location_text(f: Finding, n_slices: int | None = None) -> str:
    """``slices 5-7 of 10 · (x, y, z) mm`` with 1-based slice numbers as the viewer shows."""
    a, b = int(f.slice_range[0]) + 1, int(f.slice_range[1]) + 1
    sl = f"slice {a}" if a == b else f"slices {a}\u2013{b}"
    if n_slices:
        sl += f" of {n_slices}"
    x, y, z = (float(c) for c in f.center_mm)
    return f"{sl}\nLPS ({x:.1f}, {y:.1f}, {z:.1f}) mm"


def build_pdf(
    header: ReportHeader,
    result: DetectionResult,
    images: list[FindingImages],
    *,
    impression: str = "",
    notes: dict[int, str] | None = None,
    paper: str = "A4",
    n_slices: int | None = None,
    volumes_mm3: dict[int, float | None] | None = None,
) -> bytes:
    """Render the report PDF in memory.

    Parameters
    ----------
    header : ReportHeader
        Patient, study and report fields (already de-identified when asked).
    result : DetectionResult
        Models, findings (with status), scores.
    images : list of FindingImages
        Key images, in finding order (a finding without images is listed only).
    impression : str
        The reader's free-text impression (paragraphs split on blank lines).
    notes : dict, optional
        Note per finding id overriding ``finding.note`` (e.g. cleaned text).
    paper : {"A4", "Letter"}
    n_slices : int, optional
        Slices of the series, shown in the locations.
    volumes_mm3 : dict, optional
        Volume per finding id.

    Returns
    -------
    bytes
        The PDF file.

    Raises
    ------
    ExportError
        Unknown paper size, or reportlab failed.
    """
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4, LETTER
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    sizes = {"A4": A4, "LETTER": LETTER}
    key = str(paper).strip().upper()
    if key not in sizes:
        raise ExportError(f"unknown paper size {paper!r}: use one of {', '.join(PAPER_SIZES)}")
    pagesize = sizes[key]
    regular, bold = _fonts()
    notes = notes or {}

    navy = colors.HexColor("#1F3A5F")
    grey = colors.HexColor("#5A6470")
    light = colors.HexColor("#EEF2F6")
    rule = colors.HexColor("#C9D2DC")
    amber = colors.HexColor("#FFF4D6")
    amber_text = colors.HexColor("#7A4B00")

    base = ParagraphStyle("base", fontName=regular, fontSize=9, leading=11.5, alignment=TA_LEFT)
    small = ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5, textColor=grey)
    label = ParagraphStyle("label", parent=base, fontSize=7.5, leading=9.5, textColor=grey)
    value = ParagraphStyle("value", parent=base, fontName=bold, fontSize=9, leading=11.5)
    h1 = ParagraphStyle("h1", parent=base, fontName=bold, fontSize=17, leading=21, textColor=colors.white)
    h1sub = ParagraphStyle("h1sub", parent=base, fontSize=8.5, leading=11, textColor=colors.HexColor("#D5DEE8"))
    h2 = ParagraphStyle("h2", parent=base, fontName=bold, fontSize=11, leading=14, textColor=navy, spaceBefore=9, spaceAfter=4)
    cell = ParagraphStyle("cell", parent=base, fontSize=8, leading=10)
    cellb = ParagraphStyle("cellb", parent=cell, fontName=bold)
    banner = ParagraphStyle("banner", parent=base, fontName=bold, fontSize=8.5, leading=11, textColor=amber_text)

    left = right = 15 * mm
    width = pagesize[0] - left - right
    story: list[Any] = []

    # 1. Title band.
    status_txt = "FINAL \u2013 signed by reader" if header.signed else "PRELIMINARY \u2013 not signed"
    title = Table(
        [
            [
                Paragraph("CT Lesion Analysis Report", h1),
                Paragraph(
                    f"{_esc(header.software)}<br/>Report {_esc(header.report_datetime)}<br/>{_esc(status_txt)}",
                    ParagraphStyle("tr", parent=h1sub, alignment=2),
                ),
            ]
        ],
        colWidths=[width * 0.62, width * 0.38],
    )
    title.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), navy),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 7),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 7),
            ]
        )
    )
    story.append(title)
    ban = Table(
        [[Paragraph(f"AI RESULTS \u2013 {_esc(RESEARCH_USE.upper())} Findings must be confirmed by a qualified reader.", banner)]],
        colWidths=[width],
    )
    ban.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), amber),
                ("BOX", (0, 0), (-1, -1), 0.6, colors.HexColor("#E0B04A")),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    story += [ban, Spacer(1, 6)]

    # 2. Patient / study / report block.
    def kv(k: str, v: str) -> list[Any]:
        return [Paragraph(_esc(k), label), Paragraph(_esc(v or "-"), value)]

    pat = [
        kv("Patient", format_person_name(header.patient_name)),
        kv("Patient ID", header.patient_id),
        kv("Birth date", format_dicom_date(header.patient_birth_date)),
        kv("Sex", header.patient_sex),
    ]
    study = [
        kv("Study date", format_dicom_date(header.study_date)),
        kv("Accession", header.accession_number),
        kv("Study", header.study_description),
        kv("Series", f"{header.modality} {header.series_description}".strip()),
    ]
    rep = [
        kv("Reader", format_person_name(header.reader_name) if header.reader_name else "-"),
        kv("Sign-off", "Signed (verified)" if header.signed else "Not signed (unverified)"),
        kv("Institution", header.institution),
        kv("Anonymized", "Yes (PS3.15 Basic Profile)" if header.deidentified else "No"),
    ]
    rows = [pat[i] + study[i] + rep[i] for i in range(4)]
    cw = width / 3.0
    info = Table(rows, colWidths=[cw * 0.34, cw * 0.66] * 3)
    info.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), light),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEAFTER", (1, 0), (1, -1), 0.5, rule),
                ("LINEAFTER", (3, 0), (3, -1), 0.5, rule),
                ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    story.append(info)

    # 3. Models.
    story.append(Paragraph("AI models", h2))
    models: list[tuple[str, ModelInfo]] = []
    if result.denoiser is not None:
        models.append(("Denoising (for reading; detection read the original images)", result.denoiser))
    models.append(("Lesion detection", result.model))
    mrows: list[list[Any]] = [[Paragraph(t, cellb) for t in ("Role", "Model", "Version", "Manufacturer", "Intended use")]]
    for role, m in models:
        mrows.append(
            [
                Paragraph(_esc(role), cell),
                Paragraph(_esc(m.name), cell),
                Paragraph(_esc(m.version), cell),
                Paragraph(_esc(m.manufacturer), cell),
                Paragraph(_esc(m.intended_use), cell),
            ]
        )
    mt = Table(mrows, colWidths=[width * w for w in (0.22, 0.26, 0.1, 0.14, 0.28)], repeatRows=1)
    mt.setStyle(_grid_style(colors, navy, rule, light))
    story.append(mt)
    counts = {s: sum(1 for f in result.findings if f.status == s) for s in ReviewStatus}
    story.append(Spacer(1, 4))
    story.append(
        Paragraph(
            f"Computed on {_esc(result.device)}. Case abnormality score <b>{result.abnormality_score:.2f}</b>; "
            f"display threshold {result.threshold:.2f}. {len(result.findings)} finding(s): "
            f"{counts[ReviewStatus.ACCEPTED]} accepted, {counts[ReviewStatus.REJECTED]} rejected, "
            f"{counts[ReviewStatus.PENDING]} not reviewed. <b>{_esc(RESEARCH_USE)}</b>",
            small,
        )
    )

    # 5. Findings table.
    story.append(Paragraph("Findings", h2))
    if not result.findings:
        story.append(Paragraph("The model reported no finding above its threshold.", base))
    else:
        head = ["#", "Location", "Diameter", "Mean HU", "Volume", "Confidence", "Status", "Note"]
        frows: list[list[Any]] = [[Paragraph(h, cellb) for h in head]]
        style_cmds: list[tuple[Any, ...]] = []
        for r, f in enumerate(result.findings, start=1):
            vol = (volumes_mm3 or {}).get(f.id)
            colour = colors.Color(*(c / 255.0 for c in STATUS_COLOURS[f.status]))
            frows.append(
                [
                    Paragraph(f"<b>F{f.id}</b>", cell),
                    Paragraph(_esc(location_text(f, n_slices)).replace("\n", "<br/>"), cell),
                    Paragraph(f"{f.diameter_mm:.1f} mm", cell),
                    Paragraph("-" if f.mean_hu is None else f"{f.mean_hu:.0f}", cell),
                    Paragraph("-" if vol is None else f"{vol:.0f} mm\u00b3", cell),
                    Paragraph(f"{f.confidence * 100:.0f}%", cell),
                    Paragraph(f"<b>{_esc(f.status.value)}</b>", cell),
                    Paragraph(_esc(notes.get(f.id, f.note) or ""), cell),
                ]
            )
            style_cmds.append(("LINEBEFORE", (0, r), (0, r), 3, colour))
        ft = Table(frows, colWidths=[width * w for w in (0.05, 0.24, 0.1, 0.08, 0.1, 0.12, 0.1, 0.21)], repeatRows=1)
        ft.setStyle(_grid_style(colors, navy, rule, light, extra=style_cmds))
        story.append(ft)
        story.append(Spacer(1, 2))
        story.append(
            Paragraph(
                "Location: slice numbers as shown in the viewer (1 = first slice); centre in DICOM patient "
                "coordinates (LPS). Diameter: equivalent-sphere diameter of the segmented lesion. "
                "Confidence: calibrated model probability.",
                small,
            )
        )

    # 6. Key images: [whole slice | detail | facts] per finding.
    if images:
        img_w = (width - 58 * mm) / 2.0
        legend = Paragraph(
            "Left: whole slice through the finding's centre; middle: detail. Outline = lesion, coloured by the "
            "reader's decision (green accepted, yellow not reviewed, red rejected); colour wash = model confidence "
            f"(transparent below {0.25 * result.threshold:.2f}). Scale bar in mm.",
            small,
        )
        blocks: list[Any] = []
        for fi in images:
            f = fi.finding
            colour = colors.Color(*(c / 255.0 for c in STATUS_COLOURS[f.status]))
            vol = (volumes_mm3 or {}).get(f.id)
            facts = [
                f"<font size=12><b>F{f.id}</b></font>&nbsp;&nbsp;<b>{_esc(f.status.value.upper())}</b>",
                f"Confidence <b>{f.confidence * 100:.0f}%</b>",
                f"Diameter <b>{f.diameter_mm:.1f} mm</b>",
                "Mean " + ("-" if f.mean_hu is None else f"<b>{f.mean_hu:.0f} HU</b>"),
                "Volume " + ("-" if vol is None else f"<b>{vol:.0f} mm\u00b3</b>"),
                _esc(location_text(f, n_slices)).replace("\n", "<br/>"),
                f"Window C {fi.overview.window.center:.0f} / W {fi.overview.window.width:.0f}",
            ]
            note = notes.get(f.id, f.note) or ""
            if note:
                facts.append(f"<i>{_esc(note)}</i>")
            row = Table(
                [[_rl_image(Image, fi.overview, img_w), _rl_image(Image, fi.detail, img_w) if fi.detail is not None else "",
                  Paragraph("<br/>".join(facts), cell)]],
                colWidths=[img_w + 2 * mm, img_w + 2 * mm, width - 2 * img_w - 4 * mm],
            )
            row.setStyle(
                TableStyle(
                    [
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                        ("LEFTPADDING", (0, 0), (1, 0), 0),
                        ("RIGHTPADDING", (0, 0), (1, 0), 0),
                        ("LEFTPADDING", (2, 0), (2, 0), 6),
                        ("LINEBEFORE", (2, 0), (2, 0), 3, colour),
                        ("TOPPADDING", (0, 0), (-1, -1), 0),
                        ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                    ]
                )
            )
            blocks.append(row)
        story.append(KeepTogether([Paragraph("Key images", h2), legend, Spacer(1, 4), blocks[0]]))
        story.extend(blocks[1:])

    # 7. Impression.
    story.append(Paragraph("Impression", h2))
    paras = [p.strip() for p in (impression or "").replace("\r\n", "\n").split("\n\n") if p.strip()]
    if paras:
        for p in paras:
            story.append(Paragraph(_esc(p).replace("\n", "<br/>"), base))
            story.append(Spacer(1, 3))
    else:
        story.append(Paragraph("No impression entered by the reader.", ParagraphStyle("ni", parent=base, textColor=grey)))
    sign = (
        f"Electronically signed by {_esc(format_person_name(header.reader_name))} on {_esc(header.report_datetime)}."
        if header.signed
        else "This report has not been signed; the AI results are unverified."
    )
    story += [Spacer(1, 6), Paragraph(sign, small)]

    footer_left = f"Patient ID {header.patient_id or '-'} \u00b7 {header.software}"

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setStrokeColor(rule)
        canvas.setLineWidth(0.5)
        canvas.line(left, 12 * mm, pagesize[0] - right, 12 * mm)
        canvas.setFont(regular, 7)
        canvas.setFillColor(grey)
        canvas.drawString(left, 8.5 * mm, footer_left)
        canvas.drawCentredString(pagesize[0] / 2.0, 8.5 * mm, RESEARCH_USE)
        canvas.drawRightString(pagesize[0] - right, 8.5 * mm, f"Page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=pagesize,
        leftMargin=left,
        rightMargin=right,
        topMargin=12 * mm,
        bottomMargin=18 * mm,
        title="CT Lesion Analysis Report",
        author=header.software,
        subject=RESEARCH_USE,
        creator=header.software,
    )
    from reportlab import rl_config

    use_a85 = rl_config.useA85
    rl_config.useA85 = 0  # binary image streams: smaller, and pure-Python ASCII85 is slow
    try:
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    except Exception as exc:  # reportlab raises LayoutError, ValueError, ...
        raise ExportError(f"cannot lay out the PDF report: {exc}") from exc
    finally:
        rl_config.useA85 = use_a85
    return buf.getvalue()


def _grid_style(colors: Any, navy: Any, rule: Any, light: Any, extra: list[tuple[Any, ...]] | None = None) -> Any:
    from reportlab.platypus import TableStyle

    cmds: list[tuple[Any, ...]] = [
        ("BACKGROUND", (0, 0), (-1, 0), light),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, navy),
        ("LINEBELOW", (0, 1), (-1, -1), 0.4, rule),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
    ]
    return TableStyle(cmds + list(extra or []))


def _rl_image(image_cls: Any, key: KeyImage | None, max_w: float) -> Any:
    if key is None:
        return ""
    h, w = key.rgb.shape[:2]
    return image_cls(io.BytesIO(key.png_bytes(compress_level=1)), width=max_w, height=max_w * h / w)  # re-encoded by reportlab


__all__ = ["ReportHeader", "FindingImages", "build_pdf", "PAPER_SIZES", "RESEARCH_USE", "location_text", "format_person_name", "format_dicom_date"]
