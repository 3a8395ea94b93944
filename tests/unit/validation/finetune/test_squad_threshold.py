"""best_exact / best_f1 over the no-answer threshold, on hand-made cases and against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from gelora.errors import InvalidInputError
from validation.finetune.metrics import squad_metrics
from validation.finetune.squad_threshold import apply_threshold, best_threshold_metrics

GOLD = {"q1": ["Paris"], "q2": [], "q3": ["blue sky"], "q4": []}
SPANS = {"q1": "Paris", "q2": "London", "q3": "blue", "q4": ""}
ODDS = {"q1": -2.0, "q2": 1.0, "q3": 0.5, "q4": 3.0}


def test_hand_computed_case() -> None:
    # start: all "no answer" -> 2 of 4 right. By increasing odds: q1 (+1 EM, +1 F1), q3 ("blue" vs
    # "blue sky": EM 0, F1 2/3), q2 (unanswerable, non-empty span: -1), q4 (empty span: 0).
    # EM: 2 -> 3 (thresh -2) -> 3 -> 2 -> 2: best 3/4. F1: 2 -> 3 -> 3.667 (thresh 0.5) -> ...
    out = best_threshold_metrics(SPANS, ODDS, GOLD)
    assert out["best_exact"] == pytest.approx(75.0) and out["best_exact_thresh"] == -2.0
    assert out["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4) and out["best_f1_thresh"] == 0.5
    # applying the thresholds reproduces the scores
    em = squad_metrics(apply_threshold(SPANS, ODDS, -2.0), GOLD, version="2.0")["exact"]
    f1 = squad_metrics(apply_threshold(SPANS, ODDS, 0.5), GOLD, version="2.0")["f1"]
    assert em == pytest.approx(out["best_exact"]) and f1 == pytest.approx(out["best_f1"])


def test_answering_nothing_best_gives_threshold_zero() -> None:
    gold = {"a": [], "b": [], "c": ["x"]}
    spans = {"a": "y", "b": "z", "c": "w"}
    out = best_threshold_metrics(spans, {"a": 0.1, "b": 0.2, "c": 0.3}, gold)
    assert out["best_exact"] == pytest.approx(200 / 3) and out["best_exact_thresh"] == 0.0


def test_tied_scores_switch_together() -> None:
    # a right answer and a wrong answer to an unanswerable question share one score: a threshold takes
    # both or neither (the official script would credit 100 by cutting between them)
    gold = {"a": ["x"], "b": []}
    out = best_threshold_metrics({"a": "x", "b": "y"}, {"a": 1.0, "b": 1.0}, gold)
    assert out["best_exact"] == pytest.approx(50.0)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="no-answer score"):
        best_threshold_metrics(SPANS, {"q1": 0.0}, GOLD)
    with pytest.raises(InvalidInputError, match="NaN"):
        best_threshold_metrics(SPANS, {**ODDS, "q2": float("nan")}, GOLD)
    with pytest.raises(InvalidInputError, match="no gold"):
        best_threshold_metrics({}, {}, {})


def _official_find_best_thresh(preds, scores, na_probs, has_ans):  # noqa: ANN001, ANN202
    """The official evaluate-v2.0 ``find_best_thresh``, transcribed from its definition."""
    cur = best = sum(1 for k in has_ans if not has_ans[k])
    thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        diff = scores[qid] if has_ans[qid] else (-1 if preds[qid] else 0)
        cur += diff
        if cur > best:
            best, thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), thresh


GOLD_WORDS = ["red", "blue", "sky", "big"]  # none normalises to "" (see best_threshold_metrics' has_ans)
PRED_WORDS = [*GOLD_WORDS, "the", ""]


@pytest.mark.parametrize("seed", range(40))
def test_matches_official_and_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    gold: dict[str, list[str]] = {}
    for i in range(n):
        k = int(rng.integers(0, 3))
        gold[f"q{i}"] = [" ".join(rng.choice(GOLD_WORDS, size=k))] if k else []
    spans = {q: " ".join(rng.choice(PRED_WORDS, size=int(rng.integers(0, 4)))).strip() for q in gold}
    # distinct scores (no ties): identical to the official script
    odds = dict(zip(gold, rng.permutation(n).astype(float) - n / 2))
    out = best_threshold_metrics(spans, odds, gold)
    has = {q: bool(a) for q, a in gold.items()}
    per_q = {q: squad_metrics({q: spans[q]}, {q: gold[q]}, version="2.0") for q in gold}
    raw_em = {q: m["exact"] / 100 for q, m in per_q.items()}
    raw_f1 = {q: m["f1"] / 100 for q, m in per_q.items()}
    assert (out["best_exact"], out["best_exact_thresh"]) == pytest.approx(
        _official_find_best_thresh(spans, raw_em, odds, has)
    )
    assert (out["best_f1"], out["best_f1_thresh"]) == pytest.approx(
        _official_find_best_thresh(spans, raw_f1, odds, has)
    )
    # and the best over every applicable threshold (including "answer nothing")
    cands = [-np.inf, *odds.values()]
    scored = [squad_metrics(apply_threshold(spans, odds, t), gold, version="2.0") for t in cands]
    assert out["best_exact"] == pytest.approx(max(m["exact"] for m in scored))
    assert out["best_f1"] == pytest.approx(max(m["f1"] for m in scored))
