"""Benchmark: loading a CT series with MedViewer vs SimpleITK, pydicom and dcm2niix.

What it shows
-------------
Builds a synthetic CT series (default 300 slices of 512 x 512, 16-bit, written
with pydicom under shuffled file names) twice -- uncompressed (Explicit VR
Little Endian) and RLE Lossless -- and times, in the same run and each in a
fresh subprocess (so peak memory is per loader):

* ``medviewer``: ``medviewer.dicom.scan`` + ``load_series`` (float32 HU volume);
  the time of ``load_series`` alone is shown too;
* ``simpleitk``: ``ImageSeriesReader`` with ``GetGDCMSeriesFileNames``;
* ``pydicom``: a plain loop (``dcmread`` every file, sort by position,
  ``pixel_array`` + ``apply_modality_lut``, stack);
* ``dcm2niix``: the C converter from the ``dcm2niix`` PyPI package (writes an
  uncompressed NIfTI file; wall time of the process).

Every loader runs ``--repeat`` times, round-robin with the others, each run
in a fresh process after an untimed pass over the files (page cache warm);
the best wall time is reported, the least CPU time (user + system, all
threads; a fairer figure when other processes share the machine) and the
largest peak resident memory above the process's baseline. The targets are
checked on wall time. It prints the ratios the project's
targets are stated in: uncompressed load <= 0.6 x SimpleITK; RLE <= 0.5 x
SimpleITK and <= 2 x dcm2niix; peak memory <= 1.5 x the volume's size.

Run::

    python benchmarks/load_series.py              # full size (300 x 512 x 512)
    python benchmarks/load_series.py --slices 40  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("medviewer", "simpleitk", "pydicom", "dcm2niix")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _dcm2niix_exe() -> str | None:
    try:
        import dcm2niix

        exe = Path(dcm2niix.__file__).parent / "dcm2niix"
        if exe.is_file():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("dcm2niix")


def _load_medviewer(folder: Path) -> tuple[Any, float]:
    from medviewer.dicom import load_series, scan

    series = scan(folder)[0].series[0]
    t = time.perf_counter()
    vol = load_series(series)
    return vol.voxels, time.perf_counter() - t


def _load_simpleitk(folder: Path) -> tuple[Any, float]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute(), 0.0


def _load_pydicom(folder: Path) -> tuple[Any, float]:
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)))
    vol = np.stack([apply_modality_lut(ds.pixel_array, ds).astype(np.float32) for ds in datasets])
    return vol, 0.0


def _run_dcm2niix(folder: Path) -> tuple[Any, float]:
    exe = _dcm2niix_exe()
    if exe is None:
        raise RuntimeError("dcm2niix not installed (pip install dcm2niix)")
    out = Path(tempfile.mkdtemp(prefix="d2n-"))
    try:
        subprocess.run([exe, "-z", "n", "-b", "n", "-o", str(out), "-f", "vol", str(folder)], check=True,
                       capture_output=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return None, 0.0


def _worker(method: str, folder: Path, repeat: int) -> dict[str, Any]:
    """Time one loader in this process; returns best seconds and peak RSS delta."""
    import numpy  # noqa: F401 - import cost out of the timing
    import pydicom  # noqa: F401

    if method == "medviewer":
        import medviewer.dicom  # noqa: F401
        from medviewer.allocator import tune_malloc

        tune_malloc()  # as the app does at start-up (medviewer.cli.main)
    elif method == "simpleitk":
        import SimpleITK  # noqa: F401
    fn = {"medviewer": _load_medviewer, "simpleitk": _load_simpleitk, "pydicom": _load_pydicom,
          "dcm2niix": _run_dcm2niix}[method]
    for p in folder.iterdir():  # warm the page cache the same way for everyone
        p.read_bytes()
    baseline = _rss_bytes()
    best, best_part, best_cpu = float("inf"), float("inf"), float("inf")
    who = resource.RUSAGE_CHILDREN if method == "dcm2niix" else resource.RUSAGE_SELF

    def cpu() -> float:
        ru = resource.getrusage(who)
        return ru.ru_utime + ru.ru_stime

    for _ in range(repeat):
        c = cpu()
        t = time.perf_counter()
        result, part = fn(folder)
        elapsed = time.perf_counter() - t
        used = cpu() - c
        del result
        if elapsed < best:
            best, best_part = elapsed, part
        best_cpu = min(best_cpu, used)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if method == "dcm2niix":
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        baseline = 0
    return {
        "seconds": best,
        "load_series_seconds": best_part,
        "cpu_seconds": best_cpu,
        "peak_bytes": max(0, peak - baseline),
    }


def _measure(method: str, folder: Path, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_worker", method, str(folder), "--repeat", str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Build the series, time every loader, print times, ratios and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300, help="number of slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per loader; best is kept")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the series (default: temp)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--_worker", nargs=2, metavar=("METHOD", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        print(json.dumps(_worker(args._worker[0], Path(args._worker[1]), args.repeat)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from medviewer.dicom.synthetic import write_series

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mv-bench-"))
    volume_bytes = args.slices * args.size * args.size * 4
    print(f"series: {args.slices} x {args.size} x {args.size}, float32 volume {volume_bytes / 2**20:.0f} MiB; "
          f"{os.cpu_count()} CPUs; best of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for label, rle in (("uncompressed", False), ("RLE", True)):
            folder = work / label
            if not folder.exists() or len(list(folder.iterdir())) != args.slices:
                shutil.rmtree(folder, ignore_errors=True)
                t = time.perf_counter()
                write_series(folder, n_slices=args.slices, rows=args.size, columns=args.size, spacing=1.0, rle=rle)
                print(f"  wrote {label} series in {time.perf_counter() - t:.1f} s")
            # round-robin over the loaders, one fresh process per run, so that background load
            # on a shared machine hits every loader alike; best time and largest peak are kept
            res: dict[str, dict[str, Any]] = {}
            for _ in range(args.repeat):
                for m in methods:
                    r = _measure(m, folder, 1)
                    prev = res.get(m)
                    if prev is None or "error" in prev:
                        res[m] = r
                    elif "error" not in r:
                        if r["seconds"] < prev["seconds"]:
                            prev["seconds"], prev["load_series_seconds"] = r["seconds"], r["load_series_seconds"]
                        prev["cpu_seconds"] = min(prev["cpu_seconds"], r["cpu_seconds"])
                        prev["peak_bytes"] = max(prev["peak_bytes"], r["peak_bytes"])
            results[label] = res
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    for label, res in results.items():
        print(f"\n{label}:")
        print(f"  {'loader':<11} {'seconds':>8} {'CPU s':>7} {'peak MiB':>9} {'peak/volume':>12}")
        for m, r in res.items():
            if "error" in r:
                print(f"  {m:<11} error: {r['error']}")
                continue
            extra = f"   (load_series alone {r['load_series_seconds']:.3f} s)" if m == "medviewer" else ""
            print(f"  {m:<11} {r['seconds']:8.3f} {r['cpu_seconds']:7.3f} {r['peak_bytes'] / 2**20:9.0f} "
                  f"{r['peak_bytes'] / volume_bytes:12.2f}{extra}")
        ours = res.get("medviewer", {})
        if "seconds" not in ours:
            continue
        for peer in ("simpleitk", "pydicom", "dcm2niix"):
            if "seconds" in res.get(peer, {}):
                print(f"  ratio medviewer / {peer}: {ours['seconds'] / res[peer]['seconds']:.2f} wall, "
                      f"{ours['cpu_seconds'] / max(res[peer]['cpu_seconds'], 1e-9):.2f} CPU time")
    checks = []
    unc, rle_res = results.get("uncompressed", {}), results.get("RLE", {})

    def ratio(res: dict[str, dict[str, Any]], peer: str) -> float | None:
        if "seconds" in res.get("medviewer", {}) and "seconds" in res.get(peer, {}):
            return float(res["medviewer"]["seconds"] / res[peer]["seconds"])
        return None

    for name, value, limit in (
        ("uncompressed vs SimpleITK", ratio(unc, "simpleitk"), 0.6),
        ("RLE vs SimpleITK", ratio(rle_res, "simpleitk"), 0.5),
        ("RLE vs dcm2niix", ratio(rle_res, "dcm2niix"), 2.0),
    ):
        if value is not None:
            checks.append(f"  {name}: {value:.2f} (target <= {limit}) {'ok' if value <= limit else 'MISSED'}")
    for label, res in results.items():
        if "peak_bytes" in res.get("medviewer", {}):
            r = res["medviewer"]["peak_bytes"] / volume_bytes
            checks.append(f"  peak memory {label}: {r:.2f} x volume (target <= 1.5) {'ok' if r <= 1.5 else 'MISSED'}")
    print(f"\ntargets (load average now {os.getloadavg()[0]:.1f}; other processes skew absolute times):\n"
          + "\n".join(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
