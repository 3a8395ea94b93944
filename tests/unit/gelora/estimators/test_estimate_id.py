"""estimate_id dispatch, the ESTIMATORS table and the IDResult every estimator returns."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gelora.estimators as est
from gelora.errors import ConfigError
from gelora.estimators import ESTIMATORS, MLE, IDResult, TwoNN, estimate_id


def plane(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 2)) @ rng.normal(size=(2, 6))


def test_public_names():
    for name in ("TwoNN", "MLE", "DANCo", "ESTIMATORS", "estimate_id", "knn_distances", "IDResult"):
        assert hasattr(est, name) and name in est.__all__
    assert set(ESTIMATORS) == {"twonn", "mle", "danco"}
    assert ESTIMATORS["twonn"] is TwoNN and ESTIMATORS["mle"] is MLE


@pytest.mark.parametrize("method", ["twonn", "mle"])
def test_estimate_id_equals_the_estimator(method):
    X = plane()
    r = estimate_id(X, method=method, seed=4)
    assert isinstance(r, IDResult) and r.method == method and r.seed in (4, None)
    assert r.dimension == ESTIMATORS[method](seed=4).fit(X).dimension_
    back = IDResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r


def test_estimate_id_params_reach_the_estimator():
    X = plane()
    r = estimate_id(X, method="mle", k=7, ci="analytic")
    assert r.k == 7 and r.ci_method == "analytic" and r.params["k"] == 7


def test_unknown_method_or_parameter():
    with pytest.raises(ConfigError, match="unknown method 'pca'"):
        estimate_id(plane(), method="pca")
    with pytest.raises(ConfigError, match="invalid parameter"):
        estimate_id(plane(), method="twonn", k=5)
