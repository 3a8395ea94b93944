"""The environment block and the ``gelora report`` subcommand's argument handling."""

from __future__ import annotations

import argparse
import hashlib

import pytest

from gelora.errors import ResultFileError
from validation.report.environment import collect_environment, git_state, package_versions, sha256_file


def test_sha256_matches_hashlib(tmp_path):
    p = tmp_path / "w.bin"
    data = bytes(range(256)) * 5000  # > 1 MiB chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_collect_environment_records_files_seeds_commands(tmp_path):
    p = tmp_path / "data.tsv"
    p.write_text("a\tb\n")
    env = collect_environment(
        commands=["gelora report"], seeds={"grid": 3}, files={"data": p, "gone": tmp_path / "nope"}
    )
    assert env["files"]["data"]["sha256"] == hashlib.sha256(b"a\tb\n").hexdigest()
    assert env["files"]["gone"]["sha256"] is None and env["files"]["gone"]["note"] == "file not found"
    assert env["seeds"] == {"grid": 3}
    assert env["commands"] == ["gelora report"]
    for key in ("python", "platform", "cpu", "gpu", "packages", "git"):
        assert key in env
    assert env["packages"]["numpy"] != "not installed"


def test_package_versions_marks_missing():
    assert package_versions(["surely-not-a-distribution-xyz"]) == {
        "surely-not-a-distribution-xyz": "not installed"
    }


def test_git_state_outside_a_repository(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["note"]


def _parser():
    from validation.commands import report

    p = argparse.ArgumentParser(prog="gelora")
    sub = p.add_subparsers(dest="command")
    report.register(sub)
    return p


def test_report_command_parses_defaults():
    args = _parser().parse_args(["report"])
    assert args.profile == "quick" and args.out is None and args.from_json is None and args.seed == 0


def test_report_command_from_corrupt_json_raises_result_file_error(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("{")
    args = _parser().parse_args(["report", "--from", str(bad)])
    with pytest.raises(ResultFileError):
        args.func(args)


def test_report_command_passes_its_arguments(monkeypatch, tmp_path):
    seen = {}

    def fake_build(profile, out, **kw):
        seen.update(profile=profile, out=out, **kw)
        (tmp_path / "report.json").write_text("{}")
        return tmp_path / "report.json"

    monkeypatch.setattr("validation.report.build.build_report", fake_build)
    args = _parser().parse_args(
        ["report", "--profile", "full", "--runs", str(tmp_path), "--seed", "2", "--sections", "grid"]
    )
    assert args.func(args) == 0
    assert seen["profile"] == "full" and str(seen["out"]) == "reports/full"
    assert seen["runs_dir"] == tmp_path and seen["seed"] == 2 and seen["sections"] == ["grid"]
    assert (
        seen["command"]
        == f"gelora report --profile full --out reports/full --seed 2 --runs {tmp_path} --sections grid"
    )
