"""Per-layer representations: layer mapping, sampling, padding, batching invariance, dtypes, errors.

Uses the real bundled encoder (all-MiniLM-L6-v2) on a handful of texts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T

from gelora.errors import ConfigError, InvalidInputError, ModelLoadError
from gelora.hidden_states import collect_hidden_states
from gelora.models import load_model, prepare_tokenizer

TEXTS = [
    "the cat sat on the mat.",
    "a considerably longer sentence, with punctuation and several clauses, to force padding in a batch.",
    "short one",
    "GeLoRA allocates LoRA ranks from intrinsic dimensions of hidden states.",
    "Another example sentence about a dog that runs in the park every morning.",
]

# float32 forward of the same text alone vs inside a padded batch differs by summation order only
ATOL = 1e-4


@pytest.fixture(scope="module")
def bert():
    return load_model(None, device="cpu")


def reference_states(bert, text):
    enc = bert.tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
    with torch.inference_mode():
        out = bert.model(**enc, output_hidden_states=True)
    return [h[0] for h in out.hidden_states], enc["input_ids"][0]


def test_layer_count_shapes_dtype(bert):
    hs = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, max_tokens=10_000, batch_size=2)
    assert hs.n_layers == bert.n_blocks + 1 == 7
    for layer in hs.layers:
        assert layer.shape == (hs.n_samples, 384) and layer.dtype == torch.float32
    assert hs.sample_index.shape == (hs.n_samples, 2)
    assert hs.params["token_sampling"] == "all" and hs.params["seed"] == 0


def test_all_tokens_match_single_text_forward_and_exclude_special_and_padding(bert):
    hs = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, max_tokens=10_000, batch_size=3)
    lengths = [len(bert.tokenizer(t)["input_ids"]) for t in TEXTS]
    # no cap: every non-special token of every text exactly once ([CLS] at 0 and [SEP] at the end excluded)
    assert hs.n_samples == hs.n_candidates == sum(n - 2 for n in lengths)
    for t, text in enumerate(TEXTS):
        rows = np.flatnonzero(hs.sample_index[:, 0] == t)
        positions = hs.sample_index[rows, 1]
        assert positions.tolist() == list(range(1, lengths[t] - 1))
        ref, _ = reference_states(bert, text)
        for j in (0, 3, 6):  # embeddings, a middle block, the last block
            torch.testing.assert_close(hs.layers[j][rows], ref[j][positions], atol=ATOL, rtol=0)


def test_hidden_state_zero_is_embedding_output(bert):
    hs = collect_hidden_states(bert.model, bert.tokenizer, TEXTS[:1], max_tokens=100)
    enc = bert.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.inference_mode():
        emb = bert.model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])[0]
        block0 = bert.model.encoder.layer[0](emb[None], attention_mask=None)
        block0 = block0[0] if isinstance(block0, tuple) else block0
    pos = hs.sample_index[:, 1]
    torch.testing.assert_close(hs.layers[0], emb[pos], atol=ATOL, rtol=0)
    torch.testing.assert_close(hs.layers[1], block0[0][pos], atol=ATOL, rtol=0)


def test_cap_is_seeded_and_independent_of_batch_size(bert):
    a = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, max_tokens=20, batch_size=1, seed=3)
    b = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, max_tokens=20, batch_size=5, seed=3)
    c = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, max_tokens=20, batch_size=5, seed=4)
    assert a.n_samples == 20 and a.n_candidates > 20
    np.testing.assert_array_equal(a.sample_index, b.sample_index)
    assert not np.array_equal(a.sample_index, c.sample_index)
    for la, lb in zip(a.layers, b.layers):
        torch.testing.assert_close(la, lb, atol=ATOL, rtol=0)


def test_include_special_tokens(bert):
    hs = collect_hidden_states(
        bert.model, bert.tokenizer, TEXTS, max_tokens=10_000, include_special_tokens=True
    )
    assert hs.n_samples == sum(len(bert.tokenizer(t)["input_ids"]) for t in TEXTS)
    assert (hs.sample_index[:, 1] == 0).sum() == len(TEXTS)


def test_first_last_mean(bert):
    first = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, token_sampling="first", batch_size=2)
    last = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, token_sampling="last", batch_size=2)
    mean = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, token_sampling="mean", batch_size=2)
    for hs in (first, last, mean):
        assert hs.n_samples == len(TEXTS)
    for t, text in enumerate(TEXTS):
        ref, ids = reference_states(bert, text)
        assert last.sample_index[t, 1] == len(ids) - 1
        torch.testing.assert_close(first.layers[4][t], ref[4][0], atol=ATOL, rtol=0)
        torch.testing.assert_close(last.layers[4][t], ref[4][-1], atol=ATOL, rtol=0)
        # mean over the non-special tokens only (padding and [CLS]/[SEP] excluded)
        torch.testing.assert_close(mean.layers[4][t], ref[4][1:-1].mean(dim=0), atol=ATOL, rtol=0)
    # position 0 is [CLS] in every text: the embedding output there is one and the same vector
    assert torch.unique(first.layers[0], dim=0).shape[0] == 1


def test_per_text_cap(bert):
    hs = collect_hidden_states(bert.model, bert.tokenizer, TEXTS, token_sampling="mean", max_tokens=3, seed=1)
    assert hs.n_samples == 3 and hs.n_candidates == len(TEXTS)
    assert np.all(np.diff(hs.sample_index[:, 0]) > 0)


def test_truncation_is_counted(bert):
    long_text = " ".join(["word"] * 50)
    hs = collect_hidden_states(
        bert.model, bert.tokenizer, [long_text, "short"], max_length=16, max_tokens=1000
    )
    assert hs.n_truncated == 1
    assert hs.sample_index[:, 1].max() <= 14  # positions 1..14; 0 is [CLS], 15 is [SEP]


def test_bf16_model_gives_float32_rows():
    cfg = T.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48
    )
    torch.manual_seed(0)
    model = T.AutoModel.from_config(cfg).to(torch.bfloat16).eval()
    from gelora.models import bundled_model_path

    tok = prepare_tokenizer(T.AutoTokenizer.from_pretrained(str(bundled_model_path())))
    hs = collect_hidden_states(model, tok, TEXTS, max_tokens=50)
    assert hs.n_layers == 3 and all(layer.dtype == torch.float32 for layer in hs.layers)
    assert all(bool(torch.isfinite(layer).all()) for layer in hs.layers)


class _NoHiddenStates(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = T.BertConfig(num_hidden_layers=1)
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        class Out:
            hidden_states = None

        return Out()


class _WrongCount(_NoHiddenStates):
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        h = torch.zeros(*input_ids.shape, 4)

        class Out:
            hidden_states = (h,)  # 1 instead of num_hidden_layers + 1 = 2

        return Out()


def test_model_without_hidden_states(bert):
    with pytest.raises(ModelLoadError, match="no hidden states"):
        collect_hidden_states(_NoHiddenStates(), bert.tokenizer, TEXTS)
    with pytest.raises(ModelLoadError, match="returned 1 hidden states; expected 2"):
        collect_hidden_states(_WrongCount(), bert.tokenizer, TEXTS)


@pytest.mark.parametrize(
    ("texts", "kwargs", "error", "match"),
    [
        ([], {}, InvalidInputError, "empty"),
        ("a single string", {}, InvalidInputError, "not a single string"),
        (["ok", "  "], {}, InvalidInputError, "empty or whitespace"),
        (["ok", 3], {}, InvalidInputError, "must be strings"),
        (["ok"], {"token_sampling": "cls"}, ConfigError, "token_sampling"),
        (["ok"], {"max_tokens": 0}, ConfigError, "max_tokens"),
        (["ok"], {"batch_size": -1}, ConfigError, "batch_size"),
        (["[CLS]"], {"max_length": 2}, InvalidInputError, "no candidate token"),
    ],
)
def test_bad_input(bert, texts, kwargs, error, match):
    with pytest.raises(error, match=match):
        collect_hidden_states(bert.model, bert.tokenizer, texts, **kwargs)


def _tiny(model_type: str):
    common = dict(vocab_size=30522, num_attention_heads=2)
    if model_type == "gpt2":
        cfg = T.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=30522, bos_token_id=0, eos_token_id=0)
    elif model_type == "llama":
        cfg = T.LlamaConfig(
            hidden_size=16, num_hidden_layers=2, intermediate_size=24, num_key_value_heads=1, **common
        )
    else:
        cfg = T.DebertaV2Config(hidden_size=16, num_hidden_layers=2, intermediate_size=24, **common)
    torch.manual_seed(0)
    return T.AutoModel.from_config(cfg).eval()


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "deberta-v2"])
def test_decoders_and_deberta_padding_does_not_leak(bert, model_type):
    """Tiny random models (naming/plumbing only): right padding never changes the rows of real tokens.

    For causal decoders a real token attends only to earlier real tokens, so its state inside a padded
    batch equals the state of the text run alone; Llama takes no token_type_ids (they are dropped).
    """
    model = _tiny(model_type)
    hs = collect_hidden_states(model, bert.tokenizer, TEXTS, max_tokens=10_000, batch_size=5)
    assert hs.n_layers == 3
    for t, text in enumerate(TEXTS[:3]):
        enc = bert.tokenizer(text, return_tensors="pt")
        if model_type == "llama":
            enc.pop("token_type_ids")
        with torch.inference_mode():
            ref = model(**enc, output_hidden_states=True).hidden_states
        rows = np.flatnonzero(hs.sample_index[:, 0] == t)
        pos = hs.sample_index[rows, 1]
        for j in range(3):
            torch.testing.assert_close(hs.layers[j][rows], ref[j][0][pos], atol=ATOL, rtol=1e-4)
