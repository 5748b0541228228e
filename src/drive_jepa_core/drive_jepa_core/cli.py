"""``drive-jepa``: one command line for the whole offline side.

Each feature module contributes its subcommands through a ``register(subparsers)`` function listed in
``_COMMAND_MODULES``; a module that fails to import (optional dependency missing) is reported, not fatal.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules contributing subcommands, in the order `drive-jepa --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "drive_jepa_core.demo",
    "drive_jepa_core.world.cli",
    "drive_jepa_core.metrics.cli",
    "drive_jepa_core.pretrain.cli",
    "drive_jepa_core.train.cli",
    "drive_jepa_core.runtime.cli",
    "drive_jepa_core.replay.cli",
    "drive_jepa_core.closedloop.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drive-jepa",
        description=(
            "Drive-JEPA end-to-end planner: generate driving scenes, score trajectories with NAVSIM-faithful "
            "metrics, pretrain and train models, export and evaluate them. Run `drive-jepa COMMAND --help` for "
            "the options of each command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # pragma: no cover - only when an optional dependency is missing
            print(f"drive-jepa: commands from {module_name} unavailable: {exc}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from drive_jepa_core import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
