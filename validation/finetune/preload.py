"""Import, once at a worker's start, every module of ours that training imports inside a function.

Why: on the GPU machine the device tool copies the working tree anew at the start of every call, and a
module of the tree can be missing for a moment while it does (2026-12-01: a worker of a wave launched at
the end of one call died with ``ModuleNotFoundError: No module named 'validation.finetune.methods'`` 15 s
later, as the next call started; ``reports/gpu/paper-minilm/README.md``). Python imports a module once per
process; a worker that has imported everything it will need before its first cell reads no more source
files, whatever the copy does afterwards. :func:`is_transient_import_error` is the second line: a cell that
still fails on an import is retried once (:func:`validation.finetune.grid.attempt_cells`).

``tests/unit/validation/finetune/test_preload.py`` keeps :data:`PRELOAD` closed: every function-level
import of ours in a module that :data:`PRELOAD` brings in must itself be brought in (or be an optional
dependency listed in :data:`OPTIONAL`); modules of :data:`NOT_SCANNED` are not scanned.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: the modules a training worker may import inside a function (runner, methods, tasks, selection, data)
PRELOAD: tuple[str, ...] = (
    "gelora._io",
    "gelora.architecture",
    "gelora.errors",
    "gelora.estimators",
    "gelora.estimators._knn_torch",
    "gelora.estimators.knn",
    "gelora.hidden_states",
    "gelora.lora",
    "gelora.model_store",
    "gelora.models",
    "gelora.pipeline",
    "gelora.ranks",
    "validation._cli",
    "validation.data",
    "validation.data.glue",
    "validation.data.splits",
    "validation.data.squad",
    "validation.finetune.ablations",
    "validation.finetune.adalora_fast",
    "validation.finetune.adalora_resume",
    "validation.finetune.claims",
    "validation.finetune.convergence",
    "validation.finetune.geolora.method",
    "validation.finetune.heldout_curve",
    "validation.finetune.lr_select",
    "validation.finetune.methods",
    "validation.finetune.metrics",
    "validation.finetune.runner",
    "validation.finetune.squad_threshold",
    "validation.finetune.stop",
    "validation.finetune.tasks",
    "validation.finetune.tasks.base",
    "validation.finetune.tasks.glue",
    "validation.finetune.tasks.squad",
    "validation.finetune.token_cache",
    "validation.finetune.trained_checkpoint",
    "validation.report.environment",
    "validation.report.portable",
)

#: function-level imports left out on purpose: ``{module: why}`` (optional dependencies, imported only
#: where they are installed and asked for)
OPTIONAL: dict[str, str] = {
    "gelora.estimators._knn_triton": "needs triton; only for the GPU k-NN's fused selection (off by default)",
    "gelora.estimators._knn_triton_kernel": "needs triton (see gelora.estimators._knn_triton)",
}


#: modules a preload brings in whose function-level imports never run in a worker: ``{module: why}`` (the
#: closure test does not scan them)
NOT_SCANNED: dict[str, str] = {
    "validation.report.build": "imported by validation.report's __init__ (the worker needs only "
    "validation.report.portable); builds reports, never runs in a worker",
}


def preload() -> None:
    """Import every module of :data:`PRELOAD` (cheap after the first call: Python caches modules).

    Raises
    ------
    ImportError
        A module of :data:`PRELOAD` cannot be imported (a broken installation: better at a worker's start
        than in the middle of its first cell).
    """
    for name in PRELOAD:
        importlib.import_module(name)


#: the packages of this checkout: only their source files are copied anew by the device tool
OURS: tuple[str, ...] = ("gelora", "validation", "synthetic")


def _ours(exc: ImportError | SyntaxError) -> bool:
    """Whether the failed import concerns a module (or, for a syntax error, a file) of this checkout."""
    if isinstance(exc, SyntaxError):
        name = exc.filename or ""
        root = str(Path(__file__).resolve().parents[2])
        return name.startswith(root + os.sep) or (not os.path.isabs(name) and name.split("/")[0] in OURS)
    mod = exc.name or ""
    if not mod:  # "No module named 'x'" without a name attribute: read it from the message
        mod = str(exc).partition("'")[2].partition("'")[0]
    return mod.split(".")[0] in OURS


def is_transient_import_error(exc: BaseException) -> bool:
    """True for the errors a source file of this checkout that is missing or half-written for a moment
    raises on import (:class:`ImportError`, which :class:`ModuleNotFoundError` is, naming a module of
    :data:`OURS`, and :class:`SyntaxError` in one of its files), also when re-raised as another error
    (e.g. ``methods.get_method``'s ``ConfigError ... from exc``): the chain of causes and contexts is
    walked. A missing third-party package (e.g. ``datasets`` behind a ``MissingDataError``) is no
    transient error: a retry cannot help it."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (ImportError, SyntaxError)) and _ours(cur):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


#: seconds before a cell (or a worker's preload) that failed on an import is tried once more
#: (``GELORA_IMPORT_RETRY_S`` overrides it)
IMPORT_RETRY_S = 20.0


def retry_seconds(default: float = IMPORT_RETRY_S) -> float:
    """``GELORA_IMPORT_RETRY_S`` as seconds (``default`` when unset; a value that is not a non-negative
    number is ignored with a warning, so that it never hides the import error being retried)."""
    raw = os.environ.get("GELORA_IMPORT_RETRY_S")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0.0 or value == float("inf"):
        warnings.warn(
            f"GELORA_IMPORT_RETRY_S={raw!r} is not a number of seconds; {default:g} s used", stacklevel=2
        )
        return default
    return value


def retrying_imports(fn: Callable[[], T], what: str, default_wait: float = IMPORT_RETRY_S) -> T:
    """``fn()``, called once more after :func:`retry_seconds` seconds (import caches invalidated) when it
    fails on an import (:func:`is_transient_import_error`); a second failure, or any other error,
    propagates. A stop request (:mod:`validation.finetune.stop`) made during the wait is honoured before the
    second attempt."""
    from validation.finetune.stop import check

    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an import's
        if not is_transient_import_error(exc):
            raise
        wait = retry_seconds(default_wait)
        print(
            f"{what}: {type(exc).__name__}: {exc}; tried once more in {wait:g} s", file=sys.stderr, flush=True
        )
        time.sleep(wait)
        check(f"before retrying {what}")
        importlib.invalidate_caches()
        return fn()
