#!/usr/bin/env bash
# On the GPU host after the MPNet chunk calls: the per-step bench of LoRA, AdaLoRA (peft's and our allocation
# step) and GeoLoRA (its integrator's parts; plain and with batched_qr) on MPNet-base (docs/performance.md, "GPU (H200, ...)"); writes
# $OUT/adalora_step_h200.jsonl and prints the AdaLoRA allocator the campaign should use: "fast" when our step
# ran and ended with peft's parameters bit for bit on this device, else "peft"
# (validation.finetune.adalora_fast.allocator_from_bench). Use:
#   export GELORA_ADALORA_ALLOCATOR=$(bash scripts/gpu/step_bench.sh); echo "allocator: $GELORA_ADALORA_ALLOCATOR"
# Environment: MODELS_DIR (as waves.sh), MODEL (mpnet-base), BENCH_TIMEOUT (200 s).
source scripts/gpu/common.sh >/dev/null
use_chunked_model
J="$OUT/adalora_step_h200.jsonl"
timeout "${BENCH_TIMEOUT:-200}" python3 scripts/adalora_step_bench.py --model "${MODEL:-mpnet-base}" --device cuda \
  --bf16 --batch 32 --length 128 --steps 20 --phase budget --phase-times \
  --methods lora,adalora@peft,adalora@fast,geolora,geolora@batched_qr >"$J" 2>"$OUT/bench.err"
echo "[step_bench] rc $?" >&2
python3 -c 'import sys
from validation.finetune.adalora_fast import allocator_from_bench
try:
    print(allocator_from_bench(sys.argv[1]))
except Exception as exc:  # no usable bench: the reference path
    print(f"[step_bench] {exc}", file=sys.stderr)
    print("peft")' "$J"
