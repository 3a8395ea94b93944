"""One exception hierarchy for the whole library.

Every error raised on bad input is a subclass of :class:`GeLoRAError`, so callers can catch one type.
Input problems also subclass :class:`ValueError` so code written against NumPy conventions still works.
"""

from __future__ import annotations


class GeLoRAError(Exception):
    """Base class of every error gelora raises on purpose."""


class InvalidInputError(GeLoRAError, ValueError):
    """An array or argument has the wrong shape, dtype, range or contains NaN/inf."""


class NotEnoughSamplesError(InvalidInputError):
    """Fewer points than the estimator needs (for example fewer than k + 1 for a k-NN estimator)."""


class DegenerateDataError(InvalidInputError):
    """Data without spread: constant rows, a single distinct point, or zero neighbour distances."""


class DuplicatePointsError(DegenerateDataError):
    """Duplicate points give zero nearest-neighbour distances (log(0) in every k-NN estimator)."""


class ConfigError(GeLoRAError, ValueError):
    """An inconsistent or unknown configuration value."""


class TargetModuleError(ConfigError):
    """``target_modules`` or ``layers`` select no module of the model, or more than one where one is meant."""


class UnknownLayerError(GeLoRAError, KeyError):
    """A layer or module name that the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelLoadError(GeLoRAError):
    """A model or tokenizer could not be loaded (unknown path, no network, no hidden states)."""


class ResultFileError(GeLoRAError):
    """A result file is missing, truncated or not valid JSON of the expected schema."""


class CheckpointError(GeLoRAError):
    """A training checkpoint cannot be resumed."""


class CheckpointMismatchError(CheckpointError, ConfigError):
    """A checkpoint was written by a run of another configuration (schedule, ranks or adapted modules)."""


class IncompleteCheckpointError(CheckpointError):
    """A checkpoint lacks state a resume needs (e.g. written by an older version that did not save it)."""


class CheckpointCarryError(CheckpointError):
    """Checkpoints carried between device sessions cannot be restored as they are: a part or file whose
    SHA-256 differs from the manifest, an unsafe archive member (absolute, ``..``, a link or a device), or a
    checkpoint folder already in place with other contents (:mod:`validation.finetune.ckpt_carry`)."""


class GeLoRAWarning(UserWarning):
    """Base class of every warning gelora issues on purpose."""


class SmallSampleWarning(GeLoRAWarning):
    """Fewer points than an estimator needs for a usable estimate (its 95 % interval wider than ±50 %).

    The estimate is still returned; below the estimator's hard minimum a
    :class:`NotEnoughSamplesError` is raised instead. The thresholds and their derivation are in
    ``docs/estimators.md`` ("Smallest sample").
    """


__all__ = [
    "CheckpointCarryError",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "DegenerateDataError",
    "DuplicatePointsError",
    "GeLoRAError",
    "GeLoRAWarning",
    "IncompleteCheckpointError",
    "InvalidInputError",
    "ModelLoadError",
    "NotEnoughSamplesError",
    "ResultFileError",
    "SmallSampleWarning",
    "TargetModuleError",
    "UnknownLayerError",
]
