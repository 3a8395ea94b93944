"""GeoLoRA adapter layer: forward, the single-tape K/L/S gradients, injection into a BERT model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gelora.errors import ConfigError, UnknownLayerError
from synthetic.tiny_models import tiny_bert_classifier
from validation.finetune.geolora.layer import (
    BERT_TARGET_MODULES,
    GeoLoRALinear,
    adapter_param_count,
    find_geolora_layers,
    inject_geolora,
)


def _tiny_bert() -> nn.Module:
    return tiny_bert_classifier(vocab_size=40, max_position_embeddings=512)


def test_forward_equals_base_at_init_and_bases_orthonormal() -> None:
    base = nn.Linear(12, 7)
    layer = GeoLoRALinear(base, init_rank=3, max_rank=6, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 4, 12)
    torch.testing.assert_close(layer(x), base(x))  # S = 0 at start, like LoRA's B = 0
    assert layer.max_rank == 6 and layer.rank == 3
    eye = torch.eye(6)
    torch.testing.assert_close(layer.lora_U.T @ layer.lora_U, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.lora_V.T @ layer.lora_V, eye, atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in base.parameters())


def test_max_rank_clipped_to_matrix_size() -> None:
    layer = GeoLoRALinear(nn.Linear(5, 3), init_rank=2, max_rank=16)
    assert layer.max_rank == 3


def test_forward_matches_dense_formula() -> None:
    torch.manual_seed(0)
    base = nn.Linear(9, 6).double()
    layer = GeoLoRALinear(base, init_rank=3, max_rank=4, alpha=0.7).double()
    with torch.no_grad():
        layer.lora_S.copy_(torch.randn(4, 4, dtype=torch.float64))
    x = torch.randn(8, 9, dtype=torch.float64)
    dense = base(x) + 0.7 * x @ (layer.U @ layer.S @ layer.V.T).T
    torch.testing.assert_close(layer(x), dense)
    torch.testing.assert_close(layer.delta_weight(), 0.7 * layer.U @ layer.S @ layer.V.T)


def test_backward_gives_k_l_s_gradients_and_exact_input_gradient() -> None:
    """U.grad = G_W V, V.grad = G_W^T U, S.grad = U^T G_W V (G_W: gradient wrt the dense adapter)."""
    torch.manual_seed(0)
    base = nn.Linear(9, 6).double()
    layer = GeoLoRALinear(base, init_rank=3, max_rank=5, alpha=1.3).double()
    with torch.no_grad():
        layer.lora_S.copy_(torch.randn(5, 5, dtype=torch.float64))
    x = torch.randn(4, 3, 9, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 3, 6, dtype=torch.float64)
    loss = ((layer(x) - target) ** 2).sum()
    loss.backward()
    # reference: autograd through the dense adapter matrix
    u, s, v = (t.detach() for t in (layer.U, layer.S, layer.V))
    w = (u @ s @ v.T).clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = ((base(x2) + 1.3 * x2 @ w.T - target) ** 2).sum()
    ref.backward()
    g_w = w.grad / 1.3  # gradient wrt U S V^T before the scaling; layer grads carry the scaling
    r = layer.rank
    torch.testing.assert_close(layer.lora_U.grad[:, :r], 1.3 * g_w @ v)
    torch.testing.assert_close(layer.lora_V.grad[:, :r], 1.3 * g_w.T @ u)
    torch.testing.assert_close(layer.lora_S.grad[:r, :r], 1.3 * u.T @ g_w @ v)
    torch.testing.assert_close(x.grad, x2.grad)
    # inactive columns receive exactly zero gradient
    assert float(layer.lora_U.grad[:, r:].abs().max()) == 0.0
    assert float(layer.lora_S.grad[r:, :].abs().max()) == 0.0


def test_adapter_param_count() -> None:
    assert adapter_param_count(10, 6, 3) == 3 * 16 + 9
    layer = GeoLoRALinear(nn.Linear(10, 6), init_rank=2, max_rank=4)
    assert layer.n_trainable() == 2 * 16 + 4


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"init_rank": 0}, "must be >= 1"),
        ({"init_rank": 5, "max_rank": 4}, "exceeds"),
        ({"dropout": 1.0}, "dropout"),
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_bad_config_raises(kwargs: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        GeoLoRALinear(nn.Linear(8, 8), **kwargs)


def test_inject_into_bert_targets_freezing_and_head() -> None:
    model = _tiny_bert()
    layers = inject_geolora(model, BERT_TARGET_MODULES, init_rank=2, max_rank=4, seed=3)
    # 2 layers x (query, key, value, attention.output.dense, intermediate.dense, output.dense)
    assert len(layers) == 12
    assert set(layers) == set(find_geolora_layers(model))
    assert "classifier" not in layers and "bert.pooler.dense" not in layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if "lora_" in n or n.startswith("classifier.")}
    assert any(n.startswith("classifier.") for n in trainable)
    ids = torch.randint(0, 40, (3, 5))
    out = model(input_ids=ids, labels=torch.tensor([0, 1, 0]))
    out.loss.backward()
    assert all(m.lora_S.grad is not None for m in layers.values())


def test_inject_same_seed_same_bases() -> None:
    a = inject_geolora(_tiny_bert(), ("query",), seed=5)
    b = inject_geolora(_tiny_bert(), ("query",), seed=5)
    for n in a:
        torch.testing.assert_close(a[n].lora_U, b[n].lora_U)


def test_inject_unknown_target_raises() -> None:
    with pytest.raises(UnknownLayerError, match="no nn.Linear"):
        inject_geolora(_tiny_bert(), ("no_such_module",))
    with pytest.raises(ConfigError, match="empty"):
        inject_geolora(_tiny_bert(), ())


def test_state_dict_round_trip_restores_rank() -> None:
    a = GeoLoRALinear(nn.Linear(8, 6), init_rank=2, max_rank=5)
    with torch.no_grad():
        a.lora_S[:4, :4] = torch.randn(4, 4)
    a.rank = 4
    b = GeoLoRALinear(nn.Linear(8, 6), init_rank=1, max_rank=5)
    b.load_state_dict(a.state_dict())
    assert b.rank == 4
    x = torch.randn(3, 8)
    torch.testing.assert_close(b(x), a(x))
    with pytest.raises(ConfigError, match="rank must be in"):
        a.rank = 6
