"""The validate runner on nine architectures (tiny random weights): same modules, same budget, one step.

Each tiny model (2 blocks, width 32, the bundled WordPiece tokenizer) is saved like a checkpoint and run
through :func:`validation.finetune.runner.run_cell` with the test profile cut to one optimizer step. The profile's
default ``target_modules=("query", "value")`` is resolved on the discovered blocks, so the same command works
for BERT's ``attention.self.query``, MPNet's ``attn.q``, Llama's ``q_proj`` and GPT-2's fused ``c_attn``; every
budgeted method adapts exactly those modules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gelora.architecture import target_module_names
from gelora.errors import TargetModuleError
from gelora.pipeline import default_texts
from synthetic.tiny_models import TINY_MODEL_TYPES, save_tiny_model, tiny_model
from validation.finetune.methods import MethodContext, get_method, lora_budget
from validation.finetune.runner import get_profile, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {t: save_tiny_model(t, root / t) for t in TINY_MODEL_TYPES}


def _profile(model_dir: Path, **kw):
    return get_profile("test", model=str(model_dir), train_size=8, eval_size=8, batch_size=8, **kw)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_gelora_cell_trains_one_step_on_the_discovered_modules(
    model_type: str, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cell(
        "rte", "gelora", 0, profile=_profile(model_dirs[model_type]), run_dir=tmp_path, device="cpu"
    )
    assert result["train"]["steps"] == 1
    assert result["budget"]["within_budget"] is True
    expected = target_module_names(tiny_model(model_type, head="seq_cls"), ("query", "value"))
    assert result["target_modules"] == expected
    assert set(result["method_info"]["ranks"]) == set(expected)
    assert len(result["method_info"]["block_ranks"]) == 2


def _adapted(method: str, model) -> set[str]:
    if method == "geolora":
        from validation.finetune.geolora.layer import find_geolora_layers

        return set(find_geolora_layers(model))
    names = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    return {n.removeprefix("base_model.model.") for n in names}


@pytest.mark.parametrize("model_type", ["mpnet", "gpt2", "llama"])
def test_every_budgeted_method_adapts_the_same_modules(model_type: str, model_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dirs[model_type], local_files_only=True)
    texts = default_texts()[:60]
    probe = tiny_model(model_type, head="seq_cls")
    targets = tuple(target_module_names(probe, "all-linear"))
    budget = lora_budget(probe, targets, 8)
    context = MethodContext(
        task="rte", tokenizer=tokenizer, train_texts=texts, target_modules=targets, lora_r=8
    )
    for method in ("lora", "adalora", "gelora", "geolora"):
        model = tiny_model(model_type, head="seq_cls")
        prepared = get_method(method)(model, budget_params=budget, train_steps=10, seed=0, context=context)
        assert _adapted(method, prepared.model) == set(targets), method


def test_geolora_cell_on_gpt2_conv1d(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    profile = _profile(model_dirs["gpt2"], target_modules=("all-linear",))
    result = run_cell("rte", "geolora", 0, profile=profile, run_dir=tmp_path, device="cpu")
    assert result["train"]["steps"] == 1 and len(result["target_modules"]) == 8


def test_a_wrong_target_module_names_what_exists(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TargetModuleError, match=r"'query_proj' matches no linear.*attention\.attn\.q"):
        run_cell(
            "rte",
            "lora",
            0,
            profile=_profile(model_dirs["mpnet"], target_modules=("query_proj",)),
            run_dir=tmp_path,
            device="cpu",
        )
