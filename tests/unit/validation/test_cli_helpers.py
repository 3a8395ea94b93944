"""validation._cli: the shared --out/--render/--plot options of the validation scripts."""

from __future__ import annotations

import argparse
import json


def test_render_existing_prints_and_plots(tmp_path, capsys):
    from validation._cli import add_output_args, render_existing

    p = argparse.ArgumentParser()
    add_output_args(p, "tables", "plot")
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"x": 1}))
    plotted = []
    a = p.parse_args(["--render", str(f), "--plot", str(tmp_path / "p.png")])
    assert render_existing(a, lambda r: f"x={r['x']}\n", lambda r, path: plotted.append(path))
    assert capsys.readouterr().out == "x=1\n" and plotted == [str(tmp_path / "p.png")]
    assert not render_existing(p.parse_args(["--out", "o.json"]), lambda r: "", lambda r, path: None)


def test_positive_number_parses_or_names_the_bad_value() -> None:
    import pytest

    from gelora.errors import ConfigError
    from validation._cli import positive_number, positive_numbers

    assert positive_number(" 2.5 ", "X") == 2.5 and positive_number("1e-3", "X") == 1e-3
    assert positive_numbers("1,2", "--grid") == (1.0, 2.0)
    for bad, expected in {"x": "a number", "": "a number", "0": "a finite number > 0"}.items():
        with pytest.raises(ConfigError) as err:
            positive_number(bad, "X")
        assert str(err.value) == f"X must be {expected}, got {bad!r}"
    for bad in ("-1", "nan", "inf", "-inf"):
        with pytest.raises(ConfigError, match="X must be a finite number > 0"):
            positive_number(bad, "X")
    with pytest.raises(ConfigError, match=r"^F must be a number, got 'a=b'$"):
        positive_number("b", "F", within="a=b")
