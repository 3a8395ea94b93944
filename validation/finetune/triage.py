"""Which running cells to stop so that the others finish before the device time runs out, decided on the device.

A GPU session's device time is counted; after a progress report, an operator who took more than the idle
limit (about 30 s) to pick the cells to stop lost the machine, with every unfinished run on it. This module
makes the pick inside the same device call (``scripts/gpu/waves.sh triage SECONDS [--by linear|shared]
[--apply]``):

* :func:`running` lists the cells and learning-rate selection runs of a run directory that a live process
  claims (``claims/<cell>.claim``, ``lr_select/<task>__<method>.claim``): seconds since the claim was taken,
  the last epoch the Trainer logged (``logs/<name>.log``), the planned epochs (the run's plan: the
  profile's ``epochs`` or the task's ``task_overrides``, e.g. 30 for MRPC under the paper profile; an
  explicit ``--epochs`` replaced those when the plan was written) and a projection of the seconds left;
* :func:`past_deadline` picks the runs projected to end after a deadline; the table also shows
  :func:`shared_left`, the end each run would have if the GPU's throughput were shared equally and the
  others sped up as runs end (each method only until its GPU holds :data:`SATURATION` processes: eight
  for AdaLoRA and GeoLoRA, four for the LoRA-type methods), counting the runs of the directories given with
  ``--beside`` (``waves.sh triage`` passes every other directory under ``runs/``); each process's present
  pace is taken at the process count it was measured at, its GPU's count averaged (harmonically) over its
  training so far, from the live processes and the spans of the runs that ended, read from the logs of those
  directories (:func:`gpu_history`; only on a host with one GPU, ``nvidia-smi -L`` or
  ``GELORA_TRIAGE_GPUS``: a log does not name its GPU; logs whose marks predate the host's boot, copied or
  unpacked there, are left out). Before, it was taken at the count of now: a triage just after a wave beside
  ended foresaw no speed-up and came 316-327 s long on 2026-12-02 (:func:`shared_left`);
* two picks (``--by``): ``linear`` (the default) stops every run whose linear projection ``left_s`` is past
  the deadline, all at once; ``shared`` stops, one process at a time, the one whose :func:`shared_left` end
  is the latest (ties: by name), counting those already picked as leaving now, until every run left ends
  by the deadline (stopping the latest-ending one speeds the others up, so usually fewer are stopped; the
  pick is greedy, not a minimum). Why
  ``shared``: on 2026-12-01 (one H200, 24 processes of a QNLI wave, nothing queued) a 1,150-s triage put
  three GeoLoRA cells at 1,167-1,172 s linearly (793 s shared) and stopped them; the 21 left (linear up to
  1,064 s, shared up to 780 s; 415-647 s shared after the stops) ended 369-687 s later, so the three would
  have fitted. Resumed from their checkpoints, they were stopped again by a triage 77 s later against
  800 s: linear 935-1,815 s (a minute's pace among 20 processes, just after startup), shared 329-390 s;
  left alone they ended within about 6 minutes. The other way: with 12 cells queued behind 12 running,
  the shared column was 7-184 s short before it modelled the queue (``queues``), the linear one within
  26 s;
* ``python -m validation.finetune.triage RUN --deadline SECONDS [--by linear|shared] [--apply]`` prints the
  table (its verdict column by the chosen pick) and, with ``--apply``, holds each picked run
  (:func:`validation.finetune.grid.hold_cell`) and sends SIGTERM to the process of its claim, as ``waves.sh
  stop`` does: the worker stops at its next step, keeps its checkpoints and releases the claim.

The projection is linear in logged epochs: ``left = training * (1 - progress) / progress``, where ``progress``
is the share of this claim's training logged so far and ``training`` the seconds since this claim's first
optimiser step (the runner's :data:`validation.finetune.runner.STEPS_MARK` line, written after tokenising,
loading the model and the method's preparation, e.g. GeLoRA's intrinsic dimensions; ``startup_s`` is the
time before it). A log without that line (an older runner) counts from the claim, so its early projections
are too long; so is the projection of a steps line dated at or after the triage's own time (clocks), which
is then ignored. It is an estimate: a run that slows down or speeds up (neighbours on the GPU starting or
finishing) is not foreseen; a selection run's later rates are projected at the first rate's pace, their
loading included once they have started (while the first rate trains, the later rates' loading is not
foreseen, so the projection is short by about that much); and a cell whose process ran a multi-rate
selection first shows that selection's time as its startup. A run that has logged no epoch in this claim
yet has no projection (``None``, verdict ``unknown``) and is never stopped unless asked
(``stop_unknown``). What counts as this claim's training:

* the Trainer lines after the run's own mark in the log (:data:`validation.finetune.runner.TRAIN_MARK`,
  with the claim's pid and a time after the claim), so the lines of earlier attempts appended to the same
  log do not count; a resumed run starts from its checkpoint's epoch, estimated as its first logged epoch
  less one logging interval (planned / 50: the runner logs every ``max_steps // 50`` steps; a run of fewer
  than 50 steps logs every step, so its start is estimated a little late). A log without marks (written by
  an older runner) is read from its last Trainer run;
* a selection run trains one model per candidate rate not yet scored when the claim was taken
  (``lr_select/<task>__<method>.json``), each for the planned epochs, so its progress counts every rate;
* a cell whose training has finished but whose one-rate selection run has not (it records the
  selection's result after training, and runs it when no other worker does) is projected to end with that
  selection run; a multi-rate cell waiting for its selection before training has no projection.

A selection run inside a cell's process (the same pid) logs to that cell's log, otherwise to
``logs/<task>__<method>__lr_select.log``; stopping either stops the process, and so both. Runs started in
the launching process itself (``--workers 1``) have no log of their own: no projection.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from gelora._io import read_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.claims import is_live, owner_gone, read_claim
from validation.finetune.grid import claim_path, hold_cell, hold_path, plan_task_settings, read_plan
from validation.finetune.runner import (
    SELECTION_LOG_SUFFIX,
    STEPS_MARK,
    TRAIN_MARK,
    canonical_run_name,
    cell_path,
    failure_path,
    parse_run_name,
)

#: share of a Trainer run between two logged points (the runner logs every ``max_steps // 50`` steps)
LOG_INTERVAL_SHARE = 1 / 50
#: bytes read from the end of a log (a run's lines are a few tens of kB)
LOG_TAIL_BYTES = 1 << 20
#: seconds a log's modification time may lie after the triage's listing and still count as ended then
CLOCK_SLACK_S = 5.0
#: processes of these methods stop speeding up once their GPU holds this many processes or fewer, in
#: :func:`shared_left` (others: processor sharing to the end). Measured on 2026-12-02 (one H200, MPS,
#: reports/gpu/paper-mpnet/README.md, "Fifteenth run"): MPNet-base AdaLoRA and GeoLoRA ran 4.5-4.7 steps/s a
#: process at eight processes (the first shard, adaptive only), 2.9-3.0 among 13 and about 4.5-5.0 with four
#: left: about the same pace at eight as at four, so their share stops mattering near eight. From 13 processes
#: that allows 13 / 8 = 1.63x, where processor sharing foresaw 13 / 4 = 3.25x and its projection was 136-156 s
#: (first triage, 13 processes) and 99-127 s (second, 12) short; with this value the two triages' projections
#: come 21 s short to 56 s long of the measured ends (replayed in
#: tests/unit/validation/finetune/test_triage.py: an in-sample check of one session). Used for both models;
#: on MiniLM-L6 only checked on a rough replay of its 2026-12-01 QNLI triage (24 processes; test_triage.py):
#: it moved the latest projected end of the 21 runs kept from 631 to 664 s, toward the measured 687 s. LoRA-type processes followed processor sharing within about 20 s. On
#: 2026-12-02 14:33 UTC (one H200, MPS) an MRPC AdaLoRA r = 2 wave put the knee nearer 5-6: 2.5-2.7 steps/s
#: a process among 12 processes, 4.87 among 6 (about 1.8-2.0x, where 8 allows 1.5x), and 5.9 at three a GPU
#: on two GPUs; its triages, replayed with the count history (:func:`shared_left`'s ``history``), put its
#: cells 92-125 s long at 8 and within 25 s at 6 (its selection run 65-75 s long at 8, 28 s short at 6; the
#: same test file). Kept at 8: one wave, and the error is on the long side. A step bench of N identical
#: MPNet-base processes (reports/gpu/mpnet_h200/pace_vs_procs/, one repetition) found AdaLoRA and GeoLoRA
#: still 1.14-1.24x faster at four than at eight (here: none, the long side) and LoRA as fast alone as
#: among four (10.5-11.9 steps/s a process at one to four processes, then halved at eight: about 42 steps/s
#: summed at four and at eight, batch 32 x 128 tokens). So the LoRA-type methods (LoRA, GeLoRA and its two
#: ablations) stop speeding up at four: without it, below four processes a GPU their projection erred short
#: (the unsafe side), more so with the history, which credits a pace measured among many. One bench at one
#: length: with longer steps (more GPU work each, e.g. QNLI's 256 tokens) the knee may be lower, MiniLM-L6's
#: smaller steps may put it higher (neither measured). Not monotone with the history: a process that ran with
#: fewer than four processes before its GPU got busier is credited with a slower early pace, so its
#: projection gets shorter than with plain sharing (test_triage.py); without history a saturation can only
#: lengthen a projection. Full fine-tuning and head only: none (not measured). None of the replays of
#: measured triages in the test file goes below four processes a GPU, so they neither test nor contradict
#: these four entries.
SATURATION: dict[str, float] = {
    "adalora": 8.0,
    "geolora": 8.0,
    "lora": 4.0,
    "gelora": 4.0,
    "gelora_permuted": 4.0,
    "gelora_reversed": 4.0,
}

_MARK, _STEPS = (
    re.compile(re.escape(m) + r" (\S+) pid (\d+) at ([0-9.]+)") for m in (TRAIN_MARK, STEPS_MARK)
)
_EPOCH = re.compile(r"'epoch': '?([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)")


@dataclass(frozen=True)
class Running:
    """One claimed cell or selection run, as :func:`running` found it.

    Attributes
    ----------
    name : str
        ``<task>__<method>__seed<k>`` (a cell) or ``<task>__<method>`` (a selection run).
    kind : str
        ``"cell"`` or ``"selection"``.
    claim : Path
        The claim file.
    pid : int
        The claiming process.
    host : str
        The host of that process.
    gpu : str or None
        The GPU of the claiming worker (its ``CUDA_VISIBLE_DEVICES``).
    token : str
        The claim's token (a later claim of the same run has another).
    elapsed_s : float
        Seconds since the claim was taken.
    epoch : float or None
        Last epoch the Trainer logged in this claim (None: none yet).
    planned_epochs : float
        Epochs of one Trainer run of the task.
    progress : float or None
        Share of this claim's training done, in (0, 1]; None when nothing was logged yet.
    left_s : float or None
        Projected seconds left (see the module docstring); None when unknown.
    note : str
        Why the projection is what it is, when that is not plain.
    startup_s : float or None
        Seconds from the claim to its first optimiser step, left out of the projection (None: the log has
        no :data:`validation.finetune.runner.STEPS_MARK` line for this claim yet).
    """

    name: str
    kind: str
    claim: Path
    pid: int
    host: str
    gpu: str | None
    token: str
    elapsed_s: float
    epoch: float | None
    planned_epochs: float
    progress: float | None
    left_s: float | None
    note: str = ""
    startup_s: float | None = None


@dataclass
class _TrainerRun:
    """The Trainer lines of one run in a log: its mark (None for lines before any mark) and its epochs."""

    name: str | None
    pid: int | None
    at: float | None
    epochs: list[float] = field(default_factory=list)
    finished: bool = False
    steps_at: float | None = None  # its STEPS_MARK: the first optimiser step


def _time(text: str) -> float | None:
    """A mark's unix time; None when it is no finite number (a garbled line: such a run is never a claim's)."""
    try:
        at = float(text)
    except ValueError:
        return None
    return at if math.isfinite(at) else None


def _trainer_runs(text: str) -> list[_TrainerRun]:
    """The runs of a log, in order: a new one at each mark (and, in a log without marks, after each
    ``train_runtime`` line). Only training-loss lines give epochs (evaluation lines repeat them)."""
    runs: list[_TrainerRun] = []
    for line in text.replace("\r", "\n").splitlines():
        mark = _MARK.search(line)
        if mark is not None:
            runs.append(_TrainerRun(mark.group(1), int(mark.group(2)), _time(mark.group(3))))
            continue
        steps = _STEPS.search(line)
        if steps is not None:
            if runs and runs[-1].name == steps.group(1) and runs[-1].pid == int(steps.group(2)):
                runs[-1].steps_at = _time(steps.group(3))
            continue
        if "'train_runtime'" in line:
            if not runs:
                runs.append(_TrainerRun(None, None, None))
            runs[-1].finished = True
            continue
        epoch = _EPOCH.search(line)
        if "'loss':" not in line or epoch is None:
            continue
        if not runs or (runs[-1].finished and runs[-1].name is None):
            runs.append(_TrainerRun(None, None, None))
        runs[-1].epochs.append(float(epoch.group(1)))
    return runs


def _read_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _this_claim(
    runs: list[_TrainerRun], run_name: str, pid: int, started: float
) -> tuple[list[_TrainerRun], bool]:
    """The runs named ``run_name`` that the claiming process started after the claim; ``(runs, marked)``
    where ``marked`` is False for a log without marks (then its last run, whatever its name)."""
    if not any(r.name is not None for r in runs):
        return runs[-1:], False
    mine = [
        r for r in runs if r.name == run_name and r.pid == pid and r.at is not None and r.at >= started - 1.0
    ]
    return mine, True


def _progress(runs: list[_TrainerRun], planned: float, n_runs: int) -> tuple[float | None, float | None]:
    """``(progress, last epoch)`` of ``runs`` out of ``n_runs`` Trainer runs of ``planned`` epochs each."""
    logged = [e for r in runs for e in r.epochs]
    if not logged and not any(r.finished for r in runs):
        return None, None
    first = runs[0].epochs[0] if runs[0].epochs else 0.0
    start = max(0.0, first - LOG_INTERVAL_SHARE * planned)  # a resumed run starts from its checkpoint
    done = -start
    for r in runs:
        done += planned if r.finished else (r.epochs[-1] if r.epochs else 0.0)
    total = (planned - start) + (n_runs - 1) * planned
    if total <= 0 or done <= 0:
        return None, logged[-1] if logged else None
    return min(1.0, done / total), logged[-1] if logged else planned


def _left(training: float, progress: float | None) -> float | None:
    if progress is None:
        return None
    return training * (1.0 - progress) / progress


def _startup(runs: list[_TrainerRun], started: float) -> float | None:
    """Seconds from the claim (``started``) to the first optimiser step of its first Trainer run."""
    if not runs or runs[0].steps_at is None:
        return None
    return max(0.0, runs[0].steps_at - started)


def planned_epochs(profile: dict[str, Any], task: str) -> float:
    """Epochs of one Trainer run of ``task`` under the plan's ``profile`` (``grid.json``): the task's
    ``task_overrides`` entry, else the profile's ``epochs``.

    Raises
    ------
    ResultFileError
        The profile has no ``epochs``.
    """
    eff = plan_task_settings(profile, task)
    if not isinstance(eff.get("epochs"), int | float):
        raise ResultFileError(f"the plan's profile has no number of epochs for {task}")
    return float(eff["epochs"])


def _claims(run_dir: Path) -> list[tuple[Path, str]]:
    out = []
    for folder, kind in (("claims", "cell"), ("lr_select", "selection")):
        for path in sorted((run_dir / folder).glob("*.claim")):
            stem = path.name[: -len(".claim")]
            try:
                seed = parse_run_name(stem)[2]
            except ConfigError:
                continue  # not a run's claim
            if (seed is None) == (kind == "selection"):
                out.append((path, kind))
    return out


def _claim_payload(path: Path) -> dict[str, Any] | None:
    """The claim's payload; None when it vanished (released since it was listed).

    Raises
    ------
    ConfigError
        The claim exists but is not a readable claim (no JSON object, no integer ``pid``, no ``started``).
    """
    payload = read_claim(path)
    if payload is None:
        if path.exists():
            raise ConfigError(f"unreadable claim {path} (not a JSON object)")
        return None
    if not isinstance(payload.get("pid"), int) or not isinstance(payload.get("started"), int | float):
        raise ConfigError(f"unreadable claim {path}: no integer 'pid' or numeric 'started'")
    return payload


def _scored_rates(run_dir: Path, task: str, method: str) -> int:
    from validation.finetune.lr_select import selection_path

    try:
        rec = read_json(selection_path(run_dir, task, method))
    except ResultFileError:
        return 0
    scores = rec.get("scores") if isinstance(rec, dict) else None
    return len(scores) if isinstance(scores, dict) else 0


def running(run_dir: str | Path, now: float | None = None) -> list[Running]:
    """Every cell and selection run of ``run_dir`` that a live process claims, with its projection.

    Parameters
    ----------
    run_dir : str or Path
        A grid run directory (``grid.json``, ``claims/``, ``lr_select/``, ``logs/``).
    now : float, optional
        Unix time to measure from (default: the current time).

    Returns
    -------
    list of Running
        Sorted by name. Stale claims (a dead owner, :func:`validation.finetune.claims.is_live`) are left
        out: nothing runs there.

    Raises
    ------
    ConfigError
        ``run_dir`` is not a directory, or a claim is unreadable.
    ResultFileError
        ``grid.json`` is missing or corrupt (:func:`validation.finetune.grid.read_plan`).
    """
    from validation.finetune.lr_select import selection_done

    root = Path(run_dir)
    if not root.is_dir():
        raise ConfigError(f"run directory {root} does not exist (or is not a directory)")
    now = time.time() if now is None else float(now)
    profile = read_plan(root)["profile"]
    found = []
    for path, kind in _claims(root):
        payload = _claim_payload(path)
        if payload is None or not is_live(path):
            continue
        found.append((path, kind, payload))
    cell_of_pid = {
        (str(p.get("host")), int(p["pid"])): path.name[: -len(".claim")]
        for path, kind, p in found
        if kind == "cell"
    }
    rows: list[Running] = []
    waiting: dict[str, str] = {}  # cell -> the selection run it ends with
    for path, kind, payload in found:
        name = path.name[: -len(".claim")]
        task, method, _ = parse_run_name(name)
        pid, started = int(payload["pid"]), float(payload["started"])
        eff = plan_task_settings(profile, task)
        planned = planned_epochs(profile, task)
        n_rates = len({float(f) for f in eff.get("lr_grid") or [1.0]})
        elapsed = max(0.0, now - started)
        notes = []
        if kind == "selection":
            host_cell = cell_of_pid.get((str(payload.get("host")), pid))
            log = root / "logs" / f"{host_cell or name + SELECTION_LOG_SUFFIX}.log"
            runs, marked = _this_claim(
                _trainer_runs(_read_tail(log)), f"{name}{SELECTION_LOG_SUFFIX}", pid, started
            )
            finished = sum(r.finished for r in runs) if marked else 0
            n_runs = max(1, n_rates - max(0, _scored_rates(root, task, method) - finished))
            progress, epoch = _progress(runs, planned, n_runs) if runs else (None, None)
            if host_cell:
                notes.append(f"in {host_cell}'s process")
            if n_runs > 1:
                notes.append(f"{n_runs} rates to train")
        else:
            log = root / "logs" / f"{name}.log"
            runs, marked = _this_claim(_trainer_runs(_read_tail(log)), name, pid, started)
            progress, epoch = _progress(runs, planned, 1) if runs else (None, None)
            if eff.get("lr_select") and not selection_done(root, task, method):
                if not runs and n_rates > 1:
                    notes.append(f"waits for its learning-rate selection {task}__{method}")
                elif runs and n_rates == 1 and runs[-1].finished:
                    waiting[name] = f"{task}__{method}"
                    progress = None
                    notes.append(f"trained; ends with its learning-rate selection {task}__{method}")
        startup = _startup(runs, started) if marked else None
        if startup is not None and startup >= elapsed:  # a steps line dated after `now` (clocks): unusable
            startup = None
        training = elapsed if startup is None else elapsed - startup
        if progress is None and not notes:
            notes.append("no epoch logged yet" if log.exists() else f"no log {log.relative_to(root)}")
        if not marked and progress is not None:
            notes.append("log without run marks: its last Trainer run")
        note = "; ".join(notes)
        rows.append(
            Running(
                name=name,
                kind=kind,
                claim=path,
                pid=pid,
                host=str(payload.get("host")),
                gpu=None if payload.get("gpu") is None else str(payload.get("gpu")),
                token=str(payload.get("token")),
                elapsed_s=elapsed,
                epoch=epoch,
                planned_epochs=planned,
                progress=progress,
                left_s=_left(training, progress),
                note=note,
                startup_s=startup,
            )
        )
    by_name = {r.name: r for r in rows}
    for i, row in enumerate(rows):
        sel = by_name.get(waiting.get(row.name, ""))
        if sel is not None:
            rows[i] = replace(row, left_s=sel.left_s, epoch=row.planned_epochs)
    return sorted(rows, key=lambda r: r.name)


def queued(run_dir: str | Path) -> list[str]:
    """The planned cells of ``run_dir`` that no process has started: no result, no failure record, no live
    claim, not held (nor their one-rate selection run held).

    While a wave's workers are alive, one that ends its run claims the next of these, so its share of the
    GPU does not come free (:func:`shared_left`'s ``queued``). Which launch a cell belongs to is not read:
    cells planned by a finished launch and never run count too, and a cell with a failure record is left
    out although a worker retries a failure older than its own launch (both err towards the linear
    projection or away from it by the cells concerned; stated in the ``queued:`` line's count).

    Returns
    -------
    list of str
        Cell names in the plan's order.

    Raises
    ------
    ResultFileError
        ``grid.json`` is missing or corrupt.
    """
    from validation.finetune.lr_select import selection_held

    root = Path(run_dir)
    plan = read_plan(root)
    profile = plan["profile"]
    out = []
    for c in plan["cells"]:
        t, m, s = str(c["task"]), str(c["method"]), int(c["seed"])
        if cell_path(root, t, m, s).exists() or failure_path(root, t, m, s).exists():
            continue
        if hold_path(root, t, m, s).exists():
            continue
        if plan_task_settings(profile, t).get("lr_select") and selection_held(root, t, m):
            continue
        claim = claim_path(root, t, m, s)
        if claim.exists() and is_live(claim):
            continue
        out.append(f"{t}__{m}__seed{s}")
    return out


def _check_deadline(deadline_s: float) -> float:
    if not (isinstance(deadline_s, int | float) and math.isfinite(deadline_s) and deadline_s >= 0):
        raise ConfigError(f"the deadline must be a finite number of seconds >= 0, got {deadline_s!r}")
    return float(deadline_s)


#: the picks of :func:`past_deadline` (``--by``)
PICKS = ("linear", "shared")


def verdict(row: Running, deadline_s: float) -> str:
    """``"fits"`` (projected to end within ``deadline_s`` seconds), ``"past deadline"`` or ``"unknown"``,
    by the linear projection (``left_s``; for the ``shared`` pick's verdicts see :func:`verdicts`)."""
    if row.left_s is None:
        return "unknown"
    return "fits" if row.left_s <= _check_deadline(deadline_s) else "past deadline"


@dataclass(frozen=True)
class _SharedPick:
    """The iterative pick by :func:`shared_left`: the processes stopped, and those of them stopped for their
    own end (the rest: with a picked selection run, or of unknown projection)."""

    stopped: frozenset[tuple[str, int]]
    late: frozenset[tuple[str, int]]


def _shared_pick(
    rows: Sequence[Running],
    deadline_s: float,
    beside: Sequence[Running],
    queues: Mapping[str | Path, int] | None,
    stop_unknown: bool,
    history: History | None = None,
) -> _SharedPick:
    """:func:`past_deadline`'s ``by="shared"`` pick (see there)."""
    procs = _processes(rows, ())
    stopped: set[tuple[str, int]] = set()
    late: set[tuple[str, int]] = set()

    def stop(first: tuple[str, int]) -> None:
        # the process leaves whole; a selection run in it takes its running cells (and their processes)
        pending = [first]
        while pending:
            key = pending.pop()
            if key in stopped:
                continue
            stopped.add(key)
            for sel in procs[key]:
                if sel.kind == "selection":
                    pending += [
                        (c.host, c.pid)
                        for c in rows
                        if c.kind == "cell" and _group(c.name) == _group(sel.name)
                    ]

    ends = shared_left(rows, beside, queues, history=history)
    if stop_unknown:
        for r in rows:
            if ends[r.name] is None:
                stop((r.host, r.pid))
    while True:
        ends = shared_left(rows, beside, queues, stopped=stopped, history=history)
        over = [r for r in rows if (r.host, r.pid) not in stopped and (ends[r.name] or 0.0) > deadline_s]
        if not over:
            return _SharedPick(frozenset(stopped), frozenset(late))
        worst = min(over, key=lambda r: (-(ends[r.name] or 0.0), r.name))
        late.add((worst.host, worst.pid))
        stop((worst.host, worst.pid))


def _check_pick(by: str) -> str:
    if by not in PICKS:
        raise ConfigError(f"the pick must be one of {', '.join(PICKS)}, got {by!r}")
    return by


def past_deadline(
    rows: Sequence[Running],
    deadline_s: float,
    *,
    stop_unknown: bool = False,
    by: str = "linear",
    beside: Sequence[Running] = (),
    queues: Mapping[str | Path, int] | None = None,
    history: History | None = None,
) -> list[Running]:
    """The runs of ``rows`` to stop so that the others end within ``deadline_s`` seconds from now.

    Parameters
    ----------
    rows : sequence of Running
        From :func:`running`.
    deadline_s : float
        Seconds from now (>= 0).
    stop_unknown : bool
        Also pick the runs without a projection (by default they are kept: nothing says they will not fit).
    by : {"linear", "shared"}
        ``"linear"``: every run whose ``left_s`` is past the deadline. ``"shared"``: by :func:`shared_left`
        (with ``beside`` and ``queues``), iteratively: while a run left is projected past the deadline, the
        process of the run projected to end latest (ties: the first name) is stopped, every run of it
        picked, and the ends are projected again with the processes picked so far leaving now (``stopped``);
        with ``stop_unknown``, the processes of unknown projection are picked first.
    beside, queues, history : optional
        As :func:`shared_left`'s; used by ``by="shared"`` only.

    Returns
    -------
    list of Running
        The picked runs in the order of ``rows``; with a picked selection run, every running cell of its
        task and method too (a cell cannot write its result without its selection: stopping the selection
        alone would waste the cells' time, keeping them would waste the GPU's). By ``"shared"``, also every
        other run of a picked run's process (it stops whole).

    Raises
    ------
    ConfigError
        ``deadline_s`` is negative or not finite, or ``by`` is no pick.
    """
    return _decide(rows, deadline_s, by, stop_unknown, beside, queues, history)[0]


def verdicts(
    rows: Sequence[Running],
    deadline_s: float,
    *,
    by: str = "linear",
    stop_unknown: bool = False,
    beside: Sequence[Running] = (),
    queues: Mapping[str | Path, int] | None = None,
    history: History | None = None,
) -> dict[str, str]:
    """``{name: verdict}`` by the pick ``by`` (:func:`past_deadline`'s parameters).

    ``"linear"``: :func:`verdict`. ``"shared"``: ``"unknown"`` without a :func:`shared_left` projection,
    ``"past deadline"`` for the runs of a process the pick stops for its own end, ``"fits"`` for the runs
    left (they end by the deadline once the picked ones are stopped); a run whose process is stopped only
    with a picked selection run (or as of unknown projection) is judged by its own end, projected with the
    other picked processes stopped and its own kept.
    """
    return _decide(rows, deadline_s, by, stop_unknown, beside, queues, history)[1]


def _decide(
    rows: Sequence[Running],
    deadline_s: float,
    by: str,
    stop_unknown: bool,
    beside: Sequence[Running],
    queues: Mapping[str | Path, int] | None,
    history: History | None = None,
) -> tuple[list[Running], dict[str, str]]:
    """:func:`past_deadline`'s runs and :func:`verdicts`' verdicts from one pick (the shared pick simulates
    the GPU's sharing once per stop: a triage makes it once)."""
    deadline_s = _check_deadline(deadline_s)
    if _check_pick(by) == "linear":
        said = {r.name: verdict(r, deadline_s) for r in rows}
        keep = {"past deadline", "unknown"} if stop_unknown else {"past deadline"}
        picked = {r.name for r in rows if said[r.name] in keep}
        # a cell writes its result only once its learning-rate selection has (one-rate grids run both side by
        # side): when a selection run is picked, its running cells go with it, whatever their own projection
        doomed = {_group(r.name) for r in rows if r.kind == "selection" and r.name in picked}
        runs = [r for r in rows if r.name in picked or (r.kind == "cell" and _group(r.name) in doomed)]
        return runs, said
    pick = _shared_pick(rows, deadline_s, beside, queues, stop_unknown, history)
    first = shared_left(rows, beside, queues, history=history)
    out = {}
    for r in rows:
        key = (r.host, r.pid)
        if first[r.name] is None:
            out[r.name] = "unknown"
        elif key in pick.late:
            out[r.name] = "past deadline"
        elif key in pick.stopped:
            own = shared_left(rows, beside, queues, stopped=pick.stopped - {key}, history=history)[r.name]
            out[r.name] = "unknown" if own is None else ("fits" if own <= deadline_s else "past deadline")
        else:
            out[r.name] = "fits"
    return [r for r in rows if (r.host, r.pid) in pick.stopped], out


def run_dir_of(row: Running) -> Path:
    """The run directory of a listed run (its claim lies in ``claims/`` or ``lr_select/`` of it), resolved."""
    return row.claim.parent.parent.resolve()


class Span(NamedTuple):
    """The time a process ran on a GPU, in seconds relative to now (negative: before now)."""

    pid: int
    start_s: float
    end_s: float


#: :func:`shared_left`'s ``history``: ``(host, gpu)`` -> the spans of the processes that ran there and ended
History = Mapping[tuple[str, str | None], Sequence[Span]]


def _processes(rows: Sequence[Running], beside: Sequence[Running]) -> dict[tuple[str, int], list[Running]]:
    """The runs of each process ``(host, pid)``, of ``rows`` and ``beside``."""
    procs: dict[tuple[str, int], list[Running]] = {}
    for r in [*rows, *beside]:
        procs.setdefault((r.host, r.pid), []).append(r)
    return procs


def _gpu(runs: Sequence[Running]) -> str | None:
    """One process, one GPU: its first recorded GPU (a claim written without one does not split it)."""
    return next((x.gpu for x in runs if x.gpu is not None), None)


def _saturation(runs: Sequence[Running], saturation: Mapping[str, float]) -> float:
    """The process's saturation count: the largest of its runs' methods (0: none)."""
    return max((float(saturation.get(_group(x.name)[1], 0.0)) for x in runs), default=0.0)


def _training_start(row: Running) -> float:
    """Seconds relative to now of the run's first optimiser step in this claim (without one: the claim)."""
    return -max(0.0, row.elapsed_s - (row.startup_s or 0.0))


def _union(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans merged where they overlap (one process counts once), in time order."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _harmonic_count(events: Sequence[tuple[float, int]], since: float, sat: float) -> float:
    """``T / integral_{since}^{0} dt / max(m(t), sat, 1)`` (``T = -since > 0``), ``m(t)`` the running sum of
    ``events`` (time, +1 or -1) up to ``t``."""
    m, t, inverse = 0, since, 0.0
    for at, step in sorted(events):
        if at > t:
            end = min(at, 0.0)
            inverse += (end - t) / max(m, sat, 1.0)
            t = end
        m += step
    inverse += (0.0 - t) / max(m, sat, 1.0)
    return -since / inverse


def _measured_counts(
    procs: Mapping[tuple[str, int], Sequence[Running]],
    history: History,
    sat_of: Mapping[tuple[str, int], float],
) -> dict[tuple[str, int], float]:
    """The count each process's present pace was measured at (:func:`shared_left`'s ``H``), for the
    processes on a GPU of ``history``."""
    out: dict[tuple[str, int], float] = {}
    for gpu, ended in history.items():
        members = [key for key, runs in procs.items() if (key[0], _gpu(runs)) == gpu]
        spans: dict[int, list[tuple[float, float]]] = {}
        for key in members:
            spans.setdefault(key[1], []).append((min(_training_start(r) for r in procs[key]), 0.0))
        for span in ended:
            start, end = float(span.start_s), float(span.end_s)
            if not (math.isfinite(start) and math.isfinite(end)):
                continue
            end = min(0.0, end)
            if start < end:
                spans.setdefault(int(span.pid), []).append((start, end))
        events = [(t, step) for pid in spans for a, b in _union(spans[pid]) for t, step in ((a, 1), (b, -1))]
        for key in members:
            known = [r for r in procs[key] if r.left_s is not None and math.isfinite(r.left_s)]
            if not known:
                continue
            since = _training_start(max(known, key=lambda r: r.left_s or 0.0))
            if since < 0.0:
                h = _harmonic_count(events, since, sat_of[key])
                if math.isfinite(h) and h >= 1.0:
                    out[key] = h
    return out


def _log_run(stem: str) -> str | None:
    """The run a log ``logs/<stem>.log`` is of (a cell, or a selection run for ``<task>__<method>__lr_select``);
    None for other logs (``worker-*``)."""
    try:
        name = canonical_run_name(stem)
    except ConfigError:
        return None
    return name if (name != stem) == (parse_run_name(name)[2] is None) else None


def _ended_spans(
    run_dir: Path, live: Collection[str], now: float, since: float, booted: float | None = None
) -> list[Span]:
    """The processes of ``run_dir``'s logs of runs not in ``live`` that ended after ``since`` (unix times):
    from the first mark of the log's last process (its steps line, else its train line) to the log's
    modification time (one up to :data:`CLOCK_SLACK_S` after ``now`` counts as ending now). A span that
    starts before ``booted`` (the host's boot) was not run on this host: a log copied or unpacked here, whose
    modification time is that of the copy; it is left out."""
    out = []
    for path in sorted((run_dir / "logs").glob("*.log")):
        name = _log_run(path.name[: -len(".log")])
        if name is None or name in live:
            continue
        try:
            end = path.stat().st_mtime
        except OSError:
            continue
        if now < end <= now + CLOCK_SLACK_S:  # it ended while the runs were being listed
            end = now
        if not since < end <= now:  # long over, or written well after now (clocks)
            continue
        runs = _trainer_runs(_read_tail(path))
        pid = runs[-1].pid if runs else None
        if pid is None:  # a log without marks: no process to count
            continue
        # the process's runs in a row (a cell, then its one-rate selection; a selection's rates)
        first = len(runs) - 1
        while first > 0 and runs[first - 1].pid == pid:
            first -= 1
        start = runs[first].steps_at if runs[first].steps_at is not None else runs[first].at
        if start is not None and start < end and (booted is None or start >= booted):
            out.append(Span(pid, start - now, end - now))
    return out


def boot_time(stat: str | Path = "/proc/stat", init: str | Path | None = "/proc/1/stat") -> float | None:
    """When this machine (or container) started, as a unix time: the kernel's boot (Linux: ``btime`` of
    ``/proc/stat``), moved on by the start of process 1 (``init``'s 22nd field, clock ticks after the boot:
    in a container, the container's start, where ``btime`` is the node's); None where the boot cannot be
    read (the start of process 1 is then not used either)."""
    try:
        booted = next(
            float(line.split()[1])
            for line in Path(stat).read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    if init is None:
        return booted
    try:
        # the fields after the command name, which is in parentheses and may hold spaces
        fields = Path(init).read_text().rsplit(")", 1)[1].split()
        return booted + float(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return booted


def host_gpu_count() -> int | None:
    """The number of GPUs of this host: ``GELORA_TRIAGE_GPUS`` when set (not empty), else the ``GPU`` lines of
    ``nvidia-smi -L``; None where neither gives one (no GPU tools) and where a GPU is split into MIG devices
    (each of which a worker may be pinned to)."""
    env = os.environ.get("GELORA_TRIAGE_GPUS", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or any(line.lstrip().startswith("MIG ") for line in done.stdout.splitlines()):
        return None
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def gpu_history(
    rows: Sequence[Running],
    beside: Sequence[Running] = (),
    run_dirs: Sequence[str | Path] = (),
    now: float | None = None,
    one_gpu_hosts: Collection[str] | None = None,
    booted: float | None = None,
) -> dict[tuple[str, str | None], list[Span]]:
    """The processes that ran on the GPUs of ``rows`` and ``beside`` and have ended, for :func:`shared_left`'s
    ``history``.

    Read from the logs (``logs/*.log``, not ``worker-*.log`` nor compressed ones) of the run directories of
    ``rows`` and ``beside`` and of ``run_dirs`` (directories whose runs have all ended: ``--beside``): a log
    of a run that no live process claims gives the span of its last process, from that process's first
    mark in the log (its steps line, else its train line) to the log's modification time (one up to
    :data:`CLOCK_SLACK_S` after ``now`` counts as ending now), and the pid of the mark. Logs written later
    than that, before the earliest live process's first step, or whose last run has no readable mark are
    left out; a log of a live run is not read (the live process counts from its
    own first step; an earlier attempt of that run, stopped and resumed, is not seen).

    A log does not say which GPU or host its process used: the spans of a directory are given to the one
    host of its live runs (a directory without live runs: to the one host of all), and only a host whose
    live processes all share one GPU gets an entry (for that GPU, possibly with no span); on a host whose
    processes are spread over several GPUs (or where a directory's host is ambiguous) no history is used
    and :func:`shared_left` takes the present counts. Live processes sharing one GPU do not show that the
    host has one (on a two-GPU host near a wave's end, the other GPU's processes may all have ended, and
    their logs would be counted on this GPU): with ``one_gpu_hosts``, only those hosts get an entry (the
    command passes this host when :func:`host_gpu_count` says 1, else none).

    Parameters
    ----------
    rows, beside : sequence of Running
        From :func:`running` (of one directory and of the others).
    run_dirs : sequence of str or Path
        More run directories to read.
    now : float, optional
        The unix time the rows were listed at (default: the current time); spans are relative to it.
    one_gpu_hosts : collection of str, optional
        The hosts known to have one GPU; None: every host whose live processes share one GPU.
    booted : float, optional
        The host's boot (unix time, :func:`boot_time`): spans starting before it are left out (logs copied or
        unpacked here keep their old marks but get a new modification time).

    Returns
    -------
    dict
        ``{(host, gpu): [Span, ...]}`` (seconds relative to ``now``).
    """
    now = time.time() if now is None else float(now)
    live = [*rows, *beside]
    gpus: dict[str, set[str | None]] = {}
    since: dict[str, float] = {}  # the earliest first step of a live process of each host (unix time)
    for (host, _pid), runs in _processes(rows, beside).items():
        gpus.setdefault(host, set()).add(_gpu(runs))
        since[host] = min(since.get(host, math.inf), now + min(_training_start(r) for r in runs))
    hosts_of: dict[Path, set[str]] = {}
    names_of: dict[Path, set[str]] = {}  # the live runs of each directory: their logs are not read
    for r in live:
        where = run_dir_of(r)
        hosts_of.setdefault(where, set()).add(r.host)
        names_of.setdefault(where, set()).add(r.name)
    for d in run_dirs:
        hosts_of.setdefault(Path(d).resolve(), set())
    ended: dict[str, list[Span]] = {host: [] for host in gpus}
    unsure: set[str] = set()
    for d, hosts in hosts_of.items():
        hosts = hosts or set(gpus)
        if not hosts:
            continue
        spans = _ended_spans(d, names_of.get(d, set()), now, min(since[h] for h in hosts), booted)
        if len(hosts) == 1:
            ended[next(iter(hosts))] += spans
        elif spans:
            unsure |= hosts
    return {
        (host, next(iter(on))): ended[host]
        for host, on in gpus.items()
        if len(on) == 1 and host not in unsure and (one_gpu_hosts is None or host in one_gpu_hosts)
    }


def shared_left(
    rows: Sequence[Running],
    beside: Sequence[Running] = (),
    queues: Mapping[str | Path, int] | None = None,
    stopped: Collection[tuple[str, int]] = (),
    saturation: Mapping[str, float] | None = None,
    history: History | None = None,
) -> dict[str, float | None]:
    """Seconds left of each run if each GPU's throughput stays constant and is shared equally by the
    processes on it (processor sharing): when a process ends, the others speed up.

    The linear projection (``left_s``) assumes every run keeps its present pace; at six or more MPNet-base
    processes a GPU the pace was measured to scale with the number of processes (2026-11-30: 80 s an epoch
    among 18 processes, 54-57 s among 12), so a run beside shorter ones ends earlier than ``left_s`` says.
    Per GPU (a host and its ``gpu``) with ``m`` processes now (every distinct claiming pid of the host counts,
    on the first GPU its claims record; one with a run of unknown projection as never ending), a process
    with projected ``L`` seconds left has ``w = L / m`` seconds of the GPU's whole throughput left, and while
    ``a`` processes occupy the GPU each gets ``1 / a`` of it (its pace taken as measured at ``m``; ``history``
    below: at the count it was measured at). Every run of a process gets its process's time
    (the latest of its runs). The ends are simulated in time order over all GPUs:

    * ``queues`` (run directory -> number of its cells no process has started, :func:`queued`): when a
      process of such a directory ends, its worker claims one of them, so its slot stays occupied (the new
      run as never ending: it is not projected) and the directory's count drops by one; the first ones to
      end take them. On 2026-12-01, with 12 cells queued behind 12 running, the column without this was
      7-184 s short, the linear projection within 26 s;
    * ``stopped`` (``(host, pid)``): processes that :func:`stop_runs` has just signalled; their share was in
      the measured paces, and they leave now without taking a queued cell (a stopped worker exits);
    * ``saturation`` (method -> number of processes; default :data:`SATURATION`): a process of such a method
      stops speeding up once its GPU holds that many processes or fewer (of a process with runs of several
      methods, the largest ``s``; ``s = 0`` for the others). Processor sharing held for LoRA-type
      processes down to about four a GPU and not for AdaLoRA and GeoLoRA, whose pace stops rising well before
      they have the GPU to themselves (:data:`SATURATION` says what was measured). The share a saturated
      process leaves unused is not given to the others, so their projections err long, on the safe side;
    * ``history`` (:func:`gpu_history`; ``(host, gpu)`` -> the :class:`Span` of each process that ran on
      that GPU and has ended, seconds relative to now): the count at which each process's present pace was
      measured. A process's pace at ``m`` processes is taken as ``C / max(m, s)``; its linear projection
      (``left_s``) extrapolates its average pace over its training so far (``[t0, now]``, ``T = now - t0``,
      ``t0`` its first optimiser step or, without one, its claim: ``elapsed_s - startup_s`` seconds ago),
      which is ``C / H`` with the harmonic mean ``H = T / integral_{t0}^{now} dt / max(m(t), s)``; at
      ``m`` processes it then runs ``r = H / max(m, s)`` times its projected pace. ``m(t)`` counts the
      live processes of that GPU (``rows`` and ``beside``, each from the earliest ``t0`` of its runs) and
      the spans of ``history[gpu]``, one count per pid however its spans overlap (a worker that ended one
      run and went on to the next is one process). ``r`` is not floored at 1: a process whose GPU got more
      crowded since it started (a wave launched beside it) has ``H < m_now`` and is projected to run slower
      than its average until the GPU empties again, which is what processor sharing says. Of a process
      with several runs, ``T`` is that of the run with the longest projection (the one its end is); a
      process with no training yet (``T = 0``) takes the present count. A GPU
      absent from ``history`` (and every GPU when it is None) takes the present count for every process,
      ``H = max(m_now, s)``: ``r = max(m_now, s) / max(m, s)``, the same as ``max(1, m_now / max(m, s))``
      for every ``m <= m_now`` (the simulation's counts never rise). Why: on 2026-12-02 (one H200, MPS), a
      triage of an MRPC AdaLoRA wave 64 s after a QNLI wave beside it began to end took the present pace as
      measured among the 7 processes left, foresaw no speed-up (7 <= 8) and projected 688-690 s for its
      five cells, whose paces were measured among 12 for 572 of their 636 s; they ended 362-374 s later. With the
      history the projection is 465-466 s (the rest of the error is :data:`SATURATION`'s; replayed in
      tests/unit/validation/finetune/test_triage.py). Not seen: processes that never wrote a log of their
      own in the directories read, and the loading time before a process's first step (it is not counted):
      in the same replay the QNLI wave's own triage (14:45:39) came 19-36 s long with the history (12 s short
      to 1 s long without), its first 54 s, among six processes while the MRPC wave's six were loading beside
      it, having run less than twice its later pace.

    The ``--by shared`` pick uses it (:func:`past_deadline` with ``by="shared"``); the default pick
    (``--by linear``) uses ``left_s`` and only shows this. ``beside``: the runs of other run
    directories on the same machine (``--beside``; ``waves.sh triage`` passes every other directory under
    ``runs/``): they share the GPUs and end by the same rule, but get no entry. Not seen: processes of
    directories not given (they make this projection too short), when the runs a worker will start end,
    and processes that hold a claim without computing (a trained cell waiting for its selection run counts
    as sharing: the others' projections come out too long).

    Returns
    -------
    dict
        ``{name: seconds}``, None for the runs without a projection (and for the ``stopped`` ones' runs: 0).
    """
    procs = _processes(rows, beside)
    mine = {id(r) for r in rows}
    out: dict[str, float | None] = {r.name: None for r in rows}
    queue = {Path(k).resolve(): int(v) for k, v in (queues or {}).items() if int(v) > 0}
    leaving = {(str(h), int(p)) for h, p in stopped}
    slots: dict[tuple[str, str | None], int] = {}
    saturation = SATURATION if saturation is None else saturation
    for method, n in saturation.items():
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n >= 1):
            raise ConfigError(
                f"saturation of {method!r} must be a finite number of processes >= 1, got {n!r}"
            )
    sat_of = {key: _saturation(runs, saturation) for key, runs in procs.items()}
    try:
        measured = _measured_counts(procs, history or {}, sat_of)
    except Exception as exc:  # noqa: BLE001 - the history must never keep a triage from deciding
        print(f"note: the GPUs' process history left out: {type(exc).__name__}: {exc}", file=sys.stderr)
        measured = {}
    # per process: [seconds left at its present pace, its GPU, its runs, its directory, whether it takes a
    # queued cell, its saturation (0: none), the count its present pace was measured at (None: now's)]
    active: list[list[Any]] = []
    for (host, pid), runs in procs.items():
        gpu = _gpu(runs)
        slots[(host, gpu)] = slots.get((host, gpu), 0) + 1
        # a projection that is not a finite number counts as unknown; a negative one (clocks) as 0
        lefts = [
            None if x is None or not math.isfinite(x) else max(0.0, float(x))
            for x in (r.left_s for r in runs)
        ]
        left = None if any(x is None for x in lefts) else max(x for x in lefts if x is not None)
        if (host, pid) in leaving:
            left = 0.0
        if left is not None:
            sat = sat_of[(host, pid)]
            where = run_dir_of(runs[0])
            active.append(
                [left, (host, gpu), runs, where, (host, pid) not in leaving, sat, measured.get((host, pid))]
            )
    start = dict(slots)  # each GPU's process count now
    for p in active:
        if p[6] is None:  # no history: the present pace was measured at the present count
            p[6] = max(start[p[1]], p[5])
    now = 0.0
    while active:
        # each process's pace relative to its projected one: H / max(m, s) (see the docstring)
        rates = [p[6] / max(slots[p[1]], p[5]) for p in active]
        dt = min(p[0] / r for p, r in zip(active, rates, strict=True))
        for p, r in zip(active, rates, strict=True):
            p[0] -= r * dt
        now += dt
        eps = 1e-9 * (1.0 + abs(now))
        ended = [p for p in active if p[0] <= eps]
        active = [p for p in active if p[0] > eps]
        for _, gpu, runs, where, refills, _sat, _h in sorted(ended, key=lambda p: (str(p[1]), str(p[3]))):
            if refills and queue.get(where, 0) > 0:
                queue[where] -= 1  # its worker claims a queued cell: the slot stays occupied
            else:
                slots[gpu] -= 1
            for x in runs:
                if id(x) in mine:
                    out[x.name] = now
    return out


def _group(name: str) -> tuple[str, str]:
    """``(task, method)`` of a cell or selection-run name."""
    task, method, _ = parse_run_name(name)
    return task, method


def stop_runs(
    run_dir: str | Path,
    rows: Sequence[Running],
    reason: str = "triage",
    *,
    hold: bool = True,
    signalled_out: set[tuple[str, int]] | None = None,
) -> list[str]:
    """Hold each run of ``rows`` (unless ``hold`` is False: ``waves.sh stop``), then send SIGTERM to the
    process of its claim (once per process).

    A process is signalled only when its claim is on this host and still carries the token it had when it
    was listed (a claim released meanwhile means that process may have moved on to another run). The
    hold comes first, so a worker that ends its run meanwhile does not start it again.

    Returns
    -------
    list of str
        One line per hold and per signal (or why a process was not signalled); ``signalled_out``, when
        given, receives the ``(host, pid)`` of every process signalled.
    """
    lines = []
    for row in rows if hold else ():
        try:
            hold_cell(run_dir, row.name, reason=reason)
        except OSError as exc:  # a full disk must not keep the signals from going out
            lines.append(
                f"hold failed {row.name}: {exc} (signalled all the same; its worker may start it again)"
            )
            continue
        lines.append(f"held {row.name}")
    here = socket.gethostname()
    signalled: set[int] = set()
    for row in rows:
        if row.pid in signalled:
            lines.append(f"stopped {row.name}: the same process (pid {row.pid})")
            continue
        payload = read_claim(row.claim)
        if row.host != here:
            lines.append(f"not signalled {row.name}: its claim is of host {row.host}, this is {here}")
        elif payload is None or payload.get("token") != row.token:
            lines.append(f"not signalled {row.name}: its claim was released meanwhile (finished or stopped)")
        elif owner_gone(payload):
            # the claim's owner died and its pid was reused (or it is a zombie): never signal a stranger
            lines.append(f"not signalled {row.name}: its owner (pid {row.pid}) is gone")
        else:
            try:
                os.kill(row.pid, signal.SIGTERM)
            except ProcessLookupError:
                lines.append(f"not signalled {row.name}: pid {row.pid} is gone")
                continue
            except PermissionError as exc:
                lines.append(f"not signalled {row.name}: pid {row.pid}: {exc}")
                continue
            signalled.add(row.pid)
            if signalled_out is not None:
                signalled_out.add((row.host, row.pid))
            stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
            lines.append(f"stopped {row.name}: SIGTERM to pid {row.pid} at {stamp}")
    return lines


def _queued_or_note(run_dir: str | Path) -> list[str]:
    """:func:`queued`, or none with a note on stderr when it cannot be read: the queue is informational and
    must never keep ``--apply`` from stopping what is past the deadline."""
    try:
        return queued(run_dir)
    except Exception as exc:  # noqa: BLE001 - informational only
        print(f"note: the queue of {run_dir} left out: {type(exc).__name__}: {exc}", file=sys.stderr)
        return []


def _history_or_note(
    rows: Sequence[Running], beside: Sequence[Running], run_dirs: Sequence[str | Path], now: float
) -> History | None:
    """:func:`gpu_history` with a line on what it found, or None with a note on stderr when it cannot be read
    (informational: it must never keep ``--apply`` from stopping what is past the deadline)."""
    try:
        gpus = host_gpu_count()
        one_gpu = {socket.gethostname()} if gpus == 1 else set()
        history = gpu_history(rows, beside, run_dirs, now, one_gpu_hosts=one_gpu, booted=boot_time())
    except Exception as exc:  # noqa: BLE001 - informational only
        print(f"note: the GPUs' process history left out: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    if history:
        ended = sum(len(v) for v in history.values())
        print(
            f"'shared' column: each pace taken at the process count it was measured at (its average since its "
            f"first step, {ended} ended process span(s) read from the logs)"
        )
    else:
        print(
            "'shared' column: each pace taken at the present count (GPUs of this host: "
            f"{'unknown' if gpus is None else gpus}; history only on one GPU, with every process on it)"
        )
    return history


def _seconds(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f}s"


def format_table(
    rows: Sequence[Running],
    deadline_s: float,
    beside: Sequence[Running] = (),
    queues: Mapping[str | Path, int] | None = None,
    *,
    by: str = "linear",
    stop_unknown: bool = False,
    said: Mapping[str, str] | None = None,
    history: History | None = None,
) -> str:
    """The triage table: name, gpu, elapsed, startup (left out of the projection), epoch/planned, projected
    left, the processor-sharing projection (each method saturating at :data:`SATURATION`;
    :func:`shared_left` with the runs ``beside``, the ``queues`` of each directory and the ``history``,
    before any stop), verdict by the pick ``by`` (:func:`verdicts`; its header says
    ``verdict (shared pick)`` for the ``shared`` pick; ``said``: those verdicts when already made) and a
    note."""
    shared = shared_left(rows, beside, queues, history=history)
    if said is None:
        said = verdicts(
            rows, deadline_s, by=by, stop_unknown=stop_unknown, beside=beside, queues=queues, history=history
        )
    last = "verdict" if by == "linear" else f"verdict ({by} pick)"
    header = ("name", "gpu", "elapsed", "startup", "epoch/planned", "left", "shared", last)
    body = [
        (
            r.name,
            r.gpu or "-",
            _seconds(r.elapsed_s),
            _seconds(r.startup_s),
            f"{'-' if r.epoch is None else f'{r.epoch:g}'}/{r.planned_epochs:g}",
            _seconds(r.left_s),
            _seconds(shared[r.name]),
            said[r.name] + (f" ({r.note})" if r.note else ""),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in [header, *body]
    )


def missing_data(tasks: Sequence[str], data_dir: str | Path | None = None) -> dict[str, str]:
    """The tasks whose local files are missing under the data root, with the loader's message.

    The same resolution as the loaders (:func:`validation.data.splits.glue_files`,
    :func:`validation.data.splits.squad_files`); a name that is no task is reported too. The hub is not
    asked: the preflight is for an offline GPU host.

    Parameters
    ----------
    tasks : sequence of str
        Task names as ``gelora validate glue --tasks`` takes them.
    data_dir : str or Path, optional
        The data root (default :func:`validation.data.default_data_dir`: ``GELORA_DATA_DIR``).

    Returns
    -------
    dict
        ``{task: message}``; empty when every task has its files.

    Raises
    ------
    ConfigError
        No data root (``GELORA_DATA_DIR`` not a directory, or ``data_dir`` not one).
    """
    from validation.data import default_data_dir
    from validation.data.splits import glue_files, squad_files
    from validation.finetune.tasks import QA_TASKS, task_family

    root = default_data_dir() if data_dir is None else Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a directory")
    out: dict[str, str] = {}
    for task in tasks:
        try:
            name = task_family(task).canonical(task)
            if name in QA_TASKS:
                squad_files(QA_TASKS[name], root)
            else:
                glue_files(name, root)
        except ConfigError as exc:
            out[task] = str(exc)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m validation.finetune.triage",
        description="Project the running cells of a run directory against a deadline and stop those that "
        "will not make it (--apply); or check that the data root has every file of some tasks "
        "(--check-data --tasks).",
    )
    p.add_argument("run_dir", nargs="?", help="the run directory (waves.sh: $RUN)")
    p.add_argument("--deadline", default=None, help="seconds from now by which the runs must end")
    p.add_argument("--apply", action="store_true", help="hold and SIGTERM each run past the deadline")
    p.add_argument(
        "--by",
        choices=PICKS,
        default=None,
        help="the projection that picks: 'linear' (default: each run at its present pace, all past the "
        "deadline at once) or 'shared' (processor sharing, each method saturating at its SATURATION "
        "processes, iteratively: the latest-ending process until "
        "the rest end by the deadline)",
    )
    p.add_argument(
        "--stop-unknown", action="store_true", help="with --apply: also stop runs without projection"
    )
    p.add_argument(
        "--stop",
        nargs="+",
        metavar="NAME",
        default=None,
        help="only send SIGTERM to the processes claiming these cells / selection runs (no hold)",
    )
    p.add_argument(
        "--stop-all",
        action="store_true",
        help="send SIGTERM to the process of every live claim of RUN (cells and selection runs; no hold), "
        "e.g. before packing their checkpoints (validation.finetune.ckpt_carry)",
    )
    p.add_argument(
        "--beside",
        nargs="*",
        default=[],
        metavar="DIR",
        help="other run directories whose processes share the GPUs (for the 'shared' column only)",
    )
    p.add_argument("--check-data", action="store_true", help="only check the data files of --tasks")
    p.add_argument("--tasks", default=None, help="with --check-data: comma-separated task names")
    p.add_argument("--data-dir", default=None, help="with --check-data: data root (default $GELORA_DATA_DIR)")
    a = p.parse_args(argv)
    try:
        if a.by is not None and (a.check_data or a.stop is not None or a.stop_all):
            raise ConfigError(
                "--by chooses the runs to stop against a --deadline: not with --check-data, --stop or --stop-all"
            )
        a.by = a.by or "linear"
        if a.check_data:
            tasks = [t.strip() for t in (a.tasks or "").split(",") if t.strip()]
            if not tasks:
                raise ConfigError("--check-data needs --tasks TASK[,TASK...]")
            missing = missing_data(tasks, a.data_dir)
            for task, msg in missing.items():
                print(f"{task}: {msg}", file=sys.stderr)
            if missing:
                print(f"error: no data for {', '.join(missing)}: nothing launched", file=sys.stderr)
                return 2
            print(f"data: every file of {', '.join(tasks)} found")
            return 0
        if a.stop is not None or a.stop_all:
            if a.run_dir is None or (a.stop is not None and a.stop_all):
                raise ConfigError(
                    "usage: python -m validation.finetune.triage RUN --stop NAME [NAME...] | --stop-all"
                )
            claimed = {r.name: r for r in running(a.run_dir)}
            if a.stop_all and not claimed:
                print(f"no claim of a live process in {a.run_dir}: nothing to stop", file=sys.stderr)
            names, bad = [], []
            for given in list(claimed) if a.stop_all else a.stop:
                try:
                    names.append(canonical_run_name(given))
                except ConfigError as exc:
                    bad.append(given)
                    print(f"error: {exc}", file=sys.stderr)
            for name in dict.fromkeys(names):
                if name not in claimed:
                    print(f"{name}: no claim of a live process in {a.run_dir} (not running)", file=sys.stderr)
            for line in stop_runs(
                a.run_dir, [claimed[n] for n in dict.fromkeys(names) if n in claimed], hold=False
            ):
                print(line)
            return 2 if bad else 0
        if a.run_dir is None or a.deadline is None:
            raise ConfigError(
                "usage: python -m validation.finetune.triage RUN --deadline SECONDS [--by linear|shared] [--apply]"
            )
        try:
            seconds = float(a.deadline)
        except ValueError:
            raise ConfigError(f"--deadline must be a number of seconds, got {a.deadline!r}") from None
        deadline = _check_deadline(seconds)
        now = time.time()
        rows = running(a.run_dir, now=now)
        waiting = _queued_or_note(a.run_dir) if rows else []
        queues: dict[str | Path, int] = {a.run_dir: len(waiting)}
        beside: list[Running] = []
        used: list[str] = []
        for d in a.beside:
            if Path(d).resolve() == Path(a.run_dir).resolve():
                continue
            try:
                theirs = running(d, now=now)
            except Exception as exc:  # noqa: BLE001 - informational only: never keep --apply from running
                print(f"note: --beside {d} left out: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            queues[d] = len(_queued_or_note(d)) if theirs else 0
            beside += theirs
            if theirs:  # named in the header only where a run is live (every one is read for the history)
                used.append(d)
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        print(f"triage of {a.run_dir} at {stamp} UTC: deadline in {deadline:g} s, {len(rows)} running")
        if beside:
            waiting_beside = sum(queues.get(d, 0) for d in used)
            print(
                f"sharing the GPUs (for the 'shared' column): {len(beside)} run(s) of {' '.join(used)}"
                + (f"; {waiting_beside} cell(s) queued there" if waiting_beside else "")
            )
        if waiting:
            shown = " ".join(waiting[:6]) + (" ..." if len(waiting) > 6 else "")
            print(
                f"queued: {len(waiting)} cell(s) not started, not projected (a worker that ends its run "
                f"claims the next; the 'shared' column keeps its share busy): {shown}"
            )
        if a.by == "shared":
            print(
                "pick by the 'shared' projection: the process that ends latest, one at a time, until the rest "
                "end by the deadline (verdicts with the picked ones stopped)"
            )
        else:
            print("pick by the 'linear' projection (left): every run past the deadline")
        history = _history_or_note(rows, beside, [a.run_dir, *a.beside], now) if rows else None
        picked, said = _decide(rows, deadline, a.by, a.stop_unknown, beside, queues, history)
        if rows:
            print(
                format_table(
                    rows,
                    deadline,
                    beside,
                    queues,
                    by=a.by,
                    stop_unknown=a.stop_unknown,
                    said=said,
                    history=history,
                )
            )
        for r in picked:
            if r.kind == "cell" and said[r.name] == "fits":
                print(f"note: {r.name} fits, but its learning-rate selection does not: stopped with it")
        pids = {(r.host, r.pid) for r in picked}
        for r in rows:
            if r not in picked and (r.host, r.pid) in pids:
                print(f"note: stopping pid {r.pid} also stops {r.name} (the same process)")
        if a.apply:
            gone: set[tuple[str, int]] = set()
            for line in stop_runs(
                a.run_dir,
                picked,
                reason=f"triage {stamp} UTC: past a {deadline:g} s deadline",
                signalled_out=gone,
            ):
                print(line)
            rest = [r for r in rows if (r.host, r.pid) not in gone]
            if gone and rest:
                # the stopped processes leave now (their share was in the measured paces) without taking a
                # queued cell; the holds just written may have emptied part of the queue
                queues[a.run_dir] = len(_queued_or_note(a.run_dir))
                ends = shared_left(rows, beside, queues, stopped=gone, history=history)
                after = [x for x in (ends[r.name] for r in rest) if x is not None]
                if after:
                    print(
                        f"after the stops: the {len(rest)} run(s) left end in {min(after):.0f}-{max(after):.0f} s "
                        f"by the 'shared' projection ({len(after)} projected)"
                    )
        elif picked:
            print(f"past the deadline (--apply stops them): {' '.join(r.name for r in picked)}")
            if a.by == "shared":
                gone = {(r.host, r.pid) for r in picked}
                ends = shared_left(rows, beside, queues, stopped=gone, history=history)
                after = [
                    x for x in (ends[r.name] for r in rows if (r.host, r.pid) not in gone) if x is not None
                ]
                if after:
                    print(
                        f"with them stopped, the runs left end in {min(after):.0f}-{max(after):.0f} s (shared)"
                    )
    except (ConfigError, ResultFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "LOG_INTERVAL_SHARE",
    "PICKS",
    "Running",
    "format_table",
    "gpu_history",
    "History",
    "main",
    "missing_data",
    "past_deadline",
    "planned_epochs",
    "queued",
    "run_dir_of",
    "running",
    "shared_left",
    "Span",
    "SATURATION",
    "stop_runs",
    "verdict",
    "verdicts",
]
