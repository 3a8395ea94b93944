"""GeLoRA ranks -> a standard ``peft.LoraConfig`` with ``rank_pattern`` and ``alpha_pattern``.

Every block ``i`` gets one rank ``r_i`` for all of its target modules, and ``lora_alpha = alpha_ratio * r_i``
(so the LoRA scaling ``alpha / r`` equals ``alpha_ratio`` everywhere).

Module naming. The blocks and their linears are discovered from the model itself
(:mod:`gelora.architecture`, :func:`layout_from_model`, :meth:`GeLoRAConfig.from_model`); the table
:data:`TARGET_MODULES` only gives friendly defaults for a config built without a model. A layout is the
name of block ``i`` relative to any parent (``layer_template``, e.g. ``"layer.{i}"``) and the target
modules inside a block. The full key of a
module is ``f"{layer_template.format(i=i)}.{module}"``, e.g. ``"layer.3.attention.self.query"``.

How peft 0.21 matches these keys (read from ``peft.tuners.tuners_utils.check_target_module_exists`` and
``peft.utils.other.get_pattern_key``):

* ``target_modules`` given as a *list*: a module named ``name`` is adapted when ``name == key`` or
  ``name.endswith("." + key)``. The keys above therefore match ``encoder.layer.3.attention.self.query``
  in a base ``BertModel`` and ``bert.encoder.layer.3.attention.self.query`` in a
  ``BertForSequenceClassification`` alike, and never ``layer.13....`` (the character before ``layer`` must
  be a dot or the start).
* ``rank_pattern`` / ``alpha_pattern`` keys are *regular expressions* tried with
  ``re.match(rf"(.*\\.)?({key})$", name)`` and the *first* matching key wins. A raw key
  ``"layer.3.output.dense"`` would let ``.`` match any character; the keys written here are
  ``re.escape``-d, so a key matches exactly one module: ``layer\\.3\\.output\\.dense`` cannot match
  ``layer.13.output.dense`` (needs a dot or start before ``layer``) nor
  ``layer.3.attention.output.dense`` (needs the exact suffix).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gelora.errors import ConfigError, UnknownLayerError


@dataclass(frozen=True)
class ArchitectureModules:
    """Where the LoRA target modules of block ``i`` live.

    Attributes
    ----------
    layer_template : str
        Name of block ``i`` relative to its parent, with ``{i}``, e.g. ``"layer.{i}"``.
    modules : tuple of str
        Target modules inside a block, relative to the block.
    """

    layer_template: str
    modules: tuple[str, ...]

    def module_keys(self, block: int) -> list[str]:
        """Keys ``"<block name>.<module>"`` of block ``block``."""
        prefix = self.layer_template.format(i=block)
        return [f"{prefix}.{m}" for m in self.modules]


_BERT = ArchitectureModules(
    "layer.{i}",
    (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ),
)
_LLAMA = ArchitectureModules(
    "layers.{i}",
    (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ),
)

#: target modules per ``config.model_type`` (every linear map of attention and MLP in a block)
TARGET_MODULES: dict[str, ArchitectureModules] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "deberta-v2": ArchitectureModules(
        "layer.{i}",
        (
            "attention.self.query_proj",
            "attention.self.key_proj",
            "attention.self.value_proj",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ),
    ),
    "deberta": ArchitectureModules(
        "layer.{i}",
        ("attention.self.in_proj", "attention.output.dense", "intermediate.dense", "output.dense"),
    ),
    "gpt2": ArchitectureModules("h.{i}", ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
}


def architecture_modules(
    model_type: str,
    *,
    layer_template: str | None = None,
    modules: Sequence[str] | None = None,
) -> ArchitectureModules:
    """Target-module layout of ``model_type``, with optional user overrides.

    Raises
    ------
    ConfigError
        Unknown ``model_type`` without both overrides, or a template without ``{i}``.
    """
    base = TARGET_MODULES.get(model_type)
    if base is None and (layer_template is None or modules is None):
        raise ConfigError(
            f"no target-module table for model_type {model_type!r} (known: {sorted(TARGET_MODULES)}) and no "
            "model to read the modules from; use GeLoRAConfig.from_model(ranks, model, ...) (discovers the "
            "blocks and linears of any model), or pass layer_template (e.g. 'layer.{i}') and target_modules"
        )
    template = layer_template if layer_template is not None else base.layer_template  # type: ignore[union-attr]
    mods = tuple(modules) if modules is not None else base.modules  # type: ignore[union-attr]
    if "{i}" not in template:
        raise ConfigError(f"layer_template must contain '{{i}}', got {template!r}")
    if not mods or any(not isinstance(m, str) or not m for m in mods):
        raise ConfigError(f"target modules must be non-empty strings, got {mods!r}")
    if len(set(mods)) != len(mods):
        raise ConfigError(f"target modules contain duplicates: {mods!r}")
    return ArchitectureModules(template, mods)


@dataclass
class GeLoRAConfig:
    """Per-block LoRA ranks of a model, convertible to ``peft.LoraConfig``.

    Attributes
    ----------
    ranks : list of int
        Rank of every block (block ``i`` maps hidden state ``i`` to ``i + 1``); all >= 1.
    model_type : str
        ``config.model_type`` of the model (selects :data:`TARGET_MODULES`).
    target_modules : sequence of str or None
        Override of the modules inside a block.
    layer_template : str or None
        Override of the block name template (must contain ``{i}``).
    alpha_ratio : float
        ``lora_alpha = alpha_ratio * r`` for every module (default 32).
    lora_dropout : float
        Passed to ``LoraConfig`` (default 0.0).
    bias : str
        Passed to ``LoraConfig`` (default ``"none"``).
    task_type : str or None
        Passed to ``LoraConfig`` (e.g. ``"SEQ_CLS"``).
    modules_to_save : list of str or None
        Passed to ``LoraConfig`` (e.g. ``["classifier"]``).
    fan_in_fan_out : bool or None
        peft's flag for weights stored ``(in, out)`` (GPT-2's ``Conv1D``); ``None``: true for ``gpt2``.
    """

    ranks: list[int]
    model_type: str
    target_modules: Sequence[str] | None = None
    layer_template: str | None = None
    alpha_ratio: float = 32.0
    lora_dropout: float = 0.0
    bias: str = "none"
    task_type: str | None = None
    modules_to_save: list[str] | None = None
    fan_in_fan_out: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ranks = list(self.ranks)
        if not ranks:
            raise ConfigError("ranks is empty; one rank per block is needed")
        for i, r in enumerate(ranks):
            if r is None:
                raise ConfigError(f"block {i} has no rank (its layer was flagged as degenerate)")
            if isinstance(r, bool) or int(r) != r or r < 1:
                raise ConfigError(f"ranks must be integers >= 1; block {i} has {r!r}")
        self.ranks = [int(r) for r in ranks]
        if not (self.alpha_ratio > 0):
            raise ConfigError(f"alpha_ratio must be positive, got {self.alpha_ratio!r}")
        self.layout = architecture_modules(
            self.model_type, layer_template=self.layer_template, modules=self.target_modules
        )

    @classmethod
    def from_model(
        cls,
        ranks: Sequence[int],
        model: Any,
        *,
        target_modules: str | Sequence[str] | None = None,
        layers: str | None = None,
        **kwargs: Any,
    ) -> GeLoRAConfig:
        """A config for ``model`` whose blocks and linears are discovered from the model itself.

        ``target_modules`` / ``layers`` as in :func:`gelora.architecture.resolve_target_modules` and
        :func:`gelora.architecture.discover_architecture` (default: every linear of every block).
        Other keyword arguments are fields of :class:`GeLoRAConfig`.

        Raises
        ------
        TargetModuleError
            No block list, or ``target_modules`` selects nothing / is ambiguous.
        ConfigError
            ``ranks`` does not have one entry per block.
        """
        layout, arch = layout_from_model(model, target_modules, layers=layers)
        if len(list(ranks)) != arch.n_blocks:
            raise ConfigError(f"{len(list(ranks))} ranks for a model with {arch.n_blocks} blocks")
        model_type = str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))
        kwargs.setdefault("fan_in_fan_out", arch.fan_in_fan_out)
        return cls(
            ranks=list(ranks),
            model_type=model_type,
            layer_template=layout.layer_template,
            target_modules=list(layout.modules),
            **kwargs,
        )

    @property
    def n_blocks(self) -> int:
        return len(self.ranks)

    def module_ranks(self) -> dict[str, int]:
        """Map every module key (e.g. ``"layer.3.attention.self.query"``) to its rank."""
        out: dict[str, int] = {}
        for i, r in enumerate(self.ranks):
            for key in self.layout.module_keys(i):
                out[key] = r
        return out

    def module_alphas(self) -> dict[str, float]:
        """Map every module key to ``alpha_ratio * rank``."""
        return {k: float(self.alpha_ratio * r) for k, r in self.module_ranks().items()}

    def to_lora_config(self, **overrides: Any) -> Any:
        """Build the ``peft.LoraConfig``.

        ``r``/``lora_alpha`` are the most common rank and its alpha; ``rank_pattern``/``alpha_pattern``
        give every target module its own (escaped, exactly matching) entry, so the defaults only matter
        for modules outside the table. Extra keyword arguments override ``LoraConfig`` fields.
        """
        from peft import LoraConfig

        ranks = self.module_ranks()
        common = Counter(self.ranks).most_common(1)[0][0]
        kwargs: dict[str, Any] = {
            "r": common,
            "lora_alpha": float(self.alpha_ratio * common),
            "target_modules": list(ranks),
            "rank_pattern": {re.escape(k): r for k, r in ranks.items()},
            "alpha_pattern": {re.escape(k): a for k, a in self.module_alphas().items()},
            "lora_dropout": self.lora_dropout,
            "bias": self.bias,
            "task_type": self.task_type,
            "modules_to_save": self.modules_to_save,
        }
        fan_in_fan_out = self.model_type == "gpt2" if self.fan_in_fan_out is None else self.fan_in_fan_out
        if fan_in_fan_out:
            kwargs["fan_in_fan_out"] = True  # GPT-2's Conv1D stores weights as (in, out)
        kwargs.update(self.extra)
        kwargs.update(overrides)
        return LoraConfig(**kwargs)


def layout_from_model(
    model: Any,
    target_modules: str | Sequence[str] | None = None,
    *,
    layers: str | None = None,
    n_blocks: int | None = None,
) -> tuple[ArchitectureModules, Any]:
    """Discover the blocks of ``model`` and resolve ``target_modules`` into an :class:`ArchitectureModules`.

    Returns
    -------
    (ArchitectureModules, gelora.architecture.Architecture)
        The layout (block-name template and selected block-relative modules) and the full discovery.

    Raises
    ------
    TargetModuleError
        See :func:`gelora.architecture.discover_architecture` and
        :func:`gelora.architecture.resolve_target_modules`.
    """
    from gelora.architecture import discover_architecture

    arch = discover_architecture(model, layers=layers, n_blocks=n_blocks)
    modules = arch.resolve(target_modules)
    return ArchitectureModules(arch.layer_template, tuple(modules)), arch


def find_block_modules(model: Any, layout: ArchitectureModules, n_blocks: int) -> list[list[tuple[str, Any]]]:
    """Locate the target modules of every block in ``model`` by the same suffix rule peft uses.

    Returns
    -------
    list of list of (name, module)
        ``n_blocks`` lists, each in the order of ``layout.modules``.

    Raises
    ------
    UnknownLayerError
        A key matches no module, or more than one.
    """
    names = [(n, m) for n, m in model.named_modules() if n]
    out = []
    for i in range(n_blocks):
        block = []
        for key in layout.module_keys(i):
            found = [(n, m) for n, m in names if n == key or n.endswith("." + key)]
            if len(found) != 1:
                what = "no module" if not found else f"{len(found)} modules ({[n for n, _ in found]})"
                raise UnknownLayerError(
                    f"target module key {key!r} matches {what} in {type(model).__name__}; "
                    "check model_type or pass layer_template/target_modules"
                )
            block.append(found[0])
        out.append(block)
    return out


def module_in_out(module: Any) -> tuple[int, int]:
    """``(in_features, out_features)`` of a linear module (``nn.Linear`` or GPT-2's ``Conv1D``)."""
    from gelora.architecture import linear_in_out

    return linear_in_out(module)


def block_unit_costs(model: Any, layout: ArchitectureModules, n_blocks: int) -> list[int]:
    """LoRA parameters per unit of rank of every block: ``sum over its modules of (in + out)``."""
    return [
        sum(sum(module_in_out(m)) for _, m in block) for block in find_block_modules(model, layout, n_blocks)
    ]


def count_lora_parameters(peft_model: Any, adapter_name: str = "default") -> int:
    """Number of trainable LoRA parameters (``lora_A``/``lora_B`` of ``adapter_name``) in a peft model."""
    total = 0
    for name, p in peft_model.named_parameters():
        if p.requires_grad and (f"lora_A.{adapter_name}." in name or f"lora_B.{adapter_name}." in name):
            total += p.numel()
    return int(total)


__all__ = [
    "TARGET_MODULES",
    "ArchitectureModules",
    "GeLoRAConfig",
    "architecture_modules",
    "block_unit_costs",
    "count_lora_parameters",
    "find_block_modules",
    "layout_from_model",
    "module_in_out",
]
