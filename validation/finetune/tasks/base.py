"""What the runner needs from a task, and the interface every task family implements.

A task family (GLUE, SQuAD) owns everything task-specific: reading and subsetting its splits,
tokenisation, the model head, batch collation, the metric and any post-processing of predictions.
:func:`validation.finetune.runner.run_cell` asks :func:`validation.finetune.tasks.task_family` for the
family of a task name and trains whatever :class:`TaskData` it builds, without knowing which family it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gelora.errors import ConfigError


class DataProfile(Protocol):
    """The settings a task family reads (the runner's :class:`~validation.finetune.runner.Profile` has them)."""

    @property
    def max_length(self) -> int:
        """Token length (pairs truncated longest-first)."""
        ...

    @property
    def train_size(self) -> int | None:
        """Training examples drawn with ``subset_seed`` (None = the whole split)."""
        ...

    @property
    def eval_size(self) -> int | None:
        """Evaluation examples drawn with ``subset_seed`` (None = the whole split)."""
        ...

    @property
    def subset_seed(self) -> int:
        """Seed of the data subsets, the same for every method and training seed."""
        ...


#: with ``torch_compile`` (:class:`validation.finetune.runner.Profile`), a batch of variable-length examples
#: is padded to its longest length rounded up to a multiple of this, capped at ``max_length``
#: (:class:`BucketPadding`): a compiled model sees a few fixed lengths instead of one per batch
COMPILE_PAD_MULTIPLE = 32


def compiles(profile: Any) -> bool:
    """Whether ``profile`` asks for a compiled model (``torch_compile``; absent: no, as before the option)."""
    return bool(getattr(profile, "torch_compile", False))


@dataclass
class BucketPadding:
    """A collator padding every batch to a bucket length: the longest example rounded up to a multiple of
    ``multiple``, at most ``max_length`` (never below the longest example).

    With a compiled model (``Profile.torch_compile``) each distinct input shape is one compilation; padding
    to the batch's own longest length (``DataCollatorWithPadding``'s default) would make one per length.
    The padded positions are masked (``attention_mask`` 0), as with per-batch padding.

    Attributes
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase
        Pads the batch (its pad token, padding side).
    max_length : int
        The profile's token length (the largest bucket).
    multiple : int
        Bucket width (default :data:`COMPILE_PAD_MULTIPLE`).
    """

    tokenizer: Any
    max_length: int
    multiple: int = COMPILE_PAD_MULTIPLE

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.max_length < 1:
            raise ConfigError(
                f"bucket padding needs positive sizes, got {self.multiple} and {self.max_length}"
            )
        self._collators: dict[int, Any] = {}

    def bucket(self, longest: int) -> int:
        """The padded length of a batch whose longest example has ``longest`` tokens."""
        rounded = -(-int(longest) // self.multiple) * self.multiple
        return max(int(longest), min(rounded, self.max_length))

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from transformers import DataCollatorWithPadding

        length = self.bucket(max(len(f["input_ids"]) for f in features))
        if length not in self._collators:
            self._collators[length] = DataCollatorWithPadding(
                self.tokenizer, padding="max_length", max_length=length
            )
        batch: dict[str, Any] = self._collators[length](features)
        return batch


@dataclass(frozen=True)
class Heldout:
    """A held-out part of the *training* data, for choosing hyper-parameters (never the reported dev set).

    Attributes
    ----------
    fraction : float
        Share of the (subsetted) training examples held out, in (0, 1).
    seed : int
        Seed of the split (:func:`heldout_split`).
    max_n : int or None
        Cap on the held-out examples (None = no cap).
    """

    fraction: float = 0.1
    seed: int = 0
    max_n: int | None = None


def heldout_split(n: int, heldout: Heldout) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)`` of ``n`` examples: a seeded, disjoint split, both sorted.

    Raises
    ------
    ConfigError
        ``fraction`` outside (0, 1), or ``n`` too small to leave an example on both sides.
    """
    if not 0 < heldout.fraction < 1:
        raise ConfigError(f"held-out fraction must be in (0, 1), got {heldout.fraction}")
    k = max(1, round(heldout.fraction * n))
    if heldout.max_n is not None:
        k = min(k, int(heldout.max_n))
    if n < 2 or k >= n:
        raise ConfigError(f"cannot hold out {heldout.fraction:g} of {n} training examples")
    perm = np.random.default_rng(heldout.seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


@dataclass
class TaskData:
    """What :func:`run_cell` needs to know about a task (built by its :class:`TaskFamily`).

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


class TaskFamily(Protocol):
    """A family of tasks sharing data format, model head and scoring.

    Attributes
    ----------
    name : str
        Family name (``"glue"``, ``"squad"``).
    """

    name: str

    def owns(self, task: str) -> bool:
        """Whether ``task`` (any accepted spelling) belongs to this family."""
        ...

    def canonical(self, task: str) -> str:
        """The canonical task name recorded in cells (``"sts-b"`` -> ``"stsb"``); raises ConfigError."""
        ...

    def build(
        self,
        task: str,
        tokenizer: Any,
        profile: DataProfile,
        data_dir: str | Path | None,
        heldout: Heldout | None = None,
    ) -> TaskData:
        """Load, subset (``profile.train_size`` / ``eval_size`` with ``profile.subset_seed``) and tokenise.

        With ``heldout``, the training subset is split (:func:`heldout_split`): the model trains on the
        rest and is scored on the held-out part; the dev set is not used. ``data["heldout"]`` records
        ``n``, ``of`` and ``seed``.
        """
        ...


__all__ = [
    "COMPILE_PAD_MULTIPLE",
    "BucketPadding",
    "DataProfile",
    "Heldout",
    "TaskData",
    "TaskFamily",
    "compiles",
    "heldout_split",
]
