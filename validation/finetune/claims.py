"""Atomic claim files: at most one process works on a cell (or builds a cache entry) at a time.

A claim is a small JSON file created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+),
holding the owner's ``pid``, ``host``, a random ``token`` and the start time. While the owner works, a
heartbeat thread (a daemon thread: it never keeps a stopping process alive) touches the file every
``stale_after / 4`` seconds. A claim is **stale** when

* its owner ran on this host, in the same pid (and time) namespace, and the pid is no longer alive (a
  killed worker; an exited worker its parent has not reaped yet, a zombie, counts as gone, and where
  ``/proc`` gives each process's start time the claim records it, so a pid reused by an unrelated process
  after the owner died does not keep the claim live; a claim from another namespace under the same host
  name is judged by its heartbeat only), or
* its modification time is older than ``stale_after`` seconds (an owner on another host stopped beating).

A stale claim is broken under a second lock (``<claim>.break``, itself stale after 60 s) so two processes
that both see the same stale claim cannot delete each other's fresh claim.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

#: default seconds without a heartbeat after which another host's claim counts as abandoned
DEFAULT_STALE_AFTER = 600.0
_BREAK_STALE_S = 60.0


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) of ``pid`` from ``/proc``, or None.

    None where the system has no ``/proc`` entry for it or it cannot be read (no such process, another
    operating system, a restricted ``/proc``), or where the mounted ``/proc`` belongs to another pid
    namespace than this process's (its entries would describe other processes): the caller then falls back
    to ``os.kill(pid, 0)``.
    """
    if not _proc_is_ours():
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # field 2, the command name, is in parentheses and may itself hold spaces and parentheses: the fields
    # after the last ")" are 3 (state) ... 22 (start time)
    rest = raw[raw.rfind(b")") + 1 :].split()
    try:
        return rest[0].decode("ascii"), int(rest[19])
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _proc_is_ours() -> bool:
    """Whether ``/proc`` shows this process's pid namespace (``/proc/self`` names our own pid)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _namespaces() -> str | None:
    """This process's pid and time namespaces (``"pid:[4026531836] time:[4026531834]"``), or None where
    ``/proc`` cannot tell. Pids and ``/proc`` start times compare only within one pair of them: containers on
    one machine can share a host name, and a time namespace shifts start times."""
    if not _proc_is_ours():
        return None
    parts = []
    for ns in ("pid", "time"):
        try:
            parts.append(os.readlink(f"/proc/self/ns/{ns}"))
        except OSError:
            if ns == "pid":
                return None
    return " ".join(parts)


def _start_time(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` is a running process of this host (and, given ``start``, the same process).

    A zombie (exited, not yet reaped) is not alive; a process whose ``/proc`` start time differs from
    ``start`` is another process that reused the pid. Where ``/proc`` cannot be read, ``start`` is not
    checked (``os.kill(pid, 0)`` alone decides).
    """
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        if state == "X" or (state == "Z" and not _threads_left(pid)):
            return False
        return start is None or started == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _threads_left(pid: int) -> bool:
    """Whether a process whose main thread shows as a zombie still runs other threads (``/proc`` reports
    the main thread's state)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create_exclusive(path: Path, payload: dict[str, Any]) -> bool:
    """Create ``path`` holding ``payload`` unless it exists; never leaves an empty claim behind.

    The content goes to a temporary file first and is hard-linked to ``path`` (atomic, and it fails when
    ``path`` exists): a process killed while creating its claim leaves at most the temporary file, not an
    empty claim that no reader can attribute to a dead owner (a SIGKILL between ``open`` and ``write`` did,
    and the next launch took the cell for busy). File systems without hard links get the plain exclusive
    create.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(json.dumps(payload))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            return _create_exclusive_open(path, payload)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _create_exclusive_open(path: Path, payload: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh)
    return True


def is_stale(path: str | Path, stale_after: float = DEFAULT_STALE_AFTER) -> bool:
    """True when the claim at ``path`` exists and its owner is gone (see the module docstring)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    if time.time() - mtime > stale_after:
        return True
    info = _read(path)
    if info is None:  # being written right now (created, content not yet flushed)
        return False
    return owner_gone(info)


def owner_gone(info: dict[str, Any]) -> bool:
    """Whether a claim payload's owner ran here (this host name and, where recorded, these pid and time
    namespaces) and its process is gone: no such pid, a zombie, or a pid now held by a later process
    (another start time). False when that cannot be told here (another host or namespace: only the
    heartbeat can tell)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    ns = info.get("ns")
    if ns is not None and ns != _namespaces():
        return False  # another container or namespace under the same host name: the heartbeat decides
    start = info.get("pid_start") if ns is not None else None
    return not _pid_alive(int(info["pid"]), start if isinstance(start, int) else None)


def read_claim(path: str | Path) -> dict[str, Any] | None:
    """The payload of a claim file (``pid``, ``pid_start``, ``ns``, ``host``, ``token``, ``started``,
    ``note``, ``gpu``), or None when it is missing or unreadable (a claim being created or released)."""
    return _read(Path(path))


def is_live(path: str | Path, stale_after: float = DEFAULT_STALE_AFTER) -> bool:
    """True when the claim exists and is not stale."""
    return Path(path).exists() and not is_stale(path, stale_after)


def _break_stale(path: Path, stale_after: float) -> None:
    lock = path.with_name(path.name + ".break")
    try:
        if time.time() - lock.stat().st_mtime > _BREAK_STALE_S:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    if not _create_exclusive(lock, {"pid": os.getpid(), "host": socket.gethostname()}):
        return  # someone else is breaking it
    try:
        if is_stale(path, stale_after):  # re-check under the lock: still the same dead owner
            path.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


class Claim:
    """A held claim; :meth:`release` (or leaving the ``with`` block) deletes it if it is still ours."""

    def __init__(self, path: Path, token: str, heartbeat_s: float) -> None:
        self.path = path
        self.token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and delete the claim file (only when it still carries our token)."""
        self._stop.set()
        info = _read(self.path)
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_claim(path: str | Path, *, stale_after: float = DEFAULT_STALE_AFTER, note: str = "") -> Claim | None:
    """Claim ``path`` atomically; None when a live owner holds it.

    Parameters
    ----------
    path : str or Path
        The claim file (its folder is created).
    stale_after : float
        Seconds without a heartbeat after which a claim from any host is abandoned (same-host claims of a
        dead pid are stale at once).
    note : str
        Free text stored in the claim (e.g. the worker's slot).

    Returns
    -------
    Claim or None
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    payload = {
        "pid": os.getpid(),
        # the owner's start time (clock ticks after boot, from /proc; None elsewhere): tells the owner from
        # a later process that got the same pid
        "pid_start": _start_time(os.getpid()),
        "ns": _namespaces(),
        "host": socket.gethostname(),
        "token": token,
        "started": time.time(),
        "note": note,
        # the GPU a pinned worker trains on (validation.finetune.parallel sets it): lets the other workers
        # spread a grid's methods over the GPUs (validation.finetune.grid.next_cell_index)
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    for _ in range(3):
        try:
            if _create_exclusive(path, payload):
                return Claim(path, token, max(1.0, stale_after / 4))
        except OSError as exc:  # pragma: no cover - e.g. a read-only directory
            if exc.errno != errno.EEXIST:
                raise
        if not is_stale(path, stale_after):
            return None
        _break_stale(path, stale_after)
    return None


__all__ = ["DEFAULT_STALE_AFTER", "Claim", "is_live", "is_stale", "owner_gone", "read_claim", "try_claim"]
