"""Fixtures of the fine-tuning tests (``gridfix``, shared by every unit test folder, is in
tests/unit/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def fake_run_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_run_cell(code, flag)``: make ``code`` (which replaces ``validation.finetune.grid.run_cell`` when
    the environment variable ``flag`` is set) run in this process and, as a ``sitecustomize``, in every
    worker subprocess; the real ``run_cell`` is restored after the test."""

    def install(code: str, flag: str) -> None:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(code)
        repo = Path(__file__).resolve().parents[4]
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join([str(site), str(repo), os.environ.get("PYTHONPATH", "")])
        )
        monkeypatch.setenv(flag, "1")
        import validation.finetune.grid as grid_mod

        monkeypatch.setattr(grid_mod, "run_cell", grid_mod.run_cell)  # restored after the test
        exec(code, {})  # the in-process path uses the fake as well

    return install
