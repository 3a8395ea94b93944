"""The paper protocol: per-task table, loss curve and convergence in cells, learning-rate selection on
held-out training data (resumable), the head-only floor, and tasks without offline data."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gelora._io import read_json
from gelora.errors import ConfigError
from validation.finetune.convergence import heldout_steps
from validation.finetune.lr_select import choose, lr_grid, select_learning_rate, selection_path
from validation.finetune.runner import (
    PAPER_TASK_OVERRIDES,
    PROFILES,
    cell_path,
    get_profile,
    read_cell,
    run_cell,
)
from validation.finetune.tasks.base import Heldout, heldout_split

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


# ------------------------------------------------------------------------------------------ profile
def test_paper_profile_applies_its_per_task_table() -> None:
    paper = get_profile("paper")
    assert paper.target_modules == ("all-linear",) and paper.lora_r == 8 and paper.bf16 and paper.lr_select
    for task, over in PAPER_TASK_OVERRIDES.items():
        eff = paper.for_task(task)
        for key, value in over.items():
            assert getattr(eff, key) == value, (task, key)
    assert paper.for_task("rte").epochs == 50 and paper.for_task("sst2").epochs < paper.for_task("rte").epochs
    assert paper.for_task("squad_v2").doc_stride == 128 and paper.for_task("squad_v2").max_length == 384
    assert paper.for_task("unknown_task") is paper


def test_explicit_settings_win_over_the_task_table() -> None:
    p = get_profile("paper", epochs=1.0, max_length=32, lora_r=2)
    assert p.for_task("rte").epochs == 1.0 and p.for_task("rte").max_length == 32
    assert p.for_task("rte").batch_size == 32  # not overridden: still the table's
    assert p.lora_r == 2


def test_explicit_length_drops_the_tables_squad_stride() -> None:
    # the table's stride 128 belongs to its length 384: with --max-length 64 it would not fit the window
    p = get_profile("paper", max_length=64)
    sq = p.for_task("squad_v2")
    assert sq.max_length == 64 and sq.doc_stride is None and sq.batch_size == 16
    assert get_profile("paper", max_length=64, doc_stride=24).for_task("squad_v1").doc_stride == 24
    assert get_profile("paper", epochs=1.0).for_task("squad_v1").doc_stride == 128  # length untouched


def test_bad_task_override_raises() -> None:
    p = get_profile("test", task_overrides={"rte": {"epoch": 3}})
    with pytest.raises(ConfigError, match="epoch"):
        p.for_task("rte")
    # compile is the whole grid's code path, never one task's
    with pytest.raises(ConfigError, match="torch_compile"):
        get_profile("test", task_overrides={"rte": {"torch_compile": True}}).for_task("rte")


def test_older_profiles_serialise_as_before() -> None:
    # a quick/gpu grid.json written before the paper protocol must still match (resumable runs)
    for name in ("test", "quick", "gpu"):
        d = PROFILES[name].to_dict()
        assert not {"task_overrides", "lr_select", "lr_grid", "doc_stride"} & set(d)
    d = PROFILES["paper"].to_dict()
    assert d["lr_select"] is True and d["lr_grid"] == [0.5, 1.0, 2.0] and d["task_overrides"]["rte"]


# ------------------------------------------------------------------------------------------ held-out
def test_heldout_split_is_seeded_disjoint_and_complete() -> None:
    train, held = heldout_split(100, Heldout(fraction=0.2, seed=3))
    assert len(held) == 20 and len(train) == 80
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(range(100))
    again = heldout_split(100, Heldout(fraction=0.2, seed=3))
    assert np.array_equal(again[1], held)
    assert not np.array_equal(heldout_split(100, Heldout(fraction=0.2, seed=4))[1], held)
    assert len(heldout_split(100, Heldout(fraction=0.5, seed=0, max_n=7))[1]) == 7
    with pytest.raises(ConfigError):
        heldout_split(1, Heldout())
    with pytest.raises(ConfigError):
        heldout_split(10, Heldout(fraction=1.0))


def test_glue_heldout_comes_from_the_training_file_never_dev() -> None:
    from transformers import AutoTokenizer

    from gelora.models import resolve_model_name
    from validation.finetune.tasks import task_family

    tok = AutoTokenizer.from_pretrained(resolve_model_name(None))
    profile = get_profile("test", train_size=40)
    td = task_family("rte").build("rte", tok, profile, None, heldout=Heldout(fraction=0.25, seed=0))
    assert set(td.data["eval"]) == {"heldout"}
    held, train = td.data["eval"]["heldout"], td.data["train"]
    assert held["split"] == train["split"] == "train"
    assert held["source"]["file"] == "glue/RTE/train.tsv.gz"
    assert td.data["heldout"] == {"n": 10, "of": 40, "seed": 0}
    assert len(td.train_ds) == 30


# ------------------------------------------------------------------------------------------ lr selection
class _FakeTrainer:
    """Scores each learning rate by a fixed table; records what it was asked to train."""

    def __init__(self, scores: dict[float, float | None]) -> None:
        self.scores = scores
        self.calls: list[float] = []

    def __call__(self, lr: float, heldout: Heldout, work_dir: Path) -> dict[str, Any]:
        self.calls.append(lr)
        score = self.scores[lr]
        return {
            "metrics": {"accuracy": score},
            "train": {"steps": 3, "convergence": {"converged": False}, "train_time_s": 0.1},
            "data": {"heldout": {"n": 5, "of": 50, "seed": heldout.seed}},
        }


def test_selection_records_grid_scores_and_choice(tmp_path: Path) -> None:
    profile = get_profile("test", lr_select=True, lr_grid=(0.5, 1.0, 2.0), learning_rate=1e-3)
    assert lr_grid(profile, "lora") == [5e-4, 1e-3, 2e-3]
    fake = _FakeTrainer({5e-4: 0.6, 1e-3: 0.7, 2e-3: None})  # 2e-3 diverged: never chosen
    rec = select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, trainer=fake)
    assert rec["chosen"] == 1e-3 and rec["metric"] == "accuracy" and rec["done"]
    assert rec["scores"] == {"0.0005": 0.6, "0.001": 0.7, "0.002": None}
    assert rec["heldout"]["n"] == 5 and rec["heldout"]["of"] == 50 and rec["heldout"]["seed"] == 0
    assert read_json(selection_path(tmp_path, "rte", "lora"))["chosen"] == 1e-3
    # resume: a finished selection trains nothing
    again = _FakeTrainer({})
    assert select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, trainer=again) == rec
    assert again.calls == []
    # another grid in the same run directory is refused
    with pytest.raises(ConfigError, match="another grid"):
        select_learning_rate("rte", "lora", profile=get_profile("test", lr_grid=(1.0,)), run_dir=tmp_path)


def test_interrupted_selection_resumes_at_the_next_rate(tmp_path: Path) -> None:
    profile = get_profile("test", lr_grid=(1.0, 2.0), learning_rate=1e-3)

    class Interrupt(Exception):
        pass

    def dies_on_second(lr: float, heldout: Heldout, work_dir: Path) -> dict[str, Any]:
        if lr == 2e-3:
            raise Interrupt
        return _FakeTrainer({1e-3: 0.5})(lr, heldout, work_dir)

    with pytest.raises(Interrupt):
        select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, trainer=dies_on_second)
    partial = read_json(selection_path(tmp_path, "rte", "lora"))
    assert partial["scores"] == {"0.001": 0.5} and not partial["done"]
    fake = _FakeTrainer({2e-3: 0.9})
    rec = select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, trainer=fake)
    assert fake.calls == [2e-3] and rec["chosen"] == 2e-3


def test_concurrent_workers_share_one_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers of one grid (e.g. seeds 0 and 1 of one method under --workers 2) ask for the same
    selection at once: one trains every rate, the other waits for its file (they used to train into the
    same work folder and delete each other's checkpoints)."""
    import threading
    import time

    import validation.finetune.lr_select as lr_select

    monkeypatch.setattr(lr_select, "_POLL_S", 0.05)
    profile = get_profile("test", lr_grid=(1.0, 2.0), learning_rate=1e-3)
    inner = _FakeTrainer({1e-3: 0.5, 2e-3: 0.6})
    calls: list[float] = []

    def slow(lr: float, heldout: Heldout, work_dir: Path) -> dict[str, Any]:
        calls.append(lr)
        time.sleep(0.3)
        return inner(lr, heldout, work_dir)

    out: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda: out.append(
                select_learning_rate("rte", "lora", profile=profile, run_dir=tmp_path, trainer=slow)
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(calls) == [1e-3, 2e-3]  # each rate trained once, not once per worker
    assert len(out) == 2 and out[0] == out[1] and out[0]["chosen"] == 2e-3


def test_choose_breaks_ties_towards_the_smaller_rate() -> None:
    assert choose({"0.001": 0.5, "0.0005": 0.5, "0.002": 0.4}) == "0.0005"
    with pytest.raises(ConfigError):
        choose({"0.001": None})


# ------------------------------------------------------------------------------------------ a real cell
def test_paper_style_cell_records_curve_convergence_and_selection(tmp_path: Path) -> None:
    profile = replace(
        get_profile("test"),
        name="paper",
        train_size=24,
        eval_size=16,
        save_steps=1000,  # no checkpoint writes: this test is about the record, not resumption
        lr_select=True,
        lr_grid=(1.0,),
        task_overrides={"rte": {"epochs": 2.0, "max_length": 24}},
    )
    result = run_cell("rte", "lora", 1, profile=profile, run_dir=tmp_path, device="cpu")
    cell = read_cell(cell_path(tmp_path, "rte", "lora", 1))
    assert cell["config"]["profile"]["name"] == "paper"
    assert cell["config"]["profile"]["epochs"] == 2.0 and cell["config"]["profile"]["max_length"] == 24
    assert cell["config"]["task_overrides"] == {"epochs": 2.0, "max_length": 24}
    curve = cell["train"]["loss_curve"]
    assert curve and all(isinstance(s, int) and isinstance(v, float) for s, v in curve)
    assert [s for s, _ in curve] == sorted(s for s, _ in curve) and curve[-1][0] == cell["train"]["steps"]
    conv = cell["train"]["convergence"]
    # judged on the selection run's held-out curve; a run this short (fewer steps than scoring points)
    # is never called converged, and the cell's own training-loss record is kept beside it
    assert conv["basis"] == "heldout" and conv["converged"] is False and "rule" in conv
    held = conv["heldout"]
    assert held["metric"] == "accuracy" and held["learning_rate"] == profile.learning_rate
    assert held["seed"] == 0 and "too" not in held.get("reason", "") and held["reason"].startswith("only")
    steps = [s for s, _ in held["curve"]]
    assert steps == sorted(set(steps)) and len(steps) < 10
    assert conv["train_loss"]["n_points"] == len(curve) and conv["train_loss"]["converged"] is False
    run = cell["lr_selection"]["runs"][f"{profile.learning_rate:.6g}"]
    assert run["convergence"]["curve"][-1][0] == run["steps"]  # the last point is the run's final score
    sel = cell["lr_selection"]
    assert sel["chosen"] == cell["train"]["learning_rate"] == profile.learning_rate
    assert sel["grid"] == [profile.learning_rate] and sel["heldout"]["of"] == 24 and sel["heldout"]["n"] == 2
    assert sel["train_seed"] == 0 and sel["metric"] == "accuracy"
    assert cell["data"]["eval"]["validation"]["split"] == "validation"  # the final cell scores dev
    assert result["lr_selection"] == sel
    assert not (tmp_path / "lr_select" / "work" / "rte__lora__lr0.001").exists()


def test_selection_run_scores_its_heldout_part_along_the_schedule(tmp_path: Path) -> None:
    profile = replace(
        get_profile("test"),
        name="paper",
        train_size=40,
        eval_size=16,
        batch_size=2,  # 15 steps on the 30 training examples: enough for every scoring point
        save_steps=1000,
        lr_select=True,
        lr_grid=(1.0,),
        heldout_fraction=0.25,
        task_overrides={"rte": {"epochs": 1.0, "max_length": 24}},
    )
    run_cell("rte", "lora", 0, profile=profile, run_dir=tmp_path, device="cpu")
    cell = read_cell(cell_path(tmp_path, "rte", "lora", 0))
    run = cell["lr_selection"]["runs"][f"{profile.learning_rate:.6g}"]
    held = run["convergence"]
    assert held["basis"] == "heldout" and held["metric"] == "accuracy"
    assert [s for s, _ in held["curve"]] == heldout_steps(run["steps"]) and len(held["curve"]) == 10
    assert all(v is None or 0.0 <= v <= 1.0 for _, v in held["curve"])
    assert held["final"] == cell["lr_selection"]["scores"][f"{profile.learning_rate:.6g}"]
    assert isinstance(held["converged"], bool) and held["gain"] == held["final"] - held["best_before_tail"]
    conv = cell["train"]["convergence"]
    assert conv["basis"] == "heldout" and conv["converged"] is held["converged"]


# ------------------------------------------------------------------------------------------ head only
@pytest.mark.parametrize("kind", ["seq", "qa"])
def test_head_only_trains_only_the_head(kind: str) -> None:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    from gelora.models import resolve_model_name
    from validation.finetune.methods import MethodContext, get_method

    cls = AutoModelForSequenceClassification if kind == "seq" else AutoModelForQuestionAnswering
    model = cls.from_pretrained(resolve_model_name(None), dtype=torch.float32)
    prepared = get_method("head_only")(
        model, budget_params=100, train_steps=1, seed=0, context=MethodContext(task="rte", tokenizer=None)
    )
    trainable = sorted(n for n, p in prepared.model.named_parameters() if p.requires_grad)
    head = "classifier" if kind == "seq" else "qa_outputs"
    assert trainable == [f"{head}.bias", f"{head}.weight"]
    assert prepared.trainable_adapter_params == 0
    assert prepared.info["trainable_params"] == sum(
        p.numel() for p in prepared.model.parameters() if p.requires_grad
    )


# ------------------------------------------------------------------------------------------ no data
def test_task_without_offline_data_is_recorded_as_not_run(tmp_path: Path) -> None:
    from validation.finetune.grid import run_grid, summarise

    empty = tmp_path / "data"
    empty.mkdir()
    out = run_grid(
        ["mnli"], ["lora"], [0], profile=get_profile("test"), run_dir=tmp_path / "run", data_dir=empty
    )
    assert out.failed == [] and list(out.not_run) == ["mnli__lora__seed0"]
    (miss,) = summarise(tmp_path / "run")["missing"]
    assert miss["reason"] == "not run: no offline data"
    assert not cell_path(tmp_path / "run", "mnli", "lora", 0).exists()
