#!/usr/bin/env bash
# GPU batch G (one H100 call): a learning-rate sensitivity sweep on STS-B, MRPC, RTE and SST-2 (4000
# training examples), 3 seeds, as concurrent single-cell processes sharing the GPU (like suite_d.sh).
#   TAG      run name: cells go to reports/gpu/grid-$TAG and reports/gpu/grid-sst2-$TAG
#   METHODS  space-separated methods, e.g. "lora gelora"
#   LRM      space-separated method=factor pairs applied to the gpu profile's 5e-4, e.g. "lora=16 gelora=16"
#            (methods not named keep the profile's factor: adalora 10, others 1)
# Usage: TAG=lr16 METHODS="lora gelora" LRM="lora=16 gelora=16" BUDGET_S=480 bash scripts/gpu/suite_g.sh
source scripts/gpu/common.sh
export OMP_NUM_THREADS=1
: "${TAG:?set TAG}" "${METHODS:?set METHODS}" "${LRM:?set LRM}"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-480} ))
lrm_args=(); lrm_py='{"adalora": 10.0'
for kv in $LRM; do lrm_args+=(--lr-multiplier "$kv"); lrm_py+=", \"${kv%%=*}\": float(${kv#*=})"; done
lrm_py+='}'
methods_py="[$(printf "'%s'," $METHODS)]"
plan() {  # dir task [profile overrides]
  python3 -c "from pathlib import Path; from validation.finetune.grid import write_plan; from validation.finetune.runner import get_profile; \
write_plan(Path('$1'), ['$2'], $methods_py, [0, 1, 2], get_profile('gpu', lr_multipliers=$lrm_py${3:+, $3}))"
}
for task in stsb mrpc rte; do plan "reports/gpu/grid-$TAG" "$task"; done
plan "reports/gpu/grid-sst2-$TAG" sst2 "train_size=4000"
pids=()
echo "=== cells ($(date +%T)), learning-rate factors $lrm_py"
for seed in 0 1 2; do
  for method in $METHODS; do
    for task in stsb mrpc rte sst2; do
      out="reports/gpu/grid-$TAG"; extra=(); [[ $task == sst2 ]] && { out="reports/gpu/grid-sst2-$TAG"; extra=(--train-size 4000); }
      python3 -m validation.commands.validate glue --tasks "$task" --methods "$method" --seeds "$seed," \
        --profile gpu --device cuda "${lrm_args[@]}" --out "$out" "${extra[@]}" \
        > "/tmp/g_${task}_${method}_${seed}.log" 2>&1 &
      pids+=($!)
    done
  done
done
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while (( $(date +%s) < DEADLINE )) && alive; do sleep 5; done
kill "${pids[@]}" 2>/dev/null; sleep 3
echo "=== cells done ($(date +%T)):"
for d in "grid-$TAG" "grid-sst2-$TAG"; do
  echo "$d: $(ls reports/gpu/$d/cells/*.json 2>/dev/null | grep -vc failed) cells"
  ls reports/gpu/$d/cells/ 2>/dev/null | grep failed && for f in reports/gpu/$d/cells/*failed*; do head -c 600 "$f"; echo; done
  rm -rf "reports/gpu/$d/work"
done
for f in /tmp/g_*.log; do grep -H -i "error\|Traceback" "$f" | head -3; done
tar -czf "$OUT/suite_g_$TAG.tgz" "reports/gpu/grid-$TAG" "reports/gpu/grid-sst2-$TAG"
echo "=== done ($(date +%T))"
