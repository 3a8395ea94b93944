"""scripts/gpu/waves.sh on the CPU: two overlapping waves on one run directory train each planned cell once,
the second extends the first's plan, and the copy for the fetch holds the cells and the wave logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from validation.data import default_data_dir

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--profile", "quick", "--tasks", "stsb", "--methods", "lora", "--train-size", "16"]
TINY += ["--eval-size", "8", "--epochs", "0.1", "--device", "cpu"]


@pytest.fixture
def waves(tmp_path: Path):
    """``waves(*args, check=True)`` runs scripts/gpu/waves.sh in a copy of scripts/ (runs/ stays out of this
    checkout) with this interpreter as python3; returns the completed process."""
    host = tmp_path / "host"
    shutil.copytree(ROOT / "scripts", host / "scripts")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OUT": str(tmp_path / "out"),
        "RUN": "runs/demo",
        "GELORA_CACHE_DIR": str(tmp_path / "cache"),
        "GELORA_DATA_DIR": str(default_data_dir()),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    # python3 must be this interpreter, environment included (the script calls python3)
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{tmp_path / 'bin'}:{os.environ.get('PATH', '')}"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "scripts/gpu/waves.sh", *args], cwd=host, env=env, capture_output=True, text=True
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    run.host = host  # type: ignore[attr-defined]
    return run


@pytest.mark.slow
def test_two_waves_share_one_run_directory(tmp_path: Path, waves) -> None:
    host = waves.host
    assert "launched A" in waves("launch", "A", *TINY, "--seeds", "1").stdout
    assert "launched B" in waves("launch", "B", *TINY, "--seeds", "2").stdout
    out = waves("wait", "300").stdout
    logs = "".join(p.read_text()[-2000:] for p in sorted((host / "runs").glob("*.log")))
    assert "A rc=0" in out and "B rc=0" in out, logs
    run = host / "runs" / "demo"
    assert sorted(p.name for p in (run / "cells").glob("*.json")) == [
        "stsb__lora__seed0.json",
        "stsb__lora__seed1.json",
    ]
    plan = json.loads((run / "grid.json").read_text())
    assert sorted(c["seed"] for c in plan["cells"]) == [0, 1]
    with tarfile.open(tmp_path / "out" / "runs.tgz") as tar:
        names = set(tar.getnames())
    assert {"runs/demo/cells/stsb__lora__seed1.json", "runs/A.log", "runs/B.log"} <= names
    assert not any("/claims/" in n or n.endswith(".pid") for n in names)


@pytest.mark.slow
def test_stop_ends_one_cell_and_a_rerun_trains_it(tmp_path: Path, waves) -> None:
    """``waves.sh stop CELL`` sends SIGTERM to the claim's owner: the worker stops at a step (no result,
    claim released, the wave ends instead of hanging) and the next wave trains the cell."""
    host = waves.host
    long = [*TINY[:-4], "--epochs", "40", "--device", "cpu", "--workers", "2"]
    assert "launched A" in waves("launch", "A", *long, "--seeds", "1").stdout
    claim = host / "runs" / "demo" / "claims" / "stsb__lora__seed0.claim"
    deadline = time.monotonic() + 240
    while not claim.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert claim.exists(), "the cell never started"
    assert "no claim" in waves("stop", "stsb__lora__seed9").stderr
    assert "stopped stsb__lora__seed0" in waves("stop", "stsb__lora__seed0").stdout
    out = waves("wait", "120").stdout
    assert "A rc=" in out and "A rc=0" not in out and "A rc=running" not in out, out
    run = host / "runs" / "demo"
    assert not (run / "cells" / "stsb__lora__seed0.json").exists() and not claim.exists()
    assert "launched B" in waves("launch", "B", *long, "--seeds", "1").stdout  # the same settings: resumes
    assert "B rc=0" in waves("wait", "300").stdout
    assert (run / "cells" / "stsb__lora__seed0.json").exists()
