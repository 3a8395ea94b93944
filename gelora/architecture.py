"""Find a model's transformer blocks and the linear modules inside them, from the model itself.

No table of architectures is required: :func:`discover_architecture` looks for the ``nn.ModuleList``
(or ``nn.Sequential``) of blocks whose length is the config's ``num_hidden_layers`` and lists every linear
map of one block (``nn.Linear``, and ``transformers``' ``Conv1D`` of GPT-2) with its in/out sizes, its
group (attention or feed-forward) and, for attention, its role (``q``, ``k``, ``v``, ``o`` or a fused
``qkv``). :func:`resolve_target_modules` turns a user's ``target_modules`` into the block-relative names
every block has:

* ``"all-linear"`` (peft's meaning, restricted to the blocks): every linear of every block, never the head;
* ``"attention"`` / ``"ffn"`` (alias ``"mlp"``): every linear of that group;
* a block-relative name or a suffix of one (``"attention.self.query"``, ``"query"``, ``"q_proj"``); an
  exact name wins over a longer name that ends with it, a suffix that fits several modules is an error;
* a role (``"q"``, ``"k"``, ``"v"``, ``"o"``, ``"qkv"``, or ``"query"``, ``"key"``, ``"value"``) when no name
  matches: ``("query", "value")`` selects ``attn.q``/``attn.v`` of MPNet, ``q_proj``/``v_proj`` of Llama and
  the fused ``c_attn`` of GPT-2 (query and value live in the same module there).

Anything that selects nothing, or a suffix that selects several modules, raises
:class:`gelora.errors.TargetModuleError` naming the linears the block has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gelora.errors import TargetModuleError

#: the ``target_modules`` value that selects every linear of every block
ALL_LINEAR = "all-linear"

#: group names accepted in ``target_modules``
GROUP_ALIASES: dict[str, str] = {"attention": "attention", "attn": "attention", "ffn": "ffn", "mlp": "ffn"}

#: role names accepted in ``target_modules`` (used only when no module name matches)
ROLE_ALIASES: dict[str, str] = {
    "q": "q",
    "query": "q",
    "k": "k",
    "key": "k",
    "v": "v",
    "value": "v",
    "o": "o",
    "qkv": "qkv",
}

# last name component -> attention role (lower case)
_ROLE_OF_NAME: dict[str, str] = {
    **dict.fromkeys(("query", "q", "q_proj", "query_proj", "q_lin", "wq"), "q"),
    **dict.fromkeys(("key", "k", "k_proj", "key_proj", "k_lin", "wk"), "k"),
    **dict.fromkeys(("value", "v", "v_proj", "value_proj", "v_lin", "wv"), "v"),
    **dict.fromkeys(("c_attn", "in_proj", "qkv", "qkv_proj", "query_key_value", "wqkv"), "qkv"),
    **dict.fromkeys(("o", "o_proj", "out_proj", "out_lin", "wo", "c_proj", "dense"), "o"),
}

# attribute paths of the block list in common families, tried first (a hint, never a requirement)
_KNOWN_BLOCK_LISTS = ("encoder.layer", "layers", "layer", "h", "blocks", "block", "transformer.layer")


def is_linear(module: Any) -> bool:
    """Whether ``module`` is a linear map LoRA can adapt: ``nn.Linear`` or ``transformers``' ``Conv1D``."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    weight = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2


def linear_in_out(module: Any) -> tuple[int, int]:
    """``(in_features, out_features)`` of a linear module (``Conv1D`` stores its weight as ``(in, out)``)."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return int(module.in_features), int(module.out_features)
    if is_linear(module):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    raise TargetModuleError(f"module of type {type(module).__name__} is not a linear layer LoRA can target")


@dataclass(frozen=True)
class LinearModule:
    """One linear map inside a block.

    Attributes
    ----------
    name : str
        Name relative to the block, e.g. ``"attention.self.query"``.
    in_features, out_features : int
        Input and output sizes.
    group : str
        ``"attention"`` or ``"ffn"``.
    role : str or None
        Attention role ``"q"``, ``"k"``, ``"v"``, ``"o"`` or ``"qkv"`` (fused); ``None`` in the feed-forward
        part or when the name does not tell.
    kind : str
        ``"Linear"`` or ``"Conv1D"`` (stores its weight transposed: peft needs ``fan_in_fan_out``).
    """

    name: str
    in_features: int
    out_features: int
    group: str
    role: str | None
    kind: str

    def describe(self) -> str:
        role = f" {self.role}" if self.role else ""
        return f"{self.name} ({self.group}{role}, {self.in_features}->{self.out_features})"


@dataclass(frozen=True)
class Architecture:
    """The block list of a model and the linears of one block.

    Attributes
    ----------
    blocks_path : str
        Full dotted name of the block list in the model, e.g. ``"bert.encoder.layer"``.
    layer_template : str
        Shortest name suffix of block ``i`` that identifies it uniquely, with ``{i}`` (e.g.
        ``"layer.{i}"``); module keys ``f"{layer_template.format(i=i)}.{name}"`` match the model's modules
        by peft's suffix rule, in the base model and in a task model around it alike.
    n_blocks : int
        Number of blocks.
    linears : tuple of LinearModule
        Linears of block 0, in model order (every block has the same names).
    """

    blocks_path: str
    layer_template: str
    n_blocks: int
    linears: tuple[LinearModule, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.linears]

    @property
    def fan_in_fan_out(self) -> bool:
        """Whether the linears store weights as ``(in, out)`` (GPT-2's ``Conv1D``): peft's ``fan_in_fan_out``."""
        return any(m.kind == "Conv1D" for m in self.linears)

    def describe(self) -> str:
        """One line: where the blocks are and what linears each has."""
        return f"{self.n_blocks} blocks at {self.blocks_path!r}, linears per block: " + ", ".join(
            m.describe() for m in self.linears
        )

    def resolve(self, target_modules: str | Sequence[str] | None = None) -> list[str]:
        """Block-relative names selected by ``target_modules`` (see :func:`resolve_target_modules`)."""
        return resolve_target_modules(self, target_modules)

    def module_names(self, target_modules: str | Sequence[str] | None = None) -> list[str]:
        """Full names in the model of the selected modules of every block (block order, then module order)."""
        rel = self.resolve(target_modules)
        return [f"{self.blocks_path}.{i}.{name}" for i in range(self.n_blocks) for name in rel]


def _split_target_modules(target_modules: str | Sequence[str] | None) -> list[str]:
    if target_modules is None:
        return [ALL_LINEAR]
    if isinstance(target_modules, str):
        items = [t.strip() for t in target_modules.split(",")]
    else:
        items = [str(t).strip() for t in target_modules]
    items = [t for t in items if t]
    if not items:
        raise TargetModuleError("target_modules is empty; name modules, suffixes, roles or 'all-linear'")
    return items


def resolve_target_modules(
    arch: Architecture, target_modules: str | Sequence[str] | None = None
) -> list[str]:
    """Turn ``target_modules`` into the block-relative names of ``arch`` they select (model order).

    Parameters
    ----------
    arch : Architecture
        From :func:`discover_architecture`.
    target_modules : str, sequence of str or None
        ``None`` or ``"all-linear"``: every linear of a block. Otherwise names, suffixes, groups
        (``"attention"``, ``"ffn"``) or roles (``"query"``, ``"v"``, ...); a string may be comma-separated.

    Returns
    -------
    list of str
        Selected block-relative names, without duplicates, in the block's order.

    Raises
    ------
    TargetModuleError
        An entry selects nothing, or a suffix selects several modules; the message lists the block's linears.
    """
    items = _split_target_modules(target_modules)
    chosen: set[str] = set()
    for item in items:
        chosen.update(_select(arch, item))
    return [m.name for m in arch.linears if m.name in chosen]


def _select(arch: Architecture, item: str) -> list[str]:
    low = item.lower()
    if low == ALL_LINEAR:
        return arch.names
    if low in GROUP_ALIASES:
        hits = [m.name for m in arch.linears if m.group == GROUP_ALIASES[low]]
        if hits:
            return hits
    exact = [m.name for m in arch.linears if m.name == item]
    if exact:
        return exact
    suffix = [m.name for m in arch.linears if m.name.endswith("." + item)]
    if len(suffix) == 1:
        return suffix
    if len(suffix) > 1:
        raise TargetModuleError(
            f"target module {item!r} is ambiguous: it ends {len(suffix)} linears of a block ({suffix}); "
            f"name one of them, or use a group (attention, ffn) or all-linear. {arch.describe()}"
        )
    if low in ROLE_ALIASES:
        role = ROLE_ALIASES[low]
        hits = [m.name for m in arch.linears if m.role == role]
        if not hits and role in ("q", "k", "v"):
            hits = [m.name for m in arch.linears if m.role == "qkv"]  # fused projection holds q, k and v
        if hits:
            return hits
    raise TargetModuleError(
        f"target module {item!r} matches no linear of a block; {arch.describe()} "
        "(also accepted: all-linear, attention, ffn, and the roles q, k, v, o, qkv)"
    )


# ------------------------------------------------------------------------------------------ discovery
def _classify(name: str) -> tuple[str, str | None]:
    parts = name.lower().split(".")
    in_attention = any("attn" in p or "attention" in p for p in parts[:-1]) or parts[-1] in (
        "c_attn",
        "in_proj",
        "qkv",
        "query_key_value",
    )
    role = _ROLE_OF_NAME.get(parts[-1])
    if not in_attention:
        # q/k/v named directly under the block (rare) still count as attention
        if role in ("q", "k", "v", "qkv"):
            return "attention", role
        return "ffn", None
    if role is None:
        role = "o" if "output" in parts or "out" in parts else None
    return "attention", role


def _candidate_lists(model: Any) -> list[tuple[str, Any]]:
    import torch

    out = []
    for name, module in model.named_modules():
        if not name or not isinstance(module, torch.nn.ModuleList | torch.nn.Sequential) or len(module) < 1:
            continue
        children = list(module)
        if len({type(c) for c in children}) != 1:
            continue
        if not any(is_linear(m) for m in children[0].modules()):
            continue
        out.append((name, module))
    return out


def _find_block_list(model: Any, n_blocks: int | None, layers: str | None) -> tuple[str, Any]:
    import torch

    if layers is not None:
        path = layers.strip().removesuffix(".{i}").strip(".")
        named = dict(model.named_modules())
        hits = [n for n in named if n and (n == path or n.endswith("." + path))]
        lists = [n for n in hits if isinstance(named[n], torch.nn.ModuleList | torch.nn.Sequential)]
        if len(lists) != 1:
            found = [n for n, _ in _candidate_lists(model)]
            what = "no module list" if not lists else f"{len(lists)} module lists ({lists})"
            raise TargetModuleError(
                f"layers={layers!r} names {what} in {type(model).__name__}; lists of blocks found: {found}"
            )
        return lists[0], named[lists[0]]
    cands = _candidate_lists(model)
    if n_blocks is not None:
        exact = [(n, m) for n, m in cands if len(m) == n_blocks]
    else:
        longest = max((len(m) for _, m in cands), default=0)
        exact = [(n, m) for n, m in cands if len(m) == longest]
    # keep the outermost: a list nested inside another candidate's block is part of that block
    outer = [(n, m) for n, m in exact if not any(n.startswith(o + ".") for o, _ in exact if o != n)]
    if len(outer) > 1:
        known = [(n, m) for n, m in outer if any(n == k or n.endswith("." + k) for k in _KNOWN_BLOCK_LISTS)]
        if len(known) == 1:
            outer = known
    if len(outer) != 1:
        found = [f"{n} ({len(m)} x {type(m[0]).__name__})" for n, m in cands]
        what = "none" if not outer else f"{len(outer)} ({[n for n, _ in outer]})"
        raise TargetModuleError(
            f"cannot tell which module list of {type(model).__name__} holds its "
            f"{n_blocks if n_blocks is not None else ''} blocks: {what} fit; lists with linears: {found}; "
            "pass layers=<dotted path> (CLI: --layers)"
        )
    return outer[0]


def _layer_template(model: Any, path: str) -> str:
    """Shortest suffix ``s`` of ``path`` such that ``s + ".0"`` ends exactly one module name."""
    names = [n for n, _ in model.named_modules() if n]
    parts = path.split(".")
    for k in range(1, len(parts) + 1):
        suffix = ".".join(parts[-k:]) + ".0"
        if sum(1 for n in names if n == suffix or n.endswith("." + suffix)) == 1:
            return ".".join(parts[-k:]) + ".{i}"
    return path + ".{i}"


def discover_architecture(
    model: Any, *, layers: str | None = None, n_blocks: int | None = None
) -> Architecture:
    """Find the block list of ``model`` and the linears of its blocks.

    Parameters
    ----------
    model : torch.nn.Module
        A ``transformers`` model (base or with a task head) or any module with a list of blocks.
    layers : str, optional
        Dotted path (or path suffix) of the block list, e.g. ``"encoder.layer"``, overriding discovery.
    n_blocks : int, optional
        Expected number of blocks (default: the config's ``num_hidden_layers`` / ``n_layer``).

    Returns
    -------
    Architecture

    Raises
    ------
    TargetModuleError
        No block list, several equally plausible ones, or blocks without linears or with different ones.
    """
    if n_blocks is None:
        config = getattr(model, "config", None)
        for attr in ("num_hidden_layers", "n_layer", "num_layers"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                n_blocks = value
                break
    path, blocks = _find_block_list(model, n_blocks if layers is None else None, layers)
    per_block = []
    for block in blocks:
        per_block.append([(n, m) for n, m in block.named_modules() if n and is_linear(m)])
    if not per_block[0]:
        raise TargetModuleError(f"the blocks at {path!r} of {type(model).__name__} contain no linear module")
    names0 = [n for n, _ in per_block[0]]
    for i, block in enumerate(per_block[1:], 1):
        if [n for n, _ in block] != names0:
            raise TargetModuleError(
                f"block {i} at {path!r} has linears {[n for n, _ in block]}, block 0 has {names0}; "
                "blocks of different structure are not supported"
            )
    linears = []
    for name, module in per_block[0]:
        group, role = _classify(name)
        fan_in, fan_out = linear_in_out(module)
        kind = "Linear" if type(module).__name__ != "Conv1D" else "Conv1D"
        linears.append(LinearModule(name, fan_in, fan_out, group, role, kind))
    return Architecture(path, _layer_template(model, path), len(blocks), tuple(linears))


def target_module_names(
    model: Any, target_modules: str | Sequence[str] | None = None, *, layers: str | None = None
) -> list[str]:
    """Full names in ``model`` of the linears ``target_modules`` selects in every block.

    These names are what every adapter method should receive: peft matches them exactly, so LoRA,
    AdaLoRA, GeLoRA and GeoLoRA adapt the same modules and the budget counts exactly those.

    Raises
    ------
    TargetModuleError
        See :func:`discover_architecture` and :func:`resolve_target_modules`.
    """
    arch = discover_architecture(model, layers=layers)
    return arch.module_names(target_modules)


def block_relative_names(arch: Architecture, target_modules: str | Sequence[str] | None) -> list[str]:
    """Block-relative names of ``target_modules`` given as full module names or as a selection.

    Full names (``"bert.encoder.layer.3.attention.self.query"``, as from :func:`target_module_names`) must
    select the same modules in every block, since per-block ranks need one module set per block; any
    other entry is resolved with :func:`resolve_target_modules`.

    Raises
    ------
    TargetModuleError
        Full names that cover the blocks unevenly, or an entry that selects nothing.
    """
    items = _split_target_modules(target_modules)
    prefix = arch.blocks_path + "."
    full = [t for t in items if t.startswith(prefix)]
    rest = [t for t in items if not t.startswith(prefix)]
    per_block: dict[int, set[str]] = {}
    for t in full:
        index, _, rel = t[len(prefix) :].partition(".")
        if not index.isdigit() or rel not in arch.names:
            raise TargetModuleError(f"{t!r} is not a linear of a block; {arch.describe()}")
        per_block.setdefault(int(index), set()).add(rel)
    chosen = set(resolve_target_modules(arch, rest)) if rest else set()
    if per_block:
        sets = [per_block.get(i, set()) for i in range(arch.n_blocks)]
        if any(x != sets[0] for x in sets):
            raise TargetModuleError(
                "per-block ranks need the same target modules in every block; got "
                + ", ".join(f"block {i}: {sorted(x)}" for i, x in enumerate(sets))
            )
        chosen |= sets[0]
    return [m.name for m in arch.linears if m.name in chosen]


def format_architecture(arch: Architecture) -> str:
    """Multi-line table of the blocks and their linears (for ``gelora ranks --show-modules``)."""
    lines = [f"blocks: {arch.n_blocks} at {arch.blocks_path} (key template {arch.layer_template})"]
    width = max(len(m.name) for m in arch.linears)
    for m in arch.linears:
        lines.append(
            f"  {m.name:<{width}}  {m.group:<9} {m.role or '-':<3}  {m.in_features:>6} -> {m.out_features}"
        )
    return "\n".join(lines)


__all__ = [
    "ALL_LINEAR",
    "Architecture",
    "LinearModule",
    "block_relative_names",
    "discover_architecture",
    "format_architecture",
    "is_linear",
    "linear_in_out",
    "resolve_target_modules",
    "target_module_names",
]
