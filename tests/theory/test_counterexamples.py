"""Where the theorem's assumptions break in practice: failing-by-design examples (strict xfail).

Each test asserts what the theory would promise and is marked ``xfail(strict=True)``: the suite fails if
the example ever *stops* failing (the documented limitation would then be stale). The examples are fixed
(seeded), so their outcome is deterministic; ``raises=AssertionError`` makes sure they fail for the
documented reason, not an error. ``validation.theory.run_theory_checks`` reruns them over
several seeds and sizes and reports how often the violation occurs.
"""

from __future__ import annotations

import pytest

from validation.theory import (
    counterexample_ceil_rounding,
    counterexample_curvature,
    counterexample_local_pca_curvature,
    counterexample_mle_toy_transformer,
    counterexample_noise,
    counterexample_small_n_rule,
)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="noise: a 2-plane in R^20 with noise std 0.05 > neighbour spacing reads as ~7-11 dimensional; "
    "the theorem bounds the noise-free manifold, not noisy samples",
)
def test_noise_inflates_estimate_beyond_bound(danco_cache):
    res = counterexample_noise(cache_dir=danco_cache)
    assert not res["violated"], res["records"]


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="curvature at small n: 300 points on a helix with 40 turns 0.05 apart read as 2-dimensional "
    "(neighbours sit on adjacent turns); TwoNN and MLE exceed the bound 1 beyond their limits (DANCo's 2 sits at "
    "its integer limit d+1)",
)
def test_tightly_wound_curve_at_small_n_exceeds_bound(danco_cache):
    res = counterexample_curvature(cache_dir=danco_cache)
    assert not res["violated"], res["records"]


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="curvature at small n: local PCA (the exact-layer proxy) of 500 points of a round 3-sphere counts "
    "the normal direction (reads 4); with 5000 points it reads 3",
)
def test_local_pca_on_sphere_at_small_n_exceeds_dimension():
    res = counterexample_local_pca_curvature()
    assert not res["violated"], res


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="too few samples: 1000 points of a 1 x 1e-5 rectangle look 1-dimensional; a frozen full-rank "
    "block that rescales it to a square (no update needed, k = 0) shows a gap of ~1 beyond its sampling limit",
)
def test_rule_gap_exceeds_planted_rank_when_sample_cannot_resolve_scale():
    res = counterexample_small_n_rule()
    assert not res["violated"], res


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="rounding='ceil' (library default) turns a +0.01 sampling fluctuation of the gap on a frozen "
    "block (k = 0) into one extra rank; rounding='round' does not",
)
def test_ceil_rounding_makes_rule_exceed_planted_rank():
    res = counterexample_ceil_rounding()
    assert not res["violated"], res


def test_round_rounding_is_valid_on_the_ceil_example():
    """The contrast of the previous example: the same estimates with ``rounding="round"`` give rank 1."""
    res = counterexample_ceil_rounding()
    assert res["round_ranks"] == [1] * len(res["round_ranks"]), res


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="density/folding at the neighbour scale: a circle through 3 saturating ToyTransformer blocks stays "
    "a curve (Jacobian rank 1) but MLE's 20-neighbour balls read ~1.23, beyond its limit ~1.07",
)
def test_mle_overshoots_bound_on_saturating_toy_transformer():
    res = counterexample_mle_toy_transformer()
    assert not res["violated"], res["records"]


def test_twonn_holds_on_the_mle_toy_transformer_example():
    """The contrast: TwoNN (two neighbours) stays within its limit on the same hidden state."""
    assert counterexample_mle_toy_transformer()["twonn_passed"]
