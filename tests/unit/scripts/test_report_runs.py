"""scripts/report_runs.sh lists the run directories of reports/full once; the committed report must have
been built from exactly that list (its recorded command), and every listed directory must exist."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _sourced(array: str) -> list[str]:
    """The elements of a bash array of scripts/report_runs.sh."""
    out = subprocess.run(
        ["bash", "-c", f'source scripts/report_runs.sh && printf "%s\\n" "${{{array}[@]}}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [a for a in out if a]


def _listed() -> list[str]:
    args = _sourced("REPORT_RUN_ARGS")
    assert args[::2] == ["--runs"] * (len(args) // 2)
    return args[1::2]


def _report() -> dict:
    return json.loads((ROOT / "reports" / "full" / "report.json").read_text(encoding="utf-8"))


def _recorded_words(report: dict) -> list[str]:
    """The recorded command of the committed report that collected the run directories, split."""
    (cmd,) = [c for c in report["environment"]["commands"] if "--runs" in c]
    return shlex.split(cmd)


def _recorded() -> list[str]:
    words = _recorded_words(_report())
    return [words[i + 1] for i, w in enumerate(words) if w == "--runs"]


def test_the_committed_report_was_built_from_the_listed_run_directories():
    assert _recorded() == _listed(), (
        "rebuild with `bash scripts/rebuild_full_report.sh` after editing the list"
    )


def test_every_listed_run_directory_exists():
    missing = [d for d in _listed() if not (ROOT / d).is_dir()]
    assert not missing, missing


def test_the_committed_report_read_the_listed_profile_files():
    listed = _sourced("REPORT_PROFILE_FILES")
    assert listed and all((ROOT / f).is_file() for f in listed)
    report = _report()
    words = _recorded_words(report)
    recorded = words[words.index("--id-profiles") + 1 :]
    recorded = recorded[: next((i for i, w in enumerate(recorded) if w.startswith("--")), len(recorded))]
    assert recorded == listed, "rebuild with `bash scripts/rebuild_full_report.sh` after editing the list"
    groups = report["sections"]["model_profile"]["data"]["more_models"]
    assert sorted(f["path"] for g in groups for f in g["files"].values()) == sorted(listed)
