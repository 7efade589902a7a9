"""10,000 queued signals from a QThread worker to a GUI-thread slot; the process must survive.

PySide6 6.12.0 on CPython 3.11 corrupts a reference count on every
``Signal.emit`` and aborts ("Fatal Python error: bool_dealloc") after ~570
emits (STYLE.md section 7). The emits run in a child process so an abort is
reported as a failed test instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

N_SIGNALS = 10_000

SCRIPT = textwrap.dedent(
    f"""
    import os, sys
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot
    from PySide6.QtWidgets import QApplication

    N = {N_SIGNALS}

    class Worker(QObject):
        progressed = Signal(int, bool, float, object)
        finished = Signal()

        @Slot()
        def run(self):
            for i in range(N):
                self.progressed.emit(i, i % 2 == 0, i / N, {{"i": i, "ok": True}})
            self.finished.emit()

    class Receiver(QObject):
        def __init__(self):
            super().__init__()
            self.count = 0
            self.bad = 0
            self.threads = set()

        @Slot(int, bool, float, object)
        def on_progress(self, i, even, fraction, payload):
            self.count += 1
            self.threads.add(int(QThread.currentThread() is QApplication.instance().thread()))
            if payload["i"] != i or even != (i % 2 == 0) or abs(fraction - i / N) > 1e-12:
                self.bad += 1

    app = QApplication([])
    thread = QThread()
    worker = Worker()
    worker.moveToThread(thread)
    receiver = Receiver()
    worker.progressed.connect(receiver.on_progress)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(app.quit)
    QTimer.singleShot(90_000, lambda: app.exit(3))
    thread.start()
    rc = app.exec()
    thread.wait(10_000)
    app.processEvents()
    print(f"received {{receiver.count}} bad {{receiver.bad}} gui_thread {{sorted(receiver.threads)}} rc {{rc}}")
    sys.exit(0 if receiver.count == N and receiver.bad == 0 and receiver.threads == {{1}} and rc == 0 else 1)
    """
)


@pytest.mark.gui
@pytest.mark.timeout(180)
def test_ten_thousand_cross_thread_signals_do_not_abort_the_process() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr[-3000:]}"
    assert f"received {N_SIGNALS} bad 0 gui_thread [1]" in proc.stdout


def test_installed_pyside6_is_not_the_broken_release() -> None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("PySide6-Essentials", "PySide6"):
        try:
            assert version(dist) != "6.12.0", f"{dist} 6.12.0 aborts after ~570 signal emits on CPython 3.11"
        except PackageNotFoundError:
            continue
