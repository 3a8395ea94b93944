"""Each estimator's smallest supported sample: a SmallSampleWarning below it, none at it, an error below
the hard minimum; the thresholds follow from the variances stated in docs/estimators.md."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from gelora.errors import GeLoRAWarning, NotEnoughSamplesError, SmallSampleWarning
from gelora.estimators import (
    MLE,
    DANCo,
    TwoNN,
    danco_min_samples,
    estimate_id,
    mle_min_samples,
    twonn_min_samples,
    twonn_scale_analysis,
)
from gelora.estimators._checks import RELIABLE_INFORMATION, n_for_information
from gelora.estimators.twonn import MIN_KEPT_RATIOS, _n_keep


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8))


def _fit_silently(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSampleWarning)
        return est.fit(X)


CASES = [
    (lambda: TwoNN(), twonn_min_samples(0.1), "TwoNN", 3),
    (lambda: TwoNN(discard_fraction=0.3, fit="linear", n_bootstrap=20), twonn_min_samples(0.3), "TwoNN", 3),
    (lambda: MLE(k=2, n_bootstrap=20), mle_min_samples(2, 2), "MLE", 3),
    (lambda: MLE(k_min=3, k_max=4, n_bootstrap=20), mle_min_samples(3, 4), "MLE", 5),
    (lambda: DANCo(k=5, d_max=8, n_bootstrap=20), danco_min_samples(5), "DANCo", 7),
]


@pytest.mark.parametrize(("make", "n_min", "name", "hard_min"), CASES)
def test_warning_below_the_threshold_none_at_it_error_below_the_hard_minimum(make, n_min, name, hard_min):
    assert hard_min < n_min
    with pytest.warns(SmallSampleWarning, match=rf"{name} on {n_min - 1} points: fewer than the {n_min}"):
        make().fit(_points(n_min - 1))
    _fit_silently(make(), _points(n_min))  # no warning at the threshold
    with pytest.warns(SmallSampleWarning):
        make().fit(_points(hard_min))  # the hard minimum itself still fits, with the warning
    with pytest.raises(NotEnoughSamplesError):
        make().fit(_points(hard_min - 1))


def test_default_thresholds():
    assert twonn_min_samples() == 30  # 27 kept ratios at discard_fraction 0.1
    assert mle_min_samples(20, 20) == 21  # the variance bound is below the hard minimum k + 1
    assert mle_min_samples(2, 2) == 30 and mle_min_samples(3, 3) == 15 and mle_min_samples(6, 6) == 7
    assert danco_min_samples(10) == 14 and danco_min_samples(30) == 32
    _fit_silently(MLE(n_bootstrap=20), _points(21))  # k = 20: never a warning above the error


@pytest.mark.parametrize("f", [0.0, 0.05, 0.1, 0.2, 0.5, 0.9])
def test_twonn_threshold_is_the_least_n_keeping_enough_ratios(f):
    n = twonn_min_samples(f)
    assert _n_keep(n, f) >= MIN_KEPT_RATIOS and (n == 3 or _n_keep(n - 1, f) < MIN_KEPT_RATIOS)


def test_the_stated_derivation():
    # 95 % interval no wider than the estimate: n * information >= (2 * 1.96)^2 = 15.37
    assert RELIABLE_INFORMATION == pytest.approx(15.366, abs=1e-3)
    assert n_for_information(1.0) == 16 and n_for_information(19.0) == 1
    assert n_for_information(4.0, 30.0) == 8 and n_for_information(2.0, 30.0) == 15
    # TwoNN's exact chi-square interval (independent ratios) is narrower than d_hat from 18 kept ratios;
    # the measured threshold (shared neighbours widen the spread) is larger
    width = [(stats.chi2.ppf(0.975, 2 * m) - stats.chi2.ppf(0.025, 2 * m)) / (2 * (m - 1)) for m in (17, 18)]
    assert width[0] > 1.0 >= width[1] and MIN_KEPT_RATIOS >= 18


def test_estimate_id_and_the_warning_hierarchy():
    with pytest.warns(SmallSampleWarning) as rec:
        estimate_id(_points(10), method="twonn")
    assert issubclass(rec[0].category, GeLoRAWarning) and issubclass(rec[0].category, UserWarning)
    assert "docs/estimators.md" in str(rec[0].message)


def test_scale_analysis_keeps_its_small_subsets_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSampleWarning)
        pts = twonn_scale_analysis(_points(200), n_list=[200, 20])
    assert [p.n for p in pts] == [200, 20]
