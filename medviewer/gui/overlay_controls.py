"""Controls of the confidence heat-map overlay: on/off (key H), opacity, colour map, colour bar.

The heat map itself is drawn by every :class:`~medviewer.gui.slice_view.SliceView`
(``set_overlay`` / ``set_overlay_style`` / ``set_overlay_visible`` on the
:class:`~medviewer.gui.mpr.ViewerWidget`); this widget only holds the user's
choices and shows the colour scale the views use.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from medviewer.viewing import colormap_rgb

COLORMAPS = ("jet", "hot", "inferno", "viridis")
DEFAULT_COLORMAP = "jet"
DEFAULT_OPACITY = 0.4
DEFAULT_FLOOR = 0.1
"""Confidence below which the heat map is transparent (keeps the image readable)."""


class ColourBarWidget(QtWidgets.QWidget):
    """A horizontal colour bar for a ``[0, 1]`` confidence map with its scale.

    Values below ``floor`` are drawn as a checkerboard (transparent in the views).
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._colormap = DEFAULT_COLORMAP
        self._opacity = DEFAULT_OPACITY
        self._floor = DEFAULT_FLOOR
        self._image: QtGui.QImage | None = None
        self.setMinimumSize(160, 38)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setToolTip("confidence scale of the heat map (0 – 100 %)")
        self._rebuild()

    def set_style(self, colormap: str, opacity: float, floor: float) -> None:
        self._colormap, self._opacity, self._floor = str(colormap), float(opacity), float(floor)
        self._rebuild()
        self.update()

    def _rebuild(self) -> None:
        rgb = colormap_rgb(self._colormap, 256)
        rgba = np.empty((1, 256, 4), np.uint8)
        rgba[0, :, :3] = rgb
        rgba[0, :, 3] = 255
        self._rgba = np.ascontiguousarray(rgba)
        self._image = QtGui.QImage(self._rgba.data, 256, 1, 256 * 4, QtGui.QImage.Format.Format_RGBA8888).copy()

    def ticks(self) -> list[tuple[float, str]]:
        """Tick positions (0-1) and labels of the scale."""
        return [(v, f"{v * 100:.0f}%") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]

    def colour_at(self, value: float) -> tuple[int, int, int]:
        """Colour the bar (and the views) use for ``value``."""
        i = int(round(min(max(float(value), 0.0), 1.0) * 255))
        r, g, b = (int(x) for x in self._rgba[0, i, :3])
        return r, g, b

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt name
        p = QtGui.QPainter(self)
        fm = p.fontMetrics()
        m = 4
        bar = QtCore.QRect(m, 2, self.width() - 2 * m, max(8, self.height() - fm.height() - 6))
        # checkerboard: what "transparent" looks like
        sq = 6
        for yy in range(bar.top(), bar.bottom() + 1, sq):
            for xx in range(bar.left(), bar.right() + 1, sq):
                dark = ((xx - bar.left()) // sq + (yy - bar.top()) // sq) % 2
                p.fillRect(QtCore.QRect(xx, yy, sq, sq).intersected(bar), QtGui.QColor(90, 90, 90) if dark else QtGui.QColor(150, 150, 150))
        if self._image is not None:
            x_floor = bar.left() + int(round(self._floor * bar.width()))
            visible = QtCore.QRect(x_floor, bar.top(), bar.right() - x_floor + 1, bar.height())
            p.setOpacity(max(self._opacity, 0.15))
            src = QtCore.QRectF(self._floor * 256.0, 0.0, 256.0 * (1.0 - self._floor), 1.0)
            p.drawImage(QtCore.QRectF(visible), self._image, src)
            p.setOpacity(1.0)
        p.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        p.drawRect(bar.adjusted(0, 0, -1, -1))
        y_text = bar.bottom() + 2 + fm.ascent()
        for v, label in self.ticks():
            x = bar.left() + int(round(v * (bar.width() - 1)))
            p.drawLine(x, bar.bottom() - 3, x, bar.bottom())
            w = fm.horizontalAdvance(label)
            xt = min(max(x - w // 2, 0), self.width() - w)
            p.drawText(xt, y_text, label)
        p.end()


class OverlayControlsWidget(QtWidgets.QWidget):
    """Heat-map on/off, opacity slider, colour map and its colour bar.

    Signals
    -------
    visibility_changed(bool)
    style_changed(str, float, float)
        Colour map, opacity (0-1) and floor (0-1: values below are transparent).
    """

    visibility_changed = QtCore.Signal(bool)
    style_changed = QtCore.Signal(str, float, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.show_check = QtWidgets.QCheckBox("Heat map (H)", self)
        self.show_check.setChecked(True)
        self.show_check.toggled.connect(self.visibility_changed)
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(round(DEFAULT_OPACITY * 100)))
        self.opacity_slider.setToolTip("heat-map opacity")
        self.opacity_slider.valueChanged.connect(lambda _v: self._emit_style())
        self.opacity_label = QtWidgets.QLabel("", self)
        self.opacity_label.setMinimumWidth(36)
        self.colormap_combo = QtWidgets.QComboBox(self)
        self.colormap_combo.addItems(list(COLORMAPS))
        self.colormap_combo.setCurrentText(DEFAULT_COLORMAP)
        self.colormap_combo.currentTextChanged.connect(lambda _t: self._emit_style())
        self.floor_spin = QtWidgets.QDoubleSpinBox(self)
        self.floor_spin.setRange(0.0, 0.99)
        self.floor_spin.setSingleStep(0.05)
        self.floor_spin.setDecimals(2)
        self.floor_spin.setValue(DEFAULT_FLOOR)
        self.floor_spin.setToolTip("confidence below this is not coloured")
        self.floor_spin.valueChanged.connect(lambda _v: self._emit_style())
        self.colour_bar = ColourBarWidget(self)
        for w in (self.show_check, self.opacity_slider, self.colormap_combo, self.floor_spin):
            w.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)

        row1 = QtWidgets.QHBoxLayout()
        row1.addWidget(self.show_check)
        row1.addWidget(self.colormap_combo)
        row1.addWidget(QtWidgets.QLabel("from", self))
        row1.addWidget(self.floor_spin)
        row1.addStretch(1)
        row2 = QtWidgets.QHBoxLayout()
        row2.addWidget(QtWidgets.QLabel("Opacity", self))
        row2.addWidget(self.opacity_slider, 1)
        row2.addWidget(self.opacity_label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(QtWidgets.QLabel("Lesion confidence", self))
        layout.addWidget(self.colour_bar)
        self._sync_labels()

    @property
    def visible(self) -> bool:
        return self.show_check.isChecked()

    def set_visible(self, on: bool) -> None:
        self.show_check.setChecked(bool(on))

    def toggle(self) -> None:
        """Key H."""
        self.show_check.toggle()

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def set_opacity(self, value: float) -> None:
        self.opacity_slider.setValue(int(round(min(max(float(value), 0.0), 1.0) * 100)))

    @property
    def colormap(self) -> str:
        return self.colormap_combo.currentText()

    @property
    def floor(self) -> float:
        return float(self.floor_spin.value())

    def overlay_style(self) -> tuple[str, float, float]:
        """``(colormap, opacity, floor)`` for ``ViewerWidget.set_overlay_style``."""
        return self.colormap, self.opacity, self.floor

    def _sync_labels(self) -> None:
        self.opacity_label.setText(f"{self.opacity_slider.value()} %")
        self.colour_bar.set_style(*self.overlay_style())

    def _emit_style(self) -> None:
        self._sync_labels()
        self.style_changed.emit(*self.overlay_style())


__all__ = ["OverlayControlsWidget", "ColourBarWidget", "COLORMAPS", "DEFAULT_COLORMAP", "DEFAULT_OPACITY", "DEFAULT_FLOOR"]
