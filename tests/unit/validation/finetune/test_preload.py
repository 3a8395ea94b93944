"""The worker's preload (validation.finetune.preload) and the grid's one retry of a cell that failed on an
import (validation.finetune.grid._run_cell_retrying_imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gelora.errors import ConfigError
from validation.finetune import grid as grid_mod
from validation.finetune.methods import METHODS
from validation.finetune.preload import (
    NOT_SCANNED,
    OPTIONAL,
    PRELOAD,
    is_transient_import_error,
    retry_seconds,
)
from validation.finetune.runner import MissingDataError, failure_path, get_profile

REPO = Path(__file__).resolve().parents[4]
OURS = ("gelora", "validation")


def _function_level_imports(path: Path) -> set[str]:
    """Our modules imported inside a function of ``path`` (absolute imports; relative ones resolved)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1])  # the package the module sits in (an __init__'s is its own folder)
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
        "import sys; import validation.finetune.grid, validation.finetune.parallel; "
        "from validation.finetune.preload import preload; preload(); "
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('gelora', 'validation')))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert set(PRELOAD) <= loaded
    missing: dict[str, set[str]] = {}
    for mod in sorted(loaded - set(NOT_SCANNED)):
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


def test_every_method_module_is_preloaded() -> None:
    # methods.get_method imports them by name (importlib), which the scan above cannot see
    assert {spec.partition(":")[0] for spec in METHODS.values()} <= set(PRELOAD)


def test_transient_import_errors() -> None:
    assert is_transient_import_error(ModuleNotFoundError("No module named 'validation.finetune.methods'"))
    half_written = SyntaxError("unexpected EOF")
    half_written.filename = str(REPO / "validation" / "finetune" / "methods.py")
    assert is_transient_import_error(half_written)
    assert not is_transient_import_error(SyntaxError("in a user's file"))
    assert not is_transient_import_error(RuntimeError("CUDA out of memory"))
    assert not is_transient_import_error(FileNotFoundError("data"))
    # a third-party package missing (MissingDataError from ModuleNotFoundError('datasets')): no retry
    try:
        try:
            raise ModuleNotFoundError("No module named 'datasets'", name="datasets")
        except ImportError as exc:
            raise MissingDataError("not run: no offline data for mnli") from exc
    except MissingDataError as missing:
        assert not is_transient_import_error(missing)
    # re-raised as another error (methods.get_method: ConfigError ... from ImportError)
    try:
        try:
            raise ModuleNotFoundError(
                "No module named 'validation.finetune.ablations'", name="validation.finetune.ablations"
            )
        except ImportError as exc:
            raise ConfigError("method 'gelora_reversed' is not available") from exc
    except ConfigError as wrapped:
        assert is_transient_import_error(wrapped)


def test_retry_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GELORA_IMPORT_RETRY_S", raising=False)
    assert retry_seconds(20.0) == 20.0
    monkeypatch.setenv("GELORA_IMPORT_RETRY_S", "3.5")
    assert retry_seconds(20.0) == 3.5
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv("GELORA_IMPORT_RETRY_S", bad)
        with pytest.warns(UserWarning, match="not a number of seconds"):
            assert retry_seconds(20.0) == 20.0


PROFILE = get_profile("test")


def _fake_run(fail_times: int, exc: BaseException, calls: list[str]):  # noqa: ANN202
    def run(task, method, seed, *, run_dir, **kw):  # noqa: ANN001, ANN202
        calls.append(f"{task}/{method}/{seed}")
        if len(calls) <= fail_times:
            raise exc

    return run


def _attempt(run_dir: Path, out: grid_mod.GridOutcome | None = None) -> grid_mod.GridOutcome:
    """One worker's pass over the single cell rte/lora/seed 0 (run_cell and sleep are the tests' fakes),
    recorded in ``out`` (a new outcome by default)."""
    out = grid_mod.GridOutcome() if out is None else out
    grid_mod.attempt_cells(
        [("rte", "lora", 0)],
        outcome=out,
        profile=PROFILE,
        run_dir=run_dir,
        data_dir=None,
        device="cpu",
        keep_going=True,
        keep_checkpoints=False,
        progress=None,
        stale_after=60.0,
    )
    return out


def test_a_cell_that_failed_on_an_import_is_tried_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    slept: list[float] = []
    monkeypatch.setenv("GELORA_IMPORT_RETRY_S", "7")
    monkeypatch.setattr(time, "sleep", slept.append)
    monkeypatch.setattr(
        grid_mod,
        "run_cell",
        _fake_run(1, ModuleNotFoundError("No module named 'validation.finetune.methods'"), calls),
    )
    out = _attempt(tmp_path)
    assert calls == ["rte/lora/0", "rte/lora/0"] and slept == [7.0]
    assert out.ran == ["rte__lora__seed0"] and out.failed == []
    assert not failure_path(tmp_path, "rte", "lora", 0).exists()
    assert "tried once more in 7 s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fail_times", "exc", "n_calls"),
    [
        (2, ModuleNotFoundError("No module named 'validation.finetune.methods'"), 2),
        (1, RuntimeError("boom"), 1),
        (1, ModuleNotFoundError("No module named 'datasets'", name="datasets"), 1),  # not ours: no retry
    ],
)
def test_only_once_and_only_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_times: int, exc: BaseException, n_calls: int
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(time, "sleep", lambda s: None)
    monkeypatch.setattr(grid_mod, "run_cell", _fake_run(fail_times, exc, calls))
    out = _attempt(tmp_path)
    assert len(calls) == n_calls and out.failed == ["rte__lora__seed0"]
    assert type(exc).__name__ in out.errors["rte__lora__seed0"]
    assert failure_path(tmp_path, "rte", "lora", 0).exists()


def test_the_workers_preload_is_retried_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preload is where a worker first imports: a transient failure there is retried like a cell's."""
    tries: list[int] = []

    def flaky_preload() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ModuleNotFoundError("No module named 'validation.finetune.methods'")

    calls: list[str] = []
    monkeypatch.setattr(time, "sleep", lambda s: None)
    monkeypatch.setattr(grid_mod, "preload", flaky_preload)
    monkeypatch.setattr(grid_mod, "run_cell", _fake_run(0, RuntimeError("unused"), calls))
    out = _attempt(tmp_path)
    assert len(tries) == 2 and out.ran == ["rte__lora__seed0"]


def test_a_stop_request_during_the_wait_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from validation.finetune import stop

    calls: list[str] = []
    monkeypatch.setattr(time, "sleep", lambda s: stop.request())
    monkeypatch.setattr(
        grid_mod,
        "run_cell",
        _fake_run(1, ModuleNotFoundError("No module named 'validation.finetune.methods'"), calls),
    )
    out = grid_mod.GridOutcome()
    try:
        with pytest.raises(stop.StopRequested):
            _attempt(tmp_path, out)
    finally:
        stop.clear()
    assert calls == ["rte/lora/0"] and out.interrupted == ["rte__lora__seed0"]
    assert not failure_path(tmp_path, "rte", "lora", 0).exists()
