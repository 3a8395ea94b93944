"""Unit tests of ``validation.theory`` (the property tests themselves live in ``tests/theory``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gelora.errors import ConfigError, InvalidInputError
from gelora.estimators.twonn import twonn_from_ratios
from validation import theory as T
from validation.theory.calibration import _inverse_gamma_quantiles


def test_inverse_gamma_quantiles_match_the_exact_twonn_law():
    """For i.i.d. Pareto ratios the censored TwoNN MLE exceeds the alpha quantile with probability alpha.

    4000 replicates at alpha = 0.05: the exceedance count is Binomial(4000, 0.05) (sd 13.8); the band
    +-5 sd fails with probability < 1e-6.
    """
    rng = np.random.default_rng(0)
    d, n, alpha, reps = 3.0, 200, 0.05, 4000
    m = int(0.9 * n)
    lo, hi = _inverse_gamma_quantiles(d, m, alpha)
    est = np.array([twonn_from_ratios(rng.pareto(d, n) + 1.0, discard_fraction=0.1)[0] for _ in range(reps)])
    sd = np.sqrt(reps * alpha * (1 - alpha))
    assert abs((est > hi).sum() - reps * alpha) < 5 * sd
    assert abs((est < lo).sum() - reps * alpha) < 5 * sd


def test_estimate_limits_shrink_with_n_and_bracket_d():
    for method in T.METHODS:
        small = T.estimate_limits(method, 500, 3)
        large = T.estimate_limits(method, 2000, 3)
        assert small.low <= 3 <= small.high
        assert large.high - large.low <= small.high - small.low
        assert small.origin


def test_estimate_limits_reject_unknown_method_and_uncalibrated_d():
    with pytest.raises(ConfigError, match="unknown method|no calibration"):
        T.estimate_limits("pca", 500, 2)
    with pytest.raises(ConfigError, match="outside the calibrated range"):
        T.estimate_limits("twonn", 500, 40)


def test_calibration_file_records_its_command_and_grid():
    cal = T.load_calibration()
    assert cal["command"].startswith("python -m validation.theory --calibrate")
    assert set(cal["methods"]) == set(T.METHODS)
    assert set(cal["grid"]["families"]) == set(T.NULL_FAMILIES)


def test_numerical_rank_counts_exact_rank_and_rejects_bad_shapes():
    A = np.random.default_rng(1).normal(size=(7, 3)) @ np.random.default_rng(2).normal(size=(3, 9))
    assert T.numerical_rank(A) == 3
    assert T.numerical_rank(np.zeros((3, 3))) == 0
    with pytest.raises(InvalidInputError):
        T.numerical_rank(np.zeros(3))
    with pytest.raises(InvalidInputError):
        T.jacobian_rank(np.zeros((3, 3)))


def test_planted_network_jacobian_matches_finite_differences_and_truth():
    net = T.PlantedUpdateNetwork(d_token=2, d_context=3, k=2, block=1, n_blocks=3, width=10, seed=3)
    U, Z = net.sample_inputs(30, seed=4)
    states, jacs = net.forward_all(U, Z, with_jacobian=True)
    assert jacs is not None and len(states) == 4
    x = np.concatenate([U[:1], Z[:1]], axis=1)
    eps = 1e-6
    fd = np.stack(
        [
            (
                net.forward_all((x + eps * e)[:, :2], (x + eps * e)[:, 2:])[0][-1]
                - net.forward_all((x - eps * e)[:, :2], (x - eps * e)[:, 2:])[0][-1]
            )[0]
            / (2 * eps)
            for e in np.eye(5)
        ],
        axis=1,
    )
    np.testing.assert_allclose(fd, jacs[-1][0], atol=1e-7)
    assert net.true_dims == [2, 2, 4, 4]
    assert [int(T.jacobian_rank(J).max()) for J in jacs] == net.true_dims
    assert np.linalg.matrix_rank(net.update) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_token": 0, "d_context": 1, "k": 1}, "d_token"),
        ({"d_token": 2, "d_context": 1, "k": -1}, "k must be"),
        ({"d_token": 2, "d_context": 1, "k": 1, "block": 3, "n_blocks": 3}, "block"),
        ({"d_token": 8, "d_context": 1, "k": 3, "width": 10}, "width"),
    ],
)
def test_planted_network_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        T.PlantedUpdateNetwork(**kwargs)


def test_tangent_bases_are_orthonormal_and_tangent_on_the_sphere():
    from synthetic.manifolds import hypersphere

    X = hypersphere(200, 3, embed_dim=6, seed=0).X
    B = T.tangent_bases(X, "hypersphere", 3, np.arange(5))
    for i in range(5):
        np.testing.assert_allclose(B[i].T @ B[i], np.eye(3), atol=1e-12)
        np.testing.assert_allclose(X[i] @ B[i], 0.0, atol=1e-12)
    with pytest.raises(ConfigError):
        T.tangent_bases(X, "helix", 1, np.arange(2))


def test_run_theory_checks_smoke_profile_writes_the_summary(tmp_path):
    out = tmp_path / "theory.json"
    rc = T.main(["--profile", "smoke", "--out", str(out), "--cache-dir", str(tmp_path / "danco")])
    summary = json.loads(out.read_text())
    assert rc == (0 if summary["all_pass"] else 1)
    names = [p["property"] for p in summary["properties"]]
    assert names == [
        "exact_layer",
        "estimated_layer",
        "composition_toy_transformer",
        "composition_planted_update",
        "invariances",
        "duplicates",
    ]
    for p in summary["properties"]:
        assert {"examples", "checks", "failed", "pass", "false_failure_rate"} <= set(p)
    assert {c["case"] for c in summary["counterexamples"]} >= {"ceil_rounding", "helix_n_300"}
    assert summary["profile"] == "smoke" and summary["seed"] == 0


def test_run_theory_checks_rejects_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile"):
        T.run_theory_checks("huge")
