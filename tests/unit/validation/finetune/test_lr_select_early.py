"""One-rate selection grids: cells train beside the selection run instead of after it (one wave, not two),
and pick the selection's record up when they finish; multi-rate grids still wait for the choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import validation.finetune.runner as runner_mod
from gelora._io import atomic_write_json
from validation.finetune.claims import try_claim
from validation.finetune.grid import GridOutcome, attempt_cells, hold_cell, release_cell
from validation.finetune.lr_select import (
    SelectionHeld,
    lr_key,
    select_learning_rate,
    selection_done,
    selection_jobs,
    selection_path,
    single_rate,
)
from validation.finetune.runner import cell_path, failure_path, get_profile, read_cell, run_cell


def _profile(grid: tuple[float, ...]) -> Any:
    return replace(get_profile("test"), name="paper", lr_select=True, lr_grid=grid, learning_rate=1e-3)


class _Recorder:
    """Stands in for ``train_and_score``: records whether a selection run or a cell trained, in order."""

    def __init__(self) -> None:
        self.order: list[tuple[str, str, float]] = []

    def __call__(self, task: str, method: str, seed: int, **kw: Any) -> dict[str, Any]:
        kind = "select" if kw.get("heldout") is not None else "cell"
        lr = float(kw["learning_rate"])
        self.order.append((kind, method, lr))
        held = kw.get("heldout")
        conv: dict[str, Any] = {"converged": True, "rule": "fake"}
        if held is not None:
            conv = {"converged": True, "basis": "heldout", "rule": "fake held-out"}
        return {
            "schema": runner_mod.CELL_SCHEMA,
            "task": task,
            "method": method,
            "seed": seed,
            "budget": {},
            "wall_time_s": 0.1,
            "metrics": {"accuracy": 0.5 + lr},
            "train": {"steps": 3, "convergence": conv, "train_time_s": 0.1},
            "data": {"heldout": {"n": 5, "of": 50, "seed": 0}} if held is not None else {},
            "config": {"profile": {}},
        }


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    rec = _Recorder()
    monkeypatch.setattr(runner_mod, "train_and_score", rec)
    return rec


def test_single_rate_is_the_rate_of_a_one_rate_grid_only() -> None:
    assert single_rate(_profile((1.0,)), "lora") == 1e-3
    assert single_rate(_profile((0.5,)), "lora") == 5e-4
    assert single_rate(_profile((0.5, 1.0, 2.0)), "lora") is None
    assert single_rate(replace(_profile((1.0,)), lr_select=False), "lora") is None


def test_one_rate_cell_trains_first_then_records_the_selection(tmp_path: Path, recorder: _Recorder) -> None:
    run_cell("rte", "lora", 0, profile=_profile((1.0,)), run_dir=tmp_path, device="cpu")
    assert [k for k, _, _ in recorder.order] == ["cell", "select"]
    cell = read_cell(cell_path(tmp_path, "rte", "lora", 0))
    assert cell["lr_selection"]["chosen"] == 1e-3 and cell["lr_selection"]["done"] is True
    conv = cell["train"]["convergence"]
    assert conv["basis"] == "heldout" and conv["heldout"]["learning_rate"] == 1e-3
    # the next seed reuses the finished selection: one more cell, no second selection run
    run_cell("rte", "lora", 1, profile=_profile((1.0,)), run_dir=tmp_path, device="cpu")
    assert [k for k, _, _ in recorder.order] == ["cell", "select", "cell"]


def test_the_selection_record_keeps_how_each_rate_resumed(
    tmp_path: Path, recorder: _Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate's entry holds its run's ``resumed_from`` and ``restarted_discarding`` (``ckpt_carry verify``
    tells a carried selection run that resumed from one that started over: the held-out curve cannot)."""
    real = recorder.__call__
    resumed = "lr_select/work/rte__lora__lr0.001/checkpoint-3"

    def resuming(task: str, method: str, seed: int, **kw: Any) -> dict[str, Any]:
        cell = real(task, method, seed, **kw)
        selection = kw.get("heldout") is not None
        cell["train"].update(
            resumed_from=resumed if selection else None,
            restarted_discarding="lr_select/work/old" if selection else None,
        )
        return cell

    monkeypatch.setattr(runner_mod, "train_and_score", resuming)
    run_cell("rte", "lora", 0, profile=_profile((1.0,)), run_dir=tmp_path, device="cpu")
    rate = json.loads(selection_path(tmp_path, "rte", "lora").read_text())["runs"]["0.001"]
    assert rate["resumed_from"] == resumed and rate["restarted_discarding"] == "lr_select/work/old"


def test_multi_rate_cell_still_waits_for_the_choice(tmp_path: Path, recorder: _Recorder) -> None:
    run_cell("rte", "lora", 0, profile=_profile((0.5, 1.0, 2.0)), run_dir=tmp_path, device="cpu")
    assert recorder.order == [
        ("select", "lora", 5e-4),
        ("select", "lora", 1e-3),
        ("select", "lora", 2e-3),
        ("cell", "lora", 2e-3),  # the fake's score grows with the rate: 2e-3 chosen
    ]


def test_select_without_waiting_returns_none_while_another_worker_runs_it(
    tmp_path: Path, recorder: _Recorder
) -> None:
    profile = _profile((1.0,))
    path = selection_path(tmp_path, "rte", "lora")
    claim = try_claim(path.with_name(path.stem + ".claim"), note="other worker")
    assert claim is not None
    with claim:
        assert select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, wait=False) is None
    assert recorder.order == []
    rec = select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, wait=False)
    assert rec is not None and rec["chosen"] == 1e-3 and recorder.order == [("select", "lora", 1e-3)]


def test_selection_jobs_lists_unfinished_one_rate_pairs_in_cell_order(tmp_path: Path) -> None:
    cells = [("rte", "lora", 0), ("rte", "lora", 1), ("stsb", "gelora", 0), ("rte", "full", 0)]
    assert selection_jobs(cells, _profile((1.0,)), tmp_path) == [
        ("rte", "lora"),
        ("stsb", "gelora"),
        ("rte", "full"),
    ]
    assert selection_jobs(cells, _profile((0.5, 1.0)), tmp_path) == []  # cells wait for a real choice
    atomic_write_json(selection_path(tmp_path, "stsb", "gelora"), {"done": True})
    assert selection_done(tmp_path, "stsb", "gelora") and not selection_done(tmp_path, "rte", "lora")

    def finished(t: str, m: str, s: int) -> bool:
        return m == "full"

    assert selection_jobs(cells, _profile((1.0,)), tmp_path, is_done=finished) == [("rte", "lora")]


def _attempt(cells: list[tuple[str, str, int]], run_dir: Path, outcome: GridOutcome) -> list[tuple[str, str]]:
    """One worker's walk over ``cells`` (one-rate profile); returns the progress lines it reported."""
    seen: list[tuple[str, str]] = []
    attempt_cells(
        cells,
        outcome,
        profile=_profile((1.0,)),
        run_dir=run_dir,
        data_dir=None,
        device="cpu",
        keep_going=False,
        keep_checkpoints=False,
        progress=lambda name, status: seen.append((name, status)),
        stale_after=600.0,
    )
    return seen


def test_a_worker_starts_the_selection_before_its_cells(tmp_path: Path, recorder: _Recorder) -> None:
    cells = [("rte", "lora", 0), ("rte", "lora", 1), ("rte", "gelora", 0)]
    seen = _attempt(cells, tmp_path, GridOutcome())
    assert [k for k, _, _ in recorder.order] == ["select", "select", "cell", "cell", "cell"]
    assert [m for _, m, _ in recorder.order[:2]] == ["lora", "gelora"]
    assert ("rte__lora__lr_select", "done") in seen
    for s in (0, 1):
        cell = read_cell(cell_path(tmp_path, "rte", "lora", s))
        assert cell["lr_selection"]["scores"] == {lr_key(1e-3): 0.5 + 1e-3}


def test_a_failed_selection_job_is_left_to_the_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder()
    calls = {"select": 0}

    def flaky(task: str, method: str, seed: int, **kw: Any) -> dict[str, Any]:
        if kw.get("heldout") is not None:
            calls["select"] += 1
            if calls["select"] == 1:
                raise RuntimeError("out of memory")  # the worker's selection job fails once
        return rec(task, method, seed, **kw)

    monkeypatch.setattr(runner_mod, "train_and_score", flaky)
    outcome = GridOutcome()
    seen = _attempt([("rte", "lora", 0)], tmp_path, outcome)
    assert ("rte__lora__lr_select", "failed (RuntimeError), left to the cells") in seen
    # the cell trained, then ran the selection itself (second try) and recorded it
    assert [k for k, _, _ in rec.order] == ["cell", "select"] and outcome.ran == ["rte__lora__seed0"]
    assert read_cell(cell_path(tmp_path, "rte", "lora", 0))["lr_selection"]["done"] is True


def test_a_held_selection_is_neither_started_nor_waited_for(tmp_path: Path, recorder: _Recorder) -> None:
    profile = _profile((0.5, 1.0, 2.0))
    hold_cell(tmp_path, "rte__lora")
    assert selection_jobs([("rte", "lora", 0)], _profile((1.0,)), tmp_path) == []
    for wait in (True, False):
        with pytest.raises(SelectionHeld, match="rte__lora is held"):
            select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, wait=wait)
    # a multi-rate cell needs the choice before training: it is held, not failed, and trains nothing
    outcome = GridOutcome()
    attempt_cells(
        [("rte", "lora", 0)],
        outcome,
        profile=profile,
        run_dir=tmp_path,
        data_dir=None,
        device="cpu",
        keep_going=False,
        keep_checkpoints=False,
        progress=None,
        stale_after=600.0,
    )
    assert outcome.held == ["rte__lora__seed0"] and not outcome.failed and recorder.order == []
    release_cell(tmp_path, "rte__lora")
    rec = select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path)
    assert rec is not None and rec["done"] and len(recorder.order) == 3
    hold_cell(tmp_path, "rte__lora")  # a finished selection is read back whatever its hold says
    assert select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path) == rec


def test_a_cell_whose_selection_is_held_while_it_trains_is_held_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rate: the cell trains beside the selection run and asks for its record after training; a hold put
    on the selection meanwhile (triage) leaves the cell unfinished (no result, no failure record), not failed."""
    rec = _Recorder()

    def train_then_hold(task: str, method: str, seed: int, **kw: Any) -> dict[str, Any]:
        out = rec(task, method, seed, **kw)
        hold_cell(tmp_path, f"{task}__{method}", reason="triage")
        return out

    monkeypatch.setattr(runner_mod, "train_and_score", train_then_hold)
    outcome = GridOutcome()
    with monkeypatch.context() as m:  # no selection job before the cell: its selection is still to run after
        m.setattr("validation.finetune.lr_select.selection_jobs", lambda *a, **k: [])
        seen = _attempt([("rte", "lora", 0)], tmp_path, outcome)
    assert rec.order == [("cell", "lora", 1e-3)]  # the cell trained; the held selection did not start
    assert (
        outcome.held == ["rte__lora__seed0"] and not outcome.failed and ("rte__lora__seed0", "held") in seen
    )
    assert not cell_path(tmp_path, "rte", "lora", 0).exists()
    assert not failure_path(tmp_path, "rte", "lora", 0).exists()
    assert not list((tmp_path / "claims").glob("*.claim"))  # released
