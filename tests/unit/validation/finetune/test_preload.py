"""The worker's preload (validation.finetune.preload) and the grid's one retry of a cell that failed on an
import (validation.finetune.grid._run_cell_retrying_imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from validation.finetune import grid as grid_mod
from validation.finetune.preload import OPTIONAL, PRELOAD, is_transient_import_error
from validation.finetune.runner import failure_path, get_profile

REPO = Path(__file__).resolve().parents[4]
OURS = ("gelora", "validation")


def _function_level_imports(path: Path) -> set[str]:
    """Our modules imported inside a function of ``path`` (absolute imports; relative ones resolved)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] not in OURS:
                    continue
                out.add(mod)
                for alias in node.names:  # `from pkg import submodule`
                    sub = REPO / Path(*f"{mod}.{alias.name}".split("."))
                    if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                        out.add(f"{mod}.{alias.name}")
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] in OURS)
    return out


def test_preload_is_closed_under_function_level_imports() -> None:
    # a fresh interpreter: which of our modules does preload() bring in?
    code = (
        "import sys; from validation.finetune.preload import preload; preload(); "
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('gelora', 'validation')))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert set(PRELOAD) <= loaded
    missing: dict[str, set[str]] = {}
    for mod in sorted(loaded):
        path = REPO / Path(*mod.split("."))
        src = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not src.is_file():
            continue
        lacking = {m for m in _function_level_imports(src) if m not in loaded and m not in OPTIONAL}
        if lacking:
            missing[mod] = lacking
    assert missing == {}, (
        f"add these to validation.finetune.preload.PRELOAD (or OPTIONAL, with why): {missing}"
    )


def test_the_scan_finds_a_function_level_import() -> None:
    # the closure test above can fail: the scanner sees an import inside a function
    src = REPO / "validation" / "finetune" / "runner.py"
    assert "validation.finetune.methods" in _function_level_imports(src)


def test_transient_import_errors() -> None:
    assert is_transient_import_error(ModuleNotFoundError("No module named 'validation.finetune.methods'"))
    assert is_transient_import_error(SyntaxError("unexpected EOF"))
    assert not is_transient_import_error(RuntimeError("CUDA out of memory"))
    assert not is_transient_import_error(FileNotFoundError("data"))


PROFILE = get_profile("test")


def _fake_run(fail_times: int, exc: BaseException, calls: list[str]):  # noqa: ANN202
    def run(task, method, seed, *, run_dir, **kw):  # noqa: ANN001, ANN202
        calls.append(f"{task}/{method}/{seed}")
        if len(calls) <= fail_times:
            raise exc

    return run


def test_a_cell_that_failed_on_an_import_is_tried_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    slept: list[float] = []
    monkeypatch.setenv("GELORA_IMPORT_RETRY_S", "7")
    monkeypatch.setattr(grid_mod.time, "sleep", slept.append)
    monkeypatch.setattr(grid_mod, "run_cell", _fake_run(1, ModuleNotFoundError("No module named 'x'"), calls))
    out = grid_mod.GridOutcome()
    grid_mod.attempt_cells(
        [("rte", "lora", 0)],
        outcome=out,
        profile=PROFILE,
        run_dir=tmp_path,
        data_dir=None,
        device="cpu",
        keep_going=True,
        keep_checkpoints=False,
        progress=None,
        stale_after=60.0,
    )
    assert calls == ["rte/lora/0", "rte/lora/0"] and slept == [7.0]
    assert out.ran == ["rte__lora__seed0"] and out.failed == []
    assert not failure_path(tmp_path, "rte", "lora", 0).exists()
    assert "tried once more in 7 s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fail_times", "exc", "n_calls"),
    [(2, ModuleNotFoundError("No module named 'x'"), 2), (1, RuntimeError("boom"), 1)],
)
def test_only_once_and_only_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_times: int, exc: BaseException, n_calls: int
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(grid_mod.time, "sleep", lambda s: None)
    monkeypatch.setattr(grid_mod, "run_cell", _fake_run(fail_times, exc, calls))
    out = grid_mod.GridOutcome()
    grid_mod.attempt_cells(
        [("rte", "lora", 0)],
        outcome=out,
        profile=PROFILE,
        run_dir=tmp_path,
        data_dir=None,
        device="cpu",
        keep_going=True,
        keep_checkpoints=False,
        progress=None,
        stale_after=60.0,
    )
    assert len(calls) == n_calls and out.failed == ["rte__lora__seed0"]
    assert type(exc).__name__ in out.errors["rte__lora__seed0"]
    assert failure_path(tmp_path, "rte", "lora", 0).exists()
