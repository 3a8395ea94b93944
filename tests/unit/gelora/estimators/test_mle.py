"""Levina–Bickel MLE: exact model, known dimensions, pooling, k ranges, intervals, invariances, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from gelora.errors import ConfigError, DuplicatePointsError, NotEnoughSamplesError
from gelora.estimators import MLE
from gelora.estimators.mle import mle_from_distances


def sphere(n: int, d: int, ambient: int, seed: int) -> np.ndarray:
    """Uniform sample of the unit d-sphere (intrinsic dimension d, no boundary), randomly rotated."""
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(n, d + 1))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.normal(size=(ambient, d + 1)))
    return Y @ Q.T


def model_distances(n: int, k: int, d: float, rng: np.random.Generator) -> np.ndarray:
    """Neighbour distances exactly from the local model: k iid radii U^(1/d) of a uniform d-ball, sorted."""
    return np.sort(rng.uniform(size=(n, k)) ** (1.0 / d), axis=1)


def test_pooled_inverse_is_unbiased_for_one_over_d_on_the_exact_model():
    # S_k(x) ~ Gamma(k - 1, d) per row, so mean(1 / m_k) estimates 1/d without bias; sd of the mean of
    # n = 20000 rows is 1 / (d sqrt(n (k - 1))) -> 5 sd tolerance (FFR < 1e-6)
    d, k, n = 6.0, 10, 20000
    dist = model_distances(n, k, d, np.random.default_rng(0))
    est, pw = mle_from_distances(dist, np.array([k]))
    assert abs(1 / est - 1 / d) < 5 / (d * np.sqrt(n * (k - 1)))
    assert pw.shape == (n,)
    # without the correction the mean of m_k(x) = (k-1)/S is biased up by the factor (k-1)/(k-2)
    est_mean, _ = mle_from_distances(dist, np.array([k]), correction=False)
    assert est_mean == pytest.approx(d * (k - 1) / (k - 2), rel=0.03)
    # the unbiased (k - 2) numerator removes that bias of the pointwise mean
    est_unb, _ = mle_from_distances(dist, np.array([k]), correction=False, unbiased=True)
    assert est_unb == pytest.approx(d, rel=0.03)


def test_analytic_interval_covers_on_independent_neighbourhoods():
    # independent rows: 2 d sum S ~ chi2(2 n (k-1)) exactly; coverage count over R = 300 replicates is
    # Binomial(300, 0.95), sd 3.8 -> [268, 297] is beyond 4.5 sd
    rng = np.random.default_rng(1)
    d, k, n, cover = 3.0, 5, 100, 0
    for _ in range(300):
        dist = model_distances(n, k, d, rng)
        total = np.sum((k - 1) * np.log(dist[:, -1]) - np.log(dist[:, :-1]).sum(axis=1))
        lo = stats.chi2.ppf(0.025, 2 * n * (k - 1)) / (2 * total)
        hi = stats.chi2.ppf(0.975, 2 * n * (k - 1)) / (2 * total)
        cover += lo <= d <= hi
    assert 268 <= cover <= 297


@pytest.mark.parametrize("d", [2, 5, 9])
def test_known_dimension(d):
    n = 3000
    est = MLE(k=20, n_bootstrap=200).fit(sphere(n, d, 25, seed=d))
    # sd from the Gamma model is d / sqrt(n (k - 1)) = 0.018 d, but neighbourhoods overlap and the sphere
    # curves at the k-th neighbour (bias of a few %); 8 % of d covers both (empirical margin)
    assert abs(est.dimension_ - d) < 0.08 * d
    assert est.ci_[0] < est.dimension_ < est.ci_[1]
    assert est.dimension_pw_.shape == (n,)
    assert np.median(est.dimension_pw_) == pytest.approx(d, rel=0.2)


def test_k_range_averages_single_k_estimates():
    X = sphere(800, 3, 10, seed=11)
    ks = range(8, 13)
    single = [MLE(k=k).fit(X) for k in ks]
    rng_est = MLE(k_min=8, k_max=12).fit(X)
    assert rng_est.dimension_ == pytest.approx(np.mean([e.dimension_ for e in single]), rel=1e-12)
    np.testing.assert_allclose(rng_est.dimension_pw_, np.mean([e.dimension_pw_ for e in single], axis=0))
    assert rng_est.result_.k == 12 and rng_est.result_.params["k_min"] == 8


def test_intervals_and_seeds():
    X = sphere(600, 4, 8, seed=12)
    a = MLE(seed=1, n_bootstrap=100).fit(X)
    b = MLE(seed=1, n_bootstrap=100).fit(X)
    c = MLE(seed=2, n_bootstrap=100).fit(X)
    assert a.ci_ == b.ci_ and a.ci_ != c.ci_
    assert a.result_.seed == 1 and a.result_.ci_method == "bootstrap"
    an = MLE(ci="analytic").fit(X)
    assert an.result_.ci_method == "analytic" and an.result_.seed is None
    assert an.dimension_ == a.dimension_
    # independent-neighbourhood interval is narrower than the bootstrap over points
    assert an.ci_[1] - an.ci_[0] < a.ci_[1] - a.ci_[0]


def test_invariances_and_torch_path():
    X = sphere(500, 3, 6, seed=13)
    ref = MLE(k=10).fit(X).dimension_
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
    perm = np.random.default_rng(1).permutation(500)
    for Y in (X @ Q, X - 7.0, 0.01 * X, X[perm]):
        assert MLE(k=10).fit(Y).dimension_ == pytest.approx(ref, rel=1e-9)
    assert MLE(k=10).fit(torch.from_numpy(X)).dimension_ == pytest.approx(ref, rel=1e-12)
    assert MLE(k=10, device="cpu").fit(X).dimension_ == pytest.approx(ref, rel=1e-12)


def test_errors():
    X = sphere(30, 2, 3, seed=14)
    with pytest.raises(NotEnoughSamplesError, match="at least 31"):
        MLE(k=30).fit(X)
    with pytest.raises(ConfigError, match="k_min and k_max"):
        MLE(k_min=5).fit(X)
    with pytest.raises(ConfigError, match="k_max"):
        MLE(k_min=6, k_max=5).fit(X)
    with pytest.raises(ConfigError, match="k"):
        MLE(k=1).fit(X)
    with pytest.raises(ConfigError, match=">= 3"):
        MLE(k=2, unbiased=True).fit(X)
    with pytest.raises(ConfigError, match="analytic"):
        MLE(k_min=3, k_max=5, ci="analytic").fit(X)
    with pytest.raises(ConfigError, match="booleans"):
        MLE(correction="yes").fit(X)
    Y = X.copy()
    Y[3] = Y[4]
    with pytest.raises(DuplicatePointsError):
        MLE(k=5).fit(Y)
    with pytest.warns(UserWarning):
        assert MLE(k=5, duplicates="dedupe").fit(Y).result_.n_duplicates_removed == 1


def test_n_bootstrap_zero_gives_the_same_point_estimate_without_an_interval():
    """``n_bootstrap=0``: the bootstrap interval is skipped (a point estimate, as scikit-dimension's MLE
    returns); the dimension and the pointwise estimates are bit for bit those of the default."""
    X = sphere(600, 3, 10, seed=5)
    full = MLE(k=10).fit(X)
    point = MLE(k=10, n_bootstrap=0).fit(X)
    assert point.dimension_ == full.dimension_
    np.testing.assert_array_equal(point.dimension_pw_, full.dimension_pw_)
    assert point.ci_ == (point.dimension_, point.dimension_)
    assert point.result_.ci_method == "none" and point.result_.seed is None
    assert full.result_.ci_method == "bootstrap" and full.ci_[0] < full.dimension_ < full.ci_[1]
    with pytest.raises(ConfigError, match="n_bootstrap"):
        MLE(k=10, n_bootstrap=-1).fit(X)
