#!/usr/bin/env bash
# MPNet-base paper-protocol grid on STS-B in waves that share ONE run directory (issue 19; run on the GPU host
# from the repository root after the mpnet_assemble.sh calls). Unlike campaign.sh (one directory
# per grid), a later wave extends the same directory: the plan becomes the union (grid.write_plan), finished
# cells and selection runs are skipped, and cells are claimed atomically, so waves may overlap.
#   bash scripts/gpu/waves.sh launch SEEDS WORKERS NAME   # start a detached wave (--seeds SEEDS)
#   bash scripts/gpu/waves.sh wait SECONDS                # wait for every wave (at most SECONDS)
# Both then print each cell's last logged epoch and copy the run directory (no checkpoints, caches or
# claims) and the wave logs to $OUT/runs.tgz. Used on 2026-11-29 (reports/gpu/paper-mpnet/README.md) as
# .devcarry/mp/go.sh, with this content.
source scripts/gpu/common.sh >/dev/null
export PYTHONPATH=$PYTHONPATH:$PWD/.devcarry/sitelite GELORA_MODELS_DIR=/tmp/mpnet-assembly GELORA_DATA_DIR=$PWD/.devcarry/data_min
R=runs/mpnet-stsb; mkdir -p runs
case "$1" in
launch)
  setsid bash -c "python3 -m gelora.cli validate glue --model mpnet-base --profile paper --tasks stsb --methods lora,gelora,full,head_only --seeds $2 --lr-grid 1 --workers $3 --out $R >>runs/$4.log 2>&1; echo \$? >runs/$4.rc" </dev/null >/dev/null 2>&1 &
  echo $! > runs/$4.pid; echo "launched $4 seeds=$2 workers=$3 at $(date -u +%T)";;
wait)
  t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt "$2" ]; do
    busy=0; for p in runs/*.pid; do kill -0 "$(cat $p)" 2>/dev/null && busy=1; done
    [ $busy = 0 ] && break; sleep 10
  done;;
esac
date -u +%T
for f in $R/logs/stsb__*.log; do [ -f "$f" ] && echo "$(basename $f .log) $(tail -c 400 $f | tr '\r' '\n' | grep -o "'epoch': '[0-9.]*'" | tail -1)"; done
echo "cells: $(ls $R/cells 2>/dev/null | tr '\n' ' ')"; echo "sel: $(ls $R/lr_select 2>/dev/null | tr '\n' ' ')"
for p in runs/*.pid; do n=$(basename $p .pid); echo "$n rc=$(cat runs/$n.rc 2>/dev/null || echo running)"; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
mkdir -p $OUT/runs/mpnet-stsb
tar -C $R --exclude=./work --exclude=./cache --exclude=./lr_select/work --exclude=./claims --exclude=./workers -cf - . 2>/dev/null | tar -C $OUT/runs/mpnet-stsb -xf -
for l in runs/*.log; do tail -c 5000 $l > $OUT/runs/$(basename $l); done
tar -C $OUT -czf $OUT/runs.tgz runs && rm -rf $OUT/runs
