"""Command-line pieces shared by the validation scripts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_output_args(p: argparse.ArgumentParser, tables: str, plot: str) -> None:
    """``--out`` (the JSON result), ``--render`` (print an existing result's tables) and ``--plot``."""
    p.add_argument("--out", required=False, help="write the JSON result here (required unless --render)")
    p.add_argument("--render", default=None, help=f"print the Markdown {tables} of an existing result JSON")
    p.add_argument("--plot", default=None, help=f"with --render: also write the {plot} (PNG) here")


def render_existing(
    args: argparse.Namespace,
    render: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], str], Any],
) -> bool:
    """With ``--render FILE``: print ``render(result)`` (and ``plot`` it to ``--plot``); True if done."""
    if not args.render:
        return False
    from gelora._io import read_json

    res = read_json(args.render)
    print(render(res), end="")
    if args.plot:
        plot(res, args.plot)
    return True
