#!/usr/bin/env bash
# Twelve runner processes with and without CUDA MPS (issue 19: the campaign's rate), ON THE GPU MACHINE,
# from the repository root, after scripts/gpu/minilm_assemble.sh 2 (it needs .devcarry/site and the data):
#   DEADLINE=SECONDS bash scripts/gpu/mps_ab.sh [ARGS...]
# Why: twelve MiniLM-L6 processes share one H200 by time slicing (no two processes' kernels run at once
# without MPS), and they made about 150 steps/s summed on SST-2 (2026-12-01 10:18) where one GPU's arithmetic
# would allow far more; MPS lets the processes' kernels run side by side. Whether it helps here, and whether
# the training stays the same, is what this measures. First, alone on the GPU, one process's step: its
# kernels and their GPU time (scripts/probes/step_rate.py --count-ops, batch 32 x 32 tokens, bf16, into
# runs/mps_kernels.jsonl; it also warms the GPU): time slicing cannot run twelve processes faster together
# than 1e6 / kernel_us_per_step steps/s, the bound MPS may lift. Then batches of N identical processes of
# scripts/probes/runner_rate.py (default variant: the runner as it is), BATCHES (default off, on, on, off:
# ABBA, a steady drift cancels; "w:off" in front adds a warm-up batch on a fresh machine). Every process
# trains the same seed, so every process of every batch must end with the same training loss and score
# (runner_rate.py --collect shows it).
# The MPS control daemon (nvidia-cuda-mps-control -d; clients find it through its default pipe directory,
# /tmp/nvidia-mps) runs only during the "on" batches: before every batch, at the end and on exit (SIGTERM
# included) it is told to quit and the script waits until no daemon or MPS server process is left (exit 5 if
# one stays). MPS is a user-space daemon: it changes no setting of the card (clocks, compute mode, MIG,
# persistence stay as they are); a call killed by SIGKILL skips the exit trap, and the daemon then lives
# until the machine goes back.
# Output: runs/mps_<batch>_<on|off>_<i>/ with .log and .rc (the probe's exit status) beside it;
# runs/mps_check.txt, per batch: the MPS processes alive when it started, and for "on" batches the servers
# and the most clients one server had at once (polled every POLL s, default 3, while the batch runs: 12 if
# every process went through MPS); runs/mps_log/ (the daemon's control.log and server.log); $OUT/mps.tgz after
# every batch (the cells, logs and checks only: the runs' token caches are megabytes each).
# ARGS default to one SST-2 LoRA run of 0.12 epochs (253 steps); N (default 12) processes a batch; a batch
# (about 52 s; at worst 80 s of timeout plus the runner's stop, about 35 s) is not started later than
# DEADLINE - 120 s (DEADLINE: seconds from the start, default 300). For the CPU test: PROBE overrides the
# probe's command, COUNT_CMD the kernel count's (MPS_PATTERN, MPS_QUIT_WAIT: scripts/gpu/mps_lib.sh).
set -u
source "$(dirname "${BASH_SOURCE[0]}")/mps_lib.sh"
mps_tools || exit 3
# it starts and quits the daemon: never beside a wave (waves.sh's MPS=1 waves run under one)
if bash "$(dirname "${BASH_SOURCE[0]}")/waves.sh" busy >/dev/null 2>&1; then
  echo "mps_ab.sh: a wave runs on this host (waves.sh busy); refused" >&2; exit 2
fi
N="${N:-12}"
DEADLINE="${DEADLINE:-300}"
POLL="${POLL:-3}"
BATCHES="${BATCHES:-1:off 1:on 2:on 2:off}"
PROBE="${PROBE:-python3 scripts/probes/runner_rate.py}"
COUNT_CMD="${COUNT_CMD:-python3 scripts/probes/step_rate.py --device cuda --bf16 --methods lora --variants eager --lengths 32 --steps 50 --warm 5 --count-ops}"
if [ "$#" -gt 0 ]; then args=("$@"); else
  args=(--profile paper --tasks sst2 --methods lora --seeds 1 --no-lr-select --epochs 0.12)
fi
export PYTHONPATH="$PWD:$PWD/.devcarry/site${PYTHONPATH:+:$PYTHONPATH}"
export GELORA_DATA_DIR="${GELORA_DATA_DIR:-$PWD/.devcarry/data}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export CUDA_MPS_LOG_DIRECTORY="$PWD/runs/mps_log"
OUT="${OUT:-$PWD/runs}"
mkdir -p runs "$CUDA_MPS_LOG_DIRECTORY" "$OUT"

# the most clients any one server has now
mps_clients() {
  local s most=0 c
  for s in $(echo get_server_list | mps_ctl); do
    case "$s" in *[!0-9]*) continue;; esac
    c=$(echo "get_client_list $s" | mps_ctl | grep -c '^[0-9]')
    [ "$c" -gt "$most" ] && most=$c
  done
  echo "$most"
}
# $OUT/mps.tgz, replaced only by a complete archive
pack() {
  tar czf "$OUT/mps.tgz.part" runs/mps_*.log runs/mps_*.rc runs/mps_*/cells runs/mps_check.txt runs/mps_log \
    runs/mps_kernels.jsonl runs/mps_kernels.log 2>/dev/null
  gzip -t "$OUT/mps.tgz.part" 2>/dev/null && mv "$OUT/mps.tgz.part" "$OUT/mps.tgz"
}
trap 'mps_down' EXIT
trap 'exit 143' TERM INT
mps_down || exit 5
# shellcheck disable=SC2086  # COUNT_CMD is a command line
timeout 90 $COUNT_CMD >runs/mps_kernels.jsonl 2>runs/mps_kernels.log
echo "kernel count: rc $? at ${SECONDS} s"
for b in $BATCHES; do
  name="${b%%:*}_${b#*:}"
  # every batch starts from no daemon (the two "on" batches from a fresh one each)
  mps_down || exit 5
  if [ "$SECONDS" -gt $((DEADLINE - 120)) ]; then echo "batch $name not started: ${SECONDS} s of ${DEADLINE}"; break; fi
  if [ "${b#*:}" = on ]; then
    mps_up || exit 4
  fi
  echo "$name: at start, MPS processes [$(mps_pids)]" >>runs/mps_check.txt
  echo "batch $name at ${SECONDS} s"
  for i in $(seq 0 $((N - 1))); do
    # shellcheck disable=SC2086  # PROBE is a command line
    { timeout 80 $PROBE --variant default -- "${args[@]}" --out "runs/mps_${name}_$i" >"runs/mps_${name}_$i.log" 2>&1
      echo $? >"runs/mps_${name}_$i.rc"; } &
  done
  if [ "${b#*:}" = on ]; then
    most=0
    while [ -n "$(jobs -pr)" ]; do   # while a probe of this batch runs
      c=$(mps_clients); [ "$c" -gt "$most" ] && most=$c
      sleep "$POLL"
    done
    echo "$name: servers [$(echo get_server_list | mps_ctl | tr '\n' ' ')]; most clients of one server $most" >>runs/mps_check.txt
  fi
  wait
  pack
done
rc=0
mps_down || rc=5
pack
echo "end ${SECONDS} s"
exit "$rc"
