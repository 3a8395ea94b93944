#!/usr/bin/env bash
# GPU batch C (one H100 call): AdaLoRA at its own learning rate (profile default lr_multipliers adalora=10)
# on STS-B, MRPC, RTE and SST-2 (4000 training examples), 3 seeds; STS-B with a longer schedule (6 epochs)
# for LoRA and GeLoRA, 3 seeds; the model's ID profile for the full report; then the full report, collecting
# every grid. Cells run as concurrent single-cell processes sharing the one GPU (the encoder is small, so one
# process leaves the GPU mostly idle). Resumable: finished cells are skipped.
# Needs .devcarry/ (scripts/gpu/make_carry.sh) and reports/full/raw/{estimators,theory}.json made on CPU
# (gelora report --profile full --sections estimators,theory --out reports/full), which the report reuses.
# Usage: BUDGET_S=420 bash scripts/gpu/suite_c.sh
source scripts/gpu/common.sh
export OMP_NUM_THREADS=1
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-420} ))
plan() {  # dir task methods seeds [profile overrides as python kwargs]
  python3 -c "from validation.finetune.grid import write_plan; from validation.finetune.runner import get_profile; \
write_plan(__import__('pathlib').Path('$1'), ['$2'], '$3'.split(','), [0, 1, 2], get_profile('gpu'${4:+, $4}))"
}
plan reports/gpu/grid-adalora stsb adalora; plan reports/gpu/grid-adalora mrpc adalora
plan reports/gpu/grid-adalora rte adalora; plan reports/gpu/grid-sst2-adalora sst2 adalora "train_size=4000"
plan reports/gpu/grid-stsb-e6 stsb lora,gelora "epochs=6.0"
pids=()
cell() {  # out task method seed [extra args]
  local out=$1 task=$2 method=$3 seed=$4; shift 4
  python3 -m validation.commands.validate glue --tasks "$task" --methods "$method" --seeds "$seed," \
    --profile gpu --device cuda --out "$out" "$@" > "/tmp/c_${out##*/}_${task}_${method}_${seed}.log" 2>&1 &
  pids+=($!)
}
echo "=== cells ($(date +%T))"
for seed in 0 1 2; do
  for task in stsb mrpc rte; do cell reports/gpu/grid-adalora "$task" adalora "$seed"; done
  cell reports/gpu/grid-sst2-adalora sst2 adalora "$seed" --train-size 4000
  for method in lora gelora; do cell reports/gpu/grid-stsb-e6 stsb "$method" "$seed" --epochs 6; done
done
echo "=== model profile for the full report ($(date +%T))"
python3 -m gelora.cli report --profile full --sections model_profile --out reports/full 2>&1 | grep -v -i warn | tail -4
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while (( $(date +%s) < DEADLINE )) && alive; do sleep 5; done
kill "${pids[@]}" 2>/dev/null; sleep 3
echo "=== cells done ($(date +%T)):"
for d in grid-adalora grid-sst2-adalora grid-stsb-e6; do
  echo "$d: $(ls reports/gpu/$d/cells/*.json 2>/dev/null | grep -vc failed) cells"
  ls reports/gpu/$d/cells/ 2>/dev/null | grep failed && for f in reports/gpu/$d/cells/*failed*; do head -c 600 "$f"; echo; done
  rm -rf "reports/gpu/$d/work"
done
for f in /tmp/c_*.log; do grep -H -i "error\|Traceback" "$f" | head -3; done
echo "=== full report ($(date +%T))"
python3 -m gelora.cli report --profile full --out reports/full --runs reports/gpu/grid --runs reports/gpu/grid-sst2 \
  --runs reports/gpu/grid-adalora --runs reports/gpu/grid-sst2-adalora 2>&1 | grep -v -i warn | tail -8
# one archive: the device tool brings back a limited number of files, none nested deeply
tar -czf "$OUT/suite_c.tgz" reports/full reports/gpu/grid-adalora reports/gpu/grid-sst2-adalora reports/gpu/grid-stsb-e6
echo "=== done ($(date +%T))"
