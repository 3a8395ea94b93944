"""The report lists planned tasks without offline data (MNLI, QQP) as "not run: no offline data"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from validation.finetune.runner import MissingDataError, record_failure
from validation.report import build as B

GOOD = {
    "full": [0.90, 0.91, 0.92],
    "head_only": [0.50, 0.52, 0.51],
    "gelora": [0.80, 0.81, 0.82],
    "lora": [0.70, 0.705, 0.715],
}


def test_tasks_without_data_are_listed_not_scored(f: Any, tmp_path: Path, gridfix: Any) -> None:
    run = gridfix.write_grid(tmp_path / "paper", {"sst2": GOOD, "qqp": {"gelora": [None], "lora": [None]}})
    for m in ("gelora", "lora"):
        record_failure(run, "qqp", m, 0, MissingDataError("not run: no offline data for qqp (no file)"))
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(run,))
    data = B._clean(B.section_grid(ctx))
    assert data["paper_protocol"]["not_run_tasks"] == [
        {"task": "qqp", "reason": "not run: no offline data", "n_cells": 2}
    ]
    md, _, _ = B.render_all(f.make_report(grid=f.sec(data)))
    # section 5's reading and ceiling/floor table name the task, C6 says why the average leaves it out,
    # appendix D lists its rows with the reason, said once
    assert "| QQP | — | — | — | — | not run: no offline data |" in md
    assert "QQP: not run: no offline data (planned, listed below, never scored)." in md
    assert "left out: QQP (not run: no offline data)" in md
    assert "| qqp | gelora | paper | test-model | accuracy | not run: no offline data |" in md
    assert "not run (not run" not in md
