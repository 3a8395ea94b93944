"""DANCo: intrinsic dimension from the concentration of neighbour distance ratios and angles.

Reference: C. Ceruti, S. Bassis, A. Rozza, G. Lombardi, E. Casiraghi, P. Campadelli (2014), "DANCo: An
intrinsic dimensionality estimator exploiting angle and norm concentration", Pattern Recognition 47(8),
2569-2581.

Method
------
For every point ``x_i`` take its ``k + 1`` nearest neighbours (the shared exact core,
:func:`gelora.estimators.knn.knn_distances`):

1. **Norm concentration (MIND_ML).** ``rho_i = r_1(x_i) / r_{k+1}(x_i)``. For points uniform in a
   ``d``-ball ``rho`` has density ``g(r; k, d) = k d r^(d-1) (1 - r^d)^(k-1)`` on ``(0, 1)``; ``d_ml`` is
   the maximiser over real ``d > 0`` of ``sum_i log g(rho_i; k, d)`` (concave in ``d``; solved by Newton's
   method, which converges monotonically from the ``k = 1`` closed form).
2. **Angle concentration.** The ``k (k - 1) / 2`` angles ``theta`` between the vectors ``x_j - x_i`` to the
   ``k`` nearest neighbours are fitted with a von Mises distribution per point: mean direction
   ``nu_i = atan2(sum sin theta, sum cos theta)`` and concentration ``tau_i = A^{-1}(eta_i)`` with ``eta_i``
   the mean resultant length and ``A^{-1}`` the piecewise approximation of Best & Fisher (1981) used by
   the paper. ``nu`` and ``tau`` are the averages of ``nu_i`` and ``tau_i`` over points.
3. **Calibration.** The same three statistics are computed on ``n_cal`` points drawn uniformly from the
   unit ``d``-ball for every candidate ``d = 1 .. d_max`` (``calibration_replicates`` independent samples,
   averaged). The estimate is the ``d`` minimising
   ``KL(g(.; k, d_ml) || g(.; k, d_ml^cal(d))) + KL(vM(nu, tau) || vM(nu^cal(d), tau^cal(d)))``.
   With ``fractal=True`` the KL curve is interpolated by a cubic spline and minimised continuously
   around the integer minimum.

The first KL term is evaluated exactly (not only up to a constant, see :func:`kl_ratio`) by a quadrature
that stays accurate for any ``k``; the von Mises KL uses exponentially scaled Bessel functions, so large
concentrations (high ``d``) do not overflow.

Calibration cache
-----------------
Calibration is the expensive part (``d_max`` neighbour searches). It depends only on
``(n_cal, k, seed, calibration_replicates, CALIBRATION_VERSION)``, so it is stored on disk as an ``.npz``
file under ``cache_dir`` (default ``$GELORA_CACHE_DIR/danco`` or ``~/.cache/gelora/danco``) whose name
contains a SHA-256 hash of these parameters. The sample of dimension ``d`` and replicate ``r`` is drawn
from ``numpy.random.SeedSequence([seed, d, r])``, independently of ``d_max``: a file computed for
``d_max = 30`` serves any ``d_max <= 30`` and is extended (not recomputed) for a larger ``d_max``, with
results identical to a fresh computation. Files are written atomically (temporary name + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import minimize_scalar
from scipy.special import binom, digamma, i0e, i1e, roots_legendre

from gelora._io import atomic_write_bytes
from gelora.errors import ConfigError, DegenerateDataError
from gelora.estimators._base import BaseIDEstimator
from gelora.estimators._checks import (
    check_choice,
    check_float,
    check_int,
    check_points,
    check_seed,
    is_torch_tensor,
    warn_small_sample,
)
from gelora.estimators.knn import knn_distances, knn_without_duplicates
from gelora.estimators.result import IDResult

__all__ = [
    "CALIBRATION_VERSION",
    "DANCo",
    "DancoStatistics",
    "calibration_statistics",
    "danco_min_samples",
    "danco_statistics",
    "default_cache_dir",
    "kl_ratio",
    "kl_von_mises",
    "mind_ml_dimension",
    "sample_unit_ball",
]

#: bump when anything that changes calibration numbers changes (the cache key includes it)
CALIBRATION_VERSION = 2

#: points per block in the angle computation (bounds memory to ~block * k * n_features * 8 bytes)
_ANGLE_BLOCK_BYTES = 64 * 2**20

#: rho is clipped to [_RHO_EPS, 1 - _RHO_EPS]: rho == 1 (tied r_1 and r_{k+1}, e.g. lattices) has zero
#: likelihood for every d
_RHO_EPS = 1e-12

#: mean resultant length is clipped below 1 (all k neighbours exactly collinear on one side, e.g. the ends of
#: a curve, gives eta = 1, where A^{-1} is infinite); A^{-1}(1 - 1e-4) ~ 5e3. Measured per-point tau on
#: n = 4000 ball samples: max 553 at d = 100, 2311 at d = 300, so the cap does not bind for d_max <= 100
#: (the default) and first binds in the high hundreds. A tighter cap (1 - 1e-5) made d = 1 less reliable
#: (5/8 instead of 8/8 exact at n = 200): the few end points then dominate the mean tau.
_ETA_MAX = 1.0 - 1e-4

_LEGENDRE_NODES = 96

#: Fewest points for a usable DANCo estimate, measured: on uniform spheres of dimension 2, 5 and 10 the
#: 95 % spread of the (integer) estimate is at most its size from n = 14 on, for k = 10 and for k = 5, and
#: up to 1.2 times it at n = 12. The norm statistic alone would allow fewer (its Fisher information is
#: 5.9 / d**2 per point at k = 10, i.e. n >= 3); the integer estimate and a calibration drawn at the same
#: small n do not. See docs/estimators.md, "Smallest sample".
DANCO_MIN_SAMPLES = 14


def danco_min_samples(k: int) -> int:
    """Smallest sample DANCo supports: ``max(k + 2, DANCO_MIN_SAMPLES)`` (14 for the default ``k = 10``).

    Parameters
    ----------
    k : int
        Neighbours per point.

    Returns
    -------
    int
        Fewer points (after duplicates and ``calibration_n`` subsampling) give a
        :class:`~gelora.errors.SmallSampleWarning`; fewer than ``k + 2`` a ``NotEnoughSamplesError``.
    """
    return max(int(k) + 2, DANCO_MIN_SAMPLES)


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------


def mind_ml_dimension(
    log_rho: np.ndarray, k: int, *, d0: float | None = None, tol: float = 1e-10, max_iter: int = 200
) -> np.ndarray:
    """Maximum-likelihood dimension of normalised neighbour distances (MIND_MLk of the paper).

    Maximises ``l(d) = n log(k d) + (d - 1) sum log rho + (k - 1) sum log(1 - rho^d)`` over real ``d > 0``.
    ``l`` is strictly concave and ``l'`` is convex and decreasing, so Newton's method started at the
    ``k = 1`` solution ``d0 = -n / sum log rho`` (which lies left of the root) converges monotonically.

    Parameters
    ----------
    log_rho : numpy.ndarray of float64, shape (n,) or (B, n)
        ``log(r_1 / r_{k+1})`` per point, all strictly negative; a 2-D array is solved row by row
        (bootstrap replicates).
    k : int
        Neighbourhood size (``rho`` uses the ``(k + 1)``-th neighbour).
    d0 : float, optional
        Starting point (e.g. the full-data estimate for bootstrap replicates, which then converge in a few
        steps). From the right of the root the first step may overshoot to the left, after which the
        iteration is again monotone; non-positive iterates are halved back into ``d > 0``.
    tol : float
        Relative change of ``d`` at which iteration stops.
    max_iter : int
        Newton iterations at most.

    Returns
    -------
    numpy.ndarray of float64, shape () or (B,)
        The maximum-likelihood dimension per row.
    """
    L = np.atleast_2d(np.asarray(log_rho, dtype=np.float64))
    n = L.shape[1]
    sum_l = L.sum(axis=1)
    d = -n / sum_l if d0 is None else np.full(L.shape[0], float(d0))
    if k > 1:
        for _ in range(max_iter):
            x = np.exp(d[:, None] * L)  # rho^d in (0, 1)
            one_m = -np.expm1(d[:, None] * L)  # 1 - rho^d, accurate near 0
            t = x * L / one_m
            grad = n / d + sum_l - (k - 1) * t.sum(axis=1)
            hess = -n / d**2 - (k - 1) * (t * L / one_m).sum(axis=1)
            step = grad / hess
            d_new = d - step
            d_new = np.where(d_new > 0, d_new, d / 2)
            done = np.abs(d_new - d) <= tol * d
            d = d_new
            if done.all():
                break
    return d if np.ndim(log_rho) == 2 else d[0]


def _a_inverse(eta: np.ndarray) -> np.ndarray:
    """Best & Fisher (1981) approximation of the inverse of ``A(tau) = I1(tau) / I0(tau)``."""
    eta = np.minimum(np.asarray(eta, dtype=np.float64), _ETA_MAX)
    low = 2 * eta + eta**3 + 5 * eta**5 / 6
    mid = -0.4 + 1.39 * eta + 0.43 / (1 - eta)
    with np.errstate(divide="ignore"):  # eta == 0 only reaches the (unused) high branch
        high = 1.0 / (eta**3 - 4 * eta**2 + 3 * eta)
    return np.where(eta < 0.53, low, np.where(eta < 0.85, mid, high))


def _angle_fits(
    X: np.ndarray, nbr: np.ndarray, *, skdim_mean_direction: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point von Mises fit (nu_i, tau_i) of the angles between the vectors to the neighbours.

    Parameters
    ----------
    X : numpy.ndarray of float64, shape (n, D)
    nbr : numpy.ndarray of int64, shape (n, k)
        Indices of the k nearest neighbours of each point (k >= 2).
    skdim_mean_direction : bool
        Use ``arctan(sum sin / sum cos)`` (the R package / scikit-dimension convention, which folds mean
        angles above pi/2 to negative values) instead of ``atan2``. For agreement tests only.

    Returns
    -------
    nu, tau : numpy.ndarray of float64, shape (n,)
        Mean direction (radians) and concentration of the angles around each point.
    """
    n, k = nbr.shape
    D = X.shape[1]
    iu, ju = np.triu_indices(k, 1)
    nu = np.empty(n, dtype=np.float64)
    tau = np.empty(n, dtype=np.float64)
    block = max(1, _ANGLE_BLOCK_BYTES // (8 * k * max(D, k)))
    for s in range(0, n, block):
        e = min(n, s + block)
        V = X[nbr[s:e]] - X[s:e, None, :]  # (b, k, D)
        G = V @ V.transpose(0, 2, 1)  # (b, k, k) Gram matrix of the neighbour vectors
        norms = np.sqrt(np.einsum("bii->bi", G))
        cos = G[:, iu, ju] / (norms[:, iu] * norms[:, ju])
        np.clip(cos, -1.0, 1.0, out=cos)
        sin = np.sqrt(1.0 - cos**2)  # angles lie in [0, pi]
        c = cos.mean(axis=1)
        sn = sin.mean(axis=1)
        if skdim_mean_direction:
            with np.errstate(divide="ignore", invalid="ignore"):
                nu[s:e] = np.arctan(sn / c)
        else:
            nu[s:e] = np.arctan2(sn, c)
        tau[s:e] = _a_inverse(np.hypot(c, sn))
    return nu, tau


class DancoStatistics:
    """Per-point DANCo statistics of one point cloud.

    Attributes
    ----------
    log_rho : numpy.ndarray of float64, shape (n,)
        ``log(r_1 / r_{k+1})`` per point.
    nu, tau : numpy.ndarray of float64, shape (n,)
        Per-point von Mises mean direction (radians) and concentration of the neighbour angles.
    k : int
        Neighbourhood size.
    """

    def __init__(self, log_rho: np.ndarray, nu: np.ndarray, tau: np.ndarray, k: int) -> None:
        self.log_rho = log_rho
        self.nu = nu
        self.tau = tau
        self.k = k

    def summary(self) -> tuple[float, float, float]:
        """Return ``(d_ml, mean nu, mean tau)``, the three numbers DANCo compares."""
        return (
            float(mind_ml_dimension(self.log_rho, self.k)),
            float(self.nu.mean()),
            float(self.tau.mean()),
        )


def danco_statistics(
    X: np.ndarray,
    dist: np.ndarray,
    idx: np.ndarray,
    k: int,
    *,
    skdim_mean_direction: bool = False,
) -> DancoStatistics:
    """DANCo statistics from precomputed neighbours.

    Parameters
    ----------
    X : numpy.ndarray of float64, shape (n, D)
        The points.
    dist, idx : numpy.ndarray, shape (n, k + 1)
        Distances (ascending, strictly positive) and indices of the ``k + 1`` nearest other points, as
        returned by :func:`gelora.estimators.knn.knn_distances`.
    k : int
        Neighbourhood size (>= 2).
    skdim_mean_direction : bool
        See :func:`_angle_fits`.

    Returns
    -------
    DancoStatistics
    """
    rho = np.clip(dist[:, 0] / dist[:, k], _RHO_EPS, 1.0 - _RHO_EPS)
    nu, tau = _angle_fits(X, idx[:, :k], skdim_mean_direction=skdim_mean_direction)
    return DancoStatistics(np.log(rho), nu, tau, k)


def sample_unit_ball(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in the unit ``d``-ball: Gaussian directions times radii ``U^(1/d)``.

    Returns
    -------
    numpy.ndarray of float64, shape (n, d)
    """
    g = rng.standard_normal((n, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r = rng.random(n) ** (1.0 / d)
    return g * r[:, None]


# --------------------------------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------------------------------


def _ratio_integral_quadrature(k: int, c: np.ndarray) -> np.ndarray:
    """``I(k, c) = int_0^1 (1 - t^c)^k / (1 - t) dt`` for ``c > 0`` (elementwise), by quadrature.

    Computed as ``int_0^inf (1 - (1 - e^-y)^c)^k dy`` by Gauss-Legendre quadrature on ``y = Y s^2``; the
    integrand decays like ``(c e^-y)^k`` so ``Y = log(max(max c, 1)) + 40 / k + 2`` truncates below
    1e-17. Absolute error < 2e-8 for k in [2, 30], c in [0.005, 300] (checked against mpmath). Stable for
    any ``k``.
    """
    x, w = roots_legendre(_LEGENDRE_NODES)
    s = (x + 1) / 2
    c = np.asarray(c, dtype=np.float64)
    Y = float(np.log(max(float(c.max(initial=1.0)), 1.0))) + 40.0 / k + 2.0
    y = Y * s**2
    log_v = np.log(-np.expm1(-y))  # log(1 - e^-y)
    weights = w * Y * s  # (w / 2) * dy/ds
    return (-np.expm1(c[..., None] * log_v)) ** k @ weights


def _ratio_integral_series(k: int, c: np.ndarray) -> np.ndarray:
    """The same integral as the paper's finite sum ``-sum_i (-1)^i C(k, i) psi(1 + i c)``.

    Exact in exact arithmetic; in float64 the alternating sum loses about ``log10(C(k, k/2))`` digits,
    so it is used only for ``k <= _SERIES_MAX_K`` (error < 1e-10), where it is ~10x cheaper.
    """
    i = np.arange(k + 1, dtype=np.float64)
    coef = (-1.0) ** i * binom(k, i)
    c = np.asarray(c, dtype=np.float64)
    return -(digamma(1.0 + c[..., None] * i) @ coef)


#: largest k for which the finite digamma sum is accurate to 1e-10 in float64 (C(20, 10) ~ 1.8e5)
_SERIES_MAX_K = 20


def _ratio_integral(k: int, c: np.ndarray) -> np.ndarray:
    """``I(k, c) = int_0^1 (1 - t^c)^k / (1 - t) dt``: finite series for small k, quadrature otherwise."""
    if k <= _SERIES_MAX_K:
        return _ratio_integral_series(k, c)
    return _ratio_integral_quadrature(k, c)


def kl_ratio(d_data: np.ndarray, d_ref: np.ndarray, k: int) -> np.ndarray:
    """Kullback-Leibler divergence ``KL(g(.; k, d_data) || g(.; k, d_ref))`` of ratio densities.

    ``g(r; k, d) = k d r^(d-1) (1 - r^d)^(k-1)``. With ``q = d_ref / d_data``, ``u = rho^d_data`` is
    Beta(1, k) under the first density, which gives the closed form
    ``KL = -log q - (1 - q) H_k - (k - 1) / k + (k - 1) I(k, 1 / q)`` (``H_k`` the harmonic number,
    ``I`` in :func:`_ratio_integral`). It is zero when ``d_data == d_ref``. The paper's expression differs
    by the constant ``-H_k - (k - 1)/k``, which changes neither the minimiser nor the fractal estimate.

    Parameters
    ----------
    d_data, d_ref : array-like of float, broadcastable
        Positive dimensions.
    k : int
        Neighbourhood size.

    Returns
    -------
    numpy.ndarray of float64, the broadcast shape, non-negative.
    """
    d_data = np.asarray(d_data, dtype=np.float64)
    d_ref = np.asarray(d_ref, dtype=np.float64)
    q = d_ref / d_data
    h_k = float(np.sum(1.0 / np.arange(1, k + 1)))
    kl = -np.log(q) - (1.0 - q) * h_k - (k - 1) / k + (k - 1) * _ratio_integral(k, 1.0 / q)
    return np.maximum(kl, 0.0)


def kl_von_mises(nu1: Any, tau1: Any, nu2: Any, tau2: Any) -> np.ndarray:
    """``KL(vM(nu1, tau1) || vM(nu2, tau2))`` of two von Mises distributions (elementwise).

    ``log(I0(tau2) / I0(tau1)) + A(tau1) (tau1 - tau2 cos(nu1 - nu2))`` with ``A = I1 / I0``, evaluated
    with exponentially scaled Bessel functions so that large concentrations do not overflow.
    """
    nu1, tau1, nu2, tau2 = (np.asarray(a, dtype=np.float64) for a in (nu1, tau1, nu2, tau2))
    log_ratio = np.log(i0e(tau2)) + tau2 - np.log(i0e(tau1)) - tau1
    a1 = i1e(tau1) / i0e(tau1)
    return log_ratio + a1 * (tau1 - tau2 * np.cos(nu1 - nu2))


# --------------------------------------------------------------------------------------------------
# calibration and its cache
# --------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$GELORA_CACHE_DIR/danco`` when that variable is set, else ``~/.cache/gelora/danco``."""
    root = os.environ.get("GELORA_CACHE_DIR")
    return Path(root) / "danco" if root else Path.home() / ".cache" / "gelora" / "danco"


def _calibration_key(
    n: int, k: int, seed: int, replicates: int, skdim_mean_direction: bool
) -> dict[str, Any]:
    return {
        "calibration_version": CALIBRATION_VERSION,
        "n": int(n),
        "k": int(k),
        "seed": int(seed),
        "replicates": int(replicates),
        "mean_direction": "arctan" if skdim_mean_direction else "atan2",
        "sampler": "unit_ball_gaussian_direction_uniform_radius",
    }


def _cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir / f"danco-n{key['n']}-k{key['k']}-{digest}.npz"


def _simulate_dimension(
    d: int, n: int, k: int, seed: int, replicates: int, device: Any, skdim_mean_direction: bool
) -> np.ndarray:
    """(replicates, 3) array of (d_ml, mean nu, mean tau) on uniform unit-ball samples of dimension d."""
    out = np.empty((replicates, 3), dtype=np.float64)
    for r in range(replicates):
        rng = np.random.default_rng(np.random.SeedSequence([seed, d, r]))
        Y = sample_unit_ball(n, d, rng)
        dist, idx = knn_distances(Y, k + 1, device=device)
        if np.any(dist[:, 0] == 0.0):  # probability zero for continuous samples
            raise DegenerateDataError(f"calibration sample d={d} replicate={r} has duplicate points")
        out[r] = danco_statistics(Y, dist, idx, k, skdim_mean_direction=skdim_mean_direction).summary()
    return out


def _load_cache(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            stored_key = json.loads(str(z["key"]))
            stats = np.array(z["stats"], dtype=np.float64)
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt or foreign file: recompute and overwrite
        warnings.warn(f"ignoring unreadable DANCo calibration cache {path}: {exc}", UserWarning, stacklevel=3)
        return None
    if stored_key != key or stats.ndim != 3 or stats.shape[1] != key["replicates"] or stats.shape[2] != 3:
        warnings.warn(
            f"ignoring DANCo calibration cache {path}: its key does not match", UserWarning, stacklevel=3
        )
        return None
    return stats


def _save_cache(path: Path, key: dict[str, Any], stats: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, key=np.array(json.dumps(key, sort_keys=True)), stats=stats)
    atomic_write_bytes(path, buf.getvalue())


def calibration_statistics(
    n: int,
    k: int,
    d_max: int,
    *,
    seed: int = 0,
    replicates: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    device: Any = None,
    skdim_mean_direction: bool = False,
) -> tuple[np.ndarray, bool, Path | None]:
    """DANCo statistics of uniform unit-ball samples for ``d = 1 .. d_max``, cached on disk.

    Parameters
    ----------
    n : int
        Points per calibration sample (>= k + 2).
    k : int
        Neighbourhood size.
    d_max : int
        Largest candidate dimension.
    seed : int
        Sample ``(d, r)`` uses ``numpy.random.SeedSequence([seed, d, r])``.
    replicates : int
        Independent samples per dimension.
    cache_dir : path, optional
        Cache folder (default :func:`default_cache_dir`).
    use_cache : bool
        Read and write the disk cache.
    device : str or torch.device, optional
        Device of the neighbour search.
    skdim_mean_direction : bool
        See :func:`_angle_fits`.

    Returns
    -------
    stats : numpy.ndarray of float64, shape (d_max, replicates, 3)
        ``stats[d - 1, r] = (d_ml, mean nu, mean tau)``.
    cached : bool
        True when every dimension came from the cache (nothing simulated).
    path : pathlib.Path or None
        The cache file (None when ``use_cache`` is False).
    """
    key = _calibration_key(n, k, seed, replicates, skdim_mean_direction)
    path = None
    stored: np.ndarray | None = None
    if use_cache:
        path = _cache_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), key)
        stored = _load_cache(path, key)
    have = 0 if stored is None else stored.shape[0]
    if have >= d_max:
        assert stored is not None
        return stored[:d_max], True, path
    new = [
        _simulate_dimension(d, n, k, seed, replicates, device, skdim_mean_direction)
        for d in range(have + 1, d_max + 1)
    ]
    stats = np.stack(new) if stored is None else np.concatenate([stored, np.stack(new)])
    if path is not None:
        try:
            _save_cache(path, key, stats)
        except OSError as exc:
            warnings.warn(f"could not write DANCo calibration cache {path}: {exc}", UserWarning, stacklevel=2)
    return stats, False, path


# --------------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------------


def _kl_curve(d_ml: np.ndarray, nu: np.ndarray, tau: np.ndarray, cal: np.ndarray, k: int) -> np.ndarray:
    """KL sum for every candidate dimension; inputs of shape (B,), cal of shape (d_max, 3) -> (B, d_max)."""
    kl_d = kl_ratio(d_ml[:, None], cal[None, :, 0], k)
    kl_vm = kl_von_mises(nu[:, None], tau[:, None], cal[None, :, 1], cal[None, :, 2])
    return kl_d + kl_vm


def _fractal_minimum(kl: np.ndarray) -> float:
    """Continuous minimiser of a cubic spline through ``(d, kl[d - 1])`` near its integer minimum."""
    d_max = kl.shape[0]
    d_int = int(np.argmin(kl)) + 1
    if d_max < 2:
        return float(d_int)
    spline = CubicSpline(np.arange(1, d_max + 1, dtype=np.float64), kl, bc_type="natural")
    lo, hi = max(1.0, d_int - 1.0), min(float(d_max), d_int + 1.0)
    res = minimize_scalar(spline, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best = float(res.x)
    return best if spline(best) <= kl[d_int - 1] else float(d_int)


class DANCo(BaseIDEstimator):
    """DANCo intrinsic-dimension estimator (Ceruti et al. 2014), calibrated by cached simulation.

    Parameters
    ----------
    k : int, default 10
        Neighbours per point (>= 2). ``rho`` uses the ``(k + 1)``-th neighbour, the angles the first ``k``.
    d_max : int, optional
        Largest candidate dimension; default ``min(n_features, 100)``.
    fractal : bool, default False
        Return the continuous minimiser of a cubic spline through the KL curve instead of the integer
        minimiser.
    calibration_replicates : int, default 1
        Unit-ball samples per candidate dimension (their statistics are averaged). The paper uses 1;
        more replicates reduce the calibration noise at proportional first-fit cost.
    calibration_n : int, optional
        Cap on the sample size. The paper calibrates at the data's size ``n`` (the default, ``None``),
        which costs ``d_max`` neighbour searches of ``n`` points on the first fit for each new ``n``. With
        ``calibration_n < n`` the estimator runs on a seeded random subset of ``calibration_n`` points
        (data statistics and calibration at equal size, as the paper requires): every data set of at
        least that size shares one cached calibration, at the price of the statistical power of the
        discarded points. (Calibrating at ``calibration_n`` while keeping all ``n`` points would bias the
        estimate downwards, e.g. 38 instead of 40 for a 40-ball with n = 4000 and a cap of 1000; see
        ``docs/danco.md``.) ``result_.params["n_input"]`` records the size before subsampling.
    cache_dir : path, optional
        Calibration cache folder; default ``$GELORA_CACHE_DIR/danco`` or ``~/.cache/gelora/danco``.
    metric : {"euclidean", "cosine"}, default "euclidean"
        ``"cosine"`` runs the whole method on the unit-normalised rows (chordal distances).
    device : str or torch.device, optional
        Device of the neighbour searches (data and calibration); statistics are computed with NumPy.
    duplicates : {"raise", "dedupe"}, default "raise"
        What to do with coincident points (they give ``rho = 0``).
    seed : int, default 0
        Seeds the calibration samples and the bootstrap.
    ci_level : float, default 0.95
        Coverage of the bootstrap interval.
    n_bootstrap : int, default 200
        Bootstrap replicates for ``ci_``; ``0`` disables it (``ci_`` is then ``(d, d)``, method "none").
        Points are resampled with replacement and the data statistics recomputed from the resampled
        per-point values (neighbourhoods are not recomputed); the calibration is reused, so the bootstrap
        costs ``n_bootstrap`` MIND_ML solves and KL curves (milliseconds). It reflects the sampling noise of
        the data statistics, not the calibration noise.

    Attributes
    ----------
    dimension_ : float
        The estimate (an integer value unless ``fractal``).
    ci_ : tuple of float
        Percentile bootstrap interval at ``ci_level``.
    result_ : IDResult
    kl_ : numpy.ndarray of float64, shape (d_max,)
        KL divergence sum for ``d = 1 .. d_max``.
    statistics_ : dict
        The data's ``d_ml``, ``nu`` and ``tau``.
    calibration_ : numpy.ndarray of float64, shape (d_max, 3)
        Calibration ``(d_ml, nu, tau)`` per candidate dimension (mean over replicates).
    calibration_cached_ : bool
        True when the calibration was read from the cache (no simulation ran).
    calibration_path_ : pathlib.Path or None
        The cache file.
    n_duplicates_removed_ : int
    calibration_seconds_ : float
        Wall time of reading (or simulating) the calibration in this fit.
    """

    method = "danco"

    def __init__(
        self,
        k: int = 10,
        d_max: int | None = None,
        fractal: bool = False,
        calibration_replicates: int = 1,
        calibration_n: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        metric: str = "euclidean",
        device: Any = None,
        duplicates: str = "raise",
        seed: int = 0,
        ci_level: float = 0.95,
        n_bootstrap: int = 200,
    ) -> None:
        self.k = k
        self.d_max = d_max
        self.fractal = fractal
        self.calibration_replicates = calibration_replicates
        self.calibration_n = calibration_n
        self.cache_dir = cache_dir
        self.metric = metric
        self.device = device
        self.duplicates = duplicates
        self.seed = seed
        self.ci_level = ci_level
        self.n_bootstrap = n_bootstrap
        # agreement tests only: reproduce the arctan mean-direction convention of scikit-dimension
        self._skdim_mean_direction = False

    def _validate(self) -> dict[str, Any]:
        p: dict[str, Any] = {}
        p["k"] = check_int(self.k, "k", minimum=2)
        p["d_max"] = None if self.d_max is None else check_int(self.d_max, "d_max", minimum=1)
        if not isinstance(self.fractal, bool | np.bool_):
            raise ConfigError(f"fractal must be True or False, got {self.fractal!r}")
        p["fractal"] = bool(self.fractal)
        p["calibration_replicates"] = check_int(
            self.calibration_replicates, "calibration_replicates", minimum=1
        )
        p["calibration_n"] = (
            None
            if self.calibration_n is None
            else check_int(self.calibration_n, "calibration_n", minimum=p["k"] + 2)
        )
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise ConfigError(f"cache_dir must be a path or None, got {self.cache_dir!r}")
        p["metric"] = check_choice(self.metric, "metric", ("euclidean", "cosine"))
        p["duplicates"] = check_choice(self.duplicates, "duplicates", ("raise", "dedupe"))
        seed = check_seed(self.seed)
        if seed is None:
            raise ConfigError("seed must be a non-negative integer (DANCo's calibration is always seeded)")
        p["seed"] = seed
        p["ci_level"] = check_float(
            self.ci_level, "ci_level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        p["n_bootstrap"] = check_int(self.n_bootstrap, "n_bootstrap", minimum=0)
        return p

    def fit(self, X: Any, y: Any = None) -> DANCo:
        """Estimate the intrinsic dimension of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (n_samples, n_features)
            Points; at least ``k + 2`` distinct rows; fewer than :func:`danco_min_samples` (14 at
            ``k = 10``) give a :class:`~gelora.errors.SmallSampleWarning`.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            An invalid parameter.
        InvalidInputError, NotEnoughSamplesError, DegenerateDataError, DuplicatePointsError
            Bad input (see :func:`gelora.estimators._checks.check_points`).
        """
        p = self._validate()
        k = p["k"]
        X = check_points(X, min_samples=k + 2, name="X")
        n_input = int(X.shape[0])
        cap = p["calibration_n"]
        if cap is not None and n_input > cap:
            # the paper compares statistics at equal sample size: run on a seeded subsample of `cap` points
            rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0x5AB5]))
            keep = np.sort(rng.choice(n_input, size=cap, replace=False))
            if is_torch_tensor(X):
                import torch

                X = X[torch.from_numpy(keep).to(X.device)]
            else:
                X = X[keep]
        knn = knn_without_duplicates(
            X, k + 1, metric=p["metric"], device=self.device, duplicates=p["duplicates"], name="X"
        )
        Xu = knn.X
        if is_torch_tensor(Xu):
            Xu = Xu.detach().to("cpu").double().numpy()
        Xu = np.asarray(Xu, dtype=np.float64)
        if p["metric"] == "cosine":
            Xu = Xu / np.linalg.norm(Xu, axis=1, keepdims=True)
        n, n_features = Xu.shape
        d_max = p["d_max"] if p["d_max"] is not None else min(n_features, 100)
        n_cal = n  # equal to calibration_n when the data were subsampled (fewer if duplicates were removed)

        stats = danco_statistics(Xu, knn.dist, knn.idx, k, skdim_mean_direction=self._skdim_mean_direction)
        t0 = time.perf_counter()
        cal_all, cached, path = calibration_statistics(
            n_cal,
            k,
            d_max,
            seed=p["seed"],
            replicates=p["calibration_replicates"],
            cache_dir=self.cache_dir,
            device=self.device,
            skdim_mean_direction=self._skdim_mean_direction,
        )
        self.calibration_seconds_ = time.perf_counter() - t0
        cal = cal_all.mean(axis=1)

        d_ml, nu_bar, tau_bar = stats.summary()
        kl = _kl_curve(np.array([d_ml]), np.array([nu_bar]), np.array([tau_bar]), cal, k)[0]
        if not np.all(np.isfinite(kl)):
            raise DegenerateDataError(
                "DANCo's KL divergences are not finite for these data (statistics "
                f"d_ml={d_ml:.4g}, nu={nu_bar:.4g}, tau={tau_bar:.4g}); the neighbourhoods are degenerate"
            )
        dim = _fractal_minimum(kl) if p["fractal"] else float(np.argmin(kl) + 1)
        warn_small_sample(n, danco_min_samples(k), "DANCo")  # after the checks that raise

        B = p["n_bootstrap"]
        if B > 0:
            rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0xB007]))
            boot = np.empty(B, dtype=np.float64)
            chunk = max(1, int(2**24 // (8 * n)))
            for s in range(0, B, chunk):
                e = min(B, s + chunk)
                ii = rng.integers(0, n, size=(e - s, n))
                dml_b = mind_ml_dimension(stats.log_rho[ii], k, d0=d_ml)
                kl_b = _kl_curve(dml_b, stats.nu[ii].mean(axis=1), stats.tau[ii].mean(axis=1), cal, k)
                if p["fractal"]:
                    boot[s:e] = [_fractal_minimum(row) for row in kl_b]
                else:
                    boot[s:e] = np.argmin(kl_b, axis=1) + 1
            alpha = (1.0 - p["ci_level"]) / 2
            lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
            ci = (float(min(lo, dim)), float(max(hi, dim)))
            ci_method = "bootstrap"
        else:
            ci, ci_method = (dim, dim), "none"

        params = {
            "k": k,
            "d_max": d_max,
            "fractal": p["fractal"],
            "calibration_replicates": p["calibration_replicates"],
            "calibration_n": n_cal,
            "n_input": n_input,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "metric": p["metric"],
            "device": None if self.device is None else str(self.device),
            "duplicates": p["duplicates"],
            "n_bootstrap": B,
            "calibration_version": CALIBRATION_VERSION,
            "d_ml": d_ml,
            "nu": nu_bar,
            "tau": tau_bar,
        }
        self.dimension_ = dim
        self.ci_ = ci
        self.kl_ = kl
        self.statistics_ = {"d_ml": d_ml, "nu": nu_bar, "tau": tau_bar}
        self.calibration_ = cal
        self.calibration_cached_ = cached
        self.calibration_path_ = path
        self.n_duplicates_removed_ = knn.n_duplicates_removed
        self.result_ = IDResult(
            dimension=dim,
            ci=ci,
            method="danco",
            n_samples=n,
            n_features=n_features,
            k=k,
            ci_level=p["ci_level"],
            ci_method=ci_method,
            params=params,
            seed=p["seed"],
            n_duplicates_removed=knn.n_duplicates_removed,
        )
        return self
