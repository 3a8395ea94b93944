"""The Trainer checkpoints of a run's work folder: which one a run resumes from, which saves were cut short.

One rule for the runner (:func:`validation.finetune.runner.train_and_score` resumes from
:func:`last_checkpoint`), the grid summary and :mod:`validation.finetune.ckpt_carry` (which carries that same
checkpoint between device sessions). ``transformers.trainer_utils.get_last_checkpoint`` takes the highest step
whatever the folder holds; a folder half written by a hard exit during a save is passed over here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = [
    "CHECKPOINT_RE",
    "TRAINER_STATE",
    "checkpoints",
    "is_complete",
    "last_checkpoint",
    "partial_checkpoints",
]

#: a checkpoint folder's name (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR and get_last_checkpoint)
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
#: the file a Trainer checkpoint gets last (``Trainer._save_checkpoint`` saves the model, optimizer,
#: scheduler and RNG states first): a checkpoint folder without it was cut short during its save
TRAINER_STATE = "trainer_state.json"


def checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-<step>`` folder in ``work_dir``, highest step first."""
    if not work_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in work_dir.iterdir()
        if (m := CHECKPOINT_RE.fullmatch(p.name)) is not None and p.is_dir() and not p.is_symlink()
    ]
    return sorted(found, reverse=True)


def is_complete(checkpoint: Path) -> bool:
    """Whether a checkpoint folder's save ended: ``trainer_state.json`` (written last, and not atomically)
    exists and reads as JSON."""
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(work_dir: Path) -> Path | None:
    """The highest-step complete ``checkpoint-<step>`` folder in ``work_dir`` (:func:`is_complete`), or None:
    the checkpoint a run resumes from and the one that travels."""
    for _, p in checkpoints(work_dir):
        if is_complete(p):
            return p
    return None


def partial_checkpoints(work_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of ``work_dir`` above its :func:`last_checkpoint` without a readable
    ``trainer_state.json`` (saves cut short), highest step first."""
    out = []
    for _, p in checkpoints(work_dir):
        if is_complete(p):
            break
        out.append(p)
    return out
