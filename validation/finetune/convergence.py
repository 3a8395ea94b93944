"""Training-loss curves of a cell and the rule that calls a schedule converged.

The rule (:func:`convergence`): with ``n`` logged losses and a window ``w = max(min_window,
ceil(window_fraction * n))``, compare the mean loss of the last ``w`` points (``last``) with the mean of
the ``w`` points before them (``previous``). The run has converged when at least ``min_points`` losses
were logged and the loss fell by no more than ``max(rtol * |previous|, atol)`` between the two windows,
i.e. the tail of the curve is a plateau. Averaging over windows makes a noisy plateau pass; a curve
that is still falling does not. A loss that *rises* between the windows also counts as converged here
(training is no longer improving it; the metric says whether it over-fitted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from gelora.errors import ConfigError

#: defaults of the rule (recorded in every cell with the numbers they produced)
RTOL = 0.02
ATOL = 0.01
WINDOW_FRACTION = 0.1
MIN_WINDOW = 2
MIN_POINTS = 20


def loss_curve(log_history: Iterable[dict[str, Any]]) -> list[list[float]]:
    """``[[step, loss], ...]`` from ``transformers.TrainerState.log_history`` (training-loss entries only).

    Parameters
    ----------
    log_history : iterable of dict
        The Trainer's log entries; those with ``"loss"`` and ``"step"`` are kept, in order.

    Returns
    -------
    list of [int, float]
        Step (optimizer steps) and mean training loss over the logging interval ending there.
    """
    out: list[list[Any]] = []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            out.append([int(entry["step"]), float(entry["loss"])])
    return out


def convergence(
    curve: Sequence[Sequence[float]],
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    window_fraction: float = WINDOW_FRACTION,
    min_window: int = MIN_WINDOW,
    min_points: int = MIN_POINTS,
) -> dict[str, Any]:
    """Whether a loss curve ends on a plateau (see the module docstring for the rule).

    Parameters
    ----------
    curve : sequence of (step, loss)
        Logged training losses in step order.
    rtol, atol : float
        Largest relative / absolute drop of the window means still called a plateau.
    window_fraction : float
        Window length as a fraction of the logged points, in (0, 0.5].
    min_window, min_points : int
        Smallest window, and fewest logged points for which the rule can say True.

    Returns
    -------
    dict
        ``converged`` (bool), ``rule`` (text), ``n_points``, ``window``, ``last_mean``, ``previous_mean``,
        ``relative_drop`` (None when not computable), ``rtol``, ``atol``, ``min_points``.
    """
    if not 0 < window_fraction <= 0.5:
        raise ConfigError(f"window_fraction must be in (0, 0.5], got {window_fraction}")
    if min_window < 1 or min_points < 2 * min_window:
        raise ConfigError("need min_window >= 1 and min_points >= 2 * min_window")
    losses = [float(p[1]) for p in curve]
    n = len(losses)
    w = max(int(min_window), math.ceil(window_fraction * n))
    rule = (
        f"mean loss of the last {window_fraction:.0%} of logged points (at least {min_window}) fell by at most "
        f"max({rtol:g} x previous, {atol:g}) from the mean of the {window_fraction:.0%} before; "
        f"at least {min_points} points"
    )
    record: dict[str, Any] = {
        "converged": False,
        "rule": rule,
        "n_points": n,
        "window": w,
        "last_mean": None,
        "previous_mean": None,
        "relative_drop": None,
        "rtol": rtol,
        "atol": atol,
        "min_points": min_points,
    }
    if n < 2 * w or not all(math.isfinite(v) for v in losses[-2 * w :]):
        record["reason"] = "too few logged points" if n < 2 * w else "non-finite loss"
        return record
    last = math.fsum(losses[-w:]) / w
    prev = math.fsum(losses[-2 * w : -w]) / w
    drop = prev - last
    record.update(
        last_mean=last,
        previous_mean=prev,
        relative_drop=drop / abs(prev) if prev != 0 else None,
    )
    if n < min_points:
        record["reason"] = f"only {n} logged points (< {min_points})"
        return record
    record["converged"] = bool(drop <= max(rtol * abs(prev), atol))
    return record


__all__ = ["ATOL", "MIN_POINTS", "MIN_WINDOW", "RTOL", "WINDOW_FRACTION", "convergence", "loss_curve"]
