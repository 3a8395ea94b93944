"""An on-disk cache of tokenised datasets, shared by the cells (and concurrent workers) of a grid.

Every cell of a task tokenises the same train/dev subsets with the same tokenizer; with several workers on
one machine that work competes for the CPU cores (issue 23: 18 concurrent cells on 16 cores did not finish).
:func:`cached` computes an entry once per key and stores it as a pickle written atomically (temporary file +
``os.replace``); concurrent writers cooperate through a claim file (:mod:`validation.finetune.claims`): one
builds, the others wait for the file, and a builder that died leaves a stale claim that the next caller
breaks.

The key is the SHA-256 of: the kind (``glue``/``squad``) and the caller's settings (task, part, max_length,
subset sizes and seed, stride), the tokenizer's identity (class, the full fast-tokenizer JSON or the vocab,
special tokens, truncation/padding side) and a digest of the exact inputs that are tokenised (texts and
labels of the subset). The input digest stands in for the data files' SHA-256: it changes when the files
change and also when only the chosen subset does.

Location: ``$GELORA_TOKEN_CACHE`` (``off`` disables), else the folder set by :func:`use_dir` (the grid sets
``<run_dir>/cache``), else ``$GELORA_CACHE_DIR/tokens``; nothing is cached when none applies. Entries are
pickles of our own classes, so only point the cache at a folder you trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from validation.finetune.claims import is_stale, try_claim
from validation.finetune.stop import check

T = TypeVar("T")

#: per-process counters: ``hits`` (read from disk), ``built`` (computed and stored), ``uncached``
STATS: dict[str, int] = {"hits": 0, "built": 0, "uncached": 0}
#: one line per entry built, appended to ``<cache>/built.log`` (what tests count across processes)
BUILT_LOG = "built.log"
_WAIT_LIMIT_S = 1800.0
_override: Path | None = None
_fingerprints: dict[int, str] = {}


def cache_dir() -> Path | None:
    """The active cache folder, or None when caching is off (see the module docstring)."""
    env = os.environ.get("GELORA_TOKEN_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none") else Path(env)
    if _override is not None:
        return _override
    root = os.environ.get("GELORA_CACHE_DIR")
    return Path(root) / "tokens" if root else None


@contextmanager
def use_dir(path: str | Path | None) -> Iterator[None]:
    """Use ``path`` as the cache folder inside the block (``$GELORA_TOKEN_CACHE`` still wins)."""
    global _override
    old, _override = _override, (Path(path) if path is not None else None)
    try:
        yield
    finally:
        _override = old


def _feed(h: Any, obj: Any) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(repr(obj).encode())
    elif isinstance(obj, bytes):
        h.update(b"b" + obj)
    elif isinstance(obj, np.ndarray):
        h.update(f"nd{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for x in obj:
            _feed(h, x)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"{{{len(obj)}".encode())
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
        h.update(b"}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__name__.encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    else:
        h.update(repr(obj).encode())


def content_digest(obj: Any) -> str:
    """SHA-256 of nested lists/dicts/dataclasses/arrays of plain values (order-sensitive)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 identifying what a tokenizer does (not where it was loaded from)."""
    key = id(tokenizer)
    if key not in _fingerprints:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
        parts = {
            "class": type(tokenizer).__name__,
            "body": hashlib.sha256(body.encode()).hexdigest(),
            "special": {k: str(v) for k, v in getattr(tokenizer, "special_tokens_map", {}).items()},
            "padding_side": getattr(tokenizer, "padding_side", None),
            "truncation_side": getattr(tokenizer, "truncation_side", None),
            "model_max_length": int(min(getattr(tokenizer, "model_max_length", 0) or 0, 2**31)),
        }
        _fingerprints[key] = content_digest(parts)
    return _fingerprints[key]


def entry_key(kind: str, settings: dict[str, Any], tokenizer: Any, inputs: Any) -> str:
    """The cache key (hex SHA-256) of one tokenised dataset."""
    return content_digest(
        {
            "kind": kind,
            "settings": settings,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "inputs": content_digest(inputs),
        }
    )


def _load(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)


def cached(kind: str, settings: dict[str, Any], tokenizer: Any, inputs: Any, compute: Callable[[], T]) -> T:
    """``compute()`` once per key, stored on disk; later calls (any process) load it.

    Parameters
    ----------
    kind : str
        Task family, part of the file name.
    settings : dict
        Everything besides tokenizer and inputs that changes the result (task, part, max_length, sizes, seed).
    tokenizer
        The Hugging Face tokenizer ``compute`` uses.
    inputs
        The data being tokenised (texts, labels, examples), digested into the key.
    compute : callable
        Builds the value; must be picklable.

    Returns
    -------
    The value of ``compute()`` (or an equal copy read from the cache).
    """
    root = cache_dir()
    if root is None:
        STATS["uncached"] += 1
        return compute()
    root.mkdir(parents=True, exist_ok=True)
    key = entry_key(kind, settings, tokenizer, inputs)
    path = root / f"{kind}-{key[:32]}.pkl"
    claim_file = root / f"{kind}-{key[:32]}.claim"
    waited = 0.0
    while True:
        if path.exists():
            try:
                value = _load(path)
            except (OSError, EOFError, pickle.UnpicklingError):
                path.unlink(missing_ok=True)  # torn or foreign file: rebuild
            else:
                STATS["hits"] += 1
                return value  # type: ignore[no-any-return]
        claim = try_claim(claim_file, note="token cache")
        if claim is not None:
            with claim:
                if path.exists():  # built while we were acquiring
                    continue
                value = compute()
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                with tmp.open("wb") as fh:
                    pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                meta = {"kind": kind, "settings": settings, "key": key, "built": time.time()}
                (root / f"{kind}-{key[:32]}.json").write_text(json.dumps(meta, default=str, indent=1))
                with (root / BUILT_LOG).open("a") as log:
                    log.write(f"{path.name} pid={os.getpid()} host={socket.gethostname()}\n")
                STATS["built"] += 1
                return value
        if waited > _WAIT_LIMIT_S and not is_stale(claim_file):
            STATS["uncached"] += 1
            return compute()  # a builder that beats but never finishes: do not hang the cell
        check("waiting for another worker's tokenisation")  # SIGTERM: stop waiting
        time.sleep(0.2)
        waited += 0.2


__all__ = [
    "BUILT_LOG",
    "STATS",
    "cache_dir",
    "cached",
    "content_digest",
    "entry_key",
    "tokenizer_fingerprint",
    "use_dir",
]
