"""Learning rates chosen honestly: per task and method, on a held-out part of the *training* data.

Before the cells of a (task, method) are trained, :func:`select_learning_rate` trains one model per
learning rate of a small grid (the method's default rate times ``profile.lr_grid``) on the training
subset minus a held-out part (``profile.heldout_fraction`` of it, at most ``profile.heldout_max``
examples; whole articles for SQuAD), with the fixed training seed ``profile.lr_select_seed``, and scores
the held-out part with the task's primary metric. The reported dev/test set is never touched. The
highest score wins (ties: the smaller rate; a rate whose score is undefined, e.g. a diverged run, never
wins). Each score is written as soon as it exists to ``<run_dir>/lr_select/<task>__<method>.json``
(atomically), so an interrupted selection resumes at the next rate and a finished one is reused by every
seed; the file is refused when its grid or held-out split no longer matches the profile.

A one-rate grid (``--lr-grid 1``) chooses nothing, so its cells need not wait: :func:`single_rate` gives
their rate at once, they train beside the selection run and pick its record (the held-out curve that
judges convergence) up when they finish; :func:`selection_jobs` lists the selection runs a grid's workers
start first (:func:`validation.finetune.grid.attempt_cells`), so a grid of n cells with n + 1 workers
trains in one wave instead of two.

A selection run can be held like a cell (``lr_select/<task>__<method>.hold``, written by
:func:`validation.finetune.grid.hold_cell` with the name ``<task>__<method>``): while it is held and not
finished no worker starts it (:func:`selection_jobs` leaves it out, :func:`select_learning_rate` raises
:class:`SelectionHeld`), and the grid does not start the cells that need it.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from gelora._io import RESULT_INDENT, atomic_write_json, read_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.stop import check

SCHEMA = "gelora.validation.lr_select/1"
#: held-out settings two selection records must share for their scores to be compared or reused
SPLIT_KEYS = ("seed", "fraction", "max_n")


#: seconds between looks at a selection another worker is running
_POLL_S = 2.0


def selection_path(run_dir: str | Path, task: str, method: str) -> Path:
    """``<run_dir>/lr_select/<task>__<method>.json``."""
    return Path(run_dir) / "lr_select" / f"{task}__{method}.json"


def selection_hold_path(run_dir: str | Path, task: str, method: str) -> Path:
    """``<run_dir>/lr_select/<task>__<method>.hold``: while it exists, no worker starts the selection run
    (:func:`validation.finetune.grid.hold_cell` writes it, :func:`~validation.finetune.grid.release_cell`
    removes it)."""
    return Path(run_dir) / "lr_select" / f"{task}__{method}.hold"


class SelectionHeld(ConfigError):
    """The selection run a caller would start is held (:func:`selection_hold_path`): nothing was trained."""


def selection_held(run_dir: str | Path, task: str, method: str) -> bool:
    """Whether the selection of ``method`` on ``task`` is held and not finished (a finished one is read
    back, never trained again, so its hold keeps nothing from running)."""
    return selection_hold_path(run_dir, task, method).exists() and not selection_done(run_dir, task, method)


def lr_grid(profile: Any, method: str) -> list[float]:
    """The candidate learning rates of ``method``: its default rate times each factor of ``profile.lr_grid``."""
    from validation.finetune.runner import default_learning_rate

    if not profile.lr_grid or any(not f > 0 for f in profile.lr_grid):
        raise ConfigError(f"lr_grid must be non-empty positive factors, got {list(profile.lr_grid)}")
    base, _ = default_learning_rate(profile, method)
    return sorted({float(f"{base * float(f):.6g}") for f in profile.lr_grid})


def lr_key(lr: float) -> str:
    """The text key of a learning rate in a selection record (6 significant digits)."""
    return f"{lr:.6g}"


def choose(scores: dict[str, float | None]) -> str:
    """The key of the best finite score (ties: the smallest learning rate).

    Raises
    ------
    ConfigError
        No learning rate has a finite score.
    """
    ok = [(float(v), -float(k), k) for k, v in scores.items() if v is not None and math.isfinite(float(v))]
    if not ok:
        raise ConfigError(f"learning-rate selection: no rate gave a finite score ({scores})")
    return max(ok)[2]


def select_learning_rate(
    task: str,
    method: str,
    *,
    profile: Any,
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str | None = None,
    trainer: Any = None,
    wait: bool = True,
) -> dict[str, Any] | None:
    """Choose (or read back) the learning rate of ``method`` on ``task``.

    Parameters
    ----------
    task : str
        Canonical task name.
    method : str
        Method name.
    profile : validation.finetune.runner.Profile
        The task's effective profile (per-task overrides applied); ``lr_grid``, ``heldout_fraction``,
        ``heldout_max``, ``lr_select_seed`` are read.
    run_dir : str or Path
        The grid's run directory (the selection file lives under ``lr_select/``).
    data_dir, device
        As in :func:`validation.finetune.runner.run_cell`.
    trainer : callable, optional
        ``trainer(lr, heldout, work_dir) -> cell dict`` (default
        :func:`validation.finetune.runner.train_and_score`; injectable for tests).
    wait : bool
        When another worker of the grid is running this selection: wait for its file (default) or return
        None at once.

    Returns
    -------
    dict or None
        The ``lr_selection`` record of the cells: ``grid``, ``metric``, ``scores`` (``{"<lr>": score}``),
        ``chosen``, ``heldout`` (``{"n", "of", "seed", "fraction"}``), ``train_seed``, ``done``; None only
        with ``wait=False`` while another worker runs it.

    Raises
    ------
    SelectionHeld
        The selection is not finished and is held (:func:`selection_hold_path`): it is not started, and
        not waited for.
    """
    from validation.finetune.claims import try_claim
    from validation.finetune.metrics import PRIMARY_METRIC
    from validation.finetune.runner import is_main_process, train_and_score, world_size
    from validation.finetune.tasks.base import Heldout

    run_dir = Path(run_dir)
    grid = lr_grid(profile, method)
    metric = PRIMARY_METRIC[task]
    seed = int(profile.lr_select_seed)
    held = Heldout(fraction=float(profile.heldout_fraction), seed=seed, max_n=profile.heldout_max)
    path = selection_path(run_dir, task, method)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "method": method,
        "grid": grid,
        "metric": metric,
        "scores": {},
        "chosen": None,
        "heldout": {"n": None, "of": None, "seed": seed, "fraction": held.fraction, "max_n": held.max_n},
        "train_seed": seed,
        "done": False,
    }

    def refuse_if_held() -> None:
        if selection_hold_path(run_dir, task, method).exists():
            raise SelectionHeld(
                f"the learning-rate selection {task}__{method} is held "
                "(release_cell or waves.sh release lifts it)"
            )

    def run_selection(record: dict[str, Any]) -> dict[str, Any]:
        if path.exists():
            old = _compatible(path, record)
            if old.get("done"):
                return old
            record = old
        nonlocal trainer
        if trainer is None:

            def trainer(lr: float, heldout: Any, work_dir: Path) -> dict[str, Any]:
                return train_and_score(
                    task,
                    method,
                    seed,
                    profile=profile,
                    run_dir=run_dir,
                    work_dir=work_dir,
                    data_dir=data_dir,
                    device=device,
                    learning_rate=lr,
                    heldout=heldout,
                )

        for lr in grid:
            if lr_key(lr) in record["scores"]:
                continue  # finished before an interruption
            work_dir = run_dir / "lr_select" / "work" / f"{task}__{method}__lr{lr_key(lr)}"
            cell = trainer(lr, held, work_dir)
            score = cell["metrics"].get(metric)
            record["scores"][lr_key(lr)] = (
                float(score) if score is not None and math.isfinite(float(score)) else None
            )
            record["runs"] = {
                **record.get("runs", {}),
                lr_key(lr): {
                    "steps": cell["train"]["steps"],
                    "convergence": cell["train"].get("convergence"),
                    "train_time_s": cell["train"].get("train_time_s"),
                    # how the run continued after an interruption (validation.finetune.ckpt_carry verify)
                    "resumed_from": cell["train"].get("resumed_from"),
                    "restarted_discarding": cell["train"].get("restarted_discarding"),
                },
            }
            info = cell.get("data", {}).get("heldout", {})
            record["heldout"].update({"n": info.get("n"), "of": info.get("of")})
            if is_main_process():
                atomic_write_json(path, record, indent=RESULT_INDENT)
                shutil.rmtree(work_dir, ignore_errors=True)
        record["chosen"] = float(choose(record["scores"]))
        record["done"] = True
        if is_main_process():
            atomic_write_json(path, record, indent=RESULT_INDENT)
        return record

    if world_size() == 1:
        # concurrent workers of one grid (validate --workers, shards on a shared directory) need the same
        # selection: one claims it and trains, the others wait for its file (under torchrun every rank
        # trains together instead, so no claim there)
        claim_file = path.with_name(path.stem + ".claim")
        while True:
            done = _finished(path, record)
            if done is not None:
                return done
            refuse_if_held()
            claim = try_claim(claim_file, note="lr selection")
            if claim is not None:
                with claim:
                    return run_selection(record)
            if not wait:
                return None
            check("waiting for another worker's learning-rate selection")  # SIGTERM: stop waiting
            time.sleep(_POLL_S)
    if _finished(path, record) is None:  # every rank sees the same files: all refuse together
        refuse_if_held()
    return run_selection(record)


def single_rate(profile: Any, method: str) -> float | None:
    """The rate of a one-rate selection grid (its cells need not wait for the selection), else None.

    Parameters
    ----------
    profile : validation.finetune.runner.Profile
        The task's effective profile.
    method : str
        Method name.
    """
    if not profile.lr_select:
        return None
    grid = lr_grid(profile, method)
    return grid[0] if len(grid) == 1 else None


def selection_done(run_dir: str | Path, task: str, method: str) -> bool:
    """Whether ``<run_dir>/lr_select/<task>__<method>.json`` holds a finished selection."""
    path = selection_path(run_dir, task, method)
    if not path.exists():
        return False
    rec = read_json(path)
    return isinstance(rec, dict) and bool(rec.get("done"))


def selection_jobs(
    cells: Any, profile: Any, run_dir: str | Path, is_done: Any = None
) -> list[tuple[str, str]]:
    """The one-rate selection runs a grid's worker should start before its cells, in cell order.

    Parameters
    ----------
    cells : sequence of (task, method, seed)
        The cells this worker walks (canonical task names).
    profile : validation.finetune.runner.Profile
        The grid's profile (per-task overrides applied here).
    run_dir : str or Path
        The grid's run directory.
    is_done : callable, optional
        ``is_done(task, method, seed) -> bool``: cells already finished (their selection is not needed).

    Returns
    -------
    list of (task, method)
        Pairs with a one-rate grid, an unfinished cell, no finished selection file and no hold
        (:func:`selection_hold_path`). Multi-rate grids are left to the cells (they must wait for the
        choice anyway).
    """
    jobs: list[tuple[str, str]] = []
    for task, method, seed in cells:
        if (task, method) in jobs or (is_done is not None and is_done(task, method, seed)):
            continue
        if single_rate(profile.for_task(task), method) is None or selection_done(run_dir, task, method):
            continue
        if selection_hold_path(run_dir, task, method).exists():
            continue
        jobs.append((task, method))
    return jobs


def _finished(path: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The finished selection at ``path`` (checked against ``record``'s grid and split), else None."""
    if not path.exists():
        return None
    old = _compatible(path, record)
    return old if old.get("done") else None


def _compatible(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    old = read_json(path)
    if not isinstance(old, dict) or old.get("schema") != SCHEMA:
        raise ResultFileError(f"{path} is not a learning-rate selection (schema {SCHEMA!r} expected)")
    same = old.get("grid") == record["grid"] and all(
        old.get("heldout", {}).get(k) == record["heldout"][k] for k in SPLIT_KEYS
    )
    if not same:
        raise ConfigError(
            f"{path} was made with another grid or held-out split ({old.get('grid')} vs {record['grid']}); "
            "delete it or use another run directory"
        )
    return old


__all__ = [
    "SCHEMA",
    "SPLIT_KEYS",
    "SelectionHeld",
    "choose",
    "lr_grid",
    "lr_key",
    "select_learning_rate",
    "selection_done",
    "selection_held",
    "selection_hold_path",
    "selection_jobs",
    "selection_path",
    "single_rate",
]
