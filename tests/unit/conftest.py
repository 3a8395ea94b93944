"""Fixtures shared by every unit test folder: ``gridfix`` writes fake grid run directories with cell files
(``validation/finetune/gridfixture.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

GRIDFIXTURE = Path(__file__).parent / "validation" / "finetune" / "gridfixture.py"


def load_gridfixture() -> ModuleType:
    """gridfixture.py as a fresh module (the tests run with --import-mode=importlib: no package imports)."""
    spec = importlib.util.spec_from_file_location("gelora_test_gridfixture", GRIDFIXTURE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def gridfix() -> ModuleType:
    """The gridfixture module: ``write_cell`` and ``write_grid`` (see its docstring)."""
    return load_gridfixture()
