#!/usr/bin/env bash
# Paper-protocol grids in waves that share ONE run directory (issue 19), on the GPU host from the repository
# root. Unlike campaign.sh (one directory per grid), a later wave extends the same directory: the plan becomes
# the union (grid.write_plan), finished cells and selection runs are skipped, and cells are claimed
# atomically, so waves may overlap (a second wave can start while the first still trains).
#   bash scripts/gpu/waves.sh launch NAME ARGS...   # start a detached wave: gelora validate glue ARGS --out $RUN;
#                                                   # refused (exit 2, nothing started) when the data root
#                                                   # ($GELORA_DATA_DIR or --data-dir) lacks a file of a task
#                                                   # of --tasks (python -m validation.finetune.triage --check-data)
#                                                   # and returns SETTLE_S (default 45) s later, or when
#                                                   # the wave ends: a call must not end while a wave
#                                                   # starts (the next call's copy of the tree meets its
#                                                   # imports); SETTLE_S=0 returns at once; exit 5 when
#                                                   # the wave ended within the settle with a non-zero
#                                                   # status; refused (exit 2) while a wave of NAME runs
#   bash scripts/gpu/waves.sh wait SECONDS          # wait for every wave of this host (at most SECONDS)
#   MPS=1 bash scripts/gpu/waves.sh launch NAME ARGS...  # the same under CUDA MPS (scripts/gpu/mps_lib.sh):
#                                                   # starts the daemon unless this host's waves already run
#                                                   # under it (runs/mps.on), refused (exit 2) beside waves
#                                                   # running without it; every wave launched while
#                                                   # runs/mps.on exists runs under MPS and its cells record
#                                                   # environment.cuda_mps (GELORA_CUDA_MPS=1); `wait` quits
#                                                   # the daemon once no wave runs (a later launch needs
#                                                   # MPS=1 again; launch prints whether its wave runs under
#                                                   # MPS). The default of the plans
#                                                   # since scripts/gpu/mps_ab.sh showed (2026-12-01) that MPS
#                                                   # keeps the numbers and gives about 1.25x at 12 processes
#   bash scripts/gpu/waves.sh busy                  # exit 0 ("busy") while a wave of this host runs, else 1
#                                                   # ("idle"); prints nothing else and fetches nothing. Use
#                                                   # it, not `pgrep -f "validate glue"`, which also matches
#                                                   # the device call's own command line (2026-12-01 10:38)
#   bash scripts/gpu/waves.sh stop CELL...          # SIGTERM to the process holding each cell's claim
#                                                   # (e.g. stsb__adalora__seed1, or stsb__adalora for its
#                                                   # selection run, also by the log name the listing at
#                                                   # the end of each command prints, stsb__adalora__lr_select):
#                                                   # it stops at the next step, keeps its
#                                                   # checkpoints, releases the claim (validation.finetune.stop)
#   bash scripts/gpu/waves.sh stop --all           # SIGTERM to every live run of RUN (cells and selection
#                                                   # runs), e.g. before ckpt_carry pack: every worker exits
#   bash scripts/gpu/waves.sh hold CELL...          # no worker starts these cells (again) until `release`;
#                                                   # with `stop`: stop a cell AND keep it from being picked
#                                                   # up by a worker that finishes its own (hold first)
#   bash scripts/gpu/waves.sh release CELL...       # remove the holds (a later launch trains/resumes them);
#                                                   # hold and release take the same names as stop
#   bash scripts/gpu/waves.sh triage SECONDS [--by linear|shared] [--apply]  # project each running
#                                                   # cell/selection run from its log
#                                                   # (python -m validation.finetune.triage): fits / past
#                                                   # deadline / unknown against SECONDS from now; --apply holds
#                                                   # and stops (SIGTERM) those past it, so the rest finish;
#                                                   # its 'shared' column also counts the runs of every
#                                                   # other directory under runs/ (--beside) and keeps
#                                                   # busy the share of a worker that will claim one of
#                                                   # the 'queued:' cells (never projected themselves);
#                                                   # --by shared picks by that column, one process at a
#                                                   # time (the latest to end) until the rest fit, where the
#                                                   # default (linear: each at its present pace) stops all
#                                                   # past it at once and stopped runs that would have fitted
#                                                   # on 2026-12-01 (triage.py's docstring); other arguments
#                                                   # pass through (--stop-unknown); exits with the triage's
#                                                   # status (2: no such run directory) after the packing
# Each then prints each cell's last logged epoch, copies the run directory (no checkpoints, caches or claims)
# and the wave logs to $OUT/runs.tgz (which keeps the run directories earlier commands of the same call put
# there, so `RUN=a ... triage` then `RUN=b ... triage` bring both back, and adds every other run directory of
# the host under runs/ as it is at that moment). Take the stop decision on the device, in the same call as the wait (twice
# an operator deciding after the report left the machine idle past its limit, and lost it): with ~1100 s of
# device time left at the start of the call, wait, then stop what cannot end within the ~700 s left less a
# margin for the last fetch:
#   bash scripts/gpu/waves.sh wait 400; bash scripts/gpu/waves.sh triage 600 --apply
# Environment: RUN (default runs/mpnet-stsb), MODELS_DIR (default /tmp/mpnet-assembly, where
# scripts/gpu/mpnet_assemble.sh unpacks the model), MPS (1: launch under CUDA MPS, above; exit 3 without its
# control program, 4 when its daemon does not start), WAIT_POLL (seconds between `wait`'s looks, default 10). Used on 2026-11-29
# (reports/gpu/paper-mpnet/README.md) in a first form with the task and methods fixed:
#   bash scripts/gpu/waves.sh launch A --model mpnet-base --profile paper --tasks stsb \
#       --methods lora,gelora,full,head_only --seeds 3 --lr-grid 1 --workers 16
#   bash scripts/gpu/waves.sh wait 400
# Keep device calls back to back: the machine goes back after about 30 s idle, with the runs on it.
# true while a wave launched on this host is alive: its runs/NAME.pid process lives and it has not written
# runs/NAME.rc (written just before that process exits: a finished wave never counts, even if its pid is reused)
# a wave runs: its pid file exists, it wrote no exit status yet, and its process lives
wave_alive() {
  [ -f "runs/$1.pid" ] && [ ! -f "runs/$1.rc" ] && kill -0 "$(cat "runs/$1.pid")" 2>/dev/null
}
any_wave_alive() {
  local p
  for p in runs/*.pid; do
    [ -f "$p" ] && wave_alive "$(basename "$p" .pid)" && return 0
  done
  return 1
}
# busy: before common.sh (no GPU query, no imports, no run directory made)
if [ "${1:-}" = busy ]; then
  if any_wave_alive; then echo busy; exit 0; else echo idle; exit 1; fi
fi
source scripts/gpu/common.sh >/dev/null
source scripts/gpu/mps_lib.sh
use_chunked_model
R="${RUN:-runs/mpnet-stsb}"
# only a launch that starts a wave makes its run directory: `wait` or `triage` without RUN made an empty
# runs/mpnet-stsb, which later calls then packed and listed as a run
mkdir -p runs
export CUDA_MPS_LOG_DIRECTORY="$PWD/runs/mps_log"
# mps_reconcile WHO: runs/mps.on without a daemon is removed; a daemon without it (left by a killed
# mps_ab.sh or launch) gets it, so `wait` quits it, and every wave launched while it runs is marked
mps_reconcile() {
  command -v pgrep >/dev/null || return 0
  local pids; pids=$(mps_pids)
  if [ -f runs/mps.on ] && [ -z "$pids" ]; then
    rm -f runs/mps.on; echo "$1: runs/mps.on removed (no MPS daemon runs)" >&2
  elif [ ! -f runs/mps.on ] && [ -n "$pids" ]; then
    date -u +%FT%TZ >runs/mps.on; echo "$1: an MPS daemon runs (not started by waves.sh): waves run under it" >&2
  fi
}
case "${1:-}" in
launch)
  name="${2:?usage: waves.sh launch NAME ARGS...}"; shift 2
  # the tasks and data root of the launch (rte,stsb: gelora validate glue's default) must have their files
  tasks=rte,stsb; data=(); prev=
  for a in "$@"; do
    case "$prev" in --tasks) tasks="$a";; --data-dir) data=(--data-dir "$a");; esac
    case "$a" in --tasks=*) tasks="${a#--tasks=}";; --data-dir=*) data=(--data-dir "${a#--data-dir=}");; esac
    prev="$a"
  done
  python3 -m validation.finetune.triage --check-data --tasks "$tasks" ${data[@]+"${data[@]}"} \
    || { echo "waves.sh launch $name: refused, nothing started (data root: ${data[1]:-${GELORA_DATA_DIR:-}})" >&2; exit 2; }
  # runs/mps.on (waves.sh started the daemon) is trusted only while a daemon runs
  mps_reconcile "waves.sh launch $name"
  if [ "${MPS:-0}" = 1 ] && [ ! -f runs/mps.on ]; then
    mps_tools || exit 3
    any_wave_alive && { echo "waves.sh launch $name: refused, waves without MPS run on this host" >&2; exit 2; }
    mps_down && mps_up || exit 4
    date -u +%FT%TZ >runs/mps.on; echo "MPS daemon started (logs: runs/mps_log)"
  fi
  # a wave of this name still running: its exit status, written later, would end this one's settle and
  # make it read as done (busy, wait)
  if wave_alive "$name"; then
    echo "waves.sh launch $name: refused, wave $name still runs (pid $(cat "runs/$name.pid")); pick another name" >&2; exit 2
  fi
  mps_env=(env -u GELORA_CUDA_MPS)
  # said aloud: `wait` quits the daemon once no wave runs, so a launch after an ended MPS wave needs MPS=1
  # again (2026-12-02 17:31: a CoLA wave ran without it, unnoticed); runs/mps.used marks that a wave of this
  # host ran under MPS (runs/mps_log does not: mps_ab.sh, pace_bench.sh and a failed start make it too)
  if [ -f runs/mps.on ]; then
    mps_env=(env GELORA_CUDA_MPS=1); date -u +%FT%TZ >runs/mps.used; echo "$name runs under MPS (runs/mps.on)"
  elif [ -f runs/mps.used ]; then echo "$name runs without MPS (earlier waves of this host ran under it: MPS=1 starts it again)"
  else echo "$name runs without MPS"; fi
  # a relaunch under the same name: the last wave's exit status would make this one read as done (busy, wait)
  rm -f "runs/$name.rc"
  mkdir -p "$R"
  # shellcheck disable=SC2086
  setsid "${mps_env[@]}" bash -c "python3 -m gelora.cli validate glue $* --out $R >>runs/$name.log 2>&1; echo \$? >runs/$name.rc" \
    </dev/null >/dev/null 2>&1 &
  echo $! > "runs/$name.pid"; echo "launched $name at $(date -u +%T): validate glue $* --out $R"
  # stay while the wave starts (SETTLE_S, default 45): the device tool copies the working tree anew at the
  # start of every call, and a worker still importing then can meet a missing source file (2026-12-01,
  # runs/colaB: one cell lost to ModuleNotFoundError 15 s after a launch that ended its call). Once a worker
  # has begun its first cell it has imported all it needs (validation.finetune.preload).
  # A wave that ends within the settle with a non-zero status makes launch exit 5 (after the packing below).
  settle="${SETTLE_S:-45}"
  case "$settle" in ''|*[!0-9]*) echo "waves.sh launch: SETTLE_S=$settle is not whole seconds; 45 used" >&2; settle=45;; esac
  t0=$(date +%s)
  # -s, not -f: the exit status file exists empty for a moment while the wave writes it
  while [ $(( $(date +%s) - t0 )) -lt "$settle" ] && [ ! -s "runs/$name.rc" ]; do sleep 1; done
  if [ "$settle" -le 0 ]; then :
  elif [ -s "runs/$name.rc" ]; then
    wave_rc=$(cat "runs/$name.rc"); echo "$name ended within its ${settle}-s settle: rc=$wave_rc"
    [ "$wave_rc" = 0 ] || launch_rc=5
  else echo "$name settled for $settle s"; fi;;
wait)
  t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt "${2:?usage: waves.sh wait SECONDS}" ]; do
    any_wave_alive || break; sleep "${WAIT_POLL:-10}"
  done
  mps_reconcile "waves.sh wait"
  if [ -f runs/mps.on ] && ! any_wave_alive; then
    if mps_down; then rm -f runs/mps.on; echo "MPS daemon quit (no wave runs)"
    else echo "waves.sh wait: the MPS daemon did not quit; runs/mps.on kept, later launches run under it" >&2; fi
  fi;;
stop)
  shift; [ $# -gt 0 ] || { echo "usage: waves.sh stop CELL... | stop --all" >&2; exit 2; }
  # the claims of live processes of this host only (validation.finetune.triage.stop_runs, as triage --apply)
  # exit 2 when a name is no run name (the valid ones are still stopped)
  if [ "$1" = --all ]; then python3 -m validation.finetune.triage "$R" --stop-all
  else python3 -m validation.finetune.triage "$R" --stop "$@"; fi
  exit $?;;
hold|release)
  op="$1"; shift; [ $# -gt 0 ] || { echo "usage: waves.sh $op CELL..." >&2; exit 2; }
  # every name is checked before any is held or released (exit 2, nothing done, on a name of no run)
  python3 -c 'import sys
from gelora.errors import ConfigError
from validation.finetune.grid import hold_cell, release_cell
from validation.finetune.runner import canonical_run_name
op, run, cells = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    names = [canonical_run_name(c) for c in cells]
except ConfigError as exc:
    sys.exit(f"error: {exc}; no hold {op} done")
for c in names:
    done = hold_cell(run, c, reason="waves.sh hold") if op == "hold" else release_cell(run, c)
    print(op, c, done)' "$op" "$R" "$@"
  exit $?;;
triage)
  secs="${2:?usage: waves.sh triage SECONDS [--by linear|shared] [--apply]}"; shift 2
  # the other run directories of this machine share the GPUs: the 'shared' column counts their processes
  # (the triage skips RUN itself among them)
  # (runs/mps_log holds the MPS daemon's logs, no run: not passed, not noted)
  others=(); for d in runs/*/; do [ -d "$d" ] && [ "$d" != runs/mps_log/ ] && others+=("${d%/}"); done
  # its status (2: no such run directory, a bad argument) is the call's, after the packing: a misspelt RUN
  # in a plan's `triage ... --apply` line must not pass for "nothing to stop"
  python3 -m validation.finetune.triage "$R" --deadline "$secs" "$@" ${others[@]+--beside "${others[@]}"}
  triage_rc=$?;;
*) echo "usage: waves.sh launch NAME ARGS... | wait SECONDS | busy | stop CELL... | stop --all | hold CELL... | release CELL... | triage SECONDS [--by linear|shared] [--apply]" >&2; exit 2;;
esac
date -u +%T
for f in "$R"/logs/*.log; do
  [ -f "$f" ] && echo "$(basename "$f" .log) $(tail -c 400 "$f" | tr '\r' '\n' | grep -o "'epoch': '[0-9.]*'" | tail -1)"
done
echo "cells: $(ls "$R/cells" 2>/dev/null | tr '\n' ' ')"; echo "selection: $(ls "$R/lr_select" 2>/dev/null | tr '\n' ' ')"
for p in runs/*.pid; do [ -f "$p" ] || continue; n=$(basename "$p" .pid); echo "$n rc=$(cat "runs/$n.rc" 2>/dev/null || echo running)"; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
# runs.tgz gathers every run directory this call printed (a second RUN's triage must not drop the first's)
# and, as they are now, the other run directories of this host (a wave's last state comes back even when the
# call's last command named another RUN)
[ -f "$OUT/runs.tgz" ] && tar -C "$OUT" -xzf "$OUT/runs.tgz"
mkdir -p "$OUT/runs"   # a host with no run directory yet still gets an (empty) archive
[ -d "$R" ] && copy_run "$R" "$OUT/runs/$(basename "$R")"
for d in runs/*/; do
  d="${d%/}"; [ -f "$d/grid.json" ] && [ "$(basename "$d")" != "$(basename "$R")" ] || continue
  rm -rf "$OUT/runs/$(basename "$d")"; copy_run "$d" "$OUT/runs/$(basename "$d")"
done
[ -d runs/mps_log ] && cp -r runs/mps_log "$OUT/runs/"   # the MPS daemon's own logs, when it ran
for l in runs/*.log; do [ -f "$l" ] && tail -c 5000 "$l" > "$OUT/runs/$(basename "$l")"; done
# replace runs.tgz only by a complete archive: a call killed while packing keeps the last one
tar -C "$OUT" -czf "$OUT/runs.tgz.part" runs && mv "$OUT/runs.tgz.part" "$OUT/runs.tgz" && rm -rf "$OUT/runs" \
  || exit $?
exit "${launch_rc:-${triage_rc:-0}}"
