#!/usr/bin/env bash
# GPU batch D (one H100 call): LoRA and GeLoRA at 4x the gpu profile's learning rate (2e-3 instead of 5e-4;
# AdaLoRA's own default factor is 10) on STS-B, MRPC, RTE and SST-2 (4000 training examples), 3 seeds, as
# concurrent single-cell processes sharing the GPU. Tests whether the LoRA-vs-GeLoRA comparison and GeLoRA's
# STS-B failure depend on the learning rate. Usage: BUDGET_S=480 bash scripts/gpu/suite_d.sh
source scripts/gpu/common.sh
export OMP_NUM_THREADS=1
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-480} ))
LRM='{"adalora": 10.0, "lora": 4.0, "gelora": 4.0}'
plan() {  # dir task [profile overrides]
  python3 -c "from pathlib import Path; from validation.grid import write_plan; from validation.runner import get_profile; \
write_plan(Path('$1'), ['$2'], ['lora', 'gelora'], [0, 1, 2], get_profile('gpu', lr_multipliers=$LRM${3:+, $3}))"
}
for task in stsb mrpc rte; do plan reports/gpu/grid-lr4 "$task"; done
plan reports/gpu/grid-sst2-lr4 sst2 "train_size=4000"
pids=()
echo "=== cells ($(date +%T))"
for seed in 0 1 2; do
  for method in lora gelora; do
    for task in stsb mrpc rte sst2; do
      out=reports/gpu/grid-lr4; extra=(); [[ $task == sst2 ]] && { out=reports/gpu/grid-sst2-lr4; extra=(--train-size 4000); }
      python3 -m validation.commands.validate glue --tasks "$task" --methods "$method" --seeds "$seed," \
        --profile gpu --device cuda --lr-multiplier lora=4 --lr-multiplier gelora=4 --out "$out" "${extra[@]}" \
        > "/tmp/d_${task}_${method}_${seed}.log" 2>&1 &
      pids+=($!)
    done
  done
done
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while (( $(date +%s) < DEADLINE )) && alive; do sleep 5; done
kill "${pids[@]}" 2>/dev/null; sleep 3
echo "=== cells done ($(date +%T)):"
for d in grid-lr4 grid-sst2-lr4; do
  echo "$d: $(ls reports/gpu/$d/cells/*.json 2>/dev/null | grep -vc failed) cells"
  ls reports/gpu/$d/cells/ 2>/dev/null | grep failed && for f in reports/gpu/$d/cells/*failed*; do head -c 600 "$f"; echo; done
  rm -rf "reports/gpu/$d/work"
done
for f in /tmp/d_*.log; do grep -H -i "error\|Traceback" "$f" | head -3; done
tar -czf "$OUT/suite_d.tgz" reports/gpu/grid-lr4 reports/gpu/grid-sst2-lr4
echo "=== done ($(date +%T))"
