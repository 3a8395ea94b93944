"""CPU, small-size version of the estimator cross-comparison (issue 10) on the real bundled encoder."""

import math

import pytest

from gelora.errors import ConfigError
from validation.estimators.crosscompare import agreement, run_crosscompare, synthetic_comparison


def _cell(est, dims, half, ranks):
    return {
        "estimator": est,
        "layers": [{"dimension": d, "ci": [d - half, d + half]} for d in dims],
        "ranks": ranks,
    }


def test_agreement_by_hand():
    a = _cell("twonn", [10.0, 12.0, 11.0, 15.0], 0.3, [3, 1, 5])
    b = _cell("mle", [11.0, 12.5, 11.5, 16.0], 0.4, [2, 1, 5])
    g = agreement(a, b)
    assert g["pair"] == ["twonn", "mle"]
    assert g["diff"] == pytest.approx([1.0, 0.5, 0.5, 1.0])
    assert g["mean_abs_diff"] == pytest.approx(0.75)
    # half-widths combine in quadrature: sqrt(0.3^2 + 0.4^2) = 0.5
    assert g["diff_ci"][0] == pytest.approx([0.5, 1.5])
    # differences 1.0 exclude 0 (CI [0.5, 1.5]); 0.5 do not ([0, 1] touches 0 -> not strictly)
    assert g["layers_differing"] == 2
    assert g["rank_changes"] == 1 and g["max_rank_change"] == 1
    assert g["spearman"] == pytest.approx(1.0)


def test_agreement_constant_profile_has_no_correlation():
    a = _cell("twonn", [5.0, 5.0, 5.0], 0.1, [1, 1])
    b = _cell("mle", [4.0, 6.0, 7.0], 0.1, [3, 2])
    assert agreement(a, b)["spearman"] is None


def test_synthetic_comparison_truth_columns():
    rows = synthetic_comparison([400], 20, estimators=("twonn", "mle"), dims=(3,), seed=1)
    assert {r["manifold"] for r in rows} and len(rows) == 4
    for r in rows:
        assert r["true_dim"] == 3 and r["ambient_dim"] == 20 and r["n"] == 400
        assert r["abs_error"] == pytest.approx(abs(r["dimension"] - 3))
        # n=400, d=3: TwoNN/MLE are within 1.5 of the truth far beyond 5 sd (sd ~ d/sqrt(n) = 0.15)
        assert r["abs_error"] < 1.5


@pytest.fixture(scope="module")
def texts():
    from validation.data.glue import load_glue

    return load_glue("stsb", "train").take(80, seed=0).joined_texts()


def test_run_crosscompare_bundled_model(texts, tmp_path):
    out = tmp_path / "cc.json"
    res = run_crosscompare(
        texts,
        estimators=("twonn", "mle"),
        sizes=(300, 600, 5000),
        token_samplings=("all", "mean"),
        seeds=(0,),
        synthetic=False,
        out=out,
        progress=False,
    )
    assert out.is_file()
    p = res["params"]
    assert p["n_hidden_states"] == 7 and p["hidden_size"] == 384
    # 'all' has > 600 tokens from 80 STS-B pairs but not 5000; 'mean' has only 80 rows
    got = {(c["token_sampling"], c["n"]) for c in res["cells"]}
    assert got == {("all", 300), ("all", 600)}
    reasons = {(s["token_sampling"], s["n"]) for s in res["skipped"]}
    assert ("all", 5000) in reasons and ("mean", 300) in reasons
    for c in res["cells"]:
        assert len(c["layers"]) == 7 and len(c["ranks"]) == 6
        assert all(
            math.isfinite(x["dimension"]) and x["ci"][0] <= x["dimension"] <= x["ci"][1] for x in c["layers"]
        )
        assert all(r >= 1 for r in c["ranks"])
    assert len(res["agreement"]) == 2 and len(res["summary"]) == 2
    for g in res["agreement"]:
        assert g["pair"] == ["twonn", "mle"]
        assert g["spearman"] is None or -1 <= g["spearman"] <= 1


def test_run_crosscompare_rejects_bad_config(texts):
    with pytest.raises(ConfigError, match="unknown estimators"):
        run_crosscompare(texts, estimators=("pca",), progress=False)
    with pytest.raises(ConfigError, match="sizes"):
        run_crosscompare(texts, sizes=(10,), progress=False)


def test_agreement_skips_flagged_layers():
    a = _cell("twonn", [10.0, 12.0, 11.0], 0.3, [3, 1])
    b = _cell("mle", [11.0, 12.5, 11.5], 0.4, [2, 1])
    a["layers"][0] = {"dimension": None, "ci": None, "degenerate": "constant"}
    a["ranks"] = [None, 1]
    g = agreement(a, b)
    assert g["layers_compared"] == [1, 2]
    assert g["diff"] == pytest.approx([0.5, 0.5])
    assert g["rank_changes"] == 0


def test_first_token_embedding_layer_is_flagged_not_fatal(texts):
    # position 0 is [CLS] in every text: its embedding output is one constant vector
    res = run_crosscompare(
        texts, estimators=("twonn",), sizes=(60,), token_samplings=("first",), synthetic=False, progress=False
    )
    (cell,) = res["cells"]
    assert cell["layers"][0]["dimension"] is None and "constant" in cell["layers"][0]["degenerate"]
    assert cell["ranks"][0] is None and all(r is not None for r in cell["ranks"][1:])


def test_render_and_plot_profiles(tmp_path):
    from validation.estimators.crosscompare import plot_profiles, render_markdown

    cells = [
        {**_cell(e, [3.0, 5.0 + i, 6.0], 0.2, [3, 2]), "token_sampling": "all", "n": 500, "seed": 0}
        for i, e in enumerate(("twonn", "mle"))
    ]
    res = {
        "params": {
            "model": "m",
            "data": "d",
            "device": "cpu",
            "seeds": [0],
            "n_hidden_states": 3,
            "hidden_size": 8,
        },
        "cells": cells,
        "summary": [
            {
                "token_sampling": "all",
                "n": 500,
                "pair": ["twonn", "mle"],
                "spearman_mean": 1.0,
                "mean_abs_diff": 0.33,
                "rank_changes_mean": 0.0,
                "max_rank_change": 0,
            }
        ],
        "synthetic": [],
        "skipped": [],
    }
    md = render_markdown(res)
    assert "| all | 500 | twonn vs mle | 1.00 | 0.33 | 0.0 | 0 |" in md
    assert plot_profiles(res, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError):
        plot_profiles(res, tmp_path / "q.png", token_sampling="mean")
