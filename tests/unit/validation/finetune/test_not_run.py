"""Tasks without offline data (MNLI, QQP): recorded as "not run: no offline data", the grid goes on with the
other tasks, the command exits 0 when nothing else went wrong, and summary and verdicts list them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from gelora._io import read_json
from validation.finetune import grid as G
from validation.finetune.grid import NO_OFFLINE_DATA, GridOutcome, format_summary, run_grid, summarise
from validation.finetune.runner import (
    MissingDataError,
    cell_path,
    failure_path,
    get_profile,
    record_failure,
)
from validation.finetune.verdicts import (
    compact_summary,
    compute_verdicts,
    format_verdicts,
    glue_average,
    merge_summaries,
)


class FakeCells:
    """Stands in for ``run_cell``: MNLI/QQP have no data, ``boom`` cells raise, the rest write a result."""

    def __init__(self, gridfix: Any, broken: frozenset[str] = frozenset()) -> None:
        self.gridfix = gridfix
        self.broken = broken
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, task: str, method: str, seed: int, *, run_dir: Path, **_: Any) -> dict[str, Any]:
        self.calls.append((task, method, seed))
        if task in ("mnli", "qqp"):
            raise MissingDataError(f"not run: no offline data for {task} (no file glue/{task.upper()}/train)")
        if method in self.broken:
            raise RuntimeError(f"{method} exploded")
        self.gridfix.write_cell(Path(run_dir), task, method, seed, 0.8, profile="test")
        return {}


def test_grid_records_not_run_tasks_and_finishes_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any
) -> None:
    fake = FakeCells(gridfix)
    monkeypatch.setattr(G, "run_cell", fake)
    run = tmp_path / "run"
    out = run_grid(
        ["mnli", "rte", "qqp"],
        ["lora", "full"],
        [0, 1],
        profile=get_profile("test"),
        run_dir=run,
        keep_going=False,  # a task without data is not an error: even --stop-on-error goes on
    )
    assert out.failed == [] and out.errors == {}
    assert len(out.ran) == 4 and all(n.startswith("rte__") for n in out.ran)
    assert sorted(out.not_run) == sorted(
        f"{t}__{m}__seed{s}" for t in ("mnli", "qqp") for m in ("lora", "full") for s in (0, 1)
    )
    assert set(out.not_run_tasks()) == {"mnli", "qqp"}
    assert "no file glue/MNLI/train" in out.not_run_tasks()["mnli"]
    # the data is looked for once per task; its other cells are recorded without trying again
    assert [c for c in fake.calls if c[0] == "mnli"] == [("mnli", "lora", 0)]
    for s in (0, 1):
        rec = read_json(failure_path(run, "qqp", "full", s))
        assert rec["not_run"] == "no offline data" and rec["error"] == "MissingDataError"
        assert not cell_path(run, "qqp", "full", s).exists()
    summary = summarise(run)
    assert summary["not_run_tasks"] == [
        {"task": "mnli", "reason": NO_OFFLINE_DATA, "n_cells": 4},
        {"task": "qqp", "reason": NO_OFFLINE_DATA, "n_cells": 4},
    ]
    assert {m["reason"] for m in summary["missing"]} == {NO_OFFLINE_DATA}
    text = format_summary(summary)
    assert "mnli: not run: no offline data (all 4 planned cell(s))" in text
    assert "missing mnli" not in text  # one line per task, not one per cell
    # a rerun keeps the finished cells and records the missing tasks again
    again = run_grid(["mnli", "rte"], ["lora", "full"], [0, 1], profile=get_profile("test"), run_dir=run)
    assert len(again.skipped) == 4 and len(again.not_run) == 4 and again.failed == []


def test_a_real_failure_is_still_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any
) -> None:
    monkeypatch.setattr(G, "run_cell", FakeCells(gridfix, broken=frozenset({"full"})))
    out = run_grid(["mnli", "rte"], ["lora", "full"], [0], profile=get_profile("test"), run_dir=tmp_path)
    assert out.failed == ["rte__full__seed0"] and "full exploded" in out.errors["rte__full__seed0"]
    assert set(out.not_run) == {"mnli__lora__seed0", "mnli__full__seed0"}
    summary = summarise(tmp_path)
    assert summary["not_run_tasks"] == [{"task": "mnli", "reason": NO_OFFLINE_DATA, "n_cells": 2}]
    assert "missing rte full seed0: failed: RuntimeError: full exploded" in format_summary(summary)


def test_worker_outcomes_are_separated_by_their_failure_records(tmp_path: Path) -> None:
    # workers report only through files: a failure record with not_run moves the cell to not_run
    record_failure(tmp_path, "qqp", "lora", 0, MissingDataError("not run: no offline data for qqp (x)"))
    record_failure(tmp_path, "rte", "lora", 0, RuntimeError("out of memory"))
    out = GridOutcome(
        failed=["qqp__lora__seed0", "rte__lora__seed0"],
        errors={"qqp__lora__seed0": "MissingDataError: ...", "rte__lora__seed0": "RuntimeError: oom"},
    )
    G._separate_not_run(out, tmp_path)
    assert out.failed == ["rte__lora__seed0"] and list(out.errors) == ["rte__lora__seed0"]
    assert out.not_run == {"qqp__lora__seed0": "not run: no offline data for qqp (x)"}


def _glue_args(tmp_path: Path, tasks: str, methods: str) -> argparse.Namespace:
    """The arguments ``gelora validate glue ...`` parses to (the same parser as the command line)."""
    from validation.commands.validate import register

    parser = argparse.ArgumentParser(prog="gelora")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        [
            "validate",
            "glue",
            "--profile",
            "test",
            "--tasks",
            tasks,
            "--methods",
            methods,
            "--seeds",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ]
    )


def test_command_exits_0_when_only_tasks_lack_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from validation.commands.validate import run_glue

    monkeypatch.setattr(G, "run_cell", FakeCells(gridfix))
    assert run_glue(_glue_args(tmp_path, "mnli,rte,qqp", "lora")) == 0
    err = capsys.readouterr().err
    assert "ran 1, skipped 0 finished, failed 0, not run 2 (no offline data)" in err
    assert "  not run: no offline data for mnli (no file glue/MNLI/train)" in err
    assert "  not run: no offline data for qqp (no file glue/QQP/train)" in err


def test_command_exits_1_on_a_real_failure_beside_missing_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from validation.commands.validate import run_glue

    monkeypatch.setattr(G, "run_cell", FakeCells(gridfix, broken=frozenset({"lora"})))
    assert run_glue(_glue_args(tmp_path, "mnli,rte", "lora")) == 1
    err = capsys.readouterr().err
    assert "failed 1, not run 1 (no offline data)" in err and "rte__lora__seed0: RuntimeError" in err


# ------------------------------------------------------------------------------------------ verdicts
def _paper_grid_with_missing_mnli(gridfix: Any, run: Path) -> dict[str, Any]:
    good = {"full": [0.9, 0.91, 0.92], "head_only": [0.5, 0.52, 0.51], "gelora": [0.8, 0.81, 0.82]}
    gridfix.write_grid(run, {"sst2": {**good, "lora": [0.7, 0.71, 0.72]}, "mnli": {"gelora": [None, None]}})
    for s in (0, 1):
        record_failure(run, "mnli", "gelora", s, MissingDataError("not run: no offline data for mnli (x)"))
    return summarise(run)


def test_verdicts_and_average_list_tasks_not_run(tmp_path: Path, gridfix: Any) -> None:
    summary = _paper_grid_with_missing_mnli(gridfix, tmp_path / "a")
    v = compute_verdicts(summary)
    assert v["not_run"] == [{"task": "mnli", "reason": NO_OFFLINE_DATA}]
    assert "mnli" not in v["tasks"] and v["tasks"]["sst2"]["informative"]
    assert glue_average(summary, ["gelora", "lora"])["left_out"]["mnli"] == NO_OFFLINE_DATA
    assert "  mnli: not run: no offline data" in format_verdicts(v)
    # the report stores the compact summary and merges directories: the record survives both ...
    compact = compact_summary(summary)
    assert compute_verdicts(compact)["not_run"] == v["not_run"]
    assert compute_verdicts(merge_summaries([compact]))["not_run"] == v["not_run"]
    # ... and a task trained in another directory is not "not run" any more
    other = gridfix.write_grid(tmp_path / "b", {"mnli": {"gelora": [0.7], "lora": [0.6]}})
    merged = merge_summaries([compact, compact_summary(summarise(other))])
    assert compute_verdicts(merged)["not_run"] == [] and "mnli" in compute_verdicts(merged)["tasks"]


def test_a_cell_another_process_is_training_reads_running_not_interrupted(
    tmp_path: Path, gridfix: Any
) -> None:
    """A second wave on the same run directory trains cells the first wave planned: the first wave's summary
    says "running" for a cell under a live claim, "interrupted" only for checkpoints without an owner."""
    from validation.finetune.claims import try_claim

    run = gridfix.write_grid(tmp_path / "run", {"stsb": {"lora": [0.8, None, None, None]}})
    for seed in (1, 2, 3):
        (run / "work" / f"stsb__lora__seed{seed}").mkdir(parents=True)
    for step, complete in ((3, True), (6, False)):  # seed 2: a complete save, and one cut short above it
        ck = run / "work" / "stsb__lora__seed2" / f"checkpoint-{step}"
        ck.mkdir()
        if complete:
            (ck / "trainer_state.json").write_text('{"global_step": 3}')
    claim = try_claim(G.claim_path(run, "stsb", "lora", 1))
    assert claim is not None
    try:
        reasons = {m["seed"]: m["reason"] for m in summarise(run)["missing"]}
    finally:
        claim.release()
    assert reasons == {
        1: "not finished: running (claimed by a live process)",
        2: "not run: interrupted (resumes from checkpoint-3 when the command is rerun)",
        3: "not run: interrupted before its first complete checkpoint (a rerun starts it afresh)",
    }
    assert summarise(run)["missing"][0]["reason"].startswith("not run: interrupted")
