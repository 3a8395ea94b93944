"""A GeoLoRA or head-only cell stopped (SIGTERM path) and resumed ends exactly as the uninterrupted cell (CPU).

GeoLoRA's integrator keeps state the Trainer's checkpoint does not hold (its step count, the RMS statistics
of its preconditioner, the rank and parameter trajectories); the callback writes it beside each checkpoint
(``gelora_geolora_state.pt``) and puts it back when the cell resumes. Before that (found 2026-12-01 in the
review of ``validation.finetune.ckpt_carry``), a cell stopped at step 7 and resumed from checkpoint-6 ended
with 6 recorded integrator steps instead of 12 and other ranks, parameters and losses. Compared here: the
loss curve, dev metrics, the integrator's summary and rank trajectory, and a digest of every tensor of the
final model. A checkpoint without the state file (written by the older code) is not resumed: the cell
restarts from step 0 and says why.

GeoLoRA and head-only models are not peft models; their checkpoints hold the trained tensors only
(:mod:`validation.finetune.trained_checkpoint`): the adapters' factors and ranks and the head, not the frozen
pretrained weights, which the Trainer saved whole before (a checkpoint of 87-90 MiB on MiniLM-L6, 423-433 MiB
on MPNet-base: too large to carry between device sessions). A whole-model checkpoint of the older code still
resumes exactly; a small one that lacks a trained tensor restarts the cell.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from synthetic.tiny_models import save_tiny_model
from validation.finetune import stop
from validation.finetune import trained_checkpoint as tc
from validation.finetune.geolora.method import STATE_FILE
from validation.finetune.runner import get_profile, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")
METHODS = ("geolora", "head_only")


def cell_of(method: str) -> str:
    return f"rte__{method}__seed0"


class _StopAfter(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            stop.request()


class _Digest(TrainerCallback):
    """SHA-256 of every tensor of the model (frozen ones included) when training ends; the runner records
    ``summary()`` under ``result["callbacks"]["_Digest"]``."""

    def __init__(self) -> None:
        self.sha256: str | None = None

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        h = hashlib.sha256()
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.sha256 = h.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"sha256": self.sha256}


def _cell(run_dir: Path, profile: Any, factories: list[Any], method: str = "geolora") -> dict[str, Any]:
    try:
        return run_cell(
            "rte",
            method,
            0,
            profile=profile,
            run_dir=run_dir,
            device="cpu",
            callback_factories=[*factories, lambda _ctx: _Digest()],
        )
    finally:
        stop.clear()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model("bert", tmp_path_factory.mktemp("geolora_resume") / "bert")


@pytest.fixture(scope="module")
def profile(model_dir: Path) -> Any:
    return get_profile("test", model=str(model_dir), batch_size=4, epochs=1.5, save_steps=3)


@pytest.fixture(scope="module")
def references(profile: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The uninterrupted cell of each method, computed once per module on first use."""
    root = tmp_path_factory.mktemp("references")

    class Refs(dict):  # type: ignore[type-arg]
        def __missing__(self, method: str) -> dict[str, Any]:
            self[method] = _cell(root / method, profile, [], method)
            return self[method]

    return Refs()


def _stop_after(run_dir: Path, profile: Any, step: int, method: str = "geolora") -> None:
    """Run the cell until the end of ``step`` and stop it there, as after a SIGTERM."""
    with pytest.raises(stop.StopRequested):
        _cell(run_dir, profile, [lambda _ctx: _StopAfter(step)], method)


def _same(res: dict[str, Any], ref: dict[str, Any]) -> None:
    assert res["train"]["steps"] == ref["train"]["steps"]
    assert res["train"]["loss_curve"] == ref["train"]["loss_curve"]
    assert res["metrics"] == ref["metrics"] and res["eval_loss"] == ref["eval_loss"]
    assert res["callbacks"]["_Digest"] == ref["callbacks"]["_Digest"]
    assert res["callbacks"]["_Digest"]["sha256"] is not None
    if res["method"] == "geolora":
        assert res["method_info"]["summary"] == ref["method_info"]["summary"]
        assert res["method_info"]["rank_trajectory"] == ref["method_info"]["rank_trajectory"]
        assert res["method_info"]["param_trajectory"] == ref["method_info"]["param_trajectory"]


def _saved_names(checkpoint: Path) -> list[str]:
    with safe_open(str(checkpoint / tc.MODEL_FILE), framework="pt") as f:
        return list(f.keys())


@pytest.mark.parametrize("method", METHODS)
def test_a_stopped_cell_resumes_from_a_checkpoint_of_its_trained_tensors(
    method: str, profile: Any, references: dict[str, dict[str, Any]], model_dir: Path, tmp_path: Path
) -> None:
    ref = references[method]
    _stop_after(tmp_path, profile, 7, method)
    ck = tmp_path / "work" / cell_of(method) / "checkpoint-6"
    names = _saved_names(ck)
    # the head, and for GeoLoRA the factors and ranks of its adapters; no frozen weight of the encoder
    assert names and all(n.startswith("classifier.") or ".lora_" in n for n in names), names
    assert any(n.startswith("classifier.") for n in names)
    assert (".lora_S" in " ".join(names)) == (method == "geolora")
    assert not any(n.startswith("bert.embeddings.") or n.endswith(".base.weight") for n in names)
    full = (model_dir / "model.safetensors").stat().st_size  # the pretrained model, as the Trainer saved it
    assert (ck / tc.MODEL_FILE).stat().st_size < full / 20
    if method == "geolora":
        assert (ck / STATE_FILE).is_file()
    res = _cell(tmp_path, profile, [], method)
    assert res["train"]["resumed_from"] == os.path.join("work", cell_of(method), "checkpoint-6")
    _same(res, ref)


@pytest.mark.parametrize("method", METHODS)
def test_a_whole_model_checkpoint_of_the_older_code_still_resumes_exactly(
    method: str,
    profile: Any,
    references: dict[str, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as m:  # the older code saved ``model.state_dict()`` whole
        m.setattr(tc, "trained_state_dict", lambda model: model.state_dict())
        _stop_after(tmp_path, profile, 7, method)
    ck = tmp_path / "work" / cell_of(method) / "checkpoint-6"
    assert "bert.embeddings.word_embeddings.weight" in _saved_names(ck)
    res = _cell(tmp_path, profile, [], method)
    assert res["train"]["resumed_from"] == os.path.join("work", cell_of(method), "checkpoint-6")
    _same(res, references[method])


@pytest.mark.parametrize("method", METHODS)
def test_a_checkpoint_without_a_trained_tensor_restarts_the_cell(
    method: str, profile: Any, references: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    _stop_after(tmp_path, profile, 7, method)
    ck = tmp_path / "work" / cell_of(method) / "checkpoint-6"
    tensors = load_file(str(ck / tc.MODEL_FILE))
    del tensors["classifier.bias"]  # the Trainer would keep the fresh model's bias and train on
    save_file(tensors, str(ck / tc.MODEL_FILE), metadata={"format": "pt"})
    res = _cell(tmp_path, profile, [], method)
    assert res["train"]["resumed_from"] is None
    assert res["train"]["restarted_discarding"] == os.path.join("work", cell_of(method), "checkpoint-6")
    assert "classifier.bias" in res["train"]["restart_reason"]
    _same(res, references[method])


@pytest.mark.parametrize("method", METHODS)
def test_a_save_cut_short_is_passed_over_for_the_complete_checkpoint_below_it(
    method: str, profile: Any, references: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A hard exit during a save leaves the newest folder without ``trainer_state.json`` (written last): the
    cell resumes from the complete checkpoint below it (it restarted from scratch, deleting that checkpoint,
    or failed, while the runner took the highest step whatever it held)."""
    _stop_after(tmp_path, profile, 7, method)
    work = tmp_path / "work" / cell_of(method)
    cut = work / "checkpoint-9"
    cut.mkdir()
    whole = (work / "checkpoint-6" / tc.MODEL_FILE).read_bytes()
    (cut / tc.MODEL_FILE).write_bytes(whole[: len(whole) // 2])
    res = _cell(tmp_path, profile, [], method)
    assert res["train"]["resumed_from"] == os.path.join("work", cell_of(method), "checkpoint-6")
    assert res["train"]["restarted_discarding"] is None
    _same(res, references[method])


def test_a_checkpoint_without_the_integrator_state_restarts_the_cell(
    profile: Any, references: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    _stop_after(tmp_path, profile, 7)
    # as the code before resumable GeoLoRA cells left them
    (tmp_path / "work" / cell_of("geolora") / "checkpoint-6" / STATE_FILE).unlink()
    res = _cell(tmp_path, profile, [])
    assert res["train"]["resumed_from"] is None
    assert res["train"]["restarted_discarding"] == os.path.join("work", cell_of("geolora"), "checkpoint-6")
    assert STATE_FILE in res["train"]["restart_reason"]
    _same(res, references["geolora"])


def test_resume_is_exact_between_augment_and_truncate(model_dir: Path, tmp_path: Path) -> None:
    """With ``coefficient_steps`` the Trainer's optimizer trains S between GeoLoRA's augment and truncate
    steps (a period of 3 steps here); a checkpoint inside a period (every 4 steps) resumes exactly too."""
    profile = get_profile(
        "test",
        model=str(model_dir),
        batch_size=4,
        epochs=1.5,
        save_steps=4,
        method_options={"geolora": {"coefficient_steps": 2}},
    )
    ref = _cell(tmp_path / "ref", profile, [])
    _stop_after(tmp_path / "cut", profile, 5)
    res = _cell(tmp_path / "cut", profile, [])
    assert res["train"]["resumed_from"] == os.path.join("work", cell_of("geolora"), "checkpoint-4")
    _same(res, ref)
