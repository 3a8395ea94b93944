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
    assert is_live(tmp_path / "c.claim")
    held.release()


@needs_proc
def test_a_reused_pid_does_not_keep_a_dead_owner_claim_live(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    start = claims._proc_stat(os.getpid())[1]  # type: ignore[index]
    # this process holds the pid, but the claim names another start time: the owner is gone
    _write_claim(path, os.getpid(), pid_start=start + 1)
    assert is_stale(path)
    taken = try_claim(path)
    assert taken is not None
    taken.release()
    # the same start time: the owner itself, alive
    _write_claim(path, os.getpid(), pid_start=start)
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
        while claims._proc_stat(child.pid) is not None and claims._proc_stat(child.pid)[0] != "Z":  # type: ignore[index]
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert claims._proc_stat(child.pid) is not None  # exited, not reaped: a zombie
        _write_claim(path, child.pid)
        assert is_stale(path)
        _write_claim(path, child.pid, pid_start=claims._proc_stat(child.pid)[1])  # type: ignore[index]
        assert is_stale(path)
    finally:
        child.wait()


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
