"""The background-worker pattern: signals, failures, cancel, latest-wins, shutdown, many emits."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402
from test_gui_support import no_leaks  # noqa: E402,F401

from medviewer.errors import CancelledError  # noqa: E402
from medviewer.gui.workers import CancelToken, TaskRunner, Worker  # noqa: E402


@pytest.fixture
def runner(qapp, no_leaks):
    r = TaskRunner()
    yield r
    assert r.shutdown(5000)
    r.deleteLater()


def test_result_arrives_on_gui_thread_with_progress(runner, qtbot):
    seen: dict[str, object] = {"progress": []}
    gui_thread = threading.get_ident()

    def task(progress, cancel):
        seen["worker_thread"] = threading.get_ident()
        for n in range(101):
            progress(n / 100, f"step {n}")
        return 42

    def finished(value):
        seen["value"] = value
        seen["callback_thread"] = threading.get_ident()

    h = runner.start("t", task, on_finished=finished, on_progress=lambda f, m: seen["progress"].append(f))
    qtbot.waitUntil(lambda: "value" in seen, timeout=5000)
    assert seen["value"] == 42
    assert seen["worker_thread"] != gui_thread and seen["callback_thread"] == gui_thread
    assert seen["progress"][-1] == 1.0 and 2 <= len(seen["progress"]) <= 101
    qtbot.waitUntil(lambda: not h.running, timeout=5000)


def test_exception_becomes_failed_signal(runner, qtbot):
    errors = []

    def task(progress, cancel):
        raise RuntimeError("model exploded")

    runner.start("t", task, on_finished=lambda v: errors.append(("finished", v)), on_failed=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], RuntimeError) and "model exploded" in str(errors[0])


def test_cancel_stops_a_running_task(runner, qtbot):
    state = {"cancelled": False, "finished": False, "started": threading.Event()}

    def task(progress, cancel):
        state["started"].set()
        for _ in range(1000):
            if cancel():
                raise CancelledError("stopped")
            time.sleep(0.005)
        return "done"

    h = runner.start(
        "t",
        task,
        on_finished=lambda v: state.update(finished=True),
        on_cancelled=lambda: state.update(cancelled=True),
    )
    assert state["started"].wait(5)
    t0 = time.perf_counter()
    h.cancel()
    qtbot.waitUntil(lambda: state["cancelled"], timeout=2000)
    assert time.perf_counter() - t0 < 1.0
    assert not state["finished"]


def test_latest_request_wins(runner, qtbot):
    results = []
    release = threading.Event()

    def slow(progress, cancel):
        release.wait(5)
        return "old"

    runner.start("slice", slow, on_finished=results.append, on_cancelled=lambda: results.append("old cancelled"))
    runner.start("slice", lambda p, c: "new", on_finished=results.append)
    qtbot.waitUntil(lambda: "new" in results, timeout=5000)
    release.set()
    qtbot.wait(100)
    assert runner.shutdown(5000)
    assert results == ["new"]  # the superseded task is dropped, not shown


def test_shutdown_joins_running_threads(qapp, no_leaks):
    runner = TaskRunner()
    started = threading.Event()

    def task(progress, cancel):
        started.set()
        while not cancel():
            time.sleep(0.01)
        raise CancelledError("bye")

    handles = [runner.start(f"c{n}", task) for n in range(3)]
    assert started.wait(5)
    assert runner.shutdown(5000)
    assert all(h.qthread.isFinished() for h in handles)
    runner.deleteLater()


def test_cancel_token():
    t = CancelToken()
    assert not t() and not t.cancelled
    t.cancel()
    assert t() and t.cancelled


def test_ten_thousand_cross_thread_signals(qapp, qtbot):
    """PySide6 6.12.0 aborted after ~570 emits on CPython 3.11 (STYLE.md section 7)."""
    count = {"n": 0}
    n_emits = 10_000

    class Sink(QtCore.QObject):
        @QtCore.Slot(float, str)
        def on_progress(self, f: float, m: str) -> None:
            count["n"] += 1

    def task(progress, cancel):
        return None

    sink = Sink()
    worker = Worker(task)
    thread = QtCore.QThread()
    worker.moveToThread(thread)
    worker.progress.connect(sink.on_progress)

    def emit_many() -> None:
        for n in range(n_emits):
            worker.progress.emit(float(n), "x")
        worker.done.emit()

    thread.started.connect(emit_many)
    worker.done.connect(thread.quit, QtCore.Qt.ConnectionType.DirectConnection)
    thread.start()
    qtbot.waitUntil(lambda: count["n"] == n_emits, timeout=20000)
    assert thread.wait(5000)


def test_shutdown_timeout_keeps_a_stubborn_thread_alive(qapp, qtbot):
    from medviewer.gui import workers

    release = threading.Event()
    runner = TaskRunner()
    h = runner.start("stubborn", lambda p, c: release.wait(10))  # ignores cancel
    qtbot.wait(20)
    assert not runner.shutdown(100)
    assert h in workers._ORPHANS and h.running
    release.set()
    assert h.wait(5000)
    workers._ORPHANS.remove(h)
    runner.deleteLater()


def test_script_exiting_with_a_running_task_does_not_abort(tmp_path):
    """Without the at-exit join Qt aborts: "QThread: Destroyed while thread is still running"."""
    import os
    import subprocess
    import sys

    script = tmp_path / "exit_early.py"
    script.write_text(
        "import time\n"
        "from medviewer.gui.app import ensure_app\n"
        "from medviewer.gui.workers import TaskRunner\n"
        "app = ensure_app()\n"
        "runner = TaskRunner()\n"
        "def task(progress, cancel):\n"
        "    while not cancel():\n"
        "        time.sleep(0.01)\n"
        "runner.start('busy', task)\n"
        "time.sleep(0.05)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "Destroyed while thread" not in proc.stderr
