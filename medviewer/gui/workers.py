"""The one way MedViewer runs background work (STYLE.md section 2).

A :class:`Worker` is a ``QObject`` moved to its own ``QThread``. It calls a
plain logic function ``fn(progress=..., cancel=...)`` (the same function the
CLI calls), catches every ``Exception`` inside ``run()`` and reports through
queued signals; it never touches a widget. :class:`TaskRunner` owns the
threads: it starts tasks on named *channels* where the latest request wins (a
superseded task is cancelled and its late results are dropped), delivers the
results on the GUI thread, and cancels and joins everything on shutdown so no
"QThread: Destroyed while thread is still running" can happen.

Example (the Analyze worker of issue 7 follows the same pattern)::

    runner = TaskRunner(parent=main_window)
    handle = runner.start(
        "analyze",
        lambda progress, cancel: pipeline.run(volume, progress=progress, cancel=cancel),
        on_finished=show_results,          # called on the GUI thread with the return value
        on_failed=show_error,              # called with the exception
        on_progress=status_bar_progress,   # (fraction, message), throttled to >= 1 %
        on_cancelled=lambda: ...,
    )
    handle.cancel()                        # cooperative: fn sees cancel() -> True
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from medviewer.errors import CancelledError
from medviewer.progress import CancelFn, Progress, ProgressFn

_ORPHANS: list["TaskHandle"] = []
"""Handles of tasks still running after a shutdown timed out (kept referenced on purpose)."""

TaskFn = Callable[[ProgressFn, CancelFn], Any]
"""A task: called as ``fn(progress, cancel)`` on the worker thread."""


class CancelToken:
    """Thread-safe cancel flag; calling it answers "was cancel requested?".

    Pass it as the ``cancel`` callback of any logic function.

    Examples
    --------
    >>> t = CancelToken()
    >>> t(), t.cancel(), t()
    (False, None, True)
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the task to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


class Worker(QtCore.QObject):
    """Runs one task on the thread it was moved to; reports only by signals.

    Signals
    -------
    progress(float, str)
        Fraction in [0, 1] and a message, throttled to changes >= 1 %.
    finished(object)
        The task's return value.
    failed(object)
        The exception the task raised (any ``Exception``, never re-raised).
    cancelled()
        The task raised :class:`~medviewer.errors.CancelledError`.
    done()
        Emitted last in every case (used to stop the thread).
    """

    progress = QtCore.Signal(float, str)
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(object)
    cancelled = QtCore.Signal()
    done = QtCore.Signal()

    def __init__(self, fn: TaskFn, token: CancelToken | None = None) -> None:
        super().__init__()
        self._fn = fn
        self.token = token or CancelToken()

    def _report(self, fraction: float, message: str) -> None:
        self.progress.emit(float(fraction), str(message))

    @QtCore.Slot()
    def run(self) -> None:
        """Call the task; every outcome becomes a signal."""
        try:
            if self.token():
                raise CancelledError("cancelled before it started")
            result = self._fn(Progress(self._report, step=0.01), self.token)
            if self.token():
                # finished after a cancel request: the caller no longer wants it
                self.cancelled.emit()
            else:
                self.finished.emit(result)
        except CancelledError:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - every failure goes to the GUI as a signal
            self.failed.emit(exc)
        finally:
            self.done.emit()


class TaskHandle(QtCore.QObject):
    """The GUI-thread side of one running task.

    It lives on the GUI thread, so the worker's signals reach its slots queued
    and the user callbacks always run on the GUI thread. ``cancel()`` is
    cooperative; ``wait()`` joins the thread.

    Signals
    -------
    ended()
        The thread has stopped (whatever the outcome).
    """

    ended = QtCore.Signal()

    def __init__(
        self,
        name: str,
        fn: TaskFn,
        on_finished: Callable[[Any], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self.superseded = False
        self.started_at = time.perf_counter()
        self._callbacks = (on_finished, on_failed, on_progress, on_cancelled)
        self.qthread = QtCore.QThread()
        self.qthread.setObjectName(f"medviewer-{name}")
        self.worker = Worker(fn, self.token)
        self.worker.moveToThread(self.qthread)
        self.qthread.started.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        # direct: QThread.quit is thread-safe, and a queued quit could never run while the
        # GUI thread blocks in wait() during shutdown
        self.worker.done.connect(self.qthread.quit, QtCore.Qt.ConnectionType.DirectConnection)
        self.qthread.finished.connect(self._on_thread_finished)
        self._running = False

    def start(self) -> None:
        self._running = True
        self.qthread.start()

    @property
    def running(self) -> bool:
        """True until the worker thread has stopped."""
        return self._running

    def cancel(self) -> None:
        """Ask the task to stop; its results (if any arrive) are dropped."""
        self.token.cancel()

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Join the thread; True when it stopped within the timeout."""
        if not self._running:
            return True
        ok = bool(self.qthread.wait(QtCore.QDeadlineTimer(int(timeout_ms))))
        if ok:
            # deliver the queued thread-finished notification now
            self._on_thread_finished()
        return ok

    # -- slots (GUI thread) ------------------------------------------------------------
    def _deliver(self, index: int, *args: Any) -> None:
        cb = self._callbacks[index]
        if cb is not None:
            cb(*args)

    @QtCore.Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if not self.token() and not self.superseded:
            self._deliver(2, fraction, message)

    @QtCore.Slot(object)
    def _on_finished(self, result: Any) -> None:
        if self.superseded:
            return  # a superseded request is dropped, not shown
        if self.token():
            # cancelled after the work was done but before its result arrived: the user
            # asked to stop, so it ends as cancelled (and the caller gets to clean up)
            self._deliver(3)
            return
        self._deliver(0, result)

    @QtCore.Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        if self.superseded:
            return
        if self.token():
            self._deliver(3)
            return
        self._deliver(1, exc)

    @QtCore.Slot()
    def _on_cancelled(self) -> None:
        if not self.superseded:
            self._deliver(3)

    @QtCore.Slot()
    def _on_thread_finished(self) -> None:
        if not self._running:
            return
        self._running = False
        self.ended.emit()


class TaskRunner(QtCore.QObject):
    """Starts tasks on named channels; the latest request on a channel wins.

    Parameters
    ----------
    parent : QObject, optional
        Usually the main window; call :meth:`shutdown` from its ``closeEvent``.

    Notes
    -----
    Starting a task on a channel that is still busy cancels the old task and
    marks it superseded: none of its callbacks fire any more (napari's slicer
    does the same). Different channels run concurrently.
    """

    task_started = QtCore.Signal(str)
    task_ended = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._current: dict[str, TaskHandle] = {}
        self._alive: set[TaskHandle] = set()
        _RUNNERS.add(self)

    def start(
        self,
        channel: str,
        fn: TaskFn,
        on_finished: Callable[[Any], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> TaskHandle:
        """Run ``fn(progress, cancel)`` on a new worker thread.

        Returns
        -------
        TaskHandle
            To cancel or wait for the task.
        """
        old = self._current.get(channel)
        if old is not None and old.running:
            old.superseded = True
            old.cancel()
        cap_background_threads()
        handle = TaskHandle(channel, fn, on_finished, on_failed, on_progress, on_cancelled, parent=self)
        self._current[channel] = handle
        self._alive.add(handle)
        handle.ended.connect(lambda h=handle: self._forget(h))
        handle.start()
        self.task_started.emit(channel)
        return handle

    def _forget(self, handle: TaskHandle) -> None:
        self._alive.discard(handle)
        if self._current.get(handle.name) is handle:
            del self._current[handle.name]
        self.task_ended.emit(handle.name)
        handle.deleteLater()

    def current(self, channel: str) -> TaskHandle | None:
        """The running task on ``channel``, if any."""
        h = self._current.get(channel)
        return h if h is not None and h.running else None

    def is_busy(self, channel: str | None = None) -> bool:
        """Whether a task runs on ``channel`` (on any channel when None)."""
        if channel is None:
            return any(h.running for h in self._alive)
        return self.current(channel) is not None

    def cancel(self, channel: str) -> None:
        """Cancel the task on ``channel`` (its callbacks then report cancelled)."""
        h = self._current.get(channel)
        if h is not None:
            h.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel every task and join its thread; True when all stopped in time."""
        handles = list(self._alive)
        for h in handles:
            h.superseded = True
            h.cancel()
        deadline = time.perf_counter() + timeout_ms / 1000.0
        ok = True
        for h in handles:
            left = max(1, int((deadline - time.perf_counter()) * 1000))
            if not h.wait(left):
                ok = False
                # a task that ignores cancel: keep its QThread alive (destroying a running
                # QThread aborts the process); it ends with the task, the process may exit first
                h.setParent(None)
                _ORPHANS.append(h)
        return ok


_RUNNERS: "weakref.WeakSet[TaskRunner]" = weakref.WeakSet()


@atexit.register
def _join_at_exit() -> None:
    """Safety net: a script that exits without closing its window must not destroy a
    running QThread (Qt aborts the process: "QThread: Destroyed while thread is still running")."""
    for runner in list(_RUNNERS):
        try:
            handles = list(runner._alive)
        except RuntimeError:  # the C++ object is already gone
            continue
        for h in handles:
            try:
                h.superseded = True
                h.cancel()
                if not h.qthread.wait(QtCore.QDeadlineTimer(5000)):
                    _ORPHANS.append(h)
            except RuntimeError:
                continue


def cap_background_threads() -> None:
    """Keep background numerics off one core so the GUI thread stays responsive.

    torch and SimpleITK are capped at ``cores - 1`` threads when they are already
    imported (STYLE.md: a worker on all cores stalled the GUI 61 ms, capped 7 ms).
    """
    n = max(1, (os.cpu_count() or 2) - 1)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.get_num_threads() > n:
                torch.set_num_threads(n)
        except Exception:  # noqa: BLE001 - a best-effort tuning knob
            pass
    sitk = sys.modules.get("SimpleITK")
    if sitk is not None:
        try:
            if sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() > n:
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
        except Exception:  # noqa: BLE001
            pass


__all__ = ["TaskFn", "CancelToken", "Worker", "TaskHandle", "TaskRunner", "cap_background_threads"]
