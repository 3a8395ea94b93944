"""Intrinsic-dimension estimators (TwoNN, MLE, DANCo) on one exact k-nearest-neighbour core.

>>> import numpy as np
>>> from gelora.estimators import estimate_id
>>> X = np.random.default_rng(0).normal(size=(1000, 3)) @ np.random.default_rng(1).normal(size=(3, 20))
>>> round(estimate_id(X, method="twonn").dimension)
3
"""

from __future__ import annotations

from typing import Any

from gelora.errors import ConfigError
from gelora.estimators.danco import DANCo, danco_min_samples
from gelora.estimators.knn import KNNData, knn_distances, knn_without_duplicates
from gelora.estimators.mle import MLE, mle_min_samples
from gelora.estimators.result import IDResult
from gelora.estimators.twonn import ScalePoint, TwoNN, twonn_min_samples, twonn_scale_analysis

ESTIMATORS: dict[str, type] = {"twonn": TwoNN, "mle": MLE, "danco": DANCo}


def estimate_id(X: Any, method: str = "twonn", **params: Any) -> IDResult:
    """Estimate the intrinsic dimension of a point cloud with one of :data:`ESTIMATORS`.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n_samples, n_features)
        The points.
    method : {"twonn", "mle", "danco"}
        Estimator name.
    **params
        Constructor parameters of the estimator (``metric``, ``device``, ``duplicates``, ``seed``,
        ``ci_level``, and the estimator's own).

    Returns
    -------
    IDResult
        Estimate, confidence interval and provenance.

    Raises
    ------
    ConfigError
        Unknown method or parameter.
    """
    if method not in ESTIMATORS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(sorted(ESTIMATORS))}")
    cls = ESTIMATORS[method]
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"invalid parameter for method {method!r}: {exc}") from exc
    return est.fit(X).result_


__all__ = [
    "DANCo",
    "ESTIMATORS",
    "IDResult",
    "KNNData",
    "MLE",
    "ScalePoint",
    "TwoNN",
    "danco_min_samples",
    "estimate_id",
    "knn_distances",
    "knn_without_duplicates",
    "mle_min_samples",
    "twonn_min_samples",
    "twonn_scale_analysis",
]
