"""Fixtures of the estimator tests: ``knn_reference``, the exhaustive float64 k-NN the torch paths are
checked against (one definition for the screen and small-dimension tests)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def exhaustive_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 reference: the re-rank formula on every pair, k smallest by (distance, index).

    Parameters
    ----------
    X : numpy.ndarray, shape (n, D), float64
    k : int

    Returns
    -------
    (distances, indices) : numpy.ndarray, each shape (n, k)
    """
    import torch

    from gelora.estimators import _knn_torch as kt

    n = len(X)
    Xt = torch.from_numpy(X)
    rows = torch.arange(n).repeat_interleave(n)
    cols = torch.arange(n).repeat(n)
    off = rows != cols
    dk, ik = kt.exact_best_k(Xt, torch.arange(n), rows[off], cols[off], k, 2**24)
    return np.sqrt(dk.numpy()), ik.numpy()


@pytest.fixture
def knn_reference() -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    return exhaustive_knn
