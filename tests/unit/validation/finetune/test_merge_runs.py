"""Run directories of one profile merged into one (validation.finetune.merge_runs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gelora._io import atomic_write_json, read_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.grid import read_plan, summarise
from validation.finetune.log_files import compressed, log_text, write_log
from validation.finetune.merge_runs import main, merge_runs

from .gridfixture import write_grid


def _log(run: Path, name: str, text: str) -> None:
    (run / "logs").mkdir(parents=True, exist_ok=True)
    (run / "logs" / name).write_text(text, encoding="utf-8")


def _selection(run: Path, task: str, method: str, score: float) -> None:
    atomic_write_json(
        run / "lr_select" / f"{task}__{method}.json", {"task": task, "method": method, "s": score}
    )


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    dest = write_grid(tmp_path / "dest", {"stsb": {"lora": [0.8, 0.81], "gelora": [0.79, 0.8]}})
    _selection(dest, "stsb", "lora", 0.85)
    _log(dest, "stsb__lora__seed0.log", "dest log")
    a = write_grid(tmp_path / "a", {"cola": {"lora": [0.3, 0.31]}})
    _selection(a, "cola", "lora", 0.33)
    _log(a, "cola__lora__seed0.log", "a log")
    _log(a, "worker-0.log", "scheduling")
    # b started from a copy of dest (its stsb files identical) and added MRPC
    b = tmp_path / "b"
    b.mkdir()
    for rel, data in _tree(dest).items():
        (b / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / rel).write_bytes(data)
    write_grid(b, {"stsb": {"lora": [0.8, 0.81], "gelora": [0.79, 0.8]}, "mrpc": {"gelora": [0.7]}})
    return dest, a, b


def test_merge_copies_new_results_and_extends_the_plan(runs):
    dest, a, b = runs
    before = read_plan(dest)["cells"]
    rep = merge_runs(dest, [a, b])
    plan = read_plan(dest)
    assert plan["cells"][: len(before)] == before  # the destination's order first
    keys = {(c["task"], c["method"], c["seed"]) for c in plan["cells"]}
    assert {("cola", "lora", 1), ("mrpc", "gelora", 0), ("stsb", "gelora", 1)} <= keys
    assert rep.planned_added == 3
    assert "cells/cola__lora__seed0.json" in rep.copied and "lr_select/cola__lora.json" in rep.copied
    assert "logs/cola__lora__seed0.log.gz" in rep.copied  # committed logs are stored compressed
    assert log_text(dest / "logs" / "cola__lora__seed0.log.gz") == b"a log"
    assert not (dest / "logs" / "cola__lora__seed0.log").exists()
    assert not (dest / "logs" / "worker-0.log").exists()  # scheduling logs are not results
    plain = dest / "plain.txt"
    plain.write_text("x", encoding="utf-8")  # a copy gets the mode of a plainly written file
    assert (dest / "cells" / "cola__lora__seed0.json").stat().st_mode == plain.stat().st_mode
    assert "cells/stsb__lora__seed0.json" in rep.identical
    s = summarise(dest)
    assert sorted(s["table"]) == ["cola", "mrpc", "stsb"]
    assert s["n_cells"] == 7


def test_merge_is_idempotent(runs):
    dest, a, b = runs
    merge_runs(dest, [a, b])
    once = _tree(dest)
    rep = merge_runs(dest, [a, b])
    assert _tree(dest) == once and rep.copied == [] and rep.planned_added == 0


def test_a_result_rewritten_at_another_indentation_is_the_same_result(runs):
    """scripts/compact_results.py rewrites committed results without indentation; a source still holding the
    2-space file of the same result merges as identical, not as a refused difference."""
    dest, a, b = runs
    for d, indent in ((dest, 0), (b, 2)):
        cell = d / "cells" / "stsb__lora__seed0.json"
        cell.write_text(json.dumps(read_json(cell), indent=indent) + "\n", encoding="utf-8")
    kept = (dest / "cells" / "stsb__lora__seed0.json").read_bytes()
    rep = merge_runs(dest, [a, b])
    assert "cells/stsb__lora__seed0.json" in rep.identical
    assert (dest / "cells" / "stsb__lora__seed0.json").read_bytes() == kept  # the destination's form kept


def test_a_different_result_is_refused_and_nothing_is_written(runs):
    dest, a, b = runs
    cell = b / "cells" / "stsb__lora__seed0.json"
    data = read_json(cell)
    data["primary"] = 0.1
    cell.write_text(json.dumps(data), encoding="utf-8")
    before = _tree(dest)
    with pytest.raises(ResultFileError, match="never overwritten"):
        merge_runs(dest, [a, b])
    assert _tree(dest) == before  # not even a's new files


def test_a_different_selection_record_between_sources_is_refused(runs, tmp_path):
    dest, a, _ = runs
    c = write_grid(tmp_path / "c", {"cola": {"lora": [0.3, 0.31]}})
    _selection(c, "cola", "lora", 0.2)
    with pytest.raises(ResultFileError, match="lr_select/cola__lora.json"):
        merge_runs(dest, [a, c])


def test_a_different_log_keeps_the_destinations(runs):
    dest, a, b = runs
    _log(b, "stsb__lora__seed0.log", "another log")
    rep = merge_runs(dest, [a, b])
    # the destination's log is an uncompressed one (written before logs were stored compressed): kept
    assert rep.logs_kept == ["logs/stsb__lora__seed0.log"]
    assert (dest / "logs" / "stsb__lora__seed0.log").read_text(encoding="utf-8") == "dest log"
    assert not (dest / "logs" / "stsb__lora__seed0.log.gz").exists()
    assert any("kept the destination's logs/stsb__lora__seed0.log (" in x for x in rep.lines())


def test_logs_merge_compressed_and_compare_by_text(runs, tmp_path: Path):
    """A log is written as ``logs/<run>.log.gz`` with fixed bytes for its text (no name, mtime 0), so a
    second merge finds it identical; a source holding compressed logs (a committed folder merged into
    another) compares by text with the destination's, compressed or not; a different text is kept."""
    dest, a, b = runs
    merge_runs(dest, [a])
    gz = dest / "logs" / "cola__lora__seed0.log.gz"
    assert gz.read_bytes() == gzip.compress(b"a log", compresslevel=9, mtime=0) == compressed(b"a log")
    again = merge_runs(dest, [a])
    assert "logs/cola__lora__seed0.log.gz" in again.identical and not again.copied
    # a committed folder as a source: its compressed log and one the destination holds uncompressed
    staged = write_grid(tmp_path / "staged", {"cola": {"lora": [0.3, 0.31]}})
    (staged / "logs").mkdir()
    write_log(staged / "logs" / "cola__lora__seed0.log.gz", b"a log")
    write_log(staged / "logs" / "stsb__lora__seed0.log.gz", b"dest log")
    write_log(staged / "logs" / "cola__lora__seed1.log.gz", b"new log")
    (staged / "logs" / "worker-0-1.log.gz").write_bytes(compressed(b"scheduling"))
    rep = merge_runs(dest, [staged])
    # identical to the destination's compressed log, and to its uncompressed one (under that one's name)
    assert {"logs/cola__lora__seed0.log.gz", "logs/stsb__lora__seed0.log"} <= set(rep.identical)
    assert "logs/cola__lora__seed1.log.gz" in rep.copied and not rep.logs_kept
    assert log_text(dest / "logs" / "cola__lora__seed1.log.gz") == b"new log"
    assert not (dest / "logs" / "worker-0-1.log.gz").exists()
    write_log(staged / "logs" / "cola__lora__seed1.log.gz", b"other text")
    assert merge_runs(dest, [staged]).logs_kept == ["logs/cola__lora__seed1.log.gz"]
    assert log_text(dest / "logs" / "cola__lora__seed1.log.gz") == b"new log"
    # two sources with the same log: the second compares with the first's (not yet written) copy
    c = write_grid(tmp_path / "c", {"rte": {"lora": [0.6]}})
    d = write_grid(tmp_path / "d", {"rte": {"lora": [0.6]}})
    _log(c, "rte__lora__seed0.log", "same")
    (d / "logs").mkdir()
    write_log(d / "logs" / "rte__lora__seed0.log.gz", b"same")
    rep = merge_runs(dest, [c, d])
    assert rep.copied.count("logs/rte__lora__seed0.log.gz") == 1
    assert "logs/rte__lora__seed0.log.gz" in rep.identical
    # a later source's different text: the first source's is copied, the report says so
    e = write_grid(tmp_path / "e", {"qnli": {"lora": [0.5]}})
    f = write_grid(tmp_path / "f", {"qnli": {"lora": [0.5]}})
    _log(e, "qnli__lora__seed0.log", "first")
    _log(f, "qnli__lora__seed0.log", "second")
    rep = merge_runs(dest, [e, f])
    assert rep.logs_dropped == ["logs/qnli__lora__seed0.log.gz"] and not rep.logs_kept
    assert any("kept the first source's logs/qnli__lora__seed0.log.gz" in x for x in rep.lines())
    assert log_text(dest / "logs" / "qnli__lora__seed0.log.gz") == b"first"


def test_a_source_with_both_forms_of_a_log_and_a_plain_destination_log(runs, tmp_path: Path):
    """Both forms of one log in a source (a compression interrupted) give one entry when they agree and are
    refused when not; a log the destination holds uncompressed is reported under its own name."""
    dest, a, b = runs
    _log(a, "cola__lora__seed0.log", "a log")
    write_log(a / "logs" / "cola__lora__seed0.log.gz", b"a log")
    rep = merge_runs(dest, [a])
    assert rep.copied.count("logs/cola__lora__seed0.log.gz") == 1
    assert "logs/cola__lora__seed0.log.gz" not in rep.identical
    write_log(a / "logs" / "cola__lora__seed0.log.gz", b"another text")
    with pytest.raises(ResultFileError, match="hold different texts"):
        merge_runs(dest, [a])
    # b holds dest's own plain log: identical to it, reported under the name the destination has
    rep = merge_runs(dest, [b])
    assert "logs/stsb__lora__seed0.log" in rep.identical
    assert not (dest / "logs" / "stsb__lora__seed0.log.gz").exists()


def test_profiles_must_match(runs, tmp_path):
    dest, _, _ = runs
    other = write_grid(tmp_path / "o", {"cola": {"lora": [0.3]}}, epochs=25.0)
    with pytest.raises(ConfigError, match=r"profile differs .* \['epochs'\]"):
        merge_runs(dest, [other])


def test_dry_run_and_new_destination(runs, tmp_path):
    dest, a, _ = runs
    before = _tree(dest)
    rep = merge_runs(dest, [a], dry_run=True)
    assert rep.copied and _tree(dest) == before
    new = tmp_path / "new"
    merge_runs(new, [a])
    assert read_plan(new)["cells"] == read_plan(a)["cells"]
    assert (new / "cells" / "cola__lora__seed1.json").read_bytes() == (
        a / "cells" / "cola__lora__seed1.json"
    ).read_bytes()


def test_bad_arguments(runs, tmp_path):
    dest, a, _ = runs
    with pytest.raises(ConfigError, match="at least one source"):
        merge_runs(dest, [])
    with pytest.raises(ConfigError, match="destination itself"):
        merge_runs(dest, [dest])
    with pytest.raises(ResultFileError, match="no grid.json"):
        merge_runs(dest, [tmp_path / "nothing"])
    (tmp_path / "bad").mkdir()
    atomic_write_json(tmp_path / "bad" / "grid.json", {"schema": "other"})
    with pytest.raises(ResultFileError, match="not a grid plan"):
        merge_runs(dest, [tmp_path / "bad"])


def test_cli(runs, tmp_path, capsys):
    dest, a, _ = runs
    assert main([str(dest), str(a), "--dry-run"]) == 0
    assert "copied" in capsys.readouterr().out
    assert main([str(dest), str(tmp_path / "nothing")]) == 2
    refused = capsys.readouterr()
    assert "merge_runs: error:" in refused.err
    assert refused.out == ""


def test_cli_refuses_an_os_error_in_one_line(runs, tmp_path, capsys):
    """An OSError while merging (here: the destination's cells/ is a file, so nothing can be copied into it)
    is a refusal on stderr with exit 2, not a traceback."""
    _, a, _ = runs
    dest = tmp_path / "dest_blocked"
    dest.mkdir()
    (dest / "cells").write_text("not a directory")
    assert main([str(dest), str(a)]) == 2
    refused = capsys.readouterr()
    assert refused.err.startswith("merge_runs: error:") and refused.err.count("\n") == 1
    assert refused.out == ""


def _with_overrides(run: Path, overrides: dict) -> Path:
    """Give ``run``'s plan per-task overrides (as the paper profile records them)."""
    plan = read_plan(run)
    plan["profile"]["task_overrides"] = overrides
    atomic_write_json(run / "grid.json", plan)
    return run


def test_a_schedule_changed_for_another_task_does_not_split_directories(runs, tmp_path):
    """A run made after QNLI's schedule changed merges into a directory without QNLI cells (its SST-2/CoLA
    overrides agree); a QNLI run at another schedule is refused where QNLI cells exist."""
    dest, _, _ = runs
    _with_overrides(dest, {"stsb": {"epochs": 25.0}, "qnli": {"epochs": 5.0}})
    newer = _with_overrides(
        write_grid(tmp_path / "newer", {"cola": {"lora": [0.3]}}),
        {"stsb": {"epochs": 25.0}, "cola": {"epochs": 25.0}, "qnli": {"epochs": 20.0}},
    )
    merge_runs(dest, [newer])
    over = read_plan(dest)["profile"]["task_overrides"]
    # the destination keeps its own tasks' overrides and gains the new task's
    assert over == {"stsb": {"epochs": 25.0}, "qnli": {"epochs": 5.0}, "cola": {"epochs": 25.0}}
    # STS-B cells at another STS-B schedule are refused, naming the overrides and the task
    clash = _with_overrides(
        write_grid(tmp_path / "clash", {"stsb": {"lora": [0.5]}}), {"stsb": {"epochs": 3.0}}
    )
    with pytest.raises(ConfigError, match=r"\['task_overrides'\] \(tasks \['stsb'\]\)"):
        merge_runs(dest, [clash])


def test_write_plan_extends_a_directory_whose_other_tasks_ran_at_another_schedule(tmp_path):
    from validation.finetune.grid import write_plan
    from validation.finetune.runner import PROFILES

    paper = PROFILES["paper"]
    run = tmp_path / "run"
    write_plan(run, ["stsb"], ["lora"], [0], paper)
    plan = read_plan(run)
    assert plan["profile"] == paper.to_dict()  # nothing differs: the profile as given, as before
    over = dict(plan["profile"]["task_overrides"])
    over["qnli"] = {**over["qnli"], "epochs": 99.0}
    plan["profile"]["task_overrides"] = over
    atomic_write_json(run / "grid.json", plan)
    # adding CoLA with today's settings: allowed, and the plan keeps QNLI's recorded override only while it
    # has no QNLI cells (here none: today's override replaces it)
    write_plan(run, ["cola"], ["lora"], [0], paper)
    assert (
        read_plan(run)["profile"]["task_overrides"]["qnli"]["epochs"]
        == paper.to_dict()["task_overrides"]["qnli"]["epochs"]
    )
    # a directory holding QNLI cells at the other schedule refuses QNLI at today's
    write_plan(run, ["qnli"], ["lora"], [0], paper)  # plans QNLI at today's schedule
    plan = read_plan(run)
    plan["profile"]["task_overrides"]["qnli"]["epochs"] = 99.0
    atomic_write_json(run / "grid.json", plan)
    with pytest.raises(ConfigError, match=r"task_overrides.*for tasks \['qnli'\]"):
        write_plan(run, ["qnli"], ["gelora"], [0], paper)


def test_results_dropped_from_the_plan_still_count(tmp_path):
    """QNLI cells left on disk (dropped from grid.json only) keep a QNLI run at another schedule out."""
    from validation.finetune.grid import held_tasks, write_plan
    from validation.finetune.runner import PROFILES

    paper = PROFILES["paper"]
    run = tmp_path / "run"
    write_plan(run, ["stsb", "qnli"], ["lora"], [0], paper)
    (run / "cells").mkdir()
    (run / "cells" / "qnli__lora__seed0.json").write_text("{}")
    (run / "lr_select").mkdir()
    (run / "lr_select" / "qnli__lora.json").write_text("{}")
    plan = read_plan(run)
    plan["cells"] = [c for c in plan["cells"] if c["task"] != "qnli"]
    plan["profile"]["task_overrides"]["qnli"]["epochs"] = 99.0
    atomic_write_json(run / "grid.json", plan)
    assert held_tasks(run, plan) == {"stsb", "qnli"}
    with pytest.raises(ConfigError, match=r"for tasks \['qnli'\]"):
        write_plan(run, ["qnli"], ["lora"], [0], paper)
    # the same directory as a merge source into a directory with QNLI at today's schedule: refused too
    dest = tmp_path / "dest"
    write_plan(dest, ["qnli"], ["gelora"], [0], paper)
    with pytest.raises(ConfigError, match=r"\(tasks \['qnli'\]\)"):
        merge_runs(dest, [run])
