"""Render the real main window offscreen to a PNG (``medviewer screenshot``)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medviewer.errors import DicomError, ExportError, MedViewerError
from medviewer.progress import ProgressFn


def _pick_series(studies: list[Any], wanted: str | int | None) -> Any:
    from medviewer.gui.main_window import default_series

    all_series = [s for st in studies for s in st.series]
    if wanted is None or str(wanted) == "":
        s = default_series(studies)
        if s is None:
            reasons = sorted({x.reason for x in all_series if x.reason})
            raise DicomError("no viewable series" + (f" ({'; '.join(reasons[:3])})" if reasons else ""))
        return s
    try:
        n = int(str(wanted))
    except ValueError as exc:
        raise MedViewerError(f"--series must be a number, got {wanted!r}") from exc
    by_number = [s for s in all_series if s.number == n]
    if by_number:
        return by_number[0]
    if 1 <= n <= len(all_series):
        return all_series[n - 1]
    numbers = ", ".join(str(s.number) for s in all_series)
    raise MedViewerError(f"no series {n}; series numbers here: {numbers or 'none'}")


@contextlib.contextmanager
def _quiet_offscreen_warnings() -> Iterator[None]:
    """Drop the offscreen platform's "does not support propagateSizeHints" noise; keep the rest."""
    from PySide6 import QtCore

    def handler(mode: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    previous = QtCore.qInstallMessageHandler(handler)
    try:
        yield
    finally:
        QtCore.qInstallMessageHandler(previous)


def render_screenshot(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    series: str | int | None = None,
    slice_number: int | None = None,
    preset: str | None = None,
    layout: str = "1x1",
    size: tuple[int, int] = (1600, 1000),
    overwrite: bool = True,
    analyze: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Open ``path`` in a MainWindow offscreen, show one series, save a PNG atomically.

    Parameters
    ----------
    path : path
        Folder, DICOMDIR, zip or DICOM file.
    out : path
        PNG to write (temporary file + fsync + rename).
    series : int or str, optional
        SeriesNumber, else 1-based position in the browser; default the largest series.
    slice_number : int, optional
        1-based slice number of the axial view; default the middle slice.
    preset : str, optional
        ``"lung"``, ``"soft tissue"``/``"soft-tissue"``, ... or ``"0"``-``"5"``.
    layout : {"1x1", "1x3"}
    analyze : bool
        Run Analyze (denoise + detect, the same pipeline as ``medviewer
        analyze``) first and show its heat map, outlines and findings panel;
        without ``slice_number`` the view goes to the most confident finding.
    size : (width, height)
        Window size in pixels.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    DicomError
        Nothing viewable, or the series cannot be loaded.
    MedViewerError
        Bad arguments; ExportError when the PNG cannot be written.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtWidgets

    from medviewer.dicom import load_series, scan
    from medviewer.gui.app import ensure_app
    from medviewer.gui.main_window import MainWindow
    from medviewer.gui.study_browser import compute_thumbnails
    from medviewer.report.atomic import write_bytes

    app = ensure_app()
    studies = scan(path, progress=progress)
    chosen = _pick_series(studies, series)
    volume = load_series(chosen, progress=progress)
    with tempfile.TemporaryDirectory(prefix="medviewer-shot-") as tmp, _quiet_offscreen_warnings():
        settings = QtCore.QSettings(os.path.join(tmp, "settings.ini"), QtCore.QSettings.Format.IniFormat)
        window = MainWindow(settings=settings, remember=False)
        try:
            window.browser.set_studies(studies, thumbnails=False)
            window.browser._set_thumbnails(compute_thumbnails([s for st in studies for s in st.series]))
            window.browser.select_series(chosen)
            window.resize(int(size[0]), int(size[1]))
            window.show()
            window.set_volume(volume, chosen)
            if layout != "1x1":
                window.set_layout(layout)
            for _ in range(5):
                app.processEvents()
            window.viewer._refit_views()
            if preset is not None:
                try:
                    window.viewer.apply_preset(int(preset) if str(preset).isdigit() else str(preset))
                except ValueError as exc:
                    raise MedViewerError(str(exc)) from exc
            if analyze:
                from medviewer.gui.analysis import run_analysis

                record = run_analysis(volume, denoise=True, device=None, progress=progress, cancel=None)
                window.analysis._apply(record)
                findings = record.result.detection.findings
                if findings and slice_number is None:
                    window.analysis.show_finding(findings[0])
                    window.analysis.findings_panel.select_finding(findings[0].id)
            if slice_number is not None:
                n = volume.n_slices
                if not 1 <= int(slice_number) <= n:
                    raise MedViewerError(f"--slice must be between 1 and {n}, got {slice_number}")
                window.viewer.set_slice(int(slice_number) - 1, plane="axial")
            window.statusBar().showMessage(
                f"{volume.n_slices} images, {volume.shape[2]}x{volume.shape[1]}, "
                f"{volume.spacing[2]:.2f} x {volume.spacing[1]:.2f} x {volume.spacing[0]:.2f} mm"
            )
            for _ in range(5):
                app.processEvents()
            image = window.grab().toImage()
            buf = QtCore.QBuffer()
            buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
            if not image.save(buf, "PNG"):  # type: ignore[call-overload]
                raise ExportError(f"{out}: Qt could not encode the PNG")
            data = buf.data().data()
            buf.close()
        finally:
            window.close()
            window.deleteLater()
            QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete.value)
    return write_bytes(Path(out), data, overwrite=overwrite)


__all__ = ["render_screenshot"]
