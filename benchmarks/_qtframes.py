"""Frame counting shared by the GUI benchmarks (``render.py``, ``analyze_stall.py``).

The scripts run as ``python benchmarks/<name>.py``, so this folder is on
``sys.path`` and they import this module by its bare name.
"""

from __future__ import annotations

import time


class PaintCounter:
    """Counts paint events of viewports (an event filter), to wait for real frames."""

    def __init__(self, widgets) -> None:
        from PySide6 import QtCore

        class Filter(QtCore.QObject):
            def __init__(self, owner) -> None:
                super().__init__()
                self.owner = owner

            def eventFilter(self, obj, ev) -> bool:  # noqa: N802
                if ev.type() == QtCore.QEvent.Type.Paint:
                    self.owner.count += 1
                return False

        self.count = 0
        self._filter = Filter(self)
        for w in widgets:
            w.viewport().installEventFilter(self._filter)


def wait_frame(app, counter: PaintCounter, n_paints: int, timeout_s: float = 1.0) -> None:
    """Let the event loop run until ``n_paints`` more viewports were painted (one frame)."""
    target = counter.count + n_paints
    deadline = time.perf_counter() + timeout_s
    while counter.count < target and time.perf_counter() < deadline:
        app.processEvents()
