"""Per-layer representations from any ``transformers`` model, with bounded memory.

A model with ``B`` blocks returns ``B + 1`` hidden states under ``output_hidden_states=True``:
``hidden_states[0]`` is the embedding output (the input of block 0) and ``hidden_states[i + 1]`` is the
output of block ``i``. :func:`collect_hidden_states` runs the model batch by batch under
``torch.inference_mode`` and keeps only the sampled rows of every layer, so memory is
``(B + 1) * max_tokens * hidden_size`` floats whatever the number of texts.

Sampling (all choices are parameters, the defaults are stated here and recorded in the result):

``token_sampling="all"`` (default)
    Every non-padding token of every text is a candidate (special tokens such as ``[CLS]``/``[SEP]``/BOS
    are excluded unless ``include_special_tokens=True``); ``max_tokens`` of them (default 4096) are drawn
    uniformly without replacement with ``numpy.random.default_rng(seed)`` *before* the forward pass
    (texts are tokenized once first), so the sample does not depend on ``batch_size``.
``"first"``
    Position 0 of every text (``[CLS]`` for BERT-style encoders).
``"last"``
    The last non-padding token of every text (the usual summary token of decoders).
``"mean"``
    The mean of each text's non-padding (and, unless ``include_special_tokens``, non-special) tokens.

For the per-text modes ``max_tokens`` caps the number of texts (a seeded subset, kept in input order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError, ModelLoadError

TOKEN_SAMPLING: tuple[str, ...] = ("all", "first", "last", "mean")
DEFAULT_MAX_TOKENS = 4096


@dataclass
class HiddenStates:
    """Sampled representations of every layer.

    Attributes
    ----------
    layers : list of torch.Tensor
        ``n_blocks + 1`` tensors of shape ``(n_samples, hidden_size)``, float32, on ``storage_device``.
        ``layers[0]`` is the embedding output, ``layers[i + 1]`` the output of block ``i``.
    sample_index : numpy.ndarray
        ``(n_samples, 2)`` int64: ``(text index, token position)`` of every row; position ``-1`` for
        ``token_sampling="mean"``.
    n_texts : int
        Number of texts given.
    n_candidates : int
        Rows available before the ``max_tokens`` cap (tokens for ``"all"``, texts otherwise).
    params : dict
        The sampling parameters (``token_sampling``, ``max_tokens``, ``include_special_tokens``,
        ``max_length``, ``batch_size``, ``seed``), JSON-serialisable.
    n_truncated : int
        Texts longer than ``max_length`` tokens (they were truncated).
    """

    layers: list[Any]
    sample_index: np.ndarray
    n_texts: int
    n_candidates: int
    params: dict[str, Any] = field(default_factory=dict)
    n_truncated: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.sample_index.shape[0])

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise InvalidInputError("texts is empty; at least one non-empty text is needed")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InvalidInputError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise InvalidInputError(f"{len(empty)} text(s) are empty or whitespace (first at index {empty[0]})")
    return texts


def _model_device(model: Any) -> Any:
    return next(model.parameters()).device


def collect_hidden_states(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    token_sampling: str = "all",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    include_special_tokens: bool = False,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
    storage_device: Any = None,
    progress: bool = False,
) -> HiddenStates:
    """Run ``model`` on ``texts`` and keep a seeded sample of every layer's representation.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Any encoder or decoder that accepts ``output_hidden_states=True``; used on its own device and dtype.
    tokenizer : transformers.PreTrainedTokenizerBase
        Must have a padding token (see :func:`gelora.models.prepare_tokenizer`); right padding is used.
    texts : sequence of str
        Input texts, non-empty.
    token_sampling : {"all", "first", "last", "mean"}
        Which rows represent the data (module docstring).
    max_tokens : int
        Cap on the number of rows per layer (default 4096).
    include_special_tokens : bool
        Keep special tokens among the candidates of ``"all"`` and in the ``"mean"`` pool (default False).
    batch_size : int
        Texts per forward pass (texts are length-sorted into batches to limit padding).
    max_length : int
        Truncation length in tokens.
    seed : int
        Seed of the row sample.
    storage_device : str or torch.device or None
        Where the sampled rows are kept (default: the model's device, so estimation can run there).
    progress : bool
        Show a tqdm progress bar over batches.

    Returns
    -------
    HiddenStates

    Raises
    ------
    InvalidInputError
        Empty texts, or no candidate token (e.g. every text consists of special tokens only).
    ConfigError
        Unknown ``token_sampling`` or non-positive sizes.
    ModelLoadError
        The model returns no hidden states, or not ``n_blocks + 1`` of them.
    """
    import torch

    if token_sampling not in TOKEN_SAMPLING:
        raise ConfigError(f"token_sampling must be one of {TOKEN_SAMPLING}, got {token_sampling!r}")
    for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size), ("max_length", max_length)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    texts = _check_texts(texts)
    rng = np.random.default_rng(seed)

    enc = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_length=False,
    )
    ids: list[list[int]] = enc["input_ids"]
    special: list[list[int]] = enc["special_tokens_mask"]
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    if np.any(lengths == 0):
        raise InvalidInputError("the tokenizer produced no token for some text")
    keep = [
        np.asarray(s, dtype=bool) == 0 if not include_special_tokens else np.ones(len(s), bool)
        for s in special
    ]

    # --- pre-draw the rows: (text, position) pairs, sorted by text then position
    if token_sampling == "all":
        cand_text = np.concatenate([np.full(int(k.sum()), i, dtype=np.int64) for i, k in enumerate(keep)])
        cand_pos = np.concatenate([np.flatnonzero(k).astype(np.int64) for k in keep])
        n_candidates = int(cand_text.size)
        if n_candidates == 0:
            raise InvalidInputError(
                "no candidate token: every token is a special token (set include_special_tokens=True "
                "or give longer texts)"
            )
        chosen = np.arange(n_candidates)
        if n_candidates > max_tokens:
            chosen = np.sort(rng.choice(n_candidates, size=max_tokens, replace=False))
        sample_index = np.stack([cand_text[chosen], cand_pos[chosen]], axis=1)
    else:
        n_candidates = len(texts)
        chosen_texts = np.arange(len(texts))
        if len(texts) > max_tokens:
            chosen_texts = np.sort(rng.choice(len(texts), size=max_tokens, replace=False))
        if token_sampling == "first":
            pos = np.zeros(chosen_texts.size, dtype=np.int64)
        elif token_sampling == "last":
            pos = lengths[chosen_texts] - 1
        else:
            if any(not keep[i].any() for i in chosen_texts):
                raise InvalidInputError(
                    "a text has no non-special token to mean-pool (set include_special_tokens=True)"
                )
            pos = np.full(chosen_texts.size, -1, dtype=np.int64)
        sample_index = np.stack([chosen_texts, pos], axis=1)

    n_rows = int(sample_index.shape[0])
    texts_needed = np.unique(sample_index[:, 0])
    # rows of each needed text, in sample order
    row_start = np.searchsorted(sample_index[:, 0], texts_needed, side="left")
    row_end = np.searchsorted(sample_index[:, 0], texts_needed, side="right")
    rows_of = {int(t): (int(a), int(b)) for t, a, b in zip(texts_needed, row_start, row_end)}
    # length-sorted batches (stable, so deterministic)
    order = texts_needed[np.argsort(lengths[texts_needed], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]

    device = _model_device(model)
    store = torch.device(storage_device) if storage_device is not None else device
    n_blocks_expected = None
    layers: list[Any] | None = None
    model_inputs = _forward_inputs(
        model, [k for k in enc.keys() if k not in ("special_tokens_mask", "length")]
    )

    iterator: Any = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc="forward", unit="batch", disable=None)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.inference_mode():
            for batch in iterator:
                features = [{k: enc[k][int(t)] for k in model_inputs} for t in batch]
                padded = tokenizer.pad(features, padding=True, return_tensors="pt")
                inputs = {k: v.to(device) for k, v in padded.items()}
                out = model(**inputs, output_hidden_states=True, return_dict=True)
                hs = getattr(out, "hidden_states", None)
                if hs is None:
                    raise ModelLoadError(
                        f"model {type(model).__name__} returned no hidden states "
                        "(it must support output_hidden_states=True)"
                    )
                if layers is None:
                    n_blocks_expected = _declared_blocks(model)
                    if n_blocks_expected is not None and len(hs) != n_blocks_expected + 1:
                        raise ModelLoadError(
                            f"model {type(model).__name__} returned {len(hs)} hidden states; expected "
                            f"{n_blocks_expected + 1} (embedding output + one per block)"
                        )
                    width = int(hs[0].shape[-1])
                    if any(int(h.shape[-1]) != width for h in hs):
                        raise ModelLoadError("hidden states of different widths; cannot stack layers")
                    layers = [torch.empty((n_rows, width), dtype=torch.float32, device=store) for _ in hs]
                # gather the sampled rows of this batch
                b_idx: list[int] = []
                p_idx: list[int] = []
                dest: list[int] = []
                for j, t in enumerate(batch):
                    a, b = rows_of[int(t)]
                    for r in range(a, b):
                        b_idx.append(j)
                        p_idx.append(int(sample_index[r, 1]))
                        dest.append(r)
                dest_t = torch.as_tensor(dest, dtype=torch.long, device=store)
                if token_sampling == "mean":
                    mask = torch.zeros(inputs["input_ids"].shape, dtype=torch.float32, device=device)
                    for j, t in enumerate(batch):
                        k = torch.as_tensor(keep[int(t)], dtype=torch.float32, device=device)
                        mask[j, : k.numel()] = k
                    denom = mask.sum(dim=1, keepdim=True)
                    for layer_store, h in zip(layers, hs):
                        pooled = (h.float() * mask.unsqueeze(-1)).sum(dim=1) / denom
                        layer_store[dest_t] = pooled[torch.as_tensor(b_idx, device=device)].to(store)
                else:
                    bi = torch.as_tensor(b_idx, dtype=torch.long, device=device)
                    pi = torch.as_tensor(p_idx, dtype=torch.long, device=device)
                    for layer_store, h in zip(layers, hs):
                        layer_store[dest_t] = h[bi, pi].float().to(store)
    finally:
        if was_training:
            model.train()
    assert layers is not None
    params = {
        "token_sampling": token_sampling,
        "max_tokens": int(max_tokens),
        "include_special_tokens": bool(include_special_tokens),
        "max_length": int(max_length),
        "batch_size": int(batch_size),
        "seed": int(seed),
    }
    n_truncated = _count_truncated(tokenizer, texts, lengths, max_length)
    return HiddenStates(
        layers=layers,
        sample_index=sample_index,
        n_texts=len(texts),
        n_candidates=n_candidates,
        params=params,
        n_truncated=n_truncated,
    )


def _forward_inputs(model: Any, keys: list[str]) -> list[str]:
    """Tokenizer outputs the model's ``forward`` accepts (e.g. no ``token_type_ids`` for Llama)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return keys
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if "input_ids" not in named:
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values()):
            return keys  # a generic wrapper (*args, **kwargs): pass everything the tokenizer gave
        raise ModelLoadError(f"{type(model).__name__}.forward takes no input_ids; not a text model")
    return [k for k in keys if k in named]


def _count_truncated(tokenizer: Any, texts: list[str], lengths: np.ndarray, max_length: int) -> int:
    """Texts whose tokenization reached ``max_length`` and were (probably) cut; exact when retokenized."""
    at_cap = np.flatnonzero(lengths >= max_length)
    if at_cap.size == 0:
        return 0
    full = tokenizer([texts[i] for i in at_cap], truncation=False)["input_ids"]
    return int(sum(len(x) > max_length for x in full))


def _declared_blocks(model: Any) -> int | None:
    from gelora.models import n_blocks_of

    try:
        return n_blocks_of(model.config)
    except Exception:
        return None


__all__ = ["DEFAULT_MAX_TOKENS", "TOKEN_SAMPLING", "HiddenStates", "collect_hidden_states"]
