"""GLUE and SQuAD metrics, matching the official definitions.

GLUE (Wang et al., 2019): Matthews correlation for CoLA; accuracy for SST-2, QNLI, RTE and MNLI
(matched / mismatched); F1 of the positive class and accuracy for MRPC and QQP; Pearson and Spearman
correlation for STS-B. GLUE metrics are fractions in [0, 1] (correlations in [-1, 1]).

SQuAD (Rajpurkar et al., 2016, 2018): exact match and token F1 after the official answer normalisation
(lower-case, strip punctuation, drop the articles a/an/the, collapse whitespace), maximised over the gold
answers. For v2.0 an empty prediction means "no answer": it scores 1 on an unanswerable question and 0 on
an answerable one, and gold answers that normalise to empty are dropped (``[""]`` if none remain), as in
the official v2.0 script. SQuAD scores are percentages in [0, 100], as the official scripts print them.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gelora.errors import ConfigError, DegenerateDataError, InvalidInputError

#: the metric each task is ranked by in the tables (as in the AdaLoRA/GeLoRA papers' GLUE tables)
PRIMARY_METRIC: dict[str, str] = {
    "cola": "matthews_correlation",
    "sst2": "accuracy",
    "mrpc": "accuracy",
    "qqp": "accuracy",
    "stsb": "pearson",
    "mnli": "accuracy_matched",
    "qnli": "accuracy",
    "rte": "accuracy",
    "squad_v1": "f1",
    "squad_v2": "f1",
}


def _as_1d(name: str, x: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty")
    arr = arr.astype(dtype)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or inf")
    return arr


def _pair(pred: Any, gold: Any, dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
    p = _as_1d("predictions", pred, dtype)
    g = _as_1d("labels", gold, dtype)
    if p.shape != g.shape:
        raise InvalidInputError(f"predictions ({p.shape[0]}) and labels ({g.shape[0]}) differ in length")
    return p, g


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of equal entries; inputs (n,) int class indices."""
    p, g = _pair(predictions, labels)
    return float(np.mean(p == g))


def f1_binary(predictions: Any, labels: Any, positive: int = 1) -> float:
    """F1 of the positive class: 2 TP / (2 TP + FP + FN); 0.0 when there is no positive at all."""
    p, g = _pair(predictions, labels)
    tp = int(np.sum((p == positive) & (g == positive)))
    fp = int(np.sum((p == positive) & (g != positive)))
    fn = int(np.sum((p != positive) & (g == positive)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2.0 * tp / denom


def matthews_corrcoef(predictions: Any, labels: Any) -> float:
    """Matthews correlation coefficient of two label vectors (multiclass form of Gorodkin, 2004).

    ``(c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))`` with ``c`` correct predictions,
    ``s`` samples, ``p_k``/``t_k`` predicted/true counts of class ``k``; for two classes this is
    ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``. Returns 0.0 when a marginal is constant
    (the denominator is zero), the convention of scikit-learn and of the GLUE evaluation.
    """
    p, g = _pair(predictions, labels)
    classes = np.union1d(p, g)
    pk = np.array([np.sum(p == c) for c in classes], dtype=np.float64)
    tk = np.array([np.sum(g == c) for c in classes], dtype=np.float64)
    s = float(p.size)
    c = float(np.sum(p == g))
    cov_pt = c * s - float(pk @ tk)
    cov_pp = s * s - float(pk @ pk)
    cov_tt = s * s - float(tk @ tk)
    if cov_pp == 0.0 or cov_tt == 0.0:
        return 0.0
    return float(cov_pt / np.sqrt(cov_pp * cov_tt))


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson correlation of two (n,) float vectors, n >= 2.

    Raises
    ------
    DegenerateDataError
        If either vector is constant (the correlation is undefined).
    """
    p, g = _pair(predictions, labels, np.float64)
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(g) == 0:
        raise DegenerateDataError("Pearson correlation is undefined for constant or single-element vectors")
    from scipy.stats import pearsonr

    return float(pearsonr(p, g)[0])


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rank correlation (ties get average ranks) of two (n,) float vectors."""
    p, g = _pair(predictions, labels, np.float64)
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(g) == 0:
        raise DegenerateDataError("Spearman correlation is undefined for constant or single-element vectors")
    from scipy.stats import spearmanr

    return float(spearmanr(p, g)[0])


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """The official metrics of one GLUE task.

    Parameters
    ----------
    task : str
        ``cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte`` (MNLI: call once per validation split).
    predictions : array-like
        Shape (n,): class indices, or (n,) float scores for STS-B. A 2-D (n, n_classes) array of logits
        is reduced with argmax; STS-B accepts (n, 1).
    labels : array-like
        Shape (n,) gold labels.

    Returns
    -------
    dict
        CoLA ``matthews_correlation``; SST-2/QNLI/RTE/MNLI ``accuracy``; MRPC/QQP ``f1``, ``accuracy``;
        STS-B ``pearson``, ``spearman``. MRPC, QQP and STS-B also report ``combined`` (the mean of the
        two, as the GLUE leaderboard averages them).
    """
    from validation.data.glue import task_spec

    spec = task_spec(task)
    pred = np.asarray(predictions)
    if spec.is_regression:
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        p, g = _pair(pred, labels, np.float64)
        out = {"pearson": pearson(p, g), "spearman": spearman(p, g)}
        out["combined"] = (out["pearson"] + out["spearman"]) / 2
        return out
    if pred.ndim == 2:
        if pred.shape[1] != spec.num_labels:
            raise InvalidInputError(
                f"{task}: logits have {pred.shape[1]} columns, expected {spec.num_labels}"
            )
        pred = pred.argmax(axis=1)
    p, g = _pair(pred, labels)
    if spec.name == "cola":
        return {"matthews_correlation": matthews_corrcoef(p, g)}
    if spec.name in ("mrpc", "qqp"):
        out = {"f1": f1_binary(p, g), "accuracy": accuracy(p, g)}
        out["combined"] = (out["f1"] + out["accuracy"]) / 2
        return out
    return {"accuracy": accuracy(p, g)}


# ------------------------------------------------------------------------------------------- SQuAD
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lower-case, remove punctuation, articles and extra whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> int:
    """1 if the normalised strings are equal, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of normalised answers.

    If either side normalises to no tokens, F1 is 1.0 when both do and 0.0 otherwise (v2.0 rule;
    the v1.1 script gives 0.0 there too, since its gold answers are never empty).
    """
    p = normalize_answer(prediction).split()
    g = normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(p)
    recall = same / len(g)
    return 2 * precision * recall / (precision + recall)


def _gold_list(answers: Iterable[str], version_2: bool) -> list[str]:
    golds = list(answers)
    if version_2:
        golds = [a for a in golds if normalize_answer(a)]
        if not golds:
            golds = [""]
    return golds


def squad_metrics(
    predictions: Mapping[str, str],
    gold: Mapping[str, Sequence[str]] | Sequence[Any],
    *,
    version: str = "2.0",
) -> dict[str, float]:
    """Exact match and F1 (percent) over all questions, max over gold answers.

    Parameters
    ----------
    predictions : mapping
        ``{question id: predicted text}``; ``""`` means "no answer" (v2.0). Every gold question must
        have a prediction.
    gold : mapping or sequence of SquadExample
        ``{question id: [gold answer texts]}`` (empty list = unanswerable), or the loaded examples.
    version : {"1.1", "2.0"}

    Returns
    -------
    dict
        ``exact``, ``f1``, ``total``; for v2.0 also ``has_ans_exact``, ``has_ans_f1``, ``has_ans_total``,
        ``no_ans_exact``, ``no_ans_f1``, ``no_ans_total`` (the breakdown is omitted for a group with no
        questions).

    Raises
    ------
    InvalidInputError
        Missing predictions, or no questions.
    """
    version = version.removeprefix("v")
    if version not in ("1.1", "2.0"):
        raise ConfigError(f"SQuAD version must be '1.1' or '2.0', got {version!r}")
    v2 = version == "2.0"
    if isinstance(gold, Mapping):
        gold_map = {str(k): list(v) for k, v in gold.items()}
    else:
        gold_map = {ex.id: list(ex.answers) for ex in gold}
    if not gold_map:
        raise InvalidInputError("no gold questions")
    missing = [q for q in gold_map if q not in predictions]
    if missing:
        raise InvalidInputError(f"{len(missing)} questions have no prediction (first: {missing[0]!r})")
    ex_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    for qid, answers in gold_map.items():
        golds = _gold_list(answers, v2)
        if not golds:  # v1.1 question without answers: not part of the official evaluation
            raise InvalidInputError(f"question {qid!r} has no gold answer (v1.1 requires at least one)")
        pred = predictions[qid]
        ex_scores[qid] = max(exact_match(pred, a) for a in golds)
        f1_scores[qid] = max(token_f1(pred, a) for a in golds)
    out = _pct(ex_scores, f1_scores, list(gold_map))
    if v2:
        has = [q for q, a in gold_map.items() if any(normalize_answer(x) for x in a)]
        no = [q for q in gold_map if q not in set(has)]
        for prefix, ids in (("has_ans", has), ("no_ans", no)):
            if ids:
                sub = _pct(ex_scores, f1_scores, ids)
                out.update({f"{prefix}_{k}": v for k, v in sub.items()})
    return out


def _pct(ex: Mapping[str, float], f1: Mapping[str, float], ids: Sequence[str]) -> dict[str, float]:
    n = len(ids)
    return {
        "exact": 100.0 * sum(ex[q] for q in ids) / n,
        "f1": 100.0 * sum(f1[q] for q in ids) / n,
        "total": float(n),
    }


__all__ = [
    "PRIMARY_METRIC",
    "accuracy",
    "exact_match",
    "f1_binary",
    "glue_metrics",
    "matthews_corrcoef",
    "normalize_answer",
    "pearson",
    "spearman",
    "squad_metrics",
    "token_f1",
]
