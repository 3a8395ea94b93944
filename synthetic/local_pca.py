"""Local PCA: a reference intrinsic-dimension estimate for noise-free samples.

Method
------
For a centre point ``x`` take its ``k`` nearest neighbours (Euclidean), centre the ``k + 1`` points on
their mean and compute the eigenvalues ``l_1 >= ... >= l_D`` of their covariance (squared singular values
of the centred block divided by ``k``).  On a ``d``-manifold sampled without noise, the first ``d``
eigenvalues scale like ``r^2`` (``r`` the neighbourhood radius) and the others like ``(kappa r^2)^2``
(curvature ``kappa``) or are exactly zero up to rounding (flat pieces), so there is a gap after ``l_d``.
Two rules read ``d`` off the spectrum:

* **eigenvalue gap** (default): eigenvalues below ``tol * l_1`` are set to ``tol * l_1`` (they count as
  zero), a virtual ``l_(D+1) = tol * l_1`` is appended, and ``d`` is the index ``j`` of the largest ratio
  ``l_j / l_(j+1)``.  A full-dimensional neighbourhood therefore gives ``d = D``.
* **explained variance** (``variance_threshold`` given): the smallest ``j`` with
  ``(l_1 + ... + l_j) / (l_1 + ... + l_D) >= variance_threshold``.  Biased upwards on curved manifolds
  (curvature directions carry variance) and downwards on anisotropic ones; mainly for comparison.

The global estimate is the median of the per-centre estimates over ``n_centers`` random centres, rounded
to an integer: robust to the few centres whose neighbourhood straddles an edge (hypercube boundary) or
two sheets.  Local PCA is reliable only when the neighbourhood is small compared with the curvature
radius, which needs ``n`` growing exponentially with ``d`` for global samples; use small patches
(:func:`synthetic.benchmark.benchmark_patch`) to check high-dimensional curved manifolds.
"""

from __future__ import annotations

import numpy as np

from gelora.errors import DegenerateDataError, InvalidInputError
from synthetic._validate import check_float, check_int, check_points, check_seed

__all__ = ["local_pca_dimension", "local_pca_dimensions", "local_pca_spectra"]

DEFAULT_TOL = 1e-4
"""Default relative eigenvalue floor: directions with standard deviation below 1% of the largest count
as zero.  Float64 rounding leaves ~1e-30 relative eigenvalues on flat pieces, far below it."""


def _default_k(n: int, D: int) -> int:
    return min(n - 1, D + 5)


def local_pca_spectra(
    X: np.ndarray, k: int | None = None, *, indices: np.ndarray | None = None
) -> np.ndarray:
    """Local covariance eigenvalues around chosen centre points.

    Parameters
    ----------
    X : array_like, shape (n, D)
        Points (float64).
    k : int, optional
        Neighbours per centre, ``1 <= k <= n - 1``; default ``min(n - 1, D + 5)`` (enough to see all ``D``
        directions while keeping the neighbourhood small).
    indices : array_like of int, shape (m,), optional
        Rows used as centres (default: all rows).

    Returns
    -------
    numpy.ndarray, shape (m, D), float64
        Eigenvalues of each neighbourhood's covariance in descending order (zero-padded when ``k < D``).
    """
    X = check_points(X)
    n, D = X.shape
    if n < 2:
        raise InvalidInputError(f"local PCA needs at least 2 points, got n={n}")
    k = _default_k(n, D) if k is None else check_int(k, "k", minimum=1, maximum=n - 1)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InvalidInputError(f"indices must lie in [0, {n - 1}]")
    out = np.zeros((idx.size, D))
    for row, i in enumerate(idx):
        dist2 = np.einsum("ij,ij->i", X - X[i], X - X[i])
        nb = np.argpartition(dist2, k)[: k + 1]  # k neighbours plus the centre itself (distance 0)
        out[row] = _spectrum(X[nb], k, D)
    return out


def _dimension_from_spectrum(ev: np.ndarray, tol: float, variance_threshold: float | None) -> int:
    D = ev.size
    top = ev[0]
    if top <= 0:
        raise DegenerateDataError("a neighbourhood has zero spread (all its points coincide: duplicates?)")
    if variance_threshold is not None:
        frac = np.cumsum(ev) / ev.sum()
        return int(np.searchsorted(frac, variance_threshold - 1e-12) + 1)
    floor = tol * top
    lam = np.append(np.maximum(ev, floor), floor)
    ratios = lam[:D] / lam[1:]
    return int(np.argmax(ratios) + 1)


def local_pca_dimensions(
    X: np.ndarray,
    k: int | None = None,
    *,
    indices: np.ndarray | None = None,
    tol: float = DEFAULT_TOL,
    variance_threshold: float | None = None,
) -> np.ndarray:
    """Per-point local PCA dimension (see the module docstring for the method).

    Parameters
    ----------
    X : array_like, shape (n, D)
        Points.
    k : int, optional
        Neighbours per centre.  Default: adaptive -- start at ``k = min(n - 1, D + 5)`` and, while it
        lowers the estimate ``d``, shrink to ``k = 2 d + 2`` (smaller neighbourhoods see less curvature).
    indices : array_like of int, optional
        Centre rows (default: every row).
    tol : float
        Relative eigenvalue floor of the gap rule, in ``(0, 1)``.
    variance_threshold : float, optional
        Use the explained-variance rule with this threshold in ``(0, 1]`` instead of the gap rule.

    Returns
    -------
    numpy.ndarray, shape (m,), int64
        Estimated dimension at each centre.
    """
    tol = check_float(tol, "tol", strictly_positive=True, maximum=1.0)
    if variance_threshold is not None:
        variance_threshold = check_float(
            variance_threshold, "variance_threshold", strictly_positive=True, maximum=1.0
        )
    if k is not None:
        spectra = local_pca_spectra(X, k, indices=indices)
        return np.array(
            [_dimension_from_spectrum(ev, tol, variance_threshold) for ev in spectra], dtype=np.int64
        )
    # adaptive neighbourhood: start with k = min(n - 1, D + 5) (able to see every direction) and shrink
    # to k = 2 d + 2 while that lowers the estimate (curvature inflates it on large neighbourhoods)
    X = check_points(X)
    n, D = X.shape
    if n < 2:
        raise InvalidInputError(f"local PCA needs at least 2 points, got n={n}")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InvalidInputError(f"indices must lie in [0, {n - 1}]")
    out = np.empty(idx.size, dtype=np.int64)
    for row, i in enumerate(idx):
        order = np.argsort(np.einsum("ij,ij->i", X - X[i], X - X[i]), kind="stable")
        kk = _default_k(n, D)
        d_hat = _dimension_from_spectrum(_spectrum(X[order[: kk + 1]], kk, D), tol, variance_threshold)
        while 2 * d_hat + 2 < kk:
            kk = 2 * d_hat + 2
            d_new = _dimension_from_spectrum(_spectrum(X[order[: kk + 1]], kk, D), tol, variance_threshold)
            if d_new >= d_hat:
                break
            d_hat = d_new
        out[row] = d_hat
    return out


def _spectrum(points: np.ndarray, k: int, D: int) -> np.ndarray:
    block = points - points.mean(axis=0)
    s = np.linalg.svd(block, compute_uv=False)
    ev = np.zeros(D)
    ev[: s.size] = s**2 / k
    return ev


def local_pca_dimension(
    X: np.ndarray,
    k: int | None = None,
    *,
    n_centers: int = 100,
    tol: float = DEFAULT_TOL,
    variance_threshold: float | None = None,
    seed: int = 0,
) -> int:
    """Global local-PCA dimension: median over random centres, rounded half up.

    Parameters
    ----------
    X : array_like, shape (n, D)
        Points (noise-free for a meaningful answer).
    k : int, optional
        Neighbours per centre (default: adaptive, see :func:`local_pca_dimensions`).
    n_centers : int
        Number of centres drawn without replacement (all rows if ``n_centers >= n``).
    tol, variance_threshold
        See :func:`local_pca_dimensions`.
    seed : int
        Seed of the centre draw.

    Returns
    -------
    int
        The estimated intrinsic dimension.
    """
    X = check_points(X)
    n_centers = check_int(n_centers, "n_centers")
    seed = check_seed(seed)
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    centres = np.arange(n) if n_centers >= n else rng.choice(n, size=n_centers, replace=False)
    dims = local_pca_dimensions(X, k, indices=centres, tol=tol, variance_threshold=variance_threshold)
    return int(np.floor(np.median(dims) + 0.5))
