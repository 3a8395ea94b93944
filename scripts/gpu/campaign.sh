#!/usr/bin/env bash
# Paper-profile grids on the GPU host, across consecutive device calls (issue 19). Each grid runs as a
# detached process session (setsid), so it keeps training between calls while the machine stays warm; a
# call starts the grids not yet running (or resumes them: finished cells are skipped, cut cells resume from
# their checkpoints), waits until all have finished or WAIT_S seconds have passed, and copies every run
# directory (without checkpoints and caches) plus its log to $OUT/runs/. Repeat the same command to keep
# waiting. Needs .devcarry/site (scripts/gpu/make_carry.sh) and the data (GELORA_DATA_DIR).
#
# GRIDS: one grid per line, "NAME ARGS..." with the arguments of `gelora validate glue` after it (--out is
# runs/NAME). A one-rate grid (--lr-grid 1, or one factor) trains its cells beside its selection runs: give it
# cells + (task, method) pairs workers and it trains in one wave (on two GPUs the workers are spread over
# both). Example (the 2026-11-29 run, README of reports/gpu/paper-minilm):
#   GRIDS='stsb --profile paper --tasks stsb --methods lora,gelora,full,head_only --seeds 5 --lr-grid 1 --workers 6
#   stsb-e3 --profile paper --tasks stsb --methods lora,gelora --seeds 1 --lr-grid 1 --epochs 3 --workers 2' \
#   WAIT_S=540 bash scripts/gpu/campaign.sh
source scripts/gpu/common.sh
mkdir -p runs
started=()
while read -r name args; do
  [ -z "${name:-}" ] && continue
  pidf="runs/$name.pid"
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    echo "[campaign] $name still running (pid $(cat "$pidf"))"
  elif [ -f "runs/$name.rc" ] && [ "$(cat "runs/$name.rc")" = 0 ]; then
    echo "[campaign] $name finished before"
  else
    rm -f "runs/$name.rc"  # a failed earlier launch's status must not mark this one finished (waves.sh busy)
    # shellcheck disable=SC2086
    setsid bash -c "python3 -m gelora.cli validate glue $args --out runs/$name >>runs/$name.log 2>&1; echo \$? >runs/$name.rc" \
      </dev/null >/dev/null 2>&1 &
    echo $! >"$pidf"
    echo "[campaign] started $name: validate glue $args"
  fi
  started+=("$name")
done <<<"$GRIDS"
t0=$(date +%s)
while :; do
  busy=0
  for name in "${started[@]}"; do
    kill -0 "$(cat "runs/$name.pid")" 2>/dev/null && busy=1
  done
  [ $busy = 0 ] && break
  [ $(( $(date +%s) - t0 )) -ge "${WAIT_S:-540}" ] && break
  sleep 10
done
for name in "${started[@]}"; do
  copy_run "runs/$name" "$OUT/runs/$name"
  tail -c 20000 "runs/$name.log" >"$OUT/runs/$name.log" 2>/dev/null
  cp "runs/$name.rc" "$OUT/runs/" 2>/dev/null
  echo "[campaign] $name: $(ls "runs/$name/cells" 2>/dev/null | grep -c json) cell files, rc $(cat "runs/$name.rc" 2>/dev/null || echo running)"
done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
