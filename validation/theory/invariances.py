"""Invariances: rotation, translation, uniform scaling and permutation leave the estimates unchanged;
duplicated points raise or are de-duplicated as documented (``tests/theory/test_invariances.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from validation.theory.calibration import DANCO_D_MAX, METHODS, estimator_params, fit_estimate

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
