"""One task's results moved out of a run directory into a directory of their own (the inverse of
:mod:`validation.finetune.merge_runs`).

When the protocol changes a task's schedule (e.g. QNLI's epochs, decided after a selection run did not
converge), the results at the old schedule must leave the committed directory before the new ones are merged
in: a directory holds one schedule per task (:func:`validation.finetune.grid.held_tasks` counts every result
on disk). :func:`split_task` moves the task's cells, selection records and their logs, and its planned cells,
into ``dest`` with the source's profile (the one they were trained with), and drops them from the source's
``grid.json``:

- ``cells/<task>__*.json``, ``lr_select/<task>__*.json`` and ``logs/<task>__*.log`` (or ``.log.gz``, as
  committed folders store them) are copied atomically, as they are,
  into ``dest``, then ``dest/grid.json`` is written, then the source's ``grid.json`` without the task's
  planned cells, and only then are the source's files removed. An interrupted split leaves every result in
  at least one place; running it again finishes it (files already in ``dest`` with the same contents,
  :func:`gelora._io.same_result_file`, are accepted, a different one is refused).
- ``dest`` may not hold another run (a ``grid.json`` with other cells or another profile is refused); a
  second split of the same task and profile into it adds its planned cells to those already there.
- Refused while the task has unfinished state in ``src``: checkpoints (``work/<task>__*``,
  ``lr_select/work/<task>__*``), claims or holds (``claims/<task>__*``, ``lr_select/<task>__*.hold``). A
  cell trained later in ``src`` at a new schedule would otherwise resume from an old-schedule checkpoint, be
  blocked by an old hold, or a live worker would write an old-schedule result after the split: stop the
  workers, then remove that state (it holds no result) before splitting.
- An interrupted split is finished by running it again with the same ``--out``; a source whose plan has
  already lost the task's cells while its files remain is refused with a new destination.

Usage::

    python -m validation.finetune.split_runs SRC --task qnli --out DEST [--dry-run]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gelora._io import atomic_write_bytes, atomic_write_json, same_result_file
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.grid import GRID_SCHEMA, held_tasks, read_plan
from validation.finetune.merge_runs import result_files
from validation.finetune.tasks import task_family


@dataclass
class SplitReport:
    """What :func:`split_task` moved (or would move, with ``dry_run``): paths relative to the run directory."""

    moved: list[str] = field(default_factory=list)
    planned_moved: int = 0

    def lines(self) -> list[str]:
        out = [f"moved {len(self.moved)} file(s) and {self.planned_moved} planned cell(s)"]
        return out + [f"  > {p}" for p in self.moved]


def _unfinished_state(run_dir: Path, task: str) -> list[str]:
    """Checkpoints, claims and holds of ``task`` in ``run_dir`` (relative paths): no result, but state a
    later run in ``run_dir`` would pick up."""
    found = []
    for sub, pattern in (
        ("work", f"{task}__*"),
        ("lr_select/work", f"{task}__*"),
        ("claims", f"{task}__*"),
        ("lr_select", f"{task}__*.hold"),
    ):
        d = run_dir / sub
        if d.is_dir():
            found += [f"{sub}/{p.name}" for p in sorted(d.glob(pattern))]
    return found


def _task_files(run_dir: Path, task: str) -> list[str]:
    """The task's files among those a merge carries (:func:`validation.finetune.merge_runs.result_files`)."""
    return [rel for rel, _, _ in result_files(run_dir) if rel.split("/")[-1].startswith(f"{task}__")]


def split_task(src: str | Path, task: str, dest: str | Path, *, dry_run: bool = False) -> SplitReport:
    """Move ``task``'s results and planned cells from run directory ``src`` into ``dest`` (module docstring).

    Raises
    ------
    ConfigError
        ``dest`` is ``src``, an unknown task, ``src`` holds nothing of ``task`` or unfinished state of it,
        ``dest`` already holds another run, or an interrupted split is continued into another ``dest``.
    ResultFileError
        ``src`` has no valid ``grid.json``, or ``dest`` holds a different file of the same name.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists() and dest.resolve() == src.resolve():
        raise ConfigError(f"{dest} is the source directory itself")
    task = task_family(task).canonical(task)
    plan = read_plan(src)
    files = _task_files(src, task)
    keep = [c for c in plan["cells"] if c["task"] != task]
    moving = [c for c in plan["cells"] if c["task"] == task]
    if not files and not moving and task not in held_tasks(src, plan):
        raise ConfigError(f"{src} holds no result or planned cell of task {task!r}")
    state = _unfinished_state(src, task)
    if state:
        raise ConfigError(
            f"{src} has unfinished state of task {task!r} ({', '.join(state[:4])}"
            + (f" and {len(state) - 4} more" if len(state) > 4 else "")
            + "): stop its workers and remove it (no result lives there) before splitting"
        )
    if (dest / "grid.json").exists():
        old = read_plan(dest)
        if old["profile"] != plan["profile"] or any(c["task"] != task for c in old["cells"]):
            raise ConfigError(f"{dest} already holds another run (its grid.json has other cells or profile)")
        seen = {(c["method"], int(c["seed"])) for c in moving}
        moving += [c for c in old["cells"] if (c["method"], int(c["seed"])) not in seen]
    elif files and not moving:
        raise ConfigError(
            f"{src}'s plan has no cell of task {task!r} but its files remain: an interrupted split; "
            "finish it by running it again with the same --out"
        )
    for rel in files:
        target = dest / rel
        if target.exists() and not same_result_file(target, src / rel):
            raise ResultFileError(f"{target} exists and differs from {src / rel}: nothing moved")
    report = SplitReport(moved=files, planned_moved=len(moving))
    if dry_run:
        return report
    for rel in files:
        if not (dest / rel).exists():
            atomic_write_bytes(dest / rel, (src / rel).read_bytes())
    atomic_write_json(
        dest / "grid.json",
        {"schema": GRID_SCHEMA, "profile": plan["profile"], "cells": moving, "updated": plan.get("updated")},
    )
    atomic_write_json(src / "grid.json", {**plan, "cells": keep})
    for rel in files:
        (src / rel).unlink()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.split_runs",
        description="Move one task's cells, selection records, logs and planned cells out of a grid run "
        "directory into a directory of their own (e.g. results at a schedule the protocol has replaced).",
    )
    ap.add_argument("src", type=Path, help="the run directory to take the task out of")
    ap.add_argument("--task", required=True, help="the task whose results move (e.g. qnli)")
    ap.add_argument("--out", type=Path, required=True, help="the directory they move to")
    ap.add_argument("--dry-run", action="store_true", help="check and list, move nothing")
    args = ap.parse_args(argv)
    try:
        report = split_task(args.src, args.task, args.out, dry_run=args.dry_run)
    except (ConfigError, ResultFileError) as exc:
        print(f"split_runs: error: {exc}")
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["SplitReport", "main", "split_task"]
