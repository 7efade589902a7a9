"""Display logic of the viewer, without Qt: planes, reslicing, windows, measurements.

Everything the slice views compute that is worth a unit test lives here, so it
runs headless (``medviewer screenshot``, benchmarks, tests) and the Qt code in
:mod:`medviewer.gui` only draws.

Display conventions
-------------------
A *plane* is one of ``"axial"``, ``"coronal"``, ``"sagittal"``. They are the
three index planes of the volume: ``axial`` holds slice index k fixed (the
acquired images), ``coronal`` holds row index j fixed and ``sagittal`` column
index i fixed. For a volume acquired axially these are the anatomical planes;
for any other acquisition the orientation letters (computed from the direction
cosines, never assumed) tell the reader what is shown.

A displayed slice is a 2-D array ``(rows, cols)``. Display row r grows downwards,
display column c to the right. In the GUI the image is placed in a scene whose
units are millimetres: the centre of display pixel ``(r, c)`` sits at
``x = (c + 0.5) * col_spacing``, ``y = (r + 0.5) * row_spacing``, which gives
the correct aspect ratio for free and makes a ruler's scene length its length
in mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medviewer.volume import Volume, WindowPreset

PLANES: tuple[str, str, str] = ("axial", "coronal", "sagittal")

#: Display presets bound to the keys 1-5 (center/level, width) in HU.
PRESETS: dict[str, WindowPreset] = {
    "soft tissue": WindowPreset(40.0, 400.0, "soft tissue"),
    "lung": WindowPreset(-600.0, 1500.0, "lung"),
    "liver": WindowPreset(90.0, 150.0, "liver"),
    "bone": WindowPreset(480.0, 2500.0, "bone"),
    "brain": WindowPreset(40.0, 80.0, "brain"),
}
PRESET_KEYS: tuple[str, ...] = tuple(PRESETS)
"""Preset names in key order: key ``1`` is ``PRESET_KEYS[0]``."""

_LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


# --------------------------------------------------------------------------- orientation
def orientation_letters(vector: ArrayLike, oblique_threshold: float = 0.25) -> str:
    """Patient-orientation letters of an LPS direction (as DICOM viewers print them).

    Parameters
    ----------
    vector : array_like
        An LPS direction ``(x, y, z)``; need not be normalised.
    oblique_threshold : float
        Components whose magnitude (of the unit vector) is at least this value
        contribute a letter, dominant component first; so an oblique direction
        reads e.g. ``"LP"``.

    Returns
    -------
    str
        Letters from ``L/R`` (x), ``P/A`` (y), ``S/I`` (z); ``""`` for a zero vector.

    Examples
    --------
    >>> orientation_letters((1, 0, 0)), orientation_letters((0, -1, 0)), orientation_letters((0, 0, -1))
    ('L', 'A', 'I')
    >>> orientation_letters((0.8, 0.6, 0.0))
    'LP'
    """
    v = np.asarray(vector, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(v))
    if norm == 0 or not np.isfinite(norm):
        return ""
    v = v / norm
    order = np.argsort(-np.abs(v), kind="stable")
    letters: list[str] = []
    for axis in order:
        if abs(v[axis]) >= oblique_threshold or not letters:
            letters.append(_LPS_LETTERS[axis][1 if v[axis] > 0 else 0])
    return "".join(letters)


# --------------------------------------------------------------------------- planes
@dataclass(frozen=True)
class PlaneGeometry:
    """How one plane of a volume maps to a displayed 2-D image.

    Attributes
    ----------
    plane : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    axis : int
        Volume axis held fixed (0 = k, 1 = j, 2 = i); the slice index runs along it.
    row_axis, col_axis : int
        Volume axes along display rows (downwards) and columns (rightwards).
    flip_rows, flip_cols : bool
        Whether display rows / columns run against their volume axis.
    n_slices, n_rows, n_cols : int
        Number of slices in this plane and the displayed image size.
    row_spacing, col_spacing, slice_spacing : float
        Millimetres between display rows, display columns and slices.
    row_direction, col_direction, normal : tuple of float
        LPS unit vectors of increasing display row, display column and slice index.
    """

    plane: str
    axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool
    n_slices: int
    n_rows: int
    n_cols: int
    row_spacing: float
    col_spacing: float
    slice_spacing: float
    row_direction: tuple[float, float, float]
    col_direction: tuple[float, float, float]
    normal: tuple[float, float, float]

    @property
    def size_mm(self) -> tuple[float, float]:
        """Displayed image ``(width, height)`` in mm."""
        return self.n_cols * self.col_spacing, self.n_rows * self.row_spacing

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters at the ``left``, ``right``, ``top`` and ``bottom`` edges.

        Examples
        --------
        >>> import numpy as np
        >>> from medviewer.volume import Volume
        >>> g = plane_geometry(Volume(np.zeros((4, 5, 6), np.float32)), "axial")
        >>> g.edge_letters()
        {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
        """
        col = np.asarray(self.col_direction)
        row = np.asarray(self.row_direction)
        return {
            "left": orientation_letters(-col),
            "right": orientation_letters(col),
            "top": orientation_letters(-row),
            "bottom": orientation_letters(row),
        }

    # -- index mapping ---------------------------------------------------------------
    def display_to_index(self, slice_index: float, row: float, col: float) -> tuple[float, float, float]:
        """Volume index ``(k, j, i)`` of display pixel ``(row, col)`` on slice ``slice_index``.

        Works on fractional values (continuous pixel-centre coordinates).
        """
        out = [0.0, 0.0, 0.0]
        out[self.axis] = float(slice_index)
        out[self.row_axis] = (self.n_rows - 1 - row) if self.flip_rows else row
        out[self.col_axis] = (self.n_cols - 1 - col) if self.flip_cols else col
        return out[0], out[1], out[2]

    def index_to_display(self, index: Sequence[float]) -> tuple[float, float, float]:
        """``(slice, row, col)`` in this plane of the volume index ``(k, j, i)``."""
        s = float(index[self.axis])
        r = float(index[self.row_axis])
        c = float(index[self.col_axis])
        if self.flip_rows:
            r = self.n_rows - 1 - r
        if self.flip_cols:
            c = self.n_cols - 1 - c
        return s, r, c

    def pixel_to_mm(self, row: float, col: float) -> tuple[float, float]:
        """Scene position ``(x, y)`` in mm of the centre of display pixel ``(row, col)``."""
        return (col + 0.5) * self.col_spacing, (row + 0.5) * self.row_spacing

    def mm_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Fractional display pixel ``(row, col)`` whose centre is at scene ``(x, y)`` mm."""
        return y / self.row_spacing - 0.5, x / self.col_spacing - 0.5


def plane_geometry(volume: Volume, plane: str) -> PlaneGeometry:
    """The display geometry of ``plane`` for ``volume``.

    The acquired (``axial``) plane is shown as stored, like every DICOM viewer.
    The reformatted planes show slice index k vertically, flipped when needed
    so that the patient's head (S) is at the top; their columns run along i
    (coronal) or j (sagittal) as stored.

    Parameters
    ----------
    volume : Volume
    plane : {"axial", "coronal", "sagittal"}

    Raises
    ------
    ValueError
        For an unknown plane name.
    """
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    d = np.asarray(volume.direction, dtype=np.float64)
    dir_of_axis = {0: d[:, 2], 1: d[:, 1], 2: d[:, 0]}
    size_of_axis = {0: nz, 1: ny, 2: nx}
    spacing_of_axis = {0: sz, 1: sy, 2: sx}
    if plane == "axial":
        axis, row_axis, col_axis = 0, 1, 2
        flip_rows = False
    else:
        axis, row_axis, col_axis = (1, 0, 2) if plane == "coronal" else (2, 0, 1)
        # Increasing display row must point to the feet: flip when k runs towards S.
        flip_rows = bool(dir_of_axis[0][2] > 0)
    flip_cols = False
    row_dir = dir_of_axis[row_axis] * (-1.0 if flip_rows else 1.0)
    col_dir = dir_of_axis[col_axis] * (-1.0 if flip_cols else 1.0)
    return PlaneGeometry(
        plane=plane,
        axis=axis,
        row_axis=row_axis,
        col_axis=col_axis,
        flip_rows=flip_rows,
        flip_cols=flip_cols,
        n_slices=size_of_axis[axis],
        n_rows=size_of_axis[row_axis],
        n_cols=size_of_axis[col_axis],
        row_spacing=spacing_of_axis[row_axis],
        col_spacing=spacing_of_axis[col_axis],
        slice_spacing=spacing_of_axis[axis],
        row_direction=tuple(float(v) for v in row_dir),  # type: ignore[arg-type]
        col_direction=tuple(float(v) for v in col_dir),  # type: ignore[arg-type]
        normal=tuple(float(v) for v in dir_of_axis[axis]),  # type: ignore[arg-type]
    )


def extract_slice(voxels: NDArray[Any], geometry: PlaneGeometry, index: int) -> NDArray[Any]:
    """The displayed 2-D image of slice ``index`` of ``geometry``'s plane.

    Parameters
    ----------
    voxels : ndarray
        ``(z, y, x)`` or ``(z, y, x, C)`` array with the volume's shape (image,
        overlay or label map alike).
    geometry : PlaneGeometry
    index : int
        Slice index, clipped to the valid range.

    Returns
    -------
    ndarray
        C-contiguous ``(rows, cols)`` (or ``(rows, cols, C)``) array; a view for
        the axial plane when the input is contiguous, a copy otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from medviewer.volume import Volume
    >>> v = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    >>> extract_slice(v.voxels, plane_geometry(v, "sagittal"), 1).tolist()
    [[13.0, 17.0, 21.0], [1.0, 5.0, 9.0]]
    """
    k = int(min(max(int(index), 0), geometry.n_slices - 1))
    if geometry.axis == 0:
        img = voxels[k]
    elif geometry.axis == 1:
        img = voxels[:, k]
    else:
        img = voxels[:, :, k]
    # img axes are now the remaining volume axes in order; rows are the smaller axis number
    if geometry.flip_rows:
        img = img[::-1]
    if geometry.flip_cols:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------- windows
def window_levels(center: float, width: float) -> tuple[float, float]:
    """Display range ``(low, high)`` of a window: values below low are black.

    Examples
    --------
    >>> window_levels(40, 400)
    (-160.0, 240.0)
    """
    width = max(float(width), 1e-6)
    return float(center) - width / 2.0, float(center) + width / 2.0


def apply_window(values: NDArray[Any], center: float, width: float, invert: bool = False) -> NDArray[np.uint8]:
    """Map modality values to 8-bit grey with a window (what the screen shows).

    Examples
    --------
    >>> import numpy as np
    >>> apply_window(np.array([-1000.0, 40.0, 1000.0]), 40, 400).tolist()
    [0, 128, 255]
    """
    lo, hi = window_levels(center, width)
    scaled = (np.asarray(values, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def grey_lut(invert: bool = False) -> NDArray[np.uint8]:
    """A 256-entry uint8 grey look-up table, dark-to-bright or inverted."""
    ramp = np.arange(256, dtype=np.uint8)
    return np.ascontiguousarray(ramp[::-1] if invert else ramp)


def adjust_window(
    center: float, width: float, dx: float, dy: float, sensitivity: float | None = None
) -> tuple[float, float]:
    """New ``(center, width)`` after a window/level mouse drag of ``(dx, dy)`` pixels.

    Horizontal motion changes the width (right = wider, less contrast), vertical
    motion the level (down = higher level, darker image), as in common viewers.
    The step scales with the current width so narrow and wide windows both feel right.
    """
    step = sensitivity if sensitivity is not None else max(float(width), 20.0) / 250.0
    new_width = max(1.0, float(width) + dx * step)
    new_center = float(center) + dy * step
    return new_center, new_width


# --------------------------------------------------------------------------- measurements
def line_length_mm(p0: Sequence[float], p1: Sequence[float], row_spacing: float, col_spacing: float) -> float:
    """Length in mm between display pixel positions ``p0 = (row, col)`` and ``p1``.

    Examples
    --------
    >>> line_length_mm((10, 10), (10, 110), 0.5, 0.7)
    70.0
    """
    dr = (float(p1[0]) - float(p0[0])) * row_spacing
    dc = (float(p1[1]) - float(p0[1])) * col_spacing
    return float(round(math.hypot(dr, dc), 10))


def ellipse_mask(shape: tuple[int, int], bounds: Sequence[float]) -> NDArray[np.bool_]:
    """Pixels whose centre lies inside an axis-aligned ellipse.

    Parameters
    ----------
    shape : (rows, cols)
    bounds : (row0, col0, row1, col1)
        The ellipse's bounding box in continuous pixel-edge coordinates: pixel
        ``(r, c)`` covers ``[r, r+1) x [c, c+1)`` and has its centre at
        ``(r + 0.5, c + 0.5)``.

    Examples
    --------
    >>> int(ellipse_mask((10, 10), (0, 0, 10, 10)).sum())
    80
    """
    r0, c0, r1, c1 = (float(b) for b in bounds)
    r0, r1 = min(r0, r1), max(r0, r1)
    c0, c1 = min(c0, c1), max(c0, c1)
    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), dtype=bool)
    a = (c1 - c0) / 2.0
    b = (r1 - r0) / 2.0
    if a <= 0 or b <= 0:
        return mask
    cr, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    ra = max(0, int(math.floor(r0))), min(rows, int(math.ceil(r1)) + 1)
    ca = max(0, int(math.floor(c0))), min(cols, int(math.ceil(c1)) + 1)
    if ra[0] >= ra[1] or ca[0] >= ca[1]:
        return mask
    rr = np.arange(ra[0], ra[1], dtype=np.float64)[:, None] + 0.5
    cc_ = np.arange(ca[0], ca[1], dtype=np.float64)[None, :] + 0.5
    inside = ((rr - cr) / b) ** 2 + ((cc_ - cc) / a) ** 2 <= 1.0
    mask[ra[0] : ra[1], ca[0] : ca[1]] = inside
    return mask


@dataclass(frozen=True)
class RoiStatistics:
    """Statistics of the pixels inside a region of interest.

    ``area_mm2`` is the area of the geometric ellipse (pi a b), ``n_pixels`` the
    number of pixels whose centre lies inside it (the ones the values come from).
    """

    mean: float
    sd: float
    minimum: float
    maximum: float
    area_mm2: float
    n_pixels: int

    def describe(self, units: str = "HU") -> str:
        """One line for the measurement list, e.g. ``"mean 40.1 SD 3.2 HU ..."``."""
        if self.n_pixels == 0:
            return f"area {self.area_mm2:.1f} mm² (no pixel centre inside)"
        return (
            f"mean {self.mean:.1f} SD {self.sd:.1f} min {self.minimum:.0f} max {self.maximum:.0f} {units}, "
            f"area {self.area_mm2:.1f} mm²"
        )


def ellipse_statistics(
    image: NDArray[Any], bounds: Sequence[float], row_spacing: float, col_spacing: float
) -> RoiStatistics:
    """Mean, SD (population), min, max and area of an elliptical ROI on a 2-D image.

    Parameters
    ----------
    image : ndarray
        ``(rows, cols)`` modality values (HU); for RGB pass the luminance.
    bounds : (row0, col0, row1, col1)
        Bounding box of the ellipse in pixel-edge coordinates (see :func:`ellipse_mask`).
    row_spacing, col_spacing : float
        Pixel size in mm.

    Examples
    --------
    >>> import numpy as np
    >>> s = ellipse_statistics(np.full((20, 20), 7.0), (5, 5, 15, 15), 0.5, 0.5)
    >>> s.mean, s.sd, round(s.area_mm2, 2)
    (7.0, 0.0, 19.63)
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"ROI statistics need a 2-D image, got shape {img.shape}")
    mask = ellipse_mask(img.shape, bounds)
    r0, c0, r1, c1 = (float(b) for b in bounds)
    area = math.pi * abs(r1 - r0) / 2.0 * row_spacing * abs(c1 - c0) / 2.0 * col_spacing
    values = img[mask].astype(np.float64)
    if values.size == 0:
        nan = float("nan")
        return RoiStatistics(nan, nan, nan, nan, float(area), 0)
    return RoiStatistics(
        mean=float(values.mean()),
        sd=float(values.std()),
        minimum=float(values.min()),
        maximum=float(values.max()),
        area_mm2=float(area),
        n_pixels=int(values.size),
    )


# --------------------------------------------------------------------------- overlays
_COLORMAP_FALLBACK = {
    "red": ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
    "green": ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}


def colormap_rgb(name: str, n: int = 256) -> NDArray[np.uint8]:
    """``(n, 3)`` uint8 colours of a named colour map (matplotlib names, e.g. ``"hot"``, ``"jet"``).

    ``"red"`` and ``"green"`` are plain ramps for label overlays.
    """
    if name in _COLORMAP_FALLBACK:
        lo, hi = (np.asarray(c) for c in _COLORMAP_FALLBACK[name])
        t = np.linspace(0, 1, n)[:, None]
        return np.clip(np.rint((lo + (hi - lo) * t) * 255), 0, 255).astype(np.uint8)
    try:
        from matplotlib import colormaps
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ValueError(f"colour map {name!r} needs matplotlib") from exc
    try:
        cmap = colormaps[name]
    except KeyError as exc:
        raise ValueError(f"unknown colour map {name!r}") from exc
    rgba = cmap(np.linspace(0.0, 1.0, n))
    return np.clip(np.rint(rgba[:, :3] * 255), 0, 255).astype(np.uint8)


def overlay_lut(colormap: str = "jet", opacity: float = 0.5, threshold: float = 0.0) -> NDArray[np.uint8]:
    """A 256-entry RGBA look-up table for a ``[0, 1]`` heat map.

    Entry ``v`` stands for value ``v / 255``. Values below ``threshold`` are fully
    transparent; above it the alpha is ``opacity``, so the image stays readable
    under the colour.

    Parameters
    ----------
    colormap : str
        See :func:`colormap_rgb`.
    opacity : float
        0 (invisible) to 1 (opaque).
    threshold : float
        In ``[0, 1]``.

    Examples
    --------
    >>> lut = overlay_lut("hot", 0.5, 0.5)
    >>> lut.shape, int(lut[100, 3]), int(lut[200, 3])
    ((256, 4), 0, 128)
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, :3] = colormap_rgb(colormap)
    values = np.arange(256) / 255.0
    # strictly positive values only: an all-zero map must stay invisible even at threshold 0
    visible = (values >= float(threshold)) & (values > 0)
    lut[:, 3] = np.where(visible, int(round(float(opacity) * 255)), 0).astype(np.uint8)
    return lut


@dataclass(frozen=True)
class Marker:
    """A finding drawn as an outline (never filled) on the slices it covers.

    Attributes
    ----------
    id : str or int
        Shown in the label and used to select the marker.
    center : (k, j, i)
        Centre in (fractional) voxel indices.
    diameter_mm : float
        Diameter of the sphere the marker stands for.
    label : str
        Text drawn next to the outline (e.g. ``"#3 87%"``).
    colour : str or tuple
        Any colour pyqtgraph accepts (``"#ffcc00"``, ``(255, 0, 0)``, ``"y"``).
    """

    id: Any
    center: tuple[float, float, float]
    diameter_mm: float
    label: str = ""
    colour: Any = "#ffd200"


def marker_cross_section(
    marker: Marker, geometry: PlaneGeometry, slice_index: int
) -> tuple[float, float, float] | None:
    """Where a spherical marker cuts a displayed slice.

    Returns
    -------
    (x_mm, y_mm, radius_mm) or None
        Centre of the cut in scene mm (see the module docstring) and its radius;
        None when the slice misses the sphere.

    Examples
    --------
    >>> import numpy as np
    >>> from medviewer.volume import Volume
    >>> g = plane_geometry(Volume(np.zeros((20, 30, 30), np.float32), spacing=(2.0, 1.0, 1.0)), "axial")
    >>> m = Marker(1, (10, 15, 15), diameter_mm=10.0)
    >>> marker_cross_section(m, g, 10)
    (15.5, 15.5, 5.0)
    >>> marker_cross_section(m, g, 13) is None
    True
    """
    s, r, c = geometry.index_to_display(marker.center)
    d_mm = (float(slice_index) - s) * geometry.slice_spacing
    radius = float(marker.diameter_mm) / 2.0
    if abs(d_mm) > radius:
        return None
    cut = math.sqrt(max(radius * radius - d_mm * d_mm, 0.0))
    # keep a visible outline on the extreme slices the marker still touches
    cut = max(cut, min(radius, 0.5 * min(geometry.row_spacing, geometry.col_spacing)))
    x, y = geometry.pixel_to_mm(r, c)
    return x, y, cut


def luminance(rgb: NDArray[Any]) -> NDArray[np.float32]:
    """Rec. 601 luma of an ``(..., 3)`` RGB array (used for ROI values on colour images)."""
    arr = np.asarray(rgb, dtype=np.float32)
    return (arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114).astype(np.float32)


__all__ = [
    "PLANES",
    "PRESETS",
    "PRESET_KEYS",
    "orientation_letters",
    "PlaneGeometry",
    "plane_geometry",
    "extract_slice",
    "window_levels",
    "apply_window",
    "grey_lut",
    "adjust_window",
    "line_length_mm",
    "ellipse_mask",
    "RoiStatistics",
    "ellipse_statistics",
    "colormap_rgb",
    "overlay_lut",
    "Marker",
    "marker_cross_section",
    "luminance",
]


# --------------------------------------------------------------------------- previews
def middle_frame_series(series: Any) -> Any:
    """A one-image copy of a scanned series: its middle frame in slice order.

    Loading it with :func:`medviewer.dicom.load_series` reads a single file, so
    the viewer can put the slice on screen (and the study browser make a
    thumbnail) long before the whole series is read. The full load then
    starts at the same middle slice.

    Parameters
    ----------
    series : medviewer.dicom.Series
        A viewable series from :func:`medviewer.dicom.scan`.

    Returns
    -------
    medviewer.dicom.Series
        A shallow copy holding one frame; the original is not modified.

    Raises
    ------
    ValueError
        When the series has no frames.
    """
    from dataclasses import replace

    block = series.primary
    frames = list(block.frames)
    if not frames:
        raise ValueError(f"series {series.series_uid} has no image frames")
    frame = frames[len(frames) // 2]
    return replace(
        block,
        frames=[frame],
        files=[frame.entry],
        n_images=1,
        sub_series=[],
        parent=None,
        warnings=list(block.warnings),
    )


def make_thumbnail(volume: Volume, size: int = 64, slice_index: int | None = None) -> NDArray[np.uint8]:
    """A small 8-bit picture of one slice (the middle one by default) with the default window.

    Returns
    -------
    ndarray
        ``(h, w)`` uint8 grey or ``(h, w, 3)`` uint8 RGB, longest side ``<= size``,
        aspect ratio from the pixel spacing.
    """
    k = volume.n_slices // 2 if slice_index is None else int(slice_index)
    img = volume.voxels[min(max(k, 0), volume.n_slices - 1)]
    _, sy, sx = volume.spacing
    rows, cols = img.shape[:2]
    h_mm, w_mm = rows * sy, cols * sx
    scale = size / max(h_mm, w_mm)
    out_h = max(1, int(round(h_mm * scale)))
    out_w = max(1, int(round(w_mm * scale)))
    r_idx = np.minimum((np.arange(out_h) + 0.5) * rows / out_h, rows - 1).astype(np.intp)
    c_idx = np.minimum((np.arange(out_w) + 0.5) * cols / out_w, cols - 1).astype(np.intp)
    small = img[r_idx][:, c_idx]
    if volume.is_rgb:
        return np.ascontiguousarray(small.astype(np.uint8))
    w = volume.default_window
    return apply_window(small, w.center, w.width, invert=volume.metadata.invert_display)


__all__ += ["middle_frame_series", "make_thumbnail"]


# --------------------------------------------------------------------------- orientation source
_OPPOSITE = {"A": "P", "P": "A", "R": "L", "L": "R", "S": "I", "I": "S"}


def has_patient_geometry(volume: Volume) -> bool:
    """Whether the volume's direction cosines come from the file (or from code).

    A volume read from files without ImageOrientationPatient (CR, DX, US,
    secondary capture) has an identity direction that means nothing, so its
    orientation letters must not be derived from it. Volumes built in code
    (no headers) are trusted.
    """
    headers = volume.metadata.headers
    if not headers:
        return True
    hdr = headers[0]
    try:
        if "ImageOrientationPatient" in hdr:
            return True
        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            if seq in hdr and len(hdr[seq].value) and "PlaneOrientationSequence" in hdr[seq].value[0]:
                return True
    except (AttributeError, KeyError, TypeError, IndexError):
        return False
    return False


def _dicom_orientation_letters(value: str) -> str:
    """DICOM PatientOrientation letters (H/F for head/foot) to viewer letters (S/I)."""
    return "".join({"H": "S", "F": "I"}.get(ch, ch) for ch in str(value).upper() if ch in "APRLHFSI")


def edge_letters_for(volume: Volume, geometry: PlaneGeometry) -> dict[str, str]:
    """Orientation letters for the edges of a displayed plane, from the best source.

    1. Direction cosines when the file has patient geometry (see :func:`has_patient_geometry`);
    2. else, for the acquired plane, the file's PatientOrientation (0020,0020): its
       first value is the direction of increasing column (right edge), its second of
       increasing row (bottom edge);
    3. else no letters (empty strings) — never invented.

    Examples
    --------
    >>> import numpy as np
    >>> from medviewer.volume import Volume
    >>> v = Volume(np.zeros((1, 4, 4), np.float32))
    >>> edge_letters_for(v, plane_geometry(v, "axial"))["right"]
    'L'
    """
    if has_patient_geometry(volume):
        return geometry.edge_letters()
    empty = {"left": "", "right": "", "top": "", "bottom": ""}
    if geometry.plane != "axial":
        return empty
    try:
        po = volume.metadata.headers[0].get("PatientOrientation")
        values = [str(x) for x in po] if po is not None else []
    except (AttributeError, TypeError, IndexError):
        values = []
    if len(values) != 2:
        return empty
    right = _dicom_orientation_letters(values[0])
    bottom = _dicom_orientation_letters(values[1])
    if not right or not bottom:
        return empty
    return {
        "left": "".join(_OPPOSITE[c] for c in right),
        "right": right,
        "top": "".join(_OPPOSITE[c] for c in bottom),
        "bottom": bottom,
    }


__all__ += ["has_patient_geometry", "edge_letters_for"]


def has_pixel_spacing(volume: Volume) -> bool:
    """Whether distances in the image plane are calibrated (PixelSpacing or ImagerPixelSpacing).

    Files without either get 1 mm assumed by the loader; measurements on them are
    labelled uncalibrated. Volumes built in code (no headers) are trusted.
    """
    headers = volume.metadata.headers
    if not headers:
        return True
    hdr = headers[0]

    def valid(value: Any) -> bool:
        try:
            vals = [float(x) for x in value]
        except (TypeError, ValueError):
            return False
        return len(vals) == 2 and all(np.isfinite(v) and v > 0 for v in vals)

    try:
        if valid(hdr.get("PixelSpacing")) or valid(hdr.get("ImagerPixelSpacing")):
            return True
        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            if seq in hdr and len(hdr[seq].value) and "PixelMeasuresSequence" in hdr[seq].value[0]:
                item = hdr[seq].value[0].PixelMeasuresSequence[0]
                if valid(item.get("PixelSpacing")):
                    return True
    except (AttributeError, KeyError, TypeError, IndexError):
        return False
    return False


__all__ += ["has_pixel_spacing"]
