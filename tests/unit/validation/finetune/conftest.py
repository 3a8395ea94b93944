"""Fixtures of the fine-tuning tests: ``gridfix`` writes fake grid run directories (gridfixture.py)."""

from __future__ import annotations

import importlib.util
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
