"""SQuAD v2.0 scores at the best no-answer threshold (``best_exact`` / ``best_f1`` of the official script).

The official ``evaluate-v2.0.py`` takes, besides the predictions, a no-answer score per question
(``na_prob``) and reports the exact match and F1 obtained with the best threshold on it: a question is
answered (with its predicted span) when its score is ``<= threshold`` and gets "no answer" otherwise.
Its search starts from "no answer everywhere" (score = the number of unanswerable questions), walks the
questions by increasing no-answer score and switches each to its span: an answerable question gains its
EM/F1, an unanswerable one loses 1 when the span is non-empty. The best running total, as a percentage
of all questions, is ``best_exact`` / ``best_f1``; the score of the last switched question is the
threshold (0.0 when answering nothing is best, as in the official script).

One deliberate difference: questions with *equal* no-answer scores are switched together (a threshold
cannot separate them), so the reported best is always attainable by applying the threshold. The official
script can credit a cut inside a group of ties; without ties the two agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gelora.errors import InvalidInputError
from validation.finetune.metrics import exact_match, normalize_answer, token_f1


def _gold_map(gold: Mapping[str, Sequence[str]] | Sequence[Any]) -> dict[str, list[str]]:
    if isinstance(gold, Mapping):
        return {str(k): list(v) for k, v in gold.items()}
    return {ex.id: list(ex.answers) for ex in gold}


def best_threshold_metrics(
    span_predictions: Mapping[str, str],
    no_answer_scores: Mapping[str, float],
    gold: Mapping[str, Sequence[str]] | Sequence[Any],
) -> dict[str, float]:
    """``best_exact``, ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh`` (scores in percent).

    Parameters
    ----------
    span_predictions : mapping
        ``{question id: best non-null answer text}`` (``""`` if the model has no span at all).
    no_answer_scores : mapping
        ``{question id: score}``, higher = more confident there is no answer (e.g. the ``null_odds`` of
        :func:`validation.data.squad.best_spans`; ``inf`` allowed).
    gold : mapping or sequence of SquadExample
        ``{question id: [gold answer texts]}`` (empty list = unanswerable), or the loaded examples.

    Raises
    ------
    InvalidInputError
        No questions, a question without a prediction or a score, or a NaN score.
    """
    gold_map = _gold_map(gold)
    if not gold_map:
        raise InvalidInputError("no gold questions")
    for name, mapping in (("prediction", span_predictions), ("no-answer score", no_answer_scores)):
        missing = [q for q in gold_map if q not in mapping]
        if missing:
            raise InvalidInputError(f"{len(missing)} questions have no {name} (first: {missing[0]!r})")
    if any(math.isnan(float(no_answer_scores[q])) for q in gold_map):
        raise InvalidInputError("no-answer scores contain NaN")
    has_ans = {q: bool(a) for q, a in gold_map.items()}  # the official script: bool(qa["answers"])
    raw_exact: dict[str, float] = {}
    raw_f1: dict[str, float] = {}
    for q, answers in gold_map.items():
        golds = [a for a in answers if normalize_answer(a)] or [""]
        pred = span_predictions[q]
        raw_exact[q] = float(max(exact_match(pred, a) for a in golds))
        raw_f1[q] = max(token_f1(pred, a) for a in golds)
    out: dict[str, float] = {}
    for key, raw in (("exact", raw_exact), ("f1", raw_f1)):
        best, thresh = _search(span_predictions, raw, no_answer_scores, has_ans)
        out[f"best_{key}"] = 100.0 * best / len(gold_map)
        out[f"best_{key}_thresh"] = thresh
    return out


def _search(
    preds: Mapping[str, str],
    raw: Mapping[str, float],
    na: Mapping[str, float],
    has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    order = sorted(has_ans, key=lambda q: float(na[q]))
    current = float(sum(1 for q in order if not has_ans[q]))
    best, thresh = current, 0.0
    for i, q in enumerate(order):
        if has_ans[q]:
            current += raw[q]
        elif preds[q]:
            current -= 1.0
        last_of_ties = i + 1 == len(order) or float(na[order[i + 1]]) != float(na[q])
        if last_of_ties and current > best:
            best, thresh = current, float(na[q])
    return best, thresh


def apply_threshold(
    span_predictions: Mapping[str, str], no_answer_scores: Mapping[str, float], threshold: float
) -> dict[str, str]:
    """Predictions at a threshold: the span when its no-answer score is ``<= threshold``, else ``""``."""
    return {q: t if float(no_answer_scores[q]) <= threshold else "" for q, t in span_predictions.items()}


__all__ = ["apply_threshold", "best_threshold_metrics"]
