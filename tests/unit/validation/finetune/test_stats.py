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
