"""An AdaLoRA cell stopped (SIGTERM path) and resumed ends exactly as the uninterrupted cell (CPU).

The cells run through :func:`validation.finetune.runner.run_cell` on a tiny random BERT (2 blocks, width 32,
adapters on query/value) with the test profile cut to 12 optimizer steps, a checkpoint every 3 steps and the
schedule ``tinit=2, tfinal=4``: warm-up at steps 0..2, budgeting 3..7, final allocation at 8, final phase
9..11. A stop is requested at the end of step 7 (resumes from checkpoint-6, inside the budgeting phase) or of
step 11 (resumes from checkpoint-9, in the final phase); the stop callback raises
:class:`~validation.finetune.stop.StopRequested` as after a real SIGTERM.

Compared bit for bit: the final trainable parameters, the rank pattern, the dev metrics and eval loss, the
logged loss curve (its points before the resume come from the checkpoint's Trainer state, those after it are
recomputed) and ``method_info`` (allocated ranks, scheduled steps, budget). Not compared: ``train_loss``,
which the Trainer computes over the steps of the current ``train()`` call only (a resumed run's mean is over
the steps after its checkpoint), and wall times.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gelora.errors import CheckpointMismatchError
from synthetic.tiny_models import save_tiny_model
from validation.finetune import stop
from validation.finetune.adalora_resume import STATE_FILE
from validation.finetune.runner import Profile, get_profile, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCHEDULE = {"tinit": 2, "tfinal": 4}
CELL = "rte__adalora__seed0"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert") / "bert")


def _profile(model_dir: Path, **adalora: Any) -> Profile:
    # 32 examples, batch 4, 1.5 epochs: 12 steps (the resume crosses an epoch boundary: epoch 1 has 8 steps)
    return get_profile(
        "test",
        model=str(model_dir),
        batch_size=4,
        epochs=1.5,
        save_steps=3,
        method_options={"adalora": {**SCHEDULE, **adalora}},
    )


def _capture(out: dict[str, Any], stop_after: int | None) -> Callable[[Any], Any]:
    """A callback factory: request a stop at the end of step ``stop_after``; keep the final parameters."""
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if stop_after is not None and state.global_step == stop_after:
                stop.request()  # the stop callback (after this one) raises StopRequested

        def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            out["params"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            out["rank_pattern"] = dict(model.peft_config["default"].rank_pattern)

    return lambda context: Probe()


def _run(
    run_dir: Path, profile: Profile, stop_after: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    seen: dict[str, Any] = {}
    try:
        result = run_cell(
            "rte",
            "adalora",
            0,
            profile=profile,
            run_dir=run_dir,
            device="cpu",
            callback_factories=[_capture(seen, stop_after)],
        )
    finally:
        stop.clear()
    return result, seen


def _interrupt(run_dir: Path, profile: Profile, stop_after: int) -> Path:
    with pytest.raises(stop.StopRequested):
        _run(run_dir, profile, stop_after)
    return run_dir / "work" / CELL


@pytest.fixture(scope="module")
def reference(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted cells (fast and peft allocation paths)."""
    out = {}
    for allocator in ("fast", "peft"):
        run_dir = tmp_path_factory.mktemp(f"reference-{allocator}")
        out[allocator] = _run(run_dir, _profile(tiny_bert, allocator=allocator))
    return out


@pytest.mark.parametrize(
    ("allocator", "stop_after", "checkpoint"),
    [("fast", 7, 6), ("fast", 11, 9), ("peft", 7, 6), ("peft", 11, 9)],
    ids=["fast-budgeting", "fast-final-phase", "peft-budgeting", "peft-final-phase"],
)
def test_resumed_cell_equals_the_uninterrupted_one(
    allocator: str,
    stop_after: int,
    checkpoint: int,
    tiny_bert: Path,
    reference: dict[str, Any],
    tmp_path: Path,
) -> None:
    profile = _profile(tiny_bert, allocator=allocator)
    work = _interrupt(tmp_path, profile, stop_after)
    assert sorted(p.name for p in work.glob("checkpoint-*")) == [f"checkpoint-{checkpoint}"]
    saved = work / f"checkpoint-{checkpoint}"
    assert (saved / STATE_FILE).is_file()
    # the Trainer's adapter file keeps the init_r shapes (12 = ceil(1.5 * 8)), loadable into a fresh model
    from safetensors import safe_open

    with safe_open(str(saved / "adapter_model.safetensors"), framework="pt") as f:
        e_shapes = {tuple(f.get_slice(k).get_shape()) for k in f.keys() if "lora_E" in k}
    assert e_shapes == {(12, 1)}

    result, seen = _run(tmp_path, profile)
    ref, ref_seen = reference[allocator]
    train, ref_train = result["train"], ref["train"]
    assert train["resumed_from"] == os.path.join("work", CELL, f"checkpoint-{checkpoint}")
    assert train["restarted_discarding"] is None and train["restart_reason"] is None
    assert train["steps"] == ref_train["steps"] == 12
    assert train["loss_curve"] == ref_train["loss_curve"] and len(train["loss_curve"]) == 12
    assert result["metrics"] == ref["metrics"] and result["eval_loss"] == ref["eval_loss"]
    assert result["method_info"] == ref["method_info"]
    assert result["method_info"]["schedule_calls"] == 12 and result["method_info"]["allocator"] == allocator
    assert seen["rank_pattern"] == ref_seen["rank_pattern"]
    assert seen["params"].keys() == ref_seen["params"].keys()
    for name, value in ref_seen["params"].items():
        assert torch.equal(seen["params"][name], value), name


def test_checkpoint_of_another_configuration_is_an_error(tiny_bert: Path, tmp_path: Path) -> None:
    _interrupt(tmp_path, _profile(tiny_bert), 7)
    with pytest.raises(CheckpointMismatchError, match="tfinal: checkpoint 4, this cell 3"):
        _run(tmp_path, _profile(tiny_bert, tfinal=3))
    assert (tmp_path / "work" / CELL / "checkpoint-6" / STATE_FILE).is_file()  # left for the right config


def test_checkpoint_without_allocation_state_restarts_and_says_so(tiny_bert: Path, tmp_path: Path) -> None:
    work = _interrupt(tmp_path, _profile(tiny_bert), 7)
    (work / "checkpoint-6" / STATE_FILE).unlink()  # e.g. written by a version that did not save it
    result, _ = _run(tmp_path, _profile(tiny_bert))
    train = result["train"]
    assert train["resumed_from"] is None
    assert train["restarted_discarding"] == os.path.join("work", CELL, "checkpoint-6")
    assert STATE_FILE in train["restart_reason"] and "cannot be resumed" in train["restart_reason"]
    assert train["steps"] == 12 and result["method_info"]["schedule_calls"] == 12


def test_saves_outside_training_stay_pruned(tiny_bert: Path, tmp_path: Path) -> None:
    """Only the Trainer's checkpoints during training keep the init_r shapes; a later save is peft's (pruned)."""
    from transformers import AutoModelForSequenceClassification

    from validation.finetune.methods import MethodContext, get_method

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    ctx = MethodContext(task="rte", tokenizer=None, lora_r=2, options={"adalora": {"tinit": 0, "tfinal": 0}})
    prepared = get_method("adalora")(model, budget_params=1, train_steps=4, seed=0, context=ctx)
    (callback,) = prepared.callbacks
    assert callback.resume.active is False
    base = prepared.model.base_model
    pattern = {n: [True, False, True] for n, p in base.model.named_parameters() if "lora_E" in n}
    base.peft_config["default"].rank_pattern = pattern
    prepared.model.save_pretrained(str(tmp_path / "export"))
    assert not (tmp_path / "export" / STATE_FILE).exists()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "export" / "adapter_model.safetensors"), framework="pt") as f:
        e_shapes = {tuple(f.get_slice(k).get_shape()) for k in f.keys() if "lora_E" in k}
    assert e_shapes == {(2, 1)}
