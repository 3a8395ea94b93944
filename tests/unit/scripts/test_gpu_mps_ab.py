"""scripts/gpu/mps_ab.sh on the CPU, with stand-ins for the MPS control program and the probe: the batch
order (warm-up, then off, on, on, off), the daemon up during the "on" batches only and quit on exit, the
server list recorded, the deadline, and a clear error where the machine has no MPS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu" / "mps_ab.sh"

CONTROL = """#!/usr/bin/env bash
# stand-in for nvidia-cuda-mps-control: -d starts "the daemon", stdin commands quit / get_server_list
state="$MPS_STATE"
if [ "${1:-}" = -d ]; then echo "-d" >>"$state.calls"; touch "$state"; exit 0; fi
read -r cmd; echo "$cmd" >>"$state.calls"
case "$cmd" in
quit) rm -f "$state";;
get_server_list) [ -f "$state" ] && echo 4242;;
esac
"""

PROBE = """import json, os, sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
(out / "cells").mkdir(parents=True)
mps = "on" if os.path.exists(os.environ["MPS_STATE"]) else "off"
cell = {"primary_metric": "accuracy", "primary": 0.5, "finished_at": "t", "mps_seen": mps,
        "train": {"steps": 10, "train_time_s": 2.0, "train_loss": 0.25}}
(out / "cells" / "c.json").write_text(json.dumps(cell))
print(json.dumps({"probe": "runner_rate", "variant": sys.argv[sys.argv.index("--variant") + 1],
                  "training_args": [{}], "args": sys.argv[1:]}))
"""


def _run(tmp_path: Path, with_control: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_control:
        control = bin_dir / "nvidia-cuda-mps-control"
        control.write_text(CONTROL)
        control.chmod(0o755)
    (tmp_path / "probe.py").write_text(PROBE)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MPS_STATE": str(tmp_path / "mps.state"),
        "OUT": str(tmp_path / "out"),
        "N": "2",
        "SERVER_WAIT": "0",
        "PROBE": f"{sys.executable} {tmp_path / 'probe.py'}",
        **extra,
    }
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(SCRIPT), "--tasks", "rte"], cwd=repo, env=env, capture_output=True, text=True
    )


def test_batches_alternate_with_the_daemon_up_only_when_on(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    starts = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("batch ")]
    assert starts == ["w_off", "1_off", "1_on", "2_on", "2_off"]
    runs = tmp_path / "repo" / "runs"
    for name in starts:
        for i in range(2):
            cell = json.loads((runs / f"mps_{name}_{i}" / "cells" / "c.json").read_text())
            assert cell["mps_seen"] == name.split("_")[1], (name, i)
            probe = json.loads((runs / f"mps_{name}_{i}.log").read_text().splitlines()[0])
            assert probe["args"] == [
                "--variant",
                "default",
                "--",
                "--tasks",
                "rte",
                "--out",
                f"runs/mps_{name}_{i}",
            ]
    servers = (runs / "mps_servers.txt").read_text().splitlines()
    assert servers == ["1_on: 4242 ", "2_on: 4242 "]
    calls = (tmp_path / "mps.state.calls").read_text().split()
    assert calls[:3] == ["-d", "get_server_list", "quit"] and calls.count("-d") == 2
    assert not (tmp_path / "mps.state").exists()  # the daemon is not left running
    assert (tmp_path / "out" / "mps.tgz").is_file()


def test_deadline_stops_starting_batches_and_no_mps_is_a_clear_error(tmp_path: Path) -> None:
    late = _run(tmp_path, DEADLINE="50")
    assert late.returncode == 0, late.stderr
    assert (
        "batch w_off not started" in late.stdout and not (tmp_path / "repo" / "runs" / "mps_w_off_0").exists()
    )
    (tmp_path / "bare").mkdir()
    missing = _run(tmp_path / "bare", with_control=False)
    assert missing.returncode == 3 and "nvidia-cuda-mps-control not found" in missing.stderr
