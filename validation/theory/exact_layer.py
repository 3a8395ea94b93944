"""Exact layer: the rank of a map restricted to the tangent space of a noise-free manifold.

``rank(J_f(x) T_x M) <= min(rank f, dim M)`` at sampled points, and the exact local rank of linear
images of flat manifolds, to floating-point tolerance (``tests/theory/test_exact_layer.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError

#: relative singular-value threshold of every numerical rank: ``sigma > RANK_RTOL * sigma_max``
#: (float64 rounding in the Jacobian products is ~1e-15 relative; genuine directions here are >1e-6)
RANK_RTOL = 1e-9


# --------------------------------------------------------------------------------------------------
# exact linear algebra
# --------------------------------------------------------------------------------------------------
def numerical_rank(A: np.ndarray, rtol: float = RANK_RTOL) -> int:
    """Number of singular values of ``A`` above ``rtol * sigma_max``.

    Parameters
    ----------
    A : numpy.ndarray, shape (m, p)
        Real matrix (a Jacobian, or centred data).
    rtol : float
        Relative threshold; ``0`` counts every non-zero singular value.

    Returns
    -------
    int
        The rank, ``0`` for the zero matrix.
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise InvalidInputError(f"numerical_rank expects a 2-D array, got shape {A.shape}")
    if A.size == 0:
        return 0
    s = np.linalg.svd(A, compute_uv=False)
    if s[0] == 0.0:
        return 0
    return int(np.sum(s > rtol * s[0]))


def jacobian_rank(J: np.ndarray, rtol: float = RANK_RTOL) -> np.ndarray:
    """Numerical rank of each Jacobian in a stack.

    Parameters
    ----------
    J : numpy.ndarray, shape (n_points, m, p)
        One ``m x p`` Jacobian per point.
    rtol : float
        Relative singular-value threshold (see :func:`numerical_rank`).

    Returns
    -------
    numpy.ndarray of int64, shape (n_points,)
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 3:
        raise InvalidInputError(f"jacobian_rank expects shape (n_points, m, p), got {J.shape}")
    s = np.linalg.svd(J, compute_uv=False)
    top = s[:, :1]
    return np.sum((s > rtol * top) & (top > 0), axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# exact layer: Jacobian rank of the map restricted to the tangent space of M
# --------------------------------------------------------------------------------------------------
FLAT_KINDS = ("hypercube", "hyperball", "linear_subspace")
TANGENT_KINDS = (*FLAT_KINDS, "hypersphere")


def tangent_bases(X: np.ndarray, kind: str, d: int, indices: np.ndarray) -> np.ndarray:
    """Orthonormal tangent bases of a noise-free sample at the rows ``indices``, exact to rounding.

    Flat manifolds (``hypercube``, ``hyperball``, ``linear_subspace``) lie in a ``d``-dimensional affine
    subspace, which is their tangent space everywhere: the top ``d`` right singular vectors of the centred
    sample. A round ``hypersphere`` centred at the origin spans a ``(d+1)``-dimensional linear subspace
    ``S`` and ``T_x = S`` minus the radial direction ``x``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, D)
        Noise-free sample (any rotation / padding into ``R^D`` is allowed).
    kind : str
        One of :data:`TANGENT_KINDS`.
    d : int
        Intrinsic dimension.
    indices : numpy.ndarray of int, shape (m,)
        Rows where the tangent spaces are wanted.

    Returns
    -------
    numpy.ndarray, shape (m, D, d)
    """
    X = np.asarray(X, dtype=np.float64)
    idx = np.asarray(indices, dtype=np.int64)
    if kind in FLAT_KINDS:
        _, _, Vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
        return np.broadcast_to(Vt[:d].T, (idx.size, X.shape[1], d)).copy()
    if kind == "hypersphere":
        _, _, Vt = np.linalg.svd(X, full_matrices=False)
        S = Vt[: d + 1].T  # (D, d+1): the linear span of the sphere
        out = np.empty((idx.size, X.shape[1], d))
        for row, i in enumerate(idx):
            c = S.T @ X[i]
            c /= np.linalg.norm(c)
            # orthonormal complement of c in R^(d+1), then back to R^D
            Q, _ = np.linalg.qr(np.column_stack([c, np.eye(d + 1)]))
            out[row] = S @ Q[:, 1 : d + 1]
        return out
    raise ConfigError(f"no exact tangent spaces for manifold kind {kind!r}; supported: {TANGENT_KINDS}")


def check_exact_layer(
    X: np.ndarray,
    kind: str,
    d: int,
    jacobian: Callable[[np.ndarray], np.ndarray],
    rank: int,
    *,
    n_points: int = 40,
    seed: int = 0,
    rtol: float = RANK_RTOL,
) -> dict[str, Any]:
    """Theorem 3.2 at first order: ``rank(J_f(x) T_x M) <= min(rank f, dim M)`` at sampled points.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, D)
        Noise-free sample of ``M`` (``kind`` in :data:`TANGENT_KINDS`).
    kind, d
        Manifold family and intrinsic dimension.
    jacobian : callable
        ``jacobian(x)`` with ``x`` of shape ``(D,)`` returns ``J_f(x)`` of shape ``(D_out, D)``.
    rank : int
        Declared rank of ``f``.
    n_points : int
        Points checked (chosen with ``seed``).
    rtol : float
        Relative singular-value threshold (:data:`RANK_RTOL`).

    Returns
    -------
    dict
        ``bound``, ``jacobian_rank`` (min/max of ``rank J_f(x)``), ``image_rank`` (min/max of
        ``rank(J_f(x) T_x)``), ``gap_ratio`` (largest singular value beyond the bound relative to the top
        one, i.e. the worst margin: must be below ``rtol``) and ``passed``.
    """
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], size=min(n_points, X.shape[0]), replace=False)
    T = tangent_bases(X, kind, d, idx)
    bound = min(int(rank), int(d))
    jr, ir, worst = [], [], 0.0
    for row, i in enumerate(idx):
        J = np.asarray(jacobian(X[i]), dtype=np.float64)
        jr.append(numerical_rank(J, rtol))
        s = np.linalg.svd(J @ T[row], compute_uv=False)
        ir.append(int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0)
        if s.size > bound and s[0] > 0:
            worst = max(worst, float(s[bound] / s[0]))
    return {
        "bound": bound,
        "declared_rank": int(rank),
        "jacobian_rank": [min(jr), max(jr)],
        "image_rank": [min(ir), max(ir)],
        "gap_ratio": worst,
        "points": int(idx.size),
        "passed": bool(max(ir) <= bound and max(jr) <= rank),
    }


def layer_bounds(d: int, block_ranks: Sequence[int]) -> list[int]:
    """Theorem 3.2 along a stack: ``b_0 = d``, ``b_{j+1} = min(b_j, rank T_j)``."""
    out = [int(d)]
    for r in block_ranks:
        out.append(min(out[-1], int(r)))
    return out


def neighbourhood_rank(
    Y: np.ndarray, *, k: int | None = None, n_centres: int = 50, seed: int = 0, rtol: float = RANK_RTOL
) -> tuple[int, float]:
    """Largest numerical rank of centred ``k``-neighbourhoods of ``Y`` (exact local PCA rank).

    On a flat image (a linear map of a flat manifold) every neighbourhood lies in the image's affine span,
    so the rank equals its dimension to rounding. On a curved image second-order terms add directions
    of relative size ``~ (curvature * radius)``: use the gap rule of
    :func:`synthetic.local_pca.local_pca_dimension` there instead.

    Parameters
    ----------
    Y : numpy.ndarray, shape (n, D)
    k : int, optional
        Neighbours per centre; default ``min(n - 1, D + 5)``.
    n_centres : int
        Centres drawn with ``seed``.
    rtol : float
        Relative singular-value threshold.

    Returns
    -------
    (rank, worst_ratio)
        The largest rank over centres and the largest ``sigma_{rank+1} / sigma_1`` seen (the margin:
        how close the next direction came to being counted).
    """
    from scipy.spatial import cKDTree

    Y = np.asarray(Y, dtype=np.float64)
    n, D = Y.shape
    k = min(n - 1, D + 5) if k is None else int(k)
    rng = np.random.default_rng(seed)
    centres = rng.choice(n, size=min(n_centres, n), replace=False)
    _, nb = cKDTree(Y).query(Y[centres], k=k + 1)
    best, worst = 0, 0.0
    for rows in nb:
        B = Y[rows] - Y[rows].mean(axis=0)
        s = np.linalg.svd(B, compute_uv=False)
        r = int(np.sum(s > rtol * s[0]))
        best = max(best, r)
        if r < s.size:
            worst = max(worst, float(s[r] / s[0]))
    return best, worst
