"""Tests of synthetic.local_pca on data whose dimension is exact by construction."""

from __future__ import annotations

import numpy as np
import pytest

from gelora.errors import InvalidInputError
from synthetic.local_pca import local_pca_dimension, local_pca_dimensions, local_pca_spectra
from synthetic.manifolds import hypercube, linear_subspace, union_of_manifolds


@pytest.mark.parametrize(("d", "D"), [(1, 5), (3, 3), (4, 12), (7, 9)])
def test_flat_data_gives_exact_dimension(d: int, D: int) -> None:
    X = linear_subspace(400, d, D, seed=d).X
    assert local_pca_dimension(X, n_centers=30) == d
    assert local_pca_dimension(X, k=D + 5, n_centers=30) == d


def test_spectrum_shape_and_zero_normal_eigenvalues() -> None:
    X = linear_subspace(200, 2, 6, seed=0).X
    ev = local_pca_spectra(X, k=10, indices=[0, 5])
    assert ev.shape == (2, 6)
    assert np.all(np.diff(ev, axis=1) <= 1e-15)
    assert np.all(ev[:, 2:] < 1e-25 * ev[:, :1])  # float64 rounding only


def test_per_point_dimensions_separate_a_union() -> None:
    u = union_of_manifolds(
        [linear_subspace(300, 1, 6, seed=1), linear_subspace(300, 4, 6, seed=2)], separation=100.0, seed=0
    )
    dims = local_pca_dimensions(u.X, k=12)
    np.testing.assert_array_equal(dims, u.pointwise_dim)


def test_variance_rule() -> None:
    # anisotropic 3-d data: standard deviations 1, 1, 0.05 -> the third direction carries 0.12 % variance
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3)) * np.array([1.0, 1.0, 0.05])
    assert local_pca_dimension(X, k=100, variance_threshold=0.99) == 2
    assert local_pca_dimension(X, k=100, variance_threshold=0.99999) == 3
    assert local_pca_dimension(X, k=100) == 3  # gap rule: 0.05^2 = 2.5e-3 > tol = 1e-4


def test_full_dimensional_cube() -> None:
    assert local_pca_dimension(hypercube(1000, 10, seed=0).X, n_centers=30) == 10


@pytest.mark.parametrize(
    "call",
    [
        lambda: local_pca_dimension(np.ones((1, 3))),
        lambda: local_pca_dimension(np.ones(5)),
        lambda: local_pca_dimension(np.zeros((10, 3))),  # no spread
        lambda: local_pca_dimension(np.random.default_rng(0).random((10, 3)), k=10),
        lambda: local_pca_dimension(np.random.default_rng(0).random((10, 3)), tol=0.0),
        lambda: local_pca_dimension(np.random.default_rng(0).random((10, 3)), variance_threshold=1.5),
        lambda: local_pca_spectra(np.random.default_rng(0).random((10, 3)), indices=[10]),
    ],
)
def test_bad_input(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError):
        call()
