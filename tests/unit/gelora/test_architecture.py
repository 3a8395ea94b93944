"""Architecture discovery on real ``transformers`` architectures (tiny random weights, no hub access).

For each of BERT, RoBERTa, DeBERTa-v2, MPNet, ELECTRA, GPT-2, Llama, Qwen2 and Mistral: the block list and
every linear of a block are found from the model itself, ``target_modules`` resolve to the same modules in
the base model and in a sequence-classification model around it, ``compute_gelora_ranks`` runs, and its
``peft.LoraConfig`` adapts exactly the discovered modules with the block's rank.
"""

from __future__ import annotations

import re

import pytest
import torch
from peft import get_peft_model

from gelora.architecture import (
    block_relative_names,
    discover_architecture,
    resolve_target_modules,
    target_module_names,
)
from gelora.errors import ConfigError, TargetModuleError
from gelora.lora import GeLoRAConfig, count_lora_parameters
from gelora.models import bundled_model_path, wrap_model
from gelora.pipeline import compute_gelora_ranks, default_texts
from synthetic.tiny_models import TINY_MODEL_TYPES, tiny_model

#: block-relative names of the attention query/value projections per architecture (read from transformers)
QUERY_VALUE = {
    "bert": ["attention.self.query", "attention.self.value"],
    "roberta": ["attention.self.query", "attention.self.value"],
    "electra": ["attention.self.query", "attention.self.value"],
    "deberta-v2": ["attention.self.query_proj", "attention.self.value_proj"],
    "mpnet": ["attention.attn.q", "attention.attn.v"],
    "gpt2": ["attn.c_attn"],  # fused q, k, v
    "llama": ["self_attn.q_proj", "self_attn.v_proj"],
    "qwen2": ["self_attn.q_proj", "self_attn.v_proj"],
    "mistral": ["self_attn.q_proj", "self_attn.v_proj"],
}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_model_path(), local_files_only=True)


def _linear_names(model) -> set[str]:
    return {
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"
    }


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_discovery_finds_every_linear_of_every_block(model_type: str) -> None:
    base = tiny_model(model_type)
    arch = discover_architecture(base)
    assert arch.n_blocks == 2
    # every linear of the model inside a block is discovered, and nothing else
    in_blocks = {n for n in _linear_names(base) if n.startswith(arch.blocks_path + ".")}
    assert set(target_module_names(base, "all-linear")) == in_blocks
    assert arch.resolve("query,value") == QUERY_VALUE[model_type]
    assert {m.group for m in arch.linears} == {"attention", "ffn"}
    assert arch.fan_in_fan_out == (model_type == "gpt2")
    # a task model around the base: same block-relative names, the head is never selected
    cls = tiny_model(model_type, head="seq_cls")
    arch_cls = discover_architecture(cls)
    assert arch_cls.names == arch.names and arch_cls.layer_template == arch.layer_template
    selected = target_module_names(cls, "all-linear")
    head = {n for n in _linear_names(cls) if not n.startswith(arch_cls.blocks_path + ".")}
    assert head and not head & set(selected)
    assert block_relative_names(arch_cls, selected) == arch.names


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_ranks_and_lora_config_on_every_architecture(model_type: str, tokenizer) -> None:
    base = tiny_model(model_type)
    loaded = wrap_model(base, tokenizer, name=f"tiny-{model_type}")
    result = compute_gelora_ranks(
        loaded, default_texts(), n_texts=60, max_tokens=300, device="cpu", target_modules=["query", "value"]
    )
    assert len(result.ranks) == 2 and all(r >= 1 for r in result.ranks)
    assert result.target_layout["modules"] == QUERY_VALUE[model_type]
    lora = result.to_lora_config(task_type="SEQ_CLS")
    assert bool(lora.fan_in_fan_out) == (model_type == "gpt2")
    cls = tiny_model(model_type, head="seq_cls")
    expected = set(target_module_names(cls, ["query", "value"]))
    peft_model = get_peft_model(cls, lora)
    adapted = {}
    for name, module in peft_model.named_modules():
        r = getattr(module, "r", None)
        if isinstance(r, dict) and "default" in r:
            adapted[name.removeprefix("base_model.model.")] = r["default"]
    assert set(adapted) == expected
    block = re.compile(r"\.(\d+)\.")
    assert all(r == result.ranks[int(block.search(n).group(1))] for n, r in adapted.items())
    assert count_lora_parameters(peft_model) == result.lora_parameters


def test_gelora_config_from_model_matches_the_ranks_pipeline_layout() -> None:
    model = tiny_model("mpnet")
    gcfg = GeLoRAConfig.from_model([3, 5], model, target_modules="attention")
    assert gcfg.layout.layer_template == "layer.{i}"
    assert list(gcfg.layout.modules) == [
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
    ]
    assert GeLoRAConfig.from_model([1, 1], tiny_model("gpt2")).to_lora_config().fan_in_fan_out
    with pytest.raises(ConfigError, match="3 ranks for a model with 2 blocks"):
        GeLoRAConfig.from_model([1, 2, 3], model)


def test_target_module_selection_rules() -> None:
    arch = discover_architecture(tiny_model("bert"))
    # an exact block-relative name wins over the longer name that ends with it
    assert resolve_target_modules(arch, ["output.dense"]) == ["output.dense"]
    assert resolve_target_modules(arch, "ffn") == ["intermediate.dense", "output.dense"]
    assert resolve_target_modules(arch, ["o", "key"]) == ["attention.self.key", "attention.output.dense"]
    assert resolve_target_modules(arch, None) == arch.names
    with pytest.raises(TargetModuleError, match=r"ambiguous.*intermediate\.dense.*output\.dense"):
        resolve_target_modules(arch, ["dense"])
    with pytest.raises(TargetModuleError, match=r"'foo' matches no linear.*attention\.self\.query"):
        resolve_target_modules(arch, ["query", "foo"])
    with pytest.raises(TargetModuleError, match="empty"):
        resolve_target_modules(arch, " , ")
    gpt2 = discover_architecture(tiny_model("gpt2"))
    with pytest.raises(TargetModuleError, match="ambiguous"):
        resolve_target_modules(gpt2, ["c_proj"])
    assert resolve_target_modules(gpt2, ["attn.c_proj", "v"]) == ["attn.c_attn", "attn.c_proj"]


class _TwoStacks(torch.nn.Module):
    """Two equally long lists of identical blocks: discovery cannot choose without ``layers``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder_a = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 4)) for _ in range(3)])
        self.encoder_b = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 6)) for _ in range(3)])


def test_ambiguous_or_missing_block_list_and_the_layers_override() -> None:
    model = _TwoStacks()
    with pytest.raises(TargetModuleError, match=r"encoder_a.*encoder_b.*--layers"):
        discover_architecture(model, n_blocks=3)
    arch = discover_architecture(model, layers="encoder_b")
    assert arch.n_blocks == 3 and [(m.name, m.in_features, m.out_features) for m in arch.linears] == [
        ("0", 4, 6)
    ]
    with pytest.raises(TargetModuleError, match=r"names no module list.*encoder_a"):
        discover_architecture(model, layers="decoder")
    with pytest.raises(TargetModuleError, match="cannot tell"):
        discover_architecture(torch.nn.Linear(3, 3))


def test_cli_wrong_target_module_is_one_line_naming_what_exists(capsys: pytest.CaptureFixture) -> None:
    from gelora.cli import main

    assert main(["ranks", "--quiet", "--target-modules", "query,foo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "'foo' matches no linear" in err and "attention.self.query" in err and "intermediate.dense" in err
