"""Checks of GeLoRA's Theorem 3.2 and Corollary 3.2.1 at scale, with a JSON summary.

Theorem 3.2 says the intrinsic dimension (ID) of a layer's output manifold is at most the rank of the block
that produces it, ``d_{i+1} <= rank(T_i)``; Corollary 3.2.1 turns this into the rank rule
``r_i = max(d_{i+1} - d_i, 0) + offset``. This module holds the logic that ``tests/theory`` checks with
hypothesis at small sizes and that :func:`run_theory_checks` runs at larger sizes:

exact layer
    noise-free data: ``rank(J_f(x) T_x M) <= min(rank f, dim M)`` at sampled points, and the exact local
    rank of linear images of flat manifolds, to floating-point tolerance (:func:`check_exact_layer`,
    :func:`neighbourhood_rank`).
estimated layer
    TwoNN, MLE and DANCo estimates of ``dim f(M)`` stay below ``min(dim M, rank f)`` plus a one-sided
    limit with a stated false-failure rate (:func:`estimate_limits`, :func:`check_upper_bound`); estimates
    above the bound but inside the limit are *overshoots* and are reported, not hidden.
composition
    along the layers of a toy transformer the estimates respect the per-block bounds
    (:func:`check_toy_transformer`); in a frozen random residual network with a planted rank-``k`` update
    (:class:`PlantedUpdateNetwork`) the gap ``d_{i+1} - d_i`` the rule sees never exceeds ``k`` (validity)
    and ``gap / k`` measures tightness (:func:`check_planted_network`).
invariances
    rotation, translation, uniform scaling and permutation of the points leave the estimates unchanged to
    ``1e-9`` relative; duplicated data raise or are de-duplicated as documented.
counter-examples
    noise, too few samples, curvature/folding at small ``n`` and ``ceil`` rounding make the bound or the rule
    fail (``counterexample_*``).

Tolerances (:func:`estimate_limits`)
------------------------------------
TwoNN (censored maximum-likelihood fit)
    For a locally uniform density the ratios ``mu = r2/r1`` are Pareto(d), so ``log mu ~ Exp(rate d)`` and
    the type-II censored total ``T`` of ``m = int(0.9 n)`` kept log-ratios is exactly ``Gamma(m, rate d)``;
    the estimate ``(m - 1) / T`` then has the quantiles of ``d (m - 1) / Gamma(m, 1)``. Neighbouring ratios
    are dependent, which inflates the variance by a factor ``c`` calibrated once; the limits use ``m / c``
    effective ratios and the calibrated finite-``n`` bias bound.
MLE
    No exact law (overlapping neighbourhoods): the same inverse-Gamma shape with ``n / s2`` effective points,
    ``s2 = n Var(d_hat) / d^2`` calibrated, plus the calibrated bias bound.
DANCo
    Integer estimates: the extremes of ``d_hat - d`` over the calibration fits of the cell (at least +-1).

The calibration (:func:`calibrate`, ``validation/theory_calibration.json`` with the command that made it)
is Monte Carlo on uniform samples of the families the suite draws (cube, sphere, Clifford torus). What it
does not cover -- noise, unresolved scales, folding -- is what the counter-examples show.

Run ``python -m validation.theory --profile quick --out theory.json`` for the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from gelora.errors import ConfigError, InvalidInputError

__all__ = [
    "ALPHA",
    "CALIBRATION_PATH",
    "PlantedUpdateNetwork",
    "jacobian_rank",
    "numerical_rank",
    "run_theory_checks",
]

#: default per-estimate false-failure rate of every statistical limit in the theory suite
ALPHA = 1e-4

#: relative singular-value threshold of every numerical rank: ``sigma > RANK_RTOL * sigma_max``
#: (float64 rounding in the Jacobian products is ~1e-15 relative; genuine directions here are >1e-6)
RANK_RTOL = 1e-9

CALIBRATION_PATH = Path(__file__).with_name("theory_calibration.json")


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
# the planted-update teacher
# --------------------------------------------------------------------------------------------------
@dataclass
class PlantedUpdateNetwork:
    """A frozen random residual network with a rank-``k`` update planted in one block (the teacher).

    Each input is a token coordinate ``u`` (uniform in ``[0, 1]^d_token``) and a context coordinate ``z``
    (uniform in ``[0, 1]^d_context``), standing for the rest of the sequence that attention reads. The
    residual stream starts as ``h_0 = tanh(E u + c)`` (a curved ``d_token``-dimensional manifold in
    ``R^width``) and each block is

        ``h_{j+1} = h_j + tanh(W_j h_j + b_j + [j == block] * B A [h_j; z])``

    with frozen ``W_j`` of spectral norm ``0.5`` (so the frozen block is injective on the stream) and
    frozen context weights equal to zero. The planted update ``Delta W = B A`` (``B``: ``width x k``,
    ``A``: ``k x (width + d_context)``) has rank exactly ``k``.

    Ground truth: ``d_j = d_token`` for ``j <= block`` and ``d_j = d_token + min(k, d_context)`` after it;
    Theorem 3.2 applied to the update gives ``d_{block+1} - d_block <= rank(Delta W) = k``.

    Parameters
    ----------
    d_token, d_context : int
        Dimensions of the token and context coordinates (>= 1).
    k : int
        Rank of the planted update (``>= 0``; ``0`` is the frozen network itself).
    block : int
        Index of the block that receives the update, ``0 <= block < n_blocks``.
    n_blocks : int
        Number of residual blocks.
    width : int
        Width of the residual stream; must be at least ``d_token + k``.
    seed : int
        Seed of every random weight.
    """

    d_token: int
    d_context: int
    k: int
    block: int = 1
    n_blocks: int = 3
    width: int = 16
    seed: int = 0
    _weights: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("d_token", "d_context", "n_blocks", "width"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"PlantedUpdateNetwork.{name} must be >= 1, got {getattr(self, name)}")
        if self.k < 0:
            raise ConfigError(f"PlantedUpdateNetwork.k must be >= 0, got {self.k}")
        if not 0 <= self.block < self.n_blocks:
            raise ConfigError(f"block must be in [0, {self.n_blocks}), got {self.block}")
        if self.width < self.d_token + self.k:
            raise ConfigError(f"width={self.width} must be >= d_token + k = {self.d_token + self.k}")
        rng = np.random.default_rng(self.seed)
        H = self.width
        E = rng.normal(size=(H, self.d_token)) * (1.5 / math.sqrt(self.d_token))
        c = rng.normal(size=H) * 0.3
        Ws, bs = [], []
        for _ in range(self.n_blocks):
            W = rng.normal(size=(H, H))
            W *= 0.5 / np.linalg.norm(W, 2)
            Ws.append(W)
            bs.append(rng.normal(size=H) * 0.1)
        # the update: B (H x k) and A (k x (H + d_context)), generic, so rank(B A) = k almost surely
        B = rng.normal(size=(H, self.k)) / math.sqrt(max(self.k, 1))
        A = rng.normal(size=(self.k, H + self.d_context))
        A[:, H:] *= 2.0  # the context part dominates, so the new directions are well conditioned
        self._weights = {"E": E, "c": c, "W": Ws, "b": bs, "A": A, "B": B}

    @property
    def update(self) -> np.ndarray:
        """The planted update ``Delta W = B A``, shape ``(width, width + d_context)``."""
        return self._weights["B"] @ self._weights["A"]

    @property
    def true_dims(self) -> list[int]:
        """Ground-truth ID of ``h_0 .. h_{n_blocks}`` (length ``n_blocks + 1``)."""
        after = self.d_token + min(self.k, self.d_context)
        return [self.d_token if j <= self.block else after for j in range(self.n_blocks + 1)]

    def sample_inputs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` inputs: ``U`` of shape ``(n, d_token)`` and ``Z`` of shape ``(n, d_context)``."""
        rng = np.random.default_rng(seed)
        return rng.random((n, self.d_token)), rng.random((n, self.d_context))

    def forward_all(
        self, U: np.ndarray, Z: np.ndarray, *, with_jacobian: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Hidden states of every layer, optionally with their exact Jacobians.

        Parameters
        ----------
        U : numpy.ndarray, shape (n, d_token)
        Z : numpy.ndarray, shape (n, d_context)
        with_jacobian : bool
            Also return ``d h_j / d (u, z)`` by forward-mode differentiation (exact, no finite
            differences).

        Returns
        -------
        states : list of numpy.ndarray, each (n, width)
            ``h_0 .. h_{n_blocks}``.
        jacobians : list of numpy.ndarray, each (n, width, d_token + d_context), or None
        """
        w = self._weights
        U = np.asarray(U, dtype=np.float64)
        Z = np.asarray(Z, dtype=np.float64)
        n = U.shape[0]
        pre = U @ w["E"].T + w["c"]
        h = np.tanh(pre)
        states = [h]
        jacs: list[np.ndarray] | None = None
        p = self.d_token + self.d_context
        if with_jacobian:
            J = np.zeros((n, self.width, p))
            J[:, :, : self.d_token] = (1.0 - h**2)[:, :, None] * w["E"][None]
            dz = np.zeros((n, self.d_context, p))
            dz[:, :, self.d_token :] = np.eye(self.d_context)[None]
            jacs = [J]
        for j in range(self.n_blocks):
            a = h @ w["W"][j].T + w["b"][j]
            planted = j == self.block and self.k > 0
            if planted:
                a = a + np.concatenate([h, Z], axis=1) @ self.update.T
            t = np.tanh(a)
            if jacs is not None:
                Jprev = jacs[-1]
                Ja = np.einsum("ab,nbp->nap", w["W"][j], Jprev)
                if planted:
                    Jin = np.concatenate([Jprev, dz], axis=1)
                    Ja = Ja + np.einsum("ab,nbp->nap", self.update, Jin)
                jacs.append(Jprev + (1.0 - t**2)[:, :, None] * Ja)
            h = h + t
            states.append(h)
        return states, jacs


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
    """The stored calibration (``validation/theory_calibration.json`` unless ``path`` is given)."""
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


# --------------------------------------------------------------------------------------------------
# checks (each returns JSON-ready records; the tests assert on them, run_theory_checks aggregates them)
# --------------------------------------------------------------------------------------------------
def check_upper_bound(
    Y: np.ndarray,
    bound: int,
    *,
    methods: Sequence[str] = METHODS,
    alpha: float = ALPHA,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Estimate ``dim Y`` with each method and compare it with ``bound`` and the ``alpha`` limit.

    Parameters
    ----------
    Y : numpy.ndarray, shape (n, D)
        Points of ``f(M)``.
    bound : int
        The theorem's bound ``min(dim M, rank f)``.
    methods, alpha, seed, cache_dir, calibration
        Estimators, per-estimate false-failure rate, estimator seed, DANCo cache, calibration table.
    context : dict, optional
        Copied into every record (manifold, map, n, ...).

    Returns
    -------
    list of dict
        Per method: ``estimate``, ``bound``, ``limit`` (the upper ``alpha`` limit at ``bound``),
        ``margin = limit - estimate`` (negative = failure), ``excess = estimate - bound``,
        ``overshoot`` (estimate above the bound) and ``passed`` (estimate within the limit).
    """
    n = int(Y.shape[0])
    out = []
    for method in methods:
        est = fit_estimate(Y, method, seed=seed, cache_dir=cache_dir)
        lim = estimate_limits(method, n, int(bound), alpha, calibration)
        out.append(
            {
                **(context or {}),
                "method": method,
                "n": n,
                "bound": int(bound),
                "estimate": est,
                "limit": lim.high,
                "alpha": lim.alpha,
                "margin": lim.high - est,
                "excess": est - bound,
                "overshoot": bool(est > bound),
                "passed": bool(est <= lim.high),
            }
        )
    return out


def check_planted_network(
    net: PlantedUpdateNetwork,
    n: int,
    *,
    data_seed: int = 0,
    methods: Sequence[str] = METHODS,
    alpha: float = ALPHA,
    seed: int = 0,
    offset: int = 1,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validity and tightness of the rank rule on a teacher with a planted rank-``k`` update.

    Exact part: the Jacobian rank of every hidden state w.r.t. the input ``(u, z)`` equals its ground-truth
    dimension at every sampled point, and the planted block raises it by at most ``k``.

    Estimated part, per method: the estimates ``d_hat_j`` of ``h_0 .. h_B``, the gaps
    ``d_hat_{j+1} - d_hat_j``, the GeLoRA ranks (:func:`gelora.ranks.ranks_from_dimensions`, ceil rounding,
    ``offset``) and, per block ``j`` with planted rank ``k_j`` (``k`` at ``net.block``, else 0), the gap limit
    ``k_j + (high(d_j + k_j) - (d_j + k_j)) + (d_j - low(d_j))``: one-sided ``alpha`` limits of the two
    estimates, so a valid rule exceeds it with probability at most ``2 alpha`` per block.

    Returns
    -------
    dict
        ``exact`` (Jacobian ranks) and ``methods`` (per method: ``dims``, ``gaps``, ``ranks``,
        ``planted_gap``, ``gap_limit``, ``valid`` (gap within limit at every block), ``rule_rank_minus_offset``
        at the planted block, ``tightness = max(gap, 0) / k`` (None when ``k = 0``)).
    """
    from gelora.ranks import ranks_from_dimensions

    U, Z = net.sample_inputs(n, data_seed)
    states, jacs = net.forward_all(U, Z, with_jacobian=True)
    assert jacs is not None
    jr = [jacobian_rank(J) for J in jacs]
    truth = net.true_dims
    exact: dict[str, Any] = {
        "true_dims": truth,
        "jacobian_rank_min": [int(r.min()) for r in jr],
        "jacobian_rank_max": [int(r.max()) for r in jr],
        "planted_increase_max": int((jr[net.block + 1] - jr[net.block]).max()),
    }
    exact["passed"] = bool(
        all(lo == hi == t for lo, hi, t in zip(exact["jacobian_rank_min"], exact["jacobian_rank_max"], truth))
        and exact["planted_increase_max"] <= net.k
    )
    res: dict[str, Any] = {
        "network": {
            "d_token": net.d_token,
            "d_context": net.d_context,
            "k": net.k,
            "block": net.block,
            "n_blocks": net.n_blocks,
            "width": net.width,
            "seed": net.seed,
        },
        "n": int(n),
        "data_seed": int(data_seed),
        "exact": exact,
        "methods": {},
    }
    for method in methods:
        dims = [fit_estimate(h, method, seed=seed, cache_dir=cache_dir) for h in states]
        gaps = [dims[j + 1] - dims[j] for j in range(net.n_blocks)]
        ranks = ranks_from_dimensions(dims, offset=offset)
        limits, valid = [], []
        for j in range(net.n_blocks):
            kj = net.k if j == net.block else 0
            # the theorem's bound for d_{j+1} is d_j + k_j with d_j the true input dimension
            hi = estimate_limits(method, n, truth[j] + kj, alpha, calibration).high
            lo = estimate_limits(method, n, truth[j], alpha, calibration).low
            lim = kj + (hi - (truth[j] + kj)) + (truth[j] - lo)
            limits.append(lim)
            valid.append(bool(gaps[j] <= lim))
        g = gaps[net.block]
        res["methods"][method] = {
            "dims": dims,
            "gaps": gaps,
            "ranks": ranks,
            "planted_gap": g,
            "gap_limit": limits,
            "valid": bool(all(valid)),
            "valid_per_block": valid,
            "rule_rank_minus_offset": int(ranks[net.block] - offset),
            "rule_exceeds_k": bool(ranks[net.block] - offset > net.k),
            "tightness": None if net.k == 0 else float(max(g, 0.0) / net.k),
        }
    return res


# --------------------------------------------------------------------------------------------------
# invariances
# --------------------------------------------------------------------------------------------------
INVARIANCE_RTOL = 1e-9


def transformed_copies(X: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """``X`` rotated (random orthogonal), translated, uniformly scaled (by 37.5 and 1/37.5) and permuted.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, D)
    seed : int
        Seed of the rotation, translation and permutation.
    """
    rng = np.random.default_rng(seed)
    n, D = X.shape
    Q, R = np.linalg.qr(rng.normal(size=(D, D)))
    Q = Q * np.sign(np.diag(R))
    spread = float(np.max(np.ptp(X, axis=0)))
    return {
        "rotation": X @ Q.T,
        "translation": X + rng.normal(size=D) * 3.0 * spread,
        "scaling_up": X * 37.5,
        "scaling_down": X / 37.5,
        "permutation": X[rng.permutation(n)],
    }


def check_invariances(
    X: np.ndarray,
    *,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Relative change of each estimate under each transformation of :func:`transformed_copies`.

    Returns
    -------
    list of dict
        ``method``, ``transform``, ``base``, ``transformed``, ``rel_diff`` and ``passed``
        (``rel_diff <= INVARIANCE_RTOL``).
    """
    out = []
    copies = transformed_copies(X, seed)
    for method in methods:
        base = fit_estimate(X, method, seed=seed, cache_dir=cache_dir)
        for name, Xt in copies.items():
            val = fit_estimate(Xt, method, seed=seed, cache_dir=cache_dir)
            rel = abs(val - base) / abs(base)
            out.append(
                {
                    "method": method,
                    "transform": name,
                    "base": base,
                    "transformed": val,
                    "rel_diff": rel,
                    "passed": bool(rel <= INVARIANCE_RTOL),
                }
            )
    return out


def check_duplicates(
    X: np.ndarray, *, methods: Sequence[str] = METHODS, seed: int = 0, cache_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """The documented handling of a duplicated data set ``[X; X]``.

    ``duplicates="raise"`` (default) must raise :class:`~gelora.errors.DuplicatePointsError`;
    ``duplicates="dedupe"`` must give the estimate of ``X`` itself (to ``INVARIANCE_RTOL``) and report
    ``n`` removed points.
    """
    import warnings

    from gelora.errors import DuplicatePointsError

    XX = np.vstack([X, X])
    out = []
    for method in methods:
        try:
            fit_estimate(XX, method, seed=seed, cache_dir=cache_dir)
            raised = False
        except DuplicatePointsError:
            raised = True
        base = fit_estimate(X, method, seed=seed, cache_dir=cache_dir)
        from gelora.estimators.danco import DANCo
        from gelora.estimators.mle import MLE
        from gelora.estimators.twonn import TwoNN

        cls = {"twonn": TwoNN, "mle": MLE, "danco": DANCo}[method]
        params = {**estimator_params(method), "duplicates": "dedupe", "seed": seed}
        if method == "danco":
            params.update(
                d_max=min(X.shape[1], DANCO_D_MAX), cache_dir=None if cache_dir is None else str(cache_dir)
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = cls(**params).fit(XX)
        rel = abs(est.dimension_ - base) / abs(base)
        out.append(
            {
                "method": method,
                "raise_mode_raised": raised,
                "dedupe_estimate": float(est.dimension_),
                "base": base,
                "rel_diff": rel,
                "n_duplicates_removed": int(est.result_.n_duplicates_removed),
                "warned": bool(caught),
                "passed": bool(
                    raised and rel <= INVARIANCE_RTOL and est.result_.n_duplicates_removed == X.shape[0]
                ),
            }
        )
    return out


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


def stack_jacobian(tt: Any, x: np.ndarray, upto: int) -> np.ndarray:
    """Jacobian of the first ``upto`` blocks of a ``synthetic.maps.ToyTransformer`` at ``x`` (chain rule)."""
    J = np.eye(tt.in_dim)
    h = np.asarray(x, dtype=np.float64)
    for b in tt.blocks[:upto]:
        J = b.jacobian(h) @ J
        h = b._forward(h[None, :])[0]
    return J


def check_toy_transformer(
    tt: Any,
    X: np.ndarray,
    kind: str,
    d: int,
    *,
    methods: Sequence[str] = METHODS,
    alpha: float = ALPHA,
    seed: int = 0,
    offset: int = 1,
    n_points: int = 15,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-block bounds and rank-rule validity along a toy transformer.

    ``b_j = min(d, rank T_0, .., rank T_{j-1})`` bounds the ID of hidden state ``h_j`` (Theorem 3.2 per
    block). The true ID ``t_j`` is the exact rank of ``J_{T_{j-1}..T_0}(x) T_x M`` (largest over
    ``n_points`` points; the stack's rank is not known in closed form). Per method the estimate of every
    ``h_j`` must be below the ``alpha`` limit at ``b_j``, and every rule gap ``d_hat_{j+1} - d_hat_j`` below
    ``(t_{j+1} - t_j) + (high(t_{j+1}) - t_{j+1}) + (t_j - low(t_j))`` (a deterministic stack never
    raises the ID, so ``t_{j+1} - t_j <= 0``: the rule's gap is pure estimator error here).

    Returns
    -------
    dict
        ``bounds``, ``true_dims``, and per method ``dims``, ``layer_records`` (as
        :func:`check_upper_bound`), ``gaps``, ``gap_limits``, ``ranks`` (GeLoRA, ceil rounding) and
        ``passed``.
    """
    from gelora.ranks import ranks_from_dimensions

    states = tt.forward_all(X)
    bounds = layer_bounds(d, tt.block_ranks)

    def _jac(j: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: stack_jacobian(tt, x, j)

    truth = [
        check_exact_layer(X, kind, d, _jac(j), tt.in_dim, n_points=n_points, seed=seed)["image_rank"][1]
        for j in range(tt.n_blocks + 1)
    ]
    n = int(X.shape[0])
    res: dict[str, Any] = {
        "bounds": bounds,
        "true_dims": truth,
        "exact_passed": bool(all(t <= b for t, b in zip(truth, bounds))),
        "methods": {},
    }
    for method in methods:
        recs = []
        for j, h in enumerate(states):
            recs.extend(
                check_upper_bound(
                    h,
                    bounds[j],
                    methods=(method,),
                    alpha=alpha,
                    seed=seed,
                    cache_dir=cache_dir,
                    calibration=calibration,
                    context={"layer": j},
                )
            )
        dims = [r["estimate"] for r in recs]
        gaps = [dims[j + 1] - dims[j] for j in range(tt.n_blocks)]
        lims = []
        for j in range(tt.n_blocks):
            hi = estimate_limits(method, n, truth[j + 1], alpha, calibration).high
            lo = estimate_limits(method, n, truth[j], alpha, calibration).low
            lims.append((truth[j + 1] - truth[j]) + (hi - truth[j + 1]) + (truth[j] - lo))
        res["methods"][method] = {
            "dims": dims,
            "layer_records": recs,
            "gaps": gaps,
            "gap_limits": lims,
            "ranks": ranks_from_dimensions(dims, offset=offset),
            "passed": bool(all(r["passed"] for r in recs) and all(g <= lim for g, lim in zip(gaps, lims))),
        }
    return res


# --------------------------------------------------------------------------------------------------
# counter-examples: where the theorem's assumptions break in practice
# --------------------------------------------------------------------------------------------------
def counterexample_noise(
    n: int = 2000,
    d: int = 2,
    D: int = 20,
    sigma: float = 0.05,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Isotropic noise: a ``d``-plane in ``R^D`` plus Gaussian noise of std ``sigma`` (unit-scale data).

    The nearest-neighbour distance (``~ n^(-1/d)``) is below ``sigma``, so the neighbours see the
    ``D``-dimensional noise: every estimate exceeds ``d`` far beyond its limit. The theorem is about the
    noise-free manifold; the rank rule applied to noisy hidden states inherits the inflation.
    """
    from synthetic.manifolds import linear_subspace

    X = linear_subspace(n, d, D, noise=sigma, seed=seed).X
    recs = check_upper_bound(
        X,
        d,
        methods=methods,
        seed=seed,
        cache_dir=cache_dir,
        context={"case": "noise", "sigma": sigma, "d": d, "D": D},
    )
    return {
        "case": "noise",
        "params": {"n": n, "d": d, "D": D, "sigma": sigma, "seed": seed},
        "records": recs,
        "violated": bool(any(not r["passed"] for r in recs)),
    }


def counterexample_curvature(
    n: int = 300,
    n_turns: float = 40.0,
    pitch: float = 0.05,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Curvature at small ``n``: a tightly wound helix (``d = 1``) whose turns are closer than its samples.

    With ``n`` points on ``n_turns`` turns ``pitch`` apart, a point's nearest neighbours lie on adjacent
    turns, so at the neighbour scale the curve looks like a 2-dimensional cylinder; only at ``n`` large
    enough that the spacing along the curve falls below ``pitch`` does it look 1-dimensional.
    """
    from synthetic.manifolds import helix_curve

    X = helix_curve(n, n_turns=n_turns, pitch=pitch, embed_dim=6, seed=seed).X
    recs = check_upper_bound(
        X,
        1,
        methods=methods,
        seed=seed,
        cache_dir=cache_dir,
        context={"case": "curvature", "n_turns": n_turns, "pitch": pitch},
    )
    return {
        "case": "curvature",
        "params": {"n": n, "n_turns": n_turns, "pitch": pitch, "seed": seed},
        "records": recs,
        "violated": bool(any(not r["passed"] for r in recs)),
    }


def counterexample_local_pca_curvature(n: int = 500, d: int = 3, seed: int = 0) -> dict[str, Any]:
    """Local PCA (the exact-layer proxy) on a round ``d``-sphere at small ``n`` counts the normal direction."""
    from synthetic.local_pca import local_pca_dimension
    from synthetic.manifolds import hypersphere

    X = hypersphere(n, d, embed_dim=d + 1, seed=seed).X
    lp = int(local_pca_dimension(X, seed=seed))
    return {
        "case": "local_pca_curvature",
        "params": {"n": n, "d": d, "seed": seed},
        "local_pca": lp,
        "bound": d,
        "violated": bool(lp > d),
    }


def counterexample_small_n_rule(
    n: int = 1000,
    eps: float = 1e-5,
    seed: int = 0,
    method: str = "twonn",
    alpha: float = ALPHA,
    offset: int = 1,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Too few samples to resolve the data: a frozen full-rank block that needs no update (``k = 0``).

    ``h_0`` is uniform on the thin rectangle ``[0, 1] x [0, eps]`` (rotated into ``R^8``) and the frozen block
    is the linear map ``diag(1, 1/eps)`` (full rank), so ``h_1`` is the unit square: both are exactly
    2-dimensional and the true gap is 0. With ``n`` points the spacing along the strip, ``~ 1/n``, exceeds
    ``eps``: at the scale the sample resolves, ``h_0`` looks 1-dimensional, the estimated gap is ~1 and the
    rule asks for an update of rank 1 (beyond its sampling limit) where none is needed. With ``n >> 1/eps``
    it disappears.
    """
    from gelora.ranks import ranks_from_dimensions

    rng = np.random.default_rng(seed)
    P = rng.random((n, 2)) * np.array([1.0, eps])
    Q, _ = np.linalg.qr(rng.normal(size=(8, 2)))
    h0 = P @ Q.T
    h1 = (P / np.array([1.0, eps])) @ Q.T
    dims = [fit_estimate(h, method, seed=seed, cache_dir=cache_dir) for h in (h0, h1)]
    gap = dims[1] - dims[0]
    hi = estimate_limits(method, n, 2, alpha, calibration).high
    lo = estimate_limits(method, n, 2, alpha, calibration).low
    limit = 0.0 + (hi - 2) + (2 - lo)
    ranks = ranks_from_dimensions(dims, offset=offset)
    return {
        "case": "small_n_rule",
        "params": {"n": n, "eps": eps, "seed": seed, "method": method},
        "dims": dims,
        "gap": gap,
        "gap_limit": limit,
        "ranks": ranks,
        "k": 0,
        "violated": bool(gap > limit),
    }


def counterexample_ceil_rounding(
    n: int = 2000,
    seed: int = 6,
    method: str = "twonn",
    offset: int = 1,
    d_token: int = 2,
    n_blocks: int = 3,
) -> dict[str, Any]:
    """``rounding="ceil"`` (the library default) turns any positive estimator noise into one extra rank.

    A frozen residual network (no update needed, every true gap 0): estimates of consecutive layers differ
    by sampling noise of either sign, and ``ceil`` maps a gap of ``+0.01`` to 1, so ``r_i - offset = 1 > k = 0``
    on roughly half of such blocks at any ``n``; ``rounding="round"`` does not (for gaps below 0.5).
    """
    from gelora.ranks import ranks_from_dimensions

    net = PlantedUpdateNetwork(
        d_token=d_token, d_context=1, k=0, block=0, n_blocks=n_blocks, width=8, seed=seed
    )
    U, Z = net.sample_inputs(n, seed)
    states, _ = net.forward_all(U, Z)
    dims = [fit_estimate(h, method, seed=seed) for h in states]
    ceil_ranks = ranks_from_dimensions(dims, offset=offset, rounding="ceil")
    round_ranks = ranks_from_dimensions(dims, offset=offset, rounding="round")
    return {
        "case": "ceil_rounding",
        "params": {"n": n, "seed": seed, "method": method},
        "dims": dims,
        "ceil_ranks": ceil_ranks,
        "round_ranks": round_ranks,
        "violated": bool(max(ceil_ranks) - offset > 0),
    }


def counterexample_mle_toy_transformer(n: int = 500, seed: int = 0, k: int = 20) -> dict[str, Any]:
    """MLE (``k = 20``) overshoots a deterministic network's bound beyond its tolerance.

    A circle (``d = 1``, 500 points) through three plain (non-residual) blocks of
    ``ToyTransformer(n_tokens=2, d_model=2, attn_ranks=[1, 1, 1], mlp_ranks=[1, 1, 1], seed=0)``: every hidden
    state is a closed curve (exact Jacobian rank 1), but the saturating ``tanh`` blocks stretch it very
    unevenly and bring distant arcs close, so the 20-neighbour balls of the last layer are no longer
    1-dimensional and MLE reads ~1.23, above its limit ~1.07 (TwoNN, with two neighbours, reads ~0.91).
    The calibration on uniform samples of smooth families does not cover such density and folding.
    """
    from synthetic.manifolds import hypersphere
    from synthetic.maps import ToyTransformer

    tt = ToyTransformer(2, 2, [1, 1, 1], [1, 1, 1], residual=False, seed=seed)
    X = hypersphere(n, 1, embed_dim=4, seed=seed).X
    last = tt.forward_all(X)[-1]
    recs = check_upper_bound(
        last, 1, methods=("mle", "twonn"), seed=seed, context={"case": "mle_toy_transformer", "layer": 3}
    )
    return {
        "case": "mle_toy_transformer",
        "params": {"n": n, "seed": seed, "k": k},
        "records": recs,
        "violated": bool(not recs[0]["passed"]),
        "twonn_passed": bool(recs[1]["passed"]),
    }


# --------------------------------------------------------------------------------------------------
# the runner: the same checks at larger sizes, summarised as JSON
# --------------------------------------------------------------------------------------------------
#: sizes of the two profiles: examples per property and the sample-size range
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "exact": 2,
        "estimated": 2,
        "toy": 1,
        "planted": 2,
        "invariance": 1,
        "duplicates": 1,
        "n_range": (500, 700),
        "planted_n": 600,
        "counter_seeds": 1,
        "helix_large_n": 3000,
    },
    "quick": {
        "exact": 60,
        "estimated": 60,
        "toy": 12,
        "planted": 30,
        "invariance": 10,
        "duplicates": 4,
        "n_range": (1000, 2500),
        "planted_n": 2000,
        "counter_seeds": 5,
        "helix_large_n": 30000,
    },
    "full": {
        "exact": 300,
        "estimated": 300,
        "toy": 60,
        "planted": 150,
        "invariance": 40,
        "duplicates": 10,
        "n_range": (1000, 5000),
        "planted_n": 4000,
        "counter_seeds": 20,
        "helix_large_n": 30000,
    },
}


def _draw_manifold_map(
    rng: np.random.Generator,
    kinds: Sequence[str],
    max_d: int,
    n_range: tuple[int, int],
    map_kinds: Sequence[str] = ("linear", "mlp", "residual"),
) -> tuple[Any, Any, dict[str, Any]]:
    """The parameter space of ``synthetic.strategies.manifold_map_pairs`` with larger ``n``."""
    from synthetic.maps import BottleneckMLP, LinearMap, ResidualBlock
    from synthetic.strategies import build_manifold

    kind = str(rng.choice(list(kinds)))
    d = int(rng.integers(1, max_d + 1))
    natural = {"hypersphere": d + 1, "flat_torus": 2 * d}.get(kind, d)
    D = int(rng.integers(natural, natural + 5))
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    seed = int(rng.integers(0, 2**31 - 1))
    mp = {"kind": kind, "n": n, "d": d, "ambient_dim": D, "noise": 0.0, "seed": seed}
    M = build_manifold(mp)
    mk = str(rng.choice(list(map_kinds)))
    mseed = int(rng.integers(0, 2**31 - 1))
    if mk == "residual":
        fmap: Any = ResidualBlock(D, int(rng.integers(1, D + 1)), seed=mseed)
    else:
        out = int(rng.integers(2, 17))
        r = int(rng.integers(1, min(D, out) + 1))
        fmap = (LinearMap if mk == "linear" else BottleneckMLP)(D, out, r, seed=mseed)
    return M, fmap, {**mp, "map": mk, "map_rank": int(fmap.rank), "map_seed": mseed}


def _summarise(
    name: str,
    description: str,
    records: list[dict[str, Any]],
    *,
    examples: int,
    margin_key: str | None = "margin",
    false_failure: str | None = None,
    false_failure_per_check: float | None = None,
) -> dict[str, Any]:
    """One property's summary; ``false_failure_per_check`` is the stated bound (0: deterministic).

    With a bound ``a > 0`` the summary also holds ``expected_false_failures = a * strict_checks`` and
    ``p_at_least_failed``: the probability of at least ``failed`` failures among the strict checks if each
    failed independently with probability ``a`` — the chance that the observed failures are all false
    failures (an upper bound on it, as ``a`` is an upper bound).
    """
    failed = [r for r in records if not r.get("passed", True) and r.get("strict", True)]
    known = [r for r in records if not r.get("passed", True) and not r.get("strict", True)]
    n_strict = sum(1 for r in records if r.get("strict", True))
    out: dict[str, Any] = {
        "property": name,
        "description": description,
        "examples": int(examples),
        "checks": len(records),
        "strict_checks": n_strict,
        "failed": len(failed),
        "pass": not failed,
        "false_failure_rate": false_failure,
        "false_failure_per_check": false_failure_per_check,
        "failures": failed[:20],
        "known_violations": len(known),
        "known_violation_cases": known[:20],
    }
    if false_failure_per_check is not None:
        from scipy.stats import binom

        a = float(false_failure_per_check)
        out["expected_false_failures"] = a * n_strict
        out["p_at_least_failed"] = (
            float(binom.sf(len(failed) - 1, n_strict, a)) if a > 0 else float(len(failed) == 0)
        )
    if margin_key is not None and records:
        worst = min(records, key=lambda r: r[margin_key])
        out["worst_margin"] = float(worst[margin_key])
        out["worst_case"] = worst
    overs = [r for r in records if r.get("overshoot")]
    if overs or margin_key == "margin":
        out["overshoots"] = len(overs)
        out["overshoot_cases"] = sorted(overs, key=lambda r: -r.get("excess", 0.0))[:25]
        by_method: dict[str, dict[str, Any]] = {}
        for r in records:
            if "method" in r:
                m = by_method.setdefault(
                    r["method"], {"checks": 0, "overshoots": 0, "failed": 0, "max_excess": None}
                )
                m["checks"] += 1
                m["overshoots"] += int(bool(r.get("overshoot")))
                m["failed"] += int(not r.get("passed", True))
                if "excess" in r:
                    m["max_excess"] = (
                        r["excess"] if m["max_excess"] is None else max(m["max_excess"], r["excess"])
                    )
        out["by_method"] = by_method
    return out


def run_theory_checks(
    profile: str = "quick",
    seed: int = 0,
    out: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every theory check at the profile's sizes and return (and optionally write) a JSON summary.

    Parameters
    ----------
    profile : {"smoke", "quick", "full"}
        Sizes in :data:`PROFILES` (``smoke``: seconds, for tests of this runner; ``quick``: about 2 minutes on
        one core; ``full``: about 5x longer).
    seed : int
        Seeds every drawn example (``numpy.random.default_rng(seed)``) and the estimators.
    out : path, optional
        Write the summary there (atomically).
    cache_dir : path, optional
        DANCo calibration cache (default: the library's).

    Returns
    -------
    dict
        ``schema``, ``profile``, ``seed``, ``alpha``, ``calibration`` (command and summary),
        ``properties`` (one entry per property: ``examples``, ``checks``, ``failed``, ``pass``,
        ``worst_margin``, ``worst_case``, ``overshoots`` and ``overshoot_cases``, ``by_method``,
        ``false_failure_rate``), ``tightness`` (planted updates, per method), ``counterexamples``
        (per case: how often the violation occurred over seeds and sizes) and ``seconds``.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    P = PROFILES[profile]
    rng = np.random.default_rng(seed)
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    cal = load_calibration()
    props: list[dict[str, Any]] = []
    timings: dict[str, float] = {}

    # exact layer -------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    recs = []
    for _ in range(P["exact"]):
        M, fmap, par = _draw_manifold_map(rng, TANGENT_KINDS, 8, P["n_range"])
        r = check_exact_layer(M.X, par["kind"], M.intrinsic_dim, fmap.jacobian, fmap.rank, seed=seed)
        r.update(par)
        r["passed"] = bool(
            r["passed"] and r["jacobian_rank"] == [fmap.rank, fmap.rank] and r["gap_ratio"] < RANK_RTOL
        )
        r["margin"] = -math.log10(max(r["gap_ratio"], 1e-300)) + math.log10(RANK_RTOL)
        recs.append(r)
        if par["kind"] in FLAT_KINDS and par["map"] == "linear":
            rk, worst = neighbourhood_rank(fmap(M.X), seed=seed)
            bound = min(M.intrinsic_dim, fmap.rank)
            recs.append(
                {
                    **par,
                    "check": "neighbourhood_rank",
                    "rank": rk,
                    "bound": bound,
                    "gap_ratio": worst,
                    "margin": -math.log10(max(worst, 1e-300)) + math.log10(RANK_RTOL),
                    "passed": bool(rk <= bound and worst < RANK_RTOL),
                }
            )
    props.append(
        _summarise(
            "exact_layer",
            "rank(J_f(x) T_x M) <= min(rank f, dim M) and exact local rank of linear images of flat "
            "manifolds, at relative singular-value threshold 1e-9; margin = decades between the largest "
            "singular value beyond the bound (relative) and the threshold",
            recs,
            examples=P["exact"],
            false_failure="0 (deterministic linear algebra)",
            false_failure_per_check=0.0,
        )
    )
    timings["exact_layer"] = time.perf_counter() - t0
    say(f"exact layer: {len(recs)} checks")

    # estimated layer ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    recs = []
    for _ in range(P["estimated"]):
        M, fmap, par = _draw_manifold_map(
            rng, ("hypersphere", "hyperball", "hypercube", "flat_torus", "linear_subspace"), 6, P["n_range"]
        )
        recs.extend(
            check_upper_bound(
                fmap(M.X),
                min(M.intrinsic_dim, fmap.rank),
                seed=seed,
                cache_dir=cache_dir,
                calibration=cal,
                context={**par, "manifold": par["kind"]},
            )
        )
    props.append(
        _summarise(
            "estimated_layer",
            "TwoNN/MLE/DANCo estimate of dim f(M) <= min(dim M, rank f) + one-sided limit; "
            "margin = limit - estimate",
            recs,
            examples=P["estimated"],
            false_failure=f"<= {ALPHA:g} per TwoNN/MLE estimate; DANCo <= rule-of-three bound of its calibration",
            false_failure_per_check=ALPHA,
        )
    )
    timings["estimated_layer"] = time.perf_counter() - t0
    say(f"estimated layer: {len(recs)} checks")

    # composition: toy transformers -------------------------------------------------------------------
    t0 = time.perf_counter()
    from synthetic.maps import ToyTransformer

    recs = []
    for _ in range(P["toy"]):
        L = int(rng.integers(1, 5))
        nt, dm = int(rng.integers(2, 5)), int(rng.integers(2, 7))
        tt = ToyTransformer(
            nt,
            dm,
            [int(x) for x in rng.integers(1, dm + 1, L)],
            [int(x) for x in rng.integers(1, dm + 1, L)],
            residual=[bool(x) for x in rng.integers(0, 2, L)],
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        kind = str(rng.choice(list(TANGENT_KINDS)))
        d = int(rng.integers(1, max(1, min(5, tt.in_dim - 1)) + 1))
        n = int(rng.integers(*P["n_range"]))
        from synthetic import manifolds as _m

        ms = int(rng.integers(0, 2**31 - 1))
        X = (
            _m.linear_subspace(n, d, tt.in_dim, seed=ms)
            if kind == "linear_subspace"
            else getattr(_m, kind)(n, d, embed_dim=tt.in_dim, seed=ms)
        ).X
        res = check_toy_transformer(tt, X, kind, d, seed=seed, cache_dir=cache_dir, calibration=cal)
        for method, r in res["methods"].items():
            strict = method != "mle"  # MLE's known violation (counterexample_mle_toy_transformer)
            for rec in r["layer_records"]:
                recs.append(
                    {**rec, "block_ranks": tt.block_ranks, "true_dims": res["true_dims"], "strict": strict}
                )
            for j, (g, lim) in enumerate(zip(r["gaps"], r["gap_limits"])):
                recs.append(
                    {
                        "method": method,
                        "check": "gap",
                        "block": j,
                        "gap": g,
                        "gap_limit": lim,
                        "margin": lim - g,
                        "strict": strict,
                        "passed": bool(g <= lim),
                        "true_dims": res["true_dims"],
                    }
                )
    props.append(
        _summarise(
            "composition_toy_transformer",
            "per-layer estimates <= alpha-limit at b_j = min(dim M, block ranks) and "
            "rule gaps within their limits around the exact (Jacobian) true gap; held for TwoNN and DANCo, "
            "MLE (k=20) violations counted as known_violations (see counterexample mle_toy_transformer)",
            recs,
            examples=P["toy"],
            false_failure=f"<= {ALPHA:g} per layer estimate, <= {2 * ALPHA:g} per gap (TwoNN/MLE)",
            false_failure_per_check=2 * ALPHA,
        )
    )
    timings["composition_toy_transformer"] = time.perf_counter() - t0
    say(f"toy transformers: {len(recs)} checks")

    # composition: planted updates --------------------------------------------------------------------
    t0 = time.perf_counter()
    recs = []
    tight: dict[str, list[dict[str, Any]]] = {}
    exact_ok = True
    for _ in range(P["planted"]):
        net = PlantedUpdateNetwork(
            d_token=int(rng.integers(1, 4)),
            d_context=int(rng.integers(1, 5)),
            k=int(rng.integers(0, 4)),
            block=int(rng.integers(0, 3)),
            n_blocks=3,
            width=12,
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        res = check_planted_network(
            net,
            P["planted_n"],
            data_seed=int(rng.integers(0, 2**31 - 1)),
            seed=seed,
            cache_dir=cache_dir,
            calibration=cal,
        )
        exact_ok &= res["exact"]["passed"]
        for method, r in res["methods"].items():
            for j, (g, lim, ok) in enumerate(zip(r["gaps"], r["gap_limit"], r["valid_per_block"])):
                recs.append(
                    {
                        "method": method,
                        "network": res["network"],
                        "block": j,
                        "k": net.k if j == net.block else 0,
                        "gap": g,
                        "gap_limit": lim,
                        "margin": lim - g,
                        "overshoot": bool(g > (net.k if j == net.block else 0)),
                        "excess": g - (net.k if j == net.block else 0),
                        "passed": ok,
                        "rule_rank_minus_offset": r["ranks"][j] - 1,
                    }
                )
            if net.k > 0:
                tight.setdefault(method, []).append(
                    {
                        "k": net.k,
                        "d_context": net.d_context,
                        "attainable": min(net.k, net.d_context),
                        "gap": r["planted_gap"],
                        "tightness": r["tightness"],
                        "rule_rank_minus_offset": r["rule_rank_minus_offset"],
                    }
                )
    summ = _summarise(
        "composition_planted_update",
        "teacher with a planted rank-k update in one block: rule gap <= k + "
        "sampling limits at every block (validity); margin = limit - gap",
        recs,
        examples=P["planted"],
        false_failure=f"<= {2 * ALPHA:g} per block (TwoNN/MLE)",
        false_failure_per_check=2 * ALPHA,
    )
    summ["exact_jacobian_ranks_pass"] = bool(exact_ok)
    summ["pass"] = bool(summ["pass"] and exact_ok)
    summ["rule_overshoots_k"] = sum(int(r["rule_rank_minus_offset"] > r["k"]) for r in recs)
    props.append(summ)
    tightness = {}
    for method, rows in tight.items():
        t = np.array([r["tightness"] for r in rows])
        att = np.array([r["tightness"] * r["k"] / r["attainable"] for r in rows])
        tightness[method] = {
            "cases": len(rows),
            "gap_over_k": {
                "min": float(t.min()),
                "median": float(np.median(t)),
                "mean": float(t.mean()),
                "max": float(t.max()),
            },
            "gap_over_attainable": {
                "min": float(att.min()),
                "median": float(np.median(att)),
                "max": float(att.max()),
            },
            "rows": rows,
        }
    timings["composition_planted_update"] = time.perf_counter() - t0
    say(f"planted updates: {len(recs)} checks")

    # invariances and duplicates ----------------------------------------------------------------------
    t0 = time.perf_counter()
    from synthetic.strategies import build_manifold

    recs = []
    drecs: list[dict[str, Any]] = []
    for i in range(P["invariance"] + P["duplicates"]):
        kind = str(rng.choice(["hypersphere", "hyperball", "hypercube", "flat_torus", "linear_subspace"]))
        d = int(rng.integers(1, 6))
        natural = {"hypersphere": d + 1, "flat_torus": 2 * d}.get(kind, d)
        M = build_manifold(
            {
                "kind": kind,
                "n": int(rng.integers(*P["n_range"])),
                "d": d,
                "ambient_dim": natural + int(rng.integers(0, 5)),
                "noise": 0.0,
                "seed": int(rng.integers(0, 2**31 - 1)),
            }
        )
        if i < P["invariance"]:
            for r in check_invariances(M.X, seed=int(rng.integers(0, 2**31 - 1)), cache_dir=cache_dir):
                recs.append({**r, "manifold": kind, "d": d, "margin": INVARIANCE_RTOL - r["rel_diff"]})
        else:
            drecs.extend(
                {**r, "manifold": kind, "d": d} for r in check_duplicates(M.X, seed=seed, cache_dir=cache_dir)
            )
    inv = _summarise(
        "invariances",
        f"rotation, translation, scaling, permutation change no estimate by more than "
        f"{INVARIANCE_RTOL:g} relative; margin = tolerance - relative change",
        recs,
        examples=P["invariance"],
        false_failure="0 (deterministic)",
        false_failure_per_check=0.0,
    )
    inv["max_rel_diff"] = {m: max(r["rel_diff"] for r in recs if r["method"] == m) for m in METHODS}
    props.append(inv)
    props.append(
        _summarise(
            "duplicates",
            "[X; X]: duplicates='raise' raises DuplicatePointsError, 'dedupe' warns, "
            "removes n points and returns the estimate of X",
            drecs,
            examples=P["duplicates"],
            margin_key=None,
            false_failure="0 (deterministic)",
            false_failure_per_check=0.0,
        )
    )
    timings["invariances"] = time.perf_counter() - t0
    say("invariances done")

    # counter-examples: how often each violation occurs ------------------------------------------------
    t0 = time.perf_counter()
    seeds = list(range(P["counter_seeds"]))
    counter = []

    def _rate(case: str, desc: str, runs: list[dict[str, Any]], **extra: Any) -> None:
        counter.append(
            {
                "case": case,
                "description": desc,
                "runs": len(runs),
                "violations": sum(int(r["violated"]) for r in runs),
                **extra,
                "examples": runs[:6],
            }
        )

    for sigma in (0.0, 0.005, 0.05):
        _rate(
            f"noise_sigma_{sigma:g}",
            "2-plane in R^20 with isotropic noise, n=2000: estimate > bound + limit",
            [counterexample_noise(sigma=sigma, seed=s, cache_dir=cache_dir) for s in seeds],
            sigma=sigma,
        )
    for n in (300, P["helix_large_n"]):
        _rate(
            f"helix_n_{n}",
            "helix, 40 turns 0.05 apart (d=1): estimate > 1 + limit",
            [counterexample_curvature(n=n, seed=s, cache_dir=cache_dir) for s in seeds],
            n=n,
        )
    for n in (500, 5000):
        _rate(
            f"local_pca_sphere_n_{n}",
            "local PCA of a round 3-sphere > 3",
            [counterexample_local_pca_curvature(n=n, seed=s) for s in seeds],
            n=n,
        )
    for eps in (0.3, 1e-2, 1e-5):
        _rate(
            f"thin_strip_eps_{eps:g}",
            "1 x eps rectangle rescaled to a square by a frozen block (k=0), n=1000: "
            "gap > limit (the sample resolves the thin side only when sqrt(eps/n) << eps)",
            [
                counterexample_small_n_rule(n=1000, eps=eps, seed=s, cache_dir=cache_dir, calibration=cal)
                for s in seeds
            ],
            eps=eps,
        )
    _rate(
        "mle_toy_transformer",
        "circle through 3 plain ToyTransformer blocks (seeded by each seed): MLE estimate > 1 + limit",
        [counterexample_mle_toy_transformer(seed=s) for s in seeds],
    )
    ceil_runs = [counterexample_ceil_rounding(seed=s) for s in seeds]
    _rate(
        "ceil_rounding",
        "frozen residual network (all k=0), n=2000: rounding='ceil' gives some block rank > offset",
        ceil_runs,
        round_violations=sum(int(max(r["round_ranks"]) > 1) for r in ceil_runs),
    )
    timings["counterexamples"] = time.perf_counter() - t0
    say("counter-examples done")

    summary: dict[str, Any] = {
        "schema": "gelora.theory/1",
        "profile": profile,
        "seed": int(seed),
        "alpha": ALPHA,
        "command": f"python -m validation.theory --profile {profile} --seed {seed}"
        + (f" --out {out}" if out is not None else ""),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
        },
        "calibration": {
            "path": str(CALIBRATION_PATH.name),
            "command": cal.get("command"),
            "grid": cal.get("grid"),
            "twonn_variance_inflation_by_d": {d: v * 0.9 for d, v in cal["methods"]["twonn"]["s2"].items()},
            "twonn_bias_hi": cal["methods"]["twonn"]["bias_hi"],
            "mle_s2_by_d": cal["methods"]["mle"]["s2"],
            "mle_bias_hi": cal["methods"]["mle"]["bias_hi"],
            "danco": {
                k: cal["methods"]["danco"][k]
                for k in ("n_fits", "count_over_by_1", "count_over_by_2_or_more", "max_delta")
            },
        },
        "properties": props,
        "all_pass": bool(all(p["pass"] for p in props)),
        "tightness": tightness,
        "counterexamples": counter,
        "timings_s": timings,
        "seconds": time.perf_counter() - t_start,
    }
    if out is not None:
        from gelora._io import atomic_write_json

        atomic_write_json(out, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.theory [--profile quick|full] [--seed S] [--out FILE] [--calibrate]``."""
    ap = argparse.ArgumentParser(prog="python -m validation.theory", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON summary (calibration file with --calibrate)")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help=f"recompute the estimator calibration (writes --out, default {CALIBRATION_PATH})",
    )
    ap.add_argument("--cache-dir", type=Path, default=None, help="DANCo calibration cache")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.calibrate:
        from gelora._io import atomic_write_json

        t0 = time.perf_counter()
        cal = calibrate(seed=args.seed, cache_dir=args.cache_dir, progress=say)
        target = args.out or CALIBRATION_PATH
        cal["command"] = f"python -m validation.theory --calibrate --seed {args.seed} --out {target}"
        cal["seconds"] = time.perf_counter() - t0
        atomic_write_json(target, cal)
        say(f"wrote {target}")
        return 0
    summary = run_theory_checks(args.profile, args.seed, args.out, cache_dir=args.cache_dir, progress=say)
    for p in summary["properties"]:
        say(
            f"{p['property']:32s} {'PASS' if p['pass'] else 'FAIL'}  checks={p['checks']} failed={p['failed']} "
            f"overshoots={p.get('overshoots', '-')} worst_margin={p.get('worst_margin', float('nan')):.4g}"
        )
    for c in summary["counterexamples"]:
        say(f"counter-example {c['case']:28s} violated in {c['violations']}/{c['runs']}")
    if args.out is None:
        json.dump(summary, sys.stdout, indent=2, default=str)
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
