"""validation.finetune.walltime: one-method-at-a-time timing for claim C5."""

from __future__ import annotations

import json

import pytest

from gelora.errors import ConfigError
from validation.finetune.runner import get_profile
from validation.finetune.walltime import (
    WALLTIME_SCHEMA,
    compare,
    main,
    rotated,
    summarise_times,
    time_methods,
)


def _t(time_s: float, prep: float = 0.0, steps: int = 10) -> dict:
    return {"prep_s": prep, "train_s": time_s - prep, "time_s": time_s, "cell_s": time_s + 1, "steps": steps}


def test_rotation_puts_every_method_first_once():
    ms = ["a", "b", "c"]
    assert [rotated(ms, r)[0] for r in range(3)] == ["a", "b", "c"]
    assert rotated(ms, 4) == ["b", "c", "a"]


def test_summary_and_separation():
    rounds = [
        {"gelora": _t(10.0, prep=1.0), "adalora": _t(20.0), "lora": _t(9.0)},
        {"gelora": _t(12.0, prep=1.0), "adalora": _t(18.0), "lora": _t(13.0)},
        {"gelora": _t(11.0, prep=2.0), "adalora": _t(30.0), "lora": _t(11.5)},
    ]
    s = summarise_times(rounds)
    assert s["gelora"]["median_s"] == 11.0 and s["gelora"]["min_s"] == 10.0 and s["gelora"]["max_s"] == 12.0
    assert s["gelora"]["prep_median_s"] == 1.0
    assert s["gelora"]["prep_share"] == pytest.approx(0.1)  # median of 1/10, 1/12, 2/11
    assert s["adalora"]["prep_share"] == 0.0
    assert s["gelora"]["per_step_s"] == pytest.approx(0.9)  # train 9, 11, 9 s over 10 steps
    rows = {c["baseline"]: c for c in compare(s)}
    assert rows["adalora"]["separated"] == "faster" and rows["adalora"]["adaptive"]
    assert rows["adalora"]["ratio"] == pytest.approx(11.0 / 20.0)
    assert rows["adalora"]["reduction"] == pytest.approx(1 - 11.0 / 20.0)
    assert rows["lora"]["separated"] == "overlap" and not rows["lora"]["adaptive"]
    slower = summarise_times([{"gelora": _t(30.0), "geolora": _t(10.0)}])
    assert compare(slower)[0]["separated"] == "slower"
    assert compare(summarise_times([{"lora": _t(1.0)}])) == []  # no GeLoRA: nothing to compare


@pytest.mark.parametrize(
    ("methods", "repeats", "match"),
    [([], 1, "no method"), (["nope"], 1, "nope"), (["lora"], 0, "repeats")],
)
def test_bad_arguments_are_config_errors(methods, repeats, match):
    with pytest.raises(ConfigError, match=match):
        time_methods("stsb", methods, profile=get_profile("test"), repeats=repeats, device="cpu")


def test_times_real_cells_with_the_same_steps(tmp_path):
    """Two tiny CPU cells of the bundled encoder: the same steps for both, GeLoRA's preprocessing timed."""
    out = tmp_path / "walltime.json"
    rc = main(
        [
            "--profile", "test", "--task", "stsb", "--methods", "lora,gelora", "--train-size", "16",
            "--epochs", "1", "--repeats", "1", "--no-warmup", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["schema"] == WALLTIME_SCHEMA and rec["task"] == "stsb"
    assert rec["orders"] == [["lora", "gelora"]]
    (rnd,) = rec["rounds"]
    assert rnd["lora"]["steps"] == rnd["gelora"]["steps"] == 2  # 16 examples, batch 8, one epoch
    assert rnd["lora"]["prep_s"] == 0.0 and rnd["gelora"]["prep_s"] > 0.0
    assert rnd["gelora"]["time_s"] == pytest.approx(rnd["gelora"]["prep_s"] + rnd["gelora"]["train_s"])
    assert [c["baseline"] for c in rec["comparisons"]] == ["lora"]
    assert rec["profile"].get("lr_select", False) is False  # left out of the record at its default
    assert "host" not in rec["environment"]
    assert rec["command"].startswith("python -m validation.finetune.walltime --profile test")
    assert str(tmp_path) not in rec["command"]  # no absolute path of this machine in the record


def test_other_gpu_processes_leave_out_this_one(monkeypatch):
    import os

    import validation.report.environment as env
    from validation.finetune import walltime

    monkeypatch.setattr(env, "nvidia_smi", lambda query, timeout=30: f"111\n{os.getpid()}\n222\n\n")
    assert walltime._other_gpu_processes() == 2
    monkeypatch.setattr(env, "nvidia_smi", lambda query, timeout=30: None)  # no nvidia-smi: unknown
    assert walltime._other_gpu_processes() is None


@pytest.mark.parametrize(
    ("warmup", "expected"),
    [("all", ["a", "b", "c"]), ("first", ["a"]), (True, ["a"]), ("none", []), (False, [])],
)
def test_warmup_modes_and_rotated_rounds(monkeypatch, warmup, expected):
    """The orchestration with a stand-in for run_cell: untimed warm-up cells, then rotated rounds."""
    import validation.finetune.runner as runner

    calls: list[tuple[str, str]] = []

    def fake_run_cell(task, method, seed, *, profile, run_dir, data_dir=None, device=None):
        calls.append((run_dir.parent.name, method))
        prep = {"timings": {"total_s": 0.5}} if method == "b" else {}
        return {
            "method_info": prep,
            "train": {"train_time_s": 2.0, "steps": 4},
            "wall_time_s": 3.0,
            "primary": 0.5,
            "environment": {"device": "cpu", "host": "somewhere"},
        }

    monkeypatch.setattr(runner, "run_cell", fake_run_cell)
    monkeypatch.setattr("validation.finetune.methods.get_method", lambda m: None)
    rec = time_methods(
        "stsb", ["a", "b", "c"], profile=get_profile("test"), repeats=2, warmup=warmup, device="cpu"
    )
    assert [m for d, m in calls if d == "warmup"] == expected
    assert [m for d, m in calls if d == "round0"] == ["a", "b", "c"]
    assert [m for d, m in calls if d == "round1"] == ["b", "c", "a"]
    assert rec["warmup"] == {True: "first", False: "none"}.get(warmup, warmup)
    assert rec["methods"]["b"]["time_s"] == [2.5, 2.5] and rec["methods"]["a"]["prep_share"] == 0.0
    assert "host" not in rec["environment"]


def test_unknown_warmup_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="warmup"):
        time_methods("stsb", ["lora"], profile=get_profile("test"), warmup="sometimes", device="cpu")


def test_variants_time_one_method_with_each_implementation(monkeypatch):
    """``adalora@peft`` and ``adalora@fast`` run AdaLoRA with each allocator, in directories of their own
    (one cell name), and both count as adaptive baselines; an unknown variant is a ConfigError."""
    import validation.finetune.runner as runner

    calls: list[tuple[str, str, object]] = []

    def fake_run_cell(task, method, seed, *, profile, run_dir, data_dir=None, device=None):
        allocator = profile.method_options.get("adalora", {}).get("allocator")
        calls.append((run_dir.name, method, allocator))
        info = {"timings": {"total_s": 0.5}} if method == "gelora" else {}
        if allocator:
            info["allocator"] = allocator
        return {
            "method_info": info,
            "train": {"train_time_s": 3.0 if allocator == "peft" else 2.0, "steps": 4},
            "wall_time_s": 3.0,
            "primary": 0.5,
            "environment": {"device": "cpu"},
        }

    monkeypatch.setattr(runner, "run_cell", fake_run_cell)
    names = ["gelora", "adalora@peft", "adalora@fast"]
    rec = time_methods("stsb", names, profile=get_profile("test"), repeats=1, warmup="none", device="cpu")
    assert calls == [
        ("gelora", "gelora", None),
        ("adalora_peft", "adalora", "peft"),
        ("adalora_fast", "adalora", "fast"),
    ]
    assert rec["rounds"][0]["adalora@peft"]["allocator"] == "peft"
    rows = {c["baseline"]: c for c in rec["comparisons"]}
    assert rows["adalora@peft"]["adaptive"] and rows["adalora@fast"]["adaptive"]
    assert rows["adalora@peft"]["ratio"] == pytest.approx(2.5 / 3.0)
    with pytest.raises(ConfigError, match="unknown variant"):
        time_methods("stsb", ["adalora@nope"], profile=get_profile("test"), device="cpu")


def test_finished_rounds_survive_a_run_cut_short(monkeypatch, tmp_path):
    """A measurement killed in round 2 (a device call's time limit) leaves round 1 in walltime.partial.json;
    a complete one removes it and writes walltime.json with ``complete: true``."""
    import validation.finetune.runner as runner
    from validation.finetune import walltime

    n = {"cells": 0}

    def fake_run_cell(task, method, seed, *, profile, run_dir, data_dir=None, device=None):
        n["cells"] += 1
        if n["cells"] > n.get("die_after", 10**9):
            raise KeyboardInterrupt  # stands in for the SIGTERM of `timeout`
        return {"method_info": {}, "train": {"train_time_s": 2.0, "steps": 4}, "wall_time_s": 3.0,
                "primary": 0.5, "environment": {"device": "cpu", "host": "h"}}  # fmt: skip

    monkeypatch.setattr(runner, "run_cell", fake_run_cell)
    out = tmp_path / "walltime.json"
    argv = ["--profile", "test", "--task", "stsb", "--methods", "lora,gelora", "--repeats", "2",
            "--no-warmup", "--device", "cpu", "--out", str(out)]  # fmt: skip
    n["die_after"] = 3
    with pytest.raises(KeyboardInterrupt):
        walltime.main(argv)
    kept = json.loads(walltime.partial_path(out).read_text())
    assert not out.exists() and kept["complete"] is False and len(kept["rounds"]) == 1
    assert (
        kept["command"].startswith("python -m validation.finetune.walltime")
        and "host" not in kept["environment"]
    )
    n.update(cells=0, die_after=10**9)
    assert walltime.main(argv) == 0
    rec = json.loads(out.read_text())
    assert rec["complete"] is True and len(rec["rounds"]) == 2 and not walltime.partial_path(out).exists()
