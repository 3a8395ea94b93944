"""TwoNN intrinsic-dimension estimator (Facco, d'Errico, Rodriguez & Laio, Sci. Rep. 7, 12140, 2017).

For each point the ratio ``mu = r2 / r1`` of its second to first nearest-neighbour distance follows,
on a locally uniform d-dimensional manifold, the Pareto law ``F(mu) = 1 - mu^(-d)`` on ``[1, inf)``,
i.e. ``log mu ~ Exponential(rate d)``, independently of the density.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from gelora.errors import ConfigError, SmallSampleWarning
from gelora.estimators._base import BaseIDEstimator
from gelora.estimators._checks import (
    check_choice,
    check_float,
    check_int,
    check_points,
    check_seed,
    warn_small_sample,
)
from gelora.estimators._ci import bootstrap_draws, gamma_rate_ci, percentile_ci, pipelined
from gelora.estimators.knn import knn_without_duplicates

__all__ = [
    "MIN_KEPT_RATIOS",
    "ScalePoint",
    "TwoNN",
    "twonn_from_ratios",
    "twonn_min_samples",
    "twonn_scale_analysis",
]

#: Fewest kept ratios for a usable estimate (95 % spread of the estimate no wider than the dimension).
#: Independent ratios would need 16 (relative s.e. 1/sqrt(n_keep)) or 18 (exact chi-square interval);
#: neighbouring points share neighbours, and on uniform spheres of dimension 2, 5 and 10 the measured
#: spread falls to the estimate's size only at n = 30 (27 kept). See docs/estimators.md, "Smallest sample".
MIN_KEPT_RATIOS = 27


def twonn_min_samples(discard_fraction: float = 0.1) -> int:
    """Smallest sample TwoNN supports: the least ``n`` that keeps :data:`MIN_KEPT_RATIOS` ratios.

    Parameters
    ----------
    discard_fraction : float in [0, 1)

    Returns
    -------
    int
        30 for the default ``discard_fraction=0.1``. Fewer points give a
        :class:`~gelora.errors.SmallSampleWarning` (3 is the hard minimum).
    """
    f = check_float(discard_fraction, "discard_fraction", low=0.0, high=1.0, high_inclusive=False)
    n = max(3, int(MIN_KEPT_RATIOS / (1.0 - f)) - 1)
    while _n_keep(n, f) < MIN_KEPT_RATIOS:
        n += 1
    return n


def _n_keep(N: int, discard_fraction: float) -> int:
    return int(N * (1.0 - discard_fraction))


def _mle_parts(log_mu_sorted: np.ndarray, n_keep: int) -> tuple[float, float]:
    """Total log-ratio T of the type-II censored sample and the estimate (n_keep - 1) / T."""
    N = log_mu_sorted.shape[-1]
    kept = log_mu_sorted[..., :n_keep]
    total = kept.sum(axis=-1) + (N - n_keep) * kept[..., -1]
    with np.errstate(divide="ignore"):  # total == 0 is reported by the caller
        return total, (n_keep - 1) / total


def _linear_slope(log_mu_sorted: np.ndarray, n_keep: int) -> np.ndarray:
    """Least-squares slope through the origin of -log(1 - i/N) on log(mu_(i)), i = 1..n_keep.

    The point i = N (F_emp = 1, an infinite ordinate) is never used, so ``discard_fraction=0`` works.
    """
    N = log_mu_sorted.shape[-1]
    n_keep = min(n_keep, N - 1)
    x = log_mu_sorted[..., :n_keep]
    y = _linear_ordinates(N, n_keep)
    return (x * y).sum(axis=-1) / (x * x).sum(axis=-1)


def _linear_ordinates(N: int, n_keep: int) -> np.ndarray:
    """The linear fit's ordinates ``-log(1 - i/N)``, i = 1..n_keep (shape (n_keep,))."""
    return -np.log1p(-np.arange(1, n_keep + 1) / N)


def _linear_bootstrap(log_mu: np.ndarray, n_keep: int, n_bootstrap: int, seed: int | None) -> np.ndarray:
    """Slopes of :func:`_linear_slope` on the seeded bootstrap resamples of ``log_mu`` (shape (N,)).

    The resamples are those of :func:`gelora.estimators._ci.bootstrap_statistic` with the same seed
    (:func:`~gelora.estimators._ci.bootstrap_draws`, 64 at a time). A resample sorted is the sorted
    ratios indexed by its drawn ranks sorted, so each resample's ranks are sorted instead of its values:
    as 16-bit integers (a radix sort) while ``N < 2^15``, else by counting (one ``bincount`` of the drawn
    ranks, offset by row, and ``np.repeat`` of the sorted values). Each slope is ``sum(x y) / sum(x x)``
    over the first ``n_keep`` values, the same sums of the same products as :func:`_linear_slope`
    (pairwise summation of each row), so the same bits. The halves of each chunk are processed on the
    k-NN threads while the next chunk is drawn (:func:`~gelora.estimators._ci.pipelined`; serially with
    one thread). Returns shape (n_bootstrap,).
    """
    N = log_mu.shape[0]
    n_keep = min(n_keep, N - 1)
    order = np.argsort(log_mu, kind="stable")
    values = log_mu[order]
    y = _linear_ordinates(N, n_keep)
    chunk = 64
    small = N < 2**15
    rank = np.empty(N, dtype=np.int16 if small else np.intp)
    rank[order] = np.arange(N)
    tiled = None if small else np.tile(values, chunk)
    offsets = (np.arange(chunk) * N)[:, None]

    def slopes(draws: np.ndarray) -> np.ndarray:
        b = draws.shape[0]
        r = np.take(rank, draws)
        if small:
            r.sort(axis=1, kind="stable")  # radix sort of 16-bit integers
            x = np.take(values, r[:, :n_keep].astype(np.intp))
        else:
            r += offsets[:b]
            counts = np.bincount(r.ravel(), minlength=b * N)
            x = np.repeat(tiled[: b * N], counts).reshape(b, N)[:, :n_keep]  # type: ignore[index]
        p = x * y
        sxy = p.sum(axis=-1)
        np.multiply(x, x, out=p)
        return sxy / p.sum(axis=-1)

    def halves() -> Iterator[np.ndarray]:
        # each chunk in two halves, so that both threads work while the next chunk is drawn; the
        # slope of a resample does not depend on the rows beside it
        for d in bootstrap_draws(N, n_bootstrap, np.random.default_rng(seed), chunk):
            h = (d.shape[0] + 1) // 2
            yield d[:h]
            if h < d.shape[0]:
                yield d[h:]

    return pipelined(halves(), slopes)


def twonn_from_ratios(
    mu: np.ndarray, *, discard_fraction: float = 0.1, fit: str = "mle"
) -> tuple[float, float, int]:
    """TwoNN estimate from precomputed ratios ``mu = r2 / r1``.

    Parameters
    ----------
    mu : numpy.ndarray, shape (n,)
        Ratios, all ``>= 1`` and finite.
    discard_fraction : float
        Fraction of the largest ratios left out (``n_keep = int(n * (1 - discard_fraction))``).
    fit : {"mle", "linear"}
        ``"mle"``: maximum likelihood for the Pareto law with the discarded ratios treated as right-censored
        at the largest kept one, with the unbiased ``(n_keep - 1)`` numerator:
        ``d = (n_keep - 1) / (sum_{i<=n_keep} log mu_(i) + (n - n_keep) log mu_(n_keep))``.
        ``"linear"``: the paper's fit of ``-log(1 - F_emp(mu))`` on ``log mu`` through the origin,
        ``F_emp(mu_(i)) = i / n``, over the kept ratios except ``i = n`` (where ``F_emp = 1``; scikit-dimension
        0.5 includes it when ``discard_fraction=0`` and fails on the infinite ordinate).

    Returns
    -------
    dimension : float
    total : float
        ``T`` (sum of censored log-ratios; ``2 d T ~ chi2(2 n_keep)``), used for the exact interval.
    n_keep : int
    """
    lm = np.sort(np.log(np.asarray(mu, dtype=np.float64)))
    N = lm.shape[0]
    n_keep = _n_keep(N, discard_fraction)
    if n_keep < 2:
        raise ConfigError(
            f"discard_fraction={discard_fraction} leaves {n_keep} of {N} ratios; TwoNN needs at least 2"
        )
    total, d_mle = _mle_parts(lm, n_keep)
    if not total > 0:
        from gelora.errors import DegenerateDataError

        raise DegenerateDataError(
            "every kept ratio r2/r1 equals 1 (each point's two nearest neighbours are equidistant, e.g. "
            "points on a regular grid); TwoNN is undefined for such data"
        )
    d = float(d_mle) if fit == "mle" else float(_linear_slope(lm, n_keep))
    return d, float(total), n_keep


class _FitParam:
    """Data descriptor letting ``fit`` be both the parameter of the issue's interface and the method.

    Reading ``est.fit`` gives the bound ``fit(X)`` method; assigning ``est.fit = "linear"`` (as
    ``__init__`` and ``set_params`` do) stores the parameter in the instance ``__dict__``, where
    ``get_params()`` finds it.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return owner._fit_method  # type: ignore[union-attr]
        return types.MethodType(type(obj)._fit_method, obj)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["fit"] = value


class TwoNN(BaseIDEstimator):
    """TwoNN intrinsic-dimension estimator (Facco et al. 2017).

    Parameters
    ----------
    discard_fraction : float, default 0.1
        Fraction of the largest ratios ``mu = r2/r1`` excluded (the paper's 10 % heuristic against
        curvature and density variation at large distances). In ``"mle"`` they are right-censored rather than
        dropped, so the estimate stays unbiased for exact Pareto data.
    fit : {"mle", "linear"}, default "mle"
        Closed-form censored maximum likelihood (default) or the paper's linear regression of
        ``-log(1 - F_emp)`` on ``log mu`` through the origin. See :func:`twonn_from_ratios`.
    metric : {"euclidean", "cosine"}
        Distance (see :func:`gelora.estimators.knn_distances`).
    device : str or torch.device, optional
        Compute neighbours with the torch backend on this device.
    backend : {"auto", "kdtree", "numpy", "torch"}
        k-NN backend.
    duplicates : {"raise", "dedupe"}
        Duplicate points make ``r1 = 0``: raise :class:`~gelora.errors.DuplicatePointsError` or drop them
        with a warning (counted in ``result_.n_duplicates_removed``).
    ci_level : float, default 0.95
        Coverage of ``ci_``.
    n_bootstrap : int, default 200
        Resamples of the ratios for the ``"linear"`` fit's percentile interval; ``0`` disables it (``ci_``
        is then ``(d, d)``, method "none": a point estimate, as scikit-dimension's and dadapy's TwoNN
        return). The ``"mle"`` fit's interval is analytic and does not use it.
    seed : int or None, default 0
        Seed of the bootstrap (recorded in the result).

    Attributes
    ----------
    dimension_ : float
    ci_ : tuple of float
        ``"mle"``: exact interval ``chi2.ppf([a/2, 1-a/2], 2 n_keep) / (2 T)`` (``2 d T ~ chi2(2 n_keep)``
        for independent Pareto ratios); ``"linear"``: seeded percentile bootstrap over points.
    result_ : IDResult
    mu_ : numpy.ndarray, shape (n_samples,)
        The ratios ``r2 / r1`` of the points used.

    Notes
    -----
    Smallest sample: :func:`twonn_min_samples` (30 points at the default ``discard_fraction``); fewer
    give a :class:`~gelora.errors.SmallSampleWarning`, fewer than 3 a
    :class:`~gelora.errors.NotEnoughSamplesError`.

    The standard deviation of the MLE is about ``d / sqrt(n_keep)``. The analytic interval treats the
    ratios as independent (as the paper's likelihood does); neighbouring points share neighbours, so at
    small ``n`` the true spread is somewhat larger.

    Agreement with scikit-dimension 0.5 (``skdim.id.TwoNN``): ``TwoNN(fit="mle")`` equals
    ``skdim.id.TwoNN(method="mle")`` and ``TwoNN(fit="linear")`` equals ``skdim.id.TwoNN()`` (its default,
    ``method="linear"``) to floating-point noise for the same ``discard_fraction`` on data without
    duplicates. Differences: our default is ``"mle"`` (smaller variance, exact interval); skdim drops points
    whose ``r1 = 0`` with a warning but keeps them as neighbours of others, while we raise or remove the
    duplicate rows and recompute.
    """

    method = "twonn"
    fit = _FitParam()

    def __init__(
        self,
        discard_fraction: float = 0.1,
        fit: str = "mle",
        *,
        metric: str = "euclidean",
        device: Any = None,
        backend: str = "auto",
        duplicates: str = "raise",
        ci_level: float = 0.95,
        n_bootstrap: int = 200,
        seed: int | None = 0,
    ) -> None:
        self.discard_fraction = discard_fraction
        self.fit = fit
        self.metric = metric
        self.device = device
        self.backend = backend
        self.duplicates = duplicates
        self.ci_level = ci_level
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (``fit`` is read from the instance data, see :class:`_FitParam`)."""
        return {name: self.__dict__[name] for name in self._param_names()}

    def _fit_method(self, X: Any, y: Any = None) -> TwoNN:
        """Estimate the intrinsic dimension of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (n_samples, n_features)
            At least 3 points; fewer than :func:`twonn_min_samples` give a
            :class:`~gelora.errors.SmallSampleWarning`.
        y : ignored

        Returns
        -------
        self
        """
        p = self.get_params()
        self._validate_common()
        discard = check_float(
            p["discard_fraction"], "discard_fraction", low=0.0, high=1.0, high_inclusive=False
        )
        fit = check_choice(p["fit"], "fit", ("mle", "linear"))
        n_boot = check_int(p["n_bootstrap"], "n_bootstrap", minimum=0)
        seed = check_seed(p["seed"])
        X = check_points(X, min_samples=3)
        n_keep0 = _n_keep(X.shape[0], discard)
        if n_keep0 < 2:
            raise ConfigError(
                f"discard_fraction={discard} keeps {n_keep0} of {X.shape[0]} ratios; TwoNN needs at least 2"
            )
        data = knn_without_duplicates(
            X, 2, metric=p["metric"], device=p["device"], backend=p["backend"], duplicates=p["duplicates"]
        )
        mu = data.dist[:, 1] / data.dist[:, 0]
        d, total, n_keep = twonn_from_ratios(mu, discard_fraction=discard, fit=fit)
        level = float(p["ci_level"])
        if fit == "mle":
            ci = gamma_rate_ci(total, n_keep, level)  # an interval for d itself, whatever the point estimate
            ci_method, used_seed = "analytic", None
        elif n_boot:
            ci = percentile_ci(_linear_bootstrap(np.log(mu), n_keep, n_boot, seed), level)
            ci_method, used_seed = "bootstrap", seed
        else:
            ci, ci_method, used_seed = (d, d), "none", None
        # warned only once an estimate exists: bad input raises first
        warn_small_sample(data.X.shape[0], twonn_min_samples(discard), "TwoNN")
        self.mu_ = mu
        self._store(
            dimension=d,
            ci=ci,
            ci_method=ci_method,
            n_samples=data.X.shape[0],
            n_features=data.X.shape[1],
            k=2,
            n_duplicates_removed=data.n_duplicates_removed,
            seed=used_seed,
        )
        return self


class ScalePoint(NamedTuple):
    """One scale of :func:`twonn_scale_analysis`."""

    n: int
    dimension: float
    ci: tuple[float, float]
    n_subsets: int


def twonn_scale_analysis(
    X: Any,
    fractions: list[float] | None = None,
    *,
    n_list: list[int] | None = None,
    seed: int | None = 0,
    min_points: int = 20,
    max_subsets: int = 64,
    **params: Any,
) -> list[ScalePoint]:
    """TwoNN dimension against sample size by decimation (Facco et al. 2017, Fig. 3).

    At each scale the points are split by one seeded random permutation into ``m`` disjoint subsets of
    ``n_s`` points; TwoNN is fitted on each and the estimates averaged. Smaller subsets have larger
    neighbour distances, so a plateau of the curve over ``n`` marks the scale range where the estimate is
    meaningful (noise inflates it at large ``n``, curvature at small ``n``). Subsets below
    :func:`twonn_min_samples` are part of the picture, so their :class:`~gelora.errors.SmallSampleWarning`
    is not issued here; their wide intervals say the same.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n_samples, n_features)
    fractions : list of float in (0, 1], optional
        Subset sizes as fractions of ``n_samples``; default ``1, 1/2, 1/4, ...`` down to ``min_points``.
    n_list : list of int, optional
        Subset sizes in points (instead of ``fractions``).
    seed : int or None
        Seed of the permutation and of the estimator.
    min_points : int
        Smallest subset size of the default schedule.
    max_subsets : int
        At most this many subsets per scale.
    **params
        Passed to :class:`TwoNN`.

    Returns
    -------
    list of ScalePoint
        ``(n, dimension, ci, n_subsets)`` per scale, largest ``n`` first. ``ci`` is the TwoNN interval
        when there is one subset, else the t-interval of the mean over the disjoint subsets (which also
        reflects the dependence between ratios that the analytic interval ignores).
    """
    X = check_points(X, min_samples=3)
    seed = check_seed(seed)
    n = X.shape[0]
    if fractions is not None and n_list is not None:
        raise ConfigError("give fractions or n_list, not both")
    if n_list is None:
        if fractions is None:
            fractions = []
            f = 1.0
            while n * f >= min_points:
                fractions.append(f)
                f /= 2.0
        for f in fractions:
            check_float(f, "fraction", low=0.0, high=1.0, low_inclusive=False)
        n_list = [int(round(f * n)) for f in fractions]
    sizes = [check_int(s, "subset size", minimum=3, maximum=n) for s in n_list]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    est = TwoNN(**{"seed": seed, **params})
    level = float(est.ci_level)
    out: list[ScalePoint] = []
    for size in sorted(set(sizes), reverse=True):
        m = min(max_subsets, n // size)
        dims, last = [], None
        for j in range(m):
            sub = perm[j * size : (j + 1) * size]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SmallSampleWarning)
                last = est.fit(X[sub]).result_
            dims.append(last.dimension)
        assert last is not None
        mean = float(np.mean(dims))
        if m == 1:
            ci = last.ci
        else:
            half = stats.t.ppf(0.5 + level / 2.0, m - 1) * float(np.std(dims, ddof=1)) / np.sqrt(m)
            ci = (mean - half, mean + half)
        out.append(ScalePoint(n=size, dimension=mean, ci=(float(ci[0]), float(ci[1])), n_subsets=m))
    return out
