"""validation.estimators.bench_ratio: pairing of benchmark groups and the Markdown table."""

from __future__ import annotations

import json

import pytest

from gelora.errors import ResultFileError
from validation.estimators.bench_ratio import main, markdown_table, ratio_rows


def _bench(group, impl, t, n=1000, D=64, est="mle"):
    info = {"impl": impl, "estimator": est, "n": n, "D": D}
    return {"group": group, "extra_info": info, "stats": {"min": t, "mean": 2 * t, "median": t}}


def test_pairs_groups_and_computes_speedup(tmp_path, capsys):
    doc = {
        "benchmarks": [
            _bench("mle n=1000 D=64", "gelora", 0.5),
            _bench("mle n=1000 D=64", "skdim", 2.0),
            _bench("knn n=4000 D=768", "skdim", 1.0, 4000, 768, "knn"),  # incomplete: left out
        ]
    }
    rows = ratio_rows(doc)
    assert len(rows) == 1 and rows[0]["speedup"] == pytest.approx(4.0)
    assert "| mle | 1000 | 64 | 0.500 | 2.000 | 4.00x |" in markdown_table(rows)
    f = tmp_path / "b.json"
    f.write_text(json.dumps(doc))
    assert main([str(f), "--stat", "mean"]) == 0
    assert "4.00x" in capsys.readouterr().out
    with pytest.raises(ResultFileError):
        ratio_rows({"nothing": []})


def test_point_estimate_member_gets_its_own_row_against_the_same_peers():
    doc = {
        "benchmarks": [
            _bench("mle n=1000 D=64", "gelora", 0.5),
            _bench("mle n=1000 D=64", "gelora_point", 0.25),
            _bench("mle n=1000 D=64", "skdim", 2.0),
            _bench("mle n=1000 D=64", "dadapy", 1.0),
        ]
    }
    rows = ratio_rows(doc)
    assert [r["estimator"] for r in rows] == ["mle", "mle, point estimate"]
    assert rows[0]["speedup"] == pytest.approx(4.0) and rows[1]["speedup"] == pytest.approx(8.0)
    assert rows[1]["speedup_dadapy"] == pytest.approx(4.0)
    assert "| mle, point estimate | 1000 | 64 | 0.250 | 2.000 | 8.00x | 1.000 | 4.00x |" in markdown_table(
        rows
    )
