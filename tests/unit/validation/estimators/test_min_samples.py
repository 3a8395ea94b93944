"""validation.estimators.min_samples: the spread table behind the estimators' smallest-sample thresholds."""

from __future__ import annotations

import warnings

import pytest

from gelora.errors import SmallSampleWarning
from validation.estimators.min_samples import main, spread


def test_spread_is_seeded_ordered_and_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSampleWarning)
        a = spread("twonn", 2, 12, reps=8, seed=3)
    assert a == spread("twonn", 2, 12, reps=8, seed=3)
    assert a["q025"] <= a["median"] <= a["q975"] and a["spread"] == pytest.approx(a["q975"] - a["q025"])
    assert a["spread"] > 0 and a["rel_sd"] > 0


def test_more_points_narrow_the_spread():
    # 60 samples per size: the spread of TwoNN at n = 60 is about half that at n = 10 (docs table)
    assert spread("twonn", 2, 60, reps=60)["spread"] < spread("twonn", 2, 10, reps=60)["spread"]


def test_cli_prints_a_row_per_cell(capsys):
    assert main(["--estimator", "mle", "--k", "5", "--reps", "3", "--dims", "2", "--sizes", "8", "12"]) == 0
    out = capsys.readouterr().out
    assert "mle k=5, 3 samples per row" in out and out.count("\n| 2 | ") == 2
    with pytest.raises(SystemExit):
        main(["--estimator", "twonn", "--k", "5"])
