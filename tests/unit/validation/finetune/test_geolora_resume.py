"""A GeoLoRA cell is not resumable: interrupted, it restarts from step 0 and ends as the uninterrupted cell (CPU).

GeoLoRA's integrator keeps state the Trainer's checkpoint does not hold (its step count, the rank and parameter
trajectories, the truncated factors' shapes). While GeoLoRA was marked resumable, a cell stopped at step 7 and
resumed from checkpoint-6 ended with 6 recorded integrator steps instead of 12, other mean parameters, final
ranks and losses (found 2026-12-01 in the review of ``validation.finetune.ckpt_carry``). Now the method trains
without checkpoints, so nothing could be carried or resumed half-way, and a rerun starts again from step 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from synthetic.tiny_models import save_tiny_model
from validation.finetune import stop
from validation.finetune.runner import get_profile, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class _StopAfter(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            stop.request()


def _cell(run_dir: Path, profile: Any, factories: list[Any]) -> dict[str, Any]:
    try:
        return run_cell(
            "rte", "geolora", 0, profile=profile, run_dir=run_dir, device="cpu", callback_factories=factories
        )
    finally:
        stop.clear()


def test_an_interrupted_geolora_cell_restarts_and_ends_as_the_uninterrupted_one(tmp_path: Path) -> None:
    model = save_tiny_model("bert", tmp_path / "bert")
    profile = get_profile("test", model=str(model), batch_size=4, epochs=1.5, save_steps=3)
    ref = _cell(tmp_path / "ref", profile, [])
    with pytest.raises(stop.StopRequested):
        _cell(tmp_path / "cut", profile, [lambda _ctx: _StopAfter(7)])
    # no checkpoint was written, so nothing can be carried to another session or resumed half-way
    assert not list((tmp_path / "cut").glob("work/*/checkpoint-*"))
    res = _cell(tmp_path / "cut", profile, [])
    assert res["train"]["resumed_from"] is None
    assert res["train"]["steps"] == ref["train"]["steps"]
    assert res["train"]["loss_curve"] == ref["train"]["loss_curve"]
    assert res["metrics"] == ref["metrics"]
    assert res["method_info"]["summary"] == ref["method_info"]["summary"]
    assert res["method_info"]["rank_trajectory"] == ref["method_info"]["rank_trajectory"]
