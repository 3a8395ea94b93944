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
