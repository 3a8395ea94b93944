"""validation.finetune.lr_sensitivity: merging runs by learning rate, failed seeds, the oracle best per task."""

from __future__ import annotations

import pytest

from gelora.errors import ConfigError
from validation.finetune.lr_sensitivity import best, collect, render_markdown


def fake_summary(lr: float, factors: dict[str, float], table: dict, missing: list | None = None) -> dict:
    return {
        "profile": {"learning_rate": lr, "lr_multipliers": factors},
        "primary_metric": {"stsb": "pearson", "rte": "accuracy"},
        "table": {
            task: {m: {"metrics": {metric: stats}} for m, (metric, stats) in by_m.items()}
            for task, by_m in table.items()
        },
        "missing": missing or [],
    }


def stats(mean: float, std: float = 0.01, n: int = 3) -> dict:
    return {"mean": mean, "std": std, "n": n}


RUNS = {
    "a": fake_summary(
        5e-4,
        {"adalora": 10.0},
        {
            "stsb": {"lora": ("pearson", stats(0.7)), "adalora": ("pearson", stats(0.8))},
            "rte": {"lora": ("accuracy", stats(0.54))},
        },
    ),
    "b": fake_summary(
        5e-4,
        {"lora": 4.0},
        {"stsb": {"lora": ("pearson", stats(0.9, n=1))}, "rte": {"lora": ("accuracy", stats(0.56))}},
        missing=[
            {"task": "stsb", "method": "lora", "seed": 1, "reason": "failed: InvalidInputError: NaN"},
            {"task": "stsb", "method": "lora", "seed": 2, "reason": "failed: InvalidInputError: NaN"},
            {"task": "rte", "method": "lora", "seed": 3, "reason": "not run"},
        ],
    ),
}


def test_rows_carry_each_methods_learning_rate_and_failed_seeds():
    rows = collect(["a", "b"], summarise=lambda p: RUNS[str(p)])
    by = {(r["task"], r["method"], r["lr"]): r for r in rows}
    assert by[("stsb", "adalora", 5e-3)]["factor"] == 10.0
    assert by[("stsb", "lora", 2e-3)]["failed"] == 2 and by[("stsb", "lora", 2e-3)]["n"] == 1
    assert by[("rte", "lora", 2e-3)]["failed"] == 0  # "not run" is not a failure
    # the oracle best skips the configuration in which seeds diverged, even with the highest mean
    b = {(r["method"], r["task"]): r for r in best(rows)}
    assert b[("lora", "stsb")]["lr"] == pytest.approx(5e-4)
    assert b[("lora", "rte")]["lr"] == pytest.approx(2e-3)
    md = render_markdown(rows)
    assert "0.900 (2 of 3 diverged)" in md and "| lora | 0.560 at 0.002 | 0.700 at 0.0005 | 0.630 |" in md


def test_the_same_configuration_in_two_runs_is_refused():
    with pytest.raises(ConfigError, match="appears in both"):
        collect(["a", "a"], summarise=lambda p: RUNS[str(p)])
