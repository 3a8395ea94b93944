"""One-rate runs merged into the run a multi-rate selection would have made (validation.finetune.rate_merge)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gelora._io import atomic_write_json, read_json
from gelora.errors import ConfigError
from validation.finetune.grid import GRID_SCHEMA
from validation.finetune.lr_select import SCHEMA as SELECT_SCHEMA
from validation.finetune.lr_select import lr_key
from validation.finetune.rate_merge import main, merge_rate_runs
from validation.finetune.runner import CELL_SCHEMA

PROFILE = {"name": "paper", "epochs": 25.0, "learning_rate": 1e-3, "lr_select": True}
HELD = {"n": 10, "of": 100, "seed": 0, "fraction": 0.1, "max_n": 2000}


def _run(
    root: Path,
    name: str,
    factor: float,
    held_score: float,
    converged: bool,
    dev: list[float],
    methods: tuple[str, ...] = ("lora",),
) -> Path:
    """A one-rate run of rte/lora (or of each of ``methods``): its selection (held-out score) and one cell per
    dev score."""
    d = root / name
    cells: list[dict[str, Any]] = []
    for method in methods:
        cells += _method(d, method, factor, held_score, converged, dev)
    atomic_write_json(
        d / "grid.json",
        {
            "schema": GRID_SCHEMA,
            "profile": {**PROFILE, "lr_grid": [factor]},
            "cells": cells,
            "updated": f"2026-11-29T1{int(factor * 2)}:00:00+00:00",
        },
    )
    return d


def _method(
    d: Path, method: str, factor: float, held_score: float, converged: bool, dev: list[float]
) -> list[dict[str, Any]]:
    lr = 1e-3 * factor
    conv = {"basis": "heldout", "converged": converged, "rule": "tail gain <= 0.01", "gain": 0.0}
    atomic_write_json(
        d / "lr_select" / f"rte__{method}.json",
        {
            "schema": SELECT_SCHEMA,
            "task": "rte",
            "method": method,
            "grid": [lr],
            "metric": "accuracy",
            "scores": {lr_key(lr): held_score},
            "runs": {lr_key(lr): {"steps": 10, "convergence": conv, "train_time_s": 1.0}},
            "chosen": lr,
            "heldout": HELD,
            "train_seed": 0,
            "done": True,
        },
    )
    cells: list[dict[str, Any]] = []
    for seed, score in enumerate(dev):
        raw = {"converged": True, "rule": "train loss"}
        atomic_write_json(
            d / "cells" / f"rte__{method}__seed{seed}.json",
            {
                "schema": CELL_SCHEMA,
                "task": "rte",
                "method": method,
                "seed": seed,
                "metrics": {"accuracy": score},
                "budget": {},
                "wall_time_s": 1.0,
                "train": {
                    "steps": 10,
                    "learning_rate": lr,
                    "convergence": {
                        "converged": converged,
                        "basis": "heldout",
                        "rule": "selection run",
                        "train_loss": raw,
                    },
                },
                "lr_selection": {"grid": [lr], "chosen": lr},
            },
        )
        cells.append({"task": "rte", "method": method, "seed": seed})
    return cells


def test_merge_chooses_on_held_out_scores_and_copies_only_that_rate(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, "r05", 0.5, 0.70, True, [0.9, 0.9]),  # best dev scores, but not chosen
        _run(tmp_path, "r1", 1.0, 0.75, True, [0.6, 0.61]),
        _run(tmp_path, "r2", 2.0, 0.80, False, [0.5, 0.52]),  # best held-out score: chosen
    ]
    rows = merge_rate_runs(runs, tmp_path / "out")
    assert rows == [
        {
            "task": "rte",
            "method": "lora",
            "scores": {"0.0005": 0.70, "0.001": 0.75, "0.002": 0.80},
            "chosen": 2e-3,
            "from": "r2",
            "cells": [0, 1],
            "failed": [],
        }
    ]
    out = tmp_path / "out"
    cell = read_json(out / "cells" / "rte__lora__seed1.json")
    assert cell["metrics"]["accuracy"] == 0.52
    sel = cell["lr_selection"]
    assert sel["grid"] == [5e-4, 1e-3, 2e-3] and sel["chosen"] == 2e-3
    assert sel["merged_from"] == {"r05": [5e-4], "r1": [1e-3], "r2": [2e-3]}
    assert set(sel["runs"]) == {"0.0005", "0.001", "0.002"}
    # convergence re-judged on the chosen rate's held-out curve, the cell's own loss record kept
    conv = cell["train"]["convergence"]
    assert conv["basis"] == "heldout" and conv["converged"] is False
    assert conv["heldout"]["learning_rate"] == 2e-3 and conv["train_loss"] == {
        "converged": True,
        "rule": "train loss",
    }
    assert read_json(out / "lr_select" / "rte__lora.json") == sel
    grid = read_json(out / "grid.json")
    assert grid["profile"]["lr_grid"] == [0.5, 1.0, 2.0] and grid["profile"]["epochs"] == 25.0
    assert grid["merged_from"] == ["r05", "r1", "r2"] and grid["updated"] == "2026-11-29T14:00:00+00:00"
    assert grid["cells"] == [{"task": "rte", "method": "lora", "seed": s} for s in (0, 1)]


def test_ties_go_to_the_smaller_rate_and_failures_are_kept(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", 0.5, 0.8, True, [0.7, 0.7])
    b = _run(tmp_path, "b", 2.0, 0.8, True, [0.6, 0.6])
    (a / "cells" / "rte__lora__seed1.json").rename(a / "cells" / "rte__lora__seed1.failed.json")
    rows = merge_rate_runs([b, a], tmp_path / "out")
    assert rows[0]["chosen"] == 5e-4 and rows[0]["cells"] == [0] and rows[0]["failed"] == [1]
    assert (tmp_path / "out" / "cells" / "rte__lora__seed1.failed.json").exists()


def test_merge_refuses_what_a_grid_would_refuse(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7])
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6])
    same = _run(tmp_path / "x", "c", 1.0, 0.8, True, [0.6])
    with pytest.raises(ConfigError, match="also in another run"):
        merge_rate_runs([b, same], tmp_path / "o1")
    grid = read_json(b / "grid.json")
    grid["profile"]["epochs"] = 3.0
    atomic_write_json(b / "grid.json", grid)
    with pytest.raises(ConfigError, match=r"\['epochs'\]"):
        merge_rate_runs([a, b], tmp_path / "o2")
    grid["profile"]["epochs"] = 25.0
    atomic_write_json(b / "grid.json", grid)
    sel = read_json(b / "lr_select" / "rte__lora.json")
    atomic_write_json(b / "lr_select" / "rte__lora.json", {**sel, "heldout": {**HELD, "seed": 1}})
    with pytest.raises(ConfigError, match="held-out split"):
        merge_rate_runs([a, b], tmp_path / "o3")
    atomic_write_json(b / "lr_select" / "rte__lora.json", {**sel, "done": False})
    with pytest.raises(ConfigError, match="unfinished"):
        merge_rate_runs([a, b], tmp_path / "o4")
    atomic_write_json(b / "lr_select" / "rte__lora.json", sel)
    merge_rate_runs([a, b], tmp_path / "o5")
    with pytest.raises(ConfigError, match="already holds a grid"):
        merge_rate_runs([a, b], tmp_path / "o5")
    with pytest.raises(ConfigError, match="no finished selection"):
        merge_rate_runs([a, b], tmp_path / "o6", methods=["gelora"])
    with pytest.raises(ConfigError, match="not a grid run directory"):
        merge_rate_runs([a, tmp_path / "nothing"], tmp_path / "o7")


def test_command_line_prints_the_choice(tmp_path: Path, capsys: Any) -> None:
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7])
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6])
    assert main([str(tmp_path / "out"), str(a), str(b), "--tasks", "rte"]) == 0
    out = capsys.readouterr().out
    assert "rte/lora: held-out 0.0005: 0.7000, 0.001: 0.8000 -> 0.001 (cells of b: seeds [0])" in out
    assert json.loads((tmp_path / "out" / "grid.json").read_text())["profile"]["lr_grid"] == [0.5, 1.0]


def test_another_tasks_schedule_does_not_keep_rates_apart(tmp_path: Path) -> None:
    """Profiles are compared per task, as merge_runs does: a rate run made after QNLI's schedule changed
    merges with an older one of RTE; a change of RTE's own schedule is refused, naming the task."""

    def overrides(run: Path, over: dict[str, Any]) -> None:
        grid = read_json(run / "grid.json")
        grid["profile"]["task_overrides"] = over
        atomic_write_json(run / "grid.json", grid)

    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7])
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6])
    overrides(a, {"rte": {"epochs": 50.0}, "qnli": {"epochs": 5.0}})
    overrides(b, {"rte": {"epochs": 50.0}, "qnli": {"epochs": 30.0}})
    merge_rate_runs([a, b], tmp_path / "o1")
    assert read_json(tmp_path / "o1" / "grid.json")["profile"]["task_overrides"]["rte"] == {"epochs": 50.0}
    overrides(b, {"rte": {"epochs": 20.0}, "qnli": {"epochs": 30.0}})
    with pytest.raises(ConfigError, match=r"\['task_overrides'\] \(tasks \['rte'\]\)"):
        merge_rate_runs([a, b], tmp_path / "o2")


def test_a_method_missing_a_rate_its_task_has_elsewhere_is_refused(tmp_path: Path) -> None:
    """RTE at 2x run for LoRA only (the plan's B2): GeLoRA's selection from 0.5x and 1x alone would be the
    three-rate grid's with a rate left out, so the merge refuses it; left out with --methods, or at a single
    rate (the ceiling and the floor), it is fine."""
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7], methods=("lora", "gelora"))
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6], methods=("lora", "gelora", "full"))
    c = _run(tmp_path, "c", 2.0, 0.9, True, [0.5], methods=("lora",))
    with pytest.raises(
        ConfigError, match=r"rte/gelora: .*\[0.5, 1.0\].*\[0.5, 1.0, 2.0\]; run its \[2.0\] grid"
    ):
        merge_rate_runs([a, b, c], tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    rows = merge_rate_runs([a, b, c], tmp_path / "o2", methods=["lora", "full"])
    assert [(r["method"], r["chosen"]) for r in rows] == [("full", 1e-3), ("lora", 2e-3)]


def test_every_adapter_needs_its_tasks_whole_set_of_factors(tmp_path: Path) -> None:
    """An adapter at the default rate alone, or at another two of three factors, is refused too, also when
    --methods leaves out the methods that have the other factors; only the ceiling and the floor train at
    one rate."""
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7], methods=("lora",))
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6], methods=("lora", "gelora", "adalora", "head_only"))
    c = _run(tmp_path, "c", 2.0, 0.9, True, [0.5], methods=("lora", "adalora"))
    with pytest.raises(
        ConfigError, match=r"rte/adalora: .*\[1.0, 2.0\].*\[0.5, 1.0, 2.0\]; run its \[0.5\] grid"
    ):
        merge_rate_runs([a, b, c], tmp_path / "o1", methods=["adalora"])
    with pytest.raises(ConfigError, match=r"rte/gelora: .*\[1.0\].*run its \[0.5, 2.0\] grid"):
        merge_rate_runs([a, b, c], tmp_path / "o2", methods=["gelora", "head_only"])
    rows = merge_rate_runs([a, b, c], tmp_path / "o3", methods=["lora", "head_only"])
    assert [r["method"] for r in rows] == ["head_only", "lora"]


def test_a_selection_with_another_number_of_rates_than_its_directory_is_refused(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7])
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6])
    grid = read_json(b / "grid.json")
    grid["profile"]["lr_grid"] = [1.0, 4.0]
    atomic_write_json(b / "grid.json", grid)
    with pytest.raises(ConfigError, match="cannot tell its factors"):
        merge_rate_runs([a, b], tmp_path / "o1")


def test_the_command_line_prints_a_refusal_and_exits_2_writing_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's B2 case from the shell: one line naming the adapter and the missing grid, no traceback."""
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7], methods=("lora", "gelora"))
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6], methods=("lora", "gelora"))
    c = _run(tmp_path, "c", 2.0, 0.9, True, [0.5], methods=("lora",))
    assert main([str(tmp_path / "out"), str(a), str(b), str(c)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rate_merge: error: rte/gelora: ") and "run its [2.0] grid" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_replace_swaps_in_a_complete_merge_and_a_refused_one_leaves_the_old(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's step "rate_merge into selected/ again": with --replace the old merge stays whole until the
    new one is written, and a refusal (a 2x grid still missing) leaves it as it was, byte for byte."""
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7], methods=("lora", "gelora"))
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6], methods=("lora", "gelora"))
    c = _run(tmp_path, "c", 2.0, 0.9, True, [0.5], methods=("lora",))
    out = tmp_path / "selected"
    assert main([str(out), str(a), str(b), "--methods", "lora"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert main([str(out), str(a), str(b), "--methods", "lora"]) == 2  # no --replace: refused
    assert "already holds a grid" in capsys.readouterr().err
    assert main([str(out), str(a), str(b), str(c), "--replace"]) == 2  # gelora has no 2x
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert main([str(out), str(a), str(b), str(c), "--methods", "lora", "--replace"]) == 0
    assert read_json(out / "lr_select" / "rte__lora.json")["chosen"] == pytest.approx(2e-3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left aside
    with pytest.raises(ConfigError, match="is, holds or lies inside the merged run directory"):
        merge_rate_runs([a, out], out, replace=True)


def test_replace_never_reaches_a_source_or_a_directory_that_is_not_a_merge(tmp_path: Path) -> None:
    """--replace deletes the previous OUT after the swap: an OUT that holds a source (a parent given by
    mistake), lies inside one, is a symbolic link or is not a previous merge is refused before anything is
    written."""
    rates = tmp_path / "rates"
    a = _run(rates, "a", 0.5, 0.7, True, [0.7], methods=("lora",))
    b = _run(rates, "b", 1.0, 0.8, True, [0.6], methods=("lora",))
    for bad in (rates, a / "sub", tmp_path):
        with pytest.raises(ConfigError, match="is, holds or lies inside"):
            merge_rate_runs([a, b], bad, replace=True)
    assert (a / "grid.json").is_file() and (b / "grid.json").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a previous rate merge"):
        merge_rate_runs([a, b], other, replace=True)
    assert (other / "keep.txt").read_text() == "mine"
    merge_rate_runs([a, b], tmp_path / "sel")
    (tmp_path / "link").symlink_to(tmp_path / "sel")
    with pytest.raises(ConfigError, match="symbolic link"):
        merge_rate_runs([a, b], tmp_path / "link", replace=True)
    assert (tmp_path / "sel" / "grid.json").is_file()


def test_an_interrupted_replace_is_named_and_refused_until_put_back(tmp_path: Path) -> None:
    """A kill between the two renames leaves the previous merge and the new one hidden beside OUT: the next
    call names them instead of building a third."""
    a = _run(tmp_path, "a", 0.5, 0.7, True, [0.7], methods=("lora",))
    b = _run(tmp_path, "b", 1.0, 0.8, True, [0.6], methods=("lora",))
    out = tmp_path / "sel"
    merge_rate_runs([a, b], out)
    out.rename(tmp_path / ".sel.replaced-123")  # as if killed after the first rename
    with pytest.raises(ConfigError, match=r"interrupted and left \['.sel.replaced-123'\]"):
        merge_rate_runs([a, b], out, replace=True)
    (tmp_path / ".sel.replaced-123").rename(out)
    merge_rate_runs([a, b], out, replace=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sel")]
