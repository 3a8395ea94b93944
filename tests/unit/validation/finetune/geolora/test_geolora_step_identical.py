"""The streamlined GeoLoRA step trains bit for bit like the implementation it replaced (CPU, float32).

The reference is the previous implementation, copied below (``_RefOptimizer``, ``_ref_select_ranks``,
``_RefLayer``): the per-adapter core assembly, scalar RMS factor, per-gradient finite check, per-core
device gather before the SVDs, per-adapter zero/diag writes, the scaling multiply in the forward and the
rank buffer written on every rank change. A copy rather than a stored fingerprint: the comparison then
holds on any machine and torch build, and a failure shows where the two part.

A tiny random BERT with adapters on its attention and feed-forward linears is trained from the same seed
twice, once with each implementation (AdamW on the head, the integrator on the adapters); every step's
loss, ranks, step record and, at the end of each step, every adapter's ``U``, ``S``, ``V`` and the whole
state dict must agree bit for bit (the float32 words, so that ``-0.0`` differs from ``0.0``). The
schedule covers a zero first step (``lr = 0`` at ``S = 0``: the rank growth is undone), augmentation
and truncation with rank changes, adapters at their maximal rank (no new directions), a binding
parameter cap, and steps skipped for a NaN and an infinite gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pytest
import torch

from gelora.errors import ConfigError
from synthetic.tiny_models import tiny_bert_classifier, token_batches
from validation.finetune.geolora import optim as optim_mod
from validation.finetune.geolora.layer import (
    GeoLoRALinear,
    _GeoLoRAFunction,
    adapter_param_count,
    inject_geolora,
)
from validation.finetune.geolora.optim import GeoLoRAOptimizer, discarded_mass

STEPS = 14
BAD_STEPS = {6: math.nan, 9: math.inf}  # a gradient entry set to this before the step: the step is skipped


# --- the previous implementation (reference) ------------------------------------------------------------
def _ref_select_ranks(
    sigmas: Sequence[torch.Tensor],
    tau: float,
    *,
    min_ranks: Sequence[int],
    max_ranks: Sequence[int],
    mode: Literal["global", "local"] = "global",
    param_costs: Sequence[tuple[int, int]] | None = None,
    budget_params: int | None = None,
) -> list[int]:
    if not 0.0 <= tau < 1.0:
        raise ConfigError(f"tau must be in [0, 1), got {tau}")
    n = [int(s.numel()) for s in sigmas]
    lo = [min(int(a), k) for a, k in zip(min_ranks, n, strict=True)]
    hi = [max(min(int(b), k), lo_i) for b, k, lo_i in zip(max_ranks, n, lo, strict=True)]
    vals = [s.detach().double().cpu() for s in sigmas]
    ranks = list(hi)
    if mode == "local":
        for i, s in enumerate(vals):
            allowed2 = (tau * float(s.norm())) ** 2
            disc2 = float((s[ranks[i] :] ** 2).sum())
            while ranks[i] > lo[i] and disc2 + float(s[ranks[i] - 1] ** 2) <= allowed2:
                ranks[i] -= 1
                disc2 += float(s[ranks[i]] ** 2)
    else:
        total2 = sum(float((s**2).sum()) for s in vals)
        allowed2 = tau * tau * total2
        disc2 = sum(float((s[r:] ** 2).sum()) for s, r in zip(vals, ranks, strict=True))
        cand = sorted(((float(s[j]), i, -j) for i, s in enumerate(vals) for j in range(lo[i], ranks[i])))
        for v, i, neg_j in cand:
            j = -neg_j
            if disc2 + v * v > allowed2:
                break
            if j == ranks[i] - 1:
                ranks[i] -= 1
                disc2 += v * v
    if budget_params is not None:
        assert param_costs is not None

        def total_params() -> int:
            return sum(adapter_param_count(a, b, r) for (a, b), r in zip(param_costs, ranks, strict=True))

        while total_params() > budget_params:
            best = None
            for i, s in enumerate(vals):
                if ranks[i] > lo[i]:
                    v = float(s[ranks[i] - 1])
                    if best is None or v < best[0]:
                        best = (v, i)
            if best is None:
                break
            ranks[best[1]] -= 1
    return ranks


class _RefOptimizer(GeoLoRAOptimizer):
    """The previous ``augment`` / ``truncate`` (and their helpers), verbatim but for names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ref_rms: dict[int, tuple[torch.Tensor, int]] = {}

    def _ref_augment(self, m: GeoLoRALinear, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = m.rank
        g_k, g_s, g_l = self._grads(m)
        u, s, v = m.U.detach(), m.S.detach(), m.V.detach()
        r1 = min(2 * r, m.max_rank)
        qu, ru = torch.linalg.qr(torch.cat([u, g_k], dim=1), mode="reduced")
        qv, rv = torch.linalg.qr(torch.cat([v, g_l], dim=1), mode="reduced")
        ru11, rv11 = ru[:r, :r], rv[:r, :r]
        u_new, v_new = qu[:, r:r1], qv[:, r:r1]
        blk_k = u_new.T @ g_k
        blk_l = g_l.T @ v_new
        eff: float | torch.Tensor = lr * self._ref_rms_factor(m, g_s, blk_k, blk_l)
        s_new = s - eff * (g_s + self.weight_decay * s)
        core = torch.zeros(r1, r1, dtype=s.dtype, device=s.device)
        core[:r, :r] = ru11 @ s_new @ rv11.T
        if r1 > r:
            core[r:, :r] = (-eff * blk_k) @ rv11.T
            core[:r, r:] = ru11 @ (-eff * blk_l)
        return qu[:, :r1], qv[:, :r1], core

    def _ref_rms_factor(self, m: GeoLoRALinear, *blocks: torch.Tensor) -> float | torch.Tensor:
        if self.precondition == "none":
            return 1.0
        sq = sum((b.double() ** 2).sum() for b in blocks)
        cnt = max(sum(b.numel() for b in blocks), 1)
        v, t = self._ref_rms.get(id(m), (torch.zeros((), dtype=torch.float64, device=blocks[0].device), 0))
        v = self.beta2 * v + (1.0 - self.beta2) * (sq / cnt)
        t += 1
        self._ref_rms[id(m)] = (v, t)
        v_hat = v / (1.0 - self.beta2**t)
        return (1.0 / (torch.sqrt(v_hat) + self.eps)).to(blocks[0].dtype)

    def _grads_finite(self) -> bool:
        flags = [
            torch.isfinite(p.grad).all()
            for m in self.layers.values()
            for p in (m.lora_U, m.lora_S, m.lora_V)
            if p.grad is not None
        ]
        return bool(torch.stack(flags).all()) if flags else True

    @torch.no_grad()
    def augment(self, lr: float | None = None) -> bool:
        lr = self._check_lr(lr)
        if not self._grads_finite():
            self.zero_grad()
            return False
        augs = [self._ref_augment(m, lr) for m in self.layers.values()]
        self._pre_augment_ranks = self.ranks()
        for m, (u, v, core) in zip(self.layers.values(), augs, strict=True):
            r1 = core.shape[0]
            m.lora_U[:, :r1] = u
            m.lora_V[:, :r1] = v
            m.lora_S.zero_()
            m.lora_S[:r1, :r1] = core
            m.rank = int(r1)
        self.zero_grad()
        return True

    @torch.no_grad()
    def truncate(self) -> float:
        mods = list(self.layers.values())
        svds = self._ref_svds([m.S.detach() for m in mods])
        scaled = [m.scaling * sv[1] for m, sv in zip(mods, svds, strict=True)]
        if sum(float((s.double() ** 2).sum()) for s in scaled) == 0.0:
            for name, m in self.layers.items():
                m.rank = min(m.rank, self._pre_augment_ranks.get(name, m.rank))
            self._pre_augment_ranks = {}
            return 0.0
        new_ranks = _ref_select_ranks(
            scaled,
            self.tau,
            min_ranks=[self.min_rank] * len(mods),
            max_ranks=[m.max_rank for m in mods],
            mode=self.mode,
            param_costs=[(m.in_features, m.out_features) for m in mods],
            budget_params=self.budget_params,
        )
        self._pre_augment_ranks = {}
        disc, tot = discarded_mass(scaled, new_ranks)
        pieces = []
        for (p, sig, qh), r_new in zip(svds, new_ranks, strict=True):
            pieces += [p[:, :r_new].reshape(-1), qh[:r_new, :].T.reshape(-1), sig[:r_new]]
        dev, dt = mods[0].lora_S.device, mods[0].lora_S.dtype
        flat = torch.cat(pieces).to(dev, dt)
        off = 0
        for m, (p, _, _), r_new in zip(mods, svds, new_ranks, strict=True):
            n1 = p.shape[0]
            pk = flat[off : off + n1 * r_new].reshape(n1, r_new)
            off += n1 * r_new
            qk = flat[off : off + n1 * r_new].reshape(n1, r_new)
            off += n1 * r_new
            sk = flat[off : off + r_new]
            off += r_new
            u, v = m.U.detach().clone(), m.V.detach().clone()
            m.lora_U[:, :r_new] = u @ pk.to(m.lora_U.dtype)
            m.lora_V[:, :r_new] = v @ qk.to(m.lora_V.dtype)
            m.lora_S.zero_()
            m.lora_S[:r_new, :r_new] = torch.diag(sk.to(m.lora_S.dtype))
            m.rank = int(r_new)
        return disc / tot

    @staticmethod
    def _ref_svds(cores: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        flat = torch.cat([c.reshape(-1) for c in cores]).to("cpu", torch.float64)
        out = []
        off = 0
        for c in cores:
            n = c.shape[0]
            core = flat[off : off + n * n].reshape(n, n)
            off += n * n
            out.append(torch.linalg.svd(core))
        return out


def _ref_rank_set(self: GeoLoRALinear, value: int) -> None:
    value = int(value)
    if not 0 <= value <= self.max_rank:
        raise ConfigError(f"rank must be in [0, {self.max_rank}], got {value}")
    self._rank = value
    self.lora_rank.fill_(value)


class _RefLayer(GeoLoRALinear):
    """The previous forward (``scaling * delta`` always) and rank setter (buffer written on every change)."""

    rank = property(lambda self: self._rank, _ref_rank_set)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.rank == 0:
            return out
        dtype = self.lora_U.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            xa = self.dropout(x).to(dtype)
            delta = _GeoLoRAFunction.apply(xa, self.U, self.S, self.V)
        return out + (self.scaling * delta).to(out.dtype)


# --- the comparison ----------------------------------------------------------------------------------------
def _tiny_bert() -> Any:
    return tiny_bert_classifier(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` as its float32 words (``-0.0`` and ``0.0`` differ); other dtypes as they are."""
    t = t.detach().clone().contiguous()
    return t.view(torch.int32) if t.dtype == torch.float32 else t


SETTINGS: dict[str, dict[str, Any]] = {
    # the runner's setting: RMS step, global tau rule under a parameter cap (the cap binds)
    "rms-global-cap": {"opt": {"precondition": "rms", "mode": "global", "min_rank": 1, "cap": True}},
    # the paper's plain step, per-adapter rule, a non-unit scaling and weight decay
    "plain-local": {
        "opt": {"precondition": "none", "mode": "local", "min_rank": 2, "weight_decay": 0.1},
        "alpha": 2.0,
    },
    # no cap, adapter dropout (same seed: same masks), a loose tau so adapters reach max_rank
    "rms-global-dropout": {
        "opt": {"precondition": "rms", "mode": "global", "min_rank": 1, "tau": 0.02},
        "dropout": 0.1,
    },
    # the runner's setting with the bases of equal shape factorised by one batched QR (new code only)
    "rms-global-cap-batched-qr": {
        "opt": {"precondition": "rms", "mode": "global", "min_rank": 1, "cap": True, "batched_qr": True}
    },
}


def _train(setting: str, reference: bool, record: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = SETTINGS[setting]
    model = _tiny_bert()
    layers = inject_geolora(
        model,
        ("query", "value", "attention.output.dense", "intermediate.dense"),
        init_rank=3,
        max_rank=6,
        alpha=cfg.get("alpha", 1.0),
        dropout=cfg.get("dropout", 0.0),
        seed=2,
    )
    if reference:
        for m in layers.values():
            m.__class__ = _RefLayer
    opts = dict(cfg["opt"])
    if reference:
        opts.pop("batched_qr", None)  # the previous implementation factorised one adapter at a time
    cap = sum(m.n_trainable() for m in layers.values()) if opts.pop("cap", False) else None
    cls = _RefOptimizer if reference else GeoLoRAOptimizer
    geo = cls(layers, lr=0.05, budget_params=cap, tau=opts.pop("tau", 0.15), **opts)
    head = torch.optim.AdamW([p for n, p in model.named_parameters() if "classifier" in n], lr=1e-2)
    torch.manual_seed(7)  # dropout masks
    out: dict[str, Any] = {"losses": [], "ranks": [], "records": [], "params": [], "state": None}
    for step, batch in enumerate(token_batches(STEPS)):
        loss = model(**batch).loss
        loss.backward()
        if step in BAD_STEPS:
            grad = next(iter(layers.values())).lora_S.grad
            assert grad is not None
            grad[0, 0] = BAD_STEPS[step]
        rec = geo.step(0.0 if step == 0 else 0.05)
        head.step()
        head.zero_grad()
        out["losses"].append(_bits(loss))
        out["ranks"].append(geo.ranks())
        out["records"].append(rec)
        out["params"].append(
            [_bits(p) for m in layers.values() for p in (m.lora_U, m.lora_S, m.lora_V)]
            + [_bits(model.classifier.weight)]
        )
    out["state"] = {k: _bits(v) for k, v in model.state_dict().items()}
    out["summary"] = geo.summary()
    return out


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_step_is_bit_identical_to_the_previous_implementation(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    binding: list[bool] = []
    real = optim_mod.select_ranks

    def spy(sigmas: Any, tau: float, **kw: Any) -> list[int]:
        ranks = real(sigmas, tau, **kw)
        assert ranks == _ref_select_ranks(sigmas, tau, **kw)
        if kw.get("budget_params") is not None:
            binding.append(ranks != real(sigmas, tau, **{**kw, "budget_params": None}))
        return ranks

    monkeypatch.setattr(optim_mod, "select_ranks", spy)
    batched: list[int] = []  # sizes of the batched QR groups (batched_qr only)
    real_qr = optim_mod._grouped_qr

    def qr_spy(mats: Any) -> Any:
        shapes = [tuple(a.shape) for a in mats]
        batched.extend(n for n in (shapes.count(x) for x in set(shapes)) if n > 1)
        return real_qr(mats)

    monkeypatch.setattr(optim_mod, "_grouped_qr", qr_spy)
    new = _train(setting, reference=False)
    ref = _train(setting, reference=True)
    for step in range(STEPS):
        assert torch.equal(new["losses"][step], ref["losses"][step]), f"loss differs at step {step}"
        assert new["ranks"][step] == ref["ranks"][step], f"ranks differ at step {step}"
        assert new["records"][step] == ref["records"][step], f"step record differs at step {step}"
        for i, (a, b) in enumerate(zip(new["params"][step], ref["params"][step], strict=True)):
            assert torch.equal(a, b), f"parameter {i} differs after step {step}"
    assert new["state"].keys() == ref["state"].keys()
    for k in new["state"]:
        assert torch.equal(new["state"][k], ref["state"][k]), k
    assert new["summary"] == ref["summary"]

    # the schedule covered what it claims to
    recs = new["records"]
    assert recs[0].discarded_rel == 0.0 and not recs[0].skipped  # the zero step
    assert [r.step for r in recs if r.skipped] == [s + 1 for s in sorted(BAD_STEPS)]
    assert len({tuple(r.values()) for r in new["ranks"]}) > 2  # ranks changed
    assert any(r < 6 for rs in new["ranks"] for r in rs.values())  # r1 < max_rank: new directions
    if setting.startswith("rms-global-cap"):
        assert any(binding)
    assert bool(batched) == setting.endswith(
        "batched-qr"
    )  # groups of several bases were factorised at once  # the parameter cap dropped values the tau rule kept
    if setting == "rms-global-dropout":
        assert any(r == 6 for rs in new["ranks"] for r in rs.values())  # at max_rank: no new directions


def test_rank_buffer_follows_in_the_state_dict() -> None:
    """``lora_rank`` is written when a state dict is taken; loading it restores the active rank."""
    model = _tiny_bert()
    layers = inject_geolora(model, ("query",), init_rank=3, max_rank=6, seed=2)
    m = next(iter(layers.values()))
    m.rank = 5
    key = next(k for k in model.state_dict() if k.endswith("lora_rank"))
    sd = model.state_dict()
    assert int(sd[key]) == 5
    m.rank = 2
    model.load_state_dict(sd)
    assert m.rank == 5
