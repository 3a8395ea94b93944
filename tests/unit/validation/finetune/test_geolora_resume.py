"""A GeoLoRA cell stopped (SIGTERM path) and resumed ends exactly as the uninterrupted cell (CPU).

GeoLoRA's integrator keeps state the Trainer's checkpoint does not hold (its step count, the RMS statistics
of its preconditioner, the rank and parameter trajectories); the callback writes it beside each checkpoint
(``gelora_geolora_state.pt``) and puts it back when the cell resumes. Before that (found 2026-12-01 in the
review of ``validation.finetune.ckpt_carry``), a cell stopped at step 7 and resumed from checkpoint-6 ended
with 6 recorded integrator steps instead of 12 and other ranks, parameters and losses. Compared here: the
loss curve, dev metrics, the integrator's summary and rank trajectory. A checkpoint without the state file
(written by the older code) is not resumed: the cell restarts from step 0 and says why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from synthetic.tiny_models import save_tiny_model
from validation.finetune import stop
from validation.finetune.geolora.method import STATE_FILE
from validation.finetune.runner import get_profile, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CELL = "rte__geolora__seed0"


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


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    root = tmp_path_factory.mktemp("geolora_resume")
    model = save_tiny_model("bert", root / "bert")
    profile = get_profile("test", model=str(model), batch_size=4, epochs=1.5, save_steps=3)
    return profile, _cell(root / "ref", profile, [])


def _stop_after(run_dir: Path, profile: Any, step: int) -> None:
    """Run the cell until the end of ``step`` and stop it there, as after a SIGTERM."""
    with pytest.raises(stop.StopRequested):
        _cell(run_dir, profile, [lambda _ctx: _StopAfter(step)])


def _same(res: dict[str, Any], ref: dict[str, Any]) -> None:
    assert res["train"]["steps"] == ref["train"]["steps"]
    assert res["train"]["loss_curve"] == ref["train"]["loss_curve"]
    assert res["metrics"] == ref["metrics"] and res["eval_loss"] == ref["eval_loss"]
    assert res["method_info"]["summary"] == ref["method_info"]["summary"]
    assert res["method_info"]["rank_trajectory"] == ref["method_info"]["rank_trajectory"]
    assert res["method_info"]["param_trajectory"] == ref["method_info"]["param_trajectory"]


def test_a_stopped_geolora_cell_resumes_to_the_uninterrupted_result(
    setting: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    profile, ref = setting
    _stop_after(tmp_path, profile, 7)
    assert (tmp_path / "work" / CELL / "checkpoint-6" / STATE_FILE).is_file()
    res = _cell(tmp_path, profile, [])
    assert res["train"]["resumed_from"] == os.path.join("work", CELL, "checkpoint-6")
    _same(res, ref)


def test_a_checkpoint_without_the_integrator_state_restarts_the_cell(
    setting: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    profile, ref = setting
    _stop_after(tmp_path, profile, 7)
    (tmp_path / "work" / CELL / "checkpoint-6" / STATE_FILE).unlink()  # as the older code left them
    res = _cell(tmp_path, profile, [])
    assert res["train"]["resumed_from"] is None
    assert res["train"]["restarted_discarding"] == os.path.join("work", CELL, "checkpoint-6")
    assert STATE_FILE in res["train"]["restart_reason"]
    _same(res, ref)


def test_resume_is_exact_between_augment_and_truncate(tmp_path: Path) -> None:
    """With ``coefficient_steps`` the Trainer's optimizer trains S between GeoLoRA's augment and truncate
    steps (a period of 3 steps here); a checkpoint inside a period (every 4 steps) resumes exactly too."""
    model = save_tiny_model("bert", tmp_path / "bert")
    profile = get_profile(
        "test",
        model=str(model),
        batch_size=4,
        epochs=1.5,
        save_steps=4,
        method_options={"geolora": {"coefficient_steps": 2}},
    )
    ref = _cell(tmp_path / "ref", profile, [])
    _stop_after(tmp_path / "cut", profile, 5)
    res = _cell(tmp_path / "cut", profile, [])
    assert res["train"]["resumed_from"] == os.path.join("work", CELL, "checkpoint-4")
    _same(res, ref)
