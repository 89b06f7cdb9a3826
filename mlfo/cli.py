"""The ``mlfo`` command line: one sub-command per job, each registered by its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from mlfo import __version__
from mlfo.errors import MLFOError

# Each module names its sub-commands in ``COMMANDS`` (name -> help) and exposes
# ``register(subparsers)``, which adds them with every option and sets ``func(args) -> int``.
# Only the module of the command being run registers in full (its options may need torch);
# the others are listed by name, so ``mlfo --help`` stays fast.
COMMAND_MODULES = [
    "mlfo.commands.demo",
    "mlfo.commands.demo_data",
    "mlfo.commands.data",
    "mlfo.commands.pretrain",
    "mlfo.commands.evaluate",
    "mlfo.commands.inspect",
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, complete for the command in ``argv`` (every command when None is given)."""
    parser = argparse.ArgumentParser(
        prog="mlfo",
        description="Self-supervised video representation learning with MLFO.",
    )
    parser.add_argument("--version", action="version", version=f"mlfo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        if wanted is None or wanted in module.COMMANDS:
            module.register(subparsers)
        else:
            for command, help_text in module.COMMANDS.items():
                subparsers.add_parser(command, help=help_text)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` once. A command with ``KEY=VALUE`` overrides (``nargs="*"``) takes them
    anywhere among its options (argparse alone stops the list at the first option); every
    other leftover is the usual usage error."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) \
            and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # in order: argparse's list held the ones before the first option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parse(parser, argv)
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
