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
dependency listed in :data:`OPTIONAL`).
"""

from __future__ import annotations

import importlib

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
)

#: function-level imports left out on purpose: ``{module: why}`` (optional dependencies, imported only
#: where they are installed and asked for)
OPTIONAL: dict[str, str] = {
    "gelora.estimators._knn_triton": "needs triton; only for the GPU k-NN's fused selection (off by default)",
    "gelora.estimators._knn_triton_kernel": "needs triton (see gelora.estimators._knn_triton)",
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


def is_transient_import_error(exc: BaseException) -> bool:
    """True for the errors a source file that is missing or half-written for a moment raises on import
    (:class:`ImportError`, which :class:`ModuleNotFoundError` is, and :class:`SyntaxError`)."""
    return isinstance(exc, (ImportError, SyntaxError))
