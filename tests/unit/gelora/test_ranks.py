"""The rank rule r_i = max(d_{i+1} - d_i, 0) + offset, its block mapping, and budget matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gelora.errors import ConfigError, InvalidInputError
from gelora.ranks import (
    block_gaps,
    lora_parameter_count,
    match_budget,
    ranks_from_dimensions,
    uniform_budget,
)


def test_block_i_gets_gap_from_hidden_state_i_to_i_plus_1():
    # hidden states h0 (embeddings) .. h3; block 0 maps h0->h1 (+2), block 1 h1->h2 (-0.5), block 2 h2->h3 (+3.5)
    dims = [1.0, 3.0, 2.5, 6.0]
    np.testing.assert_allclose(block_gaps(dims), [2.0, -0.5, 3.5])
    assert ranks_from_dimensions(dims) == [3, 1, 5]  # ceil: 2 -> 2+1, max(-0.5, 0) -> 0+1, 3.5 -> 4+1
    # reversing the profile moves the increases to other blocks: the mapping is not symmetric
    assert ranks_from_dimensions(dims[::-1]) == [1, 2, 1]  # gaps -3.5, +0.5, -2


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [("ceil", [3, 1, 5, 2]), ("floor", [3, 1, 4, 1]), ("round", [3, 1, 5, 1])],
)
def test_rounding_of_the_real_gap(rounding, expected):
    dims = [1.0, 3.0, 2.5, 6.0, 6.4]  # gaps 2, -0.5, 3.5, 0.4
    assert ranks_from_dimensions(dims, rounding=rounding) == expected


def test_round_halves_up_and_float_noise_is_not_ceiled():
    assert ranks_from_dimensions([0.0, 2.5], rounding="round") == [4]
    # 0.1 + 0.2 - 0.1 is not exactly 0.2 in floating point; a gap of 2 + 1e-15 must stay 2
    assert ranks_from_dimensions([1.0, 3.0 + 1e-15]) == [3]
    assert ranks_from_dimensions([1.0, 3.0 - 1e-15], rounding="floor") == [3]


def test_offset():
    assert ranks_from_dimensions([2.0, 5.0, 4.0], offset=4) == [7, 4]
    assert ranks_from_dimensions([2.0, 5.0, 6.0], offset=0) == [3, 1]
    with pytest.raises(ConfigError, match="rank 0"):
        ranks_from_dimensions([2.0, 5.0, 4.0], offset=0)
    with pytest.raises(ConfigError, match="offset"):
        ranks_from_dimensions([2.0, 5.0], offset=-1)


def test_ci_upper_gap_uses_upper_of_next_minus_lower_of_current():
    dims = [4.0, 4.5, 4.2]
    cis = [(3.5, 4.6), (4.0, 5.1), (3.9, 4.6)]
    np.testing.assert_allclose(block_gaps(dims, cis=cis, use_ci_upper=True), [5.1 - 3.5, 4.6 - 4.0])
    assert ranks_from_dimensions(dims, cis=cis, use_ci_upper=True) == [3, 2]  # ceil(1.6)+1, ceil(0.6)+1
    assert ranks_from_dimensions(dims) == [2, 1]  # the point estimates alone
    with pytest.raises(ConfigError, match="confidence intervals"):
        block_gaps(dims, use_ci_upper=True)
    with pytest.raises(InvalidInputError, match="shape"):
        block_gaps(dims, cis=cis[:2], use_ci_upper=True)
    with pytest.raises(InvalidInputError, match="low <= high"):
        block_gaps(dims, cis=[(1, 0), (0, 1), (0, 1)], use_ci_upper=True)


@pytest.mark.parametrize("dims", [[], [3.0], [[1.0, 2.0]], [1.0, math.nan], [1.0, math.inf]])
def test_bad_dimensions(dims):
    with pytest.raises(InvalidInputError):
        ranks_from_dimensions(dims)


def test_unknown_rounding():
    with pytest.raises(ConfigError, match="rounding"):
        ranks_from_dimensions([1.0, 2.0], rounding="nearest")


# ------------------------------------------------------------------------------------------ budgets
def test_uniform_budget_and_parameter_count():
    costs = [100, 100, 250]
    assert uniform_budget(costs, 8) == 8 * 450
    assert lora_parameter_count([1, 2, 3], costs) == 100 + 200 + 750
    with pytest.raises(ConfigError):
        uniform_budget(costs, 0)
    with pytest.raises(InvalidInputError):
        lora_parameter_count([1, 2], costs)


def test_budget_scaling_keeps_proportions_exactly_when_possible():
    alloc = match_budget([1, 2, 4], [10, 10, 10], target=140)  # 14 units -> x = 2, 4, 8
    assert alloc.ranks == [2, 4, 8]
    assert alloc.achieved == 140
    assert alloc.scale == pytest.approx(2.0)
    assert alloc.original_ranks == [1, 2, 4]


def test_budget_largest_remainder():
    # 10 units over ranks 1:1:1 -> 3.33 each: floors 3,3,3 (9 units) + 1 to the first largest remainder
    alloc = match_budget([1, 1, 1], [7, 7, 7], target=70)
    assert sorted(alloc.ranks) == [3, 3, 4]
    assert alloc.achieved == 70
    # not reachable exactly: 75 is not a multiple of 7 -> closest not exceeding (70)
    assert match_budget([1, 1, 1], [7, 7, 7], target=75).achieved == 70


def test_budget_minimum_rank_is_one():
    alloc = match_budget([1, 1, 100], [1, 1, 1], target=12)
    assert min(alloc.ranks) == 1
    assert alloc.achieved <= 12
    assert alloc.ranks[2] == 10


def test_budget_below_minimum_and_bad_input():
    with pytest.raises(ConfigError, match="minimum 30"):
        match_budget([1, 2, 3], [10, 10, 10], target=29)
    with pytest.raises(ConfigError):
        match_budget([1, 2, 3], [10, 10, 10], target=0)
    with pytest.raises(InvalidInputError):
        match_budget([0, 2, 3], [10, 10, 10], target=100)
    with pytest.raises(InvalidInputError):
        match_budget([1, 2], [10, 10, 10], target=100)


@settings(max_examples=200, deadline=None)
@given(
    ranks=st.lists(st.integers(1, 40), min_size=1, max_size=24),
    cost=st.integers(1, 5000),
    extra_units=st.integers(0, 2000),
    slack=st.integers(0, 4999),
)
def test_budget_equal_costs_reaches_floor_of_target(ranks, cost, extra_units, slack):
    """With equal unit costs c the best integer allocation uses exactly floor(target / c) units."""
    n = len(ranks)
    target = (n + extra_units) * cost + min(slack, cost - 1)
    alloc = match_budget(ranks, [cost] * n, target)
    assert alloc.achieved == sum(alloc.ranks) * cost <= target
    assert sum(alloc.ranks) == target // cost
    assert min(alloc.ranks) >= 1
    # proportions: the order of the ranks is kept (a larger original rank never gets fewer units) ...
    got = np.asarray(alloc.ranks)
    orig = np.asarray(ranks)
    for a in range(n):
        for b in range(n):
            if orig[a] < orig[b]:
                assert got[a] <= got[b]
    # ... and when no block is clamped to the minimum rank 1, each is within one unit of its real share
    share = orig * (target / cost) / orig.sum()
    if np.all(share >= 1.0):
        assert np.all(np.abs(got - share) < 1.0 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 300)), min_size=1, max_size=16),
    factor=st.floats(1.0, 20.0),
)
def test_budget_never_exceeds_target_with_unequal_costs(pairs, factor):
    ranks = [r for r, _ in pairs]
    costs = [c for _, c in pairs]
    target = int(math.ceil(sum(costs) * factor))
    alloc = match_budget(ranks, costs, target)
    assert alloc.achieved == lora_parameter_count(alloc.ranks, costs) <= target
    assert min(alloc.ranks) >= 1
    # no block could take one more unit at its proportional share without exceeding the budget... at least
    # the leftover is below the largest unit cost (otherwise a unit would have been added to some block)
    assert target - alloc.achieved < max(costs) * len(costs)
