#!/usr/bin/env bash
# Claim C5 (issue 19): LoRA, AdaLoRA, GeLoRA and GeoLoRA timed one at a time on the otherwise idle GPU,
# same task, steps and seed, paper profile (validation/finetune/walltime.py). Run it while no grid runs (before
# any grid of the device session, or after every wave has ended, as on 2026-11-30). Writes $OUT/walltime.json and $OUT/walltime.log (and, while it runs, the finished
# rounds to $OUT/walltime.partial.json, so a call cut by its time limit still brings them back). Settings by environment:
# TASK (stsb), EPOCHS (2), REPEATS (2), METHODS (lora,adalora@peft,adalora@fast,gelora,geolora: AdaLoRA with peft's
# allocation step, which users of peft run, and with ours, which the campaign runs), WARMUP (first; "all" pays every
# method's one-time costs before the rounds, so they time the steady state), MODEL (the profile's; mpnet-base
# on the model mpnet_assemble.sh unpacked, as waves.sh runs it; MODELS_DIR as there).
source scripts/gpu/common.sh
# a named model is the chunked one (2026-11-30: without this line the MPNet-base timing stopped at its first cell)
if [ -n "${MODEL:-}" ]; then use_chunked_model; fi
# one GPU: a single training process that sees two would run DataParallel at twice the batch (runner.check_one_gpu)
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >"$OUT/walltime_gpu_apps_before.txt"
python3 -m validation.finetune.walltime ${MODEL:+--model "$MODEL"} --task "${TASK:-stsb}" --methods "${METHODS:-lora,adalora@peft,adalora@fast,gelora,geolora}" \
  --epochs "${EPOCHS:-2}" --repeats "${REPEATS:-2}" --warmup "${WARMUP:-first}" --device cuda --out "$OUT/walltime.json" \
  >"$OUT/walltime.txt" 2>"$OUT/walltime.log"
echo "[walltime] rc $?"
cat "$OUT/walltime.txt"
