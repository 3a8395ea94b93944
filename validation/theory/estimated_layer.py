"""Estimated layer: TwoNN, MLE and DANCo estimates of ``dim f(M)`` against ``min(dim M, rank f)``.

An estimate above the bound but inside the one-sided limit of
:func:`validation.theory.calibration.estimate_limits` is an *overshoot*: reported, not hidden
(``tests/theory/test_estimated_layer.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from validation.theory.calibration import ALPHA, METHODS, estimate_limits, fit_estimate


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
