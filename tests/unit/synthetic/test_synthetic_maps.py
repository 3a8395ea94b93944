"""Tests of synthetic.maps: exact Jacobian ranks, analytic Jacobians, toy transformer, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from gelora.errors import ConfigError, InvalidInputError
from synthetic.local_pca import local_pca_dimension
from synthetic.manifolds import hypersphere
from synthetic.maps import (
    BottleneckMLP,
    LinearMap,
    RankedMap,
    ResidualBlock,
    ToyTransformer,
    TransformerBlock,
    numerical_rank_of,
)
from synthetic.strategies import ranked_maps, toy_transformers


def _inputs(dim: int, n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


MAPS = [
    LinearMap(10, 7, 3, seed=1),
    LinearMap(5, 5, 5, seed=2),
    BottleneckMLP(10, 12, 4, seed=3),
    BottleneckMLP(6, 3, 3, seed=4),
    ResidualBlock(8, 3, seed=5),
    TransformerBlock(4, 6, 2, 3, seed=6),
    TransformerBlock(3, 5, 4, 2, residual=True, seed=7),
]


@pytest.mark.parametrize("m", MAPS, ids=lambda m: type(m).__name__)
def test_numerical_rank_equals_constructed_rank(m: RankedMap) -> None:
    X = _inputs(m.in_dim)
    assert m(X).shape == (8, m.out_dim)
    assert m.numerical_rank(X) == m.rank
    # the rank is the same at every sample point, not only the maximum
    assert {numerical_rank_of(m.jacobian(x)) for x in X} == {m.rank}
    if m.residual:
        assert m.rank == m.in_dim
        assert m.numerical_update_rank(X) == m.update_rank
    else:
        assert m.update_rank is None
        with pytest.raises(ConfigError):
            m.numerical_update_rank(X)


@pytest.mark.parametrize("m", MAPS, ids=lambda m: type(m).__name__)
def test_analytic_jacobian_matches_finite_differences(m: RankedMap) -> None:
    x = _inputs(m.in_dim, 1, seed=9)[0]
    # central differences with step h: truncation O(h^2 f''') ~ 1e-12, rounding O(eps/h) ~ 1e-10
    np.testing.assert_allclose(m.jacobian(x), m.finite_difference_jacobian(x, 1e-6), atol=1e-8)


def test_residual_update_norm_is_bounded_so_map_is_invertible() -> None:
    m = ResidualBlock(6, 6, update_scale=0.9, seed=0)
    for x in _inputs(6, 20):
        s = np.linalg.svd(m.jacobian(x), compute_uv=False)
        assert s.min() >= 1 - 0.9 - 1e-12


def test_image_of_a_manifold_has_dimension_at_most_rank() -> None:
    # rank bound on a 2-sphere: a rank-1 bottleneck maps it onto a curve, rank-3 keeps d = 2
    M = hypersphere(2000, 2, embed_dim=6, seed=0)
    assert local_pca_dimension(BottleneckMLP(6, 6, 1, seed=1)(M.X), n_centers=40) == 1
    assert local_pca_dimension(BottleneckMLP(6, 6, 3, seed=1)(M.X), n_centers=40) == 2
    Z = ResidualBlock(6, 1, seed=2)(M.X)  # a residual map is a diffeomorphism: it keeps the dimension
    assert local_pca_dimension(Z, n_centers=40) == 2


def test_toy_transformer_reports_block_and_update_ranks() -> None:
    t = ToyTransformer(4, 8, [3, 2, 4], [4, 3, 2], residual=[False, True, False], seed=0)
    assert t.block_ranks == [12, 32, 8]
    assert t.update_ranks == [None, 8, None]
    assert t.rank_upper_bound == 8
    X = _inputs(32, 6)
    states = t.forward_all(X)
    assert len(states) == 4 and all(s.shape == (6, 32) for s in states)
    np.testing.assert_array_equal(states[0], X)
    np.testing.assert_allclose(t(X), states[-1])
    assert t.numerical_block_ranks(X) == t.block_ranks
    assert t.blocks[1].numerical_update_rank(states[1]) == 8
    assert t.numerical_rank(X) <= t.rank_upper_bound
    x = X[0]
    fd = np.column_stack(
        [(t(x[None] + 1e-6 * e[None]) - t(x[None] - 1e-6 * e[None]))[0] / 2e-6 for e in np.eye(32)]
    )
    np.testing.assert_allclose(t.jacobian(x), fd, atol=1e-8)


def test_toy_transformer_is_reproducible() -> None:
    X = _inputs(12, 3)
    a = ToyTransformer(3, 4, [2, 2], [1, 3], seed=5)(X)
    np.testing.assert_array_equal(a, ToyTransformer(3, 4, [2, 2], [1, 3], seed=5)(X))
    assert not np.allclose(a, ToyTransformer(3, 4, [2, 2], [1, 3], seed=6)(X))


@settings(max_examples=25, deadline=None)
@given(ranked_maps())
def test_property_numerical_rank_matches(m: RankedMap) -> None:
    X = _inputs(m.in_dim, 4)
    assert m.numerical_rank(X) == m.rank
    if m.residual:
        assert m.numerical_update_rank(X) == m.update_rank


@settings(max_examples=15, deadline=None)
@given(toy_transformers())
def test_property_toy_transformer_block_ranks(t: ToyTransformer) -> None:
    X = _inputs(t.in_dim, 3)
    assert t.numerical_block_ranks(X) == t.block_ranks
    states = t.forward_all(X)
    for b, s, u in zip(t.blocks, states, t.update_ranks):
        if u is not None:
            assert b.numerical_update_rank(s) == u


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: LinearMap(3, 4, 5), InvalidInputError),  # r > min(in, out)
        (lambda: LinearMap(3, 4, 0), InvalidInputError),
        (lambda: BottleneckMLP(3, 2, 3), InvalidInputError),
        (lambda: BottleneckMLP(3, 4, 2, gain=0.0), InvalidInputError),
        (lambda: ResidualBlock(4, 5), InvalidInputError),
        (lambda: ResidualBlock(4, 2, update_scale=1.0), ConfigError),
        (lambda: TransformerBlock(2, 3, 4, 1), InvalidInputError),
        (lambda: ToyTransformer(2, 3, [1, 2], [1]), InvalidInputError),
        (lambda: ToyTransformer(2, 3, [1], [1], residual=[True, False]), InvalidInputError),
        (lambda: LinearMap(3, 4, 2)(np.ones((5, 4))), InvalidInputError),  # wrong width
        (lambda: LinearMap(3, 4, 2)(np.full((5, 3), np.nan)), InvalidInputError),
        (lambda: LinearMap(3, 4, 2).jacobian(np.ones(4)), InvalidInputError),
    ],
)
def test_bad_input(call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call()


def test_sample_inputs_are_seeded_unit_scale() -> None:
    m = LinearMap(4, 3, 2, seed=0)
    X = m.sample_inputs(5, seed=1)
    assert X.shape == (5, 4)
    np.testing.assert_array_equal(X, m.sample_inputs(5, seed=1))
    t = ToyTransformer(2, 3, [1], [2])
    assert t.sample_inputs(4).shape == (4, 6)
