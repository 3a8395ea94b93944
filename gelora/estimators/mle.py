"""Levina–Bickel maximum-likelihood intrinsic dimension (NIPS 2004) with the MacKay–Ghahramani pooling.

Around each point ``x`` with neighbour distances ``T_1(x) <= ... <= T_k(x)`` a locally uniform
d-dimensional density makes ``S_k(x) = sum_{j<k} log(T_k / T_j)`` a Gamma(k - 1, rate d) variable, so the
pointwise estimate is ``m_k(x) = (k - 1) / S_k(x)`` (Levina & Bickel), or ``(k - 2) / S_k(x)`` to be
unbiased for d (``unbiased=True``). MacKay & Ghahramani (2005, "Comments on Levina & Bickel") pointed out
that averaging the pointwise estimates is biased and that the likelihood pools their *inverses*:
``m_k = 1 / mean_x(1 / m_k(x))`` (``correction=True``, the default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gelora.errors import ConfigError
from gelora.estimators._base import BaseIDEstimator
from gelora.estimators._checks import (
    check_choice,
    check_int,
    check_points,
    check_seed,
    n_for_information,
    warn_small_sample,
)
from gelora.estimators._ci import bootstrap_statistic, gamma_rate_ci, percentile_ci
from gelora.estimators.knn import knn_without_duplicates

__all__ = ["MLE", "MLE_MIN_INFORMATION", "mle_from_distances", "mle_min_samples"]

#: ``n (k - 1)`` at which the measured 95 % spread of the estimate falls to its size. Independent
#: neighbourhoods would need 15.4 (relative s.e. ``1 / sqrt(n (k - 1))``); overlapping ones need about
#: twice that at small k: k = 2 needs n = 30 (27 is too few), k = 3 n = 14 (10 too few), on uniform
#: spheres of dimension 2, 5 and 10 (docs/estimators.md, "Smallest sample").
MLE_MIN_INFORMATION = 30.0


def mle_min_samples(k_min: int, k_max: int) -> int:
    """Smallest sample the Levina–Bickel MLE supports for neighbourhood sizes ``k_min..k_max``.

    Each point's ``S_k ~ Gamma(k - 1, rate d)`` carries Fisher information ``(k - 1) / d**2``, so ``n``
    independent points give a relative standard error ``1 / sqrt(n (k - 1))``; the 95 % spread is
    narrower than ``±50 %`` once ``n (k_min - 1) >= MLE_MIN_INFORMATION`` (measured; see there).

    Parameters
    ----------
    k_min, k_max : int
        Smallest and largest neighbourhood size (both ``k`` for a single one), ``>= 2``.

    Returns
    -------
    int
        ``max(k_max + 1, ceil(30 / (k_min - 1)))``: the hard minimum ``k_max + 1`` for ``k >= 6``
        (21 for the default ``k = 20``); 30 for ``k = 2``, 15 for ``k = 3``.
    """
    return max(k_max + 1, n_for_information(float(k_min - 1), MLE_MIN_INFORMATION))


def _inverse_pointwise(dist: np.ndarray, ks: np.ndarray, unbiased: bool) -> np.ndarray:
    """``1 / m_k(x)`` for every point and every k in ``ks``: shape (n, len(ks))."""
    logd = np.log(dist)  # dist > 0 is guaranteed by the duplicate check
    csum = np.cumsum(logd, axis=1)  # csum[:, k-1] = sum_{j<=k} log T_j
    out = np.empty((dist.shape[0], ks.shape[0]), dtype=np.float64)
    for c, k in enumerate(ks):
        s = (k - 1) * logd[:, k - 1] - csum[:, k - 2]  # sum_{j<k} log(T_k / T_j)
        out[:, c] = s / (k - 2 if unbiased else k - 1)
    return out


def mle_from_distances(
    dist: np.ndarray, ks: np.ndarray, *, correction: bool = True, unbiased: bool = False
) -> tuple[float, np.ndarray]:
    """Global and pointwise Levina–Bickel estimates from sorted neighbour distances.

    Parameters
    ----------
    dist : numpy.ndarray, shape (n, k_max)
        Positive distances to the nearest other points, ascending along rows.
    ks : numpy.ndarray of int
        Neighbourhood sizes to average over (each ``2 <= k <= k_max``; ``>= 3`` when ``unbiased``).
    correction : bool
        Pool the inverses of the pointwise estimates (MacKay–Ghahramani) instead of their mean.
    unbiased : bool
        Pointwise numerator ``k - 2`` instead of ``k - 1``.

    Returns
    -------
    dimension : float
        Average over ``ks`` of the pooled estimate.
    pointwise : numpy.ndarray, shape (n,)
        Average over ``ks`` of ``m_k(x)`` for every point.
    """
    inv = _inverse_pointwise(dist, ks, unbiased)
    with np.errstate(divide="ignore"):
        pw_k = 1.0 / inv  # an all-tied neighbourhood gives inf; kept out of the global via the pooling
    pointwise = pw_k.mean(axis=1)
    if correction:
        dimension = float(np.mean(1.0 / inv.mean(axis=0)))
    else:
        dimension = float(np.mean(pw_k.mean(axis=0)))
    return dimension, pointwise


class MLE(BaseIDEstimator):
    """Levina–Bickel maximum-likelihood intrinsic dimension with optional MacKay–Ghahramani pooling.

    Parameters
    ----------
    k : int, default 20
        Neighbours per point (ignored when ``k_min``/``k_max`` are given).
    k_min, k_max : int, optional
        Average the estimate over ``k = k_min..k_max`` (Levina & Bickel's recommendation); both or neither.
    correction : bool, default True
        ``True``: global estimate ``1 / mean(1 / m_k(x))`` (MacKay–Ghahramani); ``False``: the original
        ``mean(m_k(x))``, which is biased upwards by about ``d / (k - 2)`` for moderate k.
    unbiased : bool, default False
        Pointwise numerator ``k - 2`` (unbiased ``m_k(x)``) instead of ``k - 1``. With ``correction=True``
        the default ``k - 1`` is the right one: ``1 / m_k(x)`` is then unbiased for ``1 / d``.
    metric, device, backend, duplicates
        As for :class:`~gelora.estimators.TwoNN`.
    ci_level : float, default 0.95
    ci : {"bootstrap", "analytic"}, default "bootstrap"
        ``"bootstrap"``: seeded percentile bootstrap over points (resampling the pointwise terms; the
        neighbour graph is kept). ``"analytic"``: exact Gamma interval ``chi2(2 n (k-1)) / (2 sum S)`` —
        only valid for independent neighbourhoods, which overlapping k-NN balls are not, so it is too narrow
        and offered for comparison; it needs one k and ``correction=True``.
    n_bootstrap : int, default 500
        Resamples for ``ci="bootstrap"``; ``0`` disables the interval (``ci_`` is then ``(d, d)``, method
        "none": a point estimate, as scikit-dimension's MLE returns).
    seed : int or None, default 0

    Attributes
    ----------
    dimension_ : float
    ci_ : tuple of float
    result_ : IDResult
    dimension_pw_ : numpy.ndarray, shape (n_samples,)
        Pointwise estimates ``m_k(x)`` (averaged over the k range), for the points used.

    Notes
    -----
    Smallest sample: :func:`mle_min_samples` (the hard minimum ``k + 1`` for ``k >= 6``; below the
    variance bound a :class:`~gelora.errors.SmallSampleWarning`). Near ``n = k + 1`` every neighbourhood
    spans most of the sample, so on curved data the estimate is biased low even where its variance is
    small (docs/estimators.md).

    Agreement with scikit-dimension 0.5: ``MLE(k=K)`` equals ``skdim.id.MLE().fit(X, n_neighbors=K)``
    (its default ``comb="mle"`` is our ``correction=True``; ``comb="mean"`` is ``correction=False``;
    ``skdim.id.MLE(unbiased=True)`` is ``unbiased=True``) and ``dimension_pw_`` equals its
    ``dimension_pw_``, to floating-point noise, on data without duplicates. skdim has no k range and no
    interval; it returns ``nan``/``inf`` on duplicate points where we raise or de-duplicate.
    """

    method = "mle"

    def __init__(
        self,
        k: int = 20,
        k_min: int | None = None,
        k_max: int | None = None,
        correction: bool = True,
        *,
        unbiased: bool = False,
        metric: str = "euclidean",
        device: Any = None,
        backend: str = "auto",
        duplicates: str = "raise",
        ci_level: float = 0.95,
        ci: str = "bootstrap",
        n_bootstrap: int = 500,
        seed: int | None = 0,
    ) -> None:
        self.k = k
        self.k_min = k_min
        self.k_max = k_max
        self.correction = correction
        self.unbiased = unbiased
        self.metric = metric
        self.device = device
        self.backend = backend
        self.duplicates = duplicates
        self.ci_level = ci_level
        self.ci = ci
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def _ks(self) -> np.ndarray:
        lo = 3 if self.unbiased else 2
        if (self.k_min is None) != (self.k_max is None):
            raise ConfigError("give both k_min and k_max for a k range, or neither (then k is used)")
        if self.k_min is None:
            k = check_int(self.k, "k", minimum=lo)
            return np.array([k])
        k_min = check_int(self.k_min, "k_min", minimum=lo)
        k_max = check_int(self.k_max, "k_max", minimum=k_min)
        return np.arange(k_min, k_max + 1)

    def fit(self, X: Any, y: Any = None) -> MLE:
        """Estimate the global and pointwise intrinsic dimension of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (n_samples, n_features)
            At least ``k_max + 1`` points.
        y : ignored

        Returns
        -------
        self
        """
        self._validate_common()
        ks = self._ks()
        if not isinstance(self.correction, bool) or not isinstance(self.unbiased, bool):
            raise ConfigError("correction and unbiased must be booleans")
        ci_kind = check_choice(self.ci, "ci", ("bootstrap", "analytic"))
        n_boot = check_int(self.n_bootstrap, "n_bootstrap", minimum=0)
        seed = check_seed(self.seed)
        if ci_kind == "analytic" and (ks.shape[0] > 1 or not self.correction):
            raise ConfigError("ci='analytic' needs a single k and correction=True; use ci='bootstrap'")
        k_max = int(ks[-1])
        X = check_points(X, min_samples=k_max + 1)
        data = knn_without_duplicates(
            X, k_max, metric=self.metric, device=self.device, backend=self.backend, duplicates=self.duplicates
        )
        inv = _inverse_pointwise(data.dist, ks, self.unbiased)
        dimension, pointwise = mle_from_distances(
            data.dist, ks, correction=self.correction, unbiased=self.unbiased
        )
        n = inv.shape[0]
        level = float(self.ci_level)
        if ci_kind == "analytic":
            k = int(ks[0])
            fac = k - 2 if self.unbiased else k - 1
            total = float(inv[:, 0].sum()) * fac  # sum of S_k(x) ~ Gamma(n (k - 1), d) if independent
            ci = gamma_rate_ci(total, n * (k - 1), level)
            ci_method, used_seed = "analytic", None
        elif not n_boot:
            ci, ci_method, used_seed = (float(dimension), float(dimension)), "none", None
        else:
            correction = self.correction
            with np.errstate(divide="ignore"):
                pw = 1.0 / inv

            def stat(w: np.ndarray) -> np.ndarray:
                if correction:
                    return np.mean(n / (w @ inv), axis=1)
                return np.mean((w @ pw) / n, axis=1)

            ci = percentile_ci(bootstrap_statistic(stat, n, n_boot, seed), level)
            ci_method, used_seed = "bootstrap", seed
        warn_small_sample(data.X.shape[0], mle_min_samples(int(ks[0]), k_max), "MLE")
        self.dimension_pw_ = pointwise
        self._store(
            dimension=dimension,
            ci=ci,
            ci_method=ci_method,
            n_samples=data.X.shape[0],
            n_features=data.X.shape[1],
            k=k_max,
            n_duplicates_removed=data.n_duplicates_removed,
            seed=used_seed,
        )
        return self
