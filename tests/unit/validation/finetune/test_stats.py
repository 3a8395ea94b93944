import math

import pytest

from validation.finetune.stats import paired_difference, t_interval, verdict


def test_t_interval_uses_the_student_quantile_and_needs_two_values():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    # sd = 1, n = 3: half-width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.732051
    assert mean == 2.0
    assert math.isclose(hi - mean, 4.302652729911275 / math.sqrt(3), rel_tol=1e-9)
    assert math.isclose(mean - lo, hi - mean, rel_tol=1e-12)
    assert t_interval([5.0]) == (5.0, None, None)
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=1.5)


def test_verdict_reads_the_interval():
    assert verdict(0.1, 0.2) == "better"
    assert verdict(-0.2, -0.1) == "worse"
    assert verdict(-0.1, 0.1) == "tie"
    assert verdict(None, None) == "undetermined"


def test_paired_difference_pairs_common_seeds_only():
    a = {0: 0.80, 1: 0.82, 2: 0.81, 7: 0.99}
    b = {0: 0.70, 1: 0.73, 2: 0.71, 5: 0.10}
    out = paired_difference(a, b)
    assert out is not None
    assert out["seeds"] == [0, 1, 2] and out["n"] == 3
    assert math.isclose(out["diff"], (0.10 + 0.09 + 0.10) / 3, rel_tol=1e-12)
    assert out["verdict"] == "better" and out["ci"][0] > 0
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 1.0}, {0: 0.5})
    assert one["ci"] is None and one["verdict"] == "undetermined"


def test_t_test_p_matches_the_interval_and_scipy():
    from scipy.stats import ttest_1samp

    from validation.finetune.stats import t_test_p

    for values in ([0.01, 0.02, -0.005, 0.015, 0.012], [0.3, -0.2, 0.1], [-0.01, -0.012, -0.009]):
        p = t_test_p(values)
        assert math.isclose(p, float(ttest_1samp(values, 0.0).pvalue), rel_tol=1e-9)
        _, lo, hi = t_interval(values)
        assert (p < 0.05) == (lo > 0 or hi < 0)  # the 95 % interval excludes 0 exactly when p < 0.05
    assert t_test_p([0.5]) is None
    assert t_test_p([0.2, 0.2]) == 0.0 and t_test_p([0.0, 0.0]) == 1.0
    assert paired_difference({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.0})["p"] is not None


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis():
    from validation.finetune.stats import holm

    # m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values
    assert holm([0.010, 0.040, 0.015, 0.030]) == [True, False, True, False]
    # 0.02 > 0.0167 stops the procedure although 0.03 <= 0.05 would pass its own threshold
    assert holm([0.001, 0.02, 0.03, 0.6]) == [True, False, False, False]
    assert holm([]) == []
    assert holm([0.04]) == [True] and holm([0.06]) == [False]
    with pytest.raises(ValueError, match="alpha"):
        holm([0.1], alpha=0.0)
    with pytest.raises(ValueError, match="p-values"):
        holm([1.2])
