"""One slice view: image, AI overlay, markers, crosshair, measurements, corner text.

The view draws; the numbers come from :mod:`medviewer.viewing`. The scene is in
millimetres (pixel ``(r, c)`` has its centre at ``((c + .5) * col_spacing,
(r + .5) * row_spacing)``), so the aspect ratio is right for any spacing and
scene distances are millimetres.

Rendering follows pyqtgraph's fast path: C-contiguous float32 slices with
explicit levels and a 256-entry uint8 LUT (never ``autoLevels``); a window
change only calls ``setLevels``.

Mouse (common viewer conventions): wheel scrolls slices, Ctrl+wheel zooms,
left-drag changes window/level (or draws with the active tool), right-drag
zooms, middle-drag pans, Shift+left click (or the crosshair tool) places the
linked crosshair. Keys: arrows, PageUp/PageDown, Home/End scroll.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from numpy.typing import NDArray
from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.gui.tools import TOOLS, Measurement, make_measurement
from medviewer.viewing import (
    Marker,
    edge_letters_for,
    has_patient_geometry,
    PlaneGeometry,
    extract_slice,
    marker_cross_section,
    overlay_lut,
    plane_geometry,
    window_levels,
)
from medviewer.volume import Volume

_CROSS_COLOURS = {"axial": "#ff5050", "coronal": "#50ff50", "sagittal": "#5090ff"}


def _format_date(value: str) -> str:
    try:
        return _dt.datetime.strptime(value[:8], "%Y%m%d").strftime("%Y-%m-%d")
    except ValueError:
        return value


class _SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse handling follows reading-workstation conventions."""

    def __init__(self, owner: "SliceView") -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False, defaultPadding=0.0)
        self._owner = owner
        self._wheel_accum = 0.0

    def wheelEvent(self, ev: Any, axis: Any = None) -> None:  # noqa: N802 - Qt name
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            factor = 1.25 ** (ev.delta() / 120.0)
            self._owner.zoom_by(factor, self.mapToView(ev.pos()))
        else:
            # one slice per notch (120); high-resolution wheels accumulate smaller deltas
            self._wheel_accum += float(ev.delta())
            notches = int(self._wheel_accum / 120.0)
            if notches:
                self._wheel_accum -= notches * 120.0
                self._owner.scroll_slices(-notches)
        ev.accept()

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:  # noqa: N802
        button = ev.button()
        if button == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self._owner._left_drag(ev)
        elif button == QtCore.Qt.MouseButton.RightButton:
            ev.accept()  # drag up = zoom in, around the point where the drag started
            dy = float((ev.screenPos() - ev.lastScreenPos()).y())
            center = self.mapToView(ev.buttonDownPos(QtCore.Qt.MouseButton.RightButton))
            self._owner.zoom_by(1.01 ** (-dy), center)
        elif button == QtCore.Qt.MouseButton.MiddleButton:
            ev.accept()
            delta = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self._owner.pan_by(float(delta.x()), float(delta.y()))
        else:
            ev.ignore()

    def mouseClickEvent(self, ev: Any) -> None:  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self._owner._left_click(ev)
        else:
            ev.accept()


class SliceView(pg.GraphicsView):
    """A reading-workstation viewport for one plane of a :class:`Volume`.

    Parameters
    ----------
    plane : {"axial", "coronal", "sagittal"}
    parent : QWidget, optional

    Signals
    -------
    slice_changed(str, int)
        Plane and new slice index (0-based).
    window_drag(float, float)
        The user dragged window/level by ``(dx, dy)`` screen pixels.
    crosshair_requested(object)
        ``(k, j, i)`` volume index the user clicked to place the crosshair.
    cursor_moved(object)
        ``(plane, (k, j, i), value)`` under the mouse, or None when outside the image.
    measurement_added(object)
        A finished :class:`~medviewer.gui.tools.Measurement`.
    view_changed()
        Zoom or pan changed.

    Overlay API (issue 7)
    ---------------------
    :meth:`set_overlay` shows a ``[0, 1]`` heat map (any ``(z, y, x)`` array with
    the volume's shape) resliced like the image, as a second ImageItem with a
    colour LUT with alpha; :meth:`set_overlay_style` changes colour map,
    opacity and threshold without copying; :meth:`set_overlay_visible` toggles it.
    :meth:`set_markers` draws findings as outlines (circles, cross-sections of
    spheres) with a label on the slices they cover.
    """

    slice_changed = QtCore.Signal(str, int)
    window_drag = QtCore.Signal(float, float)
    crosshair_requested = QtCore.Signal(object)
    cursor_moved = QtCore.Signal(object)
    measurement_added = QtCore.Signal(object)
    view_changed = QtCore.Signal()

    def __init__(self, plane: str = "axial", parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent=parent, background="k")
        self.plane = plane
        self.volume: Volume | None = None
        self.geometry: PlaneGeometry | None = None
        self.slice_index = 0
        self.window_center = 40.0
        self.window_width = 400.0
        self.invert = False
        self.tool = "window"
        self.crosshair: tuple[float, float, float] | None = None
        self.crosshair_visible = True
        self._current: NDArray[Any] | None = None
        self._overlay: NDArray[Any] | None = None
        self._overlay_visible = True
        self._overlay_style = ("jet", 0.4, 0.0)
        self._overlay_region: tuple[int, int, int, int] | None = None
        self._markers: list[Marker] = []
        self._marker_items: list[tuple[QtWidgets.QGraphicsEllipseItem, pg.TextItem]] = []
        self._measurements: list[Measurement] = []
        self._shown_measurements: list[Measurement] = []
        self._marker_state: list[Any] = []
        self._drawing: Measurement | None = None
        self._info_lines: dict[str, list[str]] = {}
        self._geometric = True

        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(120, 120)
        self.view_box = _SliceViewBox(self)
        self.setCentralItem(self.view_box)
        # no LUT on the grey image: float32 + explicit levels renders as Format_Grayscale8,
        # which Qt scales ~3x faster than the Indexed8 image a LUT produces; invert = swapped levels
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(10)
        self.overlay_item.setLookupTable(overlay_lut(*self._overlay_style))
        self.overlay_item.hide()
        self.view_box.addItem(self.overlay_item, ignoreBounds=True)  # its crop changes every slice
        colour = _CROSS_COLOURS.get(plane, "#ffffff")
        self._hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(colour, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self._vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(colour, width=1, style=QtCore.Qt.PenStyle.DashLine))
        for line in (self._hline, self._vline):
            line.setZValue(20)
            line.hide()
            self.view_box.addItem(line, ignoreBounds=True)

        # corner text and orientation letters are painted in drawForeground (one paint pass;
        # child QLabels would make every text change repaint the image underneath again)
        self._corners: dict[str, str] = {"tl": "", "tr": "", "bl": "", "br": ""}
        self._letters: dict[str, str] = {"left": "", "right": "", "top": "", "bottom": ""}
        self._text_font = QtGui.QFont("monospace")
        self._text_font.setStyleHint(QtGui.QFont.StyleHint.Monospace)
        self._text_font.setPixelSize(12)
        self._letter_font = QtGui.QFont()
        self._letter_font.setPixelSize(15)
        self._letter_font.setBold(True)
        self._text_colour = QtGui.QColor("#e8e8b0")
        self._letter_colour = QtGui.QColor("#ffb000")
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.view_box.sigRangeChanged.connect(lambda *_: self._view_changed())

    # ------------------------------------------------------------------ widgets
    def drawForeground(self, painter: QtGui.QPainter, rect: QtCore.QRectF) -> None:  # noqa: N802 - Qt name
        """Corner text and orientation letters, in viewport pixels, over the scene."""
        super().drawForeground(painter, rect)
        if self.volume is None:
            return
        painter.save()
        painter.resetTransform()
        vp = self.viewport().rect()
        w, m = vp.width(), 6
        area = QtCore.QRect(vp).adjusted(m, m, -m, -m)
        A = QtCore.Qt.AlignmentFlag
        painter.setFont(self._text_font)
        fm = painter.fontMetrics()
        # each corner gets half the width minus room for the centred orientation letter;
        # longer lines are elided ("…") instead of running into the letters or each other
        letter_room = QtGui.QFontMetrics(self._letter_font).horizontalAdvance("MM")
        max_w = max(0, w // 2 - letter_room // 2 - 2 * m)
        flags = {"tl": A.AlignLeft | A.AlignTop, "tr": A.AlignRight | A.AlignTop,
                 "bl": A.AlignLeft | A.AlignBottom, "br": A.AlignRight | A.AlignBottom}
        items = []
        if w >= 200:
            for k, f in flags.items():
                text = "\n".join(
                    fm.elidedText(line, QtCore.Qt.TextElideMode.ElideRight, max_w) for line in self._corners[k].split("\n")
                )
                items.append((text, f))
        self._draw_texts(painter, area, items, self._text_colour)
        painter.setFont(self._letter_font)
        lflags = {"left": A.AlignLeft | A.AlignVCenter, "right": A.AlignRight | A.AlignVCenter,
                  "top": A.AlignHCenter | A.AlignTop, "bottom": A.AlignHCenter | A.AlignBottom}
        self._draw_texts(painter, area, [(self._letters[k], lflags[k]) for k in lflags], self._letter_colour)
        painter.restore()

    @staticmethod
    def _draw_texts(painter: QtGui.QPainter, area: QtCore.QRect, items: list[tuple[str, Any]], colour: QtGui.QColor) -> None:
        shadow = QtGui.QColor(0, 0, 0)
        for text, flags in items:
            if not text:
                continue
            painter.setPen(shadow)
            painter.drawText(area.translated(1, 1), int(flags), text)
            painter.setPen(colour)
            painter.drawText(area, int(flags), text)

    # ------------------------------------------------------------------ public API
    def set_volume(self, volume: Volume | None, slice_index: int | None = None) -> None:
        """Show ``volume`` (None clears the view); resets zoom, overlay and markers."""
        for m in list(self._measurements):
            self.remove_measurement(m)
        self.volume = volume
        self._overlay = None
        self.overlay_item.hide()
        self._markers = []
        if volume is None:
            self.geometry = None
            self._current = None
            self.image_item.clear()
            self._update_markers()
            self._update_text()
            return
        self.geometry = plane_geometry(volume, self.plane)
        self._geometric = has_patient_geometry(volume)
        g = self.geometry
        w_mm, h_mm = g.size_mm
        # setImage before setRect so the rect maps the real image size
        self.slice_index = g.n_slices // 2 if slice_index is None else int(min(max(slice_index, 0), g.n_slices - 1))
        self._render_image()
        self.image_item.setRect(QtCore.QRectF(0.0, 0.0, w_mm, h_mm))
        self._update_markers()
        self._letters = edge_letters_for(volume, g)
        self.reset_view()

    def set_slice(self, index: int, emit: bool = True) -> None:
        """Show slice ``index`` (clipped); emits ``slice_changed`` when it changed."""
        if self.geometry is None:
            return
        index = int(min(max(int(index), 0), self.geometry.n_slices - 1))
        if index == self.slice_index and self._current is not None:
            return
        self.slice_index = index
        self._render_image()
        if emit:
            self.slice_changed.emit(self.plane, index)

    def scroll_slices(self, steps: int) -> None:
        """Move ``steps`` slices (positive = towards higher index)."""
        self.set_slice(self.slice_index + int(steps))

    def set_window(self, center: float, width: float) -> None:
        """Set the display window (level ``center``, ``width``) in modality units."""
        self.window_center, self.window_width = float(center), max(float(width), 1.0)
        if self.volume is not None and not self.volume.is_rgb:
            self.image_item.setLevels(self.display_levels())
        self._update_text()

    def display_levels(self) -> tuple[float, float]:
        """Levels given to the image item: ``(low, high)``, or ``(high, low)`` when inverted."""
        lo, hi = window_levels(self.window_center, self.window_width)
        return (hi, lo) if self.invert else (lo, hi)

    def set_invert(self, invert: bool) -> None:
        """Show high values dark (MONOCHROME1 style) when ``invert`` is True."""
        self.invert = bool(invert)
        if self.volume is not None and self.volume.is_rgb:
            self._render_image()  # RGB: the pixels are inverted
        elif self.volume is not None:
            self.image_item.setLevels(self.display_levels())
        self._update_text()

    def set_tool(self, tool: str) -> None:
        """Left-button tool: one of :data:`medviewer.gui.tools.TOOLS`."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; expected one of {', '.join(TOOLS)}")
        self.tool = tool
        cursor = QtCore.Qt.CursorShape.CrossCursor if tool != "window" else QtCore.Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(cursor)

    def set_crosshair(self, index: Sequence[float] | None) -> None:
        """Draw the linked crosshair through volume index ``(k, j, i)`` (None hides it)."""
        self.crosshair = None if index is None else (float(index[0]), float(index[1]), float(index[2]))
        self._update_crosshair()

    def set_crosshair_visible(self, visible: bool) -> None:
        self.crosshair_visible = bool(visible)
        self._update_crosshair()

    def reset_view(self) -> None:
        """Fit the whole image in the viewport (zoom to fit, centred)."""
        if self.geometry is None:
            return
        w_mm, h_mm = self.geometry.size_mm
        self.view_box.setRange(QtCore.QRectF(0.0, 0.0, w_mm, h_mm), padding=0.0)
        self._update_text()

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel (1.0 = one to one)."""
        if self.geometry is None:
            return 1.0
        px = self.view_box.viewPixelSize()[0]
        return float(self.geometry.col_spacing / px) if px > 0 else 1.0

    def zoom_by(self, factor: float, center: QtCore.QPointF | None = None) -> None:
        """Zoom in by ``factor`` (> 1 enlarges) around ``center`` (scene mm)."""
        if factor <= 0:
            return
        s = 1.0 / float(factor)
        self.view_box.scaleBy((s, s), center=center)
        self._view_changed()

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        """Move the image by ``(dx_mm, dy_mm)`` on screen."""
        self.view_box.translateBy(x=-dx_mm, y=-dy_mm)
        self._view_changed()

    def center_on(self, index: Sequence[float]) -> None:
        """Show the slice through ``(k, j, i)`` and centre the view on it (zoom kept)."""
        if self.geometry is None:
            return
        s, r, c = self.geometry.index_to_display(index)
        self.set_slice(int(round(s)))
        x, y = self.geometry.pixel_to_mm(r, c)
        rect = self.view_box.viewRect()
        self.view_box.setRange(
            QtCore.QRectF(x - rect.width() / 2, y - rect.height() / 2, rect.width(), rect.height()), padding=0.0
        )

    def displayed_image(self) -> NDArray[Any] | None:
        """The current slice's values as displayed (rows, cols[, 3]) — before windowing."""
        return self._current

    def value_at(self, row: int, col: int) -> float | tuple[int, ...] | None:
        """Modality value (or RGB) of display pixel ``(row, col)`` on the current slice."""
        img = self._current
        if img is None or not (0 <= row < img.shape[0] and 0 <= col < img.shape[1]):
            return None
        v = img[row, col]
        return tuple(int(x) for x in v) if np.ndim(v) else float(v)

    # -- overlay API (issue 7) ------------------------------------------------------
    def set_overlay(
        self,
        volume_like: NDArray[Any] | None,
        colormap: str = "jet",
        opacity: float = 0.4,
        threshold: float = 0.0,
    ) -> None:
        """Show a heat map over the image, resliced like it.

        Parameters
        ----------
        volume_like : ndarray or None
            ``(z, y, x)`` float32 values in ``[0, 1]`` (e.g. lesion confidence),
            the volume's shape; it is referenced, not copied. None removes it.
        colormap : str
            matplotlib colour-map name (``"jet"``, ``"hot"``, ``"inferno"`` ...).
        opacity : float
            Alpha of visible values, 0-1.
        threshold : float
            Values below it are transparent.

        Raises
        ------
        ValueError
            When the shape does not match the shown volume or the style is invalid.
        """
        if volume_like is not None:
            if self.volume is None:
                raise ValueError("set_overlay needs a volume to be shown first")
            arr = np.asarray(volume_like)
            if arr.shape != self.volume.shape:
                raise ValueError(f"overlay shape {arr.shape} does not match the volume {self.volume.shape}")
            if arr.dtype != np.float32:
                arr = arr.astype(np.float32)
            self._overlay = arr
        else:
            self._overlay = None
        self.set_overlay_style(colormap, opacity, threshold)
        self._render_overlay()

    def set_overlay_style(self, colormap: str, opacity: float, threshold: float) -> None:
        """Change the overlay's colour map, opacity and threshold (no data copy)."""
        lut = overlay_lut(colormap, opacity, threshold)
        old_threshold = self._overlay_style[2]
        self._overlay_style = (colormap, float(opacity), float(threshold))
        self.overlay_item.setLookupTable(lut)
        if float(threshold) != old_threshold and self._overlay is not None:
            self._render_overlay()

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the overlay without dropping it (key H in issue 7)."""
        self._overlay_visible = bool(visible)
        self._render_overlay()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay is not None and self._overlay_visible and self.overlay_item.isVisible()

    def set_markers(self, markers: Iterable[Marker | Sequence[Any]] | None) -> None:
        """Draw findings as outlines on the slices they cover.

        Parameters
        ----------
        markers : iterable
            :class:`medviewer.viewing.Marker` objects or tuples
            ``(id, (k, j, i), diameter_mm, label, colour)``; None or empty clears.
            Each is drawn as the circle where its sphere cuts the shown slice,
            with its label, and only on slices within its radius.
        """
        out: list[Marker] = []
        for m in markers or []:
            out.append(m if isinstance(m, Marker) else Marker(m[0], tuple(m[1]), float(m[2]), *m[3:]))
        self._markers = out
        self._update_markers()

    @property
    def markers(self) -> list[Marker]:
        return list(self._markers)

    def visible_markers(self) -> list[Any]:
        """Ids of the markers drawn on the current slice."""
        return [m.id for m, (item, _) in zip(self._markers, self._marker_items) if item.isVisible()]

    # -- measurements ---------------------------------------------------------------
    def add_measurement(self, m: Measurement) -> None:
        """Attach a measurement (made on this plane) to this view."""
        m.adopt_menus(self)
        self._measurements.append(m)
        for item in m.items():
            item.hide()
            self.view_box.addItem(item, ignoreBounds=True)
        self._update_measurement_visibility()

    def remove_measurement(self, m: Measurement) -> None:
        if m in self._shown_measurements:
            self._shown_measurements.remove(m)
        if m in self._measurements:
            self._measurements.remove(m)
            for item in m.items():
                self.view_box.removeItem(item)

    @property
    def measurements(self) -> list[Measurement]:
        return list(self._measurements)

    def measure(self, tool: str, p0: tuple[float, float], p1: tuple[float, float]) -> Measurement:
        """Create a ruler/ellipse between scene points (mm) on the current slice."""
        m = make_measurement(tool, self, p0, p1)
        self.add_measurement(m)
        self.measurement_added.emit(m)
        return m

    def set_info(self, lines: dict[str, list[str]]) -> None:
        """Patient/study lines for the top corners: keys ``"tl"`` and ``"tr"``."""
        self._info_lines = {k: list(v) for k, v in lines.items()}
        self._update_text()

    def corner_text(self) -> dict[str, str]:
        """The four corner texts (for tests and screenshots)."""
        return dict(self._corners)

    def edge_letters(self) -> dict[str, str]:
        return dict(self._letters)

    # ------------------------------------------------------------------ rendering
    def _render_image(self) -> None:
        if self.volume is None or self.geometry is None:
            return
        img = extract_slice(self.volume.voxels, self.geometry, self.slice_index)
        self._current = img
        if self.volume.is_rgb:
            shown = 255 - img if self.invert else img
            self.image_item.setImage(shown, autoLevels=False, levels=(0, 255))
        else:
            if img.dtype != np.float32:
                img = img.astype(np.float32)
            self.image_item.setImage(img, autoLevels=False, levels=self.display_levels())
        self._render_overlay()
        self._update_markers()
        self._update_measurement_visibility()
        self._update_crosshair()
        self._update_text()

    def _render_overlay(self) -> None:
        if self._overlay is None or not self._overlay_visible or self.geometry is None:
            self.overlay_item.hide()
            self._overlay_region = None
            return
        g = self.geometry
        ov = extract_slice(self._overlay, g, self.slice_index)
        # draw only the bounding box of the visible values: blending a full-size ARGB
        # image costs as much as the image itself, heat maps are mostly transparent
        visible = ov >= max(self._overlay_style[2], 1.0 / 255.0)
        rows = np.flatnonzero(visible.any(axis=1))
        if rows.size == 0:
            self.overlay_item.hide()
            self._overlay_region = None
            return
        cols = np.flatnonzero(visible[rows[0] : rows[-1] + 1].any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        self._overlay_region = (r0, c0, r1, c1)
        self.overlay_item.setImage(np.ascontiguousarray(ov[r0:r1, c0:c1]), autoLevels=False, levels=(0.0, 1.0))
        self.overlay_item.setRect(
            QtCore.QRectF(c0 * g.col_spacing, r0 * g.row_spacing, (c1 - c0) * g.col_spacing, (r1 - r0) * g.row_spacing)
        )
        self.overlay_item.show()

    def overlay_region(self) -> tuple[int, int, int, int] | None:
        """Displayed part of the overlay on this slice: ``(row0, col0, row1, col1)``, ends exclusive."""
        return self._overlay_region

    def _update_markers(self) -> None:
        while len(self._marker_items) < len(self._markers):
            ellipse = QtWidgets.QGraphicsEllipseItem()
            ellipse.setZValue(15)
            ellipse.setBrush(QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))  # outline only
            text = pg.TextItem("", anchor=(0, 1))
            text.setZValue(16)
            ellipse.hide()
            text.hide()
            self.view_box.addItem(ellipse, ignoreBounds=True)
            self.view_box.addItem(text, ignoreBounds=True)
            self._marker_items.append((ellipse, text))
            self._marker_state.append(None)
        for n, (ellipse, text) in enumerate(self._marker_items):
            cut = None
            m = self._markers[n] if n < len(self._markers) else None
            if m is not None and self.geometry is not None:
                cut = marker_cross_section(m, self.geometry, self.slice_index)
            state = None if cut is None or m is None else (cut, m.label or str(m.id), m.colour)
            if state == self._marker_state[n]:
                continue  # unchanged (most frames while scrolling): no item updates
            self._marker_state[n] = state
            if state is None or m is None:
                ellipse.hide()
                text.hide()
                continue
            (x, y, r), label, colour_spec = state
            if ellipse.data(0) != repr(colour_spec):  # pens and text only when they change
                colour = pg.mkColor(colour_spec)
                pen = pg.mkPen(colour, width=2)
                pen.setCosmetic(True)
                ellipse.setPen(pen)
                ellipse.setData(0, repr(colour_spec))
                text.setColor(colour)
            if text.toPlainText() != label:
                text.setText(label)
            ellipse.setRect(QtCore.QRectF(x - r, y - r, 2 * r, 2 * r))
            text.setPos(x + r * 0.75, y - r * 0.75)
            if not ellipse.isVisible():
                ellipse.show()
                text.show()

    def _update_measurement_visibility(self) -> None:
        now = [m for m in self._measurements if m.slice_index == self.slice_index]
        for m in self._shown_measurements:
            if m not in now:
                for item in m.items():
                    item.hide()
        for m in now:
            for item in m.items():
                if not item.isVisible():
                    item.show()
        self._shown_measurements = now

    def _update_crosshair(self) -> None:
        if self.crosshair is None or self.geometry is None or not self.crosshair_visible:
            self._hline.hide()
            self._vline.hide()
            return
        _, r, c = self.geometry.index_to_display(self.crosshair)
        x, y = self.geometry.pixel_to_mm(r, c)
        self._hline.setPos(y)
        self._vline.setPos(x)
        self._hline.show()
        self._vline.show()

    def _update_text(self) -> None:
        v, g = self.volume, self.geometry
        if v is None or g is None:
            self._corners = dict.fromkeys(self._corners, "")
            self._letters = dict.fromkeys(self._letters, "")
            self.viewport().update()
            return
        md = v.metadata
        tl = self._info_lines.get("tl") or [
            md.patient_name.replace("^", " ").strip() or "(no name)",
            f"ID {md.patient_id}" if md.patient_id else "",
            _format_date(md.study_date) if md.study_date else "",
        ]
        tr = self._info_lines.get("tr") or [
            " ".join(x for x in (md.modality, md.series_description) if x),
            f"Se {md.series_number}" if md.series_number is not None else "",
            (f"{self.plane.title()} " if self._geometric else "") + f"{g.n_cols}x{g.n_rows}"
            + (f"  ({md.derived_from})" if md.derived_from else ""),
        ]
        bl = [f"Im {self.slice_index + 1}/{g.n_slices}"]
        if self._geometric:  # without patient geometry a position would be invented
            if self.plane == "axial":
                pos = v.slice_position_mm(self.slice_index)
                thick = md.slice_thickness if md.slice_thickness else g.slice_spacing
            else:
                idx = g.display_to_index(self.slice_index, 0, 0)
                pos = float(np.dot(v.index_to_patient(idx), np.asarray(g.normal)))
                thick = g.slice_spacing
            bl += [f"Pos {pos:.1f} mm", f"Thk {thick:.2f} mm"]
        if v.is_rgb:
            wl = "RGB" + ("  INV" if self.invert else "")
        else:
            wl = f"W {self.window_width:.0f} L {self.window_center:.0f}" + ("  INV" if self.invert else "")
        br = [wl, f"Zoom {self.zoom:.2f}x"]
        corners = {name: "\n".join(x for x in lines if x) for name, lines in (("tl", tl), ("tr", tr), ("bl", bl), ("br", br))}
        if corners != self._corners:
            self._corners = corners
            self.viewport().update()

    def _view_changed(self) -> None:
        if self.volume is not None:
            zoom_line = f"Zoom {self.zoom:.2f}x"
            lines = self._corners["br"].split("\n")
            if len(lines) >= 2 and lines[1] != zoom_line:
                lines[1] = zoom_line
                self._corners["br"] = "\n".join(lines)
                self.viewport().update()
        self.view_changed.emit()

    # ------------------------------------------------------------------ mouse & keys
    def _scene_mm(self, ev_pos: QtCore.QPointF) -> tuple[float, float]:
        p = self.view_box.mapToView(ev_pos)
        return float(p.x()), float(p.y())

    def _index_at_mm(self, x: float, y: float) -> tuple[float, float, float] | None:
        if self.geometry is None:
            return None
        r, c = self.geometry.mm_to_pixel(x, y)
        r = float(min(max(round(r), 0), self.geometry.n_rows - 1))
        c = float(min(max(round(c), 0), self.geometry.n_cols - 1))
        return self.geometry.display_to_index(self.slice_index, r, c)

    def _left_click(self, ev: Any) -> None:
        self.setFocus()
        if self.geometry is None:
            return
        if self.tool == "crosshair" or ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier:
            idx = self._index_at_mm(*self._scene_mm(ev.pos()))
            if idx is not None:
                self.crosshair_requested.emit(idx)

    def _left_drag(self, ev: Any) -> None:
        if self.geometry is None:
            return
        shift = bool(ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        if self.tool == "crosshair" or shift:
            idx = self._index_at_mm(*self._scene_mm(ev.pos()))
            if idx is not None:
                self.crosshair_requested.emit(idx)
            return
        if self.tool in ("ruler", "ellipse"):
            start = self._scene_mm(ev.buttonDownPos(QtCore.Qt.MouseButton.LeftButton))
            end = self._scene_mm(ev.pos())
            if ev.isStart() or self._drawing is None:
                self._drawing = make_measurement(self.tool, self, start, end)
                self._drawing.adopt_menus(self)
                for item in self._drawing.items():
                    self.view_box.addItem(item, ignoreBounds=True)
            d = self._drawing
            if hasattr(d, "set_endpoints_mm"):
                d.set_endpoints_mm(start, end)  # type: ignore[attr-defined]
            else:
                d.set_corners_mm(start, end)  # type: ignore[attr-defined]
            if ev.isFinish():
                for item in d.items():
                    self.view_box.removeItem(item)
                self._drawing = None
                self.add_measurement(d)
                self.measurement_added.emit(d)
            return
        delta = ev.screenPos() - ev.lastScreenPos()
        self.window_drag.emit(float(delta.x()), float(delta.y()))

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self.geometry is None or self.volume is None:
            return
        p = self.view_box.mapSceneToView(scene_pos)
        r, c = self.geometry.mm_to_pixel(p.x(), p.y())
        ri, ci = int(round(r)), int(round(c))
        value = self.value_at(ri, ci)
        if value is None:
            self.cursor_moved.emit(None)
            return
        idx = self.geometry.display_to_index(self.slice_index, ri, ci)
        self.cursor_moved.emit((self.plane, tuple(int(round(x)) for x in idx), value))

    def keyPressEvent(self, ev: QtGui.QKeyEvent) -> None:  # noqa: N802 - Qt name
        if self.geometry is None:
            super().keyPressEvent(ev)
            return
        key = ev.key()
        page = max(1, self.geometry.n_slices // 10)
        K = QtCore.Qt.Key
        if key in (K.Key_Up, K.Key_Left):
            self.scroll_slices(-1)
        elif key in (K.Key_Down, K.Key_Right):
            self.scroll_slices(1)
        elif key == K.Key_PageUp:
            self.scroll_slices(-page)
        elif key == K.Key_PageDown:
            self.scroll_slices(page)
        elif key == K.Key_Home:
            self.set_slice(0)
        elif key == K.Key_End:
            self.set_slice(self.geometry.n_slices - 1)
        else:
            super().keyPressEvent(ev)
            return
        ev.accept()


__all__ = ["SliceView"]
