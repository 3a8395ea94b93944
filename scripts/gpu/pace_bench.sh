#!/usr/bin/env bash
# Pace of one training step against the number of processes sharing one GPU (the triage's SATURATION,
# validation/finetune/triage.py), ON THE GPU MACHINE from the repository root, after the MPNet chunk calls
# (scripts/gpu/mpnet_assemble.sh; .devcarry/sitelite carried):
#   PROCS="8 2 4 1" DEADLINE=SECONDS bash scripts/gpu/pace_bench.sh
# For each N of PROCS, in that order, N identical copies of scripts/adalora_step_bench.py start together
# (METHODS, default "lora,adalora@fast,geolora@batched_qr"; MODEL, default mpnet-base; bf16, batch 32 x
# LENGTH tokens (default 128, STS-B's), AdaLoRA's budgeting phase, WARM warm-up and STEPS timed steps a
# method, defaults 3 and 40), under one CUDA MPS daemon as the campaign's waves run (MPS=0: without), and
# each prints one line per method with its median step time. Every copy runs the methods in the same order,
# so while the copies of one N time a method they share the GPU with copies of that method; their starts
# differ by the model's loading (seconds), so the first and last timed steps of a copy may have fewer
# neighbours: the medians are taken over STEPS steps. Not a training run: a fixed synthetic batch, no data
# loading, no evaluation (scripts/adalora_step_bench.py).
# Output: runs/pace/N<n>_<i>.jsonl with .log and .rc (the bench's exit status) beside it, packed into
# $OUT/pace.tgz (the device tool returns a limited number of files: 2026-12-02 15:06 it returned 8 of 39 loose
# ones), then $OUT/pace.json and the table on stdout (python3 scripts/gpu/pace_summary.py runs/pace).
# Measured: reports/gpu/mpnet_h200/pace_vs_procs/.
# A batch is not started later than DEADLINE - BATCH_S seconds from the start (defaults 300 and 90); each copy
# gets SIGTERM after BATCH_S seconds and SIGKILL 10 s later (its lines for the methods it finished are kept).
# On exit (also SIGTERM) the copies still running are killed and the daemon is quit. Exit status: 0, 2 refused
# (a wave runs on this host: waves.sh's MPS waves run under their own daemon), 3 MPS tools missing, 4 the
# daemon did not start, 5 an MPS process stayed after quit, 6 no batch ran, 7 the summary failed (no copy
# printed a step time).
# For the CPU test: BENCH overrides the bench's command line (MPS_PATTERN, MPS_QUIT_WAIT: mps_lib.sh).
set -u
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/mps_lib.sh"
if bash "$here/waves.sh" busy >/dev/null 2>&1; then
  echo "pace_bench.sh: a wave runs on this host (waves.sh busy); refused" >&2; exit 2
fi
MPS="${MPS:-1}"
if [ "$MPS" = 1 ]; then mps_tools || exit 3; fi
PROCS="${PROCS:-8 2 4 1}"
DEADLINE="${DEADLINE:-300}"
BATCH_S="${BATCH_S:-90}"
METHODS="${METHODS:-lora,adalora@fast,geolora@batched_qr}"
export PYTHONPATH="$PWD:$PWD/.devcarry/sitelite${PYTHONPATH:+:$PYTHONPATH}"
export GELORA_MODELS_DIR="${MODELS_DIR:-${GELORA_MODELS_DIR:-/tmp/mpnet-assembly}}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
BENCH="${BENCH:-python3 scripts/adalora_step_bench.py --model ${MODEL:-mpnet-base} --device cuda --bf16 --batch 32 --length ${LENGTH:-128} --phase budget --warm ${WARM:-3} --steps ${STEPS:-40}}"
OUT="${OUT:-$PWD/out}"
export CUDA_MPS_LOG_DIRECTORY="$PWD/runs/mps_log"
P=runs/pace
rm -rf "$P"; mkdir -p "$P" "$OUT"
# on exit: the copies still running, then the daemon (each copy's `timeout` leads a process group of its own
# with the bench in it: the group is killed)
stop_copies() {
  local p t
  for p in $(jobs -p); do
    for t in $(pgrep -P "$p"); do kill -KILL -- "-$t" 2>/dev/null || kill -KILL "$t" 2>/dev/null; done
    kill -KILL "$p" 2>/dev/null
  done
  return 0
}
trap 'stop_copies; [ "$MPS" = 1 ] && mps_down' EXIT
trap 'exit 143' TERM INT
if [ "$MPS" = 1 ]; then
  mps_down || exit 5
  mps_up || exit 4
fi
ran=0
for n in $PROCS; do
  if [ "$SECONDS" -gt $((DEADLINE - BATCH_S)) ]; then echo "N=$n not started: ${SECONDS} s of ${DEADLINE}"; break; fi
  echo "N=$n at ${SECONDS} s (MPS=$MPS)"
  for i in $(seq 0 $((n - 1))); do
    # shellcheck disable=SC2086  # BENCH is a command line
    { timeout -k 10 "$BATCH_S" $BENCH --methods "$METHODS" >"$P/N${n}_$i.jsonl" 2>"$P/N${n}_$i.log"
      echo $? >"$P/N${n}_$i.rc"; } &
  done
  wait
  ran=$((ran + 1))
  tar czf "$OUT/pace.tgz" -C runs pace
done
rc=0
if [ "$MPS" = 1 ]; then mps_down || rc=5; fi
[ "$ran" -gt 0 ] || { echo "no batch ran" >&2; exit 6; }
python3 "$here/pace_summary.py" "$P" --out "$OUT/pace.json" --mps "$MPS" || rc=7
echo "end ${SECONDS} s"
exit "$rc"
