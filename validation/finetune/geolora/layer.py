"""GeoLoRA adapter layer: ``y = W0 x + b + scaling * U S V^T x`` with orthonormal bases.

The adapter of one frozen ``nn.Linear`` (weight ``W0``: (out_features, in_features)) is kept in the
factored form ``dW = U S V^T`` of dynamical low-rank approximation (Schotthoefer et al., "GeoLoRA:
Geometric integration for parameter efficient fine-tuning", arXiv 2410.18720, ICLR 2025):

- ``U``: (out_features, r) with orthonormal columns,
- ``S``: (r, r) the small core (diagonal right after every truncation),
- ``V``: (in_features, r) with orthonormal columns.

Memory layout (why the optimizer keeps working while ranks change)
-----------------------------------------------------------------
The parameters are allocated once at their maximal size ``max_rank`` -- ``lora_U``: (out, max_rank),
``lora_S``: (max_rank, max_rank), ``lora_V``: (in, max_rank) -- and only the leading ``rank`` columns
(the *active rank*) enter the forward pass. Augmentation and truncation rewrite the leading block in
place and change ``rank``; no parameter object is ever replaced, so references held by a
``torch.optim`` optimizer or a ``transformers.Trainer`` stay valid. The columns beyond ``rank`` get
exactly zero gradient and are never read.

The backward pass (one tape, no inverse of S)
---------------------------------------------
GeoLoRA needs, per step, the gradients of the loss with respect to the three factors of the
*K-, L- and S-steps* of the parallel integrator: ``G_K = dL/dW V`` (out, r), ``G_L = dL/dW^T U``
(in, r) and ``G_S = U^T dL/dW V`` (r, r), all at the current point. The paper obtains ``G_K`` as
``(dL/dU) S^{-1}`` from the ordinary gradient ``dL/dU = dL/dW V S^T``; that needs an invertible ``S``
(and is ill-conditioned when ``S`` has tiny singular values or starts at zero). Here a custom
autograd function computes ``G_K``, ``G_L`` and ``G_S`` directly from the layer's input and output
gradient in the same single backward pass (same flop count as the ordinary backward) and stores them
in ``lora_U.grad``, ``lora_V.grad`` and ``lora_S.grad``. Consequence: ``lora_U.grad`` and
``lora_V.grad`` are *not* Euclidean gradients of ``U`` and ``V`` -- they are consumed by
:class:`validation.finetune.geolora.optim.GeoLoRAOptimizer`, which clears them before any other optimizer
could see them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gelora.errors import ConfigError, UnknownLayerError

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_INIT_RANK",
    "DEFAULT_MAX_RANK",
    "BERT_TARGET_MODULES",
    "GeoLoRALinear",
    "adapter_param_count",
    "find_geolora_layers",
    "inject_geolora",
]

#: Initial rank of every adapter. The authors' public GLUE scripts (DeBERTaV3-base) start at rank 8;
#: the paper's text states a rank budget per experiment -- the exact value per table is not verified.
DEFAULT_INIT_RANK = 8
#: Maximal rank per adapter; the authors' public GLUE scripts use 16 (= 2 x initial rank).
DEFAULT_MAX_RANK = 16
#: Constant output scaling of the adapter. The public scripts pass ``alpha=1``; they divide by the
#: *current* rank, which makes the layer's function jump on every truncation. Here the scaling is
#: ``alpha`` and constant, so truncation changes the adapter by exactly the discarded singular mass.
DEFAULT_ALPHA = 1.0

#: LoRA's usual target modules for BERT-family encoders (query, key, value, attention output dense,
#: intermediate dense, output dense). ``"output.dense"`` also matches ``attention.output.dense``.
BERT_TARGET_MODULES: tuple[str, ...] = (
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


class _GeoLoRAFunction(torch.autograd.Function):
    """``x -> x V S^T U^T`` whose backward returns the K-, L- and S-step gradients.

    Shapes: ``x`` (..., in), ``U`` (out, r), ``S`` (r, r), ``V`` (in, r); output (..., out).
    Backward returns ``grad_x`` (exact), and in the slots of ``U``, ``S``, ``V``:
    ``G_K = G_W V`` (out, r), ``G_S = U^T G_W V`` (r, r), ``G_L = G_W^T U`` (in, r), where
    ``G_W = sum over batch of grad_y x^T`` is the gradient with respect to the full matrix ``U S V^T``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, u: torch.Tensor, s: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        h = x @ v  # (..., r)
        ctx.save_for_backward(x, h, u, s, v)
        return (h @ s.transpose(0, 1)) @ u.transpose(0, 1)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, h, u, s, v = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])  # (B, out)
        x2 = x.reshape(-1, x.shape[-1])  # (B, in)
        h2 = h.reshape(-1, h.shape[-1])  # (B, r)
        gu = g @ u  # (B, r)  = grad wrt z = h S^T
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = ((gu @ s) @ v.transpose(0, 1)).reshape(x.shape)
        g_k = g.transpose(0, 1) @ h2  # (out, r) = G_W V
        g_s = gu.transpose(0, 1) @ h2  # (r, r)  = U^T G_W V
        g_l = x2.transpose(0, 1) @ gu  # (in, r)  = G_W^T U
        return grad_x, g_k, g_s, g_l


class GeoLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a rank-adaptive GeoLoRA adapter ``scaling * U S V^T``.

    Parameters
    ----------
    base : torch.nn.Linear
        The pretrained layer; its weight (out_features, in_features) and bias are frozen.
    init_rank : int
        Active rank at the start (>= 1).
    max_rank : int
        Allocated (maximal) rank; clipped to ``min(in_features, out_features)``.
    alpha : float
        Constant output scaling of the adapter (see :data:`DEFAULT_ALPHA`).
    dropout : float
        Dropout probability on the adapter's input, in [0, 1).
    generator : torch.Generator or None
        Source of the random orthonormal initial bases (seeded by :func:`inject_geolora`).

    Attributes
    ----------
    rank : int
        Current active rank ``r``; the forward pass uses ``lora_U[:, :r]``, ``lora_S[:r, :r]``,
        ``lora_V[:, :r]``.
    lora_U, lora_S, lora_V : torch.nn.Parameter
        (out, max_rank), (max_rank, max_rank), (in, max_rank) float32 buffers (see module docstring).

    Notes
    -----
    ``S`` starts at zero (so the adapted model equals the pretrained one at step 0, as with LoRA) and
    ``U``, ``V`` start as random orthonormal bases, as in the authors' public code.
    """

    lora_rank: torch.Tensor  # persistent int64 scalar buffer: ``rank`` as of the last ``state_dict()``

    def __init__(
        self,
        base: nn.Linear,
        *,
        init_rank: int = DEFAULT_INIT_RANK,
        max_rank: int = DEFAULT_MAX_RANK,
        alpha: float = DEFAULT_ALPHA,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ConfigError(f"GeoLoRALinear wraps torch.nn.Linear, got {type(base).__name__}")
        full = min(base.in_features, base.out_features)
        if init_rank < 1 or max_rank < 1:
            raise ConfigError(f"init_rank and max_rank must be >= 1, got {init_rank}, {max_rank}")
        if init_rank > max_rank:
            raise ConfigError(f"init_rank={init_rank} exceeds max_rank={max_rank}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(f"alpha must be a positive finite number, got {alpha}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.max_rank = min(int(max_rank), full)
        # the active rank lives in a Python int (read by every forward, no device sync) mirrored in a
        # persistent buffer so that state dicts carry it; loading a state dict restores the int. The
        # buffer is written when a state dict is taken, not on every rank change (two per integrator
        # step and adapter: on a GPU each write would be a kernel launch)
        self.register_buffer("lora_rank", torch.tensor(0, dtype=torch.int64), persistent=True)
        self._rank = 0
        self.rank = min(int(init_rank), self.max_rank)
        self.register_state_dict_pre_hook(_sync_rank_buffer)
        self.register_load_state_dict_post_hook(_sync_rank_after_load)
        self.scaling = float(alpha)
        device = base.weight.device
        u0 = torch.randn(self.out_features, self.max_rank, generator=generator)
        v0 = torch.randn(self.in_features, self.max_rank, generator=generator)
        self.lora_U = nn.Parameter(torch.linalg.qr(u0, mode="reduced")[0].to(device))
        self.lora_V = nn.Parameter(torch.linalg.qr(v0, mode="reduced")[0].to(device))
        self.lora_S = nn.Parameter(torch.zeros(self.max_rank, self.max_rank, device=device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def rank(self) -> int:
        """Active rank ``r`` (0 <= r <= max_rank)."""
        return self._rank

    @rank.setter
    def rank(self, value: int) -> None:
        value = int(value)
        if not 0 <= value <= self.max_rank:
            raise ConfigError(f"rank must be in [0, {self.max_rank}], got {value}")
        self._rank = value  # ``lora_rank`` follows in ``state_dict`` (:func:`_sync_rank_buffer`)

    # -- views of the active factors ---------------------------------------------------------------
    @property
    def U(self) -> torch.Tensor:
        """Active left basis, (out_features, rank)."""
        return self.lora_U[:, : self.rank]

    @property
    def S(self) -> torch.Tensor:
        """Active core, (rank, rank)."""
        return self.lora_S[: self.rank, : self.rank]

    @property
    def V(self) -> torch.Tensor:
        """Active right basis, (in_features, rank)."""
        return self.lora_V[:, : self.rank]

    def delta_weight(self) -> torch.Tensor:
        """The adapter as a dense matrix ``scaling * U S V^T``, (out_features, in_features)."""
        with torch.no_grad():
            return self.scaling * (self.U @ self.S @ self.V.T)

    def n_trainable(self, rank: int | None = None) -> int:
        """Trainable adapter parameters at ``rank`` (default: current): ``r (in + out) + r^2``."""
        return adapter_param_count(self.in_features, self.out_features, self.rank if rank is None else rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x) + scaling * x V S^T U^T``; x: (..., in_features) -> (..., out_features)."""
        out = self.base(x)
        if self.rank == 0:
            return out
        dtype = self.lora_U.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            xa = self.dropout(x).to(dtype)
            delta = _GeoLoRAFunction.apply(xa, self.U, self.S, self.V)
        if self.scaling != 1.0:  # ``1.0 * delta`` is ``delta`` bit for bit: no operator (nor its backward)
            delta = self.scaling * delta
        return out + delta.to(out.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"max_rank={self.max_rank}, scaling={self.scaling}"
        )


def _sync_rank_buffer(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    """``state_dict`` pre hook: write the active rank into the ``lora_rank`` buffer."""
    if isinstance(module, GeoLoRALinear):
        module.lora_rank.fill_(module.rank)


def _sync_rank_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post hook: take the active rank from the loaded ``lora_rank`` buffer."""
    if isinstance(module, GeoLoRALinear):
        module._rank = int(module.lora_rank.item())


def adapter_param_count(in_features: int, out_features: int, rank: int) -> int:
    """Trainable parameters of a rank-``rank`` GeoLoRA adapter: ``rank*(in+out) + rank**2``.

    ``U`` and ``V`` contribute ``rank*out`` and ``rank*in``; the core ``S`` is a full ``rank x rank``
    matrix during a step (it is diagonal only right after a truncation), so it counts ``rank**2`` --
    the same count the authors' scripts report.
    """
    return int(rank) * (int(in_features) + int(out_features)) + int(rank) ** 2


def _matches(name: str, targets: Sequence[str]) -> bool:
    """peft's rule: a module matches a target if its full name equals it or ends with ``"." + t``."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _as_linear(module: nn.Module) -> nn.Linear:
    """``module`` itself, or GPT-2's ``Conv1D`` (``y = x W + b``, W stored ``(in, out)``) as an equal ``nn.Linear``."""
    if isinstance(module, nn.Linear):
        return module
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    bias: torch.Tensor | None = getattr(module, "bias", None)
    linear = nn.Linear(
        int(weight.shape[0]),
        int(weight.shape[1]),
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(weight.T)
        if bias is not None:
            linear.bias.copy_(bias)
    linear.weight.requires_grad_(bool(weight.requires_grad))
    return linear


def find_geolora_layers(model: nn.Module) -> dict[str, GeoLoRALinear]:
    """All :class:`GeoLoRALinear` modules of ``model`` by qualified name (model order)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, GeoLoRALinear)}


def inject_geolora(
    model: nn.Module,
    target_modules: Iterable[str] = BERT_TARGET_MODULES,
    *,
    init_rank: int = DEFAULT_INIT_RANK,
    max_rank: int = DEFAULT_MAX_RANK,
    alpha: float = DEFAULT_ALPHA,
    dropout: float = 0.0,
    seed: int = 0,
    trainable_modules: Sequence[str] = ("classifier", "score"),
    freeze_base: bool = True,
) -> dict[str, GeoLoRALinear]:
    """Replace the target ``nn.Linear`` modules of ``model`` by :class:`GeoLoRALinear` in place.

    Parameters
    ----------
    model : torch.nn.Module
        Any model (e.g. ``transformers.AutoModelForSequenceClassification``).
    target_modules : iterable of str
        Name suffixes, matched as peft does (full name equal, or ending with ``"." + target``); a
        string starting with ``"re:"`` is a regular expression matched against the full name.
    init_rank, max_rank, alpha, dropout
        Passed to :class:`GeoLoRALinear`.
    seed : int
        Seeds the random orthonormal initial bases (recorded by the caller).
    trainable_modules : sequence of str
        Modules left trainable when ``freeze_base`` (peft's ``modules_to_save`` for sequence
        classification: the task head ``classifier`` / ``score``); missing names are ignored.
    freeze_base : bool
        Freeze every parameter of the model except the adapters and ``trainable_modules``.

    Returns
    -------
    dict of str to GeoLoRALinear
        The injected layers by qualified module name.

    Raises
    ------
    UnknownLayerError
        No ``nn.Linear`` of the model matches ``target_modules``.
    ConfigError
        Invalid rank, alpha or dropout.
    """
    targets = [str(t) for t in target_modules]
    if not targets:
        raise ConfigError("target_modules is empty")
    regexes = [re.compile(t[3:]) for t in targets if t.startswith("re:")]
    plain = [t for t in targets if not t.startswith("re:")]
    head_names = {n for n, _ in model.named_modules() if _matches(n, trainable_modules)}
    chosen = [
        n
        for n, m in model.named_modules()
        if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")
        and not isinstance(m, GeoLoRALinear)
        and n not in head_names
        and not any(n.startswith(h + ".") for h in head_names)
        and (_matches(n, plain) or any(r.fullmatch(n) for r in regexes))
    ]
    if not chosen:
        raise UnknownLayerError(
            f"no nn.Linear module matches target_modules={targets}; "
            f"linear modules are e.g. {[n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:8]}"
        )
    if freeze_base:
        for p in model.parameters():
            p.requires_grad_(False)
        for n, m in model.named_modules():
            if n in head_names:
                for p in m.parameters():
                    p.requires_grad_(True)
    gen = torch.Generator().manual_seed(int(seed))
    layers: dict[str, GeoLoRALinear] = {}
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = _as_linear(getattr(parent, child))
        layer = GeoLoRALinear(
            base, init_rank=init_rank, max_rank=max_rank, alpha=alpha, dropout=dropout, generator=gen
        )
        setattr(parent, child, layer)
        layers[name] = layer
    return layers
