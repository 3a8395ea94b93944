"""Fixtures of the tests of scripts/: ``load_script`` imports a script file as a module (scripts/ is not a
package, and the tests run with --import-mode=importlib)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load(relative: str) -> ModuleType:
    path = ROOT / "scripts" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_script() -> Callable[[str], ModuleType]:
    """``load_script("gpu/mpnet_chunks.py")``: that file under scripts/, freshly executed as a module."""
    return _load
