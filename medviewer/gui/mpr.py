"""The viewer area: 1x1 or 1x3 (axial / coronal / sagittal MPR) slice views.

:class:`ViewerWidget` owns the shared display state — window/level, invert,
linked crosshair, left-button tool, cine, overlays, markers and measurements —
and fans it out to its :class:`~medviewer.gui.slice_view.SliceView` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from numpy.typing import NDArray
from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.gui.slice_view import SliceView
from medviewer.gui.tools import Measurement
from medviewer.viewing import PLANES, PRESET_KEYS, PRESETS, Marker, adjust_window
from medviewer.volume import Volume, WindowPreset

LAYOUTS = ("1x1", "1x3")


class ViewerWidget(QtWidgets.QWidget):
    """Slice views in a 1x1 or 1x3 layout with linked state.

    Signals
    -------
    volume_changed(object)
        The shown :class:`Volume` (or None).
    slice_changed(str, int)
        Plane and slice index (0-based) after any scroll.
    window_changed(float, float)
        New level (center) and width.
    invert_changed(bool)
    layout_changed(str)
        ``"1x1"`` or ``"1x3"``.
    cursor_info(object)
        ``(plane, (k, j, i), value)`` under the mouse, or None.
    crosshair_changed(object)
        The crosshair's ``(k, j, i)``.
    measurements_changed()
        A measurement was added, removed or edited.
    cine_changed(bool)
        Cine started (True) or stopped.

    Issue-7 hooks
    -------------
    :meth:`set_overlay`, :meth:`set_overlay_style`, :meth:`set_overlay_visible`
    and :meth:`set_markers` apply to every view (axial and MPR); :meth:`go_to`
    shows and centres a ``(k, j, i)`` position (for a findings panel);
    :meth:`replace_voxels` swaps the displayed pixels of the same geometry
    (original / denoised toggle) keeping slice, zoom, overlay and markers.
    """

    volume_changed = QtCore.Signal(object)
    slice_changed = QtCore.Signal(str, int)
    window_changed = QtCore.Signal(float, float)
    invert_changed = QtCore.Signal(bool)
    layout_changed = QtCore.Signal(str)
    cursor_info = QtCore.Signal(object)
    crosshair_changed = QtCore.Signal(object)
    measurements_changed = QtCore.Signal()
    cine_changed = QtCore.Signal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        # grey dividers between views; a palette, not a style sheet (a style sheet would cascade
        # into the views and put every repaint on Qt's slow style-sheet path)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor(70, 70, 70))  # viewport dividers
        self.setPalette(palette)
        self.setAutoFillBackground(True)
        self.volume: Volume | None = None
        self.views: dict[str, SliceView] = {p: SliceView(p, self) for p in PLANES}
        self.layout_name = "1x1"
        self.primary_plane = "axial"
        self.active_plane = "axial"
        self.window_center = 40.0
        self.window_width = 400.0
        self.invert = False
        self.crosshair_index: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.tool = "window"
        self.cine_fps = 10.0
        self._measurements: list[Measurement] = []
        self._cine = QtCore.QTimer(self)
        self._cine.timeout.connect(self._cine_step)

        grid = QtWidgets.QHBoxLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        for plane, view in self.views.items():
            grid.addWidget(view, 1)
            view.slice_changed.connect(self._on_view_slice)
            view.window_drag.connect(self._on_window_drag)
            view.crosshair_requested.connect(self.set_crosshair)
            view.cursor_moved.connect(self.cursor_info)
            view.measurement_added.connect(self._on_measurement_added)
            view.installEventFilter(self)
        self._apply_layout()

    # ------------------------------------------------------------------ volume
    def set_volume(self, volume: Volume | None) -> None:
        """Show ``volume``: middle slice, the file's window and invert, zoom to fit."""
        self.stop_cine()
        self._measurements.clear()
        self.volume = volume
        if volume is None:
            for view in self.views.values():
                view.set_volume(None)
            self.volume_changed.emit(None)
            self.measurements_changed.emit()
            return
        nz, ny, nx = volume.shape
        self.crosshair_index = (float(nz // 2), float(ny // 2), float(nx // 2))
        w = volume.default_window
        self.window_center, self.window_width = float(w.center), float(w.width)
        self.invert = bool(volume.metadata.invert_display)
        for plane, view in self.views.items():
            view.set_window(self.window_center, self.window_width)
            view.set_invert(self.invert)
            view.set_tool(self.tool)
            view.set_volume(volume, int(self.crosshair_index[PLANES.index(plane)]))
        if not self.mpr_available and self.layout_name != "1x1":
            self.layout_name = "1x1"
            self.layout_changed.emit("1x1")
        self._apply_layout()
        self._sync_crosshair()
        self.volume_changed.emit(volume)
        self.window_changed.emit(self.window_center, self.window_width)
        self.invert_changed.emit(self.invert)
        self.measurements_changed.emit()

    def replace_voxels(self, voxels: NDArray[Any], derived_from: str = "") -> None:
        """Swap the shown pixels for others with the same geometry (e.g. denoised).

        Keeps slice, zoom, window, overlay and markers; measurements are kept and
        recomputed on the new pixels.
        """
        if self.volume is None:
            raise ValueError("no volume shown")
        new = self.volume.with_voxels(voxels, derived_from=derived_from)
        self.volume = new
        for view in self.views.values():
            overlay, style, visible = view._overlay, view._overlay_style, view._overlay_visible
            markers = view.markers
            s = view.slice_index
            rect = view.view_box.viewRect()
            measures = view.measurements
            view.set_volume(new, s)
            view.view_box.setRange(rect, padding=0.0)
            if overlay is not None:
                view.set_overlay(overlay, *style)
                view.set_overlay_visible(visible)
            view.set_markers(markers)
            for m in measures:
                m.volume = new
                m._update()
                view.add_measurement(m)
        self._sync_crosshair()
        self.measurements_changed.emit()

    @property
    def mpr_available(self) -> bool:
        """True when the volume has enough slices for coronal/sagittal reformats."""
        return self.volume is not None and self.volume.n_slices >= 2

    @property
    def active_view(self) -> SliceView:
        """The view keyboard scrolling and cine act on."""
        if self.layout_name == "1x1":
            return self.views[self.primary_plane]
        return self.views[self.active_plane]

    # ------------------------------------------------------------------ layout
    def set_layout(self, name: str) -> bool:
        """``"1x1"`` (one plane) or ``"1x3"`` (axial, coronal, sagittal).

        Returns False (and keeps 1x1) when the volume is a single image.
        """
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; expected one of {', '.join(LAYOUTS)}")
        if name == "1x3" and self.volume is not None and not self.mpr_available:
            return False
        changed = name != self.layout_name
        self.layout_name = name
        self._apply_layout()
        if changed:
            self.layout_changed.emit(name)
        return True

    def set_primary_plane(self, plane: str) -> None:
        """The plane the 1x1 layout shows."""
        if plane not in PLANES:
            raise ValueError(f"unknown plane {plane!r}")
        if plane != "axial" and self.volume is not None and not self.mpr_available:
            return
        self.primary_plane = plane
        self.active_plane = plane
        self._apply_layout()

    def _apply_layout(self) -> None:
        for plane, view in self.views.items():
            visible = self.layout_name == "1x3" or plane == self.primary_plane
            view.setVisible(visible)
            view.set_crosshair_visible(self.layout_name == "1x3")
        QtCore.QTimer.singleShot(0, self._refit_views)

    def _refit_views(self) -> None:
        for view in self.views.values():
            if view.isVisible() and view.volume is not None:
                view.reset_view()

    def visible_views(self) -> list[SliceView]:
        return [v for v in self.views.values() if not v.isHidden()]

    # ------------------------------------------------------------------ window / level
    def set_window(self, center: float, width: float) -> None:
        """Window level ``center`` and ``width`` for every view."""
        self.window_center, self.window_width = float(center), max(float(width), 1.0)
        for view in self.views.values():
            view.set_window(self.window_center, self.window_width)
        self.window_changed.emit(self.window_center, self.window_width)

    def apply_preset(self, preset: str | int | WindowPreset) -> WindowPreset:
        """Apply a preset by name (``"lung"``), key number (1-5, 0 = the file's) or object."""
        if isinstance(preset, WindowPreset):
            p = preset
        elif isinstance(preset, int) or (isinstance(preset, str) and preset.isdigit()):
            n = int(preset)
            if n == 0:
                return self.reset_window()
            if not 1 <= n <= len(PRESET_KEYS):
                raise ValueError(f"no preset {n}; keys are 0-{len(PRESET_KEYS)}")
            p = PRESETS[PRESET_KEYS[n - 1]]
        else:
            key = str(preset).lower().replace("_", " ").replace("-", " ")
            if key in ("file", "default", "0"):
                return self.reset_window()
            if key not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
            p = PRESETS[key]
        self.set_window(p.center, p.width)
        return p

    def reset_window(self) -> WindowPreset:
        """The file's own window (its first WindowCenter/Width, else from the values)."""
        if self.volume is None:
            return WindowPreset(self.window_center, self.window_width)
        w = self.volume.default_window
        self.set_window(w.center, w.width)
        return w

    def _on_window_drag(self, dx: float, dy: float) -> None:
        if self.volume is None or self.volume.is_rgb:
            return
        c, w = adjust_window(self.window_center, self.window_width, dx, dy)
        self.set_window(c, w)

    def set_invert(self, invert: bool) -> None:
        self.invert = bool(invert)
        for view in self.views.values():
            view.set_invert(self.invert)
        self.invert_changed.emit(self.invert)

    def toggle_invert(self) -> None:
        self.set_invert(not self.invert)

    def reset(self) -> None:
        """Key R: zoom to fit, the file's window and invert, crosshair to the centre of the view."""
        if self.volume is None:
            return
        self.reset_window()
        self.set_invert(bool(self.volume.metadata.invert_display))
        for view in self.views.values():
            view.reset_view()

    # ------------------------------------------------------------------ slices & crosshair
    def scroll_slices(self, steps: int) -> None:
        """Scroll the active view by ``steps`` slices."""
        self.active_view.scroll_slices(steps)

    def set_slice(self, index: int, plane: str | None = None) -> None:
        """Show slice ``index`` (0-based) of ``plane`` (the active view's by default)."""
        view = self.views[plane] if plane else self.active_view
        view.set_slice(index)

    def current_slice(self, plane: str | None = None) -> int:
        view = self.views[plane] if plane else self.active_view
        return view.slice_index

    def _on_view_slice(self, plane: str, index: int) -> None:
        cursor = list(self.crosshair_index)
        cursor[PLANES.index(plane)] = float(index)
        self.crosshair_index = (cursor[0], cursor[1], cursor[2])
        for view in self.views.values():
            view.set_crosshair(self.crosshair_index)
        self.slice_changed.emit(plane, index)
        self.crosshair_changed.emit(self.crosshair_index)

    def set_crosshair(self, index: Sequence[float]) -> None:
        """Move the linked crosshair to ``(k, j, i)``; the other planes follow it."""
        if self.volume is None:
            return
        shape = self.volume.shape
        self.crosshair_index = tuple(float(min(max(float(v), 0.0), n - 1)) for v, n in zip(index, shape))  # type: ignore[assignment]
        for plane, view in self.views.items():
            s = int(round(self.crosshair_index[PLANES.index(plane)]))
            if s != view.slice_index:
                view.set_slice(s, emit=False)
                self.slice_changed.emit(plane, s)
        self._sync_crosshair()
        self.crosshair_changed.emit(self.crosshair_index)

    def _sync_crosshair(self) -> None:
        for view in self.views.values():
            view.set_crosshair(self.crosshair_index)

    def go_to(self, index: Sequence[float], centre: bool = True) -> None:
        """Show position ``(k, j, i)`` in every plane (and centre the views on it)."""
        self.set_crosshair(index)
        if centre:
            for view in self.views.values():
                view.center_on(self.crosshair_index)

    # ------------------------------------------------------------------ tools & cine
    def set_tool(self, tool: str) -> None:
        """Left-button tool for every view (``window``, ``ruler``, ``ellipse``, ``crosshair``)."""
        for view in self.views.values():
            view.set_tool(tool)
        self.tool = tool

    def start_cine(self, fps: float | None = None) -> None:
        """Play the active view's slices at ``fps`` frames per second (wrapping)."""
        if fps is not None:
            self.set_cine_fps(fps)
        if self.volume is None or self.active_view.geometry is None or self.active_view.geometry.n_slices < 2:
            return
        self._cine.start(int(round(1000.0 / self.cine_fps)))
        self.cine_changed.emit(True)

    def stop_cine(self) -> None:
        if self._cine.isActive():
            self._cine.stop()
            self.cine_changed.emit(False)

    def toggle_cine(self) -> None:
        if self._cine.isActive():
            self.stop_cine()
        else:
            self.start_cine()

    @property
    def cine_playing(self) -> bool:
        return self._cine.isActive()

    def set_cine_fps(self, fps: float) -> None:
        self.cine_fps = float(min(max(fps, 1.0), 60.0))
        if self._cine.isActive():
            self._cine.setInterval(int(round(1000.0 / self.cine_fps)))

    def _cine_step(self) -> None:
        view = self.active_view
        if view.geometry is None:
            self.stop_cine()
            return
        view.set_slice((view.slice_index + 1) % view.geometry.n_slices)

    # ------------------------------------------------------------------ overlays (issue 7)
    def set_overlay(
        self, volume_like: NDArray[Any] | None, colormap: str = "jet", opacity: float = 0.4, threshold: float = 0.0
    ) -> None:
        """Heat map on every view; see :meth:`SliceView.set_overlay`."""
        for view in self.views.values():
            view.set_overlay(volume_like, colormap, opacity, threshold)

    def set_overlay_style(self, colormap: str, opacity: float, threshold: float) -> None:
        for view in self.views.values():
            view.set_overlay_style(colormap, opacity, threshold)

    def set_overlay_visible(self, visible: bool) -> None:
        for view in self.views.values():
            view.set_overlay_visible(visible)

    def set_markers(self, markers: Iterable[Marker | Sequence[Any]] | None) -> None:
        """Finding outlines on every view; see :meth:`SliceView.set_markers`."""
        items = list(markers or [])
        for view in self.views.values():
            view.set_markers(items)

    # ------------------------------------------------------------------ measurements
    @property
    def measurements(self) -> list[Measurement]:
        return list(self._measurements)

    def _on_measurement_added(self, m: Measurement) -> None:
        self._measurements.append(m)
        m.changed.connect(lambda *_: self.measurements_changed.emit())
        self.measurements_changed.emit()

    def remove_measurement(self, m: Measurement) -> None:
        """Delete one measurement from its view and the list."""
        if m in self._measurements:
            self._measurements.remove(m)
        self.views[m.plane].remove_measurement(m)
        self.measurements_changed.emit()

    def clear_measurements(self) -> None:
        for m in list(self._measurements):
            self.remove_measurement(m)

    # ------------------------------------------------------------------ events
    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802 - Qt name
        if ev.type() in (QtCore.QEvent.Type.FocusIn, QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.Wheel):
            for plane, view in self.views.items():
                if view is obj:
                    self.active_plane = plane
        return False

    def window_text(self) -> str:
        return f"W {self.window_width:.0f} / L {self.window_center:.0f}"


__all__ = ["LAYOUTS", "ViewerWidget"]
