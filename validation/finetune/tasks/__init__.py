"""Task families of the fine-tuning suite and the registry the runner asks.

``task_family(task).build(task, tokenizer, profile, data_dir)`` gives the :class:`TaskData` of any task
the suite trains: GLUE (:mod:`.glue`) or SQuAD (:mod:`.squad`). A new family implements
:class:`TaskFamily` (:mod:`.base`) and is added to :data:`FAMILIES`.
"""

from __future__ import annotations

from validation.finetune.tasks.base import DataProfile, TaskData, TaskFamily
from validation.finetune.tasks.glue import GLUE, EncodedDataset, encode_split
from validation.finetune.tasks.squad import QA_TASKS, SQUAD, FeatureDataset

#: every family, asked in this order which one owns a task name
FAMILIES: tuple[TaskFamily, ...] = (SQUAD, GLUE)


def task_family(task: str) -> TaskFamily:
    """The family that owns ``task``.

    Parameters
    ----------
    task : str
        A task name (``"rte"``, ``"sts-b"``, ``"squad_v2"``).

    Returns
    -------
    TaskFamily
        The first family of :data:`FAMILIES` that owns it; GLUE when none does, whose
        ``canonical`` / ``build`` then raise ConfigError naming the known GLUE tasks (as before the
        families existed).
    """
    return next((family for family in FAMILIES if family.owns(task)), GLUE)


__all__ = [
    "FAMILIES",
    "DataProfile",
    "QA_TASKS",
    "EncodedDataset",
    "FeatureDataset",
    "TaskData",
    "TaskFamily",
    "encode_split",
    "task_family",
]
