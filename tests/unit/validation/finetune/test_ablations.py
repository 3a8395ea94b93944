"""GeLoRA's ablations: the ranks and alphas they claim, their budgets, and the permutation sequence."""

from __future__ import annotations

import copy
import math
import re

import pytest

from gelora.errors import ConfigError
from validation.finetune.ablations import (
    ABLATIONS,
    block_alphas,
    closest_uniform_rank,
    distinct_arrangement,
    n_distinct_arrangements,
    rule_ranks_at_offset,
    scale_to_budget,
)
from validation.finetune.methods import (
    ABLATION_METHODS,
    BUDGET_RTOL,
    METHODS,
    MethodContext,
    check_budget,
    get_method,
)

# all-MiniLM-L6-v2: 6 blocks, query and value 384 x 384: 12 matrices of r (384 + 384) parameters
UNIT = 2 * (384 + 384)
BUDGET_R8 = 6 * 8 * UNIT


# ----------------------------------------------------------------------------------- pure functions
def test_every_ablation_is_a_method_and_only_the_literal_pair_is_off_budget() -> None:
    from validation.finetune.methods import BUDGETED_METHODS

    assert set(ABLATIONS) == set(ABLATION_METHODS) and set(ABLATIONS) <= set(METHODS)
    for name in ABLATIONS:
        assert (name in BUDGETED_METHODS) == ABLATIONS[name].budgeted
        get_method(name)  # resolves (imports the module)
    assert {n for n in ABLATIONS if not ABLATIONS[n].budgeted} == {"gelora_literal", "lora_literal"}


@pytest.mark.parametrize("ranks", [[10, 16, 10, 6, 3, 3], [8, 16, 8, 4, 4, 8], [1, 2], [5, 5, 5, 6]])
def test_five_seeds_give_five_distinct_rearrangements_never_the_original(ranks: list[int]) -> None:
    alternatives = n_distinct_arrangements(ranks) - 1
    k = min(5, alternatives)
    got = [distinct_arrangement(ranks, s) for s in range(k)]
    vectors = [tuple(a.ranks) for a in got]
    assert len(set(vectors)) == k  # distinct from each other
    assert tuple(ranks) not in vectors  # and from the original order, ties included
    for a in got:
        assert sorted(a.ranks) == sorted(ranks)  # a permutation of the same ranks: same budget
        assert a.ranks == [ranks[p] for p in a.permutation]
        assert not a.repeat and not a.degenerate
    assert got[0].ranks == distinct_arrangement(ranks, 0).ranks  # deterministic


def test_few_alternatives_wrap_around_and_equal_ranks_are_degenerate() -> None:
    assert n_distinct_arrangements([1, 2]) == 2
    assert distinct_arrangement([1, 2], 0).ranks == [2, 1]
    again = distinct_arrangement([1, 2], 3)
    assert again.ranks == [2, 1] and again.repeat
    flat = distinct_arrangement([8, 8, 8], 2)
    assert flat.degenerate and flat.ranks == [8, 8, 8] and flat.n_alternatives == 0
    assert n_distinct_arrangements([10, 16, 10, 6, 3, 3]) == math.factorial(6) // 4


def test_alpha_rules_and_rank_helpers() -> None:
    ranks = [8, 16, 8, 4, 4, 8]
    assert block_alphas(ranks, "const", 2.0) == [2.0 * r for r in ranks]
    assert block_alphas(ranks, "ratio32", 2.0) == [32.0 * r for r in ranks]
    rs = block_alphas(ranks, "rslora", 2.0)
    scalings = [a / r for a, r in zip(rs, ranks)]
    assert sum(scalings) / len(scalings) == pytest.approx(2.0)  # mean scaling = uniform LoRA's alpha/r
    c = rs[0] / math.sqrt(ranks[0])
    assert rs == pytest.approx([c * math.sqrt(r) for r in ranks])  # alpha_i = c sqrt(r_i)
    assert block_alphas([4, 0], "rslora", 2.0)[1] == 0.0
    with pytest.raises(ConfigError, match="alpha rule"):
        block_alphas(ranks, "nope", 2.0)
    assert rule_ranks_at_offset([4, 1, 2], 1, 0) == [3, 0, 1]
    assert rule_ranks_at_offset([4, 1, 2], 1, 4) == [7, 4, 5]
    scaled, alloc = scale_to_budget([3, 0, 1], [10, 10, 10], 80)
    assert scaled == [6, 0, 2] and alloc.achieved == 80
    # closest uniform rank to a literal budget (ties go to the lower rank)
    assert closest_uniform_rank(13 * UNIT, [UNIT] * 6) == 2  # 12 units (gap 1) beats 18 (gap 5)
    assert closest_uniform_rank(3 * UNIT, [UNIT] * 6) == 1
    assert closest_uniform_rank(9 * UNIT, [UNIT] * 6) == 1  # 6 and 12 units tie at 3: the lower


# ---------------------------------------------------------------------------- on the bundled model
@pytest.fixture(scope="module")
def path() -> str:
    from gelora.models import resolve_model_name

    return resolve_model_name(None)


@pytest.fixture(scope="module")
def context(path: str) -> MethodContext:
    from transformers import AutoTokenizer

    from validation.data.glue import load_glue

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    texts = load_glue("rte", "train").take(32, seed=0).joined_texts(" [SEP] ")
    return MethodContext(
        task="rte",
        tokenizer=tok,
        max_length=32,
        train_texts=tuple(texts),
        options={"gelora": {"n_texts": 32}},
    )


@pytest.fixture(scope="module")
def shared_estimate():
    """The real ID estimate, computed once per (estimator, texts, budget) and shared across seeds.

    The ablations' own steps (offset, scaling, rearrangement, alphas, LoraConfig) run for real on every call;
    sharing the estimate makes the base ranks identical across seeds, the case in which distinct seeds must
    give distinct permutations, and keeps the module fast.
    """
    import gelora.pipeline as pipeline

    real = pipeline.compute_gelora_ranks
    cache: dict = {}

    def cached(model, texts, **kw):  # noqa: ANN001, ANN202
        key = (kw.get("estimator", "twonn"), tuple(texts), kw.get("budget"), kw.get("offset", 1))
        if key not in cache:
            cache[key] = real(model, texts, **kw)
        return copy.deepcopy(cache[key])

    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "compute_gelora_ranks", cached)
    yield cache
    mp.undo()


def _prepare(path: str, context: MethodContext, name: str, seed: int = 0):  # noqa: ANN202
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, local_files_only=True)
    return get_method(name)(model, budget_params=BUDGET_R8, train_steps=4, seed=seed, context=context)


def _module_ranks_and_scalings(prepared) -> dict[int, set[tuple[int, float]]]:  # noqa: ANN001
    """``{block: {(rank, scaling)}}`` read from the peft model's LoRA layers themselves."""
    out: dict[int, set[tuple[int, float]]] = {}
    for name, mod in prepared.model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "r", {}):
            block = int(re.search(r"layer\.(\d+)\.", name).group(1))
            out.setdefault(block, set()).add((int(mod.r["default"]), round(float(mod.scaling["default"]), 9)))
    return out


def _claims_match_model(prepared) -> None:  # noqa: ANN001
    info = prepared.info
    layers = _module_ranks_and_scalings(prepared)
    for i, (r, a) in enumerate(zip(info["block_ranks"], info["block_alphas"])):
        if r == 0:
            assert i not in layers  # rank 0: no adapter in that block
        else:
            assert layers[i] == {(r, round(a / r, 9))}, (i, layers[i], r, a)


def test_permuted_reversed_and_controls_hold_what_they_claim(path, context, shared_estimate) -> None:  # noqa: ANN001
    gel = _prepare(path, context, "gelora")
    g_ranks = gel.info["block_ranks"]
    assert gel.info["block_alphas"] == [2.0 * r for r in g_ranks]
    _claims_match_model(gel)
    # the controls reproduce GeLoRA exactly
    for name in ("gelora_alpha_const",):
        p = _prepare(path, context, name)
        assert p.info["block_ranks"] == g_ranks and p.info["block_alphas"] == gel.info["block_alphas"], name
    rev = _prepare(path, context, "gelora_reversed")
    assert rev.info["block_ranks"] == g_ranks[::-1]
    assert rev.info["ablation"]["source_ranks"] == g_ranks
    _claims_match_model(rev)
    seen = set()
    for seed in range(5):
        p = _prepare(path, context, "gelora_permuted", seed)
        rec = p.info["ablation"]
        assert rec["source_ranks"] == g_ranks
        assert p.info["block_ranks"] == [g_ranks[j] for j in rec["permutation"]]
        assert p.info["block_ranks"] != g_ranks
        seen.add(tuple(p.info["block_ranks"]))
        assert check_budget("gelora_permuted", p, BUDGET_R8)["within_budget"] is True
        _claims_match_model(p)
    assert len(seen) == 5  # five seeds, five distinct permutations


def test_literal_pair_budgets(path, context, shared_estimate) -> None:  # noqa: ANN001
    lit = _prepare(path, context, "gelora_literal")
    rec = lit.info["ablation"]
    assert lit.info["block_ranks"] == lit.info["rule_ranks"] == rec["source_ranks"]
    assert lit.trainable_adapter_params == rec["literal_budget_params"] == sum(lit.info["block_ranks"]) * UNIT
    assert rec["literal_budget_params"] < BUDGET_R8 and rec["common_budget_params"] == BUDGET_R8
    _claims_match_model(lit)
    uni = _prepare(path, context, "lora_literal")
    urec = uni.info["ablation"]
    u = urec["uniform_rank"]
    assert uni.info["block_ranks"] == [u] * 6 and uni.trainable_adapter_params == 6 * u * UNIT
    assert urec["literal_budget_params"] == rec["literal_budget_params"]
    # no other uniform rank is closer to the literal budget
    gap = abs(6 * u * UNIT - rec["literal_budget_params"])
    assert all(abs(6 * v * UNIT - rec["literal_budget_params"]) >= gap for v in range(1, 20))
    assert urec["relative_gap_to_literal"] == pytest.approx(
        (uni.trainable_adapter_params - rec["literal_budget_params"]) / rec["literal_budget_params"]
    )
    _claims_match_model(uni)
    # off the common budget on purpose: the runner's check records them without refusing
    assert check_budget("lora_literal", uni, BUDGET_R8)["within_budget"] is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "gelora_offset1",
        "gelora_twonn",
        "gelora_offset0",
        "gelora_offset4",
        "gelora_alpha32",
        "gelora_rslora",
        "gelora_mle",
        "gelora_generic",
    ],
)
def test_variants_stay_at_the_budget_and_record_their_change(path, context, shared_estimate, name) -> None:  # noqa: ANN001
    p = _prepare(path, context, name)
    rec = p.info["ablation"]
    assert abs(check_budget(name, p, BUDGET_R8)["relative_gap"]) <= BUDGET_RTOL
    _claims_match_model(p)
    ranks = p.info["block_ranks"]
    if name in ("gelora_offset1", "gelora_twonn"):  # controls: GeLoRA itself
        assert ranks == _prepare(path, context, "gelora").info["block_ranks"]
    if name == "gelora_offset0":
        assert rec["offset"] == 0 and rec["rule_ranks"] == [
            r - 1 for r in _prepare(path, context, "gelora").info["rule_ranks"]
        ]
    if name == "gelora_offset4":
        assert rec["offset"] == 4 and min(rec["rule_ranks"]) >= 4
    if name == "gelora_alpha32":
        assert p.info["block_alphas"] == [32.0 * r for r in ranks]
    if name == "gelora_rslora":
        sc = [a / r for a, r in zip(p.info["block_alphas"], ranks)]
        assert sum(sc) / len(sc) == pytest.approx(2.0) and rec["alpha_rule"] == "rslora"
    if name == "gelora_mle":
        assert rec["estimator"] == "mle" and p.info["estimator"] == "mle"
    if name == "gelora_generic":
        from gelora.pipeline import default_texts, texts_sha256

        assert rec["texts"]["kind"] == "generic" and "generic" in rec["texts"]["source"]
        assert rec["texts"]["sha256"] == texts_sha256(default_texts()[:32])
