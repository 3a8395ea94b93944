"""Claim liveness on this host (validation/finetune/claims.py): dead, zombie and reused pids."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from validation.finetune import claims
from validation.finetune.claims import is_live, is_stale, read_claim, try_claim

needs_proc = pytest.mark.skipif(
    claims._proc_stat(os.getpid()) is None, reason="needs /proc/<pid>/stat (Linux)"
)


def _write_claim(path: Path, pid: int, **extra: object) -> None:
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "token": "t", **extra}))


@needs_proc
def test_a_claim_records_its_owner_start_time(tmp_path: Path) -> None:
    held = try_claim(tmp_path / "c.claim")
    assert held is not None
    info = read_claim(tmp_path / "c.claim")
    assert info is not None and info["pid"] == os.getpid()
    assert info["pid_start"] == claims._proc_stat(os.getpid())[1]  # type: ignore[index]
    assert info["ns"] == claims._namespaces() and str(info["ns"]).startswith("pid:[")
    assert is_live(tmp_path / "c.claim")
    held.release()


@needs_proc
def test_a_reused_pid_does_not_keep_a_dead_owner_claim_live(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    start = claims._proc_stat(os.getpid())[1]  # type: ignore[index]
    # this process holds the pid, but the claim names another start time: the owner is gone
    _write_claim(path, os.getpid(), pid_start=start + 1, ns=claims._namespaces())
    assert is_stale(path)
    taken = try_claim(path)
    assert taken is not None
    taken.release()
    # the same start time: the owner itself, alive
    _write_claim(path, os.getpid(), pid_start=start, ns=claims._namespaces())
    assert not is_stale(path) and try_claim(path) is None


def test_a_claim_without_start_time_falls_back_to_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    _write_claim(path, os.getpid())  # claims written before pid_start existed
    assert not is_stale(path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid is free
    _write_claim(path, child.pid)
    assert is_stale(path)


@needs_proc
def test_a_zombie_owner_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        stat = claims._proc_stat(child.pid)
        while stat is not None and stat[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
            stat = claims._proc_stat(child.pid)
        if stat is None:
            pytest.skip("the child was reaped by someone else before it could be seen as a zombie")
        _write_claim(path, child.pid)
        assert is_stale(path)
        _write_claim(path, child.pid, pid_start=stat[1], ns=claims._namespaces())
        assert is_stale(path)
    finally:
        child.wait()


@needs_proc
def test_a_sleeping_owner_is_live_until_it_dies(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    repo = Path(__file__).resolve().parents[4]
    code = (
        "import sys, time\n"
        "from validation.finetune.claims import try_claim\n"
        "held = try_claim(sys.argv[1])\n"
        "assert held is not None\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while read_claim(path) is None:
            assert child.poll() is None, "the child exited before claiming"
            assert time.monotonic() < deadline, "the child never claimed"
            time.sleep(0.05)
        time.sleep(0.2)  # the child is now sleeping (state S): a live owner need not be running
        assert read_claim(path)["pid"] == child.pid  # type: ignore[index]
        assert is_live(path) and try_claim(path) is None
    finally:
        child.kill()
        child.wait()
    assert is_stale(path)


def test_without_a_readable_proc_the_start_time_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.claim"
    # a restricted /proc (hidepid): the owner's entry cannot be read, os.kill says it exists
    monkeypatch.setattr(claims, "_proc_stat", lambda pid: None)
    _write_claim(path, os.getpid(), pid_start=-1, ns=claims._namespaces())
    assert not is_stale(path)


def test_a_proc_of_another_pid_namespace_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims.os, "readlink", lambda p: "1" if p == "/proc/self" else "pid:[1]")
    assert claims._proc_stat(os.getpid()) is None and claims._namespaces() is None


def test_a_claim_from_another_namespace_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is free here, but it may be a live worker's pid in another container
    _write_claim(path, child.pid, pid_start=1, ns="pid:[1] time:[1]")
    assert not is_stale(path, stale_after=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert is_stale(path, stale_after=60)


def test_proc_stat_reads_a_command_name_with_spaces_and_parentheses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = ["S"] + [str(i) for i in range(4, 22)] + ["987654"] + ["0"] * 30
    stat = tmp_path / "stat"
    stat.write_bytes(b"4242 (a b) (c)) " + " ".join(fields).encode())
    real = Path

    def fake_path(p: str) -> Path:
        return stat if p == "/proc/4242/stat" else real(p)

    monkeypatch.setattr(claims, "Path", fake_path)
    assert claims._proc_stat(4242) == ("S", 987654)
