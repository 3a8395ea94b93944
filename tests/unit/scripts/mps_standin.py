"""A stand-in for CUDA MPS's control program, for the CPU tests of scripts/gpu/mps_ab.sh and waves.sh's MPS
option: ``nvidia-cuda-mps-control -d`` starts a "daemon", a real process whose command line holds a mark
(so the scripts' ``pgrep -f`` finds it), that ``quit`` ends a second later (not at all with MPS_STUCK set);
``get_server_list`` / ``get_client_list`` answer as the real one does. Every call is logged to
``<state>.calls``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONTROL = """#!/usr/bin/env bash
# stand-in for nvidia-cuda-mps-control: -d starts a "daemon" process (its command line holds $MPS_MARK);
# quit ends it a second later (not at all with MPS_STUCK); get_server_list / get_client_list answer
state="$MPS_STATE"
if [ "${1:-}" = -d ]; then
  echo "-d" >>"$state.calls"
  "$STUB_PY" -c "import time; time.sleep(60)" "$MPS_MARK" </dev/null >/dev/null 2>&1 &
  echo $! >"$state"; exit 0
fi
read -r cmd; echo "$cmd" >>"$state.calls"
case "$cmd" in
quit)
  if [ -f "$state" ] && [ -z "${MPS_STUCK:-}" ]; then
    pid=$(cat "$state"); rm -f "$state"; (sleep 1; kill "$pid") </dev/null >/dev/null 2>&1 &
  fi;;
get_server_list) [ -f "$state" ] && cat "$state";;
get_client_list*) [ -f "$state" ] && printf '101\\n102\\n';;
esac
exit 0
"""


def mps_standin(directory: Path, *, with_control: bool = True) -> dict[str, str]:
    """Environment entries for the scripts: ``MPS_BIN`` (a folder holding the stand-in, to put first on PATH;
    empty without ``with_control``), ``MPS_STATE``, ``MPS_MARK``, ``MPS_PATTERN`` (matches the stand-in's
    daemon, never a pgrep's own command line: ``[f]ake-...``) and ``STUB_PY``."""
    bin_dir = directory / "mps-bin"
    bin_dir.mkdir(exist_ok=True)
    if with_control:
        control = bin_dir / "nvidia-cuda-mps-control"
        control.write_text(CONTROL)
        control.chmod(0o755)
    mark = f"fake-mps-daemon-{os.getpid()}-{directory.name}"
    return {
        "MPS_BIN": str(bin_dir),
        "MPS_STATE": str(directory / "mps.state"),
        "MPS_MARK": mark,
        "MPS_PATTERN": f"[{mark[0]}]{mark[1:]}",
        "STUB_PY": sys.executable,
    }


def mps_alive(env: dict[str, str]) -> bool:
    """Whether a stand-in daemon of ``env`` runs."""
    return subprocess.run(["pgrep", "-f", env["MPS_PATTERN"]], capture_output=True).returncode == 0


def kill_mps_standins(env: dict[str, str]) -> None:
    """Kill every stand-in daemon of ``env`` (a test's clean-up, whatever the test did)."""
    subprocess.run(["pkill", "-KILL", "-f", env["MPS_PATTERN"]], capture_output=True)
