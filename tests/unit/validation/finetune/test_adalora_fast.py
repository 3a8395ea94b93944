"""The fast AdaLoRA allocation step computes exactly what peft's ``update_and_allocate`` computes.

A tiny random BERT with AdaLoRA on every linear of its blocks is trained from the same seed twice, once with
peft's ``update_and_allocate`` and once with :class:`FastAdaLoraAllocator`, over a schedule that covers the
warm-up (``step <= tinit``), the budgeting phase, the final allocation (``step == total_step - tfinal``)
and the final phase; every step's loss, parameters, importance state, ``lora_E`` masks and rank pattern must
be bit-identical (CPU, float32).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gelora.errors import ConfigError
from synthetic.tiny_models import tiny_bert_classifier, token_batches
from validation.finetune import adalora_fast
from validation.finetune.adalora_fast import FastAdaLoraAllocator, check_peft_compatible
from validation.finetune.methods import MethodContext, get_method, make_adalora_callback

TOTAL, TINIT, TFINAL = 24, 4, 6  # warm-up 0..4, budgeting 5..17, final allocation 18, final phase 19..23


def _prepare(allocator: str | None, delta_t: int = 1, total: int = TOTAL) -> Any:
    model = tiny_bert_classifier()
    targets = tuple(
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layer." in n  # every linear of the two blocks
    )
    ctx = MethodContext(
        task="rte",
        tokenizer=None,
        target_modules=targets,
        lora_r=2,
        lora_alpha=4.0,
        options={
            "adalora": {"tinit": TINIT, "tfinal": TFINAL, "deltaT": delta_t}
            | ({} if allocator is None else {"allocator": allocator}),
        },
    )
    return get_method("adalora")(model, budget_params=1, train_steps=total, seed=3, context=ctx)


class _State:
    global_step = 0


def _run(allocator: str, delta_t: int = 1, materialise_each_step: bool = True) -> dict[str, Any]:
    """Train TOTAL steps by hand (forward, backward, AdamW step, the schedule, zero_grad); record each step."""
    prepared = _prepare(allocator, delta_t)
    net = prepared.model
    (cb,) = prepared.callbacks
    net.train()
    torch.manual_seed(7)  # dropout
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=5e-2, weight_decay=0.01)
    ra = net.base_model.rankallocator
    cfg = net.peft_config["default"]
    state = _State()
    steps: list[dict[str, Any]] = []
    for batch in token_batches(TOTAL):
        loss = net(**batch).loss
        loss.backward()
        opt.step()
        cb.on_optimizer_step(None, state, None)
        if materialise_each_step:
            cb.allocator.materialise()
        steps.append(
            {
                "loss": loss.detach().clone(),
                "params": {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad},
                "exp_avg_ipt": {n: t.clone() for n, t in ra.exp_avg_ipt.items()},
                "exp_avg_unc": {n: t.clone() for n, t in ra.exp_avg_unc.items()},
                "rank_pattern": {k: list(v) for k, v in (cfg.rank_pattern or {}).items()},
            }
        )
        opt.zero_grad()
        state.global_step += 1
    cb.allocator.materialise()
    return {"steps": steps, "final_pattern": cfg.rank_pattern, "info": prepared.finalise(net), "cb": cb}


def _assert_same_tensors(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str, step: int
) -> None:
    assert a.keys() == b.keys(), (what, step)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what} {k} differs at step {step}"
        # torch.equal treats 0.0 == -0.0 and never NaN == NaN: compare the bits too
        assert torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)), f"{what} {k} bits at {step}"


def test_installed_peft_takes_the_fast_path() -> None:
    prepared = _prepare("fast")
    assert check_peft_compatible(prepared.model) is None
    assert prepared.info["allocator"] == "fast" and "allocator_fallback_reason" not in prepared.info
    assert _prepare("peft").info["allocator"] == "peft"


def test_the_environment_picks_the_allocator_when_the_option_does_not(monkeypatch) -> None:
    monkeypatch.delenv("GELORA_ADALORA_ALLOCATOR", raising=False)
    assert _prepare(None).info["allocator"] == "fast"
    monkeypatch.setenv("GELORA_ADALORA_ALLOCATOR", "peft")
    assert _prepare(None).info["allocator"] == "peft"
    assert _prepare("fast").info["allocator"] == "fast"  # the option wins
    monkeypatch.setenv("GELORA_ADALORA_ALLOCATOR", "quick")
    with pytest.raises(ConfigError, match="'allocator' must be 'fast' or 'peft'"):
        _prepare(None)


@pytest.mark.parametrize("delta_t", [1, 3])
def test_fast_allocator_is_bit_identical_to_peft(delta_t: int) -> None:
    ref = _run("peft", delta_t)
    fast = _run("fast", delta_t)
    assert fast["cb"].allocator.path == "fast" and ref["cb"].allocator.path == "peft"
    masked_steps = with_pattern = 0
    for step, (r, f) in enumerate(zip(ref["steps"], fast["steps"])):
        assert torch.equal(r["loss"].view(torch.int32), f["loss"].view(torch.int32)), f"loss at step {step}"
        _assert_same_tensors(r["params"], f["params"], "parameter", step)
        _assert_same_tensors(r["exp_avg_ipt"], f["exp_avg_ipt"], "exp_avg_ipt", step)
        _assert_same_tensors(r["exp_avg_unc"], f["exp_avg_unc"], "exp_avg_unc", step)
        assert r["rank_pattern"] == f["rank_pattern"], f"rank pattern at step {step}"
        e_zero = {n: (p == 0).flatten().tolist() for n, p in r["params"].items() if ".lora_E." in n}
        masked_steps += any(any(z) for z in e_zero.values())
        with_pattern += bool(f["rank_pattern"])
    # the run covered masking (budgeting and final phases) and ended at the target budget
    assert masked_steps >= (TOTAL - TINIT - 2) // delta_t and with_pattern >= TOTAL - TINIT - 2
    mid = sum(sum(v) for v in fast["steps"][(TINIT + TOTAL - TFINAL) // 2]["rank_pattern"].values())
    assert 2 * len(fast["final_pattern"]) < mid < 3 * len(fast["final_pattern"])  # init_r 3 -> target 2
    total_rank = sum(sum(v) for v in fast["final_pattern"].values())
    n_modules = len(fast["final_pattern"])
    assert total_rank == 2 * n_modules  # target_r per module on average
    assert ref["final_pattern"] == fast["final_pattern"]
    assert ref["info"]["allocated_ranks"] == fast["info"]["allocated_ranks"]
    # the importance state was reset at the final allocation, as peft does
    assert ref["steps"][-1]["exp_avg_ipt"] == {} == fast["steps"][-1]["exp_avg_ipt"]


def test_lazy_rank_pattern_equals_peft_at_the_end() -> None:
    """Without materialising every step, the pattern written at the final allocation is peft's."""
    ref = _run("peft", materialise_each_step=False)
    fast = _run("fast", materialise_each_step=False)
    assert ref["final_pattern"] == fast["final_pattern"]
    _assert_same_tensors(ref["steps"][-1]["params"], fast["steps"][-1]["params"], "parameter", TOTAL - 1)
    # before the final allocation, fast's config holds no pattern until asked for (no host sync)
    assert fast["steps"][TOTAL - TFINAL - 1]["rank_pattern"] == {}
    assert ref["steps"][TOTAL - TFINAL - 1]["rank_pattern"] != {}


def test_trainer_run_is_identical(tmp_path) -> None:  # noqa: ANN001
    """Through transformers.Trainer (the runner's path): same losses, parameters and allocated ranks."""
    from transformers import Trainer, TrainingArguments

    out = {}
    for allocator in ("peft", "fast"):
        prepared = _prepare(allocator)
        args = TrainingArguments(
            output_dir=str(tmp_path / allocator),
            max_steps=TOTAL,
            per_device_train_batch_size=4,
            learning_rate=5e-2,
            logging_steps=1,
            seed=3,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        rows = [{k: v[i] for k, v in b.items()} for b in token_batches(TOTAL) for i in range(4)]
        trainer = Trainer(model=prepared.model, args=args, train_dataset=rows, callbacks=prepared.callbacks)
        trainer.train()
        info = prepared.finalise(prepared.model)
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        params = {n: p.detach().clone() for n, p in prepared.model.named_parameters() if p.requires_grad}
        out[allocator] = (losses, params, info)
    (l_ref, p_ref, i_ref), (l_fast, p_fast, i_fast) = out["peft"], out["fast"]
    assert len(l_ref) == TOTAL and l_ref == l_fast
    _assert_same_tensors(p_ref, p_fast, "parameter", TOTAL)
    assert i_ref["allocated_ranks"] == i_fast["allocated_ranks"] and i_fast["allocator"] == "fast"
    assert i_fast["total_rank"] == 2 * len(i_fast["allocated_ranks"])


def test_unverified_peft_falls_back_to_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adalora_fast, "VERIFIED_SOURCES", {"0.0.0": {"RankAllocator.update_ipt": "x"}})
    prepared = _prepare("fast")
    info = prepared.info
    assert info["allocator"] == "peft"
    assert "differs from the verified peft version" in info["allocator_fallback_reason"]
    assert "RankAllocator.update_ipt" in info["allocator_fallback_reason"]


def test_missing_gradient_hands_the_step_to_peft() -> None:
    prepared = _prepare("fast")
    alloc: FastAdaLoraAllocator = prepared.callbacks[0].allocator
    with pytest.raises(TypeError):  # peft's own error: (p * None)
        alloc(0)
    assert alloc.peft_steps == 1


def test_unknown_allocator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'fast' or 'peft'"):
        make_adalora_callback(object(), allocator="turbo")


_FSTRING_SOURCE = '''def f(self, n, x):
    """Doc."""
    # a comment
    if f"lora_A.{self.name}" in n:
        return f'{x!r:>{n}} {"q"} {{}}'
    return rf"\\d{n}" + "plain"
'''


def test_an_f_string_is_one_token_on_every_interpreter() -> None:
    """The fingerprint must not depend on the interpreter: Python 3.12 splits f-strings into several tokens
    (PEP 701), 3.11 keeps one; the GPU image's 3.12 once read peft 0.21.0 as unverified because of it."""
    parts = adalora_fast._source_tokens(_FSTRING_SOURCE)
    assert 'f"lora_A.{self.name}"' in parts
    assert "f'{x!r:>{n}} {\"q\"} {{}}'" in parts
    assert 'rf"\\d{n}"' in parts
    assert not any(p in ("self.name", "x", "q") for p in parts[parts.index("if") :])  # no field tokens
    assert "# a comment" not in parts


def test_the_fingerprint_ignores_docstring_comments_and_indentation_width() -> None:
    base = adalora_fast._token_hash_source(_FSTRING_SOURCE)
    other = _FSTRING_SOURCE.replace('    """Doc."""\n', "").replace("    # a comment\n", "")
    assert adalora_fast._token_hash_source(other) == base
    assert adalora_fast._token_hash_source(other.replace("    ", "  ")) == base
    assert adalora_fast._token_hash_source(other.replace('"plain"', '"other"')) != base


def test_the_campaign_uses_the_fast_allocator_only_when_the_device_proved_it(tmp_path) -> None:  # noqa: ANN001
    import json

    def bench(fast_path: str, fast_digest: str) -> str:
        f = tmp_path / "bench.jsonl"
        rows = [
            {"method": "lora", "params_sha256": "x"},
            {"method": "adalora@peft", "method_info_path": "peft", "params_sha256": "d"},
            {"method": "adalora@fast", "method_info_path": fast_path, "params_sha256": fast_digest},
        ]
        f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return adalora_fast.allocator_from_bench(f)

    assert bench("fast", "d") == "fast"
    assert bench("peft", "d") == "peft"  # fell back: the digests compare peft with itself
    assert bench("fast", "e") == "peft"  # ran, but not bit-identical on this device
    with pytest.raises(ConfigError, match="no step-bench output"):
        adalora_fast.allocator_from_bench(tmp_path / "none.jsonl")
    (tmp_path / "half.jsonl").write_text(json.dumps({"method": "adalora@peft"}) + "\n")
    with pytest.raises(ConfigError, match="no adalora@fast line"):
        adalora_fast.allocator_from_bench(tmp_path / "half.jsonl")
