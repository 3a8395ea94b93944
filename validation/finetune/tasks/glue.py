"""The GLUE family: sentence(-pair) classification and STS-B regression, scored with the official metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from gelora.errors import ConfigError
from validation.finetune.tasks.base import (
    BucketPadding,
    DataProfile,
    Heldout,
    TaskData,
    compiles,
    heldout_split,
)


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


def _rows(split: Any, keep: np.ndarray, part: str) -> Any:
    """The rows ``keep`` of a GlueSplit, ``subset`` extended with the part's name."""
    from dataclasses import replace

    return replace(
        split,
        text_a=[split.text_a[i] for i in keep],
        text_b=None if split.text_b is None else [split.text_b[i] for i in keep],
        labels=split.labels[keep],
        idx=split.idx[keep],
        subset={**split.subset, "heldout_part": part, "n_part": len(keep)},
    )


def _cached_encode(task: str, part: str, split: Any, tokenizer: Any, profile: DataProfile) -> EncodedDataset:
    """:func:`encode_split` through the grid's token cache (:mod:`validation.finetune.token_cache`)."""
    from validation.finetune.token_cache import cached

    size = profile.train_size if part == "train" else profile.eval_size
    settings = {
        "task": task,
        "part": part,
        "max_length": profile.max_length,
        "size": size,
        "seed": profile.subset_seed,
    }
    inputs = (split.text_a, split.text_b, np.asarray(split.labels))
    return cached(
        "glue", settings, tokenizer, inputs, lambda: encode_split(split, tokenizer, profile.max_length)
    )


_EVAL_SKIP = ("runtime", "samples_per_second", "steps_per_second", "epoch")


class GlueFamily:
    """The eight GLUE tasks (:data:`validation.data.glue.GLUE_TASKS`) with ``AutoModelForSequenceClassification``."""

    name = "glue"

    def owns(self, task: str) -> bool:
        from validation.data.glue import task_spec

        try:
            task_spec(task)
        except ConfigError:
            return False
        return True

    def canonical(self, task: str) -> str:
        from validation.data.glue import task_spec

        return task_spec(task).name

    def build(
        self,
        task: str,
        tokenizer: Any,
        profile: DataProfile,
        data_dir: str | Path | None,
        heldout: Heldout | None = None,
    ) -> TaskData:
        from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

        from validation.data.glue import task_spec
        from validation.data.splits import glue_task_splits
        from validation.finetune.metrics import glue_metrics

        spec = task_spec(task)
        # official train/dev files, or (QNLI offline) a fixed split of dev recorded in each split's protocol
        train_all, evals_all = glue_task_splits(spec.name, data_dir)
        train = train_all.take(profile.train_size, seed=profile.subset_seed)
        extra: dict[str, Any] = {}
        if heldout is None:
            evals = {s: sp.take(profile.eval_size, seed=profile.subset_seed) for s, sp in evals_all.items()}
        else:  # hyper-parameter selection: score on a held-out part of the training data, never on dev
            keep, held = heldout_split(len(train), heldout)
            train, evals = _rows(train, keep, "train"), {"heldout": _rows(train, held, "heldout")}
            extra["heldout"] = {"n": len(held), "of": len(keep) + len(held), "seed": heldout.seed}
        eval_ds = {s: _cached_encode(spec.name, s, sp, tokenizer, profile) for s, sp in evals.items()}

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
            train_ds=_cached_encode(spec.name, "train", train, tokenizer, profile),
            model_cls=AutoModelForSequenceClassification,
            model_kwargs={
                "num_labels": spec.num_labels,
                "problem_type": "regression" if spec.is_regression else "single_label_classification",
            },
            task_type="SEQ_CLS",
            label_names=("labels",),
            # a compiled model (profile.torch_compile): a few fixed lengths; eager: each batch's own longest
            collator=(
                BucketPadding(tokenizer, profile.max_length)
                if compiles(profile)
                else DataCollatorWithPadding(tokenizer)
            ),
            compute_metrics=compute_metrics,
            evaluate=evaluate,
            train_texts=train.joined_texts,
            data={"train": train.describe(), "eval": {s: sp.describe() for s, sp in evals.items()}, **extra},
        )


#: the GLUE family (see :func:`validation.finetune.tasks.task_family`)
GLUE = GlueFamily()

__all__ = ["GLUE", "EncodedDataset", "GlueFamily", "encode_split"]
