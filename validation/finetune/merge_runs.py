"""Run directories of one grid profile merged into one (the campaign's "merged in, union grid.json").

A GPU session trains a few grids side by side, each in its own run directory (``runs/cola``,
``runs/rte-ada``, ...), sometimes started from a copy of the committed directory so that a finished
selection run is reused. :func:`merge_runs` brings their results into the committed directory:

- ``grid.json``: the union of the planned cells (the destination's order first), only when every source
  has the destination's profile (the fields that change results, as :func:`validation.finetune.grid.write_plan`
  compares them; per-task overrides only for the tasks both hold, :func:`validation.finetune.grid.joined_profile`:
  a source's new task brings its own override into the plan);
- ``cells/*.json``, ``lr_select/*.json``: copied (atomically, :func:`gelora._io.atomic_write_bytes`) when new, skipped when identical
  (byte for byte, or the same JSON at another indentation), **refused** when the
  destination holds a different file of the same name (a result is never overwritten);
- ``logs/*.log`` (and ``*.log.gz``) except the workers' own logs (``worker-*.log``: process scheduling, not
  results): written gzip-compressed as ``logs/<run>.log.gz`` (:mod:`validation.finetune.log_files`: committed
  logs are stored compressed) when new; a log whose text the destination already holds (compressed or not)
  is identical (listed under the destination's name); a different log of the same name is kept as it is and
  reported, and of two sources' different logs the first source's is copied; a source holding both forms of
  one log gives one entry when their texts agree and is refused when not.

Nothing is written before every source has been checked. Usage::

    python -m validation.finetune.merge_runs DEST SRC [SRC ...] [--dry-run]

``DEST`` may not exist yet (it is created with the first source's plan).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gelora._io import atomic_write_bytes, atomic_write_json, same_result_file
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.grid import GRID_SCHEMA, held_tasks, join_profiles, read_plan
from validation.finetune.log_files import GZ_SUFFIX, PLAIN_SUFFIX, is_log, log_stem, log_text, write_log

#: sub-directory -> file pattern of what a merge carries over
RESULT_DIRS = {"cells": "*.json", "lr_select": "*.json"}
LOG_DIR = "logs"


@dataclass
class MergeReport:
    """What :func:`merge_runs` did (or would do, with ``dry_run``): relative paths per outcome."""

    copied: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    logs_kept: list[str] = field(default_factory=list)
    logs_dropped: list[str] = field(default_factory=list)
    planned_added: int = 0

    def lines(self) -> list[str]:
        out = [
            f"copied {len(self.copied)} file(s), {len(self.identical)} already identical, "
            f"{self.planned_added} planned cell(s) added to grid.json"
        ]
        out += [f"  + {p}" for p in self.copied]
        out += [f"  kept the destination's {p} (the source's differs)" for p in self.logs_kept]
        out += [f"  kept the first source's {p} (a later source's differs)" for p in self.logs_dropped]
        return out


def result_files(run_dir: Path) -> list[tuple[str, Path, bool]]:
    """``(relative path, path, is_result)`` of every file a merge carries over from ``run_dir``."""
    out = []
    for sub, pattern in RESULT_DIRS.items():
        for p in sorted((run_dir / sub).glob(pattern)):
            if p.is_file():
                out.append((f"{sub}/{p.name}", p, True))
    logs = run_dir / LOG_DIR
    for p in sorted(logs.iterdir()) if logs.is_dir() else []:
        if p.is_file() and is_log(p) and not p.name.startswith("worker-"):
            out.append((f"{LOG_DIR}/{p.name}", p, False))
    return out


def _merge_entries(run_dir: Path) -> list[tuple[str, Path, bool]]:
    """:func:`result_files` with both forms of one log (a compression interrupted) as one entry, the
    compressed one, when their texts agree; refused when not. (``split_runs`` moves both forms as they are.)"""
    files = result_files(run_dir)
    names = {rel for rel, _, _ in files}
    out = []
    for rel, path, is_result in files:
        gz = f"{LOG_DIR}/{log_stem(path.name)}{GZ_SUFFIX}" if not is_result else None
        if gz is not None and rel.endswith(PLAIN_SUFFIX) and gz in names:
            if log_text(path) != log_text(run_dir / gz):
                raise ResultFileError(
                    f"{path} and its .log.gz beside it hold different texts: keep one of them"
                )
            continue
        out.append((rel, path, is_result))
    return out


def merge_runs(dest: str | Path, sources: Sequence[str | Path], *, dry_run: bool = False) -> MergeReport:
    """Merge the run directories ``sources`` into ``dest`` (module docstring).

    Raises
    ------
    ConfigError
        No source, a source that is the destination, or a profile that differs from the destination's.
    ResultFileError
        A source or destination without a valid ``grid.json``, or a result file (cell, selection record)
        that exists in the destination with different contents.
    """
    dest = Path(dest)
    srcs = [Path(s) for s in sources]
    if not srcs:
        raise ConfigError("merge_runs needs at least one source run directory")
    plans = [read_plan(s) for s in srcs]
    for s in srcs:
        if dest.exists() and s.resolve() == dest.resolve():
            raise ConfigError(f"{s} is the destination itself")
    base = read_plan(dest) if (dest / "grid.json").exists() else plans[0]
    # the destination's profile, extended by each source with the overrides of tasks only it holds; a
    # difference in any other setting, or in the overrides of a task both hold, is refused
    base_dir = dest if (dest / "grid.json").exists() else srcs[0]
    profile = join_profiles(
        [(str(dest), base["profile"], held_tasks(base_dir, base))]
        + [(str(s), plan["profile"], held_tasks(s, plan)) for s, plan in zip(srcs, plans, strict=True)],
        "; such runs cannot share a directory",
    )
    report = MergeReport()
    todo: dict[str, Path] = {}
    for s in srcs:
        for src_rel, path, is_result in _merge_entries(s):
            # a log is stored as logs/<run>.log.gz, whichever form the source holds
            stem = None if is_result else log_stem(path.name)
            rel = src_rel if stem is None else f"{LOG_DIR}/{stem}{GZ_SUFFIX}"
            target = todo.get(rel) or dest / rel
            if stem is not None and not target.exists():
                # a log the destination holds uncompressed (written before logs were stored compressed)
                target = dest / LOG_DIR / f"{stem}{PLAIN_SUFFIX}"
            if not target.exists():
                todo[rel] = path
            elif same_result_file(target, path) if is_result else log_text(target) == log_text(path):
                report.identical.append(rel if rel in todo else target.relative_to(dest).as_posix())
            elif is_result:
                raise ResultFileError(
                    f"{s / src_rel} differs from {target}: a result is never overwritten "
                    "(remove one of them by hand if it is known to be wrong)"
                )
            elif rel in todo:
                report.logs_dropped.append(rel)
            else:
                report.logs_kept.append(target.relative_to(dest).as_posix())
    cells = list(base["cells"])
    seen = {(c["task"], c["method"], int(c["seed"])) for c in cells}
    for plan in plans:
        for c in plan["cells"]:
            k = (c["task"], c["method"], int(c["seed"]))
            if k not in seen:
                cells.append({"task": c["task"], "method": c["method"], "seed": int(c["seed"])})
                seen.add(k)
    report.planned_added = len(cells) - len(base["cells"])
    report.copied = sorted(todo)
    if dry_run:
        return report
    for rel, path in sorted(todo.items()):
        if rel.startswith(f"{LOG_DIR}/"):
            write_log(dest / rel, log_text(path))
        else:
            atomic_write_bytes(dest / rel, path.read_bytes())
    stamps = [str(p["updated"]) for p in [base, *plans] if p.get("updated")]
    atomic_write_json(
        dest / "grid.json",
        {
            "schema": GRID_SCHEMA,
            "profile": profile,
            "cells": cells,
            "updated": max(stamps) if stamps else datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.merge_runs",
        description="Merge grid run directories of one profile into one (cells, selection records, logs, "
        "the union of grid.json); never overwrites a result.",
    )
    ap.add_argument("dest", type=Path, help="the run directory to merge into (created if missing)")
    ap.add_argument("sources", type=Path, nargs="+", help="run directories to merge in")
    ap.add_argument("--dry-run", action="store_true", help="check and list, write nothing")
    args = ap.parse_args(argv)
    try:
        report = merge_runs(args.dest, args.sources, dry_run=args.dry_run)
    except (ConfigError, ResultFileError, OSError) as exc:
        # on stderr, as rate_merge's and coverage's refusals: stdout carries only the merge's listing
        print(f"merge_runs: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["MergeReport", "main", "merge_runs", "result_files"]
