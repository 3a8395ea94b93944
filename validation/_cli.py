"""Command-line pieces shared by the validation scripts."""

from __future__ import annotations

import argparse
import math
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


def positive_number(text: str, name: str, *, within: str | None = None) -> float:
    """Parse a setting that must be a finite number > 0 (an environment variable, an option's value).

    The one parse (and the one pair of error messages) behind ``GELORA_STOP_GRACE_S``, ``--lr-multiplier``
    and ``--lr-grid``.

    Parameters
    ----------
    text : str
        The value as given; surrounding whitespace is ignored.
    name : str
        What the value is, as the user wrote it (``"GELORA_STOP_GRACE_S"``, ``"--lr-multiplier factor"``);
        the error message starts with it.
    within : str, optional
        The whole value ``text`` was taken from (``"adalora=fast"``), quoted in the message instead of
        ``text`` so that the user sees which item was wrong.

    Returns
    -------
    float
        The number.

    Raises
    ------
    gelora.errors.ConfigError
        ``"<name> must be a number, got '<value>'"`` when ``text`` is no number, ``"<name> must be a finite
        number > 0, got '<value>'"`` when it is zero, negative, NaN or infinite.
    """
    from gelora.errors import ConfigError

    shown = text if within is None else within
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {shown!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {shown!r}")
    return value


def positive_numbers(text: str, name: str) -> tuple[float, ...]:
    """Parse a comma-separated list of finite numbers > 0 (``"0.5,1,2"`` -> ``(0.5, 1.0, 2.0)``).

    Parameters
    ----------
    text : str
        The list as given; empty items (``"1,,2"``, a trailing comma) are ignored.
    name : str
        What the list is, as the user wrote it (``"--lr-grid"``); the error message starts with it.

    Returns
    -------
    tuple of float
        The numbers in the order given (at least one).

    Raises
    ------
    gelora.errors.ConfigError
        No item, or an item that :func:`positive_number` rejects (the message quotes the whole list).
    """
    from gelora.errors import ConfigError

    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"{name} must be a comma-separated list of numbers > 0, got {text!r}")
    return tuple(positive_number(v, name, within=text) for v in items)
