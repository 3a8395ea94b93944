"""``gelora estimate``: file formats, options, JSON output and clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gelora.cli import main
from gelora.commands.estimate import load_points
from gelora.errors import InvalidInputError


@pytest.fixture()
def points() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(size=(300, 2)) @ rng.normal(size=(2, 5))


def test_npy_twonn_prints_estimate_and_writes_json(tmp_path, points, capsys):
    f = tmp_path / "x.npy"
    np.save(f, points)
    out = tmp_path / "r.json"
    assert main(["estimate", str(f), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("twonn: intrinsic dimension") and "95% CI" in text and "n=300, D=5" in text
    r = json.loads(out.read_text())
    assert r["method"] == "twonn" and abs(r["dimension"] - 2) < 0.5 and len(r["ci"]) == 2


def test_csv_with_header_and_mle_options(tmp_path, points, capsys):
    f = tmp_path / "x.csv"
    np.savetxt(f, points, delimiter=",", header=",".join(f"c{i}" for i in range(5)), comments="")
    assert main(["estimate", str(f), "--method", "mle", "--k", "8", "--param", "ci=analytic"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("mle:") and "k=8" in text and "analytic" in text


def test_npz_key_and_errors(tmp_path, points, capsys):
    f = tmp_path / "x.npz"
    np.savez(f, a=points, b=points[:10])
    with pytest.raises(InvalidInputError, match="--key"):
        load_points(f)
    np.testing.assert_array_equal(load_points(f, "a"), points)
    assert main(["estimate", str(f), "--key", "a", "--duplicates", "dedupe"]) == 0
    assert main(["estimate", str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["estimate", str(f), "--key", "a", "--k", "5"]) == 2  # --k does not apply to TwoNN
    bad = tmp_path / "x.txt"
    bad.write_text("1 2\n")
    assert main(["estimate", str(bad)]) == 2


def test_duplicate_rows_fail_cleanly(tmp_path, points, capsys):
    points[3] = points[4]
    f = tmp_path / "d.npy"
    np.save(f, points)
    assert main(["estimate", str(f)]) == 2
    assert "duplicate" in capsys.readouterr().err


def test_three_points_print_the_small_sample_warning(tmp_path, capsys):
    f = tmp_path / "three.npy"
    np.save(f, np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    assert main(["estimate", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("twonn: intrinsic dimension") and "n=3" in lines[0]
    assert lines[1].startswith("warning: TwoNN on 3 points: fewer than the 30 it needs")


def test_no_warning_line_on_enough_points(tmp_path, points, capsys):
    f = tmp_path / "x.npy"
    np.save(f, points)
    assert main(["estimate", str(f), "--method", "danco", "--k", "5", "--param", "d_max=6"]) == 0
    assert "warning" not in capsys.readouterr().out
