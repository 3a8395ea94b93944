"""Estimator accuracy on manifolds of known dimension: result layout, errors recorded, peers optional."""

from __future__ import annotations

import json
import sys

import pytest

from gelora.errors import ConfigError
from validation.estimators import accuracy as EA


@pytest.fixture
def tiny(monkeypatch):
    """A two-manifold, 300-point profile so the tests take seconds."""
    monkeypatch.setitem(
        EA.PROFILES, "quick", {"n": 300, "replicates": 1, "max_manifolds": 2, "max_ambient": 12}
    )
    monkeypatch.setattr(EA, "OUR_METHODS", ("twonn", "mle"))
    monkeypatch.setattr(EA, "PEER_METHODS", ("twonn",))


def test_result_layout_and_errors_are_consistent(tiny):
    res = EA.run_estimator_accuracy("quick", seed=3, include_peers=False, progress=False)
    assert res["schema"] == EA.SCHEMA and res["seed"] == 3
    json.dumps(res, allow_nan=False)  # JSON-serialisable, no NaN
    assert len(res["manifolds"]) == 2
    keys = [e["key"] for e in res["estimators"]]
    assert keys == ["gelora/twonn", "gelora/mle", "skdim/twonn"]
    assert len(res["cells"]) == 2 * len(keys)
    for c in res["cells"]:
        if c["estimator"].startswith("gelora"):
            assert c["status"] == "ok", c
            assert c["abs_error"] == pytest.approx(abs(c["estimate"] - c["true_dim"]))
            assert c["rel_error"] == pytest.approx(c["abs_error"] / c["true_dim"])
            assert c["wall_s"] >= 0 and len(c["ci"]) == 2
        else:
            assert c["status"] == "not run" and "include_peers=False" in c["reason"]
            assert "estimate" not in c  # never a made-up number
    s = res["summary"]["gelora/twonn"]
    oks = [c for c in res["cells"] if c["estimator"] == "gelora/twonn"]
    assert s["mean_rel_error"] == pytest.approx(sum(c["rel_error"] for c in oks) / len(oks))
    assert res["summary"]["skdim/twonn"]["status"] == "not run"


def test_same_seed_same_numbers(tiny):
    a = EA.run_estimator_accuracy("quick", seed=1, include_peers=False, progress=False)
    b = EA.run_estimator_accuracy("quick", seed=1, include_peers=False, progress=False)
    assert [c.get("estimate") for c in a["cells"]] == [c.get("estimate") for c in b["cells"]]


@pytest.mark.parametrize("d", [1, 2, 4])
def test_our_twonn_cell_is_accurate_on_a_sphere(d):
    """n = 1000 points of S^d: TwoNN's relative standard error is about 1/sqrt(0.9 n) ~ 3.3%, so a 20%
    tolerance is six standard errors (false-failure rate < 1e-8 per case; a biased or broken fit fails)."""
    fitters, reason = EA._our_fitters()
    assert reason is None
    cell = EA._run_cell(fitters["twonn"], EA._inline_sphere(d, d + 3, 1000, seed=d), seed=0)
    assert cell["status"] == "ok"
    assert cell["rel_error"] < 0.20, cell


def test_missing_skdim_is_reported_not_raised(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "skdim.id", None)  # import raises ImportError
    res = EA.run_estimator_accuracy("quick", seed=0, include_peers=True, progress=False)
    peer = [c for c in res["cells"] if c["estimator"].startswith("skdim")]
    assert peer and all(
        c["status"] == "not run" and c["reason"].startswith("skdim not installed") for c in peer
    )
    assert res["peers"]["status"] == "not run"


def test_failing_fit_is_recorded_with_reason():
    def boom(X, seed):
        raise ValueError("bad input (test)")

    sample = EA._inline_sphere(2, 3, 50, 0)
    cell = EA._run_cell(boom, sample, 0)
    assert cell["status"] == "error" and "bad input (test)" in cell["reason"] and "estimate" not in cell


def test_inline_manifolds_have_the_stated_dimension():
    import numpy as np

    s = EA._inline_sphere(3, 8, 200, 0)
    assert s.X.shape == (200, 8) and np.allclose(np.linalg.norm(s.X, axis=1), 1.0)
    lin = EA._inline_linear(4, 9, 200, 0)
    assert np.linalg.matrix_rank(lin.X) == 4


def test_unknown_profile():
    with pytest.raises(ConfigError, match="profile"):
        EA.run_estimator_accuracy("huge")


def test_command_line_writes_json(tiny, tmp_path):
    out = tmp_path / "acc.json"
    assert EA.main(["--profile", "quick", "--no-peers", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["schema"] == EA.SCHEMA
