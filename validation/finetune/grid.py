"""The run grid (tasks x methods x seeds): resumable execution and a summary for the report.

Layout of a run directory::

    runs/NAME/grid.json                         planned cells and the profile (written first)
    runs/NAME/cells/<task>__<method>__seed<k>.json          one finished cell (atomic)
    runs/NAME/cells/<task>__<method>__seed<k>.failed.json   why a cell failed (removed on success)
    runs/NAME/work/<task>__<method>__seed<k>/checkpoint-*   Trainer checkpoints of an unfinished cell
    runs/NAME/claims/<cell>.claim                the owner (pid, host) of a cell being trained now
    runs/NAME/claims/<cell>.hold                 no worker starts the cell (hold_cell / release_cell)
    runs/NAME/lr_select/<task>__<method>.hold    no worker starts that learning-rate selection run
    runs/NAME/logs/<cell>.log                    output of a cell run by a worker (``workers`` > 0)
    runs/NAME/cache/                             tokenised datasets shared by the cells

A rerun of the same command skips every cell whose result file exists, resumes a cell with checkpoints
from its last checkpoint, and retries failed cells. A run directory remembers its profile: rerunning it
with different hyper-parameters is refused (the cells would not be comparable); a per-task override
(``task_overrides``) counts only for the tasks the directory holds (:func:`joined_profile`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json, read_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune import stop, token_cache
from validation.finetune.checkpoints import last_checkpoint
from validation.finetune.claims import DEFAULT_STALE_AFTER, is_live, read_claim, try_claim
from validation.finetune.lr_select import SelectionHeld, selection_held, selection_hold_path
from validation.finetune.preload import preload, retrying_imports
from validation.finetune.runner import (
    SELECTION_LOG_SUFFIX,
    MissingDataError,
    Profile,
    canonical_run_name,
    cell_name,
    cell_path,
    failure_path,
    is_main_process,
    parse_cell_name,
    parse_run_name,
    read_cell,
    record_failure,
    run_cell,
    world_size,
)
from validation.finetune.stop import StopRequested, check

GRID_SCHEMA = "gelora.validation.grid/1"

#: the reason recorded for a cell whose task has no offline data (summary ``missing`` / ``not_run_tasks``)
NO_OFFLINE_DATA = "not run: no offline data"


@dataclass
class GridOutcome:
    """What one call of :func:`run_grid` did.

    Attributes
    ----------
    ran, skipped, failed : list of str
        Cell names trained now, already finished before, and raising an error now.
    busy : list of str
        Cells left alone because a live owner elsewhere (another launch, shard or host) holds their claim.
    errors : dict
        ``{cell name: "ErrorType: message"}`` of the failed cells.
    not_run : dict
        ``{cell name: message}`` of cells whose task has no offline data (e.g. MNLI, QQP): recorded as
        "not run: no offline data" (``.failed.json`` with ``not_run``), neither in ``failed`` nor in
        ``errors`` — a missing data set is not a failure of the method or the code.
    interrupted : list of str
        The cell a worker was training when it was asked to stop (SIGTERM, :mod:`validation.finetune.stop`):
        no result, no failure record, claim released, checkpoints kept; a rerun resumes it.
    held : list of str
        Cells left alone because a hold file (:func:`hold_path`, :func:`hold_cell`) asks workers not to
        start them, or the learning-rate selection they need is held (:func:`is_held`); a launch after
        :func:`release_cell` trains (or resumes) them.
    """

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    interrupted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    def not_run_tasks(self) -> dict[str, str]:
        """``{task: message}``: each task with cells not run for lack of offline data (first message)."""
        out: dict[str, str] = {}
        for name, msg in self.not_run.items():
            out.setdefault(name.split("__", 1)[0], msg)
        return out


def profile_key(profile: dict[str, Any], tasks: Iterable[str] | None = None) -> dict[str, Any]:
    """The fields of a profile that change results (runs that share them may share a directory); the
    evaluation batch size and the checkpoint interval do not.

    With ``tasks``, ``task_overrides`` keeps only those tasks' entries: a schedule decided for one task
    (e.g. QNLI's epochs) does not change what the other tasks' cells were trained with.

    ``torch_compile`` (the code path: compiled or eager) is one of these fields; a profile without it (every
    one recorded before the option existed) or with it False is eager, so the key leaves it out then and
    keeps ``torch_compile: True``: compiled and eager runs never share a directory.
    """
    ignore = {"eval_batch_size", "save_steps"}
    key = {k: v for k, v in profile.items() if k not in ignore}
    if not key.get("torch_compile"):
        key.pop("torch_compile", None)
    if tasks is not None:
        overrides = key.get("task_overrides") or {}
        key["task_overrides"] = {t: overrides[t] for t in sorted(set(tasks)) if t in overrides}
    return key


def held_tasks(run_dir: str | Path, plan: dict[str, Any]) -> set[str]:
    """Tasks a run directory holds: those of its plan's cells and those of any result on disk (``cells/``,
    ``lr_select/``), so results dropped from ``grid.json`` still count when profiles are compared (a cell file
    at an old schedule must never pass for one at a new schedule)."""
    tasks = {str(c["task"]) for c in plan.get("cells") or []}
    root = Path(run_dir)
    for sub in ("cells", "lr_select"):
        d = root / sub
        if d.is_dir():
            tasks |= {p.name.split("__", 1)[0] for p in d.glob("*__*.json") if p.is_file()}
    return tasks


def profile_differences(
    a: dict[str, Any], a_tasks: Iterable[str], b: dict[str, Any], b_tasks: Iterable[str]
) -> tuple[list[str], list[str]]:
    """The :func:`profile_key` fields in which two profiles differ over the tasks both hold, and those tasks
    (both sorted; no fields: they may share a directory)."""
    shared = set(a_tasks) & set(b_tasks)
    ka, kb = profile_key(a, shared), profile_key(b, shared)
    return sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k)), sorted(shared)


def joined_profile(
    old: dict[str, Any], old_tasks: Iterable[str], new: dict[str, Any], new_tasks: Iterable[str]
) -> dict[str, Any] | None:
    """The profile of a run directory holding cells of ``old`` (tasks ``old_tasks``) and of ``new`` (tasks
    ``new_tasks``), or None when they cannot share it.

    They can when every setting but the per-task overrides agrees (:func:`profile_key`) and the overrides
    agree on every task both hold. The result is ``new`` with ``old``'s overrides for the tasks only ``old``
    holds (``new`` itself when nothing differs).
    """
    old_t, new_t = set(old_tasks), set(new_tasks)
    if profile_differences(old, old_t, new, new_t)[0]:
        return None
    only_old = old_t - new_t
    old_over = old.get("task_overrides") or {}
    new_over = dict(new.get("task_overrides") or {})
    if all(old_over.get(t) == new_over.get(t) for t in only_old):
        return new
    for t in only_old:
        if t in old_over:
            new_over[t] = old_over[t]
        else:
            new_over.pop(t, None)
    return {**new, "task_overrides": new_over}


def join_profiles(
    runs: Sequence[tuple[str, dict[str, Any], Iterable[str]]], hint: str = ""
) -> dict[str, Any]:
    """The profile of one directory holding every run of ``runs`` (``(name, profile, tasks)``, in order):
    :func:`joined_profile` applied run by run.

    Raises
    ------
    ConfigError
        Naming the first run that cannot join the ones before it, the :func:`profile_key` fields that
        differ and, for ``task_overrides``, the tasks whose overrides differ; ``hint`` is appended.
    """
    first, profile, tasks = runs[0][0], runs[0][1], set(runs[0][2])
    names = [first]
    for name, other, other_tasks in runs[1:]:
        joined = joined_profile(other, other_tasks, profile, tasks)
        if joined is None:
            diff, shared = profile_differences(profile, tasks, other, other_tasks)
            mine, theirs = profile.get("task_overrides") or {}, other.get("task_overrides") or {}
            differing = [t for t in shared if mine.get(t) != theirs.get(t)]
            raise ConfigError(
                f"{name}: profile differs from that of {', '.join(names)} in {diff}"
                + (f" (tasks {differing})" if "task_overrides" in diff else "")
                + hint
            )
        profile, tasks = joined, tasks | set(other_tasks)
        names.append(name)
    return profile


def read_plan(run_dir: str | Path) -> dict[str, Any]:
    """The plan ``run_dir/grid.json`` of a run directory (``schema``, ``profile``, ``cells``, ``updated``).

    Raises
    ------
    ResultFileError
        ``grid.json`` missing, corrupt or not a grid plan.
    """
    path = Path(run_dir) / "grid.json"
    if not path.is_file():
        raise ResultFileError(f"{run_dir} is not a grid run directory (no grid.json)")
    plan = read_json(path)
    if not isinstance(plan, dict) or plan.get("schema") != GRID_SCHEMA or "cells" not in plan:
        raise ResultFileError(f"{path} is not a grid plan (schema {GRID_SCHEMA!r} expected)")
    return plan


def write_plan(
    run_dir: Path, tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int], profile: Profile
) -> None:
    """Create or extend ``grid.json`` (the union of all planned cells), refusing a changed profile."""
    path = run_dir / "grid.json"
    planned: list[dict[str, Any]] = []
    recorded = profile.to_dict()
    if path.exists():
        old = read_plan(run_dir)
        old_tasks = held_tasks(run_dir, old)
        joined = joined_profile(old["profile"], old_tasks, recorded, tasks)
        if joined is None:
            diff, shared = profile_differences(old["profile"], old_tasks, recorded, tasks)
            raise ConfigError(
                f"{run_dir} was started with a different profile (fields {diff} differ"
                + (f" for tasks {shared}" if "task_overrides" in diff else "")
                + "); use another --out directory or the same settings"
            )
        recorded = joined
        planned = list(old["cells"])
    seen = {(c["task"], c["method"], int(c["seed"])) for c in planned}
    for t in tasks:
        for m in methods:
            for s in seeds:
                if (t, m, int(s)) not in seen:
                    planned.append({"task": t, "method": m, "seed": int(s)})
                    seen.add((t, m, int(s)))
    if is_main_process():
        atomic_write_json(
            path,
            {
                "schema": GRID_SCHEMA,
                "profile": recorded,
                "cells": planned,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )


def run_grid(
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    profile: Profile,
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str | None = None,
    keep_going: bool = True,
    keep_checkpoints: bool = False,
    progress: Callable[[str, str], None] | None = None,
    workers: int | None = 1,
    gpus: Sequence[int] | None = None,
    per_gpu: int | None = None,
    shard: tuple[int, int] | None = None,
    stale_after: float = DEFAULT_STALE_AFTER,
    stop_label: str | None = None,
) -> GridOutcome:
    """Run every missing cell of the grid (or of one shard of it), in task, method, seed order.

    Each cell is claimed atomically (``<run_dir>/claims/<cell>.claim``, see
    :mod:`validation.finetune.claims`) before it runs, so concurrent launches on one run directory (other
    workers, other shards, other hosts on a shared file system) never train the same cell; a cell claimed by
    a live owner elsewhere is reported in ``outcome.busy``. Tokenised datasets are cached under
    ``<run_dir>/cache`` (:mod:`validation.finetune.token_cache`).

    Parameters
    ----------
    tasks, methods : sequence of str
        GLUE tasks and method names (validated before anything runs).
    seeds : sequence of int
        Training seeds.
    profile : Profile
        Shared settings (see :data:`validation.finetune.runner.PROFILES`).
    run_dir : str or Path
        Output directory (created).
    data_dir, device
        See :func:`validation.finetune.runner.run_cell`.
    keep_going : bool
        Record a failing cell (``.failed.json``) and continue; False re-raises the first error (with
        workers: stops the other workers and returns the outcome).
    progress : callable, optional
        ``progress(cell_name, status)`` with status ``"skip"``, ``"run"``, ``"done"``, ``"failed"`` or
        ``"busy"``; with workers also ``progress(line, "grid")`` with ``done/running/failed/left`` counts.
    workers : int
        Concurrent worker subprocesses (:mod:`validation.finetune.parallel`); 1 runs in this process.
    gpus : sequence of int, optional
        GPU indices the workers are pinned to (``CUDA_VISIBLE_DEVICES``), round-robin; workers default to
        ``len(gpus) * per_gpu``.
    per_gpu : int, optional
        Workers per GPU (default: as many as needed for ``workers``).
    shard : (i, n), optional
        Run only the cells of shard ``i`` of ``n`` (:func:`validation.finetune.parallel.shard_of`).
    stale_after : float
        Seconds without a heartbeat after which another host's claim is abandoned.
    stop_label : str, optional
        Handle SIGTERM gracefully, labelled so, when the cells run in this process (the slot plan of
        :func:`validation.finetune.parallel.plan_slots` is empty), from the main thread, outside a
        ``torchrun`` launch: :func:`validation.finetune.stop.handling` is entered around the cells, so a
        SIGTERM stops the running cell at its next step as in a worker (checkpoints kept, claim released)
        and :class:`~validation.finetune.stop.StopRequested` propagates to the caller. With worker
        subprocesses :func:`validation.finetune.parallel.run_workers` stops the workers instead. None (the
        default) leaves SIGTERM alone.

    Returns
    -------
    GridOutcome

    Raises
    ------
    ResultFileError
        An existing cell file is corrupt (delete it to rerun that cell).
    ConfigError
        Unknown task/method, an empty grid, or inconsistent worker/shard settings.
    StopRequested
        A stop was requested while the cells ran in this process (see ``stop_label``).
    """
    from validation.finetune import parallel
    from validation.finetune.methods import METHODS
    from validation.finetune.tasks import task_family

    tasks = [task_family(t).canonical(t) for t in tasks]
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; expected one of {sorted(METHODS)}")
    if not tasks or not methods or not seeds:
        raise ConfigError("the grid needs at least one task, one method and one seed")
    slots = parallel.plan_slots(workers, gpus, per_gpu, device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_plan(run_dir, tasks, methods, seeds, profile)
    cells = [(t, m, int(s)) for t in tasks for m in methods for s in seeds]
    if shard is not None:
        cells = parallel.select_shard(cells, shard)
    if slots:
        return _separate_not_run(
            parallel.run_workers(
                cells,
                slots,
                profile=profile,
                run_dir=run_dir,
                data_dir=data_dir,
                device=device,
                keep_going=keep_going,
                keep_checkpoints=keep_checkpoints,
                progress=progress,
                stale_after=stale_after,
            ),
            run_dir,
        )
    outcome = GridOutcome()
    with _in_process_stop(stop_label), token_cache.use_dir(run_dir / "cache"):
        attempt_cells(
            cells,
            outcome,
            profile=profile,
            run_dir=run_dir,
            data_dir=data_dir,
            device=device,
            keep_going=keep_going,
            keep_checkpoints=keep_checkpoints,
            progress=progress,
            stale_after=stale_after,
        )
    return outcome


def _in_process_stop(label: str | None) -> contextlib.AbstractContextManager[None]:
    """:func:`validation.finetune.stop.handling` for cells that run in this process, or a no-op.

    A no-op without ``label``, outside the main thread (signal handlers can only be set there) and under a
    ``torchrun`` launch (each rank would stop at a different step and the others hang in a collective).
    """
    if label is None or world_size() > 1 or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return stop.handling(label=label)


def _separate_not_run(outcome: GridOutcome, run_dir: Path) -> GridOutcome:
    """Move the failed cells whose failure record says ``not_run`` (no offline data) to ``outcome.not_run``.

    Worker subprocesses report cells only through their files; this reads each failure record back.
    """
    for name in list(outcome.failed):
        try:
            info = read_json(failure_path(run_dir, *parse_cell_name(name)))
        except (ResultFileError, ValueError):  # ConfigError (not a cell name) is a ValueError
            continue
        if isinstance(info, dict) and info.get("not_run"):
            outcome.failed.remove(name)
            outcome.errors.pop(name, None)
            outcome.not_run[name] = str(info.get("message") or f"not run: {info['not_run']}")
    return outcome


def claim_path(run_dir: str | Path, task: str, method: str, seed: int) -> Path:
    """``<run_dir>/claims/<cell>.claim``: held while a process trains the cell."""
    return Path(run_dir) / "claims" / f"{cell_name(task, method, seed)}.claim"


def plan_task_settings(profile: dict[str, Any], task: str) -> dict[str, Any]:
    """A plan's profile (``grid.json``'s ``profile``) with ``task``'s ``task_overrides`` applied, as
    ``Profile.for_task`` does for a :class:`~validation.finetune.runner.Profile`."""
    return {**profile, **((profile.get("task_overrides") or {}).get(task) or {})}


def hold_path(run_dir: str | Path, task: str, method: str, seed: int) -> Path:
    """``<run_dir>/claims/<cell>.hold``: while it exists, no worker starts the cell."""
    return Path(run_dir) / "claims" / f"{cell_name(task, method, seed)}.hold"


def hold_cell(run_dir: str | Path, name: str, reason: str = "") -> Path:
    """Ask every worker of ``run_dir`` not to start cell ``name`` (``<task>__<method>__seed<s>``) or the
    learning-rate selection run ``name`` (``<task>__<method>``).

    A running owner is not stopped by this (send it SIGTERM, ``scripts/gpu/waves.sh stop``); the hold only
    keeps the cell from being claimed again, e.g. by a worker that finished its own cell, until
    :func:`release_cell`. A held selection run is not started either, nor are the cells that need it
    (:func:`is_held`). Written atomically; holding a held cell rewrites its reason.

    Returns
    -------
    Path
        The hold file: :func:`hold_path` of a cell,
        :func:`validation.finetune.lr_select.selection_hold_path` of a selection run.

    Raises
    ------
    ConfigError
        ``name`` is neither a cell name nor a selection-run name.
    """
    name = canonical_run_name(name)
    path = _hold_file(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "selection" if parse_run_name(name)[2] is None else "cell"
    atomic_write_json(path, {key: name, "reason": reason, "held_at": datetime.now(timezone.utc).isoformat()})
    return path


def release_cell(run_dir: str | Path, name: str) -> bool:
    """Remove the hold of cell (or selection run) ``name``; True if there was one."""
    path = _hold_file(run_dir, canonical_run_name(name))
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def _hold_file(run_dir: str | Path, name: str) -> Path:
    """The hold file of the canonical run name ``name`` (:func:`validation.finetune.runner.canonical_run_name`)."""
    task, method, seed = parse_run_name(name)
    if seed is None:
        return selection_hold_path(run_dir, task, method)
    return hold_path(run_dir, task, method, seed)


def is_held(run_dir: str | Path, task: str, method: str, seed: int, profile: Profile) -> bool:
    """Whether no worker should start the cell: it is held, or it needs a learning-rate selection
    (``profile.for_task(task).lr_select``) that is held and not finished."""
    if hold_path(run_dir, task, method, seed).exists():
        return True
    return bool(profile.for_task(task).lr_select) and selection_held(run_dir, task, method)


def live_groups_on_gpu(
    run_dir: str | Path, gpu: str, stale_after: float = DEFAULT_STALE_AFTER
) -> dict[str, int]:
    """How many live claims of each ``<task>__<method>`` are held by workers on ``gpu``.

    Counts cell claims (``claims/<task>__<method>__seed<s>.claim``) and selection-run claims
    (``lr_select/<task>__<method>.claim``) whose recorded ``gpu`` (the owner's ``CUDA_VISIBLE_DEVICES``)
    equals ``gpu``.
    """
    counts: dict[str, int] = {}
    root = Path(run_dir)
    for folder, cut in (("claims", True), ("lr_select", False)):
        for path in (root / folder).glob("*.claim"):
            payload = read_claim(path)
            if not payload or str(payload.get("gpu")) != str(gpu) or not is_live(path, stale_after):
                continue
            stem = path.name[: -len(".claim")]
            group = stem.rsplit("__", 1)[0] if cut else stem
            counts[group] = counts.get(group, 0) + 1
    return counts


def next_cell_index(
    pending: Sequence[tuple[str, str, int]], run_dir: str | Path, gpu: str | None, stale_after: float
) -> int:
    """Index in ``pending`` of the cell a worker on ``gpu`` should try next.

    Without a GPU: the first (the grid's order). With one: the first cell of the (task, method) that the
    fewest live claims on this GPU already train, so the workers of one or several waves spread each method
    over the GPUs instead of leaving its cells on whichever GPU's workers won the claim race (on two GPUs,
    two waves once put all five AdaLoRA cells on one GPU and all five GeoLoRA cells on the other). It only
    changes the order in which a worker tries cells, never which cells run; cells already finished or
    claimed are skipped when tried, as before.
    """
    if gpu is None or len(pending) <= 1:
        return 0
    counts = live_groups_on_gpu(run_dir, gpu, stale_after)
    return min(range(len(pending)), key=lambda i: (counts.get(f"{pending[i][0]}__{pending[i][1]}", 0), i))


def attempt_cells(
    cells: Sequence[tuple[str, str, int]],
    outcome: GridOutcome,
    *,
    profile: Profile,
    run_dir: Path,
    data_dir: str | Path | None,
    device: str | None,
    keep_going: bool,
    keep_checkpoints: bool,
    progress: Callable[[str, str], None] | None,
    stale_after: float,
    failed_since: float | None = None,
    log_dir: Path | None = None,
    note: str = "",
    gpu: str | None = None,
) -> None:
    """Claim and run each unfinished cell in order, recording results in ``outcome`` (one process).

    ``gpu``: the GPU this worker is pinned to (its ``CUDA_VISIBLE_DEVICES``); then the order is that of
    :func:`next_cell_index` (methods spread over the GPUs), else the grid's order.

    ``failed_since``: skip cells whose failure record is newer (another worker of the same launch tried
    them). ``log_dir``: send the cell's stdout/stderr (file descriptors 1 and 2) to ``<log_dir>/<cell>.log``.

    A cell whose task has no offline data (:class:`~validation.finetune.runner.MissingDataError`) is
    recorded as not run (``outcome.not_run``, a ``.failed.json`` with ``not_run``) and never stops the grid,
    even with ``keep_going=False``; the other cells of that task are recorded the same way without loading
    anything again.

    Before its first cell the worker imports every module training imports later
    (:func:`~validation.finetune.preload.preload`), and a cell that fails on an import is tried once more
    after ``GELORA_IMPORT_RETRY_S`` seconds (default 20): on the GPU machine the working tree is copied anew
    at every call and a source file can be missing for a moment.

    After a stop request (SIGTERM to a worker, :mod:`validation.finetune.stop`) the running cell raises
    :class:`~validation.finetune.stop.StopRequested` at its next step boundary: it is reported "interrupted"
    (``outcome.interrupted``), records no failure, releases its claim and keeps its checkpoints; the
    exception propagates, so no further cell starts.
    """
    # before any cell: a worker then reads no source file while it trains (see preload's why)
    retrying_imports(preload, "the worker's preload")
    if is_main_process() and world_size() == 1:
        _selection_jobs(
            cells,
            profile=profile,
            run_dir=run_dir,
            data_dir=data_dir,
            device=device,
            progress=progress,
            log_dir=log_dir,
        )
    no_data: dict[str, MissingDataError] = {}
    pending = list(cells)
    while pending:
        t, m, s = pending.pop(next_cell_index(pending, run_dir, gpu, stale_after))
        check("between cells")
        name = cell_name(t, m, s)
        path = cell_path(run_dir, t, m, s)
        if path.exists():
            read_cell(path)  # corrupt files raise ResultFileError instead of being overwritten
            outcome.skipped.append(name)
            if progress:
                progress(name, "skip")
            continue
        fail = failure_path(run_dir, t, m, s)
        if failed_since is not None and fail.exists() and fail.stat().st_mtime >= failed_since:
            continue
        if is_held(run_dir, t, m, s, profile):  # every rank sees the same files: all skip
            outcome.held.append(name)
            if progress:
                progress(name, "held")
            continue
        if t in no_data:  # the task's data was looked for a moment ago: not there
            record_failure(run_dir, t, m, int(s), no_data[t])
            outcome.not_run[name] = str(no_data[t])
            if progress:
                progress(name, "not run")
            continue
        if is_main_process():
            claim = try_claim(claim_path(run_dir, t, m, s), stale_after=stale_after, note=note)
            if claim is None:
                outcome.busy.append(name)
                if progress:
                    progress(name, "busy")
                continue
        else:  # torchrun ranks > 0 follow rank 0 (which holds the claim)
            claim = None
        try:
            if path.exists():  # finished by another process between our check and our claim
                outcome.skipped.append(name)
                continue
            if progress:
                progress(name, "run")
            try:
                with _redirect_output(log_dir / f"{name}.log" if log_dir is not None else None):
                    _run_cell_retrying_imports(
                        t,
                        m,
                        int(s),
                        profile=profile,
                        run_dir=run_dir,
                        data_dir=data_dir,
                        device=device,
                        keep_checkpoints=keep_checkpoints,
                    )
            except MissingDataError as exc:  # the task, not this cell: no offline data
                record_failure(run_dir, t, m, int(s), exc)
                no_data[t] = exc
                outcome.not_run[name] = str(exc)
                if progress:
                    progress(name, "not run")
                continue
            except SelectionHeld:  # its selection was held while it trained: not a failure, checkpoints stay
                outcome.held.append(name)
                if progress:
                    progress(name, "held")
                continue
            except StopRequested:  # not a failure: checkpoints stay, the claim goes (below), a rerun resumes
                outcome.interrupted.append(name)
                if progress:
                    progress(name, "interrupted")
                raise
            except Exception as exc:  # noqa: BLE001 - recorded per cell; KeyboardInterrupt propagates
                record_failure(run_dir, t, m, int(s), exc)
                outcome.failed.append(name)
                outcome.errors[name] = f"{type(exc).__name__}: {exc}"
                if progress:
                    progress(name, "failed")
                if not keep_going:
                    raise
                continue
            outcome.ran.append(name)
            if progress:
                progress(name, "done")
        finally:
            if claim is not None:
                claim.release()


def _run_cell_retrying_imports(t: str, m: str, s: int, **kw: Any) -> None:
    """:func:`run_cell`, tried once more after ``preload.IMPORT_RETRY_S`` seconds when it fails on an import
    (:func:`~validation.finetune.preload.retrying_imports`: a source file missing for a moment while the
    device tool copies the tree); a second failure propagates. The retry resumes from the cell's last
    checkpoint, if it saved one; the claim stays held during the wait."""
    retrying_imports(lambda: run_cell(t, m, s, **kw), cell_name(t, m, s))


def _selection_jobs(
    cells: Sequence[tuple[str, str, int]],
    *,
    profile: Profile,
    run_dir: Path,
    data_dir: str | Path | None,
    device: str | None,
    progress: Callable[[str, str], None] | None,
    log_dir: Path | None,
) -> None:
    """Run the one-rate selections no other worker has claimed (the cells train beside them).

    A failure here is left to the cells: each asks for its selection again after training and records
    what goes wrong then.
    """
    from validation.finetune.lr_select import select_learning_rate, selection_jobs

    def done(t: str, m: str, s: int) -> bool:
        return cell_path(run_dir, t, m, s).exists()

    for t, m in selection_jobs(cells, profile, run_dir, is_done=done):
        check("between learning-rate selections")
        name = f"{t}__{m}{SELECTION_LOG_SUFFIX}"
        try:
            with _redirect_output(log_dir / f"{name}.log" if log_dir is not None else None):
                rec = select_learning_rate(
                    t,
                    m,
                    profile=profile.for_task(t),
                    run_dir=run_dir,
                    data_dir=data_dir,
                    device=device,
                    wait=False,
                )
        except MissingDataError:
            continue  # the cells record the task as not run
        except SelectionHeld:  # held between the listing and the claim
            if progress:
                progress(name, "held")
            continue
        except Exception as exc:  # noqa: BLE001 - the cells retry it and record the failure
            if progress:
                progress(name, f"failed ({type(exc).__name__}), left to the cells")
            continue
        if progress:
            progress(name, "busy" if rec is None else "done")


@contextmanager
def _redirect_output(log: Path | None) -> Iterator[None]:
    """Point file descriptors 1 and 2 (Python and C output alike) at ``log`` (appended) inside the block."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with log.open("a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# --------------------------------------------------------------------------------------------- summary
def _mean_std(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def summarise(run_dir: str | Path) -> dict[str, Any]:
    """Summary of a run directory for the report builder.

    Returns
    -------
    dict
        ``run_dir``, ``profile``; ``table[task][method]`` with, for every metric, ``{"mean", "std"
        (sample standard deviation, ddof=1; None for one seed), "n", "values"}`` plus ``seeds``,
        ``budget_params``, ``trainable_adapter_params`` (per seed), ``within_budget``, ``ranks_used`` (per
        seed: GeLoRA block ranks, AdaLoRA's final allocation, LoRA's per-module ranks), ``wall_time_s``
        (mean/std; resumed cells left out, counted in ``wall_time_resumed_cells``; of the whole cells,
        those trained under CUDA MPS counted in ``wall_time_cuda_mps_cells``; both keys only when
        non-zero), ``peak_memory_bytes`` (max), ``per_seed`` (one record per cell: ``seed``, ``primary``
        score, ``converged`` (bool, or None when not recorded), ``convergence`` (the cell's record),
        ``train_loss``, ``eval_loss``, ``learning_rate``, ``lr_selection`` (None when no selection ran),
        ``mean_adapter_params`` (the run's average where the method records it, else None)) and
        ``loss_curve`` (one seed's ``{"seed", "points": [[step, loss], ...], "n_points"}`` or None);
        ``profile_name``; ``primary_metric[task]``; ``missing``: a list of
        ``{"task", "method", "seed", "reason"}`` for planned cells without a result (a failed cell's
        reason is its error; never a zero); ``not_run_tasks``: ``{"task", "reason", "n_cells"}`` for each
        planned task without any result whose every cell is "not run: no offline data" (e.g. MNLI and QQP
        offline); ``n_cells``/``n_planned``.

    Raises
    ------
    ResultFileError
        ``grid.json`` missing or corrupt, or a cell file corrupt.
    """
    from validation.finetune.metrics import PRIMARY_METRIC

    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    cells_dir = run_dir / "cells"
    planned = [(c["task"], c["method"], int(c["seed"])) for c in plan["cells"]]
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    if cells_dir.is_dir():
        for p in sorted(cells_dir.glob("*.json")):
            if p.name.endswith(".failed.json"):
                continue
            cell = read_cell(p)
            found[(cell["task"], cell["method"], int(cell["seed"]))] = cell
    missing = []
    for t, m, s in planned:
        if (t, m, s) in found:
            continue
        fail = failure_path(run_dir, t, m, s)
        if fail.exists():
            try:
                info = read_json(fail)
                reason = (
                    f"not run: {info['not_run']}"
                    if info.get("not_run")
                    else f"failed: {info.get('error')}: {info.get('message')}"
                )
            except ResultFileError as exc:
                reason = f"failed (failure record unreadable: {exc})"
        elif is_live(claim_path(run_dir, t, m, s)):  # e.g. a second wave on the same run directory
            reason = "not finished: running (claimed by a live process)"
        elif hold_path(run_dir, t, m, s).exists():
            reason = "not run: held (release_cell or waves.sh release lifts it)"
        elif plan_task_settings(plan.get("profile") or {}, t).get("lr_select") and selection_held(
            run_dir, t, m
        ):
            reason = f"not run: its learning-rate selection {t}__{m} is held (waves.sh release lifts it)"
        elif (run_dir / "work" / cell_name(t, m, s)).is_dir():
            ck = last_checkpoint(run_dir / "work" / cell_name(t, m, s))
            reason = (
                f"not run: interrupted (resumes from {ck.name} when the command is rerun)"
                if ck is not None
                else "not run: interrupted before its first complete checkpoint (a rerun starts it afresh)"
            )
        else:
            reason = "not run: no result file (grid interrupted before this cell or not yet run)"
        missing.append({"task": t, "method": m, "seed": s, "reason": reason})
    with_result = {t for t, _, _ in found}
    not_run_tasks = []
    for t in dict.fromkeys(t for t, _, _ in planned):
        reasons = [x["reason"] for x in missing if x["task"] == t]
        if t not in with_result and reasons and all(r == NO_OFFLINE_DATA for r in reasons):
            not_run_tasks.append({"task": t, "reason": NO_OFFLINE_DATA, "n_cells": len(reasons)})
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (t, m, _s), cell in sorted(found.items(), key=lambda kv: kv[0]):
        groups.setdefault(t, {}).setdefault(m, []).append(cell)
    table: dict[str, dict[str, Any]] = {}
    for t, by_method in groups.items():
        table[t] = {}
        for m, cells in by_method.items():
            entry: dict[str, Any] = {"seeds": [int(c["seed"]) for c in cells], "metrics": {}}
            names = sorted({k for c in cells for k, v in c["metrics"].items() if v is not None})
            for k in names:
                vals = [float(c["metrics"][k]) for c in cells if c["metrics"].get(k) is not None]
                entry["metrics"][k] = _mean_std(vals)
            entry["budget_params"] = sorted({int(c["budget"]["budget_params"]) for c in cells})
            entry["trainable_adapter_params"] = [int(c["budget"]["trainable_adapter_params"]) for c in cells]
            entry["within_budget"] = [c["budget"].get("within_budget") for c in cells]
            # a resumed cell's wall time covers its last process only (the runner times one process):
            # its mean with whole cells would be no time per cell, so resumed cells are counted apart
            timed = [c for c in cells if not _resumed(c)]
            entry["wall_time_s"] = _mean_std([float(c["wall_time_s"]) for c in timed]) if timed else None
            if len(timed) < len(cells):
                entry["wall_time_resumed_cells"] = len(cells) - len(timed)
            # cells trained under CUDA MPS (environment.cuda_mps, since 2026-12-01) ran about 1.25x faster
            # than time-sliced ones at twelve processes: a wall time says how many of its cells ran so
            mps = sum(1 for c in timed if (c.get("environment") or {}).get("cuda_mps") is True)
            if mps:
                entry["wall_time_cuda_mps_cells"] = mps
            entry["trained_span_s"] = _trained_span(cells)
            entry["ranks_used"] = [_ranks_used(c.get("method_info", {})) for c in cells]
            mems = [c.get("peak_memory", {}).get("bytes") for c in cells]
            entry["peak_memory_bytes"] = max((int(x) for x in mems if x is not None), default=None)
            entry["per_seed"] = [_seed_record(c, PRIMARY_METRIC.get(t)) for c in cells]
            entry["loss_curve"] = _one_loss_curve(cells)
            table[t][m] = entry
    profile = plan.get("profile")
    return {
        "run_dir": str(run_dir),
        "profile": profile,
        "profile_name": profile.get("name") if isinstance(profile, dict) else None,
        "table": table,
        "primary_metric": {t: PRIMARY_METRIC.get(t) for t in sorted({t for t, _, _ in planned})},
        "missing": missing,
        "not_run_tasks": not_run_tasks,
        "n_cells": len(found),
        "n_planned": len(planned),
    }


#: most points of a loss curve carried into a summary (longer curves are thinned evenly, last point kept)
LOSS_CURVE_MAX_POINTS = 200


def _finite_or_none(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(float(x)) else None


def _resumed(cell: dict[str, Any]) -> bool:
    """Whether the cell's last process resumed from a checkpoint (``train.resumed_from``)."""
    return bool((cell.get("train") or {}).get("resumed_from"))


def _trained_span(cells: Sequence[dict[str, Any]]) -> list[float] | None:
    """``[first start, last end]`` of the cells' training in POSIX seconds (start = ``finished_at`` minus
    ``wall_time_s``), or None when a cell lacks either. Wall times of two methods compare only where their
    spans overlap: a run directory merged from several waves holds cells trained under different sharing."""
    starts, ends = [], []
    for c in cells:
        try:
            end = datetime.fromisoformat(str(c["finished_at"])).timestamp()
            wall = float(c["wall_time_s"])
        except (KeyError, TypeError, ValueError):
            return None
        starts.append(end - wall)
        ends.append(end)
    return [round(min(starts), 1), round(max(ends), 1)] if starts else None


def _seed_record(cell: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """One cell's per-seed facts for the paired statistics: primary score, convergence, losses, lr choice.

    ``converged`` is ``None`` when the cell records no convergence (old grids: "not recorded").
    """
    primary = cell.get("primary")
    if primary is None and metric is not None:
        primary = (cell.get("metrics") or {}).get(metric)
    train = cell.get("train") or {}
    conv = train.get("convergence")
    converged = conv.get("converged") if isinstance(conv, dict) else None
    eval_loss = cell.get("eval_loss")
    if isinstance(eval_loss, dict):
        eval_loss = eval_loss.get("loss")
    return {
        "seed": int(cell["seed"]),
        "primary": _finite_or_none(primary),
        "converged": converged if isinstance(converged, bool) else None,
        "convergence": conv if isinstance(conv, dict) else None,
        "train_loss": _finite_or_none(train.get("train_loss")),
        "eval_loss": _finite_or_none(eval_loss),
        "learning_rate": _finite_or_none(train.get("learning_rate")),
        "lr_selection": cell.get("lr_selection"),
        "mean_adapter_params": _mean_adapter_params(cell),
    }


def _mean_adapter_params(cell: dict[str, Any]) -> float | None:
    """Adapter parameters averaged over the run's steps, where the method records it (GeoLoRA, whose
    truncation changes the count during training: ``method_info.summary.mean_params``); else None."""
    summary = (cell.get("method_info") or {}).get("summary")
    return _finite_or_none(summary.get("mean_params")) if isinstance(summary, dict) else None


def _one_loss_curve(cells: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The training-loss curve of the lowest seed that recorded one: ``{"seed", "points", "n_points"}``.

    ``points`` is a list of ``[step, loss]``, thinned evenly to at most :data:`LOSS_CURVE_MAX_POINTS`
    (``n_points`` is the recorded length); ``None`` when no cell recorded a curve.
    """
    for cell in sorted(cells, key=lambda c: int(c["seed"])):
        curve = (cell.get("train") or {}).get("loss_curve")
        if not isinstance(curve, list) or not curve:
            continue
        pts = [[int(p[0]), float(p[1])] for p in curve if _finite_or_none(p[1]) is not None]
        if not pts:
            continue
        if len(pts) > LOSS_CURVE_MAX_POINTS:
            step = (len(pts) - 1) / (LOSS_CURVE_MAX_POINTS - 1)
            pts = [pts[round(i * step)] for i in range(LOSS_CURVE_MAX_POINTS)]
        return {"seed": int(cell["seed"]), "points": pts, "n_points": len(curve)}
    return None


def _ranks_used(info: dict[str, Any]) -> Any:
    """Ranks a cell trained with: GeLoRA's per-block ranks, AdaLoRA's final allocation, else per module."""
    for key in ("block_ranks", "allocated_ranks", "ranks"):
        if info.get(key):
            return info[key]
    summary = info.get("summary")
    if isinstance(summary, dict) and summary.get("final_ranks"):  # GeoLoRA
        return summary["final_ranks"]
    return None


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text table: primary metric mean ± std per task x method, then missing cells."""
    lines = [f"run {summary['run_dir']}: {summary['n_cells']}/{summary['n_planned']} cells"]
    for t, by_method in summary["table"].items():
        metric = summary["primary_metric"].get(t)
        for m, entry in by_method.items():
            st = entry["metrics"].get(metric)
            if st is None:
                val = "n/a"
            else:
                val = f"{st['mean']:.4f}" + (f" ± {st['std']:.4f}" if st["std"] is not None else "")
            lines.append(
                f"  {t:6s} {m:8s} {metric}={val} (n={len(entry['seeds'])}, "
                f"adapter params {entry['trainable_adapter_params'][0]}, "
                + (
                    f"{entry['wall_time_s']['mean']:.1f} s/cell"
                    if entry.get("wall_time_s")
                    else "no whole cell's time"
                )
                + (
                    f"; {entry['wall_time_resumed_cells']} resumed, timed in part"
                    if entry.get("wall_time_resumed_cells")
                    else ""
                )
                + (
                    f"; {entry['wall_time_cuda_mps_cells']} under CUDA MPS"
                    if entry.get("wall_time_cuda_mps_cells")
                    else ""
                )
                + ")"
            )
    not_run = {x["task"]: x for x in summary.get("not_run_tasks") or []}
    for miss in summary["missing"]:
        if miss["task"] not in not_run:
            lines.append(f"  missing {miss['task']} {miss['method']} seed{miss['seed']}: {miss['reason']}")
    for task, x in not_run.items():
        lines.append(f"  {task}: {x['reason']} (all {x['n_cells']} planned cell(s))")
    return "\n".join(lines)


__all__ = [
    "GRID_SCHEMA",
    "NO_OFFLINE_DATA",
    "GridOutcome",
    "attempt_cells",
    "claim_path",
    "format_summary",
    "hold_cell",
    "hold_path",
    "is_held",
    "live_groups_on_gpu",
    "next_cell_index",
    "plan_task_settings",
    "profile_key",
    "read_plan",
    "release_cell",
    "run_grid",
    "summarise",
    "write_plan",
]
