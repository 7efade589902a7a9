"""`medviewer evaluate denoiser|detector`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("evaluate", help="evaluate a shipped model against classical baselines")
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name in ("denoiser", "detector"):
        q = models.add_parser(name, help=f"evaluate the {name}")
        q.add_argument("--out", type=Path, default=Path(f"evaluation/{name}"), help="folder for tables and PNGs")
        q.add_argument("--quick", action="store_true", help="small evaluation (for tests)")
        q.add_argument("--device", default="auto", help="auto, cpu or cuda")
        q.add_argument("--seed", type=int, default=1000, help="seed of the held-out phantoms")
        q.add_argument("--weights", type=Path, default=None, help="models folder (default: resources/models)")
        if name == "detector":
            q.add_argument(
                "--selection",
                action="store_true",
                help="score only the native-resolution selection phantoms (20 at 0.7 mm, seeds 2,000,000+), where "
                "candidates are chosen apart from the test volumes; writes OUT/selection.json",
            )
        q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.model == "denoiser":
        from medviewer.training.evaluate_denoiser import main
    else:
        from medviewer.training.evaluate_detector import main
    return int(main(args) or 0)
