"""The real 12-layer MPNet-base (all-mpnet-base-v2) through ``gelora ranks`` and one ``validate`` cell, on CPU.

Slow (downloads nothing, but runs a 110 M-parameter model): ``pytest -m slow tests/e2e/test_mpnet_base.py``.
The model comes from ``gelora models fetch mpnet-base`` (short name ``mpnet-base``); when that is not
installed, from the directory in ``$GELORA_MPNET_DIR`` (an already assembled copy); otherwise the test is
skipped with the command to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gelora.errors import ModelLoadError
from gelora.models import resolve_model_name
from validation.data import default_data_dir

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _mpnet() -> str:
    try:
        resolve_model_name("mpnet-base")
        return "mpnet-base"
    except ModelLoadError:
        path = os.environ.get("GELORA_MPNET_DIR")
        if path and (Path(path) / "config.json").is_file():
            return path
    pytest.skip("MPNet-base is not installed: run `gelora models fetch mpnet-base` (or set GELORA_MPNET_DIR)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "gelora.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_ranks_and_a_validate_cell_on_mpnet_base(tmp_path: Path) -> None:
    model = _mpnet()
    rte = default_data_dir() / "glue" / "RTE" / "train.tsv.gz"
    out = tmp_path / "ranks.json"
    done = _run(
        "ranks",
        model,
        "--data",
        str(rte),
        "--text-column",
        "sentence1,sentence2",
        "--n-texts",
        "128",
        "--device",
        "cpu",
        "--budget-rank",
        "8",
        "--quiet",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["model_type"] == "mpnet" and result["n_blocks"] == 12 and len(result["ranks"]) == 12
    assert result["target_layout"]["modules"] == [
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
        "intermediate.dense",
        "output.dense",
    ]
    # uniform LoRA of rank 8 on all six linears of 12 blocks: 8 * 12 * (4 * 1536 + 3840 + 3840)
    assert result["budget"]["target"] == 8 * 12 * (4 * 1536 + 2 * 3840)
    assert 0.98 * result["budget"]["target"] <= result["lora_parameters"] <= result["budget"]["target"]

    run_dir = tmp_path / "run"
    done = _run(
        "validate",
        "glue",
        "--model",
        model,
        "--tasks",
        "rte",
        "--methods",
        "gelora",
        "--seeds",
        "1",
        "--profile",
        "test",
        "--device",
        "cpu",
        "--out",
        str(run_dir),
    )
    assert done.returncode == 0, done.stderr
    cell = json.loads((run_dir / "cells" / "rte__gelora__seed0.json").read_text())
    assert cell["status"] == "ok" and cell["budget"]["within_budget"] is True
    assert cell["target_modules"] == [
        f"mpnet.encoder.layer.{i}.attention.attn.{m}" for i in range(12) for m in ("q", "v")
    ]
    assert len(cell["method_info"]["block_ranks"]) == 12 and cell["train"]["steps"] == 4
