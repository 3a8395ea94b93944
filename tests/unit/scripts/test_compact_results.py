"""scripts/compact_results.py: committed JSON results rewritten without indentation, losslessly."""

from __future__ import annotations

import json

import pytest

from gelora._io import RESULT_INDENT, json_indent_of

CELL = {
    "task": "stsb",
    "primary": 0.8634123456789012,
    "metrics": {"pearson": 0.1 + 0.2},
    "seeds": [0, 1],
    "t": "é",
}


def test_a_file_is_rewritten_with_the_same_object_and_then_left_alone(tmp_path, load_script):
    mod = load_script("compact_results.py")
    p = tmp_path / "run" / "cells" / "stsb__lora__seed0.json"
    p.parent.mkdir(parents=True)
    before = json.dumps(CELL, indent=2) + "\n"
    p.write_text(before, encoding="utf-8")
    saved = mod.compact(p)
    after = p.read_text(encoding="utf-8")
    assert saved == len(before.encode()) - len(after.encode()) > 0
    assert json.loads(after) == CELL and json_indent_of(after) == RESULT_INDENT and after.endswith("}\n")
    assert mod.compact(p) == 0 and p.read_text(encoding="utf-8") == after


def test_dry_run_writes_nothing_and_the_cli_counts(tmp_path, load_script, capsys):
    mod = load_script("compact_results.py")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.json").write_text(json.dumps(CELL, indent=2))
    (tmp_path / "a" / "y.json").write_text(json.dumps(CELL, indent=0))
    (tmp_path / "a" / "notes.md").write_text("not json")
    text = (tmp_path / "a" / "x.json").read_text()
    assert mod.main([str(tmp_path / "a"), "--dry-run"]) == 0
    assert "would rewrite 1 of 2" in capsys.readouterr().out
    assert (tmp_path / "a" / "x.json").read_text() == text
    assert mod.main([str(tmp_path / "a")]) == 0
    assert "rewrote 1 of 2" in capsys.readouterr().out
    assert json_indent_of((tmp_path / "a" / "x.json").read_text()) == 0


@pytest.mark.parametrize("bad", ["corrupt.json", "missing"])
def test_bad_input_is_named(tmp_path, load_script, capsys, bad):
    mod = load_script("compact_results.py")
    (tmp_path / "corrupt.json").write_text("{not json")
    assert mod.main([str(tmp_path / bad)]) == 2
    assert bad in capsys.readouterr().err
