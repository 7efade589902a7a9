"""Viewer rendering benchmark: scrolling speed, first slice on screen, GUI stalls.

Run offscreen (it sets ``QT_QPA_PLATFORM=offscreen`` unless a platform is set)::

    python benchmarks/render.py            # 300 x 512 x 512, the issue's case
    python benchmarks/render.py --quick    # small volume, a few seconds

It prints:

1. frames per second scrolling a 300x512x512 CT volume in the real
   ``MainWindow`` (1x1 and 1x3) with a heat-map overlay, finding markers and
   measurements shown, each frame painted synchronously — against the peer in
   the same run: a bare pyqtgraph ``ImageItem`` fed float32 slices with explicit
   levels (pyqtgraph's fast path), no overlay;
2. time from choosing a 300-slice DICOM series (written to a temporary folder)
   to its first slice on screen, and to the complete volume;
   and the worst event-loop stall while it loads;
3. the worst event-loop stall (gap between 5 ms timer ticks) while a worker
   thread computes (numpy FFTs and torch convolutions through the viewer's
   TaskRunner), against the same measure with the GUI idle.

Targets (issue 3): >= 60 frames/s with overlay; first slice <= 0.5 s.
Target (issue 7): worst stall <= 50 ms while analysis runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from _qtframes import PaintCounter, wait_frame  # noqa: E402  (this folder is sys.path[0])


def _volume(n: int, size: int):
    from medviewer.volume import Volume, VolumeMetadata, WindowPreset

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    base = np.where(r < 0.9, 40.0, -1000.0).astype(np.float32)
    base[(r > 0.8) & (r < 0.9)] = 700.0
    vox = np.empty((n, size, size), np.float32)
    noise = rng.normal(0, 15, (8, size, size)).astype(np.float32)
    for k in range(n):
        np.add(base, noise[k % 8], out=vox[k])
    heat = np.zeros((n, size, size), np.float32)
    blob = np.exp(-(((yy - size * 0.4) ** 2 + (xx - size * 0.6) ** 2) / (2 * (size * 0.05) ** 2))).astype(np.float32)
    for k in range(n):
        heat[k] = blob * (0.5 + 0.5 * np.sin(k / 9.0) ** 2)
    meta = VolumeMetadata(modality="CT", patient_name="Bench^Mark", patient_id="B1", series_description="benchmark",
                          windows=[WindowPreset(40, 400)])
    return Volume(vox, spacing=(1.0, 0.7, 0.7), metadata=meta), heat


def bench_scroll(app, n: int, size: int, frames: int) -> dict[str, float]:
    import pyqtgraph as pg

    from medviewer.gui.main_window import MainWindow
    from medviewer.viewing import Marker
    from PySide6 import QtCore

    t0 = time.perf_counter()
    vol, heat = _volume(n, size)
    build_s = time.perf_counter() - t0
    settings = QtCore.QSettings(os.path.join(tempfile.mkdtemp(prefix="mv-bench-"), "s.ini"),
                                QtCore.QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, remember=False)
    win.resize(1600, 1000)
    win.show()
    win.set_volume(vol)
    viewer = win.viewer
    viewer.set_overlay(heat, "jet", 0.4, 0.2)
    viewer.set_markers([Marker(i, (n * (i + 1) / 7, size * 0.4, size * 0.6), 20.0, f"#{i} 80%", "#ffd200")
                        for i in range(6)])
    view = viewer.views["axial"]
    g = view.geometry
    for k in range(0, n, max(1, n // 30)):  # measurements on 30 slices (one always near)
        view.set_slice(k)
        view.measure("ruler", g.pixel_to_mm(size * 0.2, size * 0.2), g.pixel_to_mm(size * 0.2, size * 0.7))
        view.measure("ellipse", g.pixel_to_mm(size * 0.5, size * 0.5), g.pixel_to_mm(size * 0.6, size * 0.65))
    for _ in range(10):
        app.processEvents()

    # peer: bare pyqtgraph ImageItem fed float32 slices with explicit levels (the fast path),
    # no overlay, no markers, no text — in a viewport of the same size as the 1x1 view
    gv = pg.GraphicsView(background="k")
    vb = pg.ViewBox(lockAspect=True, invertY=True)
    gv.setCentralItem(vb)
    item = pg.ImageItem(axisOrder="row-major")
    vb.addItem(item)
    gv.resize(view.size())
    gv.show()
    item.setImage(vol.voxels[0], levels=(-160, 240), autoLevels=False)
    vb.autoRange(padding=0)
    for _ in range(5):
        app.processEvents()
    peer_counter = PaintCounter([gv])
    peer_state = {"k": 0}

    def peer_round(count: int) -> float:
        t = time.perf_counter()
        for _ in range(count):
            peer_state["k"] = (peer_state["k"] + 1) % n
            item.setImage(vol.voxels[peer_state["k"]], levels=(-160, 240), autoLevels=False)
            wait_frame(app, peer_counter, 1)
        return count / (time.perf_counter() - t)

    step = {"dir": 1}

    def viewer_round(views, counter: PaintCounter, count: int) -> float:
        t = time.perf_counter()
        for _ in range(count):
            k = views[0].slice_index
            if not 0 <= k + step["dir"] < n:
                step["dir"] = -step["dir"]
            views[0].scroll_slices(step["dir"])
            wait_frame(app, counter, len(views))  # the normal event loop paints, as when reading
        return count / (time.perf_counter() - t)

    # rounds alternate viewer and peer so that a machine shared with other work slows
    # both alike; the medians of the rounds are reported
    rounds = max(3, min(10, frames // 20))
    per_round = max(1, frames // rounds)
    out: dict[str, float] = {"build_s": build_s}
    c1 = PaintCounter([view])
    view.set_slice(0)
    r1, rp = [], []
    for _ in range(rounds):
        r1.append(viewer_round([view], c1, per_round))
        rp.append(peer_round(per_round))
    viewer.set_layout("1x3")
    for _ in range(5):
        app.processEvents()
    viewer._refit_views()
    # 1x3: the axial view scrolls, the other two show the moving crosshair
    views3 = [view, viewer.views["coronal"], viewer.views["sagittal"]]
    c3 = PaintCounter(views3)
    r3 = []
    for _ in range(rounds):
        r3.append(viewer_round(views3, c3, per_round))
        rp.append(peer_round(per_round))
    out["viewer_1x1_fps"] = float(np.median(r1))
    out["viewer_1x3_fps"] = float(np.median(r3))
    out["peer_pyqtgraph_fps"] = float(np.median(rp))
    out["rounds"] = rounds
    win.close()
    win.deleteLater()
    gv.close()
    gv.deleteLater()
    del vol, heat
    return out


def bench_first_slice(app, n: int, size: int) -> dict[str, float]:
    from PySide6 import QtCore

    from medviewer.dicom import scan
    from medviewer.dicom.synthetic import write_series
    from medviewer.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="mv-bench-dicom-") as tmp:
        t = time.perf_counter()
        write_series(tmp, n_slices=n, rows=size, columns=size, spacing=1.0, pixel_spacing=(0.7, 0.7))
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        studies = scan(tmp)
        scan_s = time.perf_counter() - t
        series = studies[0].series[0]
        settings = QtCore.QSettings(os.path.join(tmp, "s.ini"), QtCore.QSettings.Format.IniFormat)
        win = MainWindow(settings=settings, remember=False)
        win.resize(1600, 1000)
        win.show()
        for _ in range(5):
            app.processEvents()
        shown: dict[str, float] = {}
        t0 = time.perf_counter()
        win.viewer.volume_changed.connect(
            lambda v: shown.setdefault("first", time.perf_counter() - t0) if v is not None else None
        )
        ticks: list[float] = []
        timer = QtCore.QTimer()
        timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(5)
        win.load_series(series)
        while "complete_s" not in win.last_load_timing and time.perf_counter() - t0 < 60:
            app.processEvents()
            time.sleep(0.001)
        complete = time.perf_counter() - t0
        timer.stop()
        stall = float(np.diff(np.asarray(ticks)).max() * 1000.0) if len(ticks) > 1 else float("nan")
        win.close()
        win.deleteLater()
    return {"write_s": write_s, "scan_s": scan_s, "first_slice_s": shown.get("first", float("nan")),
            "complete_s": complete, "load_stall_ms": stall}


def bench_stall(app, seconds: float, use_torch: bool = True) -> dict[str, float]:
    from PySide6 import QtCore

    from medviewer.gui.workers import TaskRunner

    def measure(duration: float, runner: TaskRunner | None = None, task=None) -> tuple[float, float]:
        ticks: list[float] = []
        timer = QtCore.QTimer()
        timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(5)
        if runner is not None:
            runner.start("bench", task)
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.0005)
        timer.stop()
        gaps = np.diff(np.asarray(ticks)) * 1000.0
        return float(gaps.max()), float(np.percentile(gaps, 99))

    idle = measure(min(seconds, 1.5))
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:  # pragma: no cover
            torch = None

    def work(progress, cancel):
        rng = np.random.default_rng(0)
        a = rng.normal(size=(512, 512)).astype(np.float32)
        if torch is not None:
            conv = torch.nn.Conv2d(16, 16, 3, padding=1)
            x = torch.randn(4, 16, 128, 128)
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end and not cancel():
            np.fft.irfft2(np.fft.rfft2(a))  # numpy work (releases the GIL)
            if torch is not None:
                with torch.no_grad():
                    conv(x)
            n += 1
            progress(min(1.0, n / 1000), f"iteration {n}")
        return n

    runner = TaskRunner()
    busy = measure(seconds, runner, work)
    runner.shutdown()
    runner.deleteLater()
    threads = torch.get_num_threads() if torch is not None else 0
    return {"idle_max_ms": idle[0], "idle_p99_ms": idle[1], "busy_max_ms": busy[0], "busy_p99_ms": busy[1],
            "torch_threads": threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--stall-seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="60 x 256 x 256, 120 frames, 1.5 s stall test")
    parser.add_argument("--no-torch", action="store_true", help="numpy-only background work (no torch import)")
    args = parser.parse_args(argv)
    if args.quick:
        args.slices, args.size, args.frames, args.stall_seconds = 60, 256, 120, 1.5

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from medviewer.gui.app import ensure_app
    from medviewer.gui.screenshot import _quiet_offscreen_warnings

    app = ensure_app()
    quiet = _quiet_offscreen_warnings()
    quiet.__enter__()  # for the whole run
    print(f"MedViewer render benchmark — {args.slices}x{args.size}x{args.size}, {os.cpu_count()} CPU(s), "
          f"platform {app.platformName()}")
    s = bench_scroll(app, args.slices, args.size, args.frames)
    print(f"  volume + overlay built in {s['build_s']:.1f} s")
    print(f"scrolling, overlay + markers + measurements, 1x1: {s['viewer_1x1_fps']:7.1f} frames/s "
          f"(target >= 60)")
    print(f"scrolling, overlay + markers + measurements, 1x3: {s['viewer_1x3_fps']:7.1f} frames/s "
          f"(3 views repainted per frame)")
    print(f"peer: bare pyqtgraph ImageItem, no overlay:      {s['peer_pyqtgraph_fps']:7.1f} frames/s")
    print(f"ratio viewer 1x1 / peer: {s['viewer_1x1_fps'] / s['peer_pyqtgraph_fps']:.2f} "
          f"(medians of {s['rounds']} interleaved rounds)")
    f = bench_first_slice(app, args.slices, args.size)
    print(f"{args.slices}-slice DICOM series: written {f['write_s']:.1f} s, scanned {f['scan_s']:.2f} s; "
          f"first slice on screen {f['first_slice_s']:.3f} s (target <= 0.5), complete volume {f['complete_s']:.2f} s; "
          f"worst GUI stall while loading {f['load_stall_ms']:.1f} ms")
    st = bench_stall(app, args.stall_seconds, use_torch=not args.no_torch)
    print(f"event-loop stall (5 ms timer): idle max {st['idle_max_ms']:.1f} ms (p99 {st['idle_p99_ms']:.1f}); "
          f"with a worker computing max {st['busy_max_ms']:.1f} ms (p99 {st['busy_p99_ms']:.1f}), "
          f"torch threads {st['torch_threads']} (target <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
