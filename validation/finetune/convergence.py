"""Training-loss curves of a cell and the rule that calls a schedule converged.

The rule (:func:`convergence`): with ``n`` logged losses and a window ``w = max(min_window,
ceil(window_fraction * n))``, compare the mean loss of the last ``w`` points (``last``) with the mean of
the ``w`` points before them (``previous``). The run has converged when at least ``min_points`` losses
were logged and the loss fell by no more than ``max(rtol * |previous|, atol)`` between the two windows,
i.e. the tail of the curve is a plateau. Averaging over windows makes a noisy plateau pass; a curve
that is still falling does not. A loss that *rises* between the windows also counts as converged here
(training is no longer improving it; the metric says whether it over-fitted).

The training loss is a weak witness on small tasks: a model that can memorise its training set keeps
lowering it long after the held-out score stopped moving (measured: MiniLM on STS-B at 25 epochs, full
fine-tuning's loss still falls ~10 % per window at 0.10). Under learning-rate selection the protocol
therefore judges convergence on **held-out scores** (:func:`heldout_convergence`): the selection run
scores its held-out part of the training data at :data:`HELDOUT_FRACTIONS` of its steps, and the
schedule has converged when the score at the end is at most ``tol`` (one point of the metric) above the
best score reached before the last :data:`HELDOUT_TAIL` of the steps, i.e. the last 30 % of the schedule
bought less than one point. :func:`cell_convergence` combines the two into the record of a cell: the
held-out rule of the selection run at the chosen rate when there is one (``basis: "heldout"``), else the
training-loss rule (``basis: "train_loss"``).

Limitation, stated in the report: no rule on one curve can tell a run stuck on a long plateau (a flat
curve at a bad score, e.g. STS-B at the label-variance loss ~2.0 for 1-3 epochs) from a finished one;
the protocol guards against it with schedules far longer than the observed escape times, and the
report shows every curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gelora.errors import ConfigError

#: defaults of the rule (recorded in every cell with the numbers they produced)
RTOL = 0.02
ATOL = 0.01
WINDOW_FRACTION = 0.1
MIN_WINDOW = 2
MIN_POINTS = 20
#: fractions of the planned steps at which a selection run scores its held-out part
HELDOUT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: the tail of the schedule whose gain the held-out rule bounds
HELDOUT_TAIL = 0.3
#: largest gain over the tail still called converged, in units of the metric's scale (1 point)
HELDOUT_TOL = 0.01
#: metrics reported in percent (SQuAD's official scripts); every other metric lies in [-1, 1]
PERCENT_METRICS = frozenset(
    {"exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1"}
)


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


def heldout_steps(train_steps: int, fractions: Sequence[float] = HELDOUT_FRACTIONS) -> list[int]:
    """The optimizer steps at which a run of ``train_steps`` steps scores its held-out part (sorted, unique)."""
    if train_steps < 1:
        raise ConfigError(f"train_steps must be >= 1, got {train_steps}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ConfigError(f"held-out fractions must lie in (0, 1], got {list(fractions)}")
    return sorted({max(1, round(f * train_steps)) for f in fractions})


def heldout_convergence(
    curve: Sequence[Sequence[float]],
    *,
    total_steps: int,
    metric: str,
    tail: float = HELDOUT_TAIL,
    tol: float = HELDOUT_TOL,
    min_points: int = len(HELDOUT_FRACTIONS),
) -> dict[str, Any]:
    """Whether the held-out score stopped improving over the last ``tail`` of the schedule.

    Parameters
    ----------
    curve : sequence of (step, score)
        Held-out primary-metric scores in step order; the last point is the end of training.
    total_steps : int
        The run's planned optimizer steps.
    metric : str
        The primary metric's name (its scale: :data:`PERCENT_METRICS` are in percent).
    tail : float
        Fraction of the schedule, in (0, 1), whose gain is bounded.
    tol : float
        Largest gain still called converged, as a fraction of the metric's scale (0.01: one point).
    min_points : int
        Fewest scored points (and at least one before the tail) for which the rule can say True; by
        default every point of :data:`HELDOUT_FRACTIONS`, so a run of fewer steps than that is never
        called converged.

    Returns
    -------
    dict
        ``converged`` (bool), ``basis`` ("heldout"), ``rule`` (text), ``metric``, ``curve``, ``final``,
        ``best_before_tail``, ``gain`` (final - best_before_tail, None when not computable), ``rise`` (final
        - first scored point), ``tol`` (in the metric's units), ``tail``; ``reason`` when ``converged`` is False for want of data.
    """
    if not 0 < tail < 1:
        raise ConfigError(f"tail must be in (0, 1), got {tail}")
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    tol_units = float(tol) * scale
    # missing (None) and non-finite scores are kept as None in the record (JSON has no NaN)
    steps = [int(p[0]) for p in curve]
    values = [finite_or_none(p[1]) for p in curve]
    pts: list[list[Any]] = [[s, v] for s, v in zip(steps, values, strict=True)]
    cut = (1.0 - tail) * total_steps
    record: dict[str, Any] = {
        "converged": False,
        "basis": "heldout",
        "rule": (
            f"held-out {metric} at the end of training at most {tol_units:g} above its best before the last "
            f"{tail:.0%} of the steps (scored at {len(pts)} points)"
        ),
        "metric": metric,
        "curve": pts,
        "final": None,
        "best_before_tail": None,
        "gain": None,
        "tol": tol_units,
        "tail": tail,
    }
    before = [v for s, v in zip(steps, values, strict=True) if s <= cut + 1e-9]
    if len(pts) < min_points or not before:
        record["reason"] = f"only {len(pts)} held-out scores ({len(before)} before the tail)"
        return record
    final = values[-1] if values else None
    if final is None or all(v is None for v in before):
        record["reason"] = "non-finite held-out score"
        return record
    best = max(v for v in before if v is not None)
    first = next(v for v in values if v is not None)
    gain = final - best
    # rise: what the whole run bought after its first scored point; near 0 on a converged curve means the
    # run never left its starting level (a plateau the rule cannot tell from a finished run; shown, not judged)
    record.update(
        final=final, best_before_tail=best, gain=gain, rise=final - first, converged=bool(gain <= tol_units)
    )
    return record


def boundary_reading(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """How a held-out record would read if its evaluation placed at the tail's cut counted before the tail.

    The evaluations lie at rounded steps (:func:`heldout_steps`: ``round(f * steps)``, half to even) while the
    cut is ``(1 - tail) * steps`` unrounded, so when that product is not whole the evaluation meant for the
    cut can lie up to half a step past it and count in the tail (CoLA's 6,025 steps: cut 4,217.5, evaluation 4,218;
    SQuAD v1.1's 1,377: 963.9 and 964); elsewhere it lies on the cut or before it. This reports the other
    reading, never used for a verdict (the rule is applied as written: :func:`heldout_convergence`).

    Parameters
    ----------
    record : mapping
        A :func:`heldout_convergence` record (``curve``, ``tail``, ``tol``, ``final``, ``gain``,
        ``best_before_tail``); the run's steps are its last evaluation's (the schedule's end:
        :data:`HELDOUT_FRACTIONS` ends at 1.0), checked against the record's own best before the tail.

    Returns
    -------
    dict or None
        ``step`` (the evaluation past the cut), ``cut``, ``gain`` (final less the best up to and including
        that evaluation), ``converged`` (that gain within ``tol``); None when no evaluation lies within half
        a step past the cut, the record has no gain, or its cut cannot be rebuilt.
    """
    curve = record.get("curve")
    tail, tol, final = record.get("tail"), record.get("tol"), finite_or_none(record.get("final"))
    if not curve or tail is None or tol is None or final is None or record.get("gain") is None:
        return None
    points = [(int(p[0]), finite_or_none(p[1])) for p in curve]
    cut = (1.0 - float(tail)) * points[-1][0]
    # the record does not keep its planned steps: the cut rebuilt from the last evaluation must give the
    # record's own best before the tail, else this is not the reading of that record
    ruled = [v for st, v in points if st <= cut + 1e-9 and v is not None]
    if not ruled or finite_or_none(record.get("best_before_tail")) != max(ruled):
        return None
    near = [st for st, _ in points if cut + 1e-9 < st <= cut + 0.5 + 1e-9]
    if not near:
        return None
    gain = final - max(v for st, v in points if st <= near[0] and v is not None)
    return {"step": near[0], "cut": cut, "gain": gain, "converged": bool(gain <= float(tol))}


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` when that is a finite number, else None (None, NaN, inf, or not a number): a score
    that can enter a comparison."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def cell_convergence(
    train_loss_record: dict[str, Any], selection: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The convergence record of a cell: held-out based when its learning-rate selection scored a curve.

    Parameters
    ----------
    train_loss_record : dict
        :func:`convergence` of the cell's own training-loss curve (kept as a diagnostic).
    selection : dict, optional
        The cell's ``lr_selection`` record; its ``runs[<chosen>]["convergence"]`` is used when it is
        held-out based (the selection run at the chosen rate, same schedule, on the training part).

    Returns
    -------
    dict
        ``converged``, ``basis`` ("heldout" or "train_loss"), ``rule``; with basis "heldout" also
        ``heldout`` (the selection run's record, with ``seed``, ``learning_rate``) and ``train_loss``
        (``train_loss_record``); with basis "train_loss" the fields of ``train_loss_record``.
    """
    held = None
    if selection and selection.get("chosen") is not None:
        from validation.finetune.lr_select import lr_key

        run = (selection.get("runs") or {}).get(lr_key(float(selection["chosen"]))) or {}
        conv = run.get("convergence")
        if isinstance(conv, dict) and conv.get("basis") == "heldout":
            held = {k: v for k, v in conv.items() if k != "train_loss"}
    if held is None:
        return {**train_loss_record, "basis": "train_loss"}
    return {
        "converged": bool(held.get("converged")),
        "basis": "heldout",
        "rule": "selection run at the chosen rate: " + str(held.get("rule")),
        "heldout": {
            **held,
            "seed": selection.get("train_seed") if selection else None,
            "learning_rate": selection.get("chosen") if selection else None,
        },
        "train_loss": train_loss_record,
    }


__all__ = [
    "ATOL",
    "HELDOUT_FRACTIONS",
    "HELDOUT_TAIL",
    "HELDOUT_TOL",
    "MIN_POINTS",
    "MIN_WINDOW",
    "PERCENT_METRICS",
    "RTOL",
    "WINDOW_FRACTION",
    "boundary_reading",
    "cell_convergence",
    "convergence",
    "finite_or_none",
    "heldout_convergence",
    "heldout_steps",
    "loss_curve",
]
