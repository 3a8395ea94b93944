"""The convergence rule on synthetic loss curves: plateaued, still falling, noisy plateau, too short."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gelora.errors import ConfigError
from validation.finetune.convergence import convergence, loss_curve


def _curve(losses: list[float]) -> list[list[float]]:
    return [[i + 1, float(v)] for i, v in enumerate(losses)]


def test_plateaued_curve_has_converged() -> None:
    losses = [2.0 * math.exp(-i / 5) + 0.3 for i in range(100)]  # flat after ~30 points
    rec = convergence(_curve(losses))
    assert rec["converged"] is True
    assert rec["n_points"] == 100 and rec["window"] == 10
    assert abs(rec["relative_drop"]) < 0.02


def test_still_falling_curve_has_not_converged() -> None:
    losses = [2.0 - 0.015 * i for i in range(100)]  # linear descent: 0.15 per window, ~30 % of the tail
    rec = convergence(_curve(losses))
    assert rec["converged"] is False
    assert rec["relative_drop"] > 0.02
    assert "reason" not in rec


def test_noisy_plateau_has_converged_but_noisy_descent_has_not() -> None:
    rng = np.random.default_rng(0)
    # noise sd 0.05 on a plateau at 1.0: the window means (10 points) have sd ~0.016, their difference
    # ~0.022, so a drop above max(0.02, 0.01) happens with probability ~18 % for an arbitrary seed;
    # seed 0 is fixed, the check is deterministic
    flat = 1.0 + 0.05 * rng.standard_normal(100)
    assert convergence(_curve(list(flat)))["converged"] is True
    falling = np.linspace(2.0, 1.0, 100) + 0.05 * rng.standard_normal(100)
    assert convergence(_curve(list(falling)))["converged"] is False


def test_rising_tail_counts_as_converged_and_tiny_losses_use_atol() -> None:
    assert convergence(_curve([1.0] * 80 + [1.2] * 20))["converged"] is True
    # 0.004 -> 0.002 is a 50 % relative drop but below the absolute tolerance 0.01
    assert convergence(_curve([0.004] * 90 + [0.002] * 10))["converged"] is True


def test_too_few_points_are_never_converged() -> None:
    rec = convergence(_curve([1.0] * 10))
    assert rec["converged"] is False and "10 logged points" in rec["reason"]
    rec = convergence(_curve([1.0]))
    assert rec["converged"] is False and rec["reason"] == "too few logged points"
    assert convergence([])["converged"] is False


def test_non_finite_tail_is_not_converged() -> None:
    rec = convergence(_curve([1.0] * 99 + [float("nan")]))
    assert rec["converged"] is False and rec["reason"] == "non-finite loss"


def test_bad_rule_parameters_raise() -> None:
    with pytest.raises(ConfigError):
        convergence(_curve([1.0] * 30), window_fraction=0.9)
    with pytest.raises(ConfigError):
        convergence(_curve([1.0] * 30), min_window=5, min_points=6)


def test_loss_curve_keeps_training_loss_entries_only() -> None:
    history = [
        {"loss": 0.9, "step": 5, "epoch": 0.5},
        {"eval_loss": 0.8, "step": 5},
        {"loss": 0.7, "step": 10},
        {"train_loss": 0.8, "step": 10},
    ]
    assert loss_curve(history) == [[5, 0.9], [10, 0.7]]
