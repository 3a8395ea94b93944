"""One-rate runs of a grid merged into the run its learning-rate selection would have made.

A paper-protocol grid with ``--lr-grid 0.5,1,2`` trains, per task and method, one selection run per rate
(seed ``lr_select_seed`` on the training part, scored on the held-out part), picks the best and only then
trains the seeds at that rate: two waves of training. Launched instead as one grid per rate
(``--lr-grid 0.5``, ``--lr-grid 1``, ``--lr-grid 2`` in separate run directories, all in one wave), every
rate's selection run and seeds exist; :func:`merge_rate_runs` then writes the run directory the multi-rate
grid would have written: per (task, method) the union of the selection scores, the rate
:func:`validation.finetune.lr_select.choose` picks from them, and the cells of that rate with the merged
``lr_selection`` record and their convergence re-judged on the chosen rate's held-out curve. Cells at the
rates not chosen are not copied (they stay in their own directories: a dev-set score at a rate that was not
selected must not enter a verdict). The choice uses held-out scores only, exactly as the grid would.

Usage::

    python -m validation.finetune.rate_merge OUT RUN_DIR [RUN_DIR ...] [--tasks stsb] [--methods gelora,geolora] [--replace]

The run directories must share their profile except ``lr_grid`` (compared as ``merge_runs`` compares
them: the settings that change results, per-task overrides only for the tasks both runs hold) and use the
same held-out split; a rate found in two of them, a (task, method) cell whose selection is unfinished, or a
method whose rate factors differ from the union of those of its task's methods in these directories (a grid
not yet run; full fine-tuning and head only, the ceiling and the floor, train at one rate) is refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import RESULT_INDENT, atomic_write_json, read_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.convergence import cell_convergence
from validation.finetune.grid import held_tasks, join_profiles, read_plan
from validation.finetune.lr_select import SCHEMA as SELECT_SCHEMA
from validation.finetune.lr_select import SPLIT_KEYS, choose, lr_key
from validation.finetune.runner import cell_name

GRID_FILE = "grid.json"


#: name parts of the hidden siblings of OUT while it is built and swapped in (``.selected.rate_merge-...``)
_BUILDING = ".rate_merge-"
_REPLACED = ".replaced-"


def _grid(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / GRID_FILE).exists():
        raise ConfigError(f"{run_dir} is not a grid run directory (no {GRID_FILE})")
    return read_plan(run_dir)


def _common_profile(
    grids: Sequence[dict[str, Any]], names: Sequence[str], dirs: Sequence[Path]
) -> dict[str, Any]:
    """The shared profile with ``lr_grid`` the sorted union of the runs' factors.

    Compared as :func:`validation.finetune.merge_runs.merge_runs` compares them (every setting that changes
    results, per-task overrides only for the tasks both runs hold: :func:`validation.finetune.grid.joined_profile`),
    ``lr_grid`` aside: a schedule changed for another task (e.g. QNLI's) does not keep two rates of STS-B apart.
    """

    def no_grid(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k != "lr_grid"}

    profile = join_profiles(
        [(n, no_grid(g["profile"]), held_tasks(d, g)) for n, g, d in zip(names, grids, dirs, strict=True)],
        " (besides lr_grid, only other tasks' overrides may differ)",
    )
    if not all(g["profile"].get("lr_select") for g in grids):
        raise ConfigError("every run must select its learning rate (profile lr_select); nothing to merge")
    factors = sorted({float(f) for g in grids for f in g["profile"].get("lr_grid") or []})
    # the first run's key order, so a merge of unchanged runs writes the profile as before
    order = [k for k in grids[0]["profile"] if k in profile or k == "lr_grid"]
    return {**{k: factors if k == "lr_grid" else profile[k] for k in order}, **profile}


def _selections(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted((run_dir / "lr_select").glob("*__*.json")):
        rec = read_json(path)
        if not isinstance(rec, dict) or rec.get("schema") != SELECT_SCHEMA:
            raise ResultFileError(f"{path} is not a learning-rate selection")
        out[(str(rec["task"]), str(rec["method"]))] = rec
    return out


def merge_selections(records: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """One selection record from those of several runs of the same (task, method).

    Parameters
    ----------
    records : sequence of dict
        Finished ``lr_selection`` records (:func:`validation.finetune.lr_select.select_learning_rate`).
    sources : sequence of str
        A name per record (its run directory), recorded under ``merged_from``.

    Returns
    -------
    dict
        The record with ``grid``, ``scores`` and ``runs`` the unions, ``chosen`` re-picked by
        :func:`validation.finetune.lr_select.choose`, ``merged_from`` ``{source: [rates]}``.

    Raises
    ------
    ConfigError
        Unfinished selections, another metric, task, method or held-out split, or a rate in two records.
    """
    first = records[0]
    grid: list[float] = []
    scores: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    merged_from: dict[str, list[float]] = {}
    for rec, src in zip(records, sources, strict=True):
        if not rec.get("done"):
            raise ConfigError(f"{src}: the selection of {rec.get('task')}/{rec.get('method')} is unfinished")
        for key in ("task", "method", "metric", "train_seed"):
            if rec.get(key) != first.get(key):
                raise ConfigError(f"{src}: {key} {rec.get(key)!r} differs from {first.get(key)!r}")
        held, held0 = rec.get("heldout") or {}, first.get("heldout") or {}
        if any(held.get(k) != held0.get(k) for k in SPLIT_KEYS):
            raise ConfigError(f"{src}: another held-out split ({held} vs {held0})")
        for lr in rec["grid"]:
            if lr_key(float(lr)) in scores:
                raise ConfigError(f"{src}: rate {lr} of {rec['task']}/{rec['method']} also in another run")
            grid.append(float(lr))
            scores[lr_key(float(lr))] = rec["scores"].get(lr_key(float(lr)))
            if lr_key(float(lr)) in (rec.get("runs") or {}):
                runs[lr_key(float(lr))] = rec["runs"][lr_key(float(lr))]
        merged_from[src] = [float(x) for x in rec["grid"]]
    return {
        **first,
        "grid": sorted(grid),
        "scores": {lr_key(x): scores[lr_key(x)] for x in sorted(grid)},
        "runs": {lr_key(x): runs[lr_key(x)] for x in sorted(grid) if lr_key(x) in runs},
        "chosen": float(choose(scores)),
        "done": True,
        "merged_from": merged_from,
    }


def _rejudged(cell: dict[str, Any], selection: dict[str, Any]) -> dict[str, Any]:
    """The cell with the merged selection and its convergence judged on the chosen rate's curve."""
    conv = (cell.get("train") or {}).get("convergence") or {}
    raw = (
        conv.get("train_loss")
        if conv.get("basis") == "heldout"
        else {k: v for k, v in conv.items() if k != "basis"}
    )
    train = {**cell["train"], "convergence": cell_convergence(dict(raw or {}), selection)}
    return {**cell, "train": train, "lr_selection": selection}


#: methods trained at one rate by design, whatever the others' rate grid: the ceiling and the floor
SINGLE_RATE_METHODS: tuple[str, ...] = ("full", "head_only")


def _record_factors(rec: dict[str, Any], dir_factors: Sequence[float], where: Path) -> list[float]:
    """The factors of the default rate a finished selection record tried: its directory's ``lr_grid`` (a rate
    is the method's default times a factor, so the sorted rates match the sorted factors one to one)."""
    rates = rec.get("grid") or []
    if len(rates) != len(dir_factors):
        raise ConfigError(
            f"{where}: the selection of {rec.get('task')}/{rec.get('method')} tried {len(rates)} rate(s), its "
            f"directory's lr_grid has {len(dir_factors)} factor(s) {list(dir_factors)}: cannot tell its factors"
        )
    return sorted(float(f) for f in dir_factors)


def _refuse_partial_selections(
    every: dict[tuple[str, str], list[tuple[dict[str, Any], Path]]],
    wanted: Sequence[tuple[str, str]],
    factors_of: dict[Path, list[float]],
) -> None:
    """Refuse a wanted (task, method) whose selection would use other rate factors than the union of the
    factors of every method of its task in these directories (``every``: all selections, before ``--methods``
    narrows them): the multi-rate grid's selection with a rate left out, a one-rate grid still to run. Full
    fine-tuning and head only (:data:`SINGLE_RATE_METHODS`) train at one rate: they pass and do not count."""
    held = {
        key: sorted({f for rec, d in recs for f in _record_factors(rec, factors_of[d], d)})
        for key, recs in every.items()
    }
    for task, method in sorted(wanted):
        if method in SINGLE_RATE_METHODS:
            continue
        union = sorted(
            {f for (t, m), fs in held.items() if t == task and m not in SINGLE_RATE_METHODS for f in fs}
        )
        have = held[(task, method)]
        if have != union:
            missing = [f for f in union if f not in have]
            raise ConfigError(
                f"{task}/{method}: its selection would use the rate factors {have}, the methods of {task} in "
                f"these directories have {union}; run its {missing} grid first"
            )


def merge_rate_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    replace: bool = False,
) -> list[dict[str, Any]]:
    """Write ``out_dir``: the grid a multi-rate selection over the runs' rates would have produced.

    The directory is built beside ``out_dir`` (hidden, ``.NAME.rate_merge-*``) and renamed into place only
    once every file is written, so a refused or failed merge leaves ``out_dir`` as it was (absent, or the
    previous merge with ``replace``). Replacing takes two renames (the previous merge aside as
    ``.NAME.replaced-PID``, the new one in); a process killed between them leaves both hidden directories and
    no ``out_dir``, and the next call refuses, naming them, until one is put back.

    Parameters
    ----------
    run_dirs : sequence of path
        Grid run directories of one profile that differ only in ``lr_grid`` (and the overrides of
        tasks only one of them holds).
    out_dir : path
        New run directory (must not exist, or be empty, unless ``replace``).
    tasks, methods : sequence of str, optional
        Only these (default: every (task, method) with a selection record).
    replace : bool
        Replace an existing ``out_dir`` whole, once the new merge is complete; only a previous merge (its
        ``grid.json`` has ``merged_from``) is replaced.

    Returns
    -------
    list of dict
        Per (task, method): ``task``, ``method``, ``scores``, ``chosen``, ``from`` (the run whose cells were
        taken), ``cells`` (seeds copied), ``failed`` (seeds with only a failure record).

    Raises
    ------
    ConfigError
        See :func:`merge_selections`; also profiles differing beyond ``lr_grid`` (see the module
        docstring), an existing non-empty ``out_dir`` without ``replace`` or one that is not a previous merge,
        ``out_dir`` a symbolic link, equal to, inside or holding a source, leftovers of an interrupted merge,
        nothing to merge, or a method whose rate factors differ from its task's
        (:func:`_refuse_partial_selections`).
    """
    dirs = [Path(d) for d in run_dirs]
    given = Path(out_dir)
    if given.is_symlink():
        raise ConfigError(f"{given} is a symbolic link; give the directory itself")
    out = Path(os.path.abspath(given))  # '.' and '..' resolved, so the name and the parent are real
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{given} is not a directory")
    dst = out.resolve()
    for d in dirs:
        src = d.resolve()
        if src == dst or src in dst.parents or dst in src.parents:
            raise ConfigError(
                f"{given} is, holds or lies inside the merged run directory {d}; merge elsewhere"
            )
    if out.exists() and any(out.iterdir()):
        grid = out / GRID_FILE
        if not replace:
            what = "already holds a grid" if grid.exists() else "exists and is not empty"
            raise ConfigError(
                f"{given} {what}; merge into a new directory, or replace a previous merge (--replace)"
            )
        if not grid.is_file() or "merged_from" not in read_json(grid):
            raise ConfigError(
                f"{given} is not a previous rate merge (no merged_from in its grid.json); not replaced"
            )
    leftovers = sorted(
        p.name
        for pat in (f".{out.name}{_BUILDING}*", f".{out.name}{_REPLACED}*")
        for p in out.parent.glob(pat)
    )
    if leftovers:
        raise ConfigError(
            f"an earlier rate_merge into {given} was interrupted and left {leftovers} in {out.parent}: if "
            f"{given} is missing, the {_REPLACED}* directory is the previous merge and the {_BUILDING}* one "
            "the new one, complete if it holds grid.json; put one back as the directory and delete the rest"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}{_BUILDING}", dir=out.parent))
    try:
        summary = _merge_into(dirs, work, tasks, methods)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if not out.exists():
        work.rename(out)
        return summary
    old = out.parent / f".{out.name}{_REPLACED}{os.getpid()}"
    out.rename(old)
    try:
        work.rename(out)
    except BaseException:
        old.rename(out)  # the previous merge back in place
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(old)
    return summary


def _merge_into(
    dirs: Sequence[Path],
    out: Path,
    tasks: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """:func:`merge_rate_runs`' work, written into the new (empty) directory ``out``."""
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run directories need distinct names, got {names}")
    grids = [_grid(d) for d in dirs]
    profile = _common_profile(grids, names, dirs)
    every: dict[tuple[str, str], list[tuple[dict[str, Any], Path]]] = {}
    for d in dirs:
        for key, rec in _selections(d).items():
            if tasks is None or key[0] in tasks:
                every.setdefault(key, []).append((rec, d))
    found = {key: recs for key, recs in every.items() if methods is None or key[1] in methods}
    if not found:
        raise ConfigError("no finished selection of the requested tasks and methods in these runs")
    factors_of = {
        d: [float(f) for f in g["profile"].get("lr_grid") or []] for d, g in zip(dirs, grids, strict=True)
    }
    _refuse_partial_selections(every, list(found), factors_of)
    plan = [c for g in grids for c in g["cells"]]
    cells_out: list[dict[str, Any]] = []
    summary = []
    for (task, method), recs in sorted(found.items()):
        sel = merge_selections([r for r, _ in recs], [d.name for _, d in recs])
        src = next(d for r, d in recs if sel["chosen"] in [float(x) for x in r["grid"]])
        seeds = sorted({int(c["seed"]) for c in plan if c["task"] == task and c["method"] == method})
        copied, failed = [], []
        for seed in seeds:
            name = cell_name(task, method, seed)
            cell_file = src / "cells" / f"{name}.json"
            fail_file = src / "cells" / f"{name}.failed.json"
            if cell_file.exists():
                atomic_write_json(
                    out / "cells" / f"{name}.json", _rejudged(read_json(cell_file), sel), indent=RESULT_INDENT
                )
                copied.append(seed)
            elif fail_file.exists():
                (out / "cells").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(fail_file, out / "cells" / f"{name}.failed.json")
                failed.append(seed)
            cells_out.append({"task": task, "method": method, "seed": seed})
        atomic_write_json(out / "lr_select" / f"{task}__{method}.json", sel, indent=RESULT_INDENT)
        summary.append(
            {
                "task": task,
                "method": method,
                "scores": sel["scores"],
                "chosen": sel["chosen"],
                "from": src.name,
                "cells": copied,
                "failed": failed,
            }
        )
    atomic_write_json(
        out / GRID_FILE,
        {
            "schema": grids[0]["schema"],
            "profile": profile,
            "cells": cells_out,
            "updated": max(str(g.get("updated") or "") for g in grids),
            "merged_from": names,
        },
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: merge, then print each (task, method)'s scores and choice; a refused merge prints its
    reason and exits 2, leaving OUT as it was."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--tasks", help="comma-separated (default: all)")
    p.add_argument("--methods", help="comma-separated (default: all)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace OUT (a previous merge) whole, once the new merge is complete; a refused merge leaves it",
    )
    a = p.parse_args(argv)
    try:
        rows = merge_rate_runs(
            a.runs,
            a.out,
            tasks=a.tasks.split(",") if a.tasks else None,
            methods=a.methods.split(",") if a.methods else None,
            replace=a.replace,
        )
    except (ConfigError, ResultFileError, OSError) as exc:
        print(f"rate_merge: error: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        scores = ", ".join(f"{k}: {v:.4f}" if v is not None else f"{k}: none" for k, v in r["scores"].items())
        print(
            f"{r['task']}/{r['method']}: held-out {scores} -> {r['chosen']:g} (cells of {r['from']}: "
            f"seeds {r['cells']}{'; failed ' + str(r['failed']) if r['failed'] else ''})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["merge_rate_runs", "merge_selections"]
