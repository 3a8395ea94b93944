#!/usr/bin/env bash
# GPU batch G (one H100 call): a learning-rate sensitivity sweep on STS-B, MRPC, RTE and SST-2 (4000
# training examples), 3 seeds, on worker subprocesses sharing the GPU (`validate glue --workers`).
#   WORKERS, WORKERS_SST2, GPU  workers of the two grids (default 6 and 2) and the GPU index (default 0)
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
echo "=== cells ($(date +%T)), learning-rate factors $lrm_py"
# one grid command per run directory, its cells on worker subprocesses of GPU 0 (issue 23; these replaced
# 24 hand-started single-cell processes); `timeout` stops a command and its workers at the deadline, and
# a rerun resumes (finished cells are skipped, claimed cells of killed workers are rerun)
left=$(( DEADLINE - $(date +%s) ))
timeout "$left" python3 -m validation.commands.validate glue --tasks stsb,mrpc,rte --methods "${METHODS// /,}" \
  --seeds 3 --profile gpu --device cuda "${lrm_args[@]}" --out "reports/gpu/grid-$TAG" \
  --workers "${WORKERS:-6}" --gpus "${GPU:-0}" > /tmp/g_grid.log 2>&1 &
p1=$!
timeout "$left" python3 -m validation.commands.validate glue --tasks sst2 --methods "${METHODS// /,}" \
  --seeds 3 --profile gpu --device cuda "${lrm_args[@]}" --train-size 4000 --out "reports/gpu/grid-sst2-$TAG" \
  --workers "${WORKERS_SST2:-2}" --gpus "${GPU:-0}" > /tmp/g_sst2.log 2>&1 &
p2=$!
wait "$p1" "$p2"
grep -h "^\[grid" /tmp/g_grid.log /tmp/g_sst2.log | tail -2
echo "=== cells done ($(date +%T)):"
for d in "grid-$TAG" "grid-sst2-$TAG"; do
  echo "$d: $(ls reports/gpu/$d/cells/*.json 2>/dev/null | grep -vc failed) cells"
  ls reports/gpu/$d/cells/ 2>/dev/null | grep failed && for f in reports/gpu/$d/cells/*failed*; do head -c 600 "$f"; echo; done
  rm -rf "reports/gpu/$d/work" "reports/gpu/$d/cache" "reports/gpu/$d/claims" "reports/gpu/$d/workers"
done
for d in "grid-$TAG" "grid-sst2-$TAG"; do grep -l -i "error\|Traceback" reports/gpu/$d/logs/*.log 2>/dev/null | head -3; done
tar -czf "$OUT/suite_g_$TAG.tgz" "reports/gpu/grid-$TAG" "reports/gpu/grid-sst2-$TAG"
echo "=== done ($(date +%T))"
