"""Methods behind one entry point: budgets, AdaLoRA's schedule wiring, GeLoRA ranks, the registry."""

from __future__ import annotations

import os

import pytest
import torch

from gelora.errors import ConfigError
from validation.finetune.methods import (
    BUDGET_RTOL,
    METHODS,
    MethodContext,
    PreparedMethod,
    check_budget,
    count_adapter_params,
    count_trainable_params,
    get_method,
    lora_budget,
    make_adalora_callback,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# all-MiniLM-L6-v2: 6 blocks, query and value are 384 x 384 -> 12 matrices, r (384 + 384) each
MINILM_BUDGET_R8 = 12 * 8 * (384 + 384)


@pytest.fixture(scope="module")
def path() -> str:
    from gelora.models import resolve_model_name

    return resolve_model_name(None)


@pytest.fixture(scope="module")
def tokenizer(path: str):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _model(path: str, num_labels: int = 2):  # noqa: ANN202
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels, local_files_only=True
    )


def _context(tokenizer, **kw) -> MethodContext:  # noqa: ANN001
    return MethodContext(task="rte", tokenizer=tokenizer, max_length=32, **kw)


def test_budget_of_uniform_lora(path: str, tokenizer) -> None:  # noqa: ANN001
    model = _model(path)
    assert lora_budget(model, ("query", "value"), 8) == MINILM_BUDGET_R8
    with pytest.raises(ConfigError, match="no linear module"):
        lora_budget(model, ("q_proj",), 8)
    prepared = get_method("lora")(
        model, budget_params=MINILM_BUDGET_R8, train_steps=4, seed=0, context=_context(tokenizer)
    )
    assert prepared.trainable_adapter_params == count_adapter_params(prepared.model) == MINILM_BUDGET_R8
    # the classifier head (384 * 2 + 2) is trainable but not counted as adapter parameters
    assert count_trainable_params(prepared.model) == MINILM_BUDGET_R8 + 384 * 2 + 2
    assert set(prepared.info["ranks"].values()) == {8} and len(prepared.info["ranks"]) == 12
    assert check_budget("lora", prepared, MINILM_BUDGET_R8)["within_budget"] is True


def test_budget_check_refuses_a_larger_method() -> None:
    fat = PreparedMethod(model=None, callbacks=[], trainable_adapter_params=int(1.1 * 1000), info={})
    with pytest.raises(ConfigError, match=r"\+10.0% from the budget"):
        check_budget("gelora", fat, 1000)
    assert check_budget("full", fat, 1000)["within_budget"] is None  # reference without a budget
    edge = PreparedMethod(None, [], int(1000 * (1 + BUDGET_RTOL)), {})
    assert check_budget("adalora", edge, 1000)["within_budget"] is True


def test_adalora_budget_and_config(path: str, tokenizer) -> None:  # noqa: ANN001
    model = _model(path)
    prepared = get_method("adalora")(
        model, budget_params=MINILM_BUDGET_R8, train_steps=50, seed=0, context=_context(tokenizer)
    )
    info = prepared.info
    assert (info["target_r"], info["init_r"], info["total_step"]) == (8, 12, 50)
    assert (info["tinit"], info["tfinal"]) == (5, 10)  # 10 % and 20 % of the steps
    # over-allocation at the start: init_r (384 + 384 + 1) per matrix
    assert info["initial_adapter_params"] == 12 * 12 * (384 + 384 + 1)
    assert prepared.trainable_adapter_params == 12 * 8 * (384 + 384 + 1)
    assert len(prepared.callbacks) == 1
    cfg = prepared.model.peft_config["default"]
    assert cfg.total_step == 50 and cfg.target_r == 8
    with pytest.raises(ConfigError, match="at least 2"):
        get_method("adalora")(
            _model(path), budget_params=1, train_steps=1, seed=0, context=_context(tokenizer)
        )


class _Recorder:
    """Stands in for a PeftModel: records what update_and_allocate sees."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net
        self.initial = net.weight.detach().clone()
        self.seen: list[tuple[int, bool, bool]] = []
        self.base_model = self

    def update_and_allocate(self, step: int) -> None:
        grad = self.net.weight.grad
        has_grad = grad is not None and bool(grad.abs().sum() > 0)
        moved = not torch.equal(self.net.weight.detach(), self.initial)
        self.seen.append((step, has_grad, moved))


class _TinyRegressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(4, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor):  # noqa: ANN201
        pred = (x @ self.weight).squeeze(-1)
        return {"loss": torch.mean((pred - labels) ** 2), "logits": pred}


def test_adalora_callback_runs_after_step_before_zero_grad(tmp_path) -> None:  # noqa: ANN001
    """The schedule must see the gradients of the step just taken (after optimizer.step, before zero_grad)."""
    from transformers import Trainer, TrainingArguments

    net = _TinyRegressor()
    rec = _Recorder(net)
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(4, generator=g), "labels": torch.tensor(1.0)} for _ in range(12)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=0.1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    Trainer(model=net, args=args, train_dataset=data, callbacks=[make_adalora_callback(rec)]).train()
    assert [s for s, _, _ in rec.seen] == [0, 1, 2]  # peft's 0-based global_step
    assert all(has_grad for _, has_grad, _ in rec.seen)  # zero_grad not yet called
    assert rec.seen[0][2]  # optimizer.step already applied at step 0


def test_gelora_ranks_fit_the_budget(path: str, tokenizer) -> None:  # noqa: ANN001
    from validation.data.glue import load_glue

    texts = load_glue("rte", "train").take(48, seed=0).joined_texts(" [SEP] ")
    ctx = _context(tokenizer, train_texts=tuple(texts), options={"gelora": {"n_texts": 48}})
    prepared = get_method("gelora")(
        _model(path), budget_params=MINILM_BUDGET_R8, train_steps=4, seed=0, context=ctx
    )
    info = prepared.info
    assert len(info["block_ranks"]) == 6 and min(info["block_ranks"]) >= 1
    assert len(info["dimensions"]) == 7  # embedding output + 6 blocks
    # the core never exceeds the budget; with equal unit costs it lands within one block's unit cost
    assert prepared.trainable_adapter_params <= MINILM_BUDGET_R8
    assert prepared.trainable_adapter_params == info["predicted_lora_parameters"]
    assert check_budget("gelora", prepared, MINILM_BUDGET_R8)["within_budget"] is True
    # alpha / r equals uniform LoRA's 16 / 8 in every block
    assert info["alpha_ratio"] == 2.0
    with pytest.raises(ConfigError, match="needs training texts"):
        get_method("gelora")(
            _model(path), budget_params=1, train_steps=4, seed=0, context=_context(tokenizer)
        )


def test_registry_and_signature_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    from validation.finetune.methods import ABLATION_METHODS

    assert set(METHODS) == {"lora", "adalora", "gelora", "full", "geolora", "head_only", *ABLATION_METHODS}
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("dora")
    import sys
    import types

    seen = {}

    def prepare(model, spec, budget, train_steps, seed):  # noqa: ANN001, ANN202 - the GeoLoRA helper's form
        seen.update(spec=spec, budget=budget, steps=train_steps, seed=seed)
        return PreparedMethod(model, [], budget, {})

    fake = types.ModuleType("validation_fake_geo")
    fake.prepare = prepare
    monkeypatch.setitem(sys.modules, "validation_fake_geo", fake)
    monkeypatch.setitem(METHODS, "geolora", "validation_fake_geo:prepare")
    out = get_method("geolora")(
        "m", budget_params=7, train_steps=3, seed=2, context=MethodContext("rte", None)
    )
    assert out.trainable_adapter_params == 7 and seen["steps"] == 3 and seen["spec"]["lora_r"] == 8
    monkeypatch.setitem(METHODS, "geolora", "validation_missing_module:prepare")
    with pytest.raises(ConfigError, match="not available"):
        get_method("geolora")


def test_full_finetuning_trains_everything(path: str, tokenizer) -> None:  # noqa: ANN001
    model = _model(path)
    prepared = get_method("full")(model, budget_params=1, train_steps=1, seed=0, context=_context(tokenizer))
    assert prepared.trainable_adapter_params == 0
    assert count_trainable_params(prepared.model) == sum(p.numel() for p in model.parameters())
