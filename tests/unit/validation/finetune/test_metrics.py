"""GLUE and SQuAD metrics pinned on hand-checked examples (values worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gelora.errors import DegenerateDataError, InvalidInputError
from validation.finetune.metrics import (
    accuracy,
    exact_match,
    f1_binary,
    glue_metrics,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    spearman,
    squad_metrics,
    token_f1,
)

PRED = [1, 1, 0, 0, 1]
GOLD = [1, 0, 0, 0, 1]  # TP=2 FP=1 TN=2 FN=0


def test_accuracy_and_f1_by_hand() -> None:
    assert accuracy(PRED, GOLD) == pytest.approx(4 / 5)
    # F1 = 2TP / (2TP + FP + FN) = 4 / 5
    assert f1_binary(PRED, GOLD) == pytest.approx(0.8)
    assert f1_binary([0, 0], [0, 0]) == 0.0  # no positives anywhere: defined as 0


def test_matthews_by_hand_and_against_sklearn() -> None:
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 0) / sqrt(3*2*3*2) = 2/3
    assert matthews_corrcoef(PRED, GOLD) == pytest.approx(2 / 3)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n_classes in (2, 3):
        p, g = rng.integers(0, n_classes, 200), rng.integers(0, n_classes, 200)
        assert matthews_corrcoef(p, g) == pytest.approx(sklearn.matthews_corrcoef(g, p), abs=1e-12)


def test_correlations_by_hand() -> None:
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    # x=[1,2,3], y=[1,3,2]: cov sum = 1, both variances sums = 2 -> 0.5
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # Spearman = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6*2/24 = 0.5
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    with pytest.raises(DegenerateDataError):
        pearson([1, 1, 1], [1, 2, 3])


def test_glue_metrics_per_task() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])  # argmax [1,0,1,0,1]
    labels = [1, 0, 0, 0, 1]
    m = glue_metrics("mrpc", logits, labels)
    assert m["accuracy"] == pytest.approx(0.8) and m["f1"] == pytest.approx(0.8)
    assert m["combined"] == pytest.approx(0.8)
    assert set(glue_metrics("cola", logits, labels)) == {"matthews_correlation"}
    assert glue_metrics("rte", [0, 1], [0, 0]) == {"accuracy": 0.5}
    st = glue_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), [1.0, 3.0, 2.0])
    assert st["pearson"] == pytest.approx(0.5) and st["spearman"] == pytest.approx(0.5)
    mnli = glue_metrics("mnli", np.eye(3), [0, 1, 1])
    assert mnli == {"accuracy": pytest.approx(2 / 3)}


def test_glue_metrics_reject_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="differ in length"):
        glue_metrics("rte", [0, 1, 1], [0, 1])
    with pytest.raises(InvalidInputError, match="columns"):
        glue_metrics("mnli", np.zeros((2, 2)), [0, 1])
    with pytest.raises(InvalidInputError, match="NaN"):
        glue_metrics("stsb", [0.1, float("nan")], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="empty"):
        accuracy([], [])


def test_squad_normalisation_is_official() -> None:
    assert normalize_answer("The Cat!") == "cat"
    assert normalize_answer("  an Apple, a   day ") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    assert exact_match("the Normans", "Normans.") == 1


def test_token_f1_by_hand() -> None:
    # pred [cat, sat], gold [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "cat") == 0.0


def test_squad_v2_no_answer_and_max_over_gold() -> None:
    gold = {"q1": ["Paris", "the city of Paris"], "q2": [], "q3": [], "q4": ["1066"]}
    preds = {"q1": "city of Paris", "q2": "", "q3": "somewhere", "q4": ""}
    m = squad_metrics(preds, gold, version="2.0")
    # q1: EM via the second gold answer (1), q2: empty on unanswerable (1), q3: 0, q4: empty on answerable (0)
    assert m["exact"] == pytest.approx(50.0) and m["f1"] == pytest.approx(50.0)
    assert m["has_ans_exact"] == pytest.approx(50.0) and m["has_ans_total"] == 2
    assert m["no_ans_exact"] == pytest.approx(50.0) and m["no_ans_total"] == 2


def test_squad_v1_partial_credit_and_missing_prediction() -> None:
    gold = {"a": ["Denver Broncos"], "b": ["Santa Clara, California"]}
    m = squad_metrics({"a": "Broncos", "b": "Santa Clara, California"}, gold, version="1.1")
    # a: P = 1, R = 1/2 -> F1 = 2/3; b exact
    assert m["exact"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert "no_ans_total" not in m
    with pytest.raises(InvalidInputError, match="no prediction"):
        squad_metrics({"a": "x"}, gold, version="1.1")
    assert math.isclose(
        squad_metrics({"a": "Denver Broncos"}, {"a": ["Denver Broncos"]}, version="1.1")["f1"], 100.0
    )
