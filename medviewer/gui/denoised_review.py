"""Denoised review: toggle original / denoised (key D), a synced side view, the difference map.

The AI output never alters the source pixels: toggling swaps what the viewer
*displays* (:meth:`~medviewer.gui.mpr.ViewerWidget.replace_voxels`, same
geometry, slice, zoom, overlay and markers) between the source volume and the
denoised one. The side view (:class:`DenoisedReviewWidget`) shows, next to
the main view and synced with it (plane, slice, zoom/pan, window), either the
other version (original when the main view shows denoised and vice versa) or
the difference map ``denoised - original`` in HU with its own symmetric
window, so the reader sees what the network changed. The strength box puts back a share
of the removed noise (:mod:`medviewer.ai.denoise_strength`, as vendors' blend levels):
the controller computes that volume on a worker and hands it back with
:meth:`DenoisedReviewWidget.set_denoised`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from PySide6 import QtCore, QtWidgets

from medviewer.ai.denoise_strength import DERIVED_LABEL, STRENGTH_LEVELS, strength_label
from medviewer.gui.mpr import ViewerWidget
from medviewer.gui.slice_view import SliceView
from medviewer.viewing import PLANES, Marker
from medviewer.volume import Volume

DENOISED_LABEL = DERIVED_LABEL  # the derived volume's label (medviewer.ai.denoise_strength)
DIFFERENCE_LABEL = "denoised − original"
MODES = ("other", "difference")


def difference_volume(original: Volume, denoised: Volume) -> tuple[Volume, float]:
    """``denoised - original`` as a derived Volume, and a display window width for it.

    Run on a worker: it touches every voxel. The width is twice the 99.5th
    percentile of ``|difference|`` (at least 20 HU), centred on 0.

    Raises
    ------
    ValueError
        The two volumes differ in shape.
    """
    if original.shape != denoised.shape:
        raise ValueError(f"denoised volume {denoised.shape} does not match the original {original.shape}")
    diff = np.subtract(denoised.voxels, original.voxels, dtype=np.float32)
    sample = np.abs(diff[:: max(1, diff.shape[0] // 16)])
    width = max(20.0, 2.0 * float(np.percentile(sample, 99.5))) if sample.size else 20.0
    desc = (original.metadata.series_description or "").strip()
    vol = original.with_voxels(diff, derived_from=DIFFERENCE_LABEL, series_description=f"{desc} [{DIFFERENCE_LABEL}]".strip())
    return vol, width


class DenoisedReviewWidget(QtWidgets.QWidget):
    """Side view synced with a :class:`ViewerWidget` plus the original/denoised toggle.

    Parameters
    ----------
    viewer : ViewerWidget
        The main viewer to follow and whose pixels :meth:`toggle` swaps.

    Signals
    -------
    shown_changed(bool)
        True when the main viewer now shows the denoised pixels.
    strength_requested(float)
        The reader chose another strength (one of ``STRENGTH_LEVELS``); the
        controller answers with :meth:`set_denoised`.
    strength_applied(float)
        :meth:`set_denoised` installed the volume of that strength.
    """

    shown_changed = QtCore.Signal(bool)
    strength_requested = QtCore.Signal(float)
    strength_applied = QtCore.Signal(float)

    def __init__(self, viewer: ViewerWidget, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.original: Volume | None = None
        self.denoised: Volume | None = None
        self.difference: Volume | None = None
        self.difference_width = 100.0
        self.showing_denoised = False
        self.strength = 1.0
        self._syncing = False
        self._setting_strength = False
        self.mode_combo = QtWidgets.QComboBox(self)
        self.mode_combo.addItem("Other version (original ↔ denoised)", "other")
        self.mode_combo.addItem("Difference (denoised − original)", "difference")
        self.mode_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.mode_combo.currentIndexChanged.connect(lambda _i: self._refresh_side())
        self.toggle_button = QtWidgets.QPushButton("Show denoised (D)", self)
        self.toggle_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.toggle_button.clicked.connect(self.toggle)
        self.strength_combo = QtWidgets.QComboBox(self)
        for level in STRENGTH_LEVELS:
            self.strength_combo.addItem(f"{round(100 * level)} %", level)
        self.strength_combo.setToolTip(
            "Denoising strength: the share of the predicted noise removed; lower levels put back "
            "some of the original noise grain (display and export; detection used 100 %)"
        )
        self.strength_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.strength_combo.currentIndexChanged.connect(self._strength_chosen)
        self.caption = QtWidgets.QLabel("No denoised series — run Analyze with denoising on.", self)
        self.caption.setWordWrap(True)
        self.stack = QtWidgets.QStackedWidget(self)
        self.side_views: dict[str, SliceView] = {}
        for plane in PLANES:
            view = SliceView(plane, self.stack)
            view.slice_changed.connect(self._side_slice_changed)
            self.side_views[plane] = view
            self.stack.addWidget(view)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.toggle_button)
        top.addWidget(self.mode_combo, 1)
        top.addWidget(QtWidgets.QLabel("Strength", self))
        top.addWidget(self.strength_combo)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)
        self.setMinimumWidth(260)
        self._sync_button()

        viewer.slice_changed.connect(lambda *_: self.sync())
        viewer.crosshair_changed.connect(lambda *_: self.sync())
        viewer.layout_changed.connect(lambda *_: self.sync())
        viewer.window_changed.connect(lambda *_: self._sync_window())
        for view in viewer.views.values():
            view.view_changed.connect(self._sync_range)

    # ------------------------------------------------------------------ content
    @property
    def available(self) -> bool:
        return self.original is not None and self.denoised is not None

    @property
    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode_combo.setCurrentIndex(MODES.index(mode))

    def set_volumes(
        self,
        original: Volume | None,
        denoised: Volume | None,
        difference: Volume | None = None,
        difference_width: float = 100.0,
        strength: float = 1.0,
    ) -> None:
        """The shown series (``original``, displayed by the viewer) and its denoised version.

        ``difference`` (``denoised - original``) is computed on a worker by the
        caller (:func:`difference_volume`); None leaves the difference mode empty.
        ``strength`` is the level ``denoised`` was made at (shown in the box).
        """
        if denoised is not None and original is not None and denoised.shape != original.shape:
            raise ValueError(f"denoised volume {denoised.shape} does not match the original {original.shape}")
        self.original, self.denoised = original, denoised
        self.difference, self.difference_width = difference, float(difference_width)
        self.showing_denoised = False
        self._show_strength(strength)
        self._refresh_side()
        self._sync_button()

    def set_denoised(self, denoised: Volume, difference: Volume | None, difference_width: float, strength: float) -> None:
        """Replace the denoised version (another strength), keeping what the main view shows."""
        if self.original is None or denoised.shape != self.original.shape:
            raise ValueError("the denoised volume does not match the shown series")
        self.denoised = denoised
        self.difference, self.difference_width = difference, float(difference_width)
        self._show_strength(strength)
        if self.showing_denoised and self.viewer.volume is not None and self.viewer.volume.shape == denoised.shape:
            self.viewer.replace_voxels(denoised.voxels, derived_from=DENOISED_LABEL)
        self._refresh_side()
        self._sync_button()
        self.strength_applied.emit(self.strength)

    def request_strength(self, strength: float) -> None:
        """Choose a level as the reader would (emits :attr:`strength_requested`)."""
        self.strength_combo.setCurrentIndex(STRENGTH_LEVELS.index(float(strength)))

    def reset_strength_box(self) -> None:
        """Show the strength of the volume in use again (a requested level failed)."""
        self._show_strength(self.strength)

    def _show_strength(self, strength: float) -> None:
        self.strength = float(strength)
        self._setting_strength = True
        try:
            index = self.strength_combo.findData(self.strength)
            self.strength_combo.setCurrentIndex(index if index >= 0 else 0)
        finally:
            self._setting_strength = False

    def _strength_chosen(self, _index: int) -> None:
        level = float(self.strength_combo.currentData())
        if not self._setting_strength and self.available and level != self.strength:
            self.strength_requested.emit(level)

    def clear(self) -> None:
        """Forget the volumes (another series is shown); the viewer is not touched."""
        self.set_volumes(None, None)

    def set_markers(self, markers: list[Marker]) -> None:
        for view in self.side_views.values():
            view.set_markers(markers)

    # ------------------------------------------------------------------ toggle (key D)
    def toggle(self) -> bool:
        """Swap the viewer's pixels between original and denoised; False when unavailable."""
        return self.show_denoised(not self.showing_denoised)

    def show_denoised(self, on: bool) -> bool:
        """Show the denoised (True) or the original (False) pixels in the viewer."""
        if not self.available or self.viewer.volume is None:
            return False
        assert self.original is not None and self.denoised is not None
        if self.viewer.volume.shape != self.original.shape:
            return False
        on = bool(on)
        if on != self.showing_denoised:
            if on:
                self.viewer.replace_voxels(self.denoised.voxels, derived_from=DENOISED_LABEL)
            else:
                self.viewer.replace_voxels(self.original.voxels, derived_from=self.original.metadata.derived_from)
            self.showing_denoised = on
            self._refresh_side()
            self._sync_button()
            self.shown_changed.emit(on)
        return True

    def _sync_button(self) -> None:
        self.toggle_button.setEnabled(self.available)
        self.mode_combo.setEnabled(self.available)
        self.strength_combo.setEnabled(self.available)
        self.toggle_button.setText("Show original (D)" if self.showing_denoised else "Show denoised (D)")

    # ------------------------------------------------------------------ side view
    def side_volume(self) -> Volume | None:
        """What the side view shows now."""
        if not self.available:
            return None
        if self.mode == "difference":
            return self.difference
        return self.original if self.showing_denoised else self.denoised

    @property
    def side_view(self) -> SliceView:
        """The side view of the viewer's active plane."""
        return self.side_views[self.viewer.active_view.plane]

    def _refresh_side(self) -> None:
        vol = self.side_volume()
        for view in self.side_views.values():
            view.set_volume(vol)
        if vol is None:
            self.caption.setText("No denoised series — run Analyze with denoising on."
                                 if not self.available else "Difference map not computed.")
        elif self.mode == "difference":
            self.caption.setText(f"Difference {DIFFERENCE_LABEL} at {round(100 * self.strength)} % strength "
                                 f"(HU, window ±{self.difference_width / 2:.0f}); "
                                 f"main view: {'denoised' if self.showing_denoised else 'original'}")
        else:
            label = strength_label(self.strength)
            self.caption.setText(f"Side: {'original' if self.showing_denoised else label} — "
                                 f"main: {label if self.showing_denoised else 'original'}")
        self._sync_window()
        self.sync()

    def _sync_window(self) -> None:
        for view in self.side_views.values():
            if self.mode == "difference":
                view.set_window(0.0, self.difference_width)
            else:
                view.set_window(self.viewer.window_center, self.viewer.window_width)
            view.set_invert(self.viewer.invert and self.mode != "difference")

    def sync(self) -> None:
        """Follow the viewer: active plane, slice, zoom/pan."""
        if self._syncing or self.side_volume() is None or self.viewer.volume is None:
            return
        self._syncing = True
        try:
            plane = self.viewer.active_view.plane
            view = self.side_views[plane]
            self.stack.setCurrentWidget(view)
            view.set_slice(self.viewer.views[plane].slice_index, emit=False)
            view.set_crosshair(self.viewer.crosshair_index)
        finally:
            self._syncing = False
        self._sync_range()

    def _sync_range(self) -> None:
        if self._syncing or self.side_volume() is None or self.viewer.volume is None:
            return
        plane = self.viewer.active_view.plane
        main, side = self.viewer.views[plane], self.side_views[plane]
        if main.geometry is None or side.geometry is None:
            return
        # the part of the image the main view shows, fitted to the side view's own shape
        w_mm, h_mm = side.geometry.size_mm
        rect = main.view_box.viewRect()
        part = rect.intersected(QtCore.QRectF(0.0, 0.0, w_mm, h_mm))
        self._syncing = True
        try:
            side.view_box.setRange(part if not part.isEmpty() else rect, padding=0.0)
        finally:
            self._syncing = False

    def _side_slice_changed(self, plane: str, index: int) -> None:
        if not self._syncing:
            self.viewer.set_slice(index, plane)

    def side_pixels(self) -> NDArray[Any] | None:
        """The slice the side view shows (tests, screenshots)."""
        return self.side_view.displayed_image()


__all__ = ["DenoisedReviewWidget", "difference_volume", "DENOISED_LABEL", "DIFFERENCE_LABEL", "MODES"]
