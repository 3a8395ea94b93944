#!/usr/bin/env bash
# GPU batch B: GeoLoRA/LoRA/AdaLoRA step time on a quiet GPU, then the GLUE grid (gpu profile) as 8
# concurrent processes sharing the one GPU (task x method-pair; cells are comparable within a task), and
# the estimator cross-comparison. Resumable: cells already in $GRID are skipped. Usage: bash scripts/gpu/suite_b.sh
source scripts/gpu/common.sh
GRID="${GRID:-/tmp/grid-gpu}"; mkdir -p "$GRID"
[[ -f .devcarry/grid-gpu.tgz ]] && tar -xzf .devcarry/grid-gpu.tgz -C "$GRID" --strip-components=1
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-500} ))
echo "=== geolora bench ($(date +%T))"
[[ -n "${SKIP_BENCH:-}" ]] || timeout 120 python3 -m validation.finetune.geolora.bench --device cuda --out "$OUT/geolora_bench_h100.json" \
  --batch-size 32 --seq-len 128 --steps 50 --warmup 5 2>&1 | grep -v -i warn | tail -8
echo "=== grid ($(date +%T))"
pids=()
for task in ${TASKS:-stsb mrpc rte sst2}; do
  size=""; [[ $task == sst2 ]] && size="--train-size 4000"
  for methods in ${METHOD_GROUPS:-lora,gelora adalora,geolora}; do
    python3 -m validation.commands.validate glue --tasks $task --methods $methods --seeds 0,1,2 \
      --profile gpu --device cuda $size --out "$GRID" > "/tmp/grid_${task}_${methods/,/_}.log" 2>&1 &
    pids+=($!)
  done
done
echo "=== crosscompare ($(date +%T))"
[[ -n "${SKIP_CC:-}" ]] || timeout $(( DEADLINE - $(date +%s) )) python3 -m validation.estimators.crosscompare --task stsb --sizes 1000,4000,16000,64000 \
  --samplings all,first,mean --seeds 0,1,2 --device cuda --out "$OUT/crosscompare_h100.json" 2>&1 \
  | grep -v -i "warn\|knn_without\|crosscompare:" | tail -30
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while (( $(date +%s) < DEADLINE )) && alive; do sleep 5; done
kill "${pids[@]}" 2>/dev/null; sleep 3
echo "=== cells done: $(ls "$GRID"/cells/*.json 2>/dev/null | grep -vc failed) ($(date +%T))"
ls "$GRID"/cells/ | grep failed && for f in "$GRID"/cells/*failed*; do head -c 600 "$f"; echo; done
tar -czf "$OUT/grid-gpu.tgz" -C "$(dirname "$GRID")" "$(basename "$GRID")/cells"
for f in /tmp/grid_*.log; do echo "-- $f"; tail -n 3 "$f"; done | grep -v -i warn | tail -60
