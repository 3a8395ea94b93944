"""Independent grid cells on several workers of one host, and deterministic shards for many hosts.

One host: :func:`run_workers` starts ``N`` worker subprocesses (``python -m validation.finetune.parallel``),
each pinned to one GPU with ``CUDA_VISIBLE_DEVICES`` (or, on CPU, given ``cpu_count // N`` torch threads).
Every worker walks the same cell list and trains the cells it manages to claim
(:func:`validation.finetune.grid.attempt_cells`), so no scheduler state exists beyond the run directory:
a killed run loses no finished cell, a restart skips them and reclaims cells whose owner died.

Stopping: a worker handles SIGTERM through :mod:`validation.finetune.stop` (a flag checked at training step
boundaries and between cells, a watchdog that hard-exits after ``GELORA_STOP_GRACE_S``, a second SIGTERM
exits at once), so it stops promptly, exits with ``128 + SIGTERM`` and releases its claim (or, after a hard
exit, leaves a claim of a dead pid, which counts as stale). :func:`run_workers` stops its workers on SIGTERM
with a bounded wait and then SIGKILL, and never waits on a worker that has exited.

Many hosts: :func:`shard_of` partitions cells by a hash of their name, so ``--shard i/N`` is stable when the
plan grows (a cell never changes shard) and any batch system (Slurm arrays, Kubernetes indexed jobs) can run
the shards against one shared run directory. The claim files make overlapping launches safe as well.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gelora._io import read_json
from gelora.errors import ConfigError
from validation.finetune.stop import grace_from_env

Cell = tuple[str, str, int]
#: seconds the parent waits beyond the workers' grace before it kills them
_KILL_MARGIN_S = 10.0


@dataclass(frozen=True)
class Slot:
    """One worker: the GPU it sees (None on CPU) and its torch/OpenMP thread count."""

    index: int
    gpu: int | None
    threads: int


def shard_of(name: str, n: int) -> int:
    """Shard (``0 <= shard < n``) of a cell name: the first 64 bits of its SHA-256, modulo ``n``."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``.

    Raises
    ------
    ConfigError
        Not of that form.
    """
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need N >= 1 and 0 <= i < N")
    return i, n


def select_shard(cells: Sequence[Cell], shard: tuple[int, int]) -> list[Cell]:
    """The cells of shard ``shard = (i, n)`` in their planned order."""
    from validation.finetune.runner import cell_name

    i, n = shard
    return [c for c in cells if shard_of(cell_name(*c), n) == i]


def _visible_gpus() -> list[int]:
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def worker_log_path(run_dir: str | Path, index: int, launch: int | None = None) -> Path:
    """``<run_dir>/logs/worker-<index>-<launch>.log``: worker ``index``'s own log in launch ``launch``.

    ``launch`` is the pid of the launching process (default: this one). Launches that share a run
    directory (waves started while another still trains) number their workers from 0 each, so a name
    without the launch would interleave their logs.
    """
    return Path(run_dir) / "logs" / f"worker-{index}-{os.getpid() if launch is None else launch}.log"


def plan_slots(
    workers: int | None, gpus: Sequence[int] | None, per_gpu: int | None, device: str | None
) -> list[Slot]:
    """Worker slots for the settings; an empty list means "run in this process" (one worker, no pinning).

    ``workers`` defaults to ``len(gpus) * per_gpu`` (1 on CPU); GPUs are assigned round-robin; with
    ``gpus`` None and a GPU device, all visible GPUs are used.

    Raises
    ------
    ConfigError
        Non-positive counts, GPUs requested on CPU, more workers than ``len(gpus) * per_gpu``, or workers
        inside a ``torchrun`` launch.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if per_gpu is not None and per_gpu < 1:
        raise ConfigError(f"--per-gpu must be >= 1, got {per_gpu}")
    if (workers or 1) == 1 and gpus is None and per_gpu is None:
        return []
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--workers/--gpus/--per-gpu cannot be combined with a torchrun launch")
    on_cpu = device is not None and str(device).startswith("cpu")
    if on_cpu and gpus:
        raise ConfigError("--gpus given with --device cpu")
    gpu_list = [] if on_cpu else (list(gpus) if gpus is not None else _visible_gpus())
    if len(set(gpu_list)) != len(gpu_list) or any(g < 0 for g in gpu_list):
        raise ConfigError(f"--gpus must be distinct non-negative indices, got {gpu_list}")
    if gpu_list:
        n = workers if workers is not None else len(gpu_list) * (per_gpu or 1)
        if per_gpu is not None and n > len(gpu_list) * per_gpu:
            raise ConfigError(f"{n} workers do not fit on {len(gpu_list)} GPU(s) x {per_gpu} per GPU")
    else:
        n = workers or 1
    threads = max(1, (os.cpu_count() or 1) // n)
    return [Slot(k, gpu_list[k % len(gpu_list)] if gpu_list else None, threads) for k in range(n)]


def _cell_state(run_dir: Path, cell: Cell, since: float, stale_after: float) -> str:
    from validation.finetune.claims import is_live
    from validation.finetune.grid import claim_path
    from validation.finetune.runner import cell_path, failure_path

    if cell_path(run_dir, *cell).exists():
        return "done"
    if is_live(claim_path(run_dir, *cell), stale_after):
        return "running"
    fail = failure_path(run_dir, *cell)
    try:
        if fail.stat().st_mtime >= since:
            return "failed"
    except FileNotFoundError:
        pass
    return "left"


def _signal_live(procs: Sequence[subprocess.Popen[bytes]], *, kill: bool) -> None:
    """SIGTERM (or, with ``kill``, SIGKILL) every process of ``procs`` still running; does not wait."""
    for p in procs:
        if p.poll() is None:
            if kill:
                p.kill()
            else:
                p.terminate()


def stop_workers(
    procs: Sequence[subprocess.Popen[bytes]], wait_s: float, hurry: Callable[[], bool] = lambda: False
) -> None:
    """SIGTERM the live ``procs``, wait at most ``wait_s`` seconds (less once ``hurry()``), SIGKILL the rest.

    Returns when every process has exited and been reaped.
    """
    _signal_live(procs, kill=False)
    deadline = time.monotonic() + wait_s
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not hurry():
        time.sleep(0.1)
    _signal_live(procs, kill=True)
    for p in procs:
        p.wait()


def grid_line(states: dict[Cell, str]) -> str:
    """``done 3/12, running 4, failed 0, left 5`` for the progress display."""
    counts = {k: sum(1 for v in states.values() if v == k) for k in ("done", "running", "failed", "left")}
    return (
        f"done {counts['done']}/{len(states)}, running {counts['running']}, "
        f"failed {counts['failed']}, left {counts['left']}"
    )


def run_workers(
    cells: Sequence[Cell],
    slots: Sequence[Slot],
    *,
    profile: Any,
    run_dir: Path,
    data_dir: str | Path | None,
    device: str | None,
    keep_going: bool,
    keep_checkpoints: bool,
    progress: Callable[[str, str], None] | None,
    stale_after: float,
    poll_s: float = 0.5,
    stop_grace_s: float | None = None,
) -> Any:
    """Run ``cells`` on worker subprocesses (one per slot) and wait for them.

    A SIGTERM to this process (or any exception, e.g. Ctrl-C) stops the workers: each gets SIGTERM and stops
    at its next step boundary (:mod:`validation.finetune.stop`); one still alive ``stop_grace_s`` (default
    ``GELORA_STOP_GRACE_S``, the workers' own grace) plus 10 s later is killed; a second SIGTERM kills them at
    once. Then ``SystemExit(128 + signum)`` is raised. A worker that exits (however) no longer holds its
    cell: its claim names a dead pid of this host, so the cell counts as left, not running, and this function
    returns once every worker has exited.

    Returns
    -------
    validation.finetune.grid.GridOutcome
        ``skipped``: finished before the launch; ``ran``: finished during it; ``failed``: failure records
        written during it (``errors`` holds their messages, plus ``worker-<k>`` for a worker that crashed);
        ``busy``: still claimed by a live owner outside this launch when the workers stopped.
    """
    from validation.finetune.grid import GridOutcome, is_held
    from validation.finetune.runner import cell_name, cell_path, failure_path, read_cell

    started = time.time()
    before = {c for c in cells if _cell_state(run_dir, c, started, stale_after) == "done"}
    for c in sorted(before):
        read_cell(cell_path(run_dir, *c))  # a corrupt file stops the launch before any worker starts
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    spec_dir = run_dir / "workers"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = spec_dir / f"spec-{uuid.uuid4().hex[:12]}.pkl"
    with spec.open("wb") as fh:
        pickle.dump(
            {
                "cells": list(cells),
                "profile": profile,
                "run_dir": str(run_dir),
                "data_dir": None if data_dir is None else str(data_dir),
                "device": device,
                "keep_going": keep_going,
                "keep_checkpoints": keep_checkpoints,
                "stale_after": stale_after,
                "failed_since": started,
            },
            fh,
        )
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the validation package
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    states: dict[Cell, str] = {}
    stopping = False
    stop_sent = 0.0
    # the workers' own grace (validation.finetune.stop) plus a margin; then SIGKILL
    wait_s = (stop_grace_s if stop_grace_s is not None else grace_from_env()) + _KILL_MARGIN_S
    signalled: list[int] = []

    def _term(signum: int, frame: Any) -> None:
        # only a flag: the loop below stops the workers (bounded) instead of orphaning them, e.g. `timeout`
        signalled.append(signum)

    try:
        old_term = signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread
        old_term = None
    try:
        for slot in slots:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(slot.threads)
            env["TOKENIZERS_PARALLELISM"] = "false"
            if stop_grace_s is not None:
                env["GELORA_STOP_GRACE_S"] = str(stop_grace_s)  # the workers' watchdog matches our wait
            env.setdefault("GELORA_TOKEN_CACHE", str(run_dir / "cache"))
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
            log = worker_log_path(run_dir, slot.index).open("ab")
            logs.append(log)
            cmd = [
                sys.executable,
                "-m",
                "validation.finetune.parallel",
                str(spec),
                str(slot.index),
                str(slot.threads),
            ]
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        last_line = ""
        while True:
            alive = [p.poll() is None for p in procs]
            new = {c: _cell_state(run_dir, c, started, stale_after) for c in cells}
            for c, st in new.items():
                if progress is None:
                    break
                if not states and c in before:
                    progress(cell_name(*c), "skip")
                elif states.get(c) != st and st in ("running", "done", "failed"):
                    progress(cell_name(*c), "run" if st == "running" else st)
            states = new
            line = grid_line(states)
            if progress and line != last_line:
                progress(line, "grid")
                last_line = line
            # --stop-on-error: the same bounded stop as stop_workers, without blocking the progress loop
            if not keep_going and not stopping and "failed" in states.values():
                stopping = True
                stop_sent = time.monotonic()
                _signal_live(procs, kill=False)
            if not any(alive):
                break
            if stopping and time.monotonic() - stop_sent > wait_s:
                _signal_live(procs, kill=True)
            if signalled:
                stop_workers(procs, wait_s, hurry=lambda: len(signalled) > 1)
                raise SystemExit(128 + signalled[0])
            time.sleep(poll_s)
    except BaseException:
        stop_workers(procs, wait_s, hurry=lambda: len(signalled) > 1)
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        for log in logs:
            log.close()
        spec.unlink(missing_ok=True)
    outcome = GridOutcome()
    for c in cells:
        name = cell_name(*c)
        st = states.get(c, "left")
        if c in before:
            outcome.skipped.append(name)
        elif st == "done":
            outcome.ran.append(name)
        elif st == "failed":
            outcome.failed.append(name)
            try:
                info = read_json(failure_path(run_dir, *c))
                outcome.errors[name] = f"{info.get('error')}: {info.get('message')}"
            except Exception as exc:  # noqa: BLE001 - the record itself is broken
                outcome.errors[name] = f"failure record unreadable: {exc}"
        elif st == "running":
            outcome.busy.append(name)
        elif is_held(run_dir, *c, profile):
            outcome.held.append(name)
    for slot, p in zip(slots, procs, strict=True):
        if p.returncode not in (0, None) and not stopping:
            rc = p.returncode
            why = f"exit code {rc}"
            if rc < 0 or rc > 128:  # killed, or 128 + signum from validation.finetune.stop
                why += " (stopped by a signal: its cell is left unfinished with its checkpoints; a rerun resumes it)"
            outcome.errors[f"worker-{slot.index}"] = f"{why}; see {worker_log_path(run_dir, slot.index)}"
    return outcome


def worker_main(spec_path: str, index: int, threads: int) -> int:
    """Entry point of one worker subprocess: claim and run cells until none is left."""
    import torch

    from validation.finetune import stop, token_cache
    from validation.finetune.grid import GridOutcome, attempt_cells

    stop.install(label=f"worker {index}")  # SIGTERM: stop at the next step boundary, hard exit after a grace
    torch.set_num_threads(max(1, threads))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    with open(spec_path, "rb") as fh:
        spec = pickle.load(fh)
    run_dir = Path(spec["run_dir"])
    outcome = GridOutcome()

    def report(name: str, status: str) -> None:
        print(f"[worker {index}] {status:6s} {name}", flush=True)

    with token_cache.use_dir(run_dir / "cache"):
        try:
            attempt_cells(
                spec["cells"],
                outcome,
                profile=spec["profile"],
                run_dir=run_dir,
                data_dir=spec["data_dir"],
                device=spec["device"],
                keep_going=spec["keep_going"],
                keep_checkpoints=spec["keep_checkpoints"],
                progress=report,
                stale_after=spec["stale_after"],
                failed_since=spec["failed_since"],
                log_dir=run_dir / "logs",
                note=f"worker {index}",
                gpu=os.environ.get("CUDA_VISIBLE_DEVICES") or None,  # set by run_workers for a GPU slot
            )
        except stop.StopRequested as exc:  # the cell (if any) is reported interrupted, its claim released
            print(f"[worker {index}] stopping: {exc}; exit code {exc.exit_code}", flush=True)
            return exc.exit_code
        except Exception as exc:  # noqa: BLE001 - --stop-on-error: the failure is recorded already
            print(f"[worker {index}] stopping: {type(exc).__name__}: {exc}", flush=True)
            return 1
    print(f"[worker {index}] ran {len(outcome.ran)}, failed {len(outcome.failed)}; cache {token_cache.STATS}")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))


__all__ = [
    "Slot",
    "grid_line",
    "parse_shard",
    "plan_slots",
    "run_workers",
    "select_shard",
    "shard_of",
    "stop_workers",
    "worker_log_path",
    "worker_main",
]
