"""Fake grid run directories (grid.json + cell files carrying the CONTRACT keys) for verdict tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json
from validation.finetune.grid import GRID_SCHEMA
from validation.finetune.metrics import PRIMARY_METRIC
from validation.finetune.runner import CELL_SCHEMA, cell_path

#: sentinel: the cell carries no convergence record at all
MISSING = object()


def write_cell(
    run_dir: Path,
    task: str,
    method: str,
    seed: int,
    score: float,
    *,
    profile: str = "paper",
    converged: Any = True,
    loss_curve: Sequence[Sequence[float]] | None = None,
    lr_selection: Mapping[str, Any] | None = None,
    model: str = "test-model",
) -> Path:
    """One cell result file as run_cell writes it (only the keys the summary and verdicts read)."""
    metric = PRIMARY_METRIC[task]
    train: dict[str, Any] = {"steps": 10, "train_loss": 0.5 + seed / 10, "learning_rate": 1e-3}
    if converged is not MISSING:
        train["convergence"] = {"converged": converged, "rule": "test rule", "window": 3}
    if loss_curve is not None:
        train["loss_curve"] = [list(p) for p in loss_curve]
    cell: dict[str, Any] = {
        "schema": CELL_SCHEMA,
        "task": task,
        "method": method,
        "seed": seed,
        "status": "ok",
        "metrics": {metric: score},
        "primary_metric": metric,
        "primary": score,
        "eval_loss": {"loss": 0.4},
        "budget": {"budget_params": 100, "trainable_adapter_params": 100, "within_budget": True},
        "method_info": {},
        "train": train,
        "config": {"profile": {"name": profile, "lora_r": 8, "model": model}, "model": model},
        "wall_time_s": 1.0 + seed,
    }
    if lr_selection is not None:
        cell["lr_selection"] = dict(lr_selection)
    path = cell_path(run_dir, task, method, seed)
    atomic_write_json(path, cell)
    return path


def write_grid(
    run_dir: Path,
    scores: Mapping[str, Mapping[str, Sequence[float | None]]],
    *,
    profile: str = "paper",
    converged: Mapping[tuple[str, str, int], Any] | None = None,
    epochs: float = 3.0,
    curves: bool = False,
    lr_selection: Mapping[str, Any] | Callable[[str, str, int], Mapping[str, Any] | None] | None = None,
    model: str = "test-model",
) -> Path:
    """A grid: ``scores[task][method]`` lists one score per seed 0, 1, ... (``None``: the cell is planned but
    has no result). ``converged[(task, method, seed)]`` overrides the default ``True`` (``MISSING``: no
    record). ``lr_selection`` is written into every cell (a callable: ``lr_selection(task, method, seed)``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    planned = []
    for t, by in scores.items():
        for m, vals in by.items():
            for s, v in enumerate(vals):
                planned.append({"task": t, "method": m, "seed": s})
                if v is None:
                    continue
                conv = (converged or {}).get((t, m, s), True)
                curve = [[k * 10, 2.0 / (k + 1) + s * 0.01] for k in range(12)] if curves else None
                write_cell(
                    run_dir,
                    t,
                    m,
                    s,
                    v,
                    profile=profile,
                    converged=conv,
                    loss_curve=curve,
                    lr_selection=lr_selection(t, m, s) if callable(lr_selection) else lr_selection,
                    model=model,
                )
    atomic_write_json(
        run_dir / "grid.json",
        {
            "schema": GRID_SCHEMA,
            "profile": {"name": profile, "model": model, "epochs": epochs, "lora_r": 8},
            "cells": planned,
        },
    )
    return run_dir
