"""`medviewer calibrate detector MODELS --passes ...`: new inference passes, calibration re-fitted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("calibrate", help="re-fit a model's calibration for other inference passes (weights unchanged)")
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    q = models.add_parser("detector", help="lesion detector")
    q.add_argument("base", type=Path, help="folder with detector.safetensors + detector.json (e.g. resources/models)")
    q.add_argument("--passes", nargs="+", required=True, metavar="SCALE[:flip][:shiftN]",
                   help="in-plane scales of the internal grid, e.g. 1.0:flip 1.2 (1.2: a 1.17 mm pass); "
                   ":shiftN also runs the pass on the grid shifted by N (even) internal pixels")
    q.add_argument("--out", type=Path, required=True, help="folder for the detector and its new model card")
    q.add_argument("--version", required=True, help="version written to the model card")
    q.add_argument("--native", type=int, default=0, metavar="N",
                   help="fit the calibration on N phantoms rendered at 0.7 mm (512 x 512) instead of the validation "
                   "phantoms at the internal grid, which a finer pass sees only interpolated")
    q.add_argument("--textured", action="store_true",
                   help="fit the calibration on the validation phantoms plain and with tissue texture, candidates "
                   "pooled (the textured ones carry the false candidates that the mottling of real tissue raises)")
    q.add_argument("--images", type=int, default=0, metavar="N",
                   help="pool the candidates of N volumes built like the real-background test volumes, from image "
                   "slices (MR and radiograph images given CT values, never a test slice), into the validation fit")
    q.add_argument("--data", type=Path, default=None, help="dataset cache folder (validation phantoms in DATA/val)")
    q.add_argument("--device", default="auto", help="auto, cpu or cuda")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--install", action="store_true", help="also write it into resources/models")
    q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from medviewer.progress import console_progress
    from medviewer.resources import cache_dir
    from medviewer.training.recalibrate_detector import parse_pass, recalibrate_detector

    if args.threads:
        torch.set_num_threads(int(args.threads))
    passes = [parse_pass(s) for s in args.passes]
    data = args.data or cache_dir() / "detector_data"
    card = recalibrate_detector(args.base, passes, args.out, data, args.version, install=args.install,
                                device=args.device, progress=console_progress("calibrate "), native=args.native,
                                textured=args.textured, images=args.images)
    print(json.dumps({"inference": card["inference"], "validation": card["metrics"]["validation"],
                      "calibration": card["calibration"]}, indent=2))
    return 0
