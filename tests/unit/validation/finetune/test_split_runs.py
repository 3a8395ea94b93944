"""One task's results moved out of a run directory (validation.finetune.split_runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gelora._io import atomic_write_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.grid import held_tasks, read_plan, write_plan
from validation.finetune.log_files import write_log
from validation.finetune.merge_runs import merge_runs
from validation.finetune.runner import PROFILES
from validation.finetune.split_runs import main, split_task

from .gridfixture import write_grid


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = write_grid(
        tmp_path / "run", {"stsb": {"lora": [0.8, 0.81]}, "qnli": {"lora": [0.84, 0.85], "gelora": [0.83]}}
    )
    for name, score in (("stsb__lora", 0.8), ("qnli__lora", 0.84), ("qnli__gelora", 0.83)):
        atomic_write_json(run / "lr_select" / f"{name}.json", {"s": score})
    (run / "logs").mkdir()
    for name in ("stsb__lora__seed0", "qnli__lora__seed0", "worker-0-1"):
        (run / "logs" / f"{name}.log").write_text(name, encoding="utf-8")
    # a committed folder's logs are compressed (validation.finetune.log_files): moved as they are
    write_log(run / "logs" / "qnli__lora__lr_select.log.gz", b"qnli__lora__lr_select")
    return run


def test_split_moves_the_tasks_results_and_planned_cells(run, tmp_path):
    before = _tree(run)
    plan = read_plan(run)
    dest = tmp_path / "qnli-e5"
    rep = split_task(run, "qnli", dest)
    after, moved = _tree(run), _tree(dest)
    # every QNLI file now lives in dest with the same bytes, nothing else moved, nothing lost
    qnli = {k for k in before if Path(k).name.startswith("qnli__")}
    assert set(rep.moved) == qnli and len(qnli) == 7
    assert {k: moved[k] for k in qnli} == {k: before[k] for k in qnli}
    assert {k: v for k, v in before.items() if k not in qnli and k != "grid.json"} == {
        k: v for k, v in after.items() if k != "grid.json"
    }
    new_src, new_dest = read_plan(run), read_plan(dest)
    assert [c["task"] for c in new_src["cells"]] == ["stsb", "stsb"]
    assert sorted((c["method"], c["seed"]) for c in new_dest["cells"]) == [
        ("gelora", 0),
        ("lora", 0),
        ("lora", 1),
    ]
    assert new_dest["profile"] == plan["profile"] == new_src["profile"]  # the schedule they ran at
    assert rep.planned_moved == 3
    assert held_tasks(run, new_src) == {"stsb"} and held_tasks(dest, new_dest) == {"qnli"}


def test_both_forms_of_a_log_move_as_they_are(run, tmp_path):
    """A log present plain and compressed (a compression interrupted) moves in both forms, whatever their
    texts: a split moves files, it does not merge them (merge_runs refuses two forms that differ)."""
    (run / "logs" / "qnli__lora__lr_select.log").write_text("another text", encoding="utf-8")
    rep = split_task(run, "qnli", tmp_path / "out")
    assert {"logs/qnli__lora__lr_select.log", "logs/qnli__lora__lr_select.log.gz"} <= set(rep.moved)
    assert not list((run / "logs").glob("qnli__*"))


def test_after_a_split_a_new_schedule_of_the_task_merges_in(tmp_path):
    """The campaign's use: QNLI at a new schedule can join the directory once the old QNLI results left."""
    paper = PROFILES["paper"]
    today = paper.to_dict()["task_overrides"]
    run = tmp_path / "run"
    write_plan(run, ["stsb", "qnli"], ["lora"], [0], paper)
    plan = read_plan(run)
    plan["profile"]["task_overrides"]["qnli"] = {**today["qnli"], "epochs": 2.0}  # the old schedule
    atomic_write_json(run / "grid.json", plan)
    cells = write_grid(tmp_path / "cells-only", {"stsb": {"lora": [0.8]}, "qnli": {"lora": [0.8]}})
    (run / "cells").mkdir()
    for t in ("stsb", "qnli"):
        name = f"{t}__lora__seed0.json"
        (run / "cells" / name).write_bytes((cells / "cells" / name).read_bytes())
    new = tmp_path / "new"
    write_plan(new, ["qnli"], ["lora"], [0], paper)  # today's schedule
    with pytest.raises(ConfigError, match=r"\(tasks \['qnli'\]\)"):
        merge_runs(run, [new])
    split_task(run, "qnli", tmp_path / "qnli-old")
    merge_runs(run, [new])
    over = read_plan(run)["profile"]["task_overrides"]
    assert over["qnli"] == today["qnli"] and over["stsb"] == today["stsb"]
    assert read_plan(tmp_path / "qnli-old")["profile"]["task_overrides"]["qnli"]["epochs"] == 2.0


def test_an_interrupted_split_finishes_when_run_again(run, tmp_path, monkeypatch):
    before = _tree(run)
    dest = tmp_path / "qnli-e5"
    calls = {"n": 0}
    real_unlink = Path.unlink

    def failing_unlink(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    with pytest.raises(KeyboardInterrupt):
        split_task(run, "qnli", dest)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    # nothing lost: every file is in the source or the destination
    assert set(before) <= set(_tree(run)) | set(_tree(dest))
    rep = split_task(run, "qnli", dest)
    assert rep.planned_moved == 3
    assert not [k for k in _tree(run) if Path(k).name.startswith("qnli__")]
    assert len([k for k in _tree(dest) if Path(k).name.startswith("qnli__")]) == 7


def test_refusals(run, tmp_path):
    with pytest.raises(ConfigError, match="source directory itself"):
        split_task(run, "qnli", run)
    with pytest.raises(ConfigError, match="no result or planned cell of task 'cola'"):
        split_task(run, "cola", tmp_path / "x")
    other = write_grid(tmp_path / "other", {"mrpc": {"lora": [0.8]}})
    with pytest.raises(ConfigError, match="already holds another run"):
        split_task(run, "qnli", other)
    # a different file of the same name in the destination: refused before anything moves
    before = _tree(run)
    clash = tmp_path / "clash"
    (clash / "cells").mkdir(parents=True)
    (clash / "cells" / "qnli__lora__seed0.json").write_text("{}")
    with pytest.raises(ResultFileError, match="differs"):
        split_task(run, "qnli", clash)
    assert _tree(run) == before and not (clash / "grid.json").exists()


def test_dry_run_and_cli(run, tmp_path, capsys):
    before = _tree(run)
    rep = split_task(run, "qnli", tmp_path / "d", dry_run=True)
    assert len(rep.moved) == 7 and _tree(run) == before and not (tmp_path / "d").exists()
    assert main([str(run), "--task", "qnli", "--out", str(tmp_path / "d"), "--dry-run"]) == 0
    assert "moved 7 file(s) and 3 planned cell(s)" in capsys.readouterr().out
    assert main([str(run), "--task", "cola", "--out", str(tmp_path / "d")]) == 2
    assert "split_runs: error:" in capsys.readouterr().out
    assert main([str(run), "--task", "qnli", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "grid.json").exists()


@pytest.mark.parametrize(
    "state",
    [
        "work/qnli__lora__seed1",
        "lr_select/work/qnli__lora__lr0.0005",
        "claims/qnli__lora__seed1.hold",
        "claims/qnli__lora__seed0.claim",
        "lr_select/qnli__lora.hold",
    ],
)
def test_unfinished_state_of_the_task_is_refused(run, tmp_path, state):
    """A checkpoint, claim or hold left in the source would be picked up by a later run at a new schedule."""
    path = run / state
    if state.startswith(("work", "lr_select/work")):
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    before = _tree(run)
    with pytest.raises(ConfigError, match=f"unfinished state of task 'qnli' \\({state}"):
        split_task(run, "qnli", tmp_path / "d")
    assert _tree(run) == before and not (tmp_path / "d").exists()
    # another task's state does not block
    (run / "claims").mkdir(exist_ok=True)
    (run / "claims" / "stsb__lora__seed0.hold").write_text("{}")
    path.unlink() if path.is_file() else path.rmdir()
    split_task(run, "qnli", tmp_path / "d")


def test_an_interrupted_split_continues_only_into_its_own_destination(run, tmp_path):
    from validation.finetune.split_runs import _task_files

    dest = tmp_path / "d1"
    split_task(run, "qnli", dest, dry_run=True)
    # simulate an interruption after the source plan lost the task, before the files were removed
    for rel in _task_files(run, "qnli"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes((run / rel).read_bytes())
    plan = read_plan(run)
    atomic_write_json(
        dest / "grid.json", {**plan, "cells": [c for c in plan["cells"] if c["task"] == "qnli"]}
    )
    atomic_write_json(run / "grid.json", {**plan, "cells": [c for c in plan["cells"] if c["task"] != "qnli"]})
    with pytest.raises(ConfigError, match="interrupted split"):
        split_task(run, "qnli", tmp_path / "d2")
    assert split_task(run, "qnli", dest).planned_moved == 3
    assert not [k for k in _tree(run) if Path(k).name.startswith("qnli__")]


def test_a_second_split_into_the_same_destination_adds_its_cells(run, tmp_path):
    twin = tmp_path / "twin"
    twin.mkdir()
    for rel, data in _tree(run).items():
        (twin / rel).parent.mkdir(parents=True, exist_ok=True)
        (twin / rel).write_bytes(data)
    plan = read_plan(twin)
    extra = {"task": "qnli", "method": "full", "seed": 0}
    atomic_write_json(twin / "grid.json", {**plan, "cells": [*plan["cells"], extra]})
    dest = tmp_path / "d"
    split_task(run, "QNLI", dest)  # the task name is canonicalised
    split_task(twin, "qnli", dest)
    cells = read_plan(dest)["cells"]
    assert extra in cells and len(cells) == 4
