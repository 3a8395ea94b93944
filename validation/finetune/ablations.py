"""Ablations of GeLoRA: is the intrinsic-dimension allocation better than another of the same budget?

Every ablation is a method of :data:`validation.finetune.methods.METHODS` (``gelora validate glue --methods
gelora,gelora_permuted,...``) and reuses GeLoRA's steps (:func:`validation.finetune.methods.estimate_gelora`:
IDs of the hidden states and the rule's ranks; then budget scaling and the ``LoraConfig``), changing one
thing (:data:`ABLATIONS`):

============================  ==========================================================================
``gelora_permuted``           GeLoRA's budget-scaled block ranks permuted across blocks (see
                              :func:`distinct_arrangement`: seed ``k`` takes the ``k``-th distinct
                              rearrangement, never the original order)
``gelora_reversed``           the ranks in reverse block order
``gelora_literal``            the rule's ranks ``r_i = max(ceil(d_{i+1} - d_i), 0) + offset`` without budget
                              scaling (a smaller budget, recorded)
``lora_literal``              uniform LoRA whose rank ``u`` makes ``u * sum(unit costs)`` closest to
                              ``gelora_literal``'s budget (both budgets recorded)
``gelora_offset{0,1,2,4}``    the rule with that offset, then budget scaling; offset 0 gives blocks without
                              a dimension increase rank 0 (no adapter) and the budget goes to the others
``gelora_{twonn,mle,danco}``  the intrinsic dimensions from that estimator
``gelora_alpha_const``        ``alpha_i = (alpha / r)_LoRA * r_i`` (scaling 2 = uniform LoRA's; = ``gelora``)
``gelora_alpha32``            ``alpha_i = 32 r_i`` (the paper's ratio: scaling 32 in every block)
``gelora_rslora``             ``alpha_i = c sqrt(r_i)`` (scaling ``c / sqrt(r_i)``, rsLoRA's rule), with ``c``
                              such that the mean scaling over blocks equals uniform LoRA's ``alpha / r``
``gelora_generic``            the IDs measured on the package's generic sentences
                              (:func:`gelora.pipeline.default_texts`) instead of the task's training texts
============================  ==========================================================================

Each cell records ``method_info["block_ranks"]``, ``["block_alphas"]`` (and ``["block_scalings"]`` =
alpha / r) and ``["ablation"]``: what the variant changed (permutation, source ranks, offset, estimator,
alpha rule, text kind and source, budgets).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gelora.errors import ConfigError
from validation.finetune.methods import (
    MethodContext,
    PreparedMethod,
    count_adapter_params,
    estimate_gelora,
    gelora_info,
    gelora_peft_model,
)

#: seed of the fixed sequence of distinct rank rearrangements that ``gelora_permuted`` walks through
PERMUTATION_SEED = 18
#: the paper's alpha / r (arXiv 2412.09250, fine-tuning details)
PAPER_ALPHA_RATIO = 32.0
ALPHA_RULES: tuple[str, ...] = ("const", "ratio32", "rslora")
TEXT_SOURCES: tuple[str, ...] = ("task", "generic")
ALLOCATIONS: tuple[str, ...] = ("gelora", "permuted", "reversed", "literal", "lora_literal")


@dataclass(frozen=True)
class Ablation:
    """One ablation: what it changes relative to ``gelora``.

    Attributes
    ----------
    name : str
        Method name (key of ``METHODS``).
    allocation : str
        ``"gelora"`` (budget-scaled rule ranks), ``"permuted"``, ``"reversed"``, ``"literal"`` (rule ranks,
        no scaling) or ``"lora_literal"`` (uniform rank at the literal budget).
    offset, estimator : int or str or None
        Replace the rule's offset / the ID estimator (``None``: GeLoRA's, from the profile).
    alpha_rule : str
        ``"const"``, ``"ratio32"`` or ``"rslora"``.
    texts : str
        ``"task"`` (the cell's training texts) or ``"generic"`` (the package's sentences).
    question : str
        The question the comparison with GeLoRA answers (report and analysis).
    reference : str
        The method it is compared with (``gelora``; ``gelora_literal`` for ``lora_literal``).
    controls : tuple of (str, str)
        Further comparisons as ``(method, question)``: the rearrangements of GeLoRA's ranks are also compared
        with uniform LoRA of the same budget, which tells whether *any* non-uniform arrangement of these ranks
        differs from uniform ones (a deficit of GeLoRA's own order that its rearrangements share is then not
        the order's).
    """

    name: str
    question: str
    allocation: str = "gelora"
    offset: int | None = None
    estimator: str | None = None
    alpha_rule: str = "const"
    texts: str = "task"
    reference: str = "gelora"
    controls: tuple[tuple[str, str], ...] = ()

    @property
    def budgeted(self) -> bool:
        """At the common adapter budget (checked by the runner) — all but the literal pair."""
        return self.allocation not in ("literal", "lora_literal")


_ABLATION_LIST: tuple[Ablation, ...] = (
    Ablation(
        "gelora_permuted",
        "ID-based allocation vs random allocation of the same budget",
        allocation="permuted",
        controls=(("lora", "uniform ranks (LoRA) vs GeLoRA's ranks permuted across blocks"),),
    ),
    Ablation(
        "gelora_reversed",
        "ID-based block order vs the reversed order",
        allocation="reversed",
        controls=(("lora", "uniform ranks (LoRA) vs GeLoRA's ranks in reversed block order"),),
    ),
    Ablation(
        "gelora_literal",
        "budget-scaled ranks vs the rule's literal (smaller) ranks",
        allocation="literal",
    ),
    Ablation(
        "lora_literal",
        "literal GeLoRA ranks vs uniform LoRA at the same (literal) budget",
        allocation="lora_literal",
        reference="gelora_literal",
    ),
    *(
        Ablation(f"gelora_offset{k}", f"GeLoRA's offset vs offset {k} (same budget)", offset=k)
        for k in (0, 1, 2, 4)
    ),
    *(
        Ablation(f"gelora_{e}", f"GeLoRA's estimator vs {name} (same budget)", estimator=e)
        for e, name in (("twonn", "TwoNN"), ("mle", "MLE"), ("danco", "DANCo"))
    ),
    Ablation("gelora_alpha_const", "GeLoRA vs alpha/r = uniform LoRA's (the same rule: a control)"),
    Ablation("gelora_alpha32", "alpha/r = uniform LoRA's vs the paper's alpha/r = 32", alpha_rule="ratio32"),
    Ablation(
        "gelora_rslora",
        "alpha/r = uniform LoRA's vs rsLoRA scaling c/sqrt(r) (same mean scaling)",
        alpha_rule="rslora",
    ),
    Ablation("gelora_generic", "IDs on the task's training texts vs on generic sentences", texts="generic"),
)

#: ablation name -> :class:`Ablation`
ABLATIONS: dict[str, Ablation] = {a.name: a for a in _ABLATION_LIST}


# ------------------------------------------------------------------------------------------- allocation
@dataclass(frozen=True)
class Arrangement:
    """A rearrangement of block ranks (``gelora_permuted``).

    Attributes
    ----------
    permutation : list of int
        Block ``i`` gets the rank of block ``permutation[i]``.
    ranks : list of int
        The rearranged ranks.
    index : int
        The requested index (the training seed).
    n_alternatives : int
        Distinct rank vectors other than the original (multinomial count minus one).
    repeat : bool
        ``index >= n_alternatives``: the sequence wrapped around, an earlier arrangement is reused.
    degenerate : bool
        Every rank is equal: no rearrangement differs from the original (the ablation is GeLoRA itself).
    """

    permutation: list[int]
    ranks: list[int]
    index: int
    n_alternatives: int
    repeat: bool
    degenerate: bool


def n_distinct_arrangements(ranks: Sequence[int]) -> int:
    """Number of distinct orderings of ``ranks`` (``n! / prod(m_k!)`` over the multiplicities ``m_k``)."""
    total = math.factorial(len(ranks))
    for m in Counter(int(r) for r in ranks).values():
        total //= math.factorial(m)
    return total


def distinct_arrangement(ranks: Sequence[int], index: int, *, seed: int = PERMUTATION_SEED) -> Arrangement:
    """The ``index``-th rank vector, in a fixed random sequence of distinct rearrangements of ``ranks``.

    The sequence draws uniform permutations from ``numpy.random.default_rng(seed)`` and keeps a draw only
    when its rank vector differs from the original and from every vector kept before. Ties in ``ranks``
    therefore never yield a "permutation" that leaves the vector unchanged, and indices ``0 .. K-1`` give
    ``K`` distinct vectors whenever ``K <= n_alternatives``; beyond that the sequence wraps around
    (``repeat=True``). With all ranks equal there is no alternative: the original is returned with
    ``degenerate=True``.

    Parameters
    ----------
    ranks : sequence of int
        Block ranks (``B`` entries).
    index : int
        Position in the sequence (the training seed), >= 0.
    seed : int
        Seed of the sequence (fixed, :data:`PERMUTATION_SEED`, so seeds of a grid walk the same sequence).
    """
    if index < 0:
        raise ConfigError(f"the arrangement index (training seed) must be >= 0, got {index}")
    base = [int(r) for r in ranks]
    alternatives = n_distinct_arrangements(base) - 1
    if alternatives == 0:
        return Arrangement(list(range(len(base))), base, int(index), 0, False, True)
    k = int(index) % alternatives
    rng = np.random.default_rng(seed)
    seen = {tuple(base)}
    kept: list[tuple[list[int], list[int]]] = []
    while len(kept) <= k:
        perm = [int(p) for p in rng.permutation(len(base))]
        vec = [base[p] for p in perm]
        if tuple(vec) not in seen:
            seen.add(tuple(vec))
            kept.append((perm, vec))
    perm, vec = kept[k]
    return Arrangement(perm, vec, int(index), alternatives, int(index) >= alternatives, False)


def closest_uniform_rank(budget: int, unit_costs: Sequence[int]) -> int:
    """The rank ``u >= 1`` whose uniform cost ``u * sum(unit_costs)`` is closest to ``budget`` (ties: lower)."""
    total = int(sum(int(c) for c in unit_costs))
    if total <= 0:
        raise ConfigError(f"unit costs must be positive, got {list(unit_costs)}")
    lo = max(1, budget // total)
    return min((lo, lo + 1), key=lambda u: (abs(u * total - budget), u))


def block_alphas(ranks: Sequence[int], rule: str, lora_ratio: float) -> list[float]:
    """``lora_alpha`` of every block under an alpha rule (rank-0 blocks: 0).

    ``"const"``: ``lora_ratio * r_i`` (scaling = uniform LoRA's in every block); ``"ratio32"``: ``32 r_i``;
    ``"rslora"``: ``c sqrt(r_i)`` with ``c = lora_ratio / mean_i(1 / sqrt(r_i))`` over the blocks with an
    adapter, so the scaling ``alpha_i / r_i = c / sqrt(r_i)`` follows rsLoRA and its mean over blocks equals
    uniform LoRA's ``lora_ratio``.
    """
    rs = [int(r) for r in ranks]
    if rule == "const":
        return [float(lora_ratio) * r for r in rs]
    if rule == "ratio32":
        return [PAPER_ALPHA_RATIO * r for r in rs]
    if rule == "rslora":
        active = [r for r in rs if r > 0]
        c = float(lora_ratio) / (sum(1.0 / math.sqrt(r) for r in active) / len(active))
        return [c * math.sqrt(r) if r > 0 else 0.0 for r in rs]
    raise ConfigError(f"unknown alpha rule {rule!r}; expected one of {ALPHA_RULES}")


def rule_ranks_at_offset(rule_ranks: Sequence[int], used_offset: int, offset: int) -> list[int]:
    """The rule's ranks with another offset: ``r_i - used_offset + offset`` (the gap part is unchanged)."""
    if offset < 0:
        raise ConfigError(f"offset must be >= 0, got {offset}")
    return [int(r) - int(used_offset) + int(offset) for r in rule_ranks]


def scale_to_budget(ranks: Sequence[int], unit_costs: Sequence[int], budget: int) -> tuple[list[int], Any]:
    """:func:`gelora.ranks.match_budget` over the blocks with rank > 0 (rank-0 blocks stay 0)."""
    from gelora.ranks import match_budget

    active = [i for i, r in enumerate(ranks) if int(r) > 0]
    if not active:
        raise ConfigError(f"every block has rank 0 ({list(ranks)}); no adapter to train")
    alloc = match_budget([int(ranks[i]) for i in active], [int(unit_costs[i]) for i in active], int(budget))
    out = [0] * len(ranks)
    for i, r in zip(active, alloc.ranks):
        out[i] = int(r)
    return out, alloc


# -------------------------------------------------------------------------------------------- prepare
def prepare_ablation(
    name: str,
    model: Any,
    *,
    budget_params: int,
    train_steps: int,
    seed: int,
    context: MethodContext,
) -> PreparedMethod:
    """Prepare ablation ``name`` (a key of :data:`ABLATIONS`) with the common ``prepare`` signature."""
    from gelora.pipeline import DEFAULT_TEXTS_RESOURCE, default_texts
    from gelora.ranks import lora_parameter_count

    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}; expected one of {sorted(ABLATIONS)}")
    ab = ABLATIONS[name]
    configured = dict(context.options.get("gelora", {}))
    overrides: dict[str, Any] = {}
    if ab.estimator is not None:
        overrides["estimator"] = ab.estimator
        if configured.get("estimator", "twonn") != ab.estimator:
            overrides["estimator_params"] = None  # the configured estimator's parameters do not apply
    if ab.texts == "generic":
        texts: Sequence[str] = default_texts()
        overrides["data_source"] = f"gelora:{DEFAULT_TEXTS_RESOURCE} (generic sentences, not the task's)"
    else:
        texts = context.train_texts
    # the IDs and the rule's ranks at the configured offset; scaling and the variant's change follow here
    result, used_texts, opts = estimate_gelora(
        model, budget_params=None, seed=seed, context=context, texts=texts, **overrides
    )
    unit_costs = [int(c) for c in result.unit_costs]
    used_offset = int(result.rule["offset"])
    # with budget=None the final ranks are the rule's, made identical on every process of a torchrun job
    rule = [int(r) for r in result.ranks]
    offset = used_offset if ab.offset is None else int(ab.offset)
    rule = rule_ranks_at_offset(rule, used_offset, offset)
    scaled, alloc = scale_to_budget(rule, unit_costs, int(budget_params))
    lora_ratio = float(context.lora_alpha) / float(context.lora_r)
    record: dict[str, Any] = {
        "name": ab.name,
        "question": ab.question,
        "reference": ab.reference,
        "allocation": ab.allocation,
        "offset": offset,
        "estimator": result.estimator,
        "alpha_rule": ab.alpha_rule,
        "texts": {**dict(result.data), "kind": ab.texts},
        "rule_ranks": rule,
        "gelora_ranks": scaled,
        "unit_costs": unit_costs,
        "common_budget_params": int(budget_params),
        "budget_allocation": alloc.to_dict(),
    }
    if ab.allocation == "gelora":
        ranks = scaled
    elif ab.allocation == "permuted":
        arr = distinct_arrangement(scaled, int(seed))
        ranks = arr.ranks
        record.update(
            permutation=arr.permutation,
            permutation_seed=PERMUTATION_SEED,
            arrangement_index=arr.index,
            n_alternatives=arr.n_alternatives,
            repeat=arr.repeat,
            degenerate=arr.degenerate,
            source_ranks=scaled,
        )
    elif ab.allocation == "reversed":
        ranks = scaled[::-1]
        record.update(source_ranks=scaled, degenerate=ranks == scaled)
    else:  # literal, lora_literal: the rule's ranks without scaling
        literal = lora_parameter_count(rule, unit_costs)
        record["literal_budget_params"] = literal
        if ab.allocation == "literal":
            ranks = rule
        else:
            u = closest_uniform_rank(literal, unit_costs)
            ranks = [u] * len(rule)
            record["uniform_rank"] = u
        record["source_ranks"] = rule
    alphas = block_alphas(ranks, ab.alpha_rule, lora_ratio)
    result = replace(result, ranks=list(ranks))
    peft_model = gelora_peft_model(model, result, context, alpha_ratio=lora_ratio, block_alphas=alphas)
    n = count_adapter_params(peft_model)
    expected = lora_parameter_count(ranks, unit_costs)
    if n != expected:  # the peft model must hold exactly the ranks recorded
        raise ConfigError(f"{name}: the adapters hold {n} parameters, the recorded ranks {expected}")
    record["adapter_params"] = n
    if "literal_budget_params" in record:
        record["relative_gap_to_literal"] = (n - record["literal_budget_params"]) / record[
            "literal_budget_params"
        ]
    info = gelora_info(result, used_texts, peft_model, opts)
    info["rule_ranks"] = rule
    info["block_alphas"] = alphas
    info["block_scalings"] = [a / r if r > 0 else None for a, r in zip(alphas, ranks)]
    info["alpha_ratio"] = lora_ratio if ab.alpha_rule == "const" else None
    info["ablation"] = record
    return PreparedMethod(peft_model, [], n, info)


def _make_prepare(name: str) -> Callable[..., PreparedMethod]:
    def prepare(
        model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
    ) -> PreparedMethod:
        return prepare_ablation(
            name, model, budget_params=budget_params, train_steps=train_steps, seed=seed, context=context
        )

    prepare.__name__ = f"prepare_{name}"
    prepare.__doc__ = f"Ablation ``{name}``: {ABLATIONS[name].question} (:func:`prepare_ablation`)."
    return prepare


#: ``prepare_<name>`` of every ablation (what ``METHODS`` names)
PREPARE: dict[str, Callable[..., PreparedMethod]] = {n: _make_prepare(n) for n in ABLATIONS}
globals().update({f"prepare_{n}": fn for n, fn in PREPARE.items()})


__all__ = [
    "ABLATIONS",
    "ALPHA_RULES",
    "PAPER_ALPHA_RATIO",
    "PERMUTATION_SEED",
    "PREPARE",
    "Ablation",
    "Arrangement",
    "block_alphas",
    "closest_uniform_rank",
    "distinct_arrangement",
    "n_distinct_arrangements",
    "prepare_ablation",
    "rule_ranks_at_offset",
    "scale_to_budget",
]
