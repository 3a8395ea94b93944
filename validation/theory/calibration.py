"""The estimators as the theory suite runs them, their calibrated sampling error and its limits.

See :mod:`validation.theory` for the laws behind :func:`estimate_limits`; the calibration itself is
``calibration.json`` beside this module, made by :func:`calibrate` (``python -m validation.theory
--calibrate``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from gelora.errors import ConfigError

#: default per-estimate false-failure rate of every statistical limit in the theory suite
ALPHA = 1e-4


CALIBRATION_PATH = Path(__file__).with_name("calibration.json")


# --------------------------------------------------------------------------------------------------
# the estimators as the theory suite runs them, and their calibrated sampling error
# --------------------------------------------------------------------------------------------------
METHODS: tuple[str, ...] = ("twonn", "mle", "danco")

#: largest candidate dimension of DANCo in the suite (the estimate can never exceed it, so it must stay well
#: above every bound checked; :func:`fit_estimate` refuses bounds closer than 4 to it)
DANCO_D_MAX = 14


def estimator_params(method: str) -> dict[str, Any]:
    """Parameters of ``method`` as the theory suite runs it (library defaults, cheap intervals).

    TwoNN: defaults (censored MLE, ``discard_fraction=0.1``). MLE: defaults (``k=20``, MacKay–Ghahramani
    pooling) with the analytic interval (the suite does not use intervals; bootstraps would only cost time).
    DANCo: defaults with ``d_max=min(n_features, DANCO_D_MAX)`` and no bootstrap.
    """
    if method == "twonn":
        return {}
    if method == "mle":
        return {"ci": "analytic"}
    if method == "danco":
        return {"n_bootstrap": 0}
    raise ConfigError(f"unknown method {method!r}; expected one of {METHODS}")


def fit_estimate(
    Y: np.ndarray, method: str, *, seed: int = 0, cache_dir: str | Path | None = None, **overrides: Any
) -> float:
    """Fit ``method`` (with :func:`estimator_params`) to ``Y`` and return the estimate.

    Parameters
    ----------
    Y : numpy.ndarray, shape (n_samples, n_features)
    method : {"twonn", "mle", "danco"}
    seed : int
        Estimator seed (DANCo's calibration).
    cache_dir : path, optional
        DANCo calibration cache.
    **overrides
        Replace any estimator parameter.
    """
    from gelora.estimators.danco import DANCo
    from gelora.estimators.mle import MLE
    from gelora.estimators.twonn import TwoNN

    params = {**estimator_params(method), **overrides}
    if method == "twonn":
        est: Any = TwoNN(seed=seed, **params)
    elif method == "mle":
        est = MLE(seed=seed, **params)
    else:
        params.setdefault("d_max", min(int(Y.shape[1]), DANCO_D_MAX))
        est = DANCo(seed=seed, cache_dir=None if cache_dir is None else str(cache_dir), **params)
    return float(est.fit(Y).dimension_)


#: null families of the calibration: the manifold families the suite's strategies draw (boundary bias of
#: the cube is negative, curvature bias of the sphere and the Clifford torus positive)
NULL_FAMILIES: tuple[str, ...] = ("hypercube", "hypersphere", "flat_torus")


def _null_sample(family: str, n: int, d: int, seed: int) -> np.ndarray:
    """A uniform noise-free sample of ``family`` (unit scale) rotated into 2 extra dimensions."""
    from synthetic import manifolds as _m

    natural = {"hypercube": d, "hypersphere": d + 1, "flat_torus": 2 * d}[family]
    return getattr(_m, family)(n, d, embed_dim=natural + 2, seed=seed).X


def calibrate(
    n_grid: Sequence[int] = (250, 500, 1000, 2000),
    d_grid: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8, 10),
    reps: int = 40,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    families: Sequence[str] = NULL_FAMILIES,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Monte Carlo calibration of each estimator's error at finite ``n`` on the suite's manifold families.

    For every null family, ``n`` and ``d`` in the grid, ``reps`` independent noise-free samples are
    estimated (sample ``r`` of cell ``(family, n, d)`` is seeded by ``SeedSequence([seed, f, n, d, r])``).
    For TwoNN and MLE each cell records the relative bias ``b = mean/d - 1`` with its 2-standard-error band
    and the spread ``s^2 = n Var(d_hat) / d^2`` with its 95 % upper confidence bound
    ``(reps - 1) s^2 / chi2.ppf(0.05, reps - 1)``; for DANCo (integer estimates) the counts of ``d_hat - d``.

    Returns
    -------
    dict
        JSON-serialisable: grid, seed, per-cell statistics and the per-method summaries used by
        :func:`estimate_limits` (see :func:`summarise_calibration`).
    """
    out: dict[str, Any] = {
        "null": "noise-free uniform samples of each family, rotated into natural dimension + 2",
        "grid": {
            "n": list(map(int, n_grid)),
            "d": list(map(int, d_grid)),
            "reps": int(reps),
            "families": list(families),
        },
        "seed": int(seed),
        "methods": {},
    }
    chi_lo = stats.chi2.ppf(0.05, reps - 1)
    for method in methods:
        cells = []
        t0 = time.perf_counter()
        for fi, family in enumerate(families):
            for n in n_grid:
                for d in d_grid:
                    seeds = [
                        int(np.random.SeedSequence([seed, fi, int(n), int(d), r]).generate_state(1)[0])
                        for r in range(reps)
                    ]
                    est = np.array(
                        [
                            fit_estimate(
                                _null_sample(family, n, d, s_), method, seed=seed, cache_dir=cache_dir
                            )
                            for s_ in seeds
                        ]
                    )
                    cell: dict[str, Any] = {
                        "family": family,
                        "n": int(n),
                        "d": int(d),
                        "mean": float(est.mean()),
                        "sd": float(est.std(ddof=1)),
                    }
                    if method == "danco":
                        delta = np.rint(est - d).astype(int)
                        vals, counts = np.unique(delta, return_counts=True)
                        cell["delta_counts"] = {str(int(v)): int(c) for v, c in zip(vals, counts)}
                    else:
                        se = cell["sd"] / math.sqrt(reps)
                        cell["bias"] = cell["mean"] / d - 1.0
                        cell["bias_hi"] = (cell["mean"] + 2 * se) / d - 1.0
                        cell["bias_lo"] = (cell["mean"] - 2 * se) / d - 1.0
                        cell["s2"] = n * cell["sd"] ** 2 / d**2
                        cell["s2_upper"] = (reps - 1) * cell["s2"] / chi_lo
                    cells.append(cell)
        summary: dict[str, Any] = {
            "params": estimator_params(method),
            "cells": cells,
            "seconds": time.perf_counter() - t0,
        }
        summary.update(summarise_calibration(method, cells, n_grid, d_grid, reps))
        out["methods"][method] = summary
        if progress is not None:
            progress(f"calibrated {method} in {summary['seconds']:.1f} s")
    return out


def summarise_calibration(
    method: str, cells: list[dict[str, Any]], n_grid: Sequence[int], d_grid: Sequence[int], reps: int
) -> dict[str, Any]:
    """The per-method numbers :func:`estimate_limits` uses, from the calibration cells.

    TwoNN / MLE: ``s2[d]`` is the 95 % upper confidence bound of ``n Var(d_hat) / d^2`` pooled over every
    family and ``n`` at that ``d`` (``sum (reps-1) s2_cell / chi2.ppf(0.05, sum (reps-1))``), and
    ``bias_hi[n][d]`` / ``bias_lo[n][d]`` the largest upper / smallest lower 2-SE bias bound over the families.
    DANCo: ``max_delta[n][d]`` / ``min_delta[n][d]``, the extreme ``d_hat - d`` over the families' fits.
    """
    out: dict[str, Any] = {}
    if method == "danco":
        deltas = [(int(k), v) for c in cells for k, v in c["delta_counts"].items()]
        out["n_fits"] = sum(v for _, v in deltas)
        out["fits_per_cell"] = int(reps) * len({c.get("family") for c in cells})
        out["count_over_by_1"] = sum(v for k, v in deltas if k == 1)
        out["count_over_by_2_or_more"] = sum(v for k, v in deltas if k >= 2)
        out["count_under"] = sum(v for k, v in deltas if k < 0)
        out["max_delta"] = {
            str(n): {
                str(d): max(
                    max(int(k) for k in c["delta_counts"]) for c in cells if c["n"] == n and c["d"] == d
                )
                for d in d_grid
            }
            for n in n_grid
        }
        out["min_delta"] = {
            str(n): {
                str(d): min(
                    min(int(k) for k in c["delta_counts"]) for c in cells if c["n"] == n and c["d"] == d
                )
                for d in d_grid
            }
            for n in n_grid
        }
        return out
    s2 = {}
    for d in d_grid:
        sel = [c for c in cells if c["d"] == d]
        dof = (reps - 1) * len(sel)
        s2[str(d)] = float(sum((reps - 1) * c["s2"] for c in sel) / stats.chi2.ppf(0.05, dof))
    out["s2"] = s2
    out["bias_hi"] = {
        str(n): {str(d): max(c["bias_hi"] for c in cells if c["d"] == d and c["n"] == n) for d in d_grid}
        for n in n_grid
    }
    out["bias_lo"] = {
        str(n): {str(d): min(c["bias_lo"] for c in cells if c["d"] == d and c["n"] == n) for d in d_grid}
        for n in n_grid
    }
    return out


_CALIBRATION_CACHE: dict[str, Any] = {}


def load_calibration(path: str | Path | None = None) -> dict[str, Any]:
    """The stored calibration (``validation/theory/calibration.json`` unless ``path`` is given)."""
    from gelora._io import read_json

    key = str(path or CALIBRATION_PATH)
    if key not in _CALIBRATION_CACHE:
        _CALIBRATION_CACHE[key] = read_json(key)
    return _CALIBRATION_CACHE[key]


@dataclass(frozen=True)
class Limits:
    """Two-sided sampling limits of an estimate of a true dimension ``d`` from ``n`` points.

    ``P(d_hat > high) <= alpha`` and ``P(d_hat < low) <= alpha`` under the stated model (``origin``).
    """

    method: str
    n: int
    d: int
    alpha: float
    low: float
    high: float
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "n", "d", "alpha", "low", "high", "origin")}


def _inverse_gamma_quantiles(d: float, m: float, alpha: float) -> tuple[float, float]:
    """Quantiles of ``d (m - 1) / G`` with ``G ~ Gamma(m, 1)``: (alpha, 1 - alpha)."""
    lo = d * (m - 1.0) / stats.gamma.ppf(1.0 - alpha, m)
    hi = d * (m - 1.0) / stats.gamma.ppf(alpha, m)
    return float(lo), float(hi)


def estimate_limits(
    method: str, n: int, d: int, alpha: float = ALPHA, calibration: dict[str, Any] | None = None
) -> Limits:
    """One-sided ``alpha`` limits of ``method``'s estimate for true dimension ``d`` at ``n`` points.

    TwoNN
        The censored MLE is ``(m - 1) / T`` with ``T ~ Gamma(m, rate d)`` exactly for independent Pareto
        ratios (``m = int(0.9 n)`` kept ratios), so its ``alpha`` quantiles are those of
        ``d (m - 1) / Gamma(m, 1)``. Ratios of neighbouring points are dependent, which inflates the
        variance by the calibrated factor ``c = s2 (1 - 0.1)`` (``s2`` from :func:`calibrate`); the limits
        use the same law with ``m / c`` effective ratios, times ``1 + bias`` (``bias_hi`` floored at 0 for
        ``high``, ``bias_lo`` for ``low``).
    MLE
        The pointwise sums are exactly Gamma(k - 1, rate d) but the pooled estimate has no exact law; the
        same inverse-Gamma shape is used with ``n / s2`` effective observations (``s2`` calibrated) and the
        calibrated bias bounds.
    DANCo
        Integer estimates: ``high = d + 1`` and ``low = d - 1``. The calibration counts how often
        ``d_hat >= d + 2`` (false failure) and ``d_hat = d + 1`` (overshoot) occurred on the null; the
        false-failure rate is bounded by the rule of three, ``3 / n_fits`` (95 %), when the count is 0.

    Returns
    -------
    Limits
    """
    cal = calibration if calibration is not None else load_calibration()
    if method not in cal["methods"]:
        raise ConfigError(
            f"no calibration for method {method!r}; recalibrate with python -m validation.theory --calibrate"
        )
    summ = cal["methods"][method]
    d_grid = cal["grid"]["d"]
    if d < 1 or d > max(d_grid):
        raise ConfigError(f"d={d} is outside the calibrated range 1..{max(d_grid)}")
    # the calibrated cell: largest grid n <= n (finite-n bias shrinks with n, so this is conservative; below
    # the grid the smallest n is used and the origin says so) and smallest grid d >= d
    n_grid = cal["grid"]["n"]
    below = [x for x in n_grid if x <= n]
    n_key = str(max(below) if below else min(n_grid))
    d_key = str(min(x for x in d_grid if x >= d))
    note = "" if below else f" (n={n} below the calibrated grid: extrapolated from n={n_key})"
    if method == "danco":
        up = max(1, int(summ["max_delta"][n_key][d_key]))
        down = max(1, -int(summ["min_delta"][n_key][d_key]))
        rate = 3.0 / summ["fits_per_cell"]
        origin = (
            f"integer estimate; limits d-{down}..d+{up} = extremes of {summ['fits_per_cell']} null fits at "
            f"n={n_key}, d={d_key} (at least +-1); exceedance rate <= {rate:.2g} (rule of three){note}"
        )
        return Limits(method, int(n), int(d), float(rate), float(d - down), float(d + up), origin)
    b_hi = max(float(summ["bias_hi"][n_key][d_key]), 0.0)
    b_lo = min(float(summ["bias_lo"][n_key][d_key]), 0.0)
    s2 = float(summ["s2"][d_key])
    if method == "twonn":
        m_eff = int(n * 0.9) / (s2 * 0.9)
        origin = (
            f"Gamma(m/c) law of the censored TwoNN MLE, c={s2 * 0.9:.3g} calibrated, bias in "
            f"[{b_lo:.3g}, {b_hi:.3g}]{note}"
        )
    else:
        m_eff = n / s2
        origin = (
            f"inverse-Gamma approx with n/s2 effective points, s2={s2:.3g} calibrated, bias in "
            f"[{b_lo:.3g}, {b_hi:.3g}]{note}"
        )
    lo, _ = _inverse_gamma_quantiles(d * (1.0 + b_lo), m_eff, alpha)
    _, hi = _inverse_gamma_quantiles(d * (1.0 + b_hi), m_eff, alpha)
    return Limits(method, int(n), int(d), float(alpha), lo, hi, origin)
