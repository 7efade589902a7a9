"""Key images of findings, rendered without Qt (numpy + Pillow).

A key image is one axial slice through a finding's centre, windowed to
grey levels, with the model's confidence heat map blended in (colour map
with alpha, transparent below a floor), the finding's outline (from its
mask, or a circle of its diameter when it has none), a scale bar in mm and
a label (finding id, confidence, review status).  Pixels are resampled to
square display pixels, so anisotropic in-plane spacing is drawn true to
size.  The same renderer feeds the PDF and the Secondary Capture objects.

The source pixels are never changed: everything is drawn on a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from medviewer.ai.results import DetectionResult, Finding, ReviewStatus
from medviewer.volume import Volume, WindowPreset

STATUS_COLOURS: dict[ReviewStatus, tuple[int, int, int]] = {
    ReviewStatus.ACCEPTED: (60, 220, 90),
    ReviewStatus.REJECTED: (230, 60, 60),
    ReviewStatus.PENDING: (255, 215, 0),
}
"""Outline colour per review status (green accepted, red rejected, yellow pending)."""

LUNG_WINDOW = WindowPreset(-600.0, 1500.0, "lung")
SOFT_TISSUE_WINDOW = WindowPreset(40.0, 400.0, "soft tissue")


@dataclass
class KeyImage:
    """A rendered key image.

    Attributes
    ----------
    rgb : ndarray
        ``(rows, columns, 3)`` uint8 image with the overlays burned in.
    pixel_spacing_mm : tuple of float
        Row and column spacing of ``rgb`` in mm (square pixels).
    slice_index : int
        Source slice ``k`` shown.
    window : WindowPreset
        The grey-level window used.
    finding_id : int
    """

    rgb: NDArray[np.uint8]
    pixel_spacing_mm: tuple[float, float]
    slice_index: int
    window: WindowPreset
    finding_id: int

    def png_bytes(self, compress_level: int = 6) -> bytes:
        """The image encoded as PNG (zlib ``compress_level`` 0-9)."""
        import io

        buf = io.BytesIO()
        Image.fromarray(self.rgb).save(buf, format="PNG", compress_level=compress_level)
        return buf.getvalue()


@lru_cache(maxsize=8)
def font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` px, else Pillow's default."""
    try:
        import matplotlib

        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except (ImportError, OSError):  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size=size)


@lru_cache(maxsize=4)
def _colormap_lut(name: str) -> NDArray[np.uint8]:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return (np.asarray(cmap(np.linspace(0.0, 1.0, 256)))[:, :3] * 255).round().astype(np.uint8)


def choose_window(volume: Volume, finding: Finding | None = None) -> WindowPreset:
    """The window for key images: the file's own, else lung or soft tissue for CT.

    For CT (HU) the lung window is used when the neighbourhood of the finding
    is mostly air-filled lung (median below -400 HU), the soft-tissue window
    otherwise.
    """
    if volume.metadata.windows:
        return volume.metadata.windows[0]
    if volume.metadata.units.upper() != "HU" or volume.is_rgb:
        return volume.default_window
    if finding is not None:
        k, j, i = (int(round(c)) for c in finding.center_index)
        z, y, x = volume.shape
        k = min(max(k, 0), z - 1)
        r = max(8, int(round(2.0 * finding.diameter_mm / max(volume.spacing[1], 1e-6))))
        patch = volume.voxels[k, max(0, j - r) : j + r + 1, max(0, i - r) : i + r + 1]
        if patch.size and float(np.median(patch)) < -400.0:
            return LUNG_WINDOW
    return SOFT_TISSUE_WINDOW


def window_to_uint8(image: NDArray[Any], window: WindowPreset, invert: bool = False) -> NDArray[np.uint8]:
    """Map modality values to 0..255 with a linear window (DICOM VOI LINEAR)."""
    lo = window.center - window.width / 2.0
    scaled = (image.astype(np.float32) - lo) / max(window.width, 1e-6)
    out = (np.clip(scaled, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return 255 - out if invert else out


def nice_scale_length(field_mm: float) -> float:
    """A round bar length (1, 2, 5 x 10^n mm) close to a fifth of ``field_mm``."""
    target = max(field_mm / 5.0, 1e-3)
    exp = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)  # pragma: no cover


def _finding_mask_slice(finding: Finding, k: int, shape: tuple[int, int], spacing_yx: tuple[float, float]) -> NDArray[np.bool_]:
    if finding.mask is not None and finding.mask.shape[1:] == shape and 0 <= k < finding.mask.shape[0]:
        m = np.asarray(finding.mask[k], dtype=bool)
        if m.any():
            return m
    # No mask on this slice (e.g. read back from JSON): a circle of the diameter.
    _, cj, ci = finding.center_index
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    r = max(finding.diameter_mm / 2.0, 1.0)
    return bool_array(((yy - cj) * spacing_yx[0]) ** 2 + ((xx - ci) * spacing_yx[1]) ** 2 <= r * r)


def bool_array(a: Any) -> NDArray[np.bool_]:
    return np.asarray(a, dtype=bool)


def render_key_image(
    volume: Volume,
    finding: Finding,
    confidence: NDArray[np.floating[Any]] | None = None,
    *,
    threshold: float = 0.5,
    window: WindowPreset | None = None,
    fov_mm: float | None = None,
    size: int = 512,
    heat_alpha: float = 0.45,
    colormap: str = "inferno",
    label: str | None = None,
    box_mm: float | None = None,
) -> KeyImage:
    """Render the key image of ``finding``.

    Parameters
    ----------
    volume : Volume
        Grey-scale source volume (not modified).
    finding : Finding
        Shown on the slice through its centre.
    confidence : ndarray, optional
        ``(z, y, x)`` confidence map in [0, 1] on the volume's grid.
    threshold : float
        The model's display threshold; the heat map is transparent below
        ``0.25 * threshold`` and its opacity grows up to ``heat_alpha``.
    window : WindowPreset, optional
        Grey-level window; :func:`choose_window` by default.
    fov_mm : float, optional
        Side of a square field of view centred on the finding (a zoomed
        detail view); the whole slice when None.
    size : int
        Longest side of the output in pixels.
    heat_alpha : float
        Maximum opacity of the heat map.
    colormap : str
        Matplotlib colour map of the heat map.
    label : str, optional
        Text in the top-left corner; by default ``F<id>  <conf>%  <status>``.
    box_mm : float, optional
        Draw a square of this side (mm) around the finding, e.g. the field
        of view of a detail image, so small findings are easy to spot.

    Returns
    -------
    KeyImage

    Raises
    ------
    ValueError
        Colour volume, or a confidence map whose shape differs from the volume's.

    Examples
    --------
    >>> import numpy as np
    >>> from medviewer.ai.results import Finding
    >>> v = Volume(np.full((3, 32, 32), -800, np.float32), spacing=(2.0, 1.0, 1.0))
    >>> f = Finding(1, (16.0, 16.0, 2.0), (1.0, 16.0, 16.0), 6.0, (0, 2), 0.9)
    >>> img = render_key_image(v, f, size=128)
    >>> img.rgb.shape, img.slice_index
    ((128, 128, 3), 1)
    """
    if volume.is_rgb:
        raise ValueError("key images need a grey-scale volume")
    if confidence is not None and confidence.shape != volume.shape:
        raise ValueError(f"confidence map shape {confidence.shape} does not match volume {volume.shape}")
    z, h, w = volume.shape
    k = int(min(max(round(finding.center_index[0]), 0), z - 1))
    _, sy, sx = volume.spacing
    win = window or choose_window(volume, finding)
    grey = window_to_uint8(volume.voxels[k], win, volume.metadata.invert_display)
    rgb: NDArray[Any] = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)

    if confidence is not None:
        c = np.nan_to_num(np.asarray(confidence[k], dtype=np.float32), nan=0.0).clip(0.0, 1.0)
        floor = 0.25 * threshold
        alpha = np.clip((c - floor) / max(1.0 - floor, 1e-6), 0.0, 1.0) * heat_alpha
        alpha[c < floor] = 0.0
        colours = _colormap_lut(colormap)[(c * 255).astype(np.intp)].astype(np.float32)
        rgb = rgb * (1.0 - alpha[:, :, None]) + colours * alpha[:, :, None]

    mask = _finding_mask_slice(finding, k, (h, w), (sy, sx))

    # Crop (in source pixels) for a zoomed view.
    r0, r1, c0, c1 = 0, h, 0, w
    origin_r, origin_c = 0, 0  # source-pixel position of the output's first row/column
    if fov_mm is not None:
        _, cj, ci = finding.center_index
        half_r, half_c = fov_mm / 2.0 / sy, fov_mm / 2.0 / sx
        r0, r1 = int(np.floor(cj - half_r)), int(np.ceil(cj + half_r))
        c0, c1 = int(np.floor(ci - half_c)), int(np.ceil(ci + half_c))
        origin_r, origin_c = r0, c0
        pad = ((max(0, -r0), max(0, r1 - h)), (max(0, -c0), max(0, c1 - w)))
        rgb = np.pad(rgb, pad + ((0, 0),), constant_values=0)
        mask = np.pad(mask, pad, constant_values=False)
        r0, r1, c0, c1 = r0 + pad[0][0], r1 + pad[0][0], c0 + pad[1][0], c1 + pad[1][0]
    rgb = rgb[r0:r1, c0:c1]
    mask = mask[r0:r1, c0:c1]

    # Square display pixels: the longest physical side maps to `size` pixels.
    height_mm, width_mm = rgb.shape[0] * sy, rgb.shape[1] * sx
    px = max(height_mm, width_mm) / float(size)
    out_h = max(1, int(round(height_mm / px)))
    out_w = max(1, int(round(width_mm / px)))
    img = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8)).resize((out_w, out_h), Image.Resampling.BICUBIC)
    big_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((out_w, out_h), Image.Resampling.BILINEAR)) >= 128

    colour = STATUS_COLOURS[finding.status]
    thick = max(1, size // 256)
    edge = big_mask & ~ndimage.binary_erosion(big_mask, iterations=thick, border_value=0)
    arr = np.asarray(img).copy()
    arr[edge] = colour
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)

    if box_mm is not None:
        _, cj, ci = finding.center_index
        xc, yc = (ci - origin_c + 0.5) * sx / px, (cj - origin_r + 0.5) * sy / px
        half = max(box_mm / 2.0 / px, 6.0)
        draw.rectangle([xc - half, yc - half, xc + half, yc + half], outline=colour, width=max(1, thick))

    # Label.
    fs = max(10, size // 28)
    text = label if label is not None else f"F{finding.id}  {finding.confidence * 100:.0f}%  {finding.status.value}"
    _text_with_shadow(draw, (fs // 2, fs // 3), text, font(fs, bold=True), colour)

    # Scale bar (bottom left).
    field_mm = out_w * px
    bar_mm = nice_scale_length(field_mm)
    bar_px = int(round(bar_mm / px))
    x0, y0 = fs // 2 + 2, out_h - fs - fs // 2
    draw.rectangle([x0 - 1, y0 - 1, x0 + bar_px + 1, y0 + max(2, fs // 5) + 1], fill=(0, 0, 0))
    draw.rectangle([x0, y0, x0 + bar_px, y0 + max(2, fs // 5)], fill=(255, 255, 255))
    bar_label = f"{bar_mm:g} mm"
    _text_with_shadow(draw, (x0, y0 - fs - 2), bar_label, font(max(9, fs * 4 // 5)), (255, 255, 255))

    # Slice position (bottom right) and research-use marker (top right).
    pos = volume.slice_position_mm(k)
    small = font(max(9, fs * 3 // 4))
    info = f"slice {k + 1}/{z}  {pos:.1f} mm"
    tw = draw.textlength(info, font=small)
    _text_with_shadow(draw, (out_w - tw - fs // 2, out_h - fs - fs // 3), info, small, (255, 255, 255))
    ruo = "AI - research use only"
    tw = draw.textlength(ruo, font=small)
    _text_with_shadow(draw, (out_w - tw - fs // 2, fs // 3), ruo, small, (255, 255, 255))

    return KeyImage(np.asarray(img, dtype=np.uint8), (px, px), k, win, finding.id)


def _text_with_shadow(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fnt: Any, fill: tuple[int, int, int]) -> None:
    x, y = xy
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (1, 1)):
        draw.text((x + dx, y + dy), text, font=fnt, fill=(0, 0, 0))
    draw.text((x, y), text, font=fnt, fill=fill)


def render_all(
    volume: Volume, result: DetectionResult, *, size: int = 512, fov_mm: float | None = None
) -> list[KeyImage]:
    """Key images of every finding of ``result`` (in finding order)."""
    return [
        render_key_image(volume, f, result.confidence, threshold=result.threshold, size=size, fov_mm=fov_mm)
        for f in result.findings
    ]


# ------------------------------------------------------------------ Secondary Capture
def secondary_capture(
    key: KeyImage,
    finding: Finding,
    result: DetectionResult,
    ref_dataset: Any,
    *,
    series_instance_uid: str,
    series_number: int,
    instance_number: int,
    contributing_equipment: Any = None,
) -> Any:
    """A DICOM Secondary Capture image (highdicom ``SCImage``) of a key image.

    The overlays are burned in (BurnedInAnnotation YES); the image references
    the source slice (Source Image Sequence) and names the algorithm.

    Parameters
    ----------
    key : KeyImage
        The rendered image.
    finding : Finding
    result : DetectionResult
        For the model name and version.
    ref_dataset : pydicom.Dataset
        Header of the source slice shown (patient and study are copied from it).
    series_instance_uid : str
        The key-image series.
    series_number, instance_number : int
    contributing_equipment : sequence of highdicom.ContributingEquipment, optional

    Returns
    -------
    highdicom.sc.SCImage
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref_dataset,
        pixel_array=key.rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=result.model.manufacturer or "MedViewer",
        pixel_spacing=key.pixel_spacing_mm,  # type: ignore[arg-type]  # highdicom's hint says int; mm are floats
        patient_orientation=("L", "P"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        contributing_equipment=contributing_equipment,
    )
    sc.ImageType = ["DERIVED", "SECONDARY", "KEY_IMAGE"]
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "MedViewer AI key images (research use only)"
    sc.DerivationDescription = (
        f"Slice {key.slice_index + 1} with {result.model.name} {result.model.version} confidence heat map, "
        f"outline and scale bar burned in"
    )[:1024]
    sc.ImageComments = (
        f"Finding {finding.id}: confidence {finding.confidence * 100:.1f}%, diameter {finding.diameter_mm:.1f} mm, "
        f"status {finding.status.value}. {result.model.intended_use}"
    )[:10240]
    src = Dataset()
    src.ReferencedSOPClassUID = ref_dataset.SOPClassUID
    src.ReferencedSOPInstanceUID = ref_dataset.SOPInstanceUID
    sc.SourceImageSequence = Sequence([src])
    return sc


__all__ = [
    "KeyImage",
    "STATUS_COLOURS",
    "choose_window",
    "window_to_uint8",
    "nice_scale_length",
    "render_key_image",
    "render_all",
    "secondary_capture",
    "font",
]
