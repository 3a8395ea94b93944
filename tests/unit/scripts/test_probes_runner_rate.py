"""scripts/probes/runner_rate.py on the CPU, in a fresh interpreter as on the GPU: the patch reaches the
runner's ``from transformers import TrainingArguments``, and the weights do not change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ARGS = [
    "--profile",
    "test",
    "--tasks",
    "rte",
    "--methods",
    "lora",
    "--seeds",
    "1",
    "--no-lr-select",
    "--device",
    "cpu",
]


def _probe(variant: str, out: Path) -> tuple[dict, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "scripts/probes/runner_rate.py"), "--variant", variant, "--", *ARGS]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out.with_name(out.name + ".log").write_text(done.stdout, encoding="utf-8")  # as on the GPU
    (line,) = [json.loads(x) for x in done.stdout.splitlines() if x.startswith('{"probe"')]
    (cell,) = sorted((out / "cells").glob("*.json"))
    return line, json.loads(cell.read_text(encoding="utf-8"))


def test_each_variant_reaches_the_trainer_and_leaves_the_training_alone(
    tmp_path: Path, load_script, capsys: pytest.CaptureFixture[str]
) -> None:
    d, dcell = _probe("default", tmp_path / "d")
    (dcell_name,) = [p.name for p in (tmp_path / "d" / "cells").glob("*.json")]
    n, ncell = _probe("no_nan_filter_nonblocking", tmp_path / "n")
    mod = load_script("probes/runner_rate.py")
    rd, rn = mod.collect([tmp_path / "d", tmp_path / "n"])
    assert (rd["run"], rd["variant"], rn["variant"]) == ("d", "default", "no_nan_filter_nonblocking")
    assert rn["training_args"] == n["training_args"] and rd["steps"] == dcell["train"]["steps"] > 0
    assert rd["steps_per_s"] == rd["steps"] / dcell["train"]["train_time_s"]
    assert rd["primary"] == dcell["primary"] and rd["train_loss"] == dcell["train"]["train_loss"]
    # the command line prints the same records, one JSON line a run
    assert mod.main(["--collect", str(tmp_path / "d"), str(tmp_path / "n")]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [rd, rn]
    (tmp_path / "n.log").write_text("no probe line\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="0 probe lines"):
        mod.collect([tmp_path / "n"])
    (tmp_path / "n.log").unlink()
    with pytest.raises(SystemExit, match="n.log is missing"):
        mod.collect([tmp_path / "n"])
    with pytest.raises(SystemExit, match="0 cells"):
        mod.collect([tmp_path / "missing"])
    failed = json.loads((tmp_path / "d" / "cells" / dcell_name).read_text(encoding="utf-8"))
    (tmp_path / "d" / "cells" / dcell_name).write_text(
        json.dumps({**failed, "status": "failed"}), encoding="utf-8"
    )
    with pytest.raises(SystemExit, match="no finished training"):
        mod.collect([tmp_path / "d"])
    # skip_unfinished leaves such runs out, says so, and keeps the rest
    capsys.readouterr()
    (tmp_path / "n.log").write_text(json.dumps(n) + "\n", encoding="utf-8")
    assert mod.collect([tmp_path / "d", tmp_path / "missing", tmp_path / "n"], skip_unfinished=True) == [rn]
    err = capsys.readouterr().err
    assert "left out" in err and "no finished training" in err and "0 cells" in err
    # the switches and the runs in any order
    d_, m_, n_ = str(tmp_path / "d"), str(tmp_path / "missing"), str(tmp_path / "n")
    for argv in (
        ["--collect", "--skip-unfinished", d_, m_, n_],
        ["--skip-unfinished", "--collect", d_, m_, n_],
        ["--collect", d_, "--skip-unfinished", m_, n_],
    ):
        assert mod.main(argv) == 0
        assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [rn]
    assert d["variant"] == "default" and d["training_args"] == [{}]
    assert n["training_args"] == [
        {"logging_nan_inf_filter": False, "accelerator_config": {"non_blocking": True}}
    ]
    assert (
        dcell["train"]["loss_curve"] == ncell["train"]["loss_curve"] and dcell["metrics"] == ncell["metrics"]
    )


def test_the_patch_is_undone_and_bad_calls_are_refused(load_script) -> None:
    mod = load_script("probes/runner_rate.py")
    with pytest.raises(SystemExit):
        mod.overrides("graphs")
    with pytest.raises(SystemExit, match="after `--`"):
        mod.main(["--variant", "default"])
    with pytest.raises(SystemExit, match="takes no"):
        mod.main(["--collect", "runs/x", "--", "--tasks", "rte"])
    with pytest.raises(SystemExit, match="takes no"):
        mod.main(["--collect", "runs/x", "--variant", "no_nan_filter"])
    with pytest.raises(SystemExit, match="at least one run"):
        mod.main(["--collect", "--skip-unfinished"])
    with pytest.raises(SystemExit, match="only with --collect"):
        mod.main(["runs/x"])
    import transformers

    before = sys.modules["transformers"].TrainingArguments
    with mod.patched("no_nan_filter") as seen:
        from transformers import TrainingArguments

        assert TrainingArguments is not before and seen == []
    assert sys.modules["transformers"].TrainingArguments is before and transformers is not None
