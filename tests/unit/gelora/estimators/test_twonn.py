"""TwoNN: exactness on the Pareto model, known dimensions, intervals, invariances, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from gelora.errors import ConfigError, DegenerateDataError, DuplicatePointsError
from gelora.estimators import TwoNN, twonn_scale_analysis
from gelora.estimators.twonn import twonn_from_ratios


def sphere(n: int, d: int, ambient: int, seed: int) -> np.ndarray:
    """Uniform sample of the unit d-sphere (intrinsic dimension d, no boundary), randomly rotated into R^ambient."""
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(n, d + 1))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.normal(size=(ambient, d + 1)))
    return Y @ Q.T


def linear_subspace(n: int, d: int, ambient: int, seed: int) -> np.ndarray:
    """Uniform sample of the unit cube [0, 1]^d placed on a random d-dim subspace of R^ambient."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    return rng.uniform(size=(n, d)) @ Q.T


def random_rotation(D: int, seed: int) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(D, D)))
    return Q


def test_censored_mle_is_unbiased_and_its_interval_covers_on_exact_pareto_ratios():
    # log mu ~ Exp(d) exactly; with type-II censoring 2 d T ~ chi2(2 n_keep), so (n_keep - 1) / T is
    # unbiased and the chi-square interval covers d with probability 0.95. Over R = 400 replicates the
    # coverage count is Binomial(400, 0.95): sd 4.4, so [360, 396] (+-4.6 sd) fails with prob < 1e-5.
    rng = np.random.default_rng(0)
    d, n, R = 4.0, 200, 400
    est, cover = [], 0
    for _ in range(R):
        mu = np.exp(rng.exponential(1 / d, size=n))
        dim, total, n_keep = twonn_from_ratios(mu, discard_fraction=0.1)
        lo = stats.chi2.ppf(0.025, 2 * n_keep) / (2 * total)
        hi = stats.chi2.ppf(0.975, 2 * n_keep) / (2 * total)
        cover += lo <= d <= hi
        est.append(dim)
    assert 360 <= cover <= 396
    # mean of R unbiased estimates: sd = d / sqrt(n_keep - 2) / sqrt(R) = 0.0141; 5 sd -> FFR < 1e-6
    assert abs(np.mean(est) - d) < 5 * d / np.sqrt(0.9 * n - 2) / np.sqrt(R)


def test_linear_fit_recovers_the_exponent_of_pareto_ratios():
    mu = np.exp(np.random.default_rng(1).exponential(1 / 3.0, size=20000))
    d, _, _ = twonn_from_ratios(mu, fit="linear")
    # the regression's sd is about 1.3 d / sqrt(n) = 0.03 (simulated); 0.15 is 5 sd
    assert abs(d - 3.0) < 0.15


@pytest.mark.parametrize(("d", "data"), [(2, "subspace"), (5, "subspace"), (3, "sphere"), (8, "sphere")])
def test_known_dimension(d, data):
    n = 4000
    X = linear_subspace(n, d, 30, seed=d) if data == "subspace" else sphere(n, d, 30, seed=d)
    est = TwoNN().fit(X)
    # sd of the MLE is d / sqrt(n_keep) (Gamma); neighbour dependence and boundary/curvature bias add a
    # little, so allow 5 sd (Gaussian false-failure rate 6e-7 for the sampling part)
    assert abs(est.dimension_ - d) < 5 * d / np.sqrt(0.9 * n)
    lo, hi = est.ci_
    assert lo < est.dimension_ < hi
    # interval width matches 2 * 1.96 * d_hat / sqrt(n_keep) to first order
    assert hi - lo == pytest.approx(2 * 1.96 * est.dimension_ / np.sqrt(0.9 * n), rel=0.05)


def test_result_records_everything():
    X = sphere(500, 2, 5, seed=0)
    r = TwoNN(fit="linear", seed=3, n_bootstrap=50).fit(X).result_
    assert r.method == "twonn" and r.k == 2 and r.n_samples == 500 and r.n_features == 5
    assert r.ci_method == "bootstrap" and r.seed == 3
    assert r.params["fit"] == "linear" and r.params["discard_fraction"] == 0.1
    json.dumps(r.to_dict())
    r2 = TwoNN().fit(X).result_
    assert r2.ci_method == "analytic" and r2.seed is None


def test_bootstrap_is_seeded():
    X = sphere(400, 3, 6, seed=1)
    a = TwoNN(fit="linear", seed=5, n_bootstrap=50).fit(X).ci_
    b = TwoNN(fit="linear", seed=5, n_bootstrap=50).fit(X).ci_
    c = TwoNN(fit="linear", seed=6, n_bootstrap=50).fit(X).ci_
    assert a == b and a != c


def test_invariances():
    X = sphere(600, 3, 8, seed=2)
    ref = TwoNN().fit(X).dimension_
    rng = np.random.default_rng(0)
    variants = {
        "rotation": X @ random_rotation(8, seed=3),
        "translation": X + 100.0,
        "scaling": 37.5 * X,
        "permutation": X[rng.permutation(len(X))],
    }
    for name, Y in variants.items():
        assert TwoNN().fit(Y).dimension_ == pytest.approx(ref, rel=1e-9), name


def test_torch_input_equals_numpy_input():
    X = sphere(300, 2, 4, seed=4)
    a = TwoNN().fit(X).dimension_
    b = TwoNN().fit(torch.from_numpy(X)).dimension_
    c = TwoNN(device="cpu").fit(X).dimension_
    assert a == pytest.approx(b, rel=1e-12) and a == pytest.approx(c, rel=1e-12)


def test_duplicates():
    X = sphere(200, 2, 3, seed=5)
    X[10] = X[20]
    with pytest.raises(DuplicatePointsError, match="2 of 200"):
        TwoNN().fit(X)
    with pytest.warns(UserWarning, match="removed 1"):
        est = TwoNN(duplicates="dedupe").fit(X)
    assert est.result_.n_duplicates_removed == 1 and est.result_.n_samples == 199
    assert np.isfinite(est.dimension_)


def test_parameter_errors_are_raised_at_fit():
    X = sphere(50, 2, 3, seed=6)
    est = TwoNN(discard_fraction=1.0)  # constructing never fails (scikit-learn convention)
    with pytest.raises(ConfigError, match="discard_fraction"):
        est.fit(X)
    for bad in ({"fit": "ols"}, {"metric": "l1"}, {"duplicates": "ignore"}, {"ci_level": 1.5}, {"seed": -2}):
        with pytest.raises(ConfigError):
            TwoNN(**bad).fit(X)
    with pytest.raises(ConfigError, match="keeps 1 of 3"):
        TwoNN(discard_fraction=0.5).fit(X[:3])


def test_equidistant_neighbours_are_degenerate():
    # a regular simplex: every point's two nearest neighbours are at the same distance, mu = 1
    with pytest.raises(DegenerateDataError, match="equidistant"):
        TwoNN(discard_fraction=0.0).fit(np.eye(6))


def test_sklearn_style_params():
    est = TwoNN(fit="linear")
    assert est.get_params()["fit"] == "linear" and callable(est.fit)
    est.set_params(fit="mle", discard_fraction=0.2)
    assert est.get_params()["fit"] == "mle" and est.discard_fraction == 0.2
    assert "fit='mle'" in repr(est)
    with pytest.raises(ConfigError, match="no parameter"):
        est.set_params(k=3)


def test_scale_analysis_by_decimation():
    X = sphere(2000, 2, 4, seed=7)
    out = twonn_scale_analysis(X, seed=1)
    sizes = [p.n for p in out]
    assert sizes[0] == 2000 and sizes == sorted(sizes, reverse=True) and sizes[-1] >= 20
    assert [p.n_subsets for p in out[:3]] == [1, 2, 4]
    for p in out[:4]:  # plateau at the true dimension for the larger subsets
        assert p.ci[0] < p.dimension < p.ci[1]
        assert abs(p.dimension - 2) < 0.4
    again = twonn_scale_analysis(X, n_list=[1000, 500], seed=1)
    assert [p.n for p in again] == [1000, 500] and again[0] == out[1]
    with pytest.raises(ConfigError):
        twonn_scale_analysis(X, fractions=[0.5], n_list=[10])


@pytest.mark.parametrize(
    ("N", "n_keep", "n_bootstrap", "seed"),
    # the last two: the largest N of the 16-bit radix sort of the ranks, the smallest of the counting path
    [(50, 45, 200, 0), (1000, 900, 77, 3), (3, 2, 65, 1), (2**15 - 1, 29000, 3, 4), (2**15, 29000, 3, 4)],
)
def test_linear_bootstrap_replicates_are_the_sorted_resamples(N, n_keep, n_bootstrap, seed):
    # the replicates built from the multiplicities of the drawn ranks must be, bit for bit, the slopes of
    # the seeded resamples of bootstrap_statistic sorted one by one: tied ratios included (a third of
    # the values repeated), a chunk count that is not a multiple of 64, the smallest sample
    from gelora.estimators._ci import bootstrap_statistic
    from gelora.estimators.twonn import _linear_bootstrap, _linear_slope

    rng = np.random.default_rng(N)
    log_mu = rng.exponential(size=N)
    log_mu[: N // 3] = log_mu[N // 3 : 2 * (N // 3)]  # exact ties
    ref = bootstrap_statistic(
        lambda w: np.array(
            [_linear_slope(np.sort(np.repeat(log_mu, row.astype(np.int64))), n_keep) for row in w]
        ),
        N,
        n_bootstrap,
        seed,
    )
    got = _linear_bootstrap(log_mu, n_keep, n_bootstrap, seed)
    assert got.shape == (n_bootstrap,)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("workers", ["1", "2", "3"])
def test_bootstraps_on_threads_equal_the_serial_ones(monkeypatch, workers):
    # pipelined chunks (processed on the k-NN threads while the next is drawn) must give the serial
    # replicates bit for bit: a weighted statistic with a BLAS product, and TwoNN's linear fit
    from gelora.estimators._ci import _counts, bootstrap_draws, bootstrap_weights, pipelined
    from gelora.estimators.twonn import _linear_bootstrap

    rng = np.random.default_rng(4)
    inv = rng.exponential(size=(700, 3))
    log_mu = rng.exponential(size=700)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ref_lin = _linear_bootstrap(log_mu, 630, 150, 9)
    monkeypatch.setenv("OMP_NUM_THREADS", workers)

    def stat(w):
        return np.mean(700 / (w @ inv), axis=1)

    serial = np.concatenate([stat(w) for w in bootstrap_weights(700, 150, np.random.default_rng(9))])
    threaded = pipelined(bootstrap_draws(700, 150, np.random.default_rng(9)), lambda d: stat(_counts(d, 700)))
    np.testing.assert_array_equal(threaded, serial)
    np.testing.assert_array_equal(_linear_bootstrap(log_mu, 630, 150, 9), ref_lin)


def test_n_bootstrap_zero_gives_the_same_point_estimate_without_an_interval():
    """``n_bootstrap=0`` (the linear fit's point estimate, what the peers return): the same dimension bit for
    bit, ``ci == (d, d)``, method "none", no seed; the analytic ``"mle"`` interval ignores it."""
    X = sphere(800, 4, 12, seed=3)
    full = TwoNN(fit="linear").fit(X)
    point = TwoNN(fit="linear", n_bootstrap=0).fit(X)
    assert point.dimension_ == full.dimension_
    assert point.ci_ == (point.dimension_, point.dimension_) and point.result_.ci_width == 0.0
    assert point.result_.ci_method == "none" and point.result_.seed is None
    assert full.result_.ci_method == "bootstrap" and full.ci_[0] < full.dimension_ < full.ci_[1]
    mle = TwoNN(n_bootstrap=0).fit(X)
    assert mle.result_.ci_method == "analytic" and mle.ci_ == TwoNN().fit(X).ci_
    with pytest.raises(ConfigError, match="n_bootstrap"):
        TwoNN(fit="linear", n_bootstrap=-1).fit(X)
