"""`medviewer train denoiser|detector`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("train", help="train a model on generated phantom data")
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, helptext in (
        ("denoiser", "GAN low-dose CT denoiser"),
        ("detector", "2.5D CNN + recurrent lesion detector"),
    ):
        q = models.add_parser(name, help=helptext)
        q.add_argument("--steps", type=int, default=None, help="training steps (default: the full schedule)")
        q.add_argument("--out", type=Path, default=None, help="run folder (checkpoints, curves); default runs/<model>")
        q.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --out")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default="auto", help="auto, cpu or cuda")
        q.add_argument("--batch-size", type=int, default=None)
        q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        q.add_argument("--data", type=Path, default=None, help="dataset cache folder")
        q.add_argument(
            "--init", type=Path, default=None, help="models folder whose weights start the run (fine-tuning)"
        )
        q.add_argument(
            "--minutes",
            type=float,
            default=None,
            help="wall-clock budget: the learning-rate schedule follows max(step/steps, time used/budget) "
            "and training stops when it is spent (the denoiser's budget includes building missing training "
            "pairs, the detector's only the optimisation; a run with --steps 1 into another folder builds them first)",
        )
        q.add_argument(
            "--install", action="store_true", help="write the final weights and model card into resources/models"
        )
        q.add_argument("--version", default=None, help="version written to the model card (default: the recipe's)")
        q.add_argument("--note", default=None, help="free-form note copied into the model card")
        if name == "denoiser":
            q.add_argument("--phantoms", type=int, default=None, help="body phantoms per pixel size (default 12)")
            q.add_argument("--head-phantoms", type=int, default=None, help="head phantoms per head pixel size (default 12; 0: none)")
            q.add_argument("--slices-per-phantom", type=int, default=None, help="training slices per phantom (default 8)")
            q.add_argument(
                "--leaves",
                type=int,
                default=None,
                help="sets of dead-leaves slices per body pixel size (random occluding shapes with CT values, a "
                "generic image prior; default 0)",
            )
            q.add_argument(
                "--images",
                type=int,
                default=None,
                help="sets of slices per body pixel size made from the sample packages' MR and radiograph images "
                "given CT values (real structure; no CT evaluation file; default 0)",
            )
            q.add_argument(
                "--photos",
                type=int,
                default=None,
                help="sets of slices per body pixel size made from the photographs bundled with scikit-image, given "
                "CT values as --images are (real-world structure; default 0)",
            )
            q.add_argument(
                "--lr",
                type=float,
                default=None,
                help="the generator's peak learning rate (default 1e-3, or 3e-4 with --init); it decays on a cosine",
            )
            q.add_argument(
                "--teacher",
                type=Path,
                default=None,
                metavar="MODELS",
                help="a trained denoiser (folder with denoiser.safetensors + .json) whose outputs the generator also "
                "learns from (distillation, e.g. from a larger model too slow to ship)",
            )
            q.add_argument(
                "--distill",
                type=float,
                default=None,
                metavar="SHARE",
                help="share of the --teacher's output in the pixel and edge targets (0-1; default 0.5)",
            )
            q.add_argument(
                "--refine",
                type=int,
                default=None,
                help="residual blocks at half resolution in the generator (default: as the --init weights, "
                "else 0); blocks added to trained weights start as the identity",
            )
            q.add_argument(
                "--psf-mm",
                type=float,
                nargs=2,
                metavar=("LOW", "HIGH"),
                default=None,
                help="draw each training phantom's in-plane scanner blur (Gaussian sigma, mm) log-uniformly "
                "from LOW..HIGH (default: all at 0.38 mm, a soft-tissue kernel)",
            )
            q.add_argument(
                "--cut",
                type=float,
                default=None,
                help="share of training slices cut straight to -1024 HU padding (field-of-view circle or mask) "
                "before the scanner is simulated (default 0)",
            )
            q.add_argument(
                "--air-patches",
                type=float,
                default=None,
                help="share of training patches drawn anywhere, air included (default 0: mostly-air "
                "patches are redrawn)",
            )
            q.add_argument(
                "--patch",
                type=int,
                default=None,
                metavar="PX",
                help="side of the square training patches in pixels, a multiple of 8 from 32 to 512 (default 96)",
            )
            q.add_argument(
                "--pixel-loss",
                choices=("l1", "rmse"),
                default=None,
                help="norm of the generator's pixel loss: l1 (default) or rmse, whose optimum is PSNR's and "
                "which weighs large errors (bone and air edges) more",
            )
            q.add_argument(
                "--gradient-weight",
                type=float,
                default=None,
                help="weight of the generator's edge term, an L1 loss on image gradients (default 0.5); "
                "lower trades edge sharpness for PSNR, whose optimum is the pixel term's",
            )
            q.add_argument(
                "--ssim-weight",
                type=float,
                default=None,
                help="weight of a structural term, 1 - SSIM as the evaluation computes it (default 0: off)",
            )
            q.add_argument(
                "--target",
                choices=("clean", "full"),
                default=None,
                help="what the generator learns to output: the noise-free phantom (default) or the "
                "simulated full-dose scan, which keeps full-dose noise",
            )
        else:
            q.add_argument(
                "--volumes",
                action="append",
                metavar="GROUP=TRAIN[/VAL]",
                help="training / validation phantom volumes of a group: chest (64/16), kidney (32/8), "
                "host-hu (32/8), head (32/8) or images (0/0: MR and radiograph images given CT values and moved "
                "along z, training only); repeatable; head=0/0 drops a group",
            )
            q.add_argument("--shape", default=None, help="training volume shape SLICESxROWSxCOLUMNS (default 40x256x256)")
            q.add_argument("--hard-negative-every", type=int, default=None, help="steps between hard-negative mining rounds (250)")
            q.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (100)")
            q.add_argument(
                "--refine",
                type=int,
                default=None,
                help="residual blocks at half resolution before the heads (default: as the --init weights, "
                "else 0); blocks added to trained weights start as the identity",
            )
            q.add_argument(
                "--window",
                action="append",
                metavar="LO:HI",
                help="add an input HU window (e.g. -20:100, narrow like a reading window for subtle soft-tissue "
                "lesions); repeatable; added to the --init weights' windows with zero weights at the start",
            )
            q.add_argument(
                "--paste",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop gets one more lesion pasted anywhere in the body "
                "(online copy-paste augmentation; default 0)",
            )
            q.add_argument(
                "--paste-edge",
                type=float,
                default=None,
                metavar="Q",
                help="share of the pasted lesions (--paste) placed against the edge of their host tissue, next to "
                "bone, air, fat or another organ, where lesions abut the skull or the spine (default 0)",
            )
            q.add_argument(
                "--ct-noise",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop gets simulated CT noise (quarter-dose noise of phantom scans, "
                "resampled like an input scan, scaled to about full..tenth dose) instead of white noise (default 0)",
            )
            q.add_argument(
                "--cut",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop is cut straight to -1024 HU padding (field-of-view circle, "
                "inner body mask or skull-strip-like region), so lesions also meet hard edges (default 0)",
            )
            q.add_argument(
                "--spatial",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop is cut from the volume rotated in-plane (up to +-30 degrees) "
                "and scaled (0.8-1.25x) about its centre, so poses, sizes and lattice positions vary (default 0)",
            )
            q.add_argument(
                "--spatial-scale",
                default=None,
                metavar="LO:HI",
                help="magnifications of the --spatial crops, drawn log-uniformly (default 0.8:1.25; e.g. 0.8:1.6 "
                "also shows the anatomy as a finer inference pass sees it: 1.4x makes the 1.4 mm grid a 1.0 mm one)",
            )
            q.add_argument(
                "--texture",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop's fat and soft tissue get correlated texture (SD 3-20 HU over "
                "1-4 mm, as real muscle, fat and brain vary), so lesions are found in textured tissue (default 0)",
            )
            q.add_argument(
                "--vessels",
                type=float,
                default=None,
                metavar="P",
                help="probability that a training crop gets a tube of enhanced-vessel HU pasted into soft tissue "
                "as a negative, so a bright vessel cross-section is not taken for a hyperdense lesion (default 0)",
            )
        q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.minutes is not None and args.minutes <= 0:
        raise SystemExit("--minutes must be positive")
    if args.model == "denoiser":
        from medviewer.training.train_denoiser import main
    else:
        from medviewer.training.train_detector import main
    return int(main(args) or 0)
