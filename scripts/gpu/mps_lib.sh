# Sourced by scripts/gpu/mps_ab.sh and scripts/gpu/waves.sh: the CUDA MPS control daemon's processes, on the
# GPU machine. MPS is a user-space daemon (nvidia-cuda-mps-control -d; CUDA processes started while it runs
# connect to it through its default pipe directory, /tmp/nvidia-mps, and their kernels can run side by side);
# it changes no setting of the card (clocks, compute mode, MIG, persistence stay as they are).
# Environment: MPS_PATTERN (`pgrep -f` pattern of the daemon and server processes; the tests' stand-ins set
# their own), MPS_QUIT_WAIT (seconds to wait for them to go after quit, default 20).
PATH="$PATH:/usr/local/nvidia/bin"
# the daemon (nvidia-cuda-mps-control -d) and its server (nvidia-cuda-mps-server) by command line (pgrep -x would
# not do: process names are cut to 15 characters)
MPS_PATTERN="${MPS_PATTERN:-^(/[^ ]*/)?nvidia-cuda-mps-(control|server)( |$)}"
MPS_QUIT_WAIT="${MPS_QUIT_WAIT:-20}"

# mps_tools: exit status 0 when the control program and the tools these functions use are here (else says
# which is missing on stderr)
mps_tools() {
  local c
  for c in nvidia-cuda-mps-control pgrep timeout; do
    command -v "$c" >/dev/null || { echo "MPS: $c not found on this machine" >&2; return 1; }
  done
}
# the control program as a client (quit, get_server_list, ...), bounded: a wedged daemon must not hang the call
mps_ctl() { timeout 10 nvidia-cuda-mps-control 2>/dev/null; }
# the daemon's and servers' process ids, space-separated (empty when none runs)
mps_pids() { pgrep -f "$MPS_PATTERN" | tr '\n' ' '; }
# tell the daemon to quit and wait until neither it nor a server is left (status 1 if one stays)
mps_down() {
  local t=0
  echo quit | mps_ctl >/dev/null
  while [ -n "$(mps_pids)" ]; do
    [ "$t" -ge $((MPS_QUIT_WAIT * 2)) ] && {
      echo "MPS processes still alive ${MPS_QUIT_WAIT} s after quit: $(mps_pids)" >&2; return 1; }
    sleep 0.5; t=$((t + 1))
  done
}
# start the daemon (status 1 if it does not start)
# (its descriptors away from the caller's: a daemon holding a device call's output open could keep the call open)
mps_up() {
  [ -n "${CUDA_MPS_LOG_DIRECTORY:-}" ] && mkdir -p "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d </dev/null >/dev/null 2>&1 || { echo "MPS: the daemon did not start" >&2; return 1; }
}
