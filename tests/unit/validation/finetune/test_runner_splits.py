"""Cells of the dev-split tasks (QNLI, SQuAD v1.1/v2.0 offline) record their protocol and relative sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from validation.data.provenance import has_absolute_path
from validation.finetune.runner import cell_path, get_profile, read_cell, run_cell

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def test_qnli_cell_trains_on_the_dev_split(tmp_path: Path) -> None:
    result = run_cell("qnli", "lora", 0, profile=get_profile("test"), run_dir=tmp_path, device="cpu")
    assert read_cell(cell_path(tmp_path, "qnli", "lora", 0))["data"] == result["data"]
    train, ev = result["data"]["train"], result["data"]["eval"]["validation"]
    assert train["protocol"]["part"] == "train" and ev["protocol"]["part"] == "test"
    assert "not the official train/dev" in train["protocol"]["note"]
    assert train["subset"] == {"n": 32, "seed": 0, "of": 4372} and ev["subset"]["of"] == 1091
    assert train["source"]["file"] == ev["source"]["file"] == "glue/QNLI/dev.tsv.gz"
    assert not has_absolute_path(result["data"])
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0


@pytest.mark.slow  # the v2 cell below covers the same path in the default run
def test_squad_v1_cell_scores_the_held_out_articles(tmp_path: Path) -> None:
    profile = get_profile("test", max_length=48, train_size=12, eval_size=16)
    result = run_cell("squad_v1", "lora", 0, profile=profile, run_dir=tmp_path, device="cpu")
    train, ev = result["data"]["train"], result["data"]["eval"]
    assert train["protocol"]["name"] == "dev_article_split" and ev["protocol"]["part"] == "held_out"
    assert (train["of"], ev["of"]) == (8298, 2272)
    assert {"Normans", "Rhine"} <= set(ev["protocol"]["held_out_titles"])
    assert train["sources"][0]["file"] == "squad/v1.1/dev-v1.1.json.gz"
    assert not has_absolute_path(result["data"])
    assert set(result["metrics"]) == {"exact", "f1"}


def test_squad_v2_cell_scores_partial_dev_with_best_threshold(tmp_path: Path) -> None:
    # few, longer windows: v1.1 dev paragraphs are long (8 questions made 211 windows of 48 tokens)
    profile = get_profile("test", max_length=96, train_size=3, eval_size=6)
    result = run_cell("squad_v2", "lora", 0, profile=profile, run_dir=tmp_path, device="cpu")
    train, ev = result["data"]["train"], result["data"]["eval"]
    assert (train["of"], train["n_unanswerable"]) == (8298 + 4149, 4149)
    assert (ev["of"], ev["n_unanswerable"]) == (706, 320)
    assert ev["sources"][0]["file"] == "squad/v2.0/dev-partial.json.gz"
    assert "CONSTRUCTED" in train["protocol"]["note"]
    assert ev["n_examples"] == 6 and 0 < ev["n_unanswerable_in_subset"] < 6
    m = result["metrics"]
    assert {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh", "no_ans_exact"} <= set(m)
    # the best threshold can only improve on the fixed threshold 0
    assert m["best_f1"] >= m["f1"] - 1e-9 and m["best_exact"] >= m["exact"] - 1e-9
    assert not has_absolute_path(result["data"])
