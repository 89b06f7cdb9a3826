"""The ``mlfo`` command line: one sub-command per job, each registered by its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from mlfo import __version__
from mlfo.errors import MLFOError

# Each module exposes ``register(subparsers)``, which adds its sub-commands and sets
# ``func(args) -> int`` on them. Kept as names so ``mlfo --help`` stays fast.
COMMAND_MODULES = [
    "mlfo.commands.demo",
    "mlfo.commands.demo_data",
    "mlfo.commands.data",
    "mlfo.commands.pretrain",
    "mlfo.commands.evaluate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlfo",
        description="Self-supervised video representation learning with MLFO.",
    )
    parser.add_argument("--version", action="version", version=f"mlfo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MLFOError as err:
        print(f"mlfo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlfo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
