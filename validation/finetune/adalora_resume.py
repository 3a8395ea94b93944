"""Resumable AdaLoRA cells: checkpoints that load back into a freshly prepared ``init_r`` model.

Why a plain Trainer checkpoint of AdaLoRA cannot be resumed (peft 0.21): ``PeftModel.save_pretrained`` reads
``peft_config.rank_pattern`` (set at every budgeting step) and saves ``lora_A``/``lora_E``/``lora_B`` cut down
to the rows that pattern keeps (``AdaLoraModel._get_adapter_state_dict`` ->
``resize_state_dict_by_rank_pattern``). On resume the Trainer calls ``load_adapter`` on the fresh model, whose
config has no rank pattern yet, so nothing is resized and ``load_state_dict`` fails with a size mismatch
(``[11, 384]`` from the checkpoint, ``[12, 384]`` in the model). Were the model resized instead (peft's
inference path), training would go on with fewer rows than the uninterrupted run, whose pruned rows keep their
``A``/``B`` values and can come back at a later budgeting step. Besides, the allocator's importance averages
(``RankAllocator.ipt`` / ``exp_avg_ipt`` / ``exp_avg_unc``) are in no checkpoint file at all.

What :class:`AdaLoraResume` does:

* while the Trainer trains, a save of the model (:meth:`PeftModel.save_pretrained`, which the Trainer calls in
  ``_save_checkpoint``) runs with ``rank_pattern`` set to ``None`` for the duration of the call, so the
  checkpoint's adapter file holds the ``init_r``-shaped, masked tensors the model trains with, and then writes
  :data:`STATE_FILE` next to it (atomically: temporary name, fsync, rename): the allocator state
  (:meth:`FastAdaLoraAllocator.state_dict`), the scheduled steps, the step and a fingerprint of the
  configuration. Both are written inside the Trainer's checkpoint save, before it deletes older checkpoints;
* :meth:`AdaLoraResume.restore` (called by the runner before ``trainer.train(resume_from_checkpoint=...)``)
  reads and checks that file: :class:`~gelora.errors.IncompleteCheckpointError` if it is missing,
  :class:`~gelora.errors.CheckpointMismatchError` if the checkpoint belongs to another configuration or step;
* the state is put back at ``on_train_begin`` (:meth:`AdaLoraResume.apply`), i.e. after the Trainer has loaded
  the adapter weights: with a rank pattern already set, peft's loader would resize the modules.

The optimizer, scheduler, RNG and Trainer state come back through the Trainer as for every method. Resumed
and uninterrupted runs end bit-identical on CPU (tests/unit/validation/finetune/test_adalora_resume.py).
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import Any

from gelora.errors import CheckpointMismatchError, IncompleteCheckpointError

#: the file of our own inside each Trainer checkpoint folder of an AdaLoRA cell
STATE_FILE = "gelora_adalora_state.pt"
#: format tag of :data:`STATE_FILE`
STATE_FORMAT = "gelora.adalora_state/1"

#: the AdaLoRA config fields a checkpoint must agree on
_CONFIG_FIELDS = (
    "target_r",
    "init_r",
    "tinit",
    "tfinal",
    "deltaT",
    "beta1",
    "beta2",
    "orth_reg_weight",
    "total_step",
    "lora_alpha",
    "lora_dropout",
)


def adalora_fingerprint(peft_model: Any) -> dict[str, Any]:
    """What a checkpoint of ``peft_model`` must share with the model it is resumed into.

    Returns
    -------
    dict
        ``{"config": {AdaLoRA schedule and scaling fields}, "modules": {lora_E parameter name: init_r rows}}``.
    """
    base = peft_model.base_model
    cfg = base.peft_config[base.trainable_adapter_name]
    config = {k: getattr(cfg, k, None) for k in _CONFIG_FIELDS}
    adapter = base.trainable_adapter_name
    modules = {n: int(p.shape[0]) for n, p in base.model.named_parameters() if f"lora_E.{adapter}" in n}
    return {"config": config, "modules": modules}


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = [
        f"{k}: checkpoint {saved['config'].get(k)!r}, this cell {v!r}"
        for k, v in current["config"].items()
        if saved["config"].get(k) != v
    ]
    if saved["modules"] != current["modules"]:
        only_saved = sorted(set(saved["modules"]) - set(current["modules"]))
        only_here = sorted(set(current["modules"]) - set(saved["modules"]))
        rows = sorted(
            n
            for n in set(saved["modules"]) & set(current["modules"])
            if saved["modules"][n] != current["modules"][n]
        )
        out.append(
            f"adapted modules differ (only in the checkpoint: {only_saved[:3]}, only here: {only_here[:3]}, "
            f"other init_r rows: {rows[:3]})"
        )
    return out


def checkpoint_step(checkpoint: str | Path) -> int | None:
    """The step of a Trainer checkpoint folder ``checkpoint-<step>`` (``None`` for another name)."""
    m = re.fullmatch(r"checkpoint-(\d+)", Path(checkpoint).name)
    return int(m.group(1)) if m else None


class AdaLoraResume:
    """Checkpoint writing and restoring for one AdaLoRA model (see the module docstring).

    Parameters
    ----------
    peft_model : peft.PeftModel
        The AdaLoRA model being trained; its ``save_pretrained`` is wrapped (on the instance; a model without
        one is left as it is).
    allocator : validation.finetune.adalora_fast.FastAdaLoraAllocator
        The allocation step of the schedule callback (it holds the importance state).
    calls : list of int
        The schedule callback's list of scheduled steps (saved and restored in place).

    Attributes
    ----------
    active : bool
        Saves write the resumable form (set by the schedule callback from ``on_train_begin`` to
        ``on_train_end``); outside training, ``save_pretrained`` is peft's (pruned adapters).
    step : int
        The Trainer's ``global_step`` at the last step end (the step a checkpoint saved now belongs to).
    restored : dict or None
        What :meth:`apply` put back (``{"checkpoint", "step"}``), ``None`` for a run that started at step 0.
    """

    def __init__(self, peft_model: Any, allocator: Any, calls: list[int]) -> None:
        self.peft_model = peft_model
        self.allocator = allocator
        self.calls = calls
        self.active = False
        self.step = 0
        self.restored: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_from: str | None = None
        save = getattr(peft_model, "save_pretrained", None)
        if save is None:  # a stand-in without saving (the schedule callback accepts any such model)
            return

        @functools.wraps(save)
        def save_pretrained(save_directory: str, *args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return save(save_directory, *args, **kwargs)
            return self._save(save, save_directory, *args, **kwargs)

        peft_model.save_pretrained = save_pretrained

    # ------------------------------------------------------------------------------------------ save
    def _save(self, save: Any, save_directory: str, *args: Any, **kwargs: Any) -> Any:
        base = self.peft_model.base_model
        cfg = base.peft_config[base.trainable_adapter_name]
        self.allocator.materialise()
        pattern = cfg.rank_pattern
        cfg.rank_pattern = None  # peft prunes the saved adapters to this pattern: keep the init_r shapes
        try:
            out = save(save_directory, *args, **kwargs)
        finally:
            cfg.rank_pattern = pattern  # the same object (the fast allocator checks its identity)
        if kwargs.get("is_main_process", True):
            self.write_state(save_directory)
        return out

    def state(self) -> dict[str, Any]:
        """The content of :data:`STATE_FILE` for the current step."""
        return {
            "format": STATE_FORMAT,
            "step": int(self.step),
            "fingerprint": adalora_fingerprint(self.peft_model),
            "calls": [int(c) for c in self.calls],
            "allocator": self.allocator.state_dict(),
        }

    def write_state(self, directory: str | Path) -> Path:
        """Write :data:`STATE_FILE` into ``directory`` atomically; returns its path."""
        import torch

        from gelora._io import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(self.state(), buf)
        return atomic_write_bytes(Path(directory) / STATE_FILE, buf.getvalue())

    # ------------------------------------------------------------------------------------------ resume
    def restore(self, checkpoint: str | Path) -> None:
        """Read and check ``checkpoint``'s state; :meth:`apply` puts it back when training begins.

        Parameters
        ----------
        checkpoint : str or Path
            A Trainer checkpoint folder ``checkpoint-<step>`` of this cell.

        Raises
        ------
        IncompleteCheckpointError
            The folder has no readable :data:`STATE_FILE` (written by a version that did not save it, or
            not an AdaLoRA checkpoint): the runner restarts the cell from step 0 and records why.
        CheckpointMismatchError
            The state belongs to another configuration (AdaLoRA schedule, ranks, adapted modules) or to another
            step than the folder's.
        """
        import torch

        path = Path(checkpoint) / STATE_FILE
        name = Path(checkpoint).name
        if not path.is_file():
            raise IncompleteCheckpointError(
                f"{name} has no {STATE_FILE} (AdaLoRA's allocation state), so it cannot be resumed"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  # any unreadable file is an incomplete checkpoint
            raise IncompleteCheckpointError(
                f"{name}/{STATE_FILE} cannot be read ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise IncompleteCheckpointError(
                f"{name}/{STATE_FILE} is not an AdaLoRA state ({STATE_FORMAT!r} expected)"
            )
        diffs = _differences(state["fingerprint"], adalora_fingerprint(self.peft_model))
        if diffs:
            raise CheckpointMismatchError(
                f"{checkpoint} was written by an AdaLoRA run of another configuration: {'; '.join(diffs)}. "
                "Remove the cell's work folder to start it afresh."
            )
        step = checkpoint_step(checkpoint)
        if step is not None and int(state["step"]) != step:
            raise CheckpointMismatchError(
                f"{path} holds the state of step {state['step']}, not of step {step}"
            )
        self._pending = state
        self._pending_from = str(checkpoint)

    def apply(self, global_step: int) -> None:
        """Put back the state :meth:`restore` read (``on_train_begin``, after the Trainer loaded its checkpoint).

        Parameters
        ----------
        global_step : int
            The Trainer's step after loading its checkpoint's ``trainer_state.json``.

        Raises
        ------
        CheckpointMismatchError
            The Trainer resumed at another step than the state's (e.g. ``train`` was called with another
            checkpoint than the one restored).
        """
        state, self._pending = self._pending, None
        if state is None:
            return
        if int(state["step"]) != int(global_step):
            raise CheckpointMismatchError(
                f"the Trainer resumed at step {global_step}, the AdaLoRA state of {self._pending_from} is of step "
                f"{state['step']}"
            )
        self.allocator.load_state_dict(state["allocator"])
        self.calls[:] = [int(c) for c in state["calls"]]
        self.step = int(global_step)
        self.restored = {"checkpoint": self._pending_from, "step": int(global_step)}


__all__ = [
    "STATE_FILE",
    "STATE_FORMAT",
    "AdaLoraResume",
    "adalora_fingerprint",
    "checkpoint_step",
]
