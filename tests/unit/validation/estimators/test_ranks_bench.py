"""validation.estimators.ranks_bench measures the GeLoRA preprocessing end to end on the CPU at a tiny size."""

from __future__ import annotations

import json
import math

import pytest

from gelora.errors import ConfigError
from gelora.pipeline import default_texts
from validation.estimators.ranks_bench import (
    STAGES,
    format_table,
    main,
    measure_ranks_cost,
    parse_config_model,
)

TINY = "config:bert-L2-H64"
N_TEXTS = 50
MAX_TOKENS = 400  # the first 50 default texts have more than 400 non-special tokens


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return default_texts()[:N_TEXTS]


@pytest.fixture(scope="module")
def result(texts: list[str]) -> dict:
    return measure_ranks_cost(
        TINY, device="cpu", texts=texts, max_tokens=MAX_TOKENS, repeats=2, seed=3, finetune_steps=1
    )


def test_parse_config_model_defaults_and_explicit_sizes():
    assert parse_config_model("config:bert-L24-H1024") == {
        "num_hidden_layers": 24,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    }
    assert parse_config_model("config:bert-L2-H64") == {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 1,
        "intermediate_size": 256,
    }
    sizes = parse_config_model("config:bert-L3-H96-A4-I128")
    assert (sizes["num_attention_heads"], sizes["intermediate_size"]) == (4, 128)


@pytest.mark.parametrize(
    "name", ["config:bert-24-1024", "config:gpt2-L2-H64", "config:bert-L0-H64", "config:bert-L2-H64-A5"]
)
def test_parse_config_model_rejects_bad_names(name):
    with pytest.raises(ConfigError):
        parse_config_model(name)


def test_model_description_fields(result):
    assert result["model"] == TINY
    assert result["weights"] == "random (timing only)"
    assert result["model_type"] == "bert"
    assert (result["n_layers"], result["hidden_size"]) == (2, 64)
    # BERT-L2-H64 with the bundled 30522-token vocabulary: embeddings dominate; recount independently
    vocab, pos, types, h, inter = 30522, 512, 2, 64, 256
    embeddings = (vocab + pos + types) * h + 2 * h
    block = 4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h) + 2 * h
    assert result["n_params"] == embeddings + 2 * block
    assert (result["device"], result["dtype"], result["estimator"]) == ("cpu", "float32", "twonn")
    assert result["data"]["n_texts"] == N_TEXTS and len(result["data"]["sha256"]) == 64
    assert result["data"]["n_texts_used"] == N_TEXTS
    assert result["n_rows"] == MAX_TOKENS and result["n_candidates"] > MAX_TOKENS
    assert len(result["dimensions"]) == 3 and all(d > 0 for d in result["dimensions"])
    assert len(result["ranks"]) == 2 and all(isinstance(r, int) and r >= 1 for r in result["ranks"])
    assert result["seed"] == 3
    env = result["environment"]
    assert env["torch"] and env["device"] == "cpu" and env["device_name"]


def test_times_positive_and_stages_within_total(result):
    runs = result["runs"]
    assert [r["repeat"] for r in runs] == [0, 1] and [r["cold"] for r in runs] == [True, False]
    assert result["cold"] is runs[0] and result["warm"] is runs[1]
    for run in runs:
        for stage in STAGES:
            assert run[stage] > 0, (stage, run)
        assert sum(run[s] for s in STAGES) <= run["total_s"]
        assert run["rss_peak_mib"] > 0 and run["rss_peak_scope"] in ("repeat", "process")
        assert "cuda_peak_allocated_mib" not in run  # CPU run


def test_finetune_extrapolation(result):
    ft = result["finetune"]
    assert ft["steps"] == 1 and len(ft["step_s_all"]) == 1 and ft["step_s"] > 0
    assert ft["run_steps"] == 3 * math.ceil(N_TEXTS / 32)
    assert ft["run_estimate_s"] == pytest.approx(ft["run_steps"] * ft["step_s"])
    assert ft["preprocessing_fraction"] == pytest.approx(result["warm"]["total_s"] / ft["run_estimate_s"])
    assert 0 < ft["trainable_params"] < result["n_params"]


def test_format_table_has_cold_and_warm_rows(result):
    table = format_table([result])
    lines = table.splitlines()
    assert lines[0].startswith("| model |")
    assert sum(line.startswith(f"| {TINY} | random (timing only)") for line in lines) == 2
    assert "| cold |" in table and "| warm |" in table and "preprocessing / run" in table


def test_input_errors(texts):
    with pytest.raises(ConfigError, match="not both"):
        measure_ranks_cost(TINY, texts=texts, task="stsb")
    with pytest.raises(ConfigError, match="repeats"):
        measure_ranks_cost(TINY, texts=texts, repeats=0)
    with pytest.raises(ConfigError, match="n_texts"):
        measure_ranks_cost(TINY, texts=texts, n_texts=0, repeats=1)
    with pytest.raises(ConfigError, match="not understood"):
        measure_ranks_cost("config:bert-big", texts=texts)


def test_main_writes_json_and_prints_table(tmp_path, texts, capsys):
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    code = main(
        ["--models", TINY, "--data", str(data), "--max-tokens", str(MAX_TOKENS), "--repeats", "1"]
        + ["--n-texts", "40", "--max-length", "64"]
        + ["--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"| {TINY} |" in printed and "| cold |" in printed and "| warm |" not in printed
    saved = json.loads(out.read_text())
    (saved_result,) = saved["results"]
    assert saved_result["data"]["n_texts_used"] == 40 and saved_result["data"]["n_texts"] == N_TEXTS
    assert saved_result["n_rows"] == MAX_TOKENS and saved_result["max_length"] == 64
