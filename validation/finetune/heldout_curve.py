"""Held-out scores during a learning-rate selection run: the curve the held-out convergence rule reads.

:func:`heldout_curve_callback` returns a ``transformers.TrainerCallback`` that scores the task's held-out
part (the ``TaskData.evaluate`` of a task built with ``heldout=``) at the given optimizer steps, except the
last one (the run's final score is taken after training, once). Each point is written atomically to
``<work_dir>/heldout_curve.json`` as soon as it exists, so a run resumed from a checkpoint keeps the
points it scored before the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json, read_json
from gelora.errors import DegenerateDataError

FILE_NAME = "heldout_curve.json"


def heldout_curve_callback(
    evaluate: Callable[[Any], tuple[dict[str, Any], dict[str, Any]]],
    metric: str,
    steps: Sequence[int],
    work_dir: str | Path,
    *,
    write: bool = True,
) -> Any:
    """A callback that records ``[step, score]`` of ``metric`` at each of ``steps`` (but the last).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(trainer) -> (metrics, eval_loss)`` of the task built with a held-out part.
    metric : str
        The primary metric recorded.
    steps : sequence of int
        Optimizer steps to score at (:func:`validation.finetune.convergence.heldout_steps`).
    work_dir : str or Path
        The run's work directory (the curve file lives there while the run lasts).
    write : bool
        Write the curve file (only the main process of a distributed run writes).

    Returns
    -------
    transformers.TrainerCallback
        With ``trainer`` to be set after the Trainer exists, and ``curve`` (list of [step, score]).
    """
    from transformers import TrainerCallback

    path = Path(work_dir) / FILE_NAME
    planned = sorted({int(s) for s in steps})[:-1]  # the final score comes from the run's own evaluation

    class HeldoutCurve(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.trainer: Any = None
            old = read_json(path) if path.exists() else None
            keep = old.get("curve") if isinstance(old, dict) and old.get("metric") == metric else None
            self.curve: list[list[Any]] = [list(p) for p in keep] if isinstance(keep, list) else []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            step = int(state.global_step)
            if step not in planned or any(p[0] == step for p in self.curve) or self.trainer is None:
                return control
            try:
                metrics, _ = evaluate(self.trainer)
            except DegenerateDataError:
                # e.g. a regression head still predicting one constant early on: Pearson is undefined
                # there; the point is recorded as missing instead of ending the run
                metrics = {}
            score = metrics.get(metric)
            value = float(score) if score is not None and math.isfinite(float(score)) else None
            self.curve.append([step, value])
            self.curve.sort(key=lambda p: p[0])
            if write:
                atomic_write_json(path, {"metric": metric, "curve": self.curve})
            return control

    return HeldoutCurve()


__all__ = ["FILE_NAME", "heldout_curve_callback"]
