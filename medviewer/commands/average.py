"""`medviewer average detector|denoiser BASE PARTNER --weight A`: a weight average of two models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "average",
        help="average the weights of two models fine-tuned from the same weights (a model soup)",
    )
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, helptext, partner_eg, out_help in (
        ("detector", "lesion detector (calibrated on the validation phantoms)", "a training run's --out",
         "folder for the averaged detector and its model card"),
        ("denoiser", "low-dose CT denoiser (written to OUT/model; `evaluate denoiser` scores it)",
         "a training run's OUT/model", "folder for the average (OUT/model/denoiser.*)"),
    ):
        q = models.add_parser(name, help=helptext)
        q.add_argument("base", type=Path, help=f"folder with {name}.safetensors + {name}.json (e.g. resources/models)")
        q.add_argument("partner", type=Path, help=f"folder of the second {name} (e.g. {partner_eg})")
        q.add_argument("--weight", type=float, required=True, metavar="A", help="weight of PARTNER in [0, 1]; BASE gets 1 - A")
        q.add_argument("--out", type=Path, required=True, help=out_help)
        q.add_argument("--version", required=True, help="version written to the model card")
        if name == "detector":
            q.add_argument("--data", type=Path, default=None, help="dataset cache folder (validation phantoms in DATA/val)")
            q.add_argument("--device", default="auto", help="auto, cpu or cuda")
            q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
            q.add_argument("--install", action="store_true", help="also write the average into resources/models")
        q.set_defaults(func=_run if name == "detector" else _run_denoiser)


def _run(args: argparse.Namespace) -> int:
    import torch

    from medviewer.progress import console_progress
    from medviewer.resources import cache_dir
    from medviewer.training.average_detector import average_detectors

    if args.threads:
        torch.set_num_threads(int(args.threads))
    data = args.data or cache_dir() / "detector_data"
    card = average_detectors(
        args.base, args.partner, args.weight, args.out, data, args.version,
        install=args.install, device=args.device, progress=console_progress("average "),
    )
    print(json.dumps({"validation": card["metrics"]["validation"], "calibration": card["calibration"]}, indent=2))
    return 0


def _run_denoiser(args: argparse.Namespace) -> int:
    from medviewer.training.average_denoiser import average_denoisers

    card = average_denoisers(args.base, args.partner, args.weight, args.out, args.version)
    print(f"wrote {args.out / 'model'}: {card['training']['method']}")
    return 0
