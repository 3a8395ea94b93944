"""Portable paths: committed results name no machine; the builder writes paths against the data root."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from gelora._io import json_indent_of
from validation.report.environment import collect_environment, package_versions
from validation.report.portable import (
    DATA_ROOT_LABEL,
    ELSEWHERE_LABEL,
    find_absolute_paths,
    local_path,
    portable_json,
    portable_path,
    portable_text,
    rewrite_file,
)

REPO = Path(__file__).resolve().parents[4]
ROOTS = [
    ("/srv/box/repo/.carry/data", DATA_ROOT_LABEL),
    ("/opt/py/site-packages", "site-packages"),
    ("/srv/box/repo", ""),
]


def test_portable_path_against_each_root():
    assert (
        portable_path("/srv/box/repo/.carry/data/glue/RTE/dev.tsv.gz", ROOTS)
        == f"{DATA_ROOT_LABEL}/glue/RTE/dev.tsv.gz"
    )
    assert portable_path("/opt/py/site-packages/pkg/model", ROOTS) == "site-packages/pkg/model"
    assert portable_path("/srv/box/repo/validation/metrics.py", ROOTS) == "validation/metrics.py"
    assert portable_path("/elsewhere/x/file.json", ROOTS) == f"{ELSEWHERE_LABEL}/file.json"
    assert portable_path("reports/gpu/grid", ROOTS) == "reports/gpu/grid"  # relative: unchanged


def test_portable_text_rewrites_only_known_prefixes():
    text = "GLUE (/srv/box/repo/.carry/data/glue/x.tsv), from /srv/box/repo/gelora) see https://x.org/a /srv/box/repo"
    out = portable_text(text, ROOTS)
    assert out == f"GLUE ({DATA_ROOT_LABEL}/glue/x.tsv), from gelora) see https://x.org/a ."
    assert portable_text("/srv/box/repository/x", ROOTS) == "/srv/box/repository/x"  # not a prefix match
    assert portable_json({"/srv/box/repo/k": ["/srv/box/repo/a", 1]}, ROOTS) == {"k": ["a", 1]}


def test_local_path_inverts_portable_path(tmp_path, monkeypatch):
    monkeypatch.setenv("GELORA_DATA_DIR", str(tmp_path))
    f = tmp_path / "glue" / "t.tsv"
    f.parent.mkdir()
    f.write_text("x")
    assert portable_path(f) == f"{DATA_ROOT_LABEL}/glue/t.tsv"
    assert local_path(f"{DATA_ROOT_LABEL}/glue/t.tsv") == f
    assert local_path("validation/report/portable.py") == REPO / "validation" / "report" / "portable.py"


def test_environment_records_portable_paths_with_their_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GELORA_DATA_DIR", str(tmp_path))
    f = tmp_path / "glue" / "t.tsv"
    f.parent.mkdir()
    f.write_bytes(b"a\tb\n")
    env = collect_environment(
        commands=["x"], seeds={}, files={"data": f, "again": f"{DATA_ROOT_LABEL}/glue/t.tsv"}
    )
    for label in ("data", "again"):  # an absolute path and a portable one (a reused section) alike
        assert env["files"][label]["path"] == f"{DATA_ROOT_LABEL}/glue/t.tsv"
        assert env["files"][label]["sha256"] == hashlib.sha256(b"a\tb\n").hexdigest()
    assert not find_absolute_paths(json.dumps(package_versions()))


def test_rewrite_file_adds_the_data_files_sha256(tmp_path):
    data = tmp_path / "data"
    (data / "glue").mkdir(parents=True)
    (data / "glue" / "t.tsv").write_bytes(b"xyz")
    cell = tmp_path / "cell.json"
    cell.write_text(
        json.dumps({"train": {"source": "/srv/box/repo/.carry/data/glue/t.tsv"}}, indent=2) + "\n"
    )
    assert rewrite_file(cell, ROOTS, data)
    got = json.loads(cell.read_text())
    assert got["train"] == {
        "source": f"{DATA_ROOT_LABEL}/glue/t.tsv",
        "source_sha256": hashlib.sha256(b"xyz").hexdigest(),
    }
    assert not rewrite_file(cell, ROOTS, data)  # idempotent


@pytest.mark.parametrize("indent", [0, 2])
def test_rewrite_file_keeps_the_files_indentation(tmp_path, indent):
    cell = tmp_path / "cell.json"
    cell.write_text(json.dumps({"a": {"path": "/srv/box/repo/reports/x.json", "n": 1}}, indent=indent) + "\n")
    assert rewrite_file(cell, ROOTS)
    text = cell.read_text()
    assert json_indent_of(text) == indent and text.endswith("}\n")
    assert "/srv/box" not in text


def test_find_absolute_paths_patterns():
    bad = [
        "/work/main/x",
        "see /root/out/a.json",
        "/home/me/d",
        "cache /tmp/c",
        "/opt/torch/x",
        r"C:\\Users\\me",
    ]
    for line in bad:
        assert find_absolute_paths(line), line
    good = [
        "reports/gpu/grid",
        "$GELORA_DATA_DIR/glue/x",
        "site-packages/x",
        "https://a.org/tmp/x",
        "a/work/b",
    ]
    for line in good:
        assert not find_absolute_paths(line), line


def _committed_text_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "reports", "docs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        files = [REPO / p for p in out]
    except (OSError, subprocess.CalledProcessError):  # no git: every file under the two folders
        files = [p for d in ("reports", "docs") for p in (REPO / d).rglob("*") if p.is_file()]
    return [p for p in files if p.is_file()]


def test_committed_reports_and_docs_hold_no_absolute_path_of_a_machine():
    problems = []
    for path in _committed_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # figures and other binary files
        for lineno, line in find_absolute_paths(text):
            problems.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:160]}")
    assert not problems, "absolute paths of a machine in committed files:\n" + "\n".join(problems)


def test_theory_section_output_names_no_absolute_path(tmp_path, monkeypatch):
    import sys
    import types

    from validation.report import build as B

    def fake_run_theory_checks(profile, seed, out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": f"python -m validation.theory --out {out}"}) + "\n")
        return {"properties": [{"property": "p", "pass": True, "checks": 1, "worst_margin": 0.5}]}

    monkeypatch.setitem(
        sys.modules, "validation.theory", types.SimpleNamespace(run_theory_checks=fake_run_theory_checks)
    )
    monkeypatch.chdir(tmp_path)
    ctx = B.Context(profile="quick", seed=0, out_dir=tmp_path / "reports" / "q")
    assert B.section_theory(ctx)["checks"][0]["passed"] is True
    text = (tmp_path / "reports" / "q" / "raw" / "theory_checks.json").read_text()
    assert "--out reports/q/raw/theory_checks.json" in text and str(tmp_path) not in text
