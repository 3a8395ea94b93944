"""Tiny random-weight ``transformers`` models of many architectures, for plumbing tests (no hub access).

Every model has 2 blocks of width 32 and, saved with :func:`save_tiny_model`, the bundled all-MiniLM-L6-v2
WordPiece tokenizer (vocabulary 30522, padding id 0), so one tokenizer serves encoders and decoders alike
(Qwen2 gets a small byte-level BPE one, see :data:`BPE_MODEL_TYPES`). The weights are random: these
models check module discovery, LoRA configs and the training loop, never a score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: architectures covered (``config.model_type``)
TINY_MODEL_TYPES: tuple[str, ...] = (
    "bert",
    "roberta",
    "deberta-v2",
    "mpnet",
    "electra",
    "gpt2",
    "llama",
    "qwen2",
    "mistral",
)

_VOCAB = 30522
_PAD = 0


def tiny_config(model_type: str, *, n_layers: int = 2, hidden: int = 32) -> Any:
    """A ``transformers`` config of ``model_type`` with ``n_layers`` blocks of width ``hidden``, 2 heads."""
    import transformers as T

    common: dict[str, Any] = {"vocab_size": _VOCAB, "pad_token_id": _PAD}
    if model_type == "gpt2":
        return T.GPT2Config(
            n_embd=hidden,
            n_layer=n_layers,
            n_head=2,
            n_positions=512,
            bos_token_id=101,
            eos_token_id=102,
            **common,
        )
    if model_type in ("llama", "qwen2", "mistral"):
        cls = {"llama": T.LlamaConfig, "qwen2": T.Qwen2Config, "mistral": T.MistralConfig}[model_type]
        return cls(
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            intermediate_size=2 * hidden,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=101,
            eos_token_id=102,
            **common,
        )
    cls = {
        "bert": T.BertConfig,
        "roberta": T.RobertaConfig,
        "deberta-v2": T.DebertaV2Config,
        "mpnet": T.MPNetConfig,
        "electra": T.ElectraConfig,
    }[model_type]
    extra: dict[str, Any] = {"embedding_size": hidden} if model_type == "electra" else {}
    return cls(
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        intermediate_size=2 * hidden,
        num_attention_heads=2,
        max_position_embeddings=514,
        **extra,
        **common,
    )


def tiny_model(model_type: str, *, seed: int = 0, head: str | None = None, **kwargs: Any) -> Any:
    """A random-weight model: the base model (``head=None``) or ``"seq_cls"`` / ``"qa"``."""
    import torch
    import transformers as T

    torch.manual_seed(seed)
    cfg = tiny_config(model_type, **kwargs)
    cls = {
        None: T.AutoModel,
        "seq_cls": T.AutoModelForSequenceClassification,
        "qa": T.AutoModelForQuestionAnswering,
    }[head]
    return cls.from_config(cfg)


#: the BERT classifier of the side-by-side (bit-identity) training tests: 2 blocks of width 16, 2 heads
TINY_BERT_CLASSIFIER: dict[str, Any] = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "max_position_embeddings": 16,
    "num_labels": 2,
}


def tiny_bert_classifier(*, seed: int = 0, **config: Any) -> Any:
    """A random-weight ``BertForSequenceClassification`` of :data:`TINY_BERT_CLASSIFIER` (``config``
    overrides or adds ``BertConfig`` fields), drawn after ``torch.manual_seed(seed)``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(**{**TINY_BERT_CLASSIFIER, **config})
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg)


def token_batches(
    n: int, *, vocab_size: int = 50, batch: int = 4, length: int = 8, seed: int = 1
) -> list[dict[str, Any]]:
    """``n`` batches of random token ids in ``[1, vocab_size)``, full attention masks and binary labels,
    drawn from one generator seeded with ``seed``: ``input_ids`` / ``attention_mask`` (batch, length),
    ``labels`` (batch,)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(1, vocab_size, (batch, length), generator=g),
            "attention_mask": torch.ones(batch, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch,), generator=g),
        }
        for _ in range(n)
    ]


#: architectures whose ``AutoTokenizer`` class ignores a saved WordPiece tokenizer (transformers 5 maps
#: ``qwen2`` to ``Qwen2Tokenizer``, which re-reads the vocabulary as byte-level BPE without merges and
#: tokenises character by character); they get a small byte-level BPE tokenizer instead
BPE_MODEL_TYPES = frozenset({"qwen2"})


def tiny_bpe_tokenizer(vocab_size: int = 1000) -> Any:
    """A byte-level BPE tokenizer trained on gelora's bundled sentences (padding id 0, BOS 1, EOS 2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from gelora.pipeline import default_texts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|bos|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(default_texts(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|endoftext|>"
    )


def save_tiny_model(model_type: str, directory: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Write a tiny ``model_type`` model (base weights) and the bundled tokenizer to ``directory``.

    The directory then loads with ``AutoModel*.from_pretrained`` / ``AutoTokenizer.from_pretrained`` like
    any checkpoint (task heads are initialised fresh, as for a real pretrained encoder).
    """
    from transformers import AutoTokenizer

    from gelora.models import bundled_model_path

    directory = Path(directory)
    model = tiny_model(model_type, seed=seed, **kwargs)
    model.save_pretrained(directory)
    if model_type in BPE_MODEL_TYPES:
        tiny_bpe_tokenizer().save_pretrained(directory)
    else:
        AutoTokenizer.from_pretrained(bundled_model_path(), local_files_only=True).save_pretrained(directory)
    return directory


__all__ = [
    "BPE_MODEL_TYPES",
    "TINY_BERT_CLASSIFIER",
    "TINY_MODEL_TYPES",
    "save_tiny_model",
    "tiny_bert_classifier",
    "tiny_bpe_tokenizer",
    "tiny_config",
    "tiny_model",
    "token_batches",
]
