"""The GeoLoRA integrator step: coefficient update, basis augmentation, (global) truncation.

One step of GeoLoRA (Schotthoefer et al., arXiv 2410.18720, Algorithm 1 -- the parallel rank-adaptive
integrator of Ceruti, Kusch & Lubich discretised with one explicit Euler step) for an adapter
``dW = U S V^T`` (U: (n, r), S: (r, r), V: (m, r), orthonormal U, V), given from one backward pass
``G_K = G_W V`` (n, r), ``G_L = G_W^T U`` (m, r), ``G_S = U^T G_W V`` (r, r) with ``G_W = dL/d(dW)``
(see :mod:`validation.finetune.geolora.layer`), and a learning rate ``lr``:

1. **Augment** each basis with the new directions the K- and L-steps would add:
   ``[U, U_new] = orth([U, G_K])``, ``[V, V_new] = orth([V, G_L])``, with at most ``r`` new
   columns and ``r + r_new <= max_rank``.
2. **Update** the augmented core (Galerkin step of the three sub-flows, lower-right block zero)::

       S_aug = [[ S - lr G_S ,  -lr G_L^T V_new ],
                [ -lr U_new^T G_K ,      0        ]]

   so that ``[U U_new] S_aug [V V_new]^T = dW - lr * P(G_W)`` where ``P`` is the orthogonal projection
   onto ``{U A V^T + U_new B V^T + U C V_new^T}`` -- a projected gradient step, hence a descent step
   for ``lr <= 1/L`` on an L-smooth loss (the paper's descent guarantee; tested in the unit tests).
3. **Truncate**: SVD ``S_aug = P diag(sigma) Q^T``; keep the leading ``r'`` singular triplets, set
   ``U <- [U U_new] P[:, :r']``, ``V <- [V V_new] Q[:, :r']``, ``S <- diag(sigma[:r'])``.

Truncation rule (definition used here)
--------------------------------------
The paper truncates with the threshold ``theta = tau * ||sigma||_2``: the new rank is the smallest
``r'`` with ``||sigma[r':]||_2 <= tau * ||sigma||_2`` -- the discarded singular values, in Frobenius
norm, are at most the fraction ``tau`` of the augmented adapter's Frobenius norm. ``mode="local"``
applies this per adapter (what the authors' public code does). ``mode="global"`` (default here)
applies it to the singular values of *all* adapters together (each multiplied by its layer's output
scaling, so they are singular values of the actual weight updates ``scaling * dW``): the smallest
values over the whole model are discarded while the discarded mass ``sqrt(sum sigma_discarded^2)``
stays ``<= tau * sqrt(sum_all sigma^2)``. Hence the budget moves between layers: a layer whose
singular values are small relative to the others loses rank, a layer with large new directions gains.
Two hard limits come first: ``min_rank <= r' <= max_rank`` per layer, and optionally a total parameter
cap ``budget_params`` (after the tau rule, further smallest values are dropped until the total
adapter size fits). Values dropped because of these limits may exceed the tau mass; they are reported
in :attr:`GeoLoRAOptimizer.history`.

The coefficient update is plain steepest descent, as in the paper's algorithm and the authors'
public code (``step(learning_rate, ...)``); no momentum is carried across basis changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from gelora.errors import ConfigError

from .layer import GeoLoRALinear, adapter_param_count

__all__ = [
    "DEFAULT_TAU",
    "DEFAULT_MIN_RANK",
    "GeoLoRAOptimizer",
    "StepRecord",
    "discarded_mass",
    "select_ranks",
]

#: Truncation tolerance. The authors' public GLUE scripts use ``tau = 0.15`` (DeBERTaV3-base); the
#: ViT experiments of the paper use ``tau = 0.3`` (Figure 2). Per-table values are not verified.
DEFAULT_TAU = 0.15
#: Smallest rank an adapter may be truncated to. The authors' public code uses 2; a rank of 0 would
#: be absorbing (no basis left to augment from).
DEFAULT_MIN_RANK = 2


@dataclass(frozen=True)
class StepRecord:
    """What one integrator step did.

    Attributes
    ----------
    step : int
        Step counter after this step.
    lr : float
        Learning rate used for the coefficient update.
    ranks : dict of str to int
        Rank of every adapter after truncation.
    n_params : int
        Total trainable adapter parameters after truncation (:func:`adapter_param_count`).
    discarded_rel : float
        ``sqrt(sum of discarded sigma^2) / sqrt(sum of all sigma^2)`` over all adapters (0 if all zero).
    skipped : bool
        True if the step was skipped because a gradient was not finite.
    """

    step: int
    lr: float
    ranks: dict[str, int]
    n_params: int
    discarded_rel: float
    skipped: bool = False


def discarded_mass(sigmas: Sequence[torch.Tensor], ranks: Sequence[int]) -> tuple[float, float]:
    """Discarded and total Frobenius mass of a truncation.

    Parameters
    ----------
    sigmas : sequence of 1-D tensors
        Singular values of each core, in descending order.
    ranks : sequence of int
        Kept rank per core.

    Returns
    -------
    (discarded, total) : tuple of float
        ``sqrt(sum_l sum_{i >= r_l} sigma_{l,i}^2)`` and ``sqrt(sum_l sum_i sigma_{l,i}^2)``.
    """
    disc = sum(float((s[r:].double() ** 2).sum()) for s, r in zip(sigmas, ranks, strict=True))
    tot = sum(float((s.double() ** 2).sum()) for s in sigmas)
    return math.sqrt(disc), math.sqrt(tot)


def select_ranks(
    sigmas: Sequence[torch.Tensor],
    tau: float,
    *,
    min_ranks: Sequence[int],
    max_ranks: Sequence[int],
    mode: Literal["global", "local"] = "global",
    param_costs: Sequence[tuple[int, int]] | None = None,
    budget_params: int | None = None,
) -> list[int]:
    """New ranks from singular values by the tau rule (see module docstring for the definition).

    Parameters
    ----------
    sigmas : sequence of 1-D tensors
        Singular values of each (augmented, scaled) core in descending order; lengths ``n_l``.
    tau : float
        Relative tolerance in [0, 1): discarded Frobenius mass ``<= tau *`` total mass (global) or
        per core (local).
    min_ranks, max_ranks : sequence of int
        Per-core bounds; ``min(min_rank, n_l)`` and ``min(max_rank, n_l)`` are used.
    mode : {"global", "local"}
        Pool all cores (global budget) or apply the rule per core.
    param_costs : sequence of (in_features, out_features), optional
        Needed with ``budget_params``: sizes of each adapter.
    budget_params : int, optional
        Cap on ``sum_l adapter_param_count(in_l, out_l, r_l)``; after the tau rule the globally
        smallest remaining values are dropped (never below ``min_ranks``) until the cap holds.

    Returns
    -------
    list of int
        Kept rank per core.
    """
    if not 0.0 <= tau < 1.0:
        raise ConfigError(f"tau must be in [0, 1), got {tau}")
    if mode not in ("global", "local"):
        raise ConfigError(f"mode must be 'global' or 'local', got {mode!r}")
    n = [int(s.numel()) for s in sigmas]
    lo = [min(int(a), k) for a, k in zip(min_ranks, n, strict=True)]
    hi = [max(min(int(b), k), lo_i) for b, k, lo_i in zip(max_ranks, n, lo, strict=True)]
    vals = [s.detach().double().cpu() for s in sigmas]
    # the single values as Python floats, one conversion per core (``float(s[j])`` is the same number;
    # ``x * x`` of it is the same number as ``float(s[j] ** 2)``); sums stay torch reductions
    floats = [s.tolist() for s in vals]
    ranks = list(hi)  # hard upper bound first
    if mode == "local":
        for i, s in enumerate(vals):
            f = floats[i]
            allowed2 = (tau * float(s.norm())) ** 2
            disc2 = float((s[ranks[i] :] ** 2).sum())
            while ranks[i] > lo[i] and disc2 + f[ranks[i] - 1] * f[ranks[i] - 1] <= allowed2:
                ranks[i] -= 1
                disc2 += f[ranks[i]] * f[ranks[i]]
    else:
        total2 = sum(float((s**2).sum()) for s in vals)
        allowed2 = tau * tau * total2
        disc2 = sum(float((s[r:] ** 2).sum()) for s, r in zip(vals, ranks, strict=True))
        cand = sorted(
            ((f[j], i, -j) for i, f in enumerate(floats) for j in range(lo[i], ranks[i])),
        )
        # ascending order; within a core this removes trailing values first (sigma is sorted)
        for v, i, neg_j in cand:
            j = -neg_j
            if disc2 + v * v > allowed2:
                break
            if j == ranks[i] - 1:
                ranks[i] -= 1
                disc2 += v * v
    if budget_params is not None:
        if param_costs is None:
            raise ConfigError("budget_params needs param_costs")

        total = sum(adapter_param_count(a, b, r) for (a, b), r in zip(param_costs, ranks, strict=True))
        while total > budget_params:
            best = None
            for i, f in enumerate(floats):
                if ranks[i] > lo[i]:
                    v = f[ranks[i] - 1]
                    if best is None or v < best[0]:
                        best = (v, i)
            if best is None:
                break
            i = best[1]
            a, b = param_costs[i]
            total -= adapter_param_count(a, b, ranks[i]) - adapter_param_count(a, b, ranks[i] - 1)
            ranks[i] -= 1
    return ranks


@dataclass
class _Aug:
    """One adapter's augmentation before its core is assembled (step 1 of the module docstring)."""

    r: int
    r1: int
    u: torch.Tensor  # (out, r1) augmented orthonormal basis
    v: torch.Tensor  # (in, r1)
    ru11: torch.Tensor  # (r, r): U = Q_u[:, :r] ru11
    rv11: torch.Tensor  # (r, r)
    g_s: torch.Tensor  # (r, r)
    blk_k: torch.Tensor  # (r1 - r, r)
    blk_l: torch.Tensor  # (r, r1 - r)


@dataclass
class _AugInputs:
    """What step 1 needs of one adapter before its QRs (:meth:`GeoLoRAOptimizer._augment_inputs`)."""

    r: int
    r1: int
    g_k: torch.Tensor  # (out, r)
    g_s: torch.Tensor  # (r, r)
    g_l: torch.Tensor  # (in, r)
    cat_u: torch.Tensor  # (out, 2r): [U, G_K]
    cat_v: torch.Tensor  # (in, 2r): [V, G_L]


def _finish_aug(
    x: _AugInputs, qu: torch.Tensor, ru: torch.Tensor, qv: torch.Tensor, rv: torch.Tensor
) -> _Aug:
    """The augmented bases and the core's gradient blocks from the two QR factorisations of one adapter."""
    r, r1 = x.r, x.r1
    u_new, v_new = qu[:, r:r1], qv[:, r:r1]
    blk_k = u_new.T @ x.g_k  # (r1 - r, r): new left directions x old right basis
    blk_l = x.g_l.T @ v_new  # (r, r1 - r): old left basis x new right directions
    return _Aug(r, r1, qu[:, :r1], qv[:, :r1], ru[:r, :r], rv[:r, :r], x.g_s, blk_k, blk_l)


def _grouped_qr(mats: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Reduced QR of each matrix, one batched call per group of equal shape, dtype and device (a group of
    one: the plain call)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, a in enumerate(mats):
        groups.setdefault((tuple(a.shape), a.dtype, a.device), []).append(i)
    out: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(mats)  # type: ignore[list-item]
    for idx in groups.values():
        if len(idx) == 1:
            out[idx[0]] = torch.linalg.qr(mats[idx[0]], mode="reduced")
            continue
        q, rr = torch.linalg.qr(torch.stack([mats[i] for i in idx]), mode="reduced")
        for i, qi, ri in zip(idx, q.unbind(), rr.unbind(), strict=True):
            out[i] = (qi, ri)
    return out


class GeoLoRAOptimizer:
    """GeoLoRA's integrator over a set of :class:`GeoLoRALinear` adapters.

    Use after ``loss.backward()``: ``opt.step()`` reads the K-, L-, S-gradients stored by the
    adapters' backward, updates and truncates all adapters, and sets their ``.grad`` to ``None`` (so a
    second optimizer over the same parameters, e.g. the Trainer's AdamW, skips them).

    Parameters
    ----------
    layers : mapping of str to GeoLoRALinear
        The adapters (e.g. from :func:`validation.finetune.geolora.layer.inject_geolora`).
    lr : float
        Learning rate of the coefficient (steepest-descent) update; overridable per call of
        :meth:`step`. The authors' GLUE scripts use 1e-3 with the Trainer's warm-up/linear schedule
        (not verified against the paper's tables).
    tau : float
        Truncation tolerance in [0, 1) (:data:`DEFAULT_TAU`).
    mode : {"global", "local"}
        Global budget over all adapters (default) or per-adapter truncation.
    min_rank : int
        Lower rank bound per adapter (:data:`DEFAULT_MIN_RANK`).
    budget_params : int, optional
        Hard cap on the total adapter parameter count (see :func:`select_ranks`).
    weight_decay : float
        Decoupled weight decay on the core: ``S <- S - lr * weight_decay * S`` (default 0).
    precondition : {"none", "rms"}
        ``"none"``: the paper's plain steepest-descent step. ``"rms"``: divide each layer's step by the
        root of a running (Adam-style, bias-corrected) mean square of its projected gradient -- one
        scalar per layer, invariant under the basis changes (an extension, not from the paper; it makes
        an AdamW-sized ``lr`` usable).
    beta2, eps : float
        Decay and floor of the ``"rms"`` running mean square.
    batched_qr : bool, default False
        Factorise the augmented bases with one batched QR per group of equal shape (:meth:`_augment_all`);
        the same bits on the CPU, and the same parameter digest as the per-adapter QRs on an H200
        (``reports/gpu/mpnet_h200/step_bench_h200_1040.jsonl``).

    Attributes
    ----------
    step_count : int
    history : list of StepRecord
    rank_trajectory : list of (int, dict of str to int)
        ``(step, {module: rank})``, starting with the initial ranks at step 0.
    param_trajectory : list of (int, int)
        ``(step, total adapter parameters)``, starting at step 0.
    """

    def __init__(
        self,
        layers: Mapping[str, GeoLoRALinear],
        *,
        lr: float = 1e-3,
        tau: float = DEFAULT_TAU,
        mode: Literal["global", "local"] = "global",
        min_rank: int = DEFAULT_MIN_RANK,
        budget_params: int | None = None,
        weight_decay: float = 0.0,
        precondition: Literal["none", "rms"] = "none",
        beta2: float = 0.999,
        eps: float = 1e-8,
        batched_qr: bool = False,
    ) -> None:
        if precondition not in ("none", "rms"):
            raise ConfigError(f"precondition must be 'none' or 'rms', got {precondition!r}")
        if not 0.0 <= beta2 < 1.0 or not eps > 0:
            raise ConfigError(f"need 0 <= beta2 < 1 and eps > 0, got {beta2}, {eps}")
        if not layers:
            raise ConfigError("GeoLoRAOptimizer needs at least one GeoLoRALinear layer")
        for name, layer in layers.items():
            if not isinstance(layer, GeoLoRALinear):
                raise ConfigError(f"layer {name!r} is a {type(layer).__name__}, not GeoLoRALinear")
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive finite number, got {lr}")
        if not 0.0 <= tau < 1.0:
            raise ConfigError(f"tau must be in [0, 1), got {tau}")
        if mode not in ("global", "local"):
            raise ConfigError(f"mode must be 'global' or 'local', got {mode!r}")
        if min_rank < 1:
            raise ConfigError(f"min_rank must be >= 1, got {min_rank}")
        if budget_params is not None and budget_params < 1:
            raise ConfigError(f"budget_params must be positive, got {budget_params}")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        self.layers = dict(layers)
        self.lr = float(lr)
        self.tau = float(tau)
        self.mode = mode
        self.min_rank = int(min_rank)
        self.budget_params = budget_params
        self.weight_decay = float(weight_decay)
        self.precondition = precondition
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.batched_qr = bool(batched_qr)
        self._rms_state: dict[tuple[int, ...], tuple[torch.Tensor, int]] = {}
        self.step_count = 0
        self._pre_augment_ranks: dict[str, int] = {}
        self.history: list[StepRecord] = []
        self.rank_trajectory: list[tuple[int, dict[str, int]]] = [(0, self.ranks())]
        self.param_trajectory: list[tuple[int, int]] = [(0, self.n_params())]

    def ranks(self) -> dict[str, int]:
        """Current rank of every adapter."""
        return {n: int(m.rank) for n, m in self.layers.items()}

    def n_params(self) -> int:
        """Current total trainable adapter parameters."""
        return sum(m.n_trainable() for m in self.layers.values())

    def zero_grad(self) -> None:
        """Set the adapters' gradients to ``None``."""
        for m in self.layers.values():
            for p in (m.lora_U, m.lora_S, m.lora_V):
                p.grad = None

    @staticmethod
    def _grads(m: GeoLoRALinear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = m.rank

        def g(p: torch.nn.Parameter, rows: int | None, cols: int) -> torch.Tensor:
            if p.grad is None:
                shape = (p.shape[0] if rows is None else rows, cols)
                return torch.zeros(shape, dtype=p.dtype, device=p.device)
            return p.grad[: (p.shape[0] if rows is None else rows), :cols].to(p.dtype)

        return g(m.lora_U, None, r), g(m.lora_S, r, r), g(m.lora_V, None, r)

    @staticmethod
    def _augment_inputs(m: GeoLoRALinear) -> _AugInputs:
        """One adapter's rank, augmented rank, gradient blocks and the two matrices step 1 factorises."""
        r = m.rank
        g_k, g_s, g_l = GeoLoRAOptimizer._grads(m)
        u, v = m.U.detach(), m.V.detach()
        # QR of [U, G] gives Q[:, :r] R11 = U exactly: using Q as the basis re-orthonormalises U
        # every step (no drift) while R11 carries the coefficients over.
        cat_u, cat_v = torch.cat([u, g_k], dim=1), torch.cat([v, g_l], dim=1)
        return _AugInputs(r, min(2 * r, m.max_rank), g_k, g_s, g_l, cat_u, cat_v)

    @staticmethod
    def _augment_bases(m: GeoLoRALinear) -> _Aug:
        """Step 1 for one adapter: orthonormal augmented bases and the gradient blocks of the core."""
        x = GeoLoRAOptimizer._augment_inputs(m)
        qu, ru = torch.linalg.qr(x.cat_u, mode="reduced")
        qv, rv = torch.linalg.qr(x.cat_v, mode="reduced")
        return _finish_aug(x, qu, ru, qv, rv)

    def _augment_all(self, mods: Sequence[GeoLoRALinear]) -> list[_Aug]:
        """Step 1 for every adapter: one :meth:`_augment_bases` each, or (``batched_qr``) the same
        factorisations as one batched ``torch.linalg.qr`` per group of equal shape, dtype and device.

        On the CPU a batched QR runs LAPACK's ``geqrf``/``orgqr`` on each matrix as the single call does,
        so the bases are the same bits (test_geolora_step_identical.py); on CUDA the batched routine may
        be other code: measured on an H200 with ``scripts/adalora_step_bench.py --methods
        geolora,geolora@batched_qr`` (the same parameter digest, the integrator 53.0 against 60.7 ms; off by
        default so that earlier run directories resume unchanged)."""
        if not self.batched_qr:
            return [self._augment_bases(m) for m in mods]
        xs = [self._augment_inputs(m) for m in mods]
        left, right = self._factor_bases(xs)
        return [_finish_aug(x, qu, ru, qv, rv) for x, (qu, ru), (qv, rv) in zip(xs, left, right, strict=True)]

    @staticmethod
    def _factor_bases(
        xs: Sequence[_AugInputs],
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
        """The ``batched_qr`` factorisations of step 1: the augmented left and right bases of every adapter,
        one batched QR per group (a method of its own so that the step bench can time it)."""
        return _grouped_qr([x.cat_u for x in xs]), _grouped_qr([x.cat_v for x in xs])

    def _step_sizes(
        self, lr: float, augs: Sequence[_Aug]
    ) -> list[tuple[float | torch.Tensor, float | torch.Tensor]]:
        """``(eff, -eff)`` per adapter: ``lr`` times :meth:`_rms_factor` (a float with ``precondition="none"``).

        With ``"rms"`` the factors of all adapters on one device and of one dtype are computed as one
        vector -- element by element the operations of the per-adapter scalar formula, so the same
        numbers -- and each adapter gets 0-dim views of it (no device sync).
        """
        if self.precondition == "none":
            eff = lr * 1.0
            return [(eff, -eff)] * len(augs)
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, a in enumerate(augs):
            groups.setdefault((a.g_s.device, a.g_s.dtype), []).append(i)
        out: list[tuple[float | torch.Tensor, float | torch.Tensor]] = [(0.0, 0.0)] * len(augs)
        for (device, dtype), idx in groups.items():
            fac = self._rms_factor(tuple(idx), [augs[i] for i in idx], device, dtype)
            eff_v = lr * fac
            neg_v = -eff_v
            for i, e, n in zip(idx, eff_v.unbind(), neg_v.unbind(), strict=True):
                out[i] = (e, n)
        return out

    def _rms_factor(
        self, key: tuple[int, ...], augs: Sequence[_Aug], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """``1 / (sqrt(v_hat) + eps)`` per layer of the running mean square gradient (``precondition="rms"``).

        ``v <- beta2 v + (1 - beta2) mean(G^2)`` over the entries of the projected gradient blocks that
        enter the core, bias-corrected like Adam's second moment. One scalar per layer: it is invariant
        under the basis changes of augmentation and truncation (Frobenius norms are), so the step stays
        ``-lr_eff P(G_W)`` -- a projected gradient step with a per-layer rate -- and the descent property
        holds for ``lr_eff <= 1/L``. Returns a vector, one entry per adapter of ``augs`` (of one device
        and dtype; ``key`` names them in the running state).

        Numbers: per layer ``sum_b sum(b.double() ** 2)`` over the blocks in the order ``G_S``, the
        K-block, the L-block (an empty block adds exactly 0 and is left out), divided by the entry
        count; the recursion then runs on the vector of all layers, element by element as on one.
        """
        blocks = [[a.g_s] + [b for b in (a.blk_k, a.blk_l) if b.numel()] for a in augs]
        dbl = [b.double() for bl in blocks for b in bl]
        sq = [x.sum() for x in torch._foreach_mul(dbl, dbl)]  # ``x ** 2`` is computed as ``x * x``
        per: list[torch.Tensor] = []
        pos = 0
        for bl in blocks:
            per.append(sq[pos])
            pos += len(bl)
        for k in (1, 2):  # left to right: ((G_S + K) + L), as the per-layer sum did
            idx = [i for i, bl in enumerate(blocks) if len(bl) > k]
            if idx:
                offs = [sum(len(bl) for bl in blocks[:i]) + k for i in idx]
                added = torch._foreach_add([per[i] for i in idx], [sq[o] for o in offs])
                for i, total in zip(idx, added, strict=True):
                    per[i] = total
        cnt = [max(a.g_s.numel() + a.blk_k.numel() + a.blk_l.numel(), 1) for a in augs]
        mean = torch.stack(torch._foreach_div(per, cnt))
        state = self._rms_state.get(key)
        v, t = state if state is not None else (torch.zeros(len(augs), dtype=torch.float64, device=device), 0)
        v = self.beta2 * v + (1.0 - self.beta2) * mean
        t += 1
        self._rms_state[key] = (v, t)
        v_hat = v / (1.0 - self.beta2**t)
        return (1.0 / (torch.sqrt(v_hat) + self.eps)).to(dtype)

    def _grads_finite(self) -> bool:
        grads = [
            p.grad for m in self.layers.values() for p in (m.lora_U, m.lora_S, m.lora_V) if p.grad is not None
        ]
        if not grads:
            return True
        # a tensor is finite iff its largest absolute entry is (the max propagates NaN): one operator
        # for all gradients instead of five per gradient, and one host sync for all layers
        norms = torch._foreach_norm(grads, ord=math.inf)
        return bool(torch.isfinite(torch.stack(norms)).all())

    @torch.no_grad()
    def augment(self, lr: float | None = None) -> bool:
        """Steps 1-2 only: update the core and augment the bases; each rank becomes ``min(2r, max_rank)``.

        The augmented core is stored in ``lora_S[:r1, :r1]`` (not diagonal) and the augmented bases in
        the first ``r1`` columns of ``lora_U`` / ``lora_V``; the adapter's function is the augmented
        ``dW - lr * P(G_W)``. Gradients are cleared. Returns False (and changes nothing but the cleared
        gradients) if a gradient was not finite.
        """
        lr = self._check_lr(lr)
        if not self._grads_finite():
            self.zero_grad()
            return False
        mods = list(self.layers.values())
        augs = self._augment_all(mods)
        steps = self._step_sizes(lr, augs)
        cores: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []
        for m, a, (eff, neg) in zip(mods, augs, steps, strict=True):
            s = m.S.detach()
            s_new = s - eff * (a.g_s + self.weight_decay * s)
            top = a.ru11 @ s_new @ a.rv11.T
            if a.r1 > a.r:
                cores.append((top, (neg * a.blk_k) @ a.rv11.T, a.ru11 @ (neg * a.blk_l)))
            else:
                cores.append((top, None, None))
        self._pre_augment_ranks = self.ranks()
        torch._foreach_zero_([m.lora_S for m in mods])  # the core: zero but for the blocks below
        for m, a, (top, low, right) in zip(mods, augs, cores, strict=True):
            r, r1 = a.r, a.r1
            m.lora_U[:, :r1] = a.u
            m.lora_V[:, :r1] = a.v
            m.lora_S[:r, :r] = top
            if low is not None and right is not None:
                m.lora_S[r:r1, :r] = low
                m.lora_S[:r, r:r1] = right
            m.rank = int(r1)
        self.zero_grad()
        return True

    @torch.no_grad()
    def truncate(self) -> float:
        """Step 3 only: SVD of every active core and the (global or local) tau rule.

        Returns
        -------
        float
            Relative discarded mass ``sqrt(sum discarded sigma^2) / sqrt(sum sigma^2)`` (scaled by
            each layer's output scaling); 0 when every adapter is zero (ranks are then kept).
        """
        mods = list(self.layers.values())
        svds = self._svds([m.lora_S.detach() for m in mods], [m.rank for m in mods])  # CPU, float64
        scaled = [m.scaling * sv[1] for m, sv in zip(mods, svds, strict=True)]
        if sum(float((s.double() ** 2).sum()) for s in scaled) == 0.0:
            # a zero adapter everywhere (zero gradient or lr = 0 at S = 0): nothing to rank; undo the
            # augmentation's rank growth (the bases' leading columns are unchanged by it)
            for name, m in self.layers.items():
                m.rank = min(m.rank, self._pre_augment_ranks.get(name, m.rank))
            self._pre_augment_ranks = {}
            return 0.0
        new_ranks = select_ranks(
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
        # one host-to-device transfer for all kept factors: [P[:, :r'], Q[:, :r'], sigma[:r']] per layer
        pieces = []
        for (p, sig, qh), r_new in zip(svds, new_ranks, strict=True):
            pieces += [p[:, :r_new].reshape(-1), qh[:r_new, :].T.reshape(-1), sig[:r_new]]
        dev, dt = mods[0].lora_S.device, mods[0].lora_S.dtype
        flat = _to_device(torch.cat(pieces), dev, dt)
        off = 0
        diags, sks = [], []
        for m, (p, _, _), r_new in zip(mods, svds, new_ranks, strict=True):
            n1 = p.shape[0]
            pk = flat[off : off + n1 * r_new].reshape(n1, r_new)
            off += n1 * r_new
            qk = flat[off : off + n1 * r_new].reshape(n1, r_new)
            off += n1 * r_new
            sk = flat[off : off + r_new]
            off += r_new
            # the products read contiguous bases, as a copy would be: a view of all max_rank columns is
            # contiguous already, a narrower one is copied (its matrix product then sees the same layout)
            u, v = m.U.detach(), m.V.detach()
            u = u if u.is_contiguous() else u.clone()
            v = v if v.is_contiguous() else v.clone()
            m.lora_U[:, :r_new] = u @ pk.to(m.lora_U.dtype)
            m.lora_V[:, :r_new] = v @ qk.to(m.lora_V.dtype)
            diags.append(m.lora_S.diagonal()[:r_new])
            sks.append(sk.to(m.lora_S.dtype))
            m.rank = int(r_new)
        torch._foreach_zero_([m.lora_S for m in mods])
        torch._foreach_copy_(diags, sks)  # S <- diag(sigma[:r'])
        return disc / tot

    @staticmethod
    def _svds(
        buffers: Sequence[torch.Tensor], ranks: Sequence[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """SVDs of the small (r1, r1) cores, on the CPU in float64, after one device-to-host copy.

        ``buffers`` are the whole (max_rank, max_rank) core buffers (contiguous: one copy of all of them,
        no per-core gather on the device); the active ``ranks[i]`` x ``ranks[i]`` block of each is cut
        out on the host as a contiguous matrix. The cores are at most ``max_rank`` wide: on a GPU each
        small SVD would cost a solver launch and a synchronisation; on the CPU they take microseconds,
        and float64 keeps the truncation exact. Returns ``(P, sigma, Q^T)`` per core, on the CPU.
        """
        flat = torch.cat([b.reshape(-1) for b in buffers]).to("cpu", torch.float64)
        out = []
        off = 0
        for b, n in zip(buffers, ranks, strict=True):
            full = flat[off : off + b.numel()].reshape(b.shape)
            off += b.numel()
            p, sig, qh = torch.linalg.svd(full[:n, :n].contiguous())
            out.append((p, sig, qh))
        return out

    def _check_lr(self, lr: float | None) -> float:
        lr = self.lr if lr is None else float(lr)
        if not (math.isfinite(lr) and lr >= 0):
            raise ConfigError(f"lr must be a finite number >= 0, got {lr}")
        return lr

    @torch.no_grad()
    def step(self, lr: float | None = None, *, record: bool = True) -> StepRecord:
        """One full GeoLoRA step on all adapters: update, augmentation, truncation.

        Parameters
        ----------
        lr : float, optional
            Learning rate for this step (default: ``self.lr``).
        record : bool
            Append the result to :attr:`rank_trajectory` / :attr:`param_trajectory` (a Trainer
            callback records at ``on_step_end`` itself and passes False).

        Returns
        -------
        StepRecord
            ``skipped=True`` (adapters unchanged, gradients cleared) if a gradient was not finite.
        """
        lr = self._check_lr(lr)
        self.step_count += 1
        ok = self.augment(lr)
        disc = self.truncate() if ok else 0.0
        rec = StepRecord(self.step_count, lr, self.ranks(), self.n_params(), disc, skipped=not ok)
        self.history.append(rec)
        if record:
            self.record(self.step_count)
        return rec

    def record(self, step: int) -> None:
        """Append the current ranks and parameter count at ``step`` to the trajectories."""
        self.rank_trajectory.append((int(step), self.ranks()))
        self.param_trajectory.append((int(step), self.n_params()))

    def summary(self) -> dict[str, object]:
        """Final and time-averaged adapter size, final ranks and step count.

        ``mean_params`` is the average of the total adapter parameter count over the steps taken
        (the count in force during each step, i.e. entries 0 .. n-1 of :attr:`param_trajectory`);
        with no step taken it is the initial count.
        """
        counts = [c for _, c in self.param_trajectory]
        during = counts[:-1] if len(counts) > 1 else counts
        return {
            "steps": self.step_count,
            "final_params": counts[-1],
            "initial_params": counts[0],
            "mean_params": float(sum(during) / len(during)),
            "max_params": max(counts),
            "final_ranks": self.ranks(),
            "skipped_steps": sum(1 for h in self.history if h.skipped),
            "tau": self.tau,
            "mode": self.mode,
            "precondition": self.precondition,
            "min_rank": self.min_rank,
            "budget_params": self.budget_params,
        }


def _to_device(flat: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``flat`` (a host tensor) as ``dtype`` on ``device``.

    To a CUDA device the copy goes through pinned memory without blocking: a copy from pageable memory
    synchronises the stream first. The values are those of ``flat.to(device, dtype)`` (the float64 ->
    float32 rounding is IEEE round-to-nearest on either side).
    """
    if device.type != "cuda":
        return flat.to(device, dtype)
    return flat.to(dtype).pin_memory().to(device, non_blocking=True)
