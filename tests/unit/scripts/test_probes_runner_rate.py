"""scripts/probes/runner_rate.py on the CPU: the patch reaches the runner, and the weights do not change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def _cell(out: Path) -> dict:
    (path,) = sorted((out / "cells").glob("*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_each_variant_reaches_the_trainer_and_leaves_the_training_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], load_script
) -> None:
    import transformers  # noqa: F401

    mod = load_script("probes/runner_rate.py")
    base = sys.modules["transformers"].TrainingArguments
    args = ["--profile", "test", "--tasks", "rte", "--methods", "lora", "--seeds", "1", "--no-lr-select"]
    cells, lines = {}, {}
    for variant in ("default", "no_nan_filter"):
        out = tmp_path / variant
        assert mod.main(["--variant", variant, "--", *args, "--out", str(out), "--device", "cpu"]) == 0
        lines[variant] = [
            json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"probe"')
        ]
        cells[variant] = _cell(out)
    assert sys.modules["transformers"].TrainingArguments is base  # restored
    (d,), (n,) = lines["default"], lines["no_nan_filter"]
    assert (
        d["variant"] == "default"
        and d["training_args"]
        and "logging_nan_inf_filter" not in d["training_args"][0]
    )
    assert n["training_args"] and all(kw["logging_nan_inf_filter"] is False for kw in n["training_args"])
    a, b = cells["default"], cells["no_nan_filter"]
    assert a["train"]["loss_curve"] == b["train"]["loss_curve"] and a["metrics"] == b["metrics"]


def test_an_unknown_variant_is_refused(load_script) -> None:
    mod = load_script("probes/runner_rate.py")
    with pytest.raises(SystemExit):
        mod.overrides("graphs")
