"""Measurement tools drawn on slice views: length ruler and elliptical ROI.

A measurement belongs to one plane and one slice of the volume shown when it
was drawn; a view shows it only while that slice is on screen. The graphics are
pyqtgraph ROIs, so handles can be dragged afterwards and the values follow.
The numbers come from :mod:`medviewer.viewing` (Qt-free, unit-tested): scene
coordinates are millimetres, converted back to pixels for the statistics.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from medviewer.viewing import (
    PlaneGeometry,
    RoiStatistics,
    ellipse_statistics,
    extract_slice,
    has_pixel_spacing,
    line_length_mm,
    luminance,
)
from medviewer.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from medviewer.gui.slice_view import SliceView

TOOLS = ("window", "ruler", "ellipse", "crosshair")
"""Left-button tools: window/level drag, length ruler, ellipse ROI, crosshair placement."""

_ids = itertools.count(1)
_PEN = pg.mkPen("#00e5ff", width=1.5)
_HOVER_PEN = pg.mkPen("#ffff00", width=2)


class Measurement(QtCore.QObject):
    """Base class: one measurement on one slice of one plane.

    Signals
    -------
    changed(object)
        The measurement (its value changed because a handle moved).
    """

    changed = QtCore.Signal(object)
    kind = "measurement"

    def __init__(self, geometry: PlaneGeometry, slice_index: int, volume: Volume) -> None:
        super().__init__()
        self.id = next(_ids)
        self.geometry = geometry
        self.slice_index = int(slice_index)
        self.volume = volume
        self.roi: pg.ROI
        self.label = pg.TextItem("", color="#00e5ff", anchor=(0, 1))
        self.label.setZValue(30)
        self.calibrated = has_pixel_spacing(volume)
        """False when the file has no pixel spacing (1 mm assumed): values are marked."""

    @property
    def plane(self) -> str:
        return self.geometry.plane

    def adopt_menus(self, widget: Any) -> None:
        """Give the handles' context menus (parentless QMenus in pyqtgraph) a parent widget.

        Without it they would outlive the window as stray top-level widgets.
        """
        for handle in self.roi.getHandles():
            menu = getattr(handle, "menu", None)
            if menu is not None and menu.parent() is None:
                menu.setParent(widget, menu.windowFlags())

    def items(self) -> list[Any]:
        """Graphics items to add to the view box."""
        return [self.roi, self.label]

    def value_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def description(self) -> str:
        """Line for the measurement list, e.g. ``"#1 Ruler 70.0 mm — axial 13"``."""
        return f"#{self.id} {self.kind.title()}: {self.value_text()} — {self.plane} {self.slice_index + 1}"

    def _update(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_roi_changed(self) -> None:
        self._update()
        self.changed.emit(self)


class RulerMeasurement(Measurement):
    """A straight line whose length in mm uses the pixel spacing of the plane.

    Parameters
    ----------
    geometry : PlaneGeometry
    slice_index : int
    volume : Volume
    p0, p1 : (x_mm, y_mm)
        End points in scene millimetres.
    """

    kind = "ruler"

    def __init__(
        self,
        geometry: PlaneGeometry,
        slice_index: int,
        volume: Volume,
        p0: tuple[float, float],
        p1: tuple[float, float],
    ) -> None:
        super().__init__(geometry, slice_index, volume)
        self.roi = pg.LineSegmentROI(positions=[p0, p1], pen=_PEN, hoverPen=_HOVER_PEN)
        self.roi.setZValue(25)
        self.roi.sigRegionChanged.connect(self._on_roi_changed)
        self._update()

    def endpoints_mm(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The two end points in scene mm."""
        pts = [self.roi.mapToParent(h["item"].pos()) for h in self.roi.handles]
        return (pts[0].x(), pts[0].y()), (pts[1].x(), pts[1].y())

    def set_endpoints_mm(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        """Move both ends (used while the line is being drawn)."""
        handles = self.roi.getHandles()
        self.roi.movePoint(handles[0], QtCore.QPointF(*p0), finish=False, coords="parent")
        self.roi.movePoint(handles[1], QtCore.QPointF(*p1), finish=True, coords="parent")
        self._update()

    @property
    def length_mm(self) -> float:
        """Length in mm (computed from pixel positions and spacing)."""
        (x0, y0), (x1, y1) = self.endpoints_mm()
        g = self.geometry
        return line_length_mm(g.mm_to_pixel(x0, y0), g.mm_to_pixel(x1, y1), g.row_spacing, g.col_spacing)

    def value_text(self) -> str:
        return f"{self.length_mm:.1f} mm" + ("" if self.calibrated else " (uncalibrated)")

    def _update(self) -> None:
        (x0, y0), (x1, y1) = self.endpoints_mm()
        self.label.setText(self.value_text())
        self.label.setPos(max(x0, x1) + 1.0, (y0 + y1) / 2.0)


class _BoxEllipseROI(pg.EllipseROI):
    """Axis-aligned ellipse (no rotate handle), resizable by its corners."""

    def _addHandles(self) -> None:  # noqa: N802 - pyqtgraph's name
        self.addScaleHandle([1.0, 1.0], [0.0, 0.0])
        self.addScaleHandle([0.0, 0.0], [1.0, 1.0])


class EllipseMeasurement(Measurement):
    """An elliptical region: mean, SD, min, max (HU) and area (mm²).

    Parameters
    ----------
    geometry, slice_index, volume
        Where it was drawn.
    p0, p1 : (x_mm, y_mm)
        Opposite corners of the bounding box in scene mm.
    """

    kind = "ellipse"

    def __init__(
        self,
        geometry: PlaneGeometry,
        slice_index: int,
        volume: Volume,
        p0: tuple[float, float],
        p1: tuple[float, float],
    ) -> None:
        super().__init__(geometry, slice_index, volume)
        x0, x1 = sorted((p0[0], p1[0]))
        y0, y1 = sorted((p0[1], p1[1]))
        self.roi = _BoxEllipseROI((x0, y0), (max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)), pen=_PEN, hoverPen=_HOVER_PEN)
        self.roi.setZValue(25)
        self.roi.sigRegionChanged.connect(self._on_roi_changed)
        self.stats: RoiStatistics
        self._update()

    def set_corners_mm(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        """Set the bounding box from two opposite corners (used while drawing)."""
        x0, x1 = sorted((p0[0], p1[0]))
        y0, y1 = sorted((p0[1], p1[1]))
        self.roi.setPos((x0, y0), update=False, finish=False)
        self.roi.setSize((max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)), update=True, finish=True)

    def bounds_px(self) -> tuple[float, float, float, float]:
        """Bounding box ``(row0, col0, row1, col1)`` in pixel-edge coordinates."""
        pos = self.roi.pos()
        size = self.roi.size()
        g = self.geometry
        return (
            pos.y() / g.row_spacing,
            pos.x() / g.col_spacing,
            (pos.y() + size.y()) / g.row_spacing,
            (pos.x() + size.x()) / g.col_spacing,
        )

    def _image(self) -> np.ndarray:
        img = extract_slice(self.volume.voxels, self.geometry, self.slice_index)
        return luminance(img) if img.ndim == 3 else img

    def _update(self) -> None:
        g = self.geometry
        self.stats = ellipse_statistics(self._image(), self.bounds_px(), g.row_spacing, g.col_spacing)
        self.label.setText(self.value_text().replace(", area", "\narea"))
        pos, size = self.roi.pos(), self.roi.size()
        self.label.setPos(pos.x() + size.x() + 1.0, pos.y())

    def value_text(self) -> str:
        units = "" if self.volume.is_rgb else (self.volume.metadata.units or "")
        return self.stats.describe(units) + ("" if self.calibrated else " (uncalibrated)")


def make_measurement(
    tool: str,
    view: "SliceView",
    p0: tuple[float, float],
    p1: tuple[float, float],
) -> Measurement:
    """Create a ruler or ellipse on ``view``'s current slice between two scene points."""
    if view.volume is None or view.geometry is None:
        raise ValueError("no image shown")
    if tool == "ruler":
        return RulerMeasurement(view.geometry, view.slice_index, view.volume, p0, p1)
    if tool == "ellipse":
        return EllipseMeasurement(view.geometry, view.slice_index, view.volume, p0, p1)
    raise ValueError(f"{tool!r} is not a measurement tool")


__all__ = ["TOOLS", "Measurement", "RulerMeasurement", "EllipseMeasurement", "make_measurement"]
