"""scripts/gpu/walltime.sh (claim C5) with stand-ins for nvidia-smi and python3: a named model runs on the
chunked model's folder, as waves.sh runs it (on 2026-11-30 the MPNet-base timing stopped at its first cell
without it), on one pinned GPU; without a model the bundled one and the caller's environment stay."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(tmp_path: Path, **env: str) -> str:
    """Runs walltime.sh in a copy of scripts/; returns what the stand-in python3 of the timing saw."""
    host = tmp_path / "host"
    shutil.copytree(ROOT / "scripts", host / "scripts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen.txt"
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho stand-in\n")
    # the timing call is the one with -m validation.finetune.walltime; the version print of common.sh is not
    (bin_dir / "python3").write_text(
        '#!/bin/sh\ncase "$*" in *validation.finetune.walltime*)\n'
        f'  echo "models_dir=${{GELORA_MODELS_DIR:-unset}} gpus=$CUDA_VISIBLE_DEVICES path=$PYTHONPATH args=$*" >"{seen}";;\n'
        "esac\n"
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    unset = ("GELORA_MODELS_DIR", "MODELS_DIR", "MODEL", "CUDA_VISIBLE_DEVICES", "PYTHONPATH")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        ["bash", "scripts/gpu/walltime.sh"],
        cwd=host,
        env={**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"), **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return seen.read_text()


def test_a_named_model_runs_on_the_assembled_folder_on_one_gpu(tmp_path: Path) -> None:
    seen = _run(tmp_path, MODEL="mpnet-base", MODELS_DIR="/models/here")
    assert "models_dir=/models/here" in seen and "--model mpnet-base" in seen
    assert "gpus=0 " in seen and ".devcarry/sitelite" in seen  # the tokenizer package without weights


def test_a_models_dir_the_caller_set_is_kept(tmp_path: Path) -> None:
    seen = _run(tmp_path, MODEL="mpnet-base", GELORA_MODELS_DIR="/mine")
    assert "models_dir=/mine " in seen


def test_without_a_model_the_environment_is_left_alone(tmp_path: Path) -> None:
    seen = _run(tmp_path)
    assert "models_dir=unset" in seen and "--model" not in seen and "sitelite" not in seen
