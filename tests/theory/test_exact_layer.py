"""Theorem 3.2, exact layer: for noise-free data the Jacobian rank of a map bounds the image's dimension.

What is exact here (floating-point tolerance, relative singular-value threshold
``validation.theory.RANK_RTOL = 1e-9``):

* the numerical Jacobian rank of every map equals its declared rank, and ``rank(J_f(x) T_x M)`` (the
  dimension of the image's tangent space) is at most ``min(rank f, dim M)`` at every checked point;
* for linear maps of flat manifolds the image is flat, so every centred neighbourhood of ``f(X)`` has
  numerical rank at most ``min(rank f, dim M)``: a statement about the data, not the Jacobian.

The project's local PCA (``synthetic.local_pca``, eigenvalue-gap rule) of the image is also checked
against the bound on flat manifolds (images under the nonlinear maps are curved, but mildly). On curved
manifolds at these sizes it is *not* reliable: a 3-sphere sampled with 500 points reads as 4-dimensional
(curvature at the neighbourhood scale); that case is kept in ``test_counterexamples.py``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from synthetic.local_pca import local_pca_dimension
from synthetic.strategies import manifold_map_pairs, transformers_with_inputs
from validation.theory import (
    FLAT_KINDS,
    RANK_RTOL,
    TANGENT_KINDS,
    check_exact_layer,
    layer_bounds,
    neighbourhood_rank,
)


@given(manifold_map_pairs(kinds=TANGENT_KINDS, max_d=6))
def test_jacobian_rank_bounds_tangent_image(pair):
    M, fmap, params = pair
    note(repr(params))
    res = check_exact_layer(
        M.X, params["kind"], M.intrinsic_dim, fmap.jacobian, fmap.rank, seed=params["seed"] % 1000
    )
    note(repr(res))
    # the numerical Jacobian rank is the declared one at every point ...
    assert res["jacobian_rank"] == [fmap.rank, fmap.rank]
    # ... and bounds the image tangent space: rank(J T) <= min(rank f, dim M), with a clear margin
    assert res["image_rank"][1] <= res["bound"]
    assert res["gap_ratio"] < RANK_RTOL


@given(
    manifold_map_pairs(kinds=FLAT_KINDS, map_kinds=("linear",), max_d=6),
)
def test_linear_image_of_flat_manifold_has_exact_local_rank(pair):
    M, fmap, params = pair
    note(repr(params))
    Y = fmap(M.X)
    bound = min(M.intrinsic_dim, fmap.rank)
    rank, worst = neighbourhood_rank(Y, seed=params["seed"] % 1000)
    note(f"neighbourhood rank {rank}, worst next/top singular value ratio {worst:.3g}")
    assert rank <= bound
    assert rank == bound  # generic maps: the bound is attained (a rank drop would mean a degenerate draw)
    assert worst < RANK_RTOL
    # the global affine span too
    s = np.linalg.svd(Y - Y.mean(axis=0), compute_uv=False)
    assert int(np.sum(s > RANK_RTOL * s[0])) == bound


@given(manifold_map_pairs(kinds=FLAT_KINDS, max_d=5))
def test_local_pca_of_image_within_bound(pair):
    M, fmap, params = pair
    note(repr(params))
    Y = fmap(M.X)
    lp = local_pca_dimension(Y, seed=0)
    note(f"local PCA {lp}")
    assert lp <= min(M.intrinsic_dim, fmap.rank)


def _stack_jacobian(tt, x: np.ndarray, upto: int) -> np.ndarray:
    J = np.eye(tt.in_dim)
    h = x
    for b in tt.blocks[:upto]:
        J = b.jacobian(h) @ J
        h = b._forward(h[None, :])[0]
    return J


@given(transformers_with_inputs(), st.integers(0, 3))
def test_toy_transformer_layers_respect_block_bounds(tw, which):
    """Along a toy transformer: rank(J_{T_j..T_1}(x) T_x M) <= b_j = min(dim M, rank T_1, .., rank T_j)."""
    tt, M, params = tw
    note(repr(params))
    assert tt.numerical_block_ranks(M.X[:20]) == tt.block_ranks
    bounds = layer_bounds(M.intrinsic_dim, tt.block_ranks)
    j = min(which, tt.n_blocks)  # the hidden state checked (0 = input)
    res = check_exact_layer(
        M.X, params["kind"], M.intrinsic_dim, lambda x: _stack_jacobian(tt, x, j), tt.in_dim, n_points=15
    )
    note(repr(res))
    assert res["image_rank"][1] <= bounds[j]
