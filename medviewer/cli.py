"""Command-line entry point ``medviewer``.

``medviewer [PATH] [--demo]`` opens the viewer; ``medviewer <command> ...``
runs a headless command. Commands live in :mod:`medviewer.commands`, one
module each, discovered automatically; each defines ``register(subparsers)``
and imports its heavy dependencies lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
import sys
from collections.abc import Sequence

from medviewer import __version__
from medviewer.errors import CancelledError, MedViewerError


def _command_modules() -> list[str]:
    import medviewer.commands as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    """The parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="medviewer",
        description="MedViewer: DICOM viewer with local AI. Research use only, not for diagnosis. "
        "Run `medviewer [PATH]` or `medviewer --demo` to open the viewer.",
    )
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        module = importlib.import_module(f"medviewer.commands.{name}")
        module.register(sub)
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medviewer", description="Open the MedViewer window.")
    parser.add_argument("path", nargs="?", help="folder, DICOMDIR, .zip or DICOM file to open")
    parser.add_argument("--demo", action="store_true", help="open the bundled demo study")
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medviewer``; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    from medviewer.allocator import tune_malloc

    tune_malloc()  # process-wide allocator setting: the app's decision, not the loader's
    commands = set(_command_modules())
    if args_list and (args_list[0] in commands or args_list[0] in ("-h", "--help", "--version")):
        args = build_parser().parse_args(args_list)
        args.command_line = "medviewer " + shlex.join(args_list)  # provenance for model cards
        try:
            return int(args.func(args) or 0)
        except CancelledError as exc:
            print(f"\ncancelled: {exc}", file=sys.stderr)
            return 130
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except MedViewerError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2
    gui_args = build_gui_parser().parse_args(args_list)
    from medviewer.gui.app import run_app  # Qt only when the GUI is asked for

    return run_app(path=gui_args.path, demo=gui_args.demo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
