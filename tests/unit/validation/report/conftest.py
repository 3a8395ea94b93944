"""Small, hand-written report sections for the report builder's unit tests (no model, no training)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest


def estimator_section(rel_ours: float = 0.05, rel_peer: float = 0.06) -> dict[str, Any]:
    """An estimator-accuracy result on two manifolds (d = 2 and d = 5) with the given relative errors."""
    cells = []
    manifolds = []
    for name, d in (("sphere", 2), ("cube", 5)):
        manifolds.append(
            {"name": name, "replicate": 0, "intrinsic_dim": d, "ambient_dim": 10, "n": 500, "params": {}}
        )
        for key, rel in (("gelora/twonn", rel_ours), ("skdim/twonn", rel_peer)):
            est = d * (1 + rel)
            cells.append(
                {
                    "manifold": name,
                    "replicate": 0,
                    "estimator": key,
                    "true_dim": d,
                    "seed": 0,
                    "status": "ok",
                    "estimate": est,
                    "ci": [est - 0.2, est + 0.2] if key.startswith("gelora") else None,
                    "abs_error": abs(est - d),
                    "rel_error": rel,
                    "signed_error": est - d,
                    "ci_covers_true": (abs(est - d) <= 0.2) if key.startswith("gelora") else None,
                    "wall_s": 0.01,
                }
            )
        cells.append(
            {
                "manifold": name,
                "replicate": 0,
                "estimator": "skdim/danco",
                "true_dim": d,
                "seed": 0,
                "status": "not run",
                "reason": "skdim not installed (test)",
            }
        )
    from validation.estimators.accuracy import _summarise

    keys = ["gelora/twonn", "skdim/twonn", "skdim/danco"]
    return {
        "schema": "gelora.estimator_accuracy/1",
        "profile": "quick",
        "seed": 0,
        "n_replicates": 1,
        "manifold_source": "test",
        "manifolds": manifolds,
        "estimators": [
            {"key": k, "implementation": k.split("/")[0], "method": k.split("/")[1], "params": {}}
            for k in keys
        ],
        "peers": {"requested": True, "status": "ok", "reason": None},
        "cells": cells,
        "summary": _summarise(cells, keys),
        "wall_s": 0.1,
    }


def profile_section(dims: list[float], half_width: float = 0.3, hidden: int = 384) -> dict[str, Any]:
    ranks = [max(int(-(-(b - a) // 1)), 0) + 1 for a, b in zip(dims[:-1], dims[1:])]
    return {
        "model": "test-encoder",
        "hidden_size": hidden,
        "n_texts": 10,
        "texts_source": "test",
        "estimators": {
            "twonn": {
                "status": "ok",
                "layers": [f"h{i}" for i in range(len(dims))],
                "dimension": dims,
                "ci_low": [x - half_width for x in dims],
                "ci_high": [x + half_width for x in dims],
                "ranks": ranks,
                "rank_layers": [f"block {i}" for i in range(len(ranks))],
                "budget": 1000,
                "wall_s": 1.0,
            },
            "danco": {"status": "error", "reason": "DegenerateDataError: test"},
        },
    }


def grid_section(
    gelora: float, lora: float, std: float | None, n: int, t_gelora: float = 10.0, t_ada: float = 20.0
) -> dict[str, Any]:
    def row(method: str, mean: float | None, wall: float | None, reason: str | None = None) -> dict[str, Any]:
        return {
            "task": "stsb",
            "method": method,
            "model": "test-encoder",
            "metric": "pearson",
            "mean": mean,
            "std": std,
            "n_seeds": n,
            "values": None,
            "budget": 100,
            "trainable_adapter_params": 100,
            "wall_s": wall,
            "reason": reason,
        }

    return {
        "model": "test-encoder",
        "source": "test",
        "rows": [
            row("adalora", lora, t_ada),
            row("gelora", gelora, t_gelora),
            row("lora", lora, 5.0),
            row("geolora", None, None, "failed: RuntimeError: boom"),
        ],
        "ratios": [],
        "notes": ["stsb / geolora / seed 0: failed: RuntimeError: boom"],
    }


def sec(data: Any, status: str = "ok", reason: str | None = None) -> dict[str, Any]:
    return {"status": status, "reason": reason, "wall_s": 0.5, "origin": "computed", "data": data}


ENV = {
    "python": "3.x",
    "python_implementation": "CPython",
    "platform": "test-os",
    "cpu": "test-cpu",
    "cpu_count": 2,
    "omp_num_threads": "1",
    "gpu": {"available": False, "devices": [], "driver": None, "cuda": None},
    "packages": {"numpy": "1"},
    "git": {"commit": None, "dirty": None, "note": "test"},
    "seeds": {"estimators": 0},
    "commands": ["gelora report --profile quick --out X"],
    "files": {"model": {"path": "/x/model.safetensors", "sha256": "ab" * 32, "bytes": 3}},
}


def make_report(**overrides: dict[str, Any]) -> dict[str, Any]:
    """A complete report dictionary; ``overrides`` replace whole section records."""
    from validation.report.build import assemble_report

    sections = {
        "estimators": sec(estimator_section()),
        "theory": sec(
            {
                "checks": [
                    {
                        "name": "lower bound",
                        "property": "rank >= gap",
                        "passed": True,
                        "worst_margin": 0.5,
                        "n_cases": 20,
                        "details": "",
                    },
                    {
                        "name": "rank rule",
                        "property": "r = max(gap,0)+1",
                        "passed": True,
                        "worst_margin": 0.0,
                        "n_cases": 5,
                        "details": None,
                    },
                ]
            }
        ),
        "model_profile": sec(profile_section([3.0, 5.0, 9.0, 8.0])),
        "grid": sec(grid_section(0.80, 0.70, 0.01, 3)),
        "trajectories": sec(None, "not run", "no GeoLoRA cell in this grid"),
    }
    sections.update(overrides)
    return assemble_report(
        sections, profile="quick", seed=0, environment=copy.deepcopy(ENV), generated_at="2026-01-01T00:00:00Z"
    )


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture
def f() -> SimpleNamespace:
    """The section factories of this file (test modules get them through this fixture)."""
    return SimpleNamespace(
        estimator_section=estimator_section,
        profile_section=profile_section,
        grid_section=grid_section,
        sec=sec,
        make_report=make_report,
        env=ENV,
    )
