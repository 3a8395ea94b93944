"""The SQuAD family: extractive QA (v1.1, v2.0) with ``AutoModelForQuestionAnswering``.

Questions and contexts are cut into overlapping windows; predictions are post-processed back to answer
spans and scored with the official EM/F1 (:func:`validation.finetune.metrics.squad_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from gelora.errors import ConfigError
from validation.finetune.tasks.base import DataProfile, Heldout, TaskData, heldout_split

#: extractive QA tasks of this family (accepted by the runner next to the GLUE tasks), with their SQuAD version
QA_TASKS: dict[str, str] = {"squad_v1": "1.1", "squad_v2": "2.0"}


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


class SquadFamily:
    """``squad_v1`` / ``squad_v2`` (:data:`QA_TASKS`)."""

    name = "squad"

    def owns(self, task: str) -> bool:
        return task in QA_TASKS

    def canonical(self, task: str) -> str:
        if task not in QA_TASKS:
            raise ConfigError(f"unknown SQuAD task {task!r}; expected one of {sorted(QA_TASKS)}")
        return task

    def build(
        self,
        task: str,
        tokenizer: Any,
        profile: DataProfile,
        data_dir: str | Path | None,
        heldout: Heldout | None = None,
    ) -> TaskData:
        """SQuAD v1.1/v2.0: the official train file when present, else a split of dev by article.

        See :func:`validation.data.splits.squad_task_splits`; the protocol is recorded in ``data``. With
        ``heldout``, whole articles of the training subset are held out (questions of one article share
        its paragraphs), about ``heldout.fraction`` of its articles, and scored instead of the dev set.
        ``profile.doc_stride`` (when the profile has it and it is not None) sets the window overlap,
        else ``max(8, max_length // 4)``.
        """
        from transformers import AutoModelForQuestionAnswering, default_data_collator

        from validation.data.splits import squad_task_splits
        from validation.data.squad import (
            best_spans,
            postprocess_predictions,
            prepare_eval_features,
            prepare_train_features,
        )
        from validation.finetune.metrics import squad_metrics
        from validation.finetune.squad_threshold import apply_threshold, best_threshold_metrics
        from validation.finetune.token_cache import cached

        version = QA_TASKS[task]
        splits = squad_task_splits(version, data_dir)
        train = _squad_subset(splits.train, profile.train_size, profile.subset_seed)
        dev = _squad_subset(splits.eval, profile.eval_size, profile.subset_seed)
        heldout_info: dict[str, Any] = {}
        if heldout is not None:  # hyper-parameter selection: held-out articles of the training data
            titles = sorted({e.title for e in train})
            _, held_t = heldout_split(len(titles), heldout)
            held_titles = {titles[i] for i in held_t}
            dev = [e for e in train if e.title in held_titles]
            train = [e for e in train if e.title not in held_titles]
            heldout_info = {
                "heldout": {
                    "n": len(dev),
                    "of": len(dev) + len(train),
                    "seed": heldout.seed,
                    "n_articles": len(held_titles),
                }
            }
        stride = getattr(profile, "doc_stride", None) or max(8, profile.max_length // 4)
        settings = {
            "task": task,
            "max_length": profile.max_length,
            "stride": stride,
            "train_size": profile.train_size,
            "eval_size": profile.eval_size,
            "subset_seed": profile.subset_seed,
        }
        tr = cached(
            "squad",
            {**settings, "part": "train"},
            tokenizer,
            train,
            lambda: prepare_train_features(train, tokenizer, max_length=profile.max_length, stride=stride),
        )
        model_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tr]
        ev = cached(
            "squad",
            {**settings, "part": "eval"},
            tokenizer,
            dev,
            lambda: prepare_eval_features(dev, tokenizer, max_length=profile.max_length, stride=stride),
        )
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
                span_text = {q: t for q, (t, _) in spans.items()}
                odds = {q: o for q, (_, o) in spans.items()}
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
            # every window is padded to max_length: one shape, compiled (profile.torch_compile) or not
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
                **heldout_info,
                "eval": {
                    **({"protocol": "heldout part of the training subset"} if heldout else splits.eval_info),
                    "n_examples": len(dev),
                    "of": len(splits.eval),
                    "n_unanswerable_in_subset": sum(e.is_impossible for e in dev),
                    "n_windows": len(ev["input_ids"]),
                    "seed": profile.subset_seed,
                },
            },
        )


#: the SQuAD family (see :func:`validation.finetune.tasks.task_family`)
SQUAD = SquadFamily()

__all__ = ["QA_TASKS", "SQUAD", "FeatureDataset", "SquadFamily"]
