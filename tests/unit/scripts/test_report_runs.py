"""scripts/report_runs.sh lists the run directories of reports/full once; the committed report must have
been built from exactly that list (its recorded command), and every listed directory must exist."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _listed() -> list[str]:
    out = subprocess.run(
        ["bash", "-c", 'source scripts/report_runs.sh && printf "%s\\n" "${REPORT_RUN_ARGS[@]}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    args = [a for a in out if a]
    assert args[::2] == ["--runs"] * (len(args) // 2)
    return args[1::2]


def _recorded() -> list[str]:
    report = json.loads((ROOT / "reports" / "full" / "report.json").read_text(encoding="utf-8"))
    (cmd,) = [c for c in report["environment"]["commands"] if "--runs" in c]
    words = shlex.split(cmd)
    return [words[i + 1] for i, w in enumerate(words) if w == "--runs"]


def test_the_committed_report_was_built_from_the_listed_run_directories():
    assert _recorded() == _listed(), (
        "rebuild with `bash scripts/rebuild_full_report.sh` after editing the list"
    )


def test_every_listed_run_directory_exists():
    missing = [d for d in _listed() if not (ROOT / d).is_dir()]
    assert not missing, missing


def test_the_committed_report_read_the_listed_profile_files():
    listed = subprocess.run(
        ["bash", "-c", 'source scripts/report_runs.sh && printf "%s\\n" "${REPORT_PROFILE_FILES[@]}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed and all((ROOT / f).is_file() for f in listed)
    report = json.loads((ROOT / "reports" / "full" / "report.json").read_text(encoding="utf-8"))
    (cmd,) = [c for c in report["environment"]["commands"] if "--runs" in c]
    words = shlex.split(cmd)
    recorded = words[words.index("--id-profiles") + 1 :]
    recorded = recorded[: next((i for i, w in enumerate(recorded) if w.startswith("--")), len(recorded))]
    assert recorded == listed, "rebuild with `bash scripts/rebuild_full_report.sh` after editing the list"
    groups = report["sections"]["model_profile"]["data"]["more_models"]
    assert sorted(f["path"] for g in groups for f in g["files"].values()) == sorted(listed)
