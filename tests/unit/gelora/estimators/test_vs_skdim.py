"""Agreement with scikit-dimension (skdim 0.5) when configured identically (see docs/estimators.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gelora.estimators import MLE, TwoNN

skdim = pytest.importorskip("skdim")
pytestmark = pytest.mark.peers


def cloud(n: int, D: int, seed: int) -> np.ndarray:
    """A 4-dimensional curved manifold in R^D with a little noise (no duplicates)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(n, 4))
    Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
    return Y @ rng.normal(size=(12, D)) + 1e-3 * rng.normal(size=(n, D))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim's own log(0) at F_emp = 1
# D = 10 uses skdim's k-NN path, D = 40 its pairwise-distance path (it switches at 25 features)
@pytest.mark.parametrize("D", [10, 40])
@pytest.mark.parametrize("fit", ["mle", "linear"])
@pytest.mark.parametrize("discard_fraction", [0.1, 0.0, 0.3])
def test_twonn_matches_skdim(D, fit, discard_fraction):
    X = cloud(700, D, seed=D)
    ours = TwoNN(fit=fit, discard_fraction=discard_fraction).fit(X).dimension_
    if fit == "linear" and discard_fraction == 0.0:
        # documented difference: skdim regresses on -log(1 - N/N) = inf at the largest ratio and fails;
        # we leave that one point out, which equals skdim keeping N - 1 ratios of N
        with warnings.catch_warnings(), pytest.raises(ValueError):
            warnings.simplefilter("ignore")
            skdim.id.TwoNN(method=fit, discard_fraction=0.0).fit(X)
        theirs = skdim.id.TwoNN(method=fit, discard_fraction=0.5 / len(X)).fit(X).dimension_
        assert ours == pytest.approx(theirs, rel=1e-10)
        return
    theirs = skdim.id.TwoNN(method=fit, discard_fraction=discard_fraction).fit(X).dimension_
    assert ours == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize(
    ("ours_kw", "skdim_init", "skdim_fit"),
    [
        ({"k": 20}, {}, {}),
        ({"k": 7}, {}, {"n_neighbors": 7}),
        ({"k": 20, "correction": False}, {}, {"comb": "mean"}),
        ({"k": 12, "unbiased": True}, {"unbiased": True}, {"n_neighbors": 12}),
    ],
)
def test_mle_matches_skdim(ours_kw, skdim_init, skdim_fit):
    X = cloud(600, 30, seed=1)
    ours = MLE(**ours_kw).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = skdim.id.MLE(**skdim_init).fit(X, **skdim_fit)
    assert ours.dimension_ == pytest.approx(theirs.dimension_, rel=1e-10)
    np.testing.assert_allclose(ours.dimension_pw_, theirs.dimension_pw_, rtol=1e-9)


def test_documented_difference_on_duplicates():
    # skdim silently drops points whose r1 = 0 but keeps them as neighbours; we refuse (or dedupe)
    X = cloud(300, 10, seed=2)
    X[5] = X[6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = skdim.id.TwoNN(method="mle").fit(X).dimension_
    assert np.isfinite(theirs)
    with pytest.warns(UserWarning):
        ours = TwoNN(duplicates="dedupe").fit(X)
    assert ours.result_.n_duplicates_removed == 1
