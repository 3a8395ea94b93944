"""End to end: the README's main command (`gelora report`, quick profile on CPU) and `--from` regeneration.

Slow (a few minutes on two cores: estimators, the model's ID profile with three estimators and a
four-method tiny grid), so it is marked ``slow``: ``pytest -m slow tests/e2e/test_report_quick.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _gelora(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gelora.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_quick_report_and_byte_for_byte_regeneration(tmp_path):
    out = tmp_path / "reports" / "quick"
    proc = _gelora("report", "--profile", "quick", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "gelora.report/1"
    # the estimator section always runs here; every other section either ran or says why not
    assert report["sections"]["estimators"]["status"] == "ok"
    for name, sec in report["sections"].items():
        assert sec["status"] in ("ok", "not run", "error"), name
        if sec["status"] != "ok":
            assert sec["reason"], name
    assert len(report["claims"]) == 6
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html
    assert (out / "figures" / "estimator_accuracy.png").is_file()

    # a second run reuses every finished section
    proc2 = _gelora("report", "--profile", "quick", "--out", str(out), cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    again = json.loads((out / "report.json").read_text())
    for name, sec in again["sections"].items():
        if sec["status"] == "ok":
            assert sec["origin"] == "reused", name

    copy = tmp_path / "copy"
    proc3 = _gelora("report", "--from", str(out / "report.json"), "--out", str(copy), cwd=tmp_path)
    assert proc3.returncode == 0, proc3.stderr[-3000:]
    for name in ["report.json", "report.md", "report.html"] + [
        f"figures/{p.name}" for p in (out / "figures").glob("*.png")
    ]:
        assert (out / name).read_bytes() == (copy / name).read_bytes(), name

    # a corrupt result file is a clear error, not a traceback
    (out / "raw" / "estimators.json").write_text("{")
    proc4 = _gelora("report", "--profile", "quick", "--out", str(out), cwd=tmp_path)
    assert proc4.returncode == 2
    assert "estimators.json" in proc4.stderr and "corrupt" in proc4.stderr
