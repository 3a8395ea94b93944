"""Trainer checkpoints that hold only what training changes, for models that are not peft models.

GeoLoRA (:mod:`validation.finetune.geolora.method`) and head-only cells train a plain ``transformers`` model
whose pretrained weights are frozen. The Trainer saves such a model whole: a checkpoint of 87-90 MiB on
MiniLM-L6 and 423-433 MiB on MPNet-base, too large for :mod:`validation.finetune.ckpt_carry` to move between
device sessions (``--max-checkpoint-mib 60``), although the frozen weights never change. With only the trained
tensors: 0.7 (head only) and 3.3 MiB (GeoLoRA) on MiniLM-L6, 7.5 and 17.7 MiB on MPNet-base (all-linear
adapters, r = 8; command in CONTRIBUTING.md, "Carrying unfinished cells' checkpoints").

:class:`TrainedOnlyCheckpoints` wraps the model's ``save_pretrained`` (on the instance) while the Trainer
trains, so that a checkpoint's ``model.safetensors`` holds the *trained tensors* only
(:func:`trained_state_dict`: the parameters that require a gradient -- GeoLoRA's factors and the task head,
or the head alone -- and the persistent buffers, such as GeoLoRA's ``lora_rank``). Nothing else changes
during training: the frozen parameters are in no optimizer and no integrator.

On resume the Trainer loads ``model.safetensors`` with ``load_state_dict(..., strict=False)``
(``Trainer._load_from_checkpoint``, transformers 5): the trained tensors overwrite those of the freshly
prepared model, whose frozen weights are the pretrained ones the checkpoint left out, so the model is the one
that was saved, bit for bit. This rests on every frozen tensor coming from the pretrained files (true of the
runner's models: only the head, which is trained and saved, is newly initialised by ``from_pretrained``); a
frozen tensor initialised at random would be rebuilt from the seed, identical only on the same library
versions. A checkpoint is therefore not a standalone model (``from_pretrained`` of it gets a random encoder). The Trainer logs the frozen weights as "missing keys"; that is expected. Its
loader would accept nearly any file (a tensor of an unknown name is ignored, a missing one kept as it is;
only a shape mismatch raises), so
:meth:`TrainedOnlyCheckpoints.restore`, called by the runner before training, reads the file's header first
(:func:`check_checkpoint`):

* no readable ``model.safetensors``, or a trained tensor missing from it:
  :class:`~gelora.errors.IncompleteCheckpointError` (the runner restarts the cell from step 0 and records why);
* a tensor the model does not have, or of another shape: :class:`~gelora.errors.CheckpointMismatchError`
  (written by a run of another configuration; the cell fails).

A checkpoint of the whole model (the older code's) passes the check and resumes as before: the
Trainer loads every tensor, the frozen ones equal to the pretrained weights
(tests/unit/validation/finetune/test_geolora_resume.py). Full fine-tuning trains every weight and keeps the
Trainer's whole-model checkpoints; peft models (LoRA, AdaLoRA, GeLoRA) save their adapters and head already.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from gelora.errors import CheckpointMismatchError, IncompleteCheckpointError

__all__ = [
    "MODEL_FILE",
    "TrainedOnlyCheckpoints",
    "check_checkpoint",
    "trained_names",
    "trained_state_dict",
    "trainer_callback_base",
]

#: the model file of a Trainer checkpoint (``transformers.utils.SAFE_WEIGHTS_NAME``)
MODEL_FILE = "model.safetensors"


def trainer_callback_base() -> type:
    """``transformers.TrainerCallback``, imported when a callback class is defined (not at package import)."""
    from transformers import TrainerCallback

    return TrainerCallback


def trained_names(model: Any) -> list[str]:
    """``state_dict`` keys of the tensors training can change, in ``state_dict`` order.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of str
        The parameters with ``requires_grad`` and the persistent buffers.
    """
    keep = _trained_set(model)
    return [k for k in model.state_dict(keep_vars=True) if k in keep]


def _trained_set(model: Any) -> set[str]:
    keep = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    return keep | {n for n, _ in model.named_buffers(remove_duplicate=False)}


def trained_state_dict(model: Any) -> dict[str, Any]:
    """``model.state_dict()`` restricted to :func:`trained_names` (its state-dict hooks run, so GeoLoRA's
    ``lora_rank`` buffers hold the current ranks); one state dict a save, not two."""
    keep = _trained_set(model)
    return {k: v for k, v in model.state_dict().items() if k in keep}


def _header(path: str) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _left_out_on_save(model: Any, name: str, saved: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether ``save_pretrained`` leaves tensor ``name`` out on purpose: a weight tied to one that was saved
    (the same parameter under two names is written once) or a name matching ``_keys_to_ignore_on_save``."""
    if any(state[k] is state[name] for k in saved if k in state):
        return True
    return name in set(
        getattr(model, "_keys_to_ignore_on_save", None) or ()
    )  # matched exactly, as transformers does


def check_checkpoint(model: Any, checkpoint_dir: str | os.PathLike[str]) -> None:
    """Check that ``checkpoint_dir``'s model file loads back into ``model`` (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The freshly prepared model the checkpoint is to be resumed into.
    checkpoint_dir : str or PathLike
        A Trainer checkpoint folder.

    Raises
    ------
    gelora.errors.IncompleteCheckpointError
        :data:`MODEL_FILE` is missing or unreadable, or lacks a trained tensor (a weight tied to a saved one,
        or one ``save_pretrained`` ignores by design, is not missing).
    gelora.errors.CheckpointMismatchError
        It holds a tensor the model does not have, or one of another shape.
    """
    path = os.path.join(os.fspath(checkpoint_dir), MODEL_FILE)
    if not os.path.isfile(path):
        raise IncompleteCheckpointError(f"{path} not found: the checkpoint cannot be resumed")
    try:
        saved = _header(path)
    except Exception as exc:  # noqa: BLE001  # any unreadable file is an incomplete checkpoint
        raise IncompleteCheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    state = model.state_dict(keep_vars=True)
    unknown = sorted(set(saved) - set(state))
    shapes = sorted(k for k in set(saved) & set(state) if saved[k] != tuple(state[k].shape))
    if unknown or shapes:
        raise CheckpointMismatchError(
            f"{path} was written by a run of another configuration (tensors this model lacks: {unknown[:3]}; "
            f"of other shapes: {[(k, saved[k], tuple(state[k].shape)) for k in shapes[:3]]}): remove the "
            "cell's work folder to start it afresh"
        )
    missing = [
        k for k in trained_names(model) if k not in saved and not _left_out_on_save(model, k, saved, state)
    ]
    if missing:
        raise IncompleteCheckpointError(
            f"{path} lacks {len(missing)} trained tensors ({missing[:3]}): the checkpoint cannot be resumed"
        )


class TrainedOnlyCheckpoints(trainer_callback_base()):  # type: ignore[misc]
    """Trainer callback: checkpoints of ``model`` hold its trained tensors only (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The model the Trainer trains and saves (not a peft model); its ``save_pretrained`` is wrapped on the
        instance (a stand-in without one is left as it is: the Trainer then saves its whole state dict).
    after_save : callable or None
        ``after_save(directory)``, called on the main process after each checkpoint's model is saved while
        training (GeoLoRA writes its integrator state there: the Trainer deletes the older checkpoint before
        ``on_save``, so a state written in ``on_save`` would leave a moment with no resumable checkpoint).

    Attributes
    ----------
    active : bool
        From ``on_train_begin`` to ``on_train_end``: saves hold the trained tensors only; outside training,
        ``save_pretrained`` saves the whole model as usual.
    """

    def __init__(self, model: Any, *, after_save: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.model = model
        self.after_save = after_save
        self.active = False
        save = getattr(model, "save_pretrained", None)
        if save is None:
            return

        @functools.wraps(save)
        def save_pretrained(save_directory: str, *args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return save(save_directory, *args, **kwargs)
            if kwargs.get("state_dict") is None and len(args) < 2:  # the Trainer passes state_dict=None
                kwargs["state_dict"] = trained_state_dict(model)
            out = save(save_directory, *args, **kwargs)
            if self.after_save is not None and kwargs.get("is_main_process", True):
                self.after_save(save_directory)
            return out

        model.save_pretrained = save_pretrained

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.active = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.active = False
        return control

    def restore(self, checkpoint_dir: str) -> None:
        """:func:`check_checkpoint` for the runner (``PreparedMethod.restore``); the Trainer loads the weights."""
        check_checkpoint(self.model, checkpoint_dir)
