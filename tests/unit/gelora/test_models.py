"""Locating and loading models: the bundled encoder, dtypes, devices, and clear load errors."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from gelora.errors import ConfigError, ModelLoadError
from gelora.models import (
    BUNDLED_MODEL_PACKAGE,
    bundled_model_path,
    load_model,
    n_blocks_of,
    parse_dtype,
    prepare_tokenizer,
    resolve_device,
    resolve_model_name,
    wrap_model,
)


@pytest.fixture(scope="module")
def bundled():
    return load_model(None, device="cpu")


def test_bundled_model_path_and_aliases():
    path = bundled_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    for alias in (None, "bundled", "default", BUNDLED_MODEL_PACKAGE):
        assert resolve_model_name(alias) == str(path)
    assert resolve_model_name("gpt2") == "gpt2"


def test_load_bundled_real_weights(bundled):
    assert bundled.name == BUNDLED_MODEL_PACKAGE
    assert bundled.model_type == "bert" and bundled.n_blocks == 6
    assert bundled.device.type == "cpu" and bundled.dtype == torch.float32
    assert not bundled.model.training
    assert bundled.tokenizer.pad_token == "[PAD]" and bundled.tokenizer.padding_side == "right"
    # real pretrained weights, not a random init: the word embeddings are the checkpoint's tensor
    from safetensors import safe_open

    with safe_open(str(bundled_model_path() / "model.safetensors"), "pt") as fh:
        key = next(k for k in fh.keys() if k.endswith("word_embeddings.weight"))
        ref = fh.get_tensor(key)
    torch.testing.assert_close(bundled.model.embeddings.word_embeddings.weight, ref)


def test_load_bundled_bf16():
    m = load_model("bundled", device="cpu", dtype="bf16")
    assert m.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["/nonexistent/model/dir", "./no-such-model", "a/b/c"])
def test_unknown_local_path(name):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(name, device="cpu")


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(f, device="cpu")


def test_directory_without_model(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load the tokenizer"):
        load_model(tmp_path, device="cpu")


def test_unknown_hub_name_offline():
    with pytest.raises(ModelLoadError, match="offline"):
        load_model("no-such-org/no-such-model-gelora", device="cpu", local_files_only=True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bf16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float32", torch.float32),
        (torch.float16, torch.float16),
    ],
)
def test_parse_dtype(spec, expected):
    assert parse_dtype(spec) == expected
    assert parse_dtype(None) is None and parse_dtype("auto") is None


@pytest.mark.parametrize("spec", ["int8", "fp8", torch.int64])
def test_parse_dtype_rejects(spec):
    with pytest.raises(ConfigError):
        parse_dtype(spec)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError):
        resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device(None) == torch.device("cpu")


def test_prepare_tokenizer_pads_with_eos_or_fails(bundled):
    tok = bundled.tokenizer.__class__.from_pretrained(str(bundled_model_path()))
    tok.pad_token = None
    with pytest.raises(ModelLoadError, match="neither a padding token nor an EOS"):
        prepare_tokenizer(tok)
    tok.eos_token = "[SEP]"
    tok.padding_side = "left"
    prepare_tokenizer(tok)
    assert tok.pad_token == "[SEP]" and tok.padding_side == "right"


def test_wrap_model_rejects_encoder_decoder_and_non_models(bundled):
    t5 = T.T5Model(T.T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2))
    with pytest.raises(ModelLoadError, match="encoder-decoder"):
        wrap_model(t5, bundled.tokenizer)
    with pytest.raises(ModelLoadError, match="not a transformers model"):
        wrap_model(torch.nn.Linear(2, 2), bundled.tokenizer)


def test_n_blocks_of():
    assert n_blocks_of(T.GPT2Config(n_layer=5)) == 5
    assert n_blocks_of(T.BertConfig(num_hidden_layers=3)) == 3

    class Empty:
        model_type = "mystery"

    with pytest.raises(ModelLoadError, match="how many blocks"):
        n_blocks_of(Empty())
