"""GeLoRAConfig -> peft.LoraConfig: every target module gets its block's rank and alpha under peft 0.21.

Tiny randomly initialised configs check module *naming* for each supported architecture; the bundled
pretrained encoder checks the real model (base and sequence-classification heads).
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import transformers as T
from peft import get_peft_model
from peft.utils.other import get_pattern_key

from gelora.errors import ConfigError, UnknownLayerError
from gelora.lora import (
    TARGET_MODULES,
    GeLoRAConfig,
    architecture_modules,
    block_unit_costs,
    count_lora_parameters,
    find_block_modules,
    module_in_out,
)
from gelora.models import bundled_model_path
from gelora.ranks import lora_parameter_count

TINY = dict(vocab_size=64, num_attention_heads=2)


def tiny_model(model_type: str, n_layers: int):
    if model_type == "bert":
        cfg = T.BertConfig(hidden_size=16, num_hidden_layers=n_layers, intermediate_size=24, **TINY)
    elif model_type == "roberta":
        cfg = T.RobertaConfig(hidden_size=16, num_hidden_layers=n_layers, intermediate_size=24, **TINY)
    elif model_type == "deberta-v2":
        cfg = T.DebertaV2Config(hidden_size=16, num_hidden_layers=n_layers, intermediate_size=24, **TINY)
    elif model_type == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=64, n_embd=16, n_layer=n_layers, n_head=2, bos_token_id=0, eos_token_id=0
        )
    elif model_type == "llama":
        cfg = T.LlamaConfig(
            hidden_size=16, num_hidden_layers=n_layers, intermediate_size=24, num_key_value_heads=1, **TINY
        )
    else:  # pragma: no cover
        raise AssertionError(model_type)
    torch.manual_seed(0)
    return T.AutoModel.from_config(cfg)


def adapted_modules(peft_model, adapter="default"):
    """name -> (r, alpha) of every LoRA layer in a peft model."""
    out = {}
    for name, module in peft_model.named_modules():
        r = getattr(module, "r", None)
        if isinstance(r, dict) and adapter in r:
            out[name] = (r[adapter], module.lora_alpha[adapter])
    return out


def check_peft_model(model, gcfg: GeLoRAConfig):
    """Apply the config and compare every adapted module with the intended rank/alpha and the budget."""
    costs = block_unit_costs(model, gcfg.layout, gcfg.n_blocks)
    expected_budget = lora_parameter_count(gcfg.ranks, costs)
    intended = gcfg.module_ranks()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # peft warns about unmatched rank_pattern keys
        pm = get_peft_model(model, gcfg.to_lora_config())
    got = adapted_modules(pm)
    assert len(got) == len(intended) == gcfg.n_blocks * len(gcfg.layout.modules)
    for name, (r, alpha) in got.items():
        keys = [k for k in intended if name == k or name.endswith("." + k)]
        assert len(keys) == 1, (name, keys)
        assert r == intended[keys[0]], name
        assert alpha == pytest.approx(gcfg.alpha_ratio * r), name
    assert count_lora_parameters(pm) == expected_budget
    return pm, got


@pytest.mark.parametrize("model_type", ["bert", "roberta", "deberta-v2", "gpt2", "llama"])
def test_tiny_architectures_get_intended_ranks(model_type):
    n_layers = 12  # layer.1 vs layer.11 and layer.2 vs layer.12-style prefixes must not collide
    ranks = [1 + (7 * i) % 5 for i in range(n_layers)]
    ranks[1], ranks[11] = 9, 2
    model = tiny_model(model_type, n_layers)
    assert model.config.model_type == model_type
    gcfg = GeLoRAConfig(ranks, model_type, alpha_ratio=32.0)
    _, got = check_peft_model(model, gcfg)
    assert {r for r, _ in got.values()} == set(ranks)


def test_rank_pattern_keys_match_exactly_one_module_with_peft_semantics():
    gcfg = GeLoRAConfig([3] * 12, "bert")
    lc = gcfg.to_lora_config()
    keys = list(lc.rank_pattern)
    # peft picks the first key whose regex matches '(.*\.)?(key)$'
    assert get_pattern_key(keys, "encoder.layer.1.output.dense") == re.escape("layer.1.output.dense")
    assert get_pattern_key(keys, "encoder.layer.11.output.dense") == re.escape("layer.11.output.dense")
    assert get_pattern_key(keys, "bert.encoder.layer.1.attention.output.dense") == re.escape(
        "layer.1.attention.output.dense"
    )
    # an unescaped key would treat '.' as any character; ours do not match a different layer
    assert not re.match(rf"(.*\.)?({re.escape('layer.1.output.dense')})$", "encoder.layer.11.output.dense")
    assert not re.match(rf"(.*\.)?({re.escape('layer.1.output.dense')})$", "encoder.layer.1Xoutput.dense")


def test_alpha_ratio_and_common_rank():
    gcfg = GeLoRAConfig([4, 4, 2], "bert", alpha_ratio=2.0)
    lc = gcfg.to_lora_config(lora_dropout=0.1)
    assert lc.r == 4 and lc.lora_alpha == 8.0 and lc.lora_dropout == 0.1
    assert lc.alpha_pattern[re.escape("layer.2.attention.self.query")] == 4.0
    assert lc.rank_pattern[re.escape("layer.2.attention.self.query")] == 2
    assert len(lc.target_modules) == 3 * 6


@pytest.fixture(scope="module")
def bundled_dir():
    return str(bundled_model_path())


def test_real_bundled_model_base_and_classification_head(bundled_dir):
    ranks = [3, 3, 3, 1, 1, 2]
    base = T.AutoModel.from_pretrained(bundled_dir, local_files_only=True)
    gcfg = GeLoRAConfig(ranks, base.config.model_type)
    costs = block_unit_costs(base, gcfg.layout, 6)
    # q, k, v, attention.output: 384->384 each; intermediate 384->1536; output 1536->384
    assert costs == [4 * (384 + 384) + (384 + 1536) + (1536 + 384)] * 6
    check_peft_model(base, gcfg)

    cls = T.AutoModelForSequenceClassification.from_pretrained(
        bundled_dir, local_files_only=True, num_labels=2
    )
    gcfg_cls = GeLoRAConfig(ranks, "bert", task_type="SEQ_CLS")
    pm, got = check_peft_model(cls, gcfg_cls)
    assert all(name.startswith("base_model.model.bert.encoder.layer.") for name in got)


def test_overrides_for_an_architecture_outside_the_table():
    cfg = T.DistilBertConfig(vocab_size=64, dim=16, hidden_dim=24, n_layers=2, n_heads=2)
    model = T.AutoModel.from_config(cfg)
    with pytest.raises(ConfigError, match="no target-module table"):
        GeLoRAConfig([2, 3], "distilbert")
    gcfg = GeLoRAConfig(
        [2, 3],
        "distilbert",
        layer_template="layer.{i}",
        target_modules=["attention.q_lin", "attention.v_lin", "ffn.lin1"],
    )
    check_peft_model(model, gcfg)


def test_errors():
    with pytest.raises(ConfigError, match="block 1"):
        GeLoRAConfig([2, None, 3], "bert")
    with pytest.raises(ConfigError, match=">= 1"):
        GeLoRAConfig([2, 0], "bert")
    with pytest.raises(ConfigError):
        GeLoRAConfig([], "bert")
    with pytest.raises(ConfigError, match=r"\{i\}"):
        architecture_modules("bert", layer_template="layer")
    with pytest.raises(ConfigError, match="duplicates"):
        architecture_modules("bert", modules=["output.dense", "output.dense"])
    with pytest.raises(ConfigError, match="alpha_ratio"):
        GeLoRAConfig([1], "bert", alpha_ratio=0)
    # the bert table on a gpt2 model: no module named layer.0.attention.self.query
    with pytest.raises(UnknownLayerError, match="matches no module"):
        find_block_modules(tiny_model("gpt2", 2), TARGET_MODULES["bert"], 2)
    with pytest.raises(ConfigError, match="not a linear layer"):
        module_in_out(torch.nn.LayerNorm(4))


def test_gpt2_conv1d_in_out():
    model = tiny_model("gpt2", 1)
    blocks = find_block_modules(model, TARGET_MODULES["gpt2"], 1)
    shapes = {name.split("h.0.")[1]: module_in_out(m) for name, m in blocks[0]}
    assert shapes == {
        "attn.c_attn": (16, 48),
        "attn.c_proj": (16, 16),
        "mlp.c_fc": (16, 64),
        "mlp.c_proj": (64, 16),
    }
