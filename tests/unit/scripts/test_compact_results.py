"""scripts/compact_results.py: committed JSON results rewritten without indentation, losslessly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gelora._io import RESULT_INDENT, json_indent_of

ROOT = Path(__file__).resolve().parents[3]
#: the report sections build.run_section writes at RESULT_INDENT
SECTIONS = ("ablations", "estimators", "grid", "model_profile", "theory", "trajectories")

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


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("corrupt.json", "not valid JSON"),
        ("missing", "neither a folder nor a JSON file"),
        ("latin1.json", "cannot be read as UTF-8"),
        ("nan.json", "NaN/inf"),
    ],
)
def test_bad_input_is_named(tmp_path, load_script, capsys, bad, says):
    mod = load_script("compact_results.py")
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "latin1.json").write_bytes(b'{\n  "a": "\xe9"\n}\n')
    (tmp_path / "nan.json").write_text('{\n  "a": NaN\n}\n')
    assert mod.main([str(tmp_path / bad)]) == 2
    err = capsys.readouterr().err
    assert bad in err and says in err


def test_a_one_line_file_is_left_as_written(tmp_path, load_script):
    mod = load_script("compact_results.py")
    p = tmp_path / "one.json"
    p.write_text(json.dumps(CELL) + "\n")
    assert mod.compact(p) == 0 and p.read_text() == json.dumps(CELL) + "\n"


def test_the_committed_results_are_written_at_result_indent():
    """Results the code writes at RESULT_INDENT (cells, failure records, selection records, the report) stay so in
    the checkout: a 2-space file brought in by hand costs the GPU calls' 64 MiB; compact_results.py fixes it."""
    files = [
        f
        for d in sorted((ROOT / "reports" / "gpu").rglob("*"))
        if d.is_dir() and d.name in ("cells", "lr_select")
        for f in sorted(d.glob("*.json"))
    ]
    files += [ROOT / "reports" / "full" / "report.json"]
    files += [ROOT / "reports" / "full" / "raw" / f"{s}.json" for s in SECTIONS]
    assert len(files) > 900
    wide = [
        str(f.relative_to(ROOT))
        for f in files
        if json_indent_of(f.read_text(encoding="utf-8")) not in (RESULT_INDENT, None)
    ]
    assert not wide, f"run scripts/compact_results.py on: {wide[:5]} ({len(wide)} files)"
