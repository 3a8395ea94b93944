"""Fixed splits of the dev-only data (QNLI by question, SQuAD by article), constructed negatives, provenance."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from gelora.errors import ConfigError, InvalidInputError
from validation.data import default_data_dir
from validation.data.glue import load_glue
from validation.data.provenance import file_record, has_absolute_path, sha256_file
from validation.data.splits import (
    construct_unanswerable,
    glue_files,
    glue_task_splits,
    split_articles,
    split_glue_dev,
    squad_files,
    squad_task_splits,
)
from validation.data.squad import SquadExample, load_squad
from validation.finetune.metrics import normalize_answer

# sha256 of the .gz files, from ../shared/data/MANIFEST.md
QNLI_DEV_SHA = "97f44ea495355ebe35ac46147e12e2620869a71a8470615b0c5f6c3c213f7133"
SQUAD_V11_DEV_SHA = "5ef5752d50566ab538501116de1508326eefb6bf70026def7915309f30822727"
SQUAD_V2_PARTIAL_SHA = "37267e82940dccd08c3e09a041d8377a125f0cd4262e826fb7a6a2b77f17b6ac"


@pytest.fixture(scope="module")
def v11() -> list[SquadExample]:
    return load_squad(version="1.1", data_dir=default_data_dir())


@pytest.fixture(scope="module")
def squad2():  # noqa: ANN201
    return squad_task_splits("2.0")


# ------------------------------------------------------------------------------------------ QNLI
def test_qnli_dev_split_sizes_disjoint_and_deterministic() -> None:
    train, evals = glue_task_splits("qnli")
    (test,) = evals.values()
    assert list(evals) == ["validation"] and train.split == "train"
    # measured: 5463 dev rows, 4100 distinct questions -> 3280 / 820 questions, 4372 / 1091 rows
    assert (len(train), len(test)) == (4372, 1091)
    assert train.protocol["n_train_groups"] == 3280 and test.protocol["n_test_groups"] == 820
    assert not set(train.text_a) & set(test.text_a)  # no question on both sides
    assert sorted(np.concatenate([train.idx, test.idx]).tolist()) == list(range(5463))
    again, _ = glue_task_splits("qnli")
    assert again.idx.tolist() == train.idx.tolist()
    other, _ = split_glue_dev(load_glue("qnli", "dev", source="local"), seed=1)
    assert other.idx.tolist() != train.idx.tolist()
    for part, name in ((train, "train"), (test, "test")):
        d = part.describe()
        assert d["protocol"]["part"] == name and d["protocol"]["name"] == "dev_split"
        assert "not the official train/dev" in d["protocol"]["note"] and "80/20" in d["protocol"]["note"]
        assert d["source"] == {"file": "glue/QNLI/dev.tsv.gz", "sha256": QNLI_DEV_SHA}
        assert not has_absolute_path(d)


def _write_qnli(folder: Path, name: str, rows: list[tuple[str, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["index\tquestion\tsentence\tlabel"] + [
        f"{i}\t{q}\t{s}\t{lab}" for i, (q, s, lab) in enumerate(rows)
    ]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_full_local_qnli_copy_loads_the_standard_way(tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "QNLI"
    _write_qnli(folder, "train.tsv", [(f"q{i}?", f"s{i}.", "entailment") for i in range(7)])
    _write_qnli(folder, "dev.tsv", [(f"d{i}?", f"t{i}.", "not_entailment") for i in range(3)])
    train, evals = glue_task_splits("qnli", tmp_path)
    assert len(train) == 7 and len(evals["validation"]) == 3
    d = train.describe()
    assert d["protocol"]["name"] == "official" and d["source"]["file"] == "glue/QNLI/train.tsv"
    assert d["source"]["sha256"] == sha256_file(folder / "train.tsv")
    # other tasks are never split, and a task with a train file keeps it
    rte_train, rte_eval = glue_task_splits("rte")
    assert len(rte_train) == 2490 and rte_train.protocol["name"] == "official"
    assert rte_train.describe()["source"]["file"] == "glue/RTE/train.tsv.gz"


def test_split_rejects_bad_fractions() -> None:
    dev = load_glue("qnli", "dev", source="local")
    with pytest.raises(ConfigError, match="train_fraction"):
        split_glue_dev(dev, train_fraction=1.0)
    with pytest.raises(InvalidInputError, match="too few"):
        split_glue_dev(dev.take(1), train_fraction=0.8)


# ----------------------------------------------------------------------------------------- SQuAD
def test_article_split_sizes_disjoint_and_deterministic(v11: list[SquadExample]) -> None:
    split = split_articles(v11)
    assert split == split_articles(list(reversed(v11)))  # depends on the set of titles only
    assert {"Normans", "Rhine"} <= set(split.held_out_titles)
    assert not set(split.train_titles) & set(split.held_out_titles)
    assert set(split.train_titles) | set(split.held_out_titles) == {e.title for e in v11}
    # measured: 48 articles -> 38 train (8298 questions), 10 held out (2272 questions)
    assert (len(split.train_titles), len(split.held_out_titles)) == (38, 10)
    assert split_articles(v11, seed=1).held_out_titles != split.held_out_titles
    s1 = squad_task_splits("1.1")
    assert (len(s1.train), len(s1.eval)) == (8298, 2272)
    assert {e.title for e in s1.train} == set(split.train_titles)
    assert {e.title for e in s1.eval} == set(split.held_out_titles)
    assert not {e.context for e in s1.train} & {e.context for e in s1.eval}
    for info, part in ((s1.train_info, "train"), (s1.eval_info, "held_out")):
        assert info["sources"] == [{"file": "squad/v1.1/dev-v1.1.json.gz", "sha256": SQUAD_V11_DEV_SHA}]
        assert info["protocol"]["part"] == part and "not the official" in info["protocol"]["note"]
        assert not has_absolute_path(info)


def test_squad_v2_eval_is_the_real_partial_dev_and_train_excludes_it(squad2) -> None:  # noqa: ANN001
    ev, tr = squad2.eval, squad2.train
    assert {e.title for e in ev} == {"Normans", "Rhine"}
    assert (len(ev), sum(e.is_impossible for e in ev)) == (706, 320)  # the 320 unanswerable
    assert not {e.title for e in tr} & {"Normans", "Rhine"}
    assert not {e.context for e in tr} & {e.context for e in ev}
    negatives = [e for e in tr if e.is_impossible]
    # measured: 8298 answerable training questions + round(0.5 * 8298) = 4149 constructed
    assert (len(tr), len(negatives)) == (8298 + 4149, 4149)
    assert squad2.train_info["protocol"]["n_constructed_unanswerable"] == 4149
    assert "CONSTRUCTED" in squad2.train_info["protocol"]["note"]
    assert squad2.eval_info["sources"] == [
        {"file": "squad/v2.0/dev-partial.json.gz", "sha256": SQUAD_V2_PARTIAL_SHA}
    ]
    assert squad2.eval_info["n_unanswerable"] == 320 and not has_absolute_path(squad2.eval_info)


def test_constructed_negatives_never_contain_the_answer(squad2) -> None:  # noqa: ANN001
    by_id = {e.id: e for e in squad2.train if not e.is_impossible}
    negatives = [e for e in squad2.train if e.is_impossible]
    assert len({e.id for e in negatives}) == len(negatives)
    for neg in negatives:
        src = by_id[neg.id.removesuffix("-constructed")]
        assert neg.title == src.title and neg.question == src.question and neg.context != src.context
        assert not neg.answers and not neg.answer_starts
        for a in src.answers:
            assert a.lower() not in neg.context.lower()
            assert f" {normalize_answer(a)} " not in f" {normalize_answer(neg.context)} "
    # the paragraph really is one of the article's own
    contexts = {(e.title, e.context) for e in by_id.values()}
    assert all((n.title, n.context) in contexts for n in negatives)


def _toy(n_per_para: int = 2) -> list[SquadExample]:
    paras = ["The cat sat on the mat.", "A dog ran in the park.", "Birds sing at dawn in spring."]
    answers = ["mat", "park", "dawn"]
    return [
        SquadExample(f"p{p}q{k}", "T", c, f"question {k} about {p}?", (a,), (c.index(a),))
        for p, (c, a) in enumerate(zip(paras, answers))
        for k in range(n_per_para)
    ]


def test_constructed_negatives_ratio_seed_and_answer_check() -> None:
    ex = _toy()
    assert len(construct_unanswerable(ex, ratio=0.5)) == 3
    assert len(construct_unanswerable(ex, ratio=1.0)) == 6
    assert construct_unanswerable(ex, seed=3) == construct_unanswerable(ex, seed=3)
    assert construct_unanswerable(ex, ratio=0.0) == []
    # the answer "Mat" occurs (other case) in every other paragraph: no usable paragraph for it
    clash = [
        SquadExample("a", "T", "Mat is here.", "q?", ("mat",), (0,)),
        SquadExample("b", "T", "Also a MAT there.", "q2?", ("MAT",), (7,)),
    ]
    with pytest.raises(InvalidInputError, match="0 of 1"):
        construct_unanswerable(clash, ratio=0.5)
    with pytest.raises(ConfigError, match="ratio"):
        construct_unanswerable(ex, ratio=1.5)


def test_official_squad_train_file_is_used_when_present(tmp_path: Path) -> None:
    with gzip.open(
        default_data_dir() / "squad" / "v2.0" / "dev-partial.json.gz", "rt", encoding="utf-8"
    ) as fh:
        doc = json.load(fh)
    root = tmp_path / "squad" / "v2.0"
    root.mkdir(parents=True)
    for name, title in (("train-v2.0.json", "Rhine"), ("dev-v2.0.json", "Normans")):
        part = {"version": "v2.0", "data": [a for a in doc["data"] if a["title"] == title]}
        (root / name).write_text(json.dumps(part), encoding="utf-8")
    s = squad_task_splits("2.0", tmp_path)
    assert s.train_info["protocol"]["name"] == "official"
    assert s.train_info["sources"][0]["file"] == "squad/v2.0/train-v2.0.json"
    assert s.eval_info["sources"][0]["file"] == "squad/v2.0/dev-v2.0.json"
    assert {e.title for e in s.train} == {"Rhine"} and {e.title for e in s.eval} == {"Normans"}
    with pytest.raises(ConfigError, match="no SQuAD v1.1 dev file"):
        squad_task_splits("1.1", tmp_path)


# ------------------------------------------------------------------------------------ files (preflight)
def test_the_files_a_task_reads_are_resolved_as_the_loaders_do(tmp_path: Path) -> None:
    root = default_data_dir()
    assert glue_files("sts-b", root) == {
        "train": root / "glue/STS-B/train.tsv.gz",
        "validation": root / "glue/STS-B/dev.tsv.gz",
    }
    assert glue_files("qnli", root) == {"validation": root / "glue/QNLI/dev.tsv.gz"}  # split, no train file
    assert squad_files("1.1", root) == {"v1.1 dev": root / "squad/v1.1/dev-v1.1.json.gz"}
    assert squad_files("v2.0", root) == {
        "v1.1 dev": root / "squad/v1.1/dev-v1.1.json.gz",
        "v2.0 dev": root / "squad/v2.0/dev-partial.json.gz",
    }
    # a folder with the v2.0 file only: the preflight and the loader give the same message
    (tmp_path / "squad" / "v2.0").mkdir(parents=True)
    (tmp_path / "squad" / "v2.0" / "dev-partial.json.gz").write_bytes(
        (root / "squad/v2.0/dev-partial.json.gz").read_bytes()
    )
    for version in ("1.1", "2.0"):
        with pytest.raises(ConfigError) as preflight:
            squad_files(version, tmp_path)
        with pytest.raises(ConfigError) as loader:
            squad_task_splits(version, tmp_path)
        assert str(preflight.value) == str(loader.value)
        assert str(preflight.value).startswith("no SQuAD v1.1 dev file under the data root")
    with pytest.raises(ConfigError) as preflight:
        glue_files("mrpc", tmp_path)
    with pytest.raises(ConfigError) as loader:
        load_glue("mrpc", "train", data_dir=tmp_path, source="local")
    assert str(preflight.value) == str(loader.value)
    assert str(preflight.value).startswith("GLUE mrpc/train: no file glue/MRPC/{train}.tsv[.gz] under ")


# ------------------------------------------------------------------------------------ provenance
def test_file_record_is_relative_with_sha256(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "x.tsv"
    f.parent.mkdir()
    f.write_bytes(b"abc")
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert file_record(f, tmp_path) == {"file": "sub/x.tsv", "sha256": abc}
    outside = file_record(f, tmp_path / "elsewhere")
    assert outside == {"file": "x.tsv", "sha256": abc, "outside_data_root": True}
    assert has_absolute_path({"a": [str(f)], "b": "relative/x"}) == [str(f)]
