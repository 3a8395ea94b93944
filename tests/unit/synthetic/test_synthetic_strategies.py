"""Tests of synthetic.strategies: draws stay inside the documented ranges and rebuild from parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gelora.errors import InvalidInputError
from synthetic.maps import BottleneckMLP, LinearMap, ResidualBlock
from synthetic.strategies import (
    MAP_KINDS,
    MAX_N,
    MAX_RELIABLE_DIM,
    TRANSFORMER_INPUT_KINDS,
    build_manifold,
    manifold_map_pairs,
    manifold_params,
    manifolds,
    min_sample_size,
    noise_for,
    noise_levels,
    ranked_maps,
    sample_sizes,
    toy_transformers,
    transformers_with_inputs,
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


_MAP_CLASSES = {"linear": LinearMap, "mlp": BottleneckMLP, "residual": ResidualBlock}


@settings(max_examples=25, deadline=None)
@given(manifold_map_pairs(max_d=4, max_out=8))
def test_manifold_map_pairs_map_accepts_manifold_in_documented_ranges(pair: Any) -> None:
    M, fmap, params = pair
    D = M.ambient_dim
    assert fmap.in_dim == D == params["ambient_dim"]
    assert M.name == params["kind"] and 1 <= M.intrinsic_dim == params["d"] <= 4
    assert min_sample_size(params["d"]) <= M.X.shape[0] == params["n"] <= MAX_N
    assert params["noise"] == 0.0 and M.params["noise"] == 0.0
    assert isinstance(fmap, _MAP_CLASSES[params["map"]])
    assert fmap.rank == params["map_rank"] and fmap.out_dim == params["out_dim"]
    if params["map"] == "residual":
        assert fmap.out_dim == D and fmap.rank == D and 1 <= fmap.update_rank <= D
    else:
        assert 2 <= fmap.out_dim <= 8 and 1 <= fmap.rank <= min(D, fmap.out_dim)
    Y = fmap(M.X)
    assert Y.shape == (params["n"], fmap.out_dim) and np.all(np.isfinite(Y))


@settings(max_examples=10, deadline=None)
@given(manifold_map_pairs(kinds=("hypersphere", "flat_torus"), map_kinds=("residual",), max_d=3, noisy=True))
def test_manifold_map_pairs_respects_kind_filters_and_noise(pair: Any) -> None:
    M, fmap, params = pair
    assert M.name in ("hypersphere", "flat_torus") and isinstance(fmap, ResidualBlock)
    assert 0.0 <= params["noise"] <= noise_for(params["n"], params["d"])


@settings(max_examples=10, deadline=None)
@given(manifold_map_pairs(max_d=3))
def test_manifold_map_pairs_rebuild_from_drawn_seeds(pair: Any) -> None:
    M, fmap, params = pair
    np.testing.assert_array_equal(build_manifold(params).X, M.X)
    D, kind, seed = M.ambient_dim, params["map"], params["map_seed"]
    if kind == "residual":
        again = ResidualBlock(D, fmap.update_rank, seed=seed)
    else:
        again = _MAP_CLASSES[kind](D, params["out_dim"], params["map_rank"], seed=seed)
    np.testing.assert_array_equal(again(M.X[:50]), fmap(M.X[:50]))


@settings(max_examples=20, deadline=None)
@given(transformers_with_inputs(max_d=3, n_range=(60, 90), max_blocks=2))
def test_transformers_with_inputs_manifold_lives_in_input_space(tw: Any) -> None:
    tt, M, params = tw
    D = tt.n_tokens * tt.d_model
    assert tt.in_dim == M.ambient_dim == params["D"] == D
    assert 1 <= tt.n_blocks <= 2 and params["block_ranks"] == tt.block_ranks
    assert params["tt_seed"] == tt.seed and params["update_ranks"] == tt.update_ranks
    assert M.name == params["kind"] in TRANSFORMER_INPUT_KINDS
    assert 1 <= M.intrinsic_dim == params["d"] <= min(3, D - 1)  # D >= 4, so a sphere always fits
    assert 60 <= M.X.shape[0] == params["n"] <= 90 and M.params["noise"] == 0.0
    np.testing.assert_array_equal(build_manifold({**params, "ambient_dim": D, "noise": 0.0}).X, M.X)
    states = tt.forward_all(M.X)
    assert len(states) == tt.n_blocks + 1
    assert all(h.shape == (params["n"], D) and np.all(np.isfinite(h)) for h in states)


@settings(max_examples=5, deadline=None)
@given(transformers_with_inputs())
def test_transformers_with_inputs_default_ranges(tw: Any) -> None:
    tt, M, params = tw
    assert 1 <= tt.n_blocks <= 4 and 4 <= tt.in_dim <= 24
    assert 1 <= params["d"] <= min(5, tt.in_dim - 1) and 500 <= params["n"] <= 1500


def _draw_derandomised(strategy: st.SearchStrategy[Any]) -> list[Any]:
    """Run a derandomised Hypothesis test (fixed choice sequence) and collect what the strategy produced."""
    out: list[Any] = []

    @settings(max_examples=3, deadline=None, derandomize=True, database=None)
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


@pytest.mark.parametrize(
    "strategy",
    [manifold_map_pairs(max_d=3), transformers_with_inputs(max_d=3, n_range=(60, 90), max_blocks=2)],
    ids=["manifold_map_pairs", "transformers_with_inputs"],
)
def test_joint_strategies_reproducible_from_hypothesis_seed(strategy: st.SearchStrategy[Any]) -> None:
    """Identical Hypothesis choices (a derandomised run, twice) give identical parameters, data and maps.

    Hypothesis also reseeds NumPy's global generator per example, so this does not detect a build that
    reads it; ``*_rebuild_*`` and ``*_lives_in_input_space`` do (they rebuild from the drawn seeds).
    """
    first, second = _draw_derandomised(strategy), _draw_derandomised(strategy)
    assert len(first) == len(second) > 0
    for (a0, a1, pa), (b0, b1, pb) in zip(first, second, strict=True):
        assert pa == pb
        M_a, M_b = (a0, b0) if hasattr(a0, "X") else (a1, b1)
        np.testing.assert_array_equal(M_a.X, M_b.X)
        f_a, f_b = (a1, b1) if hasattr(a0, "X") else (a0, b0)
        np.testing.assert_array_equal(f_a(M_a.X[:20]), f_b(M_a.X[:20]))


@pytest.mark.parametrize(
    "strategy",
    [
        manifold_map_pairs(map_kinds=("linaer",)),
        manifold_map_pairs(map_kinds=()),
        transformers_with_inputs(kinds=("flat_torus",)),
    ],
    ids=["misspelt_map_kind", "no_map_kind", "torus_input"],
)
def test_joint_strategies_reject_unknown_kinds(strategy: st.SearchStrategy[Any]) -> None:
    @settings(max_examples=1, deadline=None, database=None)
    @given(strategy)
    def draw_one(value: Any) -> None:
        pass

    with pytest.raises(InvalidInputError, match="kinds must be a non-empty subset"):
        draw_one()


def test_map_kinds_are_the_ranked_map_families() -> None:
    assert set(MAP_KINDS) == set(_MAP_CLASSES)
