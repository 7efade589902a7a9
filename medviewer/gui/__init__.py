"""Qt user interface (PySide6 + pyqtgraph). The only package that imports Qt.

Modules
-------
app
    ``run_app(path=None, demo=False)`` (what ``medviewer [PATH] [--demo]`` runs),
    ``ensure_app()`` (QApplication + ``pyqtgraph.setConfigOptions(imageAxisOrder="row-major")``).
main_window
    ``MainWindow``: study browser dock, viewer, measurements dock, status bar with
    progress + Cancel. Hooks for Analyze: ``analysis_menu``, ``analysis_toolbar``,
    ``add_analysis_action(action)``, ``add_panel(widget, title)``, ``runner``
    (the window's TaskRunner, joined on close), ``show_progress`` / ``hide_progress``,
    ``show_error`` (the one place errors reach the user), signals ``series_loaded``,
    ``studies_loaded``, ``load_failed``.
mpr
    ``ViewerWidget``: 1x1 / 1x3 (axial, coronal, sagittal) views with shared window,
    invert, linked crosshair, tools, cine; ``set_overlay``, ``set_overlay_style``,
    ``set_overlay_visible``, ``set_markers``, ``go_to``, ``replace_voxels`` on all views.
slice_view
    ``SliceView``: one plane — image, heat-map overlay (second ImageItem, LUT with
    alpha, cropped to visible values), finding outlines, crosshair, measurements,
    corner text and orientation letters painted in ``drawForeground``.
tools
    ``RulerMeasurement`` (mm) and ``EllipseMeasurement`` (mean/SD/min/max, mm²).
workers
    ``TaskRunner`` / ``Worker`` / ``CancelToken``: the one background-work pattern
    (QObject in a QThread, progress/finished/failed/cancelled signals, latest wins).
study_browser, shortcuts_dialog, settings, screenshot
    Patient/Study/Series tree with thumbnails; F1 help; QSettings and recent
    studies (``MEDVIEWER_SETTINGS`` redirects them to an INI file); offscreen PNGs.

The display logic without Qt (planes, reslicing, windows, ROI statistics, overlay
LUTs, markers) is :mod:`medviewer.viewing`.
"""
