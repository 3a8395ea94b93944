"""The ``gelora`` command line.

Subcommands live in their own modules, each exposing ``register(subparsers)`` which adds a parser
whose ``func`` default takes the parsed namespace and returns an exit code. ``validate`` and
``report`` belong to the ``validation`` package (installed by the same distribution); they are
imported only when the command line is built, never by the library itself.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gelora._version import __version__
from gelora.errors import GeLoRAError

#: modules that contribute subcommands, in the order they appear in ``--help``
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "gelora.commands.ranks",
    "gelora.commands.estimate",
    "gelora.commands.models",
    "validation.commands.validate",
    "validation.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gelora",
        description=(
            "GeLoRA: per-layer LoRA ranks from the intrinsic dimension of hidden states "
            "(arXiv 2412.09250), with a validation suite."
        ),
    )
    parser.add_argument("--version", action="version", version=f"gelora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except GeLoRAError as exc:
        print(f"gelora {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
