"""scripts/gpu/mps_ab.sh on the CPU, with stand-ins for the MPS control program (its daemon a real process
that outlives ``quit`` by a second) and for the probe: the batch order (warm-up, then off, on, on, off), the
daemon alive during the "on" batches only, a daemon left by an earlier call quit before the first batch, one
that will not go is an error, the client count recorded, the deadline, the archive (results, not caches), and
a clear error where the machine has no MPS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .mps_standin import kill_mps_standins, mps_alive, mps_standin

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu" / "mps_ab.sh"

PROBE = """import json, os, subprocess, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
(out / "cells").mkdir(parents=True)
(out / "cache").mkdir()
(out / "cache" / "tokens.bin").write_bytes(b"x" * 1000)  # what the archive must leave out
alive = subprocess.run(["pgrep", "-f", os.environ["MPS_PATTERN"]], capture_output=True).returncode == 0
cell = {"primary_metric": "accuracy", "primary": 0.5, "finished_at": "t", "mps_seen": "on" if alive else "off",
        "train": {"steps": 10, "train_time_s": 2.0, "train_loss": 0.25}}
(out / "cells" / "c.json").write_text(json.dumps(cell))
print(json.dumps({"probe": "runner_rate", "variant": sys.argv[sys.argv.index("--variant") + 1],
                  "training_args": [{}], "args": sys.argv[1:]}))
time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
"""


def _setup(tmp_path: Path, with_control: bool = True) -> dict[str, str]:
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "repo").mkdir(exist_ok=True)
    stand_in = mps_standin(tmp_path, with_control=with_control)
    return {
        **os.environ,
        **stand_in,
        "PATH": f"{stand_in['MPS_BIN']}:/usr/bin:/bin",
        "OUT": str(tmp_path / "out"),
        "N": "2",
        "POLL": "0.2",
        "BATCHES": "w:off 1:off 1:on 2:on 2:off",
        "PROBE": f"{sys.executable} {tmp_path / 'probe.py'}",
        "COUNT_CMD": 'echo {"kernels_per_step":1000}',
    }


def _run(tmp_path: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--tasks", "rte"],
        cwd=tmp_path / "repo",
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _daemon(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A daemon left running by an earlier call, as the stand-in's -d starts one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", env["MPS_MARK"]])
    Path(env["MPS_STATE"]).write_text(str(proc.pid))
    return proc


_alive = mps_alive


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The stand-ins' environment; afterwards every stand-in daemon is killed, whatever the test did."""
    e = _setup(tmp_path)
    yield e
    kill_mps_standins(e)


def test_batches_alternate_with_the_daemon_alive_only_when_on(tmp_path: Path, env: dict[str, str]) -> None:
    left = _daemon(env)  # the first "off" batches must not run through it
    done = _run(tmp_path, env)
    left.wait(timeout=10)
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
            assert (runs / f"mps_{name}_{i}.rc").read_text() == "0\n"
    check = (runs / "mps_check.txt").read_text().splitlines()
    assert [c.split(":")[0] for c in check] == ["w_off", "1_off", "1_on", "1_on", "2_on", "2_on", "2_off"]
    assert all(c.endswith("MPS processes []") for c in check if "at start" in c and "_off" in c)
    on = [c for c in check if ": servers" in c]
    assert len(on) == 2 and all(c.endswith("most clients of one server 2") for c in on)
    calls = (tmp_path / "mps.state.calls").read_text().split()
    assert calls.count("-d") == 2 and "get_client_list" in calls
    assert not _alive(env)  # nothing left running
    with tarfile.open(tmp_path / "out" / "mps.tgz") as tar:
        names = set(tar.getnames())
    assert {"runs/mps_2_off_1/cells/c.json", "runs/mps_2_off_1.log", "runs/mps_2_off_1.rc"} <= names
    assert "runs/mps_check.txt" in names and not any("cache" in n for n in names)
    assert "runs/mps_kernels.jsonl" in names and "kernel count: rc 0 at " in done.stdout
    assert json.loads((runs / "mps_kernels.jsonl").read_text()) == {"kernels_per_step": 1000}


def test_a_run_that_ends_or_is_stopped_in_an_on_batch_leaves_no_daemon(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = _run(tmp_path, env, BATCHES="1:off 1:on")  # the last batch ran with the daemon up
    assert done.returncode == 0, done.stderr
    assert not _alive(env)
    script = subprocess.Popen(
        ["bash", str(SCRIPT), "--tasks", "rte"],
        cwd=tmp_path / "repo",
        env={**env, "BATCHES": "1:on", "STUB_SLEEP": "20"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not _alive(env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(env), "the daemon never started"
    script.send_signal(signal.SIGTERM)  # as a device call's timeout would, before its SIGKILL
    assert script.wait(timeout=30) == 143
    assert not _alive(env)


def test_deadline_a_daemon_that_stays_and_no_mps(tmp_path: Path, env: dict[str, str]) -> None:
    cut = _run(tmp_path, env, DEADLINE="121", STUB_SLEEP="2.2")  # no batch starts after 1 s
    assert cut.returncode == 0, cut.stderr
    assert "batch w_off at" in cut.stdout and "batch 1_off not started" in cut.stdout
    assert "batch 1_off at" not in cut.stdout
    none = _run(tmp_path, env, DEADLINE="100")
    assert none.returncode == 0 and "batch w_off not started" in none.stdout
    stuck = _daemon(env)
    try:
        res = _run(tmp_path, env, MPS_STUCK="1", MPS_QUIT_WAIT="1")
        assert res.returncode == 5 and "still alive 1 s after quit" in res.stderr
        assert "batch w_off at" not in res.stdout
    finally:
        stuck.send_signal(signal.SIGKILL)
        stuck.wait()
    bare = tmp_path / "bare"
    bare.mkdir()
    missing = _run(bare, _setup(bare, with_control=False))
    assert missing.returncode == 3 and "nvidia-cuda-mps-control not found" in missing.stderr
