"""The convergence rule on synthetic loss curves: plateaued, still falling, noisy plateau, too short."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gelora.errors import ConfigError
from validation.finetune.convergence import (
    boundary_reading,
    cell_convergence,
    convergence,
    heldout_convergence,
    heldout_steps,
    loss_curve,
)


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


# ------------------------------------------------------------------------------ held-out rule
def _held(scores: list[float], total: int = 100) -> list[list[float]]:
    steps = heldout_steps(total)
    assert len(steps) == len(scores)
    return [[s, v] for s, v in zip(steps, scores, strict=True)]


def test_heldout_steps_are_the_fractions_of_the_schedule() -> None:
    assert heldout_steps(100) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert heldout_steps(3) == [1, 2, 3]  # short runs: fewer, unique points
    with pytest.raises(ConfigError):
        heldout_steps(0)
    with pytest.raises(ConfigError):
        heldout_steps(10, (0.0, 1.0))


def test_heldout_score_still_rising_in_the_tail_is_unconverged() -> None:
    # the score gains 3 points over the last 30 % of the steps: a longer schedule would likely buy more
    rec = heldout_convergence(
        _held([0.1, 0.4, 0.6, 0.7, 0.75, 0.78, 0.80, 0.81, 0.82, 0.83]), total_steps=100, metric="pearson"
    )
    assert rec["converged"] is False and rec["basis"] == "heldout"
    assert rec["best_before_tail"] == 0.80 and rec["final"] == 0.83 and rec["gain"] == pytest.approx(0.03)
    assert rec["rise"] == pytest.approx(0.73)


def test_heldout_plateau_and_noisy_plateau_converge() -> None:
    flat = [0.5, 0.8, 0.84, 0.85, 0.855, 0.86, 0.858, 0.861, 0.859, 0.862]
    assert heldout_convergence(_held(flat), total_steps=100, metric="pearson")["converged"] is True
    rng = np.random.default_rng(0)
    noisy = list(0.85 + rng.normal(0.0, 0.004, 10))
    assert heldout_convergence(_held(noisy), total_steps=100, metric="accuracy")["converged"] is True
    # a score that falls in the tail (over-fitting) is converged too: more steps would not help
    over = [0.5, 0.7, 0.8, 0.82, 0.83, 0.83, 0.83, 0.81, 0.80, 0.79]
    assert heldout_convergence(_held(over), total_steps=100, metric="accuracy")["converged"] is True


def test_heldout_tolerance_is_one_point_of_the_metrics_scale() -> None:
    # SQuAD F1 is in percent: a gain of 0.5 (points) is within one point, 1.5 is not
    base = [40.0, 60.0, 70.0, 75.0, 77.0, 78.0, 79.0, 79.0, 79.0]
    assert heldout_convergence(_held([*base, 79.5]), total_steps=100, metric="f1")["converged"] is True
    rec = heldout_convergence(_held([*base, 80.5]), total_steps=100, metric="f1")
    assert rec["converged"] is False and rec["tol"] == 1.0
    assert heldout_convergence(_held([*[b / 100 for b in base], 0.805]), total_steps=100, metric="f1_fake")[
        "tol"
    ] == pytest.approx(0.01)


def test_heldout_rule_refuses_short_or_broken_curves() -> None:
    rec = heldout_convergence([[1, 0.5], [2, 0.5], [3, 0.5]], total_steps=3, metric="accuracy")
    assert rec["converged"] is False and rec["reason"].startswith("only 3")
    bad = _held([0.5] * 9 + [float("nan")])
    assert (
        heldout_convergence(bad, total_steps=100, metric="accuracy")["reason"] == "non-finite held-out score"
    )
    none_final = _held([0.5] * 9 + [0.5])
    none_final[-1][1] = None  # type: ignore[call-overload]
    assert heldout_convergence(none_final, total_steps=100, metric="accuracy")["converged"] is False
    with pytest.raises(ConfigError):
        heldout_convergence(_held([0.5] * 10), total_steps=100, metric="accuracy", tail=1.0)


def test_cell_convergence_uses_the_selection_run_at_the_chosen_rate() -> None:
    loss_rec = convergence(_curve([2.0 - 0.015 * i for i in range(100)]))  # still falling: False
    held_ok = heldout_convergence(
        _held([0.5, 0.8, 0.84, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86]), total_steps=100, metric="pearson"
    )
    held_bad = heldout_convergence(
        _held([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]), total_steps=100, metric="pearson"
    )
    sel = {
        "chosen": 0.001,
        "train_seed": 0,
        "runs": {
            "0.001": {"convergence": {**held_ok, "train_loss": loss_rec}},
            "0.002": {"convergence": {**held_bad, "train_loss": loss_rec}},
        },
    }
    rec = cell_convergence(loss_rec, sel)
    assert rec["basis"] == "heldout" and rec["converged"] is True
    assert rec["heldout"]["learning_rate"] == 0.001 and rec["heldout"]["seed"] == 0
    assert rec["train_loss"] == loss_rec and "train_loss" not in rec["heldout"]
    assert cell_convergence(loss_rec, {**sel, "chosen": 0.002})["converged"] is False
    # no selection, or one from before held-out curves (training-loss records only): the loss rule decides
    for old in (None, {"chosen": 0.001, "runs": {"0.001": {"convergence": loss_rec}}}):
        rec = cell_convergence(loss_rec, old)
        assert rec["basis"] == "train_loss" and rec["converged"] is False and rec["n_points"] == 100


def test_the_boundary_reading_counts_the_evaluation_half_a_step_past_the_cut() -> None:
    """CoLA's selection runs: 6,025 steps, cut at 4,217.5, the 70 % evaluation rounded to 4,218 (in the tail).
    With the curve's maximum there, the rule (as written) says unconverged; the other reading, converged."""
    scores = [0.467, 0.167, 0.520, 0.538, 0.583, 0.558, 0.640, 0.561, 0.591, 0.602]  # MPNet-base AdaLoRA
    rec = heldout_convergence(_held(scores, 6025), total_steps=6025, metric="matthews_correlation")
    assert rec["converged"] is False and rec["gain"] == pytest.approx(0.602 - 0.583)
    b = boundary_reading(rec)
    assert b == {
        "step": 4218,
        "cut": pytest.approx(4217.5),
        "gain": pytest.approx(0.602 - 0.640),
        "converged": True,
    }
    # SQuAD v1.1's 1,377 steps: the evaluation 0.1 step past the cut; GeLoRA's curve stays unconverged
    gelora = [64.8, 80.1, 82.3, 81.6, 81.8, 82.9, 82.8, 84.2, 83.7, 84.1]
    rec = heldout_convergence(_held(gelora, 1377), total_steps=1377, metric="f1")
    b = boundary_reading(rec)
    assert (
        b is not None and b["step"] == 964 and b["gain"] == pytest.approx(84.1 - 82.9) and not b["converged"]
    )
    # the cut on an evaluation (1,000 steps) or the evaluation rounded below it (615: 430 < 430.5): no reading
    for total in (1000, 615):
        rec = heldout_convergence(_held(scores, total), total_steps=total, metric="matthews_correlation")
        assert boundary_reading(rec) is None
    # a record whose cut cannot be rebuilt from its last evaluation (its best before the tail disagrees)
    rec = heldout_convergence(_held(scores, 6025), total_steps=6025, metric="matthews_correlation")
    assert boundary_reading({**rec, "best_before_tail": 0.640}) is None
    # a record without a gain (too few points) has none either
    assert (
        boundary_reading({"curve": [[1, 0.5]], "tail": 0.3, "tol": 0.01, "final": 0.5, "gain": None}) is None
    )
