"""Runner integration: ``prepare`` matches validation.finetune.methods, the Trainer callback runs GeoLoRA."""

from __future__ import annotations

import json

import pytest
import torch

from gelora.errors import ConfigError
from synthetic.tiny_models import tiny_bert_classifier
from validation.finetune.geolora.method import GeoLoRACallback, match_initial_ranks, prepare
from validation.finetune.methods import METHODS, MethodContext, check_budget, get_method, lora_budget
from validation.finetune.trained_checkpoint import TrainedOnlyCheckpoints

TARGETS = ("query", "value", "intermediate.dense")


def _model():
    return tiny_bert_classifier(hidden_size=64, intermediate_size=128, max_position_embeddings=512)


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 48, length: int = 10) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 50, (n, length), generator=g)
        self.y = self.x[:, 0] % 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "attention_mask": torch.ones_like(self.x[i]), "labels": self.y[i]}


def _train(prepared, steps: int, tmp_path, lr: float = 1e-2):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=lr,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(model=prepared.model, args=args, train_dataset=_Data(), callbacks=prepared.callbacks)
    trainer.train()
    return trainer


def _ctx(**options) -> MethodContext:
    return MethodContext(
        task="rte", tokenizer=None, target_modules=TARGETS, lora_r=4, options={"geolora": options}
    )


def test_registry_resolves_to_prepare() -> None:
    assert METHODS["geolora"] == "validation.finetune.geolora.method:prepare"
    assert get_method("geolora") is prepare


def test_prepare_budget_and_info_json() -> None:
    model = _model()
    budget = lora_budget(model, TARGETS, 4)
    pm = prepare(model, budget_params=budget, train_steps=5, seed=0, context=_ctx())
    rec = check_budget("geolora", pm, budget)
    assert rec["within_budget"]
    # the integrator, then the checkpoints of the trained tensors only (validation.finetune.trained_checkpoint)
    assert [type(cb) for cb in pm.callbacks] == [GeoLoRACallback, TrainedOnlyCheckpoints]
    json.dumps(pm.info)
    assert pm.info["cap_params"] == max(pm.trainable_adapter_params, budget)
    assert pm.info["rank_trajectory"][0][0] == 0


def test_trainer_run_records_trajectories_and_keeps_orthonormality(tmp_path) -> None:
    model = _model()
    budget = lora_budget(model, TARGETS, 4)
    pm = prepare(model, budget_params=budget, train_steps=6, seed=0, context=_ctx(tau=0.1))
    head_before = model.classifier.weight.detach().clone()
    _train(pm, 6, tmp_path)
    out = pm.finalise(pm.model)
    json.dumps(out)
    opt = pm.callbacks[0].optimizer
    full = opt.rank_trajectory
    assert [s for s, _ in full] == list(range(7))  # step 0 (initial) + one entry per optimizer step
    # the cell keeps the change points, which give back every recorded step (a rank holds until the next)
    traj = out["rank_trajectory"]
    assert out["trajectory_recorded_steps"] == 7 and traj[0][0] == 0 and traj[-1][0] == 6
    for step, ranks in full:
        assert max((e for e in traj if e[0] <= step), key=lambda e: e[0])[1] == ranks
    summ = out["summary"]
    assert summ["steps"] == 6 and summ["final_params"] <= pm.info["cap_params"]
    counts = [c for _, c in opt.param_trajectory]
    assert summ["mean_params"] == pytest.approx(sum(counts[:-1]) / 6)
    kept = dict((s, c) for s, c in out["param_trajectory"])
    for step, c in opt.param_trajectory:
        assert kept[max(s for s in kept if s <= step)] == c
    assert not torch.equal(head_before, model.classifier.weight.detach())  # AdamW trained the head
    cb = pm.callbacks[0]
    assert len(cb.lrs) == 6
    # runner defaults: RMS-normalised step at 10x the Trainer's current rate (1e-2 at step 0, no warm-up)
    assert pm.info["precondition"] == "rms" and pm.info["lr_scale"] == 10.0
    assert cb.lrs[0] == pytest.approx(10 * 1e-2) and cb.lrs[-1] < cb.lrs[0]  # follows the linear decay
    for m in cb.optimizer.layers.values():
        u, v = m.U.detach(), m.V.detach()
        eye = torch.eye(m.rank)
        assert float((u.T @ u - eye).abs().max()) < 1e-5  # AdamW never touched the bases
        assert float((v.T @ v - eye).abs().max()) < 1e-5
        assert m.lora_U.grad is None
        assert float(m.S.detach().abs().sum()) > 0  # the adapters moved


def test_coefficient_steps_schedule(tmp_path) -> None:
    """c = 3: augment at steps 0, 4, ...; truncate after step floor(9/4) = 2 of each cycle."""
    model = _model()
    budget = lora_budget(model, TARGETS, 4)
    pm = prepare(model, budget_params=budget, train_steps=5, seed=1, context=_ctx(coefficient_steps=3))
    _train(pm, 5, tmp_path)
    pm.finalise(pm.model)
    traj = pm.callbacks[0].optimizer.rank_trajectory  # every step (the cell keeps the change points)
    total = [sum(r.values()) for _, r in traj]
    assert total[1] > total[0]  # augmented after step 0 (ranks doubled up to max_rank)
    assert total[1] == total[2]  # AdamW steps on S keep the rank
    assert total[3] <= total[2]  # truncation after step index 2
    assert len(pm.callbacks[0].lrs) == 2  # integrator steps at 0 and 4


def test_batched_qr_is_an_option_or_the_environment_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def prepared(**opts):  # noqa: ANN202
        model = _model()
        return prepare(
            model, budget_params=lora_budget(model, TARGETS, 4), train_steps=5, seed=0, context=_ctx(**opts)
        )

    monkeypatch.delenv("GELORA_GEOLORA_BATCHED_QR", raising=False)
    plain = prepared()
    assert not plain.callbacks[0].optimizer.batched_qr and "batched_qr" not in plain.info
    assert prepared(batched_qr=True).callbacks[0].optimizer.batched_qr
    monkeypatch.setenv("GELORA_GEOLORA_BATCHED_QR", "1")
    env = prepared()
    assert env.callbacks[0].optimizer.batched_qr and env.info["batched_qr"] is True
    assert not prepared(batched_qr=False).callbacks[0].optimizer.batched_qr  # the option wins


def test_unknown_option_raises() -> None:
    with pytest.raises(ConfigError, match="unknown geolora options"):
        prepare(_model(), budget_params=1000, train_steps=5, seed=0, context=_ctx(tua=0.1))


def test_match_initial_ranks_closest_to_budget() -> None:
    shapes = {"a": (384, 384), "b": (384, 1536), "c": (1536, 384)}
    budget = 8 * (768 + 1920 + 1920)
    ranks = match_initial_ranks(shapes, 8, budget)

    def size(rk: dict) -> int:
        return sum(rk[n] * (i + o) + rk[n] ** 2 for n, (i, o) in shapes.items())

    total = size(ranks)
    assert size(dict.fromkeys(shapes, 8)) > budget  # the cores push uniform rank 8 over the budget
    for n in shapes:  # local optimality: no further single decrement gets closer
        assert abs(size({**ranks, n: ranks[n] - 1}) - budget) >= abs(total - budget)
    assert abs(total - budget) / budget < 0.02
    assert all(r in (7, 8) for r in ranks.values())
