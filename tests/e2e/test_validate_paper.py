"""``gelora validate glue --profile paper`` end to end at a tiny size: two tasks x two methods, with
learning-rate selection, loss curves and convergence flags in every cell, and a resumable rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from validation.finetune.lr_select import selection_path
from validation.finetune.runner import cell_path, read_cell

ROOT = Path(__file__).resolve().parents[2]

TASKS = ("rte", "stsb")
METHODS = ("lora", "head_only")


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "validation.commands.validate",
        "glue",
        "--profile",
        "paper",
        "--tasks",
        ",".join(TASKS),
        "--methods",
        ",".join(METHODS),
        "--seeds",
        "1",
        "--train-size",
        "16",
        "--eval-size",
        "16",
        "--epochs",
        "1",
        "--max-length",
        "32",
        "--lr-grid",
        "1,2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow  # 8 + 4 trainings of the bundled encoder: a few minutes on a loaded 2-core machine
def test_paper_profile_grid_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _run(_command(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in TASKS:
        for method in METHODS:
            cell = read_cell(cell_path(out, task, method, 0))
            prof = cell["config"]["profile"]
            assert (
                prof["name"] == "paper" and prof["lora_r"] == 8 and prof["target_modules"] == ["all-linear"]
            )
            assert prof["epochs"] == 1.0 and prof["max_length"] == 32  # explicit settings beat the table
            assert prof["batch_size"] == 32  # the table's batch size
            assert cell["train"]["loss_curve"] and "converged" in cell["train"]["convergence"]
            sel = cell["lr_selection"]
            assert len(sel["grid"]) == 2 and sel["chosen"] in sel["grid"]
            assert set(sel["scores"]) == {f"{lr:.6g}" for lr in sel["grid"]}
            assert sel["heldout"] == {**sel["heldout"], "n": 2, "of": 16, "seed": 0}
            assert cell["train"]["learning_rate"] == sel["chosen"]
            assert json.loads(selection_path(out, task, method).read_text())["done"] is True
    lora = read_cell(cell_path(out, "rte", "lora", 0))
    # all-linear on 6 blocks of 384 (FFN 1536): 6 * 8 * (4 * 768 + 2 * 1920) parameters
    assert lora["budget"]["budget_params"] == 331776 == lora["budget"]["trainable_adapter_params"]
    head = read_cell(cell_path(out, "rte", "head_only", 0))
    assert head["budget"]["trainable_params_total"] == 770  # 384 x 2 + 2
    # rerun: every cell and selection is reused, nothing trains
    again = _run(_command(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ran 0, skipped 4 finished, failed 0" in again.stderr
