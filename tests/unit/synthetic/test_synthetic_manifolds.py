"""Tests of synthetic.manifolds: shapes, true dimensions (by local PCA), reproducibility, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gelora.errors import InvalidInputError
from synthetic.local_pca import local_pca_dimension
from synthetic.manifolds import (
    SampledManifold,
    embed_isometric,
    flat_torus,
    helix_curve,
    hyperball,
    hypercube,
    hypersphere,
    linear_subspace,
    nonuniform_hypercube,
    product_manifold,
    union_of_manifolds,
)

# (factory, expected d, expected natural D); sizes chosen so the neighbourhoods of the adaptive local PCA
# are small compared with the curvature radius (checked: all pass for seeds 0..4 on these sizes)
CASES = [
    (lambda s: hypersphere(1500, 1, seed=s), 1, 2),
    (lambda s: hypersphere(2000, 2, seed=s), 2, 3),
    (lambda s: hypersphere(2000, 3, embed_dim=10, seed=s), 3, 10),
    (lambda s: hyperball(1000, 3, seed=s), 3, 3),
    (lambda s: hyperball(1000, 4, ambient_dim=7, seed=s), 4, 7),
    (lambda s: hypercube(1000, 6, ambient_dim=9, seed=s), 6, 9),
    (lambda s: flat_torus(2000, 2, seed=s), 2, 4),
    (lambda s: linear_subspace(300, 5, 20, seed=s), 5, 20),
    (lambda s: nonuniform_hypercube(2000, 3, seed=s), 3, 3),
    (lambda s: helix_curve(1000, seed=s), 1, 3),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_true_dimension_recovered_by_local_pca(case: int) -> None:
    factory, d, D = CASES[case]
    m = factory(0)
    assert isinstance(m, SampledManifold)
    assert m.X.dtype == np.float64 and m.X.shape[1] == D
    assert m.intrinsic_dim == d
    assert local_pca_dimension(m.X, n_centers=50, seed=1) == d


@pytest.mark.parametrize("case", range(len(CASES)))
def test_reproducible_by_seed(case: int) -> None:
    factory = CASES[case][0]
    a, b, c = factory(3), factory(3), factory(4)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.params["seed"] == 3
    assert not np.array_equal(a.X, c.X)


def test_sphere_points_have_the_radius_and_ball_points_are_inside() -> None:
    s = hypersphere(500, 4, radius=2.5, ambient_dim=8)
    np.testing.assert_allclose(np.linalg.norm(s.X, axis=1), 2.5, rtol=1e-12)
    assert np.all(s.X[:, 5:] == 0)
    b = hyperball(2000, 3, radius=2.0)
    r = np.linalg.norm(b.X, axis=1)
    assert r.max() <= 2.0
    # uniform in the 3-ball: P(r <= R/2) = 1/8; binomial sd at n=2000 is 0.0074, 4 sd band
    assert abs(np.mean(r <= 1.0) - 0.125) < 4 * np.sqrt(0.125 * 0.875 / 2000)


def test_flat_torus_circles_have_the_radii() -> None:
    t = flat_torus(100, 3, radii=[1.0, 2.0, 0.5])
    np.testing.assert_allclose(np.hypot(t.X[:, 0::2], t.X[:, 1::2]), np.tile([1.0, 2.0, 0.5], (100, 1)))


def test_noise_is_added_after_embedding_and_does_not_change_clean_points() -> None:
    clean = hypersphere(400, 2, embed_dim=6, seed=7)
    noisy = hypersphere(400, 2, embed_dim=6, noise=0.01, seed=7)
    diff = noisy.X - clean.X
    # residual is i.i.d. N(0, 0.01^2) in all 6 coordinates: sd of the sample sd is 0.01/sqrt(2*2400)
    assert abs(diff.std() - 0.01) < 5 * 0.01 / np.sqrt(2 * diff.size)
    assert noisy.params["noise"] == 0.01


def test_embed_isometric_preserves_distances() -> None:
    X = np.random.default_rng(0).standard_normal((50, 4))
    Y = embed_isometric(X, 9, seed=2)
    assert Y.shape == (50, 9)
    dX = np.linalg.norm(X[:, None] - X[None], axis=-1)
    dY = np.linalg.norm(Y[:, None] - Y[None], axis=-1)
    np.testing.assert_allclose(dY, dX, atol=1e-12)
    np.testing.assert_array_equal(Y, embed_isometric(X, 9, seed=2))


def test_linear_subspace_has_exact_rank() -> None:
    m = linear_subspace(100, 4, 15, seed=1)
    s = np.linalg.svd(m.X - m.X.mean(0), compute_uv=False)
    assert np.sum(s > s[0] * 1e-10) == 4


def test_product_dimension_adds() -> None:
    p = product_manifold([hypersphere(1500, 1, seed=1), hypercube(1500, 1, seed=2)])
    assert p.intrinsic_dim == 2 and p.X.shape == (1500, 3)
    assert local_pca_dimension(p.X, n_centers=50) == 2
    with pytest.raises(InvalidInputError):
        product_manifold([hypersphere(10, 1), hypersphere(11, 1)])
    with pytest.raises(InvalidInputError):
        product_manifold([])


def test_union_records_max_mean_and_harmonic_dimensions() -> None:
    u = union_of_manifolds([hypersphere(300, 1, seed=1), hypercube(100, 4, seed=2)], separation=10.0, seed=3)
    assert u.X.shape == (400, 4)
    assert u.intrinsic_dim == 4 == u.params["dim_max"]
    assert u.params["dim_mean"] == pytest.approx(0.75 * 1 + 0.25 * 4)
    assert u.params["dim_harmonic"] == pytest.approx(1 / (0.75 / 1 + 0.25 / 4))
    assert sorted(np.bincount(u.pointwise_dim).tolist()) == [0, 0, 0, 100, 300]
    # points keep their labels through the shuffle: circle points have norm 1 around the first centre
    circle = u.X[u.pointwise_dim == 1]
    np.testing.assert_allclose(np.linalg.norm(circle, axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: hypersphere(0, 2),
        lambda: hypersphere(10, 0),
        lambda: hypersphere(10, 3, ambient_dim=3),  # a 3-sphere needs D >= 4
        lambda: hyperball(10, 5, ambient_dim=4),  # d > D
        lambda: hypersphere(10, 2, noise=-0.1),
        lambda: hypersphere(10, 2, noise=float("nan")),
        lambda: hypersphere(10, 2, seed=-1),
        lambda: hypersphere(10.5, 2),  # type: ignore[arg-type]
        lambda: hypersphere(True, 2),  # type: ignore[arg-type]
        lambda: hypersphere(10, 2, embed_dim=2),  # embed_dim < D
        lambda: linear_subspace(10, 6, 5),
        lambda: linear_subspace(10, 2, 5, distribution="cauchy"),
        lambda: flat_torus(10, 2, radii=[1.0, 2.0, 3.0]),
        lambda: flat_torus(10, 2, radii=-1.0),
        lambda: embed_isometric(np.ones((3, 4)), 3),
        lambda: embed_isometric(np.ones(4), 5),
        lambda: union_of_manifolds([hypersphere(5, 1)], separation=-1),
    ],
)
def test_bad_input_raises_invalid_input(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError):
        call()
