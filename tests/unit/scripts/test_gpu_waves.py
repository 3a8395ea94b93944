"""scripts/gpu/waves.sh on the CPU: two overlapping waves on one run directory train each planned cell once,
the second extends the first's plan, and the copy for the fetch holds the cells and the wave logs; a launch
without the data of a task is refused; triage stops the runs past a deadline in the same call."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from validation.data import default_data_dir
from validation.finetune.grid import hold_path, write_plan
from validation.finetune.runner import get_profile, train_mark

from .mps_standin import kill_mps_standins, mps_alive, mps_standin

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--profile", "quick", "--tasks", "stsb", "--methods", "lora", "--train-size", "16"]
TINY += ["--eval-size", "8", "--epochs", "0.1", "--device", "cpu"]


@pytest.fixture
def waves(tmp_path: Path):
    """``waves(*args, check=True)`` runs scripts/gpu/waves.sh in a copy of scripts/ (runs/ stays out of this
    checkout) with this interpreter as python3; returns the completed process."""
    host = tmp_path / "host"
    shutil.copytree(ROOT / "scripts", host / "scripts")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OUT": str(tmp_path / "out"),
        "RUN": "runs/demo",
        "GELORA_CACHE_DIR": str(tmp_path / "cache"),
        "GELORA_DATA_DIR": str(default_data_dir()),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GPU_INFO": "0",  # no nvidia-smi, no version imports (seconds a call)
        "SETTLE_S": "0",  # launch returns at once (test_launch_settles sets it)
    }
    # python3 must be this interpreter, environment included (the script calls python3)
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{tmp_path / 'bin'}:{os.environ.get('PATH', '')}"

    def run(*args: str, check: bool = True, **more_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "scripts/gpu/waves.sh", *args],
            cwd=host,
            env={**env, **more_env},
            capture_output=True,
            text=True,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    run.host = host  # type: ignore[attr-defined]
    return run


@pytest.mark.slow
def test_two_waves_share_one_run_directory(tmp_path: Path, waves) -> None:
    host = waves.host
    assert "launched A" in waves("launch", "A", *TINY, "--seeds", "1").stdout
    assert "launched B" in waves("launch", "B", *TINY, "--seeds", "2").stdout
    out = waves("wait", "300").stdout
    logs = "".join(p.read_text()[-2000:] for p in sorted((host / "runs").glob("*.log")))
    assert "A rc=0" in out and "B rc=0" in out, logs
    run = host / "runs" / "demo"
    assert sorted(p.name for p in (run / "cells").glob("*.json")) == [
        "stsb__lora__seed0.json",
        "stsb__lora__seed1.json",
    ]
    plan = json.loads((run / "grid.json").read_text())
    assert sorted(c["seed"] for c in plan["cells"]) == [0, 1]
    with tarfile.open(tmp_path / "out" / "runs.tgz") as tar:
        names = set(tar.getnames())
    assert {"runs/demo/cells/stsb__lora__seed1.json", "runs/A.log", "runs/B.log"} <= names
    assert not any("/claims/" in n or n.endswith(".pid") for n in names)


@pytest.mark.slow
def test_stop_ends_one_cell_and_a_rerun_trains_it(tmp_path: Path, waves) -> None:
    """``waves.sh stop CELL`` sends SIGTERM to the claim's owner: the worker stops at a step (no result,
    claim released, the wave ends instead of hanging) and the next wave trains the cell."""
    host = waves.host
    long = [*TINY[:-4], "--epochs", "40", "--device", "cpu", "--workers", "2"]
    assert "launched A" in waves("launch", "A", *long, "--seeds", "1").stdout
    claim = host / "runs" / "demo" / "claims" / "stsb__lora__seed0.claim"
    deadline = time.monotonic() + 240
    while not claim.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert claim.exists(), "the cell never started"
    assert "no claim" in waves("stop", "stsb__lora__seed9").stderr
    assert "stopped stsb__lora__seed0" in waves("stop", "stsb__lora__seed0").stdout
    out = waves("wait", "120").stdout
    assert "A rc=" in out and "A rc=0" not in out and "A rc=running" not in out, out
    run = host / "runs" / "demo"
    assert not (run / "cells" / "stsb__lora__seed0.json").exists() and not claim.exists()
    assert "launched B" in waves("launch", "B", *long, "--seeds", "1").stdout  # the same settings: resumes
    assert "B rc=0" in waves("wait", "300").stdout
    assert (run / "cells" / "stsb__lora__seed0.json").exists()


def test_busy_tells_a_live_wave_from_a_finished_one(tmp_path: Path, waves) -> None:
    """``waves.sh busy``: exit 0 while a wave's process (runs/NAME.pid) lives, 1 once none does, and no
    listing or fetch; its own command line does not count (pgrep -f matched the device call's own)."""
    runs = waves.host / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "0.pid").write_text("999999999")  # a wave long gone (sorts first: every pid file is looked at)
    idle = waves("busy", "validate glue", check=False)
    assert (idle.returncode, idle.stdout) == (1, "idle\n")
    live = subprocess.Popen(["sleep", "60"])
    try:
        (runs / "A.pid").write_text(str(live.pid))
        busy = waves("busy")
        assert busy.stdout == "busy\n" and not (tmp_path / "out").exists()  # no fetch, no GPU query
        assert sorted(p.name for p in runs.iterdir()) == ["0.pid", "A.pid"]  # no run directory made
        (runs / "A.rc").write_text("0\n")  # the wave wrote its exit status: done, whatever has its pid
        assert waves("busy", check=False).returncode == 1
    finally:
        live.kill()
        live.wait()


def test_wait_and_triage_without_run_make_no_run_directory(tmp_path: Path, waves) -> None:
    """Only ``launch`` makes its run directory: ``wait`` or ``triage`` without RUN (its default
    runs/mpnet-stsb) made an empty one, which every later pack then listed and fetched as a run. The other
    run directories of the host are still packed."""
    runs = waves.host / "runs"
    demo = runs / "demo"
    demo.mkdir(parents=True)
    (demo / "grid.json").write_text("{}")
    assert waves("wait", "0", RUN="").returncode == 0
    triage = waves("triage", "0", RUN="", check=False)
    assert not (runs / "mpnet-stsb").exists(), triage.stderr
    with tarfile.open(tmp_path / "out" / "runs.tgz") as tar:
        names = tar.getnames()
    assert "runs/demo/grid.json" in names and not any("mpnet-stsb" in n for n in names), names
    # a triage of a run directory that does not exist fails the call (after the packing)
    typo = waves("triage", "100", "--apply", RUN="runs/dmeo", check=False)
    assert typo.returncode == 2 and "runs/dmeo" in typo.stderr
    # a host with no run directory at all: wait (status 0) and triage (status 2: no run directory to
    # triage) each still pack an (empty) archive
    shutil.rmtree(runs)
    out = tmp_path / "out"
    for args, status in ((("wait", "0"), 0), (("triage", "0"), 2)):
        (out / "runs.tgz").unlink()
        assert waves(*args, RUN="", check=False).returncode == status
        assert (out / "runs.tgz").exists() and not (out / "runs.tgz.part").exists(), args


def test_a_relaunch_under_the_same_name_is_busy_until_it_ends(tmp_path: Path, waves) -> None:
    """The exit status of an earlier wave of the same name (runs/A.rc) is removed at launch: with it left,
    ``busy`` and ``wait`` read the new wave as done at once. A stand-in python3 (data check passes, the
    wave sleeps 3 s) keeps this fast."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\ncase "$*" in *gelora.cli*) sleep 3;; esac\nexit 0\n')
    (fake / "python3").chmod(0o755)
    path = f"{fake}:{os.environ.get('PATH', '')}"
    runs = waves.host / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "A.rc").write_text("1\n")  # an earlier launch of A that failed
    assert "launched A" in waves("launch", "A", "--tasks", "rte", PATH=path).stdout
    assert not (runs / "A.rc").exists() and waves("busy", PATH=path).stdout == "busy\n"
    waves("wait", "60", PATH=path, WAIT_POLL="0.5")
    assert (runs / "A.rc").read_text() == "0\n" and waves("busy", check=False, PATH=path).returncode == 1


def test_launch_settles_until_the_wave_ends_or_settle_s(tmp_path: Path, waves) -> None:
    """``launch`` stays SETTLE_S seconds (a call must not end while the wave's workers import: the next
    call's copy of the working tree can remove a source file for a moment), or until the wave ends. A
    stand-in python3 whose wave sleeps 2 s, then one whose wave sleeps 60 s."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\ncase "$*" in *gelora.cli*) sleep "$WAVE_S";; esac\nexit 0\n')
    (fake / "python3").chmod(0o755)
    path = f"{fake}:{os.environ.get('PATH', '')}"
    runs = waves.host / "runs"
    short = waves("launch", "A", "--tasks", "rte", PATH=path, SETTLE_S="120", WAVE_S="2").stdout
    assert "A ended within its 120-s settle: rc=0" in short and (runs / "A.rc").read_text() == "0\n"
    long = waves("launch", "B", "--tasks", "rte", PATH=path, SETTLE_S="2", WAVE_S="60").stdout
    try:
        assert "B settled for 2 s" in long and not (runs / "B.rc").exists()
        assert waves("busy", PATH=path).stdout == "busy\n"
    finally:
        os.killpg(int((runs / "B.pid").read_text()), signal.SIGKILL)
    quiet = waves("launch", "C", "--tasks", "rte", PATH=path, WAVE_S="0").stdout  # SETTLE_S=0: no line
    assert "launched C" in quiet and "settle" not in quiet
    # a wave that fails within the settle: exit 5 (after the packing); a name whose wave runs: refused
    (fake / "python3").write_text(
        '#!/bin/sh\ncase "$*" in *gelora.cli*) sleep "$WAVE_S"; exit 1;; esac\nexit 0\n'
    )
    (tmp_path / "out" / "runs.tgz").unlink()  # packed anew by the failing launch
    failed = waves("launch", "E", "--tasks", "rte", check=False, PATH=path, SETTLE_S="60", WAVE_S="0")
    assert failed.returncode == 5 and "E ended within its 60-s settle: rc=1" in failed.stdout
    assert (tmp_path / "out" / "runs.tgz").exists()
    odd = waves("launch", "F", "--tasks", "rte", check=False, PATH=path, SETTLE_S="soon", WAVE_S="0")
    assert "not whole seconds; 45 used" in odd.stderr and odd.returncode == 5
    live = subprocess.Popen(["sleep", "60"])
    try:
        (runs / "G.pid").write_text(str(live.pid))
        again = waves("launch", "G", "--tasks", "rte", check=False, PATH=path, WAVE_S="0")
        assert again.returncode == 2 and "wave G still runs" in again.stderr
        assert "MPS" not in again.stdout  # a refused launch announces no wave
    finally:
        live.kill()
        live.wait()


def test_mps_launch_starts_the_daemon_marks_the_wave_and_wait_quits_it(tmp_path: Path, waves) -> None:
    """``MPS=1 waves.sh launch``: the daemon starts once, every wave launched while it runs gets
    GELORA_CUDA_MPS=1 (its cells record it), a launch beside a wave without MPS is refused, ``wait`` keeps
    the daemon while a wave runs and quits it once none does; runs/mps.on is trusted only while a daemon runs,
    and a daemon found running without it is adopted. Stand-ins: the MPS control program, and a python3
    whose wave writes its GELORA_CUDA_MPS and sleeps 3 s."""
    stand_in = mps_standin(tmp_path)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text(
        '#!/bin/sh\ncase "$*" in *gelora.cli*) echo "mps=${GELORA_CUDA_MPS:-}" >"$WAVE_ENV_OUT.$$"; sleep 3;; esac\nexit 0\n'
    )
    (fake / "python3").chmod(0o755)
    env = {
        **stand_in,
        "PATH": f"{stand_in['MPS_BIN']}:{fake}:/usr/bin:/bin",
        "WAVE_ENV_OUT": str(tmp_path / "wave"),
        "WAIT_POLL": "0.5",
    }
    runs = waves.host / "runs"

    def seen() -> list[str]:
        out = sorted(p.read_text() for p in tmp_path.glob("wave.*"))
        for p in tmp_path.glob("wave.*"):
            p.unlink()
        return out

    def calls() -> list[str]:
        return (tmp_path / "mps.state.calls").read_text().split()

    try:
        # a wave without MPS runs: MPS=1 is refused, nothing started; GELORA_CUDA_MPS from the caller does
        # not leak into a wave without MPS
        (runs / "mps_log").mkdir(parents=True)  # left by mps_ab.sh or pace_bench.sh: no wave ran under MPS
        plain = waves("launch", "P", "--tasks", "rte", GELORA_CUDA_MPS="1", **env).stdout
        assert "launched P" in plain and "P runs without MPS\n" in plain  # no MPS wave ran here before
        refused = waves("launch", "Q", "--tasks", "rte", check=False, MPS="1", **env)
        assert refused.returncode == 2 and "without MPS" in refused.stderr and not mps_alive(env)
        waves("wait", "60", **env)
        assert seen() == ["mps=\n"]
        first = waves("launch", "A", "--tasks", "rte", MPS="1", **env).stdout
        assert "MPS daemon started" in first and "A runs under MPS" in first and mps_alive(env)
        assert (runs / "mps.on").exists()
        waves("wait", "0", **env)  # a fetch while A runs keeps the daemon
        assert mps_alive(env) and (runs / "mps.on").exists()
        second = waves("launch", "B", "--tasks", "rte", MPS="1", **env).stdout  # beside A: not refused
        assert "MPS daemon started" not in second and "B runs under MPS" in second
        assert calls().count("-d") == 1
        done = waves("wait", "60", **env).stdout
        assert "MPS daemon quit" in done and not mps_alive(env) and not (runs / "mps.on").exists()
        assert seen() == ["mps=1\n", "mps=1\n"]
        # a marker without a daemon (a killed call) is removed: the wave does not claim MPS
        (runs / "mps.on").write_text("stale\n")
        stale = waves("launch", "C", "--tasks", "rte", **env)
        assert "no MPS daemon runs" in stale.stderr and "C runs under MPS" not in stale.stdout
        # said aloud after an MPS wave has ended (wait quit the daemon): MPS=1 is needed again
        assert (
            "C runs without MPS (earlier waves of this host ran under it: MPS=1 starts it again)"
            in stale.stdout
        )
        waves("wait", "60", **env)
        assert seen() == ["mps=\n"] and not (runs / "mps.on").exists()
        # a daemon without a marker (left by a killed mps_ab.sh) is adopted: marked, and quit by wait
        subprocess.run(["nvidia-cuda-mps-control", "-d"], env={**os.environ, **env}, check=True)
        stray = waves("launch", "D", "--tasks", "rte", **env)
        assert "not started by waves.sh" in stray.stderr and "D runs under MPS" in stray.stdout
        assert "MPS daemon quit" in waves("wait", "60", **env).stdout and not mps_alive(env)
        assert seen() == ["mps=1\n"]
    finally:
        kill_mps_standins(env)


def test_hold_release_and_stop_names_and_exit_codes(waves) -> None:
    """``hold``/``release`` check every name before touching any (exit 2, nothing held, on a name of no run)
    and take a selection run by its log name; ``stop`` passes the triage's exit 2 on a bad name through
    (it answered 0 until 2026-12-01, and a traceback left the later names unheld)."""
    run = waves.host / "runs" / "demo"
    bad = waves("hold", "rte__lora__seed0", "rte", check=False)
    assert bad.returncode == 1 and "not a cell or selection-run name" in bad.stderr, bad.stderr
    assert not (run / "claims").exists() and not (run / "lr_select").exists()
    out = waves("hold", "rte__lora__seed0", "rte__lora__lr_select").stdout
    assert "hold rte__lora__seed0" in out and "hold rte__lora " in out
    assert (run / "lr_select" / "rte__lora.hold").exists()
    assert "release rte__lora True" in waves("release", "rte__lora__lr_select").stdout
    assert not (run / "lr_select" / "rte__lora.hold").exists()
    from validation.finetune.grid import write_plan
    from validation.finetune.runner import get_profile

    write_plan(run, ["rte"], ["lora"], [0], get_profile("quick"))  # stop reads the run directory's plan
    stop = waves("stop", "rte", check=False)
    assert stop.returncode == 2 and "not a cell or selection-run name" in stop.stderr, stop.stderr
    assert "nothing to stop" in waves("stop", "--all").stderr


def _data_min(root: Path, *tasks: str) -> Path:
    """A data folder with some GLUE task folders only (as make_carry.sh's data_min)."""
    (root / "glue").mkdir(parents=True)
    for t in tasks:
        shutil.copytree(default_data_dir() / "glue" / t, root / "glue" / t)
    return root


def test_launch_refuses_a_task_without_data_and_starts_nothing(tmp_path: Path, waves) -> None:
    data = _data_min(tmp_path / "data_min", "STS-B")
    args = ("launch", "A", "--profile", "paper", "--tasks", "stsb,squad_v1", "--seeds", "1", "--workers", "2")
    out = waves(*args, check=False, GELORA_DATA_DIR=str(data))
    assert out.returncode == 2, out.stderr
    assert "squad_v1: no SQuAD v1.1 dev file under the data root" in out.stderr
    assert f"waves.sh launch A: refused, nothing started (data root: {data})" in out.stderr
    assert "launched" not in out.stdout and not (waves.host / "runs" / "A.pid").exists()
    assert not (waves.host / "runs" / "demo").exists()  # a refused launch makes no run directory
    # --tasks=... and --data-dir are read as gelora validate glue reads them
    rte_only = _data_min(tmp_path / "rte_only", "RTE")
    out = waves("launch", "B", "--tasks=rte,stsb", "--data-dir", str(rte_only), check=False)
    assert out.returncode == 2 and "stsb: GLUE stsb/train: no file glue/STS-B/" in out.stderr
    assert "rte:" not in out.stderr and not (waves.host / "runs" / "B.pid").exists()


@pytest.mark.parametrize("pick", [[], ["--by", "shared"]], ids=["linear", "shared"])
def test_triage_stops_the_runs_past_the_deadline_and_fetches_the_run(tmp_path: Path, waves, pick) -> None:
    # ["--by", "shared"]: the form of the next GPU session's item 0 (reports/gpu/README.md)
    run = tmp_path / "run"
    write_plan(run, ["rte"], ["adalora"], [0, 1], get_profile("paper", lr_grid=(1.0,)))  # RTE: 50 epochs
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = time.time()
        claim = {
            "pid": late.pid,
            "host": socket.gethostname(),
            "token": "t",
            "started": now - 1000,
            "gpu": "0",
        }
        (run / "claims").mkdir()
        (run / "claims" / "rte__adalora__seed0.claim").write_text(json.dumps(claim))
        (run / "logs").mkdir()
        lines = [train_mark("rte__adalora__seed0", late.pid, now - 999)]
        lines += [f"{{'loss': '0.69', 'learning_rate': '1e-4', 'epoch': '{e}'}}" for e in range(1, 6)]
        (run / "logs" / "rte__adalora__seed0.log").write_text("\n".join(lines) + "\n")
        # another directory under runs/ is passed as --beside (a non-run one is noted and left out)
        (tmp_path / "host" / "runs" / "junk").mkdir(parents=True)
        (tmp_path / "host" / "runs" / "mps_log").mkdir()  # the MPS daemon's logs: not even noted
        out = waves("triage", "600", *pick, "--apply", RUN=str(run))
        assert "--beside runs/junk left out" in out.stderr and "mps_log" not in out.stderr
        assert f"pick by the '{pick[-1] if pick else 'linear'}' projection" in out.stdout
        (row,) = [ln.split() for ln in out.stdout.splitlines() if ln.startswith("rte__adalora__seed0  ")]
        # 5 of 50 epochs in ~1000 s: ~9000 s left, past a 600 s deadline
        assert row[1] == "0" and 1000 <= int(row[2].rstrip("s")) < 1100 and row[3:5] == ["?", "5/50"]
        assert row[6] == row[5] and row[7:] == ["past", "deadline"]  # alone on its GPU: shared = linear
        assert f"stopped rte__adalora__seed0: SIGTERM to pid {late.pid}" in out.stdout
        assert late.wait(timeout=10) == -signal.SIGTERM and hold_path(run, "rte", "adalora", 0).exists()
        assert "rte__adalora__seed0 'epoch': '5'" in out.stdout  # then the usual status block
        with tarfile.open(tmp_path / "out" / "runs.tgz") as tar:
            assert "runs/run/logs/rte__adalora__seed0.log" in tar.getnames()
        # a second run directory's triage in the same call keeps the first one in runs.tgz
        other = tmp_path / "other"
        write_plan(other, ["stsb"], ["lora"], [0], get_profile("paper", lr_grid=(1.0,)))
        # and every run directory of the host comes back as it is now (not runs/junk: no grid.json)
        host_run = tmp_path / "host" / "runs" / "hostrun"
        write_plan(host_run, ["stsb"], ["lora"], [0], get_profile("paper", lr_grid=(1.0,)))
        (host_run / "cells").mkdir()
        (host_run / "cells" / "stsb__lora__seed0.json").write_text("{}")
        waves("triage", "600", RUN=str(other))
        with tarfile.open(tmp_path / "out" / "runs.tgz") as tar:
            names = tar.getnames()
        assert "runs/run/logs/rte__adalora__seed0.log" in names and "runs/other/grid.json" in names
        assert "runs/hostrun/cells/stsb__lora__seed0.json" in names
        assert not [n for n in names if n.startswith("runs/junk")]
    finally:
        if late.poll() is None:
            late.kill()
        late.wait()


@pytest.mark.slow
def test_a_stopped_cell_carried_to_a_fresh_host_resumes_there(tmp_path: Path, waves) -> None:
    """The session-to-session path end to end, through waves.sh as on the device: a cell stopped after its
    first checkpoint is packed and emitted in two calls' worth of output folders, collected and bundled here,
    unpacked on a host whose runs/ is gone, and the next launch resumes it (``train.resumed_from``)."""
    host = waves.host
    long = [*TINY[:-4], "--epochs", "120", "--device", "cpu", "--workers", "1", "--seeds", "1"]
    assert "launched A" in waves("launch", "A", *long).stdout
    run = host / "runs" / "demo"
    ckpt = run / "work" / "stsb__lora__seed0" / "checkpoint-50"  # the quick profile saves every 50 steps
    # generous deadlines: on this 2-core machine beside a test run, 50 steps took 4 minutes
    deadline = time.monotonic() + 900
    while not (ckpt / "trainer_state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not (ckpt / "trainer_state.json").exists():
        waves("stop", "stsb__lora__seed0", check=False)  # leave no training process behind
        pytest.fail("no checkpoint within 900 s")
    assert "stopped stsb__lora__seed0" in waves("stop", "stsb__lora__seed0").stdout
    waves("wait", "120")
    assert not (run / "cells" / "stsb__lora__seed0.json").exists()

    def carry(*args: str, cwd: Path = host) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "validation.finetune.ckpt_carry", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    stage, fetched, here = tmp_path / "stage", tmp_path / "fetched", tmp_path / "here"
    carry("pack", "runs/demo", str(stage))
    for i in range(8):  # one emit per device call, until nothing is left (small parts: several calls)
        out = fetched / f"call{i}"
        out.mkdir(parents=True)
        if "; 0 left" in carry("emit", str(stage), str(out), "--max-files", "2").stdout:
            break
    carry("collect", str(here / "collected"), *map(str, sorted(fetched.iterdir())), cwd=tmp_path)
    carry("bundle", str(here / "collected"), str(here), "--prefix", "ck", "--budget-mib", "60", cwd=tmp_path)
    # a fresh machine: the runs and their checkpoints are gone; the carry folders arrive with the calls
    shutil.rmtree(host / "runs")
    for ck in sorted(here.glob("ck*")):
        shutil.copytree(ck, host / ".devcarry" / ck.name)
        carry("unpack", f".devcarry/{ck.name}", "runs/demo", "--stage", str(tmp_path / "ckpt-in"))
    assert (ckpt / "trainer_state.json").exists() and (run / "grid.json").exists()
    assert "launched B" in waves("launch", "B", *long).stdout
    done = waves("wait", "900").stdout
    if "B rc=0" not in done:
        waves("stop", "stsb__lora__seed0", check=False)
        pytest.fail(f"the resumed wave did not finish within 900 s: {done}")
    cell = json.loads((run / "cells" / "stsb__lora__seed0.json").read_text())
    assert cell["train"]["resumed_from"] == os.path.join("work", "stsb__lora__seed0", "checkpoint-50")
