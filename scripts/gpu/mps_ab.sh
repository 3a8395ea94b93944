#!/usr/bin/env bash
# Twelve runner processes with and without CUDA MPS (issue 19: the campaign's rate), ON THE GPU MACHINE,
# from the repository root, after scripts/gpu/minilm_assemble.sh 2 (it needs .devcarry/site and the data):
#   bash scripts/gpu/mps_ab.sh [ARGS...]
# Why: twelve MiniLM-L6 processes share one H200 by time slicing (no two processes' kernels run at once
# without MPS), and they made about 150 steps/s summed on SST-2 (2026-12-01 10:18) where one GPU's arithmetic
# would allow far more; MPS lets the processes' kernels run side by side. Whether it helps here, and whether
# the training stays the same, is what this measures: five batches of N identical processes of
# scripts/probes/runner_rate.py (default variant: the runner as it is), a warm-up batch without MPS (not
# compared), then off, on, on, off (ABBA: a steady drift cancels). Every process trains the same seed, so every
# process of every batch must end with the same training loss and score (runner_rate.py --collect shows it).
# The MPS control daemon runs only during the "on" batches (nvidia-cuda-mps-control -d, then "quit"; also
# quit on exit); it changes no setting of the card (clocks, compute mode, MIG, persistence stay as they are).
# Output: runs/mps_<batch>_<on|off>_<i>/ and .log, runs/mps_servers.txt (the daemon's server list during each
# "on" batch: empty means the processes did not go through MPS), and $OUT/mps.tgz after every batch.
# ARGS default to one SST-2 LoRA run of 0.12 epochs (253 steps); N (default 12) processes a batch; a batch
# is not started later than DEADLINE - 60 s (DEADLINE default 280 s from the start); the server list is read
# SERVER_WAIT s (default 20) into an "on" batch, once the processes have reached CUDA. PROBE overrides the
# probe's command (for the CPU test).
set -u
command -v nvidia-cuda-mps-control >/dev/null \
  || { echo "mps_ab.sh: nvidia-cuda-mps-control not found on this machine" >&2; exit 3; }
N="${N:-12}"
DEADLINE="${DEADLINE:-280}"
SERVER_WAIT="${SERVER_WAIT:-20}"
PROBE="${PROBE:-python3 scripts/probes/runner_rate.py}"
if [ "$#" -gt 0 ]; then args=("$@"); else
  args=(--profile paper --tasks sst2 --methods lora --seeds 1 --no-lr-select --epochs 0.12)
fi
export PYTHONPATH="${PYTHONPATH:-.:.devcarry/site}" GELORA_DATA_DIR="${GELORA_DATA_DIR:-.devcarry/data}"
mkdir -p runs "${OUT:-runs}"
mps_quit() { echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; }
trap mps_quit EXIT
for b in w:off 1:off 1:on 2:on 2:off; do
  name="${b%%:*}_${b#*:}"
  if [ "$SECONDS" -gt $((DEADLINE - 60)) ]; then echo "batch $name not started: ${SECONDS} s of ${DEADLINE}"; break; fi
  if [ "${b#*:}" = on ]; then
    nvidia-cuda-mps-control -d || { echo "mps_ab.sh: the MPS daemon did not start" >&2; exit 4; }
  fi
  echo "batch $name at ${SECONDS} s"
  for i in $(seq 0 $((N - 1))); do
    # shellcheck disable=SC2086  # PROBE is a command line
    timeout 80 $PROBE --variant default -- "${args[@]}" --out "runs/mps_${name}_$i" >"runs/mps_${name}_$i.log" 2>&1 &
  done
  if [ "${b#*:}" = on ]; then
    sleep "$SERVER_WAIT"
    echo "$name: $(echo get_server_list | nvidia-cuda-mps-control 2>&1 | tr '\n' ' ')" >>runs/mps_servers.txt
  fi
  wait
  [ "${b#*:}" = on ] && { mps_quit; sleep 2; }
  tar czf "${OUT:-runs}/mps.tgz" runs/mps_*
done
echo "end ${SECONDS} s"
