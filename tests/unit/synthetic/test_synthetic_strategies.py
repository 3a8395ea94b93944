"""Tests of synthetic.strategies: draws stay inside the documented ranges and rebuild from parameters."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic.strategies import (
    MAX_N,
    MAX_RELIABLE_DIM,
    build_manifold,
    manifold_params,
    manifolds,
    min_sample_size,
    noise_for,
    noise_levels,
    ranked_maps,
    sample_sizes,
    toy_transformers,
)


@settings(max_examples=30, deadline=None)
@given(manifold_params(noisy=True))
def test_manifold_params_in_documented_ranges(p: dict) -> None:
    assert 1 <= p["d"] <= MAX_RELIABLE_DIM
    assert max(500, 150 * p["d"]) == min_sample_size(p["d"]) <= p["n"] <= MAX_N
    assert 0.0 <= p["noise"] <= noise_for(p["n"], p["d"])
    assert p["ambient_dim"] >= p["d"]


@settings(max_examples=10, deadline=None)
@given(manifold_params())
def test_build_is_deterministic(p: dict) -> None:
    a, b = build_manifold(p), build_manifold(p)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.intrinsic_dim == p["d"] and a.X.shape == (p["n"], p["ambient_dim"])


@settings(max_examples=10, deadline=None)
@given(manifolds(max_d=3))
def test_manifolds_strategy_yields_samples(m) -> None:  # type: ignore[no-untyped-def]
    assert m.X.dtype == np.float64 and np.all(np.isfinite(m.X))
    assert 1 <= m.intrinsic_dim <= 3


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8).flatmap(lambda d: st.tuples(st.just(d), sample_sizes(d))))
def test_sample_sizes_respect_dimension(dn: tuple[int, int]) -> None:
    d, n = dn
    assert n >= min_sample_size(d)


@settings(max_examples=20, deadline=None)
@given(noise_levels(1000, 4))
def test_noise_levels_bounded(s: float) -> None:
    assert 0.0 <= s <= 0.05 * 1000 ** (-1 / 4)


@settings(max_examples=10, deadline=None)
@given(ranked_maps(max_dim=6), toy_transformers(max_blocks=2))
def test_map_strategies(m, t) -> None:  # type: ignore[no-untyped-def]
    assert 1 <= m.rank <= max(m.in_dim, m.out_dim) <= 6
    assert 1 <= t.n_blocks <= 2 and len(t.block_ranks) == t.n_blocks
