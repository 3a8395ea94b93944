"""GLUE loaders: the real files of ../shared/data and small files in both official layouts for all tasks."""

from __future__ import annotations

import gzip
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gelora.errors import ConfigError, InvalidInputError
from validation.data import DATA_DIR_ENV, default_data_dir
from validation.data.glue import GLUE_TASKS, find_glue_file, load_glue, read_glue_file

# ---------------------------------------------------------------------------------- real files (MANIFEST)
# counts from ../shared/data/MANIFEST.md
REAL = {
    ("stsb", "train"): 5749,
    ("stsb", "validation"): 1500,
    ("mrpc", "train"): 3668,
    ("mrpc", "validation"): 408,
    ("sst2", "train"): 67349,
    ("sst2", "validation"): 872,
    ("rte", "train"): 2490,
    ("rte", "validation"): 277,
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return default_data_dir()


@pytest.mark.parametrize(("task", "split"), [k for k in REAL if k[1] == "validation"] + [("rte", "train")])
def test_real_files_row_counts(data_dir: Path, task: str, split: str) -> None:
    ds = load_glue(task, split, data_dir=data_dir, source="local")
    assert len(ds) == REAL[(task, split)]
    assert len(ds.labels) == len(ds.idx) == len(ds)
    assert (ds.text_b is None) == (task == "sst2")


def test_real_label_balance_matches_manifest(data_dir: Path) -> None:
    mrpc = load_glue("mrpc", "dev", data_dir=data_dir)
    assert int(mrpc.labels.sum()) == 279 and mrpc.layout == "glue"
    assert not mrpc.text_a[0].startswith("\ufeff")  # BOM stripped, header recognised
    sst = load_glue("sst2", "dev", data_dir=data_dir)
    assert int(sst.labels.sum()) == 444
    rte = load_glue("rte", "dev", data_dir=data_dir)
    assert rte.layout == "hf" and int((rte.labels == 0).sum()) == 146  # 0 = entailment
    assert rte.labels.dtype == np.int64
    stsb = load_glue("stsb", "dev", data_dir=data_dir)
    assert stsb.labels.dtype == np.float32 and 0.0 <= stsb.labels.min() and stsb.labels.max() <= 5.0
    assert stsb.text_a[0] == "A man with a hard hat is dancing."


def test_take_is_seeded_without_replacement(data_dir: Path) -> None:
    ds = load_glue("rte", "train", data_dir=data_dir)
    a, b, c = ds.take(50, seed=3), ds.take(50, seed=3), ds.take(50, seed=4)
    assert a.text_a == b.text_a and a.text_a != c.text_a
    assert len(set(a.idx.tolist())) == 50 and np.all(np.diff(a.idx) > 0)
    assert a.subset == {"n": 50, "seed": 3, "of": 2490}
    assert ds.take(None) is ds and ds.take(10**6) is ds


# ------------------------------------------------------------------------- both layouts for all 8 tasks
# (text_a, text_b, label name or score) rows; written in the GLUE download's layout and in the export's
ROWS = {
    "cola": [
        ("The sailors rode the breeze clear of the rocks.", None, 1),
        ("The more books I ask.", None, 0),
    ],
    "sst2": [("a charming journey . ", None, 1), ("a dull , lifeless film ", None, 0)],
    "mrpc": [('He said "no".', "He refused.", 1), ("Stocks rose.", "It rained.", 0)],
    "qqp": [("How do I learn Python?", "What is the best way to learn Python?", 1), ("Why?", "Who?", 0)],
    "stsb": [("A plane is taking off.", "An air plane is taking off.", 5.0), ("A man.", "A dog.", 0.4)],
    "mnli": [("The cat sat.", "A cat is sitting.", 0), ("He ran.", "He slept.", 2), ("Hi.", "Hello.", 1)],
    "qnli": [("Where is Paris?", "Paris is in France.", 0), ("Who?", "Nobody knows when.", 1)],
    "rte": [("No WMD found in Iraq.", "WMD found in Iraq.", 1), ("A is B.", "B is A.", 0)],
}


def _glue_layout(task: str, rows: list) -> str:
    spec = GLUE_TASKS[task]
    names = spec.label_names
    lines = []
    for i, (a, b, y) in enumerate(rows):
        if task == "cola":
            lines.append(f"gj04\t{y}\t\t{a}")
        elif task == "sst2":
            lines.append(f"{a}\t{y}")
        elif task == "mrpc":
            lines.append(f"{y}\t{100 + i}\t{200 + i}\t{a}\t{b}")
        elif task == "qqp":
            lines.append(f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{y}")
        elif task == "stsb":
            lines.append(f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{y:.3f}")
        elif task == "mnli":
            lines.append(
                f"{i}\t1\t1e\tfiction\t( x )\t( y )\t(ROOT x)\t(ROOT y)\t{a}\t{b}\t{names[y]}\t{names[y]}"
            )
        else:  # qnli, rte: string labels in the GLUE download
            lines.append(f"{i}\t{a}\t{b}\t{names[y]}")
    header = {
        "cola": None,
        "sst2": "sentence\tlabel",
        "mrpc": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "qqp": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "stsb": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        "mnli": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
        "qnli": "index\tquestion\tsentence\tlabel",
        "rte": "index\tsentence1\tsentence2\tlabel",
    }[task]
    return "\n".join(([header] if header else []) + lines) + "\n"


def _hf_layout(task: str, rows: list) -> str:
    a_col, b_col, lab = GLUE_TASKS[task].hf_columns
    cols = [a_col] + ([b_col] if b_col else []) + [lab, "idx"]
    lines = ["\t".join(cols)]
    for i, (a, b, y) in enumerate(rows):
        vals = [a] + ([b] if b_col else []) + [str(y), str(i)]
        lines.append("\t".join(vals))
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_both_layouts_give_the_same_examples(tmp_path: Path, task: str) -> None:
    spec = GLUE_TASKS[task]
    rows = ROWS[task]
    split = "dev_matched" if task == "mnli" else "dev"
    glue_file = _write(
        tmp_path / "g" / "glue" / spec.dir_name / f"{split}.tsv", _glue_layout(task, rows), gz=True
    )
    hf_split = "validation_matched" if task == "mnli" else "validation"
    _write(tmp_path / "h" / "glue" / spec.dir_name / f"{hf_split}.tsv", _hf_layout(task, rows), gz=False)
    g = load_glue(task, split, data_dir=tmp_path / "g", source="local")
    h = load_glue(task, split, data_dir=tmp_path / "h", source="local")
    assert find_glue_file(task, split, tmp_path / "g") == glue_file
    assert (g.layout, h.layout) == ("glue", "hf")
    assert g.text_a == h.text_a == [r[0] for r in rows]
    assert g.text_b == h.text_b
    if spec.is_pair:
        assert g.text_b == [r[1] for r in rows]
    np.testing.assert_allclose(g.labels, [r[2] for r in rows], rtol=1e-6)
    np.testing.assert_array_equal(g.labels, h.labels)
    assert g.split == h.split == ("validation_matched" if task == "mnli" else "validation")


def test_mnli_needs_a_named_validation_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="validation_matched"):
        load_glue("mnli", "validation", data_dir=tmp_path, source="local")


def test_unknown_layout_names_expected_columns(tmp_path: Path) -> None:
    bad = _write(tmp_path / "glue" / "RTE" / "dev.tsv", "premise\thypo\ty\n a\tb\t0\n", gz=False)
    with pytest.raises(InvalidInputError) as err:
        read_glue_file(bad, "rte")
    msg = str(err.value)
    assert "sentence1, sentence2, label" in msg and "idx" in msg and "GLUE download" in msg


def test_bad_rows_and_labels(tmp_path: Path) -> None:
    text = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ttruncated row\n"
    path = _write(tmp_path / "rte.tsv", text, gz=False)
    with pytest.raises(InvalidInputError, match=r"rte.tsv:3: 2 fields"):
        read_glue_file(path, "rte")
    ok = read_glue_file(path, "rte", bad_rows="skip")
    assert len(ok) == 1 and ok.n_skipped == 1
    lab = _write(tmp_path / "rte2.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", gz=False)
    with pytest.raises(InvalidInputError, match="neither an integer nor one of"):
        read_glue_file(lab, "rte")
    test_split = _write(tmp_path / "rte3.tsv", "sentence1\tsentence2\tlabel\tidx\na\tb\t-1\t0\n", gz=False)
    with pytest.raises(InvalidInputError, match="outside 0..1"):
        read_glue_file(test_split, "rte")


def test_unknown_task_and_split() -> None:
    with pytest.raises(ConfigError, match="unknown GLUE task"):
        load_glue("wnli", "train")
    with pytest.raises(ConfigError, match="unknown split"):
        load_glue("rte", "test")


def test_default_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=DATA_DIR_ENV):
        default_data_dir()


def test_missing_local_file_and_no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"no file glue/CoLA/\{dev\|validation\}"):
        load_glue("cola", "dev", data_dir=tmp_path, source="local")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ConfigError, match="datasets"):
        load_glue("cola", "dev", data_dir=tmp_path, source="auto")


def test_hub_path_converts_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name: str, config: str, split: str) -> dict:
        calls.append((name, config, split))
        return {"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0], "idx": [5, 6]}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ds = load_glue("mnli", "dev_mismatched", source="hub")
    assert calls == [("glue", "mnli", "validation_mismatched")]
    assert ds.layout == "hub" and ds.text_b == ["h1", "h2"] and ds.labels.tolist() == [2, 0]
    assert ds.idx.tolist() == [5, 6]

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(ConfigError, match="offline or unreachable"):
        load_glue("rte", "train", source="hub")
