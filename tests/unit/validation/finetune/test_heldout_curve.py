"""The held-out scoring callback of selection runs: scores at the planned steps, persists, resumes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gelora._io import read_json
from validation.finetune.heldout_curve import FILE_NAME, heldout_curve_callback


def _fake_evaluate(calls: list[int], state: SimpleNamespace) -> Any:
    def evaluate(trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        calls.append(state.global_step)
        return {"accuracy": state.global_step / 100}, {"loss": 1.0}

    return evaluate


def _drive(cb: Any, state: SimpleNamespace, steps: range) -> None:
    for s in steps:
        state.global_step = s
        cb.on_step_end(None, state, "control")


def test_scores_at_the_planned_steps_but_the_last(tmp_path: Path) -> None:
    calls: list[int] = []
    state = SimpleNamespace(global_step=0)
    cb = heldout_curve_callback(_fake_evaluate(calls, state), "accuracy", [3, 6, 9, 12], tmp_path)
    cb.trainer = object()
    _drive(cb, state, range(1, 13))
    assert calls == [3, 6, 9]  # step 12 is the run's own final evaluation
    assert cb.curve == [[3, 0.03], [6, 0.06], [9, 0.09]]
    assert read_json(tmp_path / FILE_NAME) == {
        "metric": "accuracy",
        "curve": [[3, 0.03], [6, 0.06], [9, 0.09]],
    }


def test_a_resumed_run_keeps_its_points_and_scores_only_the_rest(tmp_path: Path) -> None:
    calls: list[int] = []
    state = SimpleNamespace(global_step=0)
    first = heldout_curve_callback(_fake_evaluate(calls, state), "accuracy", [3, 6, 9, 12], tmp_path)
    first.trainer = object()
    _drive(first, state, range(1, 7))  # interrupted after step 6
    again = heldout_curve_callback(_fake_evaluate(calls, state), "accuracy", [3, 6, 9, 12], tmp_path)
    again.trainer = object()
    _drive(again, state, range(5, 13))  # resumed from a checkpoint at step 4
    assert calls == [3, 6, 9] and [p[0] for p in again.curve] == [3, 6, 9]
    # a file of another metric is not reused
    other = heldout_curve_callback(_fake_evaluate(calls, state), "pearson", [3, 6], tmp_path)
    assert other.curve == []


def test_non_finite_scores_are_recorded_as_missing(tmp_path: Path) -> None:
    state = SimpleNamespace(global_step=0)

    def evaluate(trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"pearson": float("nan")}, {}

    cb = heldout_curve_callback(evaluate, "pearson", [1, 2], tmp_path, write=False)
    cb.trainer = object()
    _drive(cb, state, range(1, 3))
    assert cb.curve == [[1, None]] and not (tmp_path / FILE_NAME).exists()
