"""SQuAD v1.1 / v2.0: loader for the official JSON, features for extractive QA, answers from logits.

Preprocessing follows the standard extractive-QA recipe (Hugging Face's ``run_qa.py``): question and
context are tokenised as a pair with ``truncation="only_second"``, long contexts are split into overlapping
windows (``stride`` tokens of overlap), and the character span of the first gold answer is mapped to
start/end token positions through the tokenizer's ``offset_mapping``; a window that does not contain the
answer (and every unanswerable question) points at the CLS token (index 0 with right padding). A tokenizer
that pads on the left gets the pair the other way round, context first with ``truncation="only_first"``
(``pad_on_right`` in ``run_qa.py``), so that the context, never the question, is what gets windowed; the
context is then sequence 0 and the CLS token follows the padding. Postprocessing inverts it: the best valid
span over all windows of an example (start <= end, length <= ``max_answer_length``, inside the context) is
compared with the null score (CLS start + CLS end logits) for v2.0.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError

_DEFAULT_FILES = {
    "1.1": ("squad/v1.1/dev-v1.1.json", "squad/v1.1/dev-v1.1.json.gz"),
    "2.0": ("squad/v2.0/dev-v2.0.json", "squad/v2.0/dev-v2.0.json.gz", "squad/v2.0/dev-partial.json.gz"),
}


@dataclass(frozen=True)
class SquadExample:
    """One question.

    Attributes
    ----------
    id : str
        Official question id.
    title : str
        Article title.
    context : str
        Paragraph text.
    question : str
        Question text.
    answers : tuple of str
        Gold answer texts (empty for unanswerable v2.0 questions).
    answer_starts : tuple of int
        Character offsets of the answers in ``context``.
    is_impossible : bool
        True for unanswerable v2.0 questions.
    """

    id: str
    title: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool = False


def _open_json(path: Path) -> Any:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable SQuAD JSON file: {exc}") from exc


def parse_squad(data: Mapping[str, Any], *, source: str = "<dict>") -> tuple[str, list[SquadExample]]:
    """Examples of an official SQuAD JSON document.

    Returns
    -------
    (version, examples)
        ``version`` as written in the file (``"1.1"``, ``"v2.0"``...) normalised to ``"1.1"``/``"2.0"``.

    Raises
    ------
    InvalidInputError
        If the document lacks the official keys (``data[].paragraphs[].context``,
        ``qas[].id/question/answers``) or an answer does not occur at its ``answer_start``.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
        raise InvalidInputError(f"{source}: expected the official SQuAD format {{'version', 'data': [...]}}")
    raw_version = str(data.get("version", ""))
    has_impossible = False
    examples: list[SquadExample] = []
    for article in data["data"]:
        title = str(article.get("title", ""))
        for para in article.get("paragraphs", []):
            if "context" not in para or "qas" not in para:
                raise InvalidInputError(f"{source}: paragraph of {title!r} lacks 'context' or 'qas'")
            context = para["context"]
            for qa in para["qas"]:
                try:
                    qid, question, answers = qa["id"], qa["question"], qa["answers"]
                except KeyError as exc:
                    raise InvalidInputError(f"{source}: question in {title!r} lacks key {exc}") from None
                impossible = bool(qa.get("is_impossible", False))
                has_impossible |= "is_impossible" in qa
                texts = tuple(str(a["text"]) for a in answers)
                starts = tuple(int(a["answer_start"]) for a in answers)
                for t, s in zip(texts, starts):
                    if context[s : s + len(t)] != t:
                        raise InvalidInputError(
                            f"{source}: question {qid}: answer {t!r} not found at offset {s} of the context"
                        )
                if not impossible and not texts:
                    raise InvalidInputError(
                        f"{source}: question {qid} has no answer and is not marked impossible"
                    )
                examples.append(SquadExample(qid, title, context, question, texts, starts, impossible))
    version = "2.0" if ("2" in raw_version.split(".")[0] or has_impossible) else "1.1"
    return version, examples


def load_squad(
    path: str | Path | None = None, *, version: str = "2.0", data_dir: str | Path | None = None
) -> list[SquadExample]:
    """Load SQuAD examples from an official JSON file (``.json`` or ``.json.gz``).

    Parameters
    ----------
    path : str, Path or None
        The file; ``None`` looks for the dev file of ``version`` under ``data_dir``
        (``squad/v2.0/dev-v2.0.json[.gz]``, then the partial copy ``dev-partial.json.gz``;
        ``squad/v1.1/dev-v1.1.json[.gz]``).
    version : {"1.1", "2.0"}
        Expected version; a file of the other version raises.
    data_dir : str, Path or None
        Root of the local data (default :func:`validation.data.default_data_dir`).
    """
    version = version.removeprefix("v")
    if version not in _DEFAULT_FILES:
        raise ConfigError(f"SQuAD version must be '1.1' or '2.0', got {version!r}")
    if path is None:
        if data_dir is None:
            from validation.data import default_data_dir

            data_dir = default_data_dir()
        candidates = [Path(data_dir) / rel for rel in _DEFAULT_FILES[version]]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"no SQuAD v{version} file; tried {[str(c) for c in candidates]}")
        path = found
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"SQuAD file not found: {path}")
    file_version, examples = parse_squad(_open_json(path), source=str(path))
    if file_version != version:
        raise InvalidInputError(f"{path} is SQuAD v{file_version}, expected v{version}")
    return examples


# ------------------------------------------------------------------------------------------ features
def _fit_questions(tokenizer: Any, questions: list[str], max_length: int, stride: int) -> list[str]:
    """``questions``, each cut at a token boundary to at most ``max_length - specials - stride - 1`` tokens.

    A window holds the question, the special tokens and part of the context; the fast tokenizer needs that
    part longer than ``stride`` and otherwise aborts the process (a Rust panic, not an exception) — with a
    short ``max_length`` (the test profile's 32) one long question is enough. At 384 tokens and stride 128
    a question may have 250 tokens: SQuAD's never come near, so the paper profile's features are unchanged.
    """
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - stride - 1
    if room < 1:
        raise ConfigError(
            f"max_length ({max_length}) leaves no room for a question beside the special tokens and a context "
            f"longer than the stride ({stride})"
        )
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"], strict=True):
        while len(ids) > room:  # a cut can re-tokenise differently at its edge: check again
            q = q[: offsets[room - 1][1]]
            cut = tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = cut["input_ids"], cut["offset_mapping"]
        out.append(q)
    return out


def _tokenize(
    tokenizer: Any, examples: Sequence[SquadExample], max_length: int, stride: int
) -> tuple[Any, int]:
    """The windows of ``examples`` and the sequence id of the context in them (0 or 1).

    Question and context go in as a pair, the context last when the tokenizer pads on the right and first
    (``truncation="only_first"``) when it pads on the left, as in Hugging Face's ``run_qa.py``: either way
    the context is truncated and split into windows, never the question.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("SQuAD preprocessing needs a fast tokenizer (offset mappings)")
    if stride >= max_length // 2:
        raise ConfigError(f"stride ({stride}) must be well below max_length ({max_length})")
    pad_right = tokenizer.padding_side == "right"
    questions = _fit_questions(tokenizer, [e.question.lstrip() for e in examples], max_length, stride)
    contexts = [e.context for e in examples]
    enc = tokenizer(
        questions if pad_right else contexts,
        contexts if pad_right else questions,
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    return enc, 1 if pad_right else 0


def _cls_index(tokenizer: Any, input_ids: Sequence[int]) -> int:
    """Position of the CLS token in one window (after the padding of a left-padding tokenizer; else 0)."""
    cls = tokenizer.cls_token_id
    return list(input_ids).index(cls) if cls is not None and cls in input_ids else 0


def prepare_train_features(
    examples: Sequence[SquadExample], tokenizer: Any, *, max_length: int = 384, stride: int = 128
) -> dict[str, list[Any]]:
    """Tokenised windows with ``start_positions``/``end_positions`` (token indices; the CLS token's when absent).

    Returns
    -------
    dict
        ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if the tokenizer makes them),
        ``start_positions``, ``end_positions``, ``example_index``; one entry per window (n_features).
    """
    enc, context_id = _tokenize(tokenizer, examples, max_length, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    starts: list[int] = []
    ends: list[int] = []
    for i, offsets in enumerate(offsets_all):
        ex = examples[sample_map[i]]
        seq_ids = enc.sequence_ids(i)
        cls = _cls_index(tokenizer, enc["input_ids"][i])
        if ex.is_impossible or not ex.answers:
            starts.append(cls)
            ends.append(cls)
            continue
        a_start = ex.answer_starts[0]
        a_end = a_start + len(ex.answers[0])
        ctx = [k for k, s in enumerate(seq_ids) if s == context_id]
        c0, c1 = ctx[0], ctx[-1]
        if not (offsets[c0][0] <= a_start and offsets[c1][1] >= a_end):
            starts.append(cls)
            ends.append(cls)
            continue
        s = c0
        while s <= c1 and offsets[s][0] <= a_start:
            s += 1
        e = c1
        while e >= c0 and offsets[e][1] >= a_end:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    out = {k: list(v) for k, v in enc.items()}
    out["start_positions"] = starts
    out["end_positions"] = ends
    out["example_index"] = list(sample_map)
    return out


def prepare_eval_features(
    examples: Sequence[SquadExample], tokenizer: Any, *, max_length: int = 384, stride: int = 128
) -> dict[str, list[Any]]:
    """Tokenised windows for prediction, keeping ``offset_mapping`` (None outside the context).

    Returns
    -------
    dict
        ``input_ids``, ``attention_mask``, ..., ``offset_mapping`` (list of (start, end) character
        offsets or None per token), ``example_id`` (the question id of each window), ``cls_index`` (the
        CLS token's position in each window: 0, or after the padding of a left-padding tokenizer).
    """
    enc, context_id = _tokenize(tokenizer, examples, max_length, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    out = {k: list(v) for k, v in enc.items()}
    out["offset_mapping"] = [
        [tuple(o) if s == context_id else None for o, s in zip(offsets, enc.sequence_ids(i))]
        for i, offsets in enumerate(offsets_all)
    ]
    out["example_id"] = [examples[j].id for j in sample_map]
    out["cls_index"] = [_cls_index(tokenizer, ids) for ids in enc["input_ids"]]
    return out


def best_spans(
    examples: Sequence[SquadExample],
    features: Mapping[str, Sequence[Any]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, tuple[str, float]]:
    """Best non-null answer of each question and its no-answer score.

    Parameters are those of :func:`postprocess_predictions`.

    Returns
    -------
    dict
        ``{question id: (text, null_odds)}``: the best valid span over all windows (``""`` when none
        is valid) and ``null_odds = null score - best span score`` (null score = CLS start + CLS end
        logit, at ``features["cls_index"]`` (0 when absent), minimum over windows; ``inf`` without a
        valid span). Higher odds favour "no answer"; the
        official v2.0 script's ``na_prob`` threshold search takes them as scores.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    n_feat = len(features["example_id"])
    if start_logits.shape != end_logits.shape or start_logits.ndim != 2 or start_logits.shape[0] != n_feat:
        raise InvalidInputError(
            f"logits must be (n_features={n_feat}, seq_len); got {start_logits.shape} and {end_logits.shape}"
        )
    by_example: dict[str, list[int]] = {}
    for i, qid in enumerate(features["example_id"]):
        by_example.setdefault(qid, []).append(i)
    cls_index = features.get("cls_index")
    if cls_index is None:  # features made before the key existed (right padding: CLS first)
        cls_index = [0] * n_feat
    out: dict[str, tuple[str, float]] = {}
    for ex in examples:
        best_text, best_score = "", -np.inf
        null_score = np.inf
        for i in by_example.get(ex.id, []):
            offsets = features["offset_mapping"][i]
            sl, el = start_logits[i], end_logits[i]
            c = int(cls_index[i])
            null_score = min(null_score, sl[c] + el[c])
            for s in np.argsort(sl)[::-1][:n_best]:
                for e in np.argsort(el)[::-1][:n_best]:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = sl[s] + el[e]
                    if score > best_score:
                        best_score = score
                        best_text = ex.context[offsets[s][0] : offsets[e][1]]
        odds = float(null_score - best_score) if np.isfinite(best_score) else float("inf")
        out[ex.id] = (best_text, odds)
    return out


def postprocess_predictions(
    examples: Sequence[SquadExample],
    features: Mapping[str, Sequence[Any]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = True,
    null_threshold: float = 0.0,
) -> dict[str, str]:
    """Text answers from start/end logits.

    Parameters
    ----------
    examples : sequence of SquadExample
    features : mapping
        Output of :func:`prepare_eval_features` (needs ``offset_mapping`` and ``example_id``).
    start_logits, end_logits : numpy.ndarray
        Shape (n_features, max_length) float.
    n_best : int
        Candidate starts and ends per window.
    max_answer_length : int
        Longest answer in tokens.
    version_2 : bool
        Allow "no answer": predict ``""`` when the null score (CLS start + CLS end logit, minimum over
        windows) exceeds the best span score by more than ``null_threshold`` (see :func:`best_spans`).

    Returns
    -------
    dict
        ``{question id: answer text}`` (``""`` = no answer).
    """
    spans = best_spans(
        examples, features, start_logits, end_logits, n_best=n_best, max_answer_length=max_answer_length
    )
    return {qid: "" if version_2 and odds > null_threshold else text for qid, (text, odds) in spans.items()}


__all__ = [
    "SquadExample",
    "best_spans",
    "load_squad",
    "parse_squad",
    "postprocess_predictions",
    "prepare_eval_features",
    "prepare_train_features",
]
