"""Fixtures of the fine-tuning tests: ``gridfix`` writes fake grid run directories (gridfixture.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest


def load_gridfixture() -> ModuleType:
    """gridfixture.py as a module (the tests run with --import-mode=importlib: no package imports)."""
    path = Path(__file__).with_name("gridfixture.py")
    spec = importlib.util.spec_from_file_location("gelora_test_gridfixture", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def gridfix() -> ModuleType:
    return load_gridfixture()


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
