"""The ``validate glue`` command end to end: kill it mid-grid, rerun, nothing finished is lost or redone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from validation.finetune.grid import summarise
from validation.finetune.runner import cell_path

ROOT = Path(__file__).resolve().parents[2]


def _command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "validation.commands.validate",
        "glue",
        "--tasks",
        "rte",
        "--methods",
        "lora,adalora",
        "--seeds",
        "1",
        "--profile",
        "test",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root with the test environment, capturing its text output."""
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_killed_grid_resumes_without_losing_or_redoing_cells(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = cell_path(out, "rte", "lora", 0)
    proc = subprocess.Popen(
        _command(out), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 240
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), "the first cell was never written"
        proc.kill()  # SIGKILL: no cleanup handlers run
    finally:
        proc.kill()
        proc.wait(timeout=60)
    stamp = first.stat().st_mtime_ns
    json.loads(first.read_text("utf-8"))  # complete, valid JSON despite the kill
    done = _run(_command(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[skip  ] rte__lora__seed0" in done.stderr
    assert first.stat().st_mtime_ns == stamp
    summary = summarise(out)
    assert summary["n_cells"] == 2 and summary["missing"] == []
    assert set(summary["table"]["rte"]) == {"lora", "adalora"}
    assert "rte    lora" in done.stdout  # the printed summary table


def test_user_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    bad = _run(
        [
            sys.executable,
            "-m",
            "validation.commands.validate",
            "glue",
            "--tasks",
            "wnli",
            "--out",
            str(tmp_path),
        ],
        timeout=120,
    )
    assert bad.returncode == 2
    assert "unknown GLUE task 'wnli'" in bad.stderr and "Traceback" not in bad.stderr
    bad_lr = _run([*_command(tmp_path / "lr"), "--lr-multiplier", "adalora=fast"], timeout=120)
    assert bad_lr.returncode == 2
    assert "--lr-multiplier factor must be a number" in bad_lr.stderr and "Traceback" not in bad_lr.stderr


def test_squad_scoring_command(tmp_path: Path) -> None:
    from validation.data.squad import load_squad

    examples = load_squad(version="2.0")
    # gold text for answerable questions, "" (no answer) for unanswerable ones, then spoil 10 answers
    preds = {e.id: (e.answers[0] if e.answers else "") for e in examples}
    spoiled = [e.id for e in examples if e.answers][:10]
    preds.update({q: "" for q in spoiled})
    (tmp_path / "preds.json").write_text(json.dumps(preds), encoding="utf-8")
    cmd = [sys.executable, "-m", "validation.commands.validate", "squad", str(tmp_path / "preds.json")]
    done = _run([*cmd, "--out", str(tmp_path / "scores.json")], timeout=120)
    assert done.returncode == 0, done.stderr
    scores = json.loads((tmp_path / "scores.json").read_text("utf-8"))
    assert scores["exact"] == pytest.approx(100 * (706 - 10) / 706)
    assert scores["no_ans_exact"] == pytest.approx(100.0) and scores["has_ans_total"] == 386
    (tmp_path / "bad.json").write_text("[1, 2]", encoding="utf-8")
    bad = _run([*cmd[:-1], str(tmp_path / "bad.json")], timeout=120)
    assert bad.returncode == 2 and "expected a JSON object" in bad.stderr


@pytest.mark.slow
def test_quick_profile_one_cell(tmp_path: Path) -> None:
    """The README's quick profile (256 train / 256 dev examples, 64 tokens, 3 epochs), one cell on CPU."""
    cmd = _command(tmp_path / "quick")
    cmd[cmd.index("test")] = "quick"
    cmd[cmd.index("lora,adalora")] = "lora"
    done = _run(cmd, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    cell = json.loads(cell_path(tmp_path / "quick", "rte", "lora", 0).read_text("utf-8"))
    # 256 examples / batch 16 x 3 epochs
    assert cell["train"]["steps"] == 48 and cell["data"]["eval"]["validation"]["n"] == 256


def test_grid_runs_under_torchrun_with_two_processes(tmp_path: Path) -> None:
    """Two gloo processes on CPU: the data-parallel path the GPU command uses with --nproc_per_node."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        "--nproc_per_node",
        "2",
        *_command(out)[1:],
    ]
    cmd[cmd.index("lora,adalora")] = "lora"
    done = _run(cmd, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cell = json.loads(cell_path(out, "rte", "lora", 0).read_text("utf-8"))
    assert cell["environment"]["world_size"] == 2
    # 32 training examples, batch 8 per process, 2 processes: 2 optimizer steps instead of 4 (1 epoch)
    assert cell["train"]["steps"] == cell["train"]["planned_steps"] == 2
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["rte__lora__seed0.json"]
