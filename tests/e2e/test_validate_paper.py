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


SQUAD_TASKS = ("squad_v1", "squad_v2")
#: v2.0 metrics of the official script (HasAns/NoAns split, best no-answer threshold) recorded per cell
V2_KEYS = {
    "exact",
    "f1",
    "has_ans_exact",
    "has_ans_f1",
    "no_ans_exact",
    "no_ans_f1",
    "best_exact",
    "best_exact_thresh",
    "best_f1",
    "best_f1_thresh",
}


def _squad_command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "validation.commands.validate",
        "glue",
        "--profile",
        "paper",
        "--tasks",
        ",".join(SQUAD_TASKS),
        "--methods",
        "lora",
        "--seeds",
        "1",
        "--train-size",
        "4",
        "--eval-size",
        "16",
        "--epochs",
        "1",
        "--max-length",
        "64",
        "--lr-grid",
        "1,2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def test_paper_profile_squad_cells_record_official_scores(tmp_path: Path) -> None:
    """SQuAD v1.1 and v2.0 under the paper protocol on the real offline files: official EM/F1 (v2: HasAns,
    NoAns, best no-answer threshold), the learning-rate selection on held-out training articles, the loss
    curve and the convergence record, with the table's batch size and an explicit length whose window stride
    follows it (the table's stride of 128 belongs to its length 384)."""
    out = tmp_path / "squad"
    proc = _run(_squad_command(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in SQUAD_TASKS:
        cell = read_cell(cell_path(out, task, "lora", 0))
        prof = cell["config"]["profile"]
        assert prof["name"] == "paper" and prof["target_modules"] == ["all-linear"]
        assert prof["max_length"] == 64 and prof["doc_stride"] is None and prof["batch_size"] == 16
        assert cell["config"]["task_overrides"] == {"batch_size": 16}
        assert cell["data"]["train"]["stride"] == 16  # max(8, 64 // 4)
        assert cell["primary_metric"] == "f1" and cell["primary"] == cell["metrics"]["f1"]
        for key in ("exact", "f1"):
            assert 0.0 <= cell["metrics"][key] <= 100.0
        # trained on dev articles other than Normans and Rhine, which are always held out
        proto = cell["data"]["train"]["protocol"]
        assert {"Normans", "Rhine"} <= set(proto["held_out_titles"])
        assert not {"Normans", "Rhine"} & set(proto["train_titles"])
        sel = cell["lr_selection"]
        assert sel["metric"] == "f1" and len(sel["grid"]) == 2 and sel["chosen"] in sel["grid"]
        assert set(sel["scores"]) == {f"{lr:.6g}" for lr in sel["grid"]}
        assert sel["heldout"]["of"] == 4 and 1 <= sel["heldout"]["n"] < 4  # whole held-out articles
        assert cell["train"]["learning_rate"] == sel["chosen"]
        curve = cell["train"]["loss_curve"]
        assert curve and all(len(p) == 2 and p[1] > 0 for p in curve)
        conv = cell["train"]["convergence"]
        # judged on the selection run's held-out F1 curve, in SQuAD's percent units (one point = 1.0)
        assert isinstance(conv["converged"], bool) and conv["basis"] == "heldout"
        assert conv["heldout"]["metric"] == "f1" and conv["heldout"]["tol"] == 1.0
        assert conv["heldout"]["curve"][-1][1] == sel["scores"][f"{sel['chosen']:.6g}"]
        assert json.loads(selection_path(out, task, "lora").read_text())["done"] is True
    v1 = read_cell(cell_path(out, "squad_v1", "lora", 0))
    assert set(v1["metrics"]) == {"exact", "f1"}
    assert v1["data"]["eval"]["sources"][0]["file"] == "squad/v1.1/dev-v1.1.json.gz"
    v2 = read_cell(cell_path(out, "squad_v2", "lora", 0))
    m = v2["metrics"]
    assert set(m) == V2_KEYS
    ev = v2["data"]["eval"]
    assert ev["sources"][0]["file"] == "squad/v2.0/dev-partial.json.gz"
    n, n_no = ev["n_examples"], ev["n_unanswerable_in_subset"]
    assert n == 16 and 0 < n_no < n  # the subset has both kinds of question
    assert v2["data"]["train"]["n_unanswerable_in_subset"] >= 0
    # the official script's totals: overall = HasAns and NoAns weighted by their question counts
    for key in ("exact", "f1"):
        pooled = (m[f"has_ans_{key}"] * (n - n_no) + m[f"no_ans_{key}"] * n_no) / n
        assert abs(m[key] - pooled) < 1e-9
        # the best threshold is searched over every cut, the reported score uses threshold 0: never better
        assert m[f"best_{key}"] >= m[key] - 1e-9
