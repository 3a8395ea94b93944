"""The GeLoRA pipeline: texts -> hidden states -> intrinsic dimensions -> per-block LoRA ranks.

:func:`compute_gelora_ranks` runs every step and returns a :class:`GeLoRARanks` result that holds the
per-layer ID with its confidence interval, the ranks, the optional budget matching, the sampling
parameters, the SHA-256 of the texts, package versions and timings, and that converts to a
``peft.LoraConfig``. ``GeLoRARanks.save_json`` writes the ``ranks.json`` file atomically.

Text input helpers (:func:`load_texts`, :func:`default_texts`) read ``.txt`` (one text per line),
``.jsonl`` (``{"text": ...}`` per line), ``.tsv``/``.csv`` (optionally gzip-compressed) files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import platform
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gelora._io import atomic_write_json, read_json
from gelora.errors import (
    ConfigError,
    DegenerateDataError,
    InvalidInputError,
    NotEnoughSamplesError,
    ResultFileError,
)
from gelora.estimators.result import IDResult
from gelora.hidden_states import DEFAULT_MAX_TOKENS, collect_hidden_states
from gelora.ranks import BudgetAllocation, block_gaps, match_budget, ranks_from_dimensions, uniform_budget

#: ranks.json schema version
SCHEMA_VERSION = 1

#: Fewest distinct rows per layer accepted by default. TwoNN's maximum-likelihood estimate has relative
#: standard error ``1 / sqrt(n)`` (``2 d T ~ chi2(2 n)``), so with fewer than 100 points the 95 %
#: interval is wider than about +-20 % of ``d`` and rank gaps of a few units are not resolved.
DEFAULT_MIN_SAMPLES = 100

#: A layer whose sampled rows are more than this fraction duplicates is flagged (padding or a constant
#: token leaking in); the duplicates are removed before estimation otherwise.
DEFAULT_MAX_DUPLICATE_FRACTION = 0.5

DEFAULT_TEXTS_RESOURCE = "data/default_texts.txt"


# ----------------------------------------------------------------------------------------------- texts
def default_texts() -> list[str]:
    """The small text sample shipped with the package (GLUE SST-2 and STS-B sentences).

    Returns the non-comment lines of ``gelora/data/default_texts.txt`` (lines starting with ``#`` hold
    the source and licence).
    """
    import importlib.resources as resources

    text = (resources.files("gelora") / DEFAULT_TEXTS_RESOURCE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8-sig", newline="")


def load_texts(
    path: str | Path,
    *,
    text_column: str | Sequence[str] | None = None,
    joiner: str = " ",
) -> list[str]:
    """Read texts from a file.

    Parameters
    ----------
    path : str or Path
        ``.txt`` (one text per line, blank lines skipped), ``.jsonl`` (one JSON object per line, text in
        ``text_column``, default ``"text"``), ``.tsv`` / ``.csv`` with a header row (optionally ``.gz``).
    text_column : str or sequence of str, optional
        Column(s) holding the text; several columns (``"sentence1,sentence2"`` or a list) are joined
        with ``joiner`` per row (sentence pairs). For tables the default is ``"sentence"`` or ``"text"``,
        whichever exists.
    joiner : str
        Separator between joined columns.

    Returns
    -------
    list of str
        Non-empty texts in file order.

    Raises
    ------
    InvalidInputError
        Missing file, unknown extension, missing column, or no text.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"data file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    kind = (
        suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) >= 2 else (suffixes or [""])[-1]
    )
    columns: list[str] | None
    if text_column is None:
        columns = None
    elif isinstance(text_column, str):
        columns = [c.strip() for c in text_column.split(",") if c.strip()]
    else:
        columns = list(text_column)
    texts: list[str] = []
    if kind == ".txt":
        if columns:
            raise InvalidInputError(f"{path}: --text-column does not apply to a .txt file")
        with _open_text(path) as fh:
            texts = [line.rstrip("\r\n") for line in fh]
    elif kind == ".jsonl":
        cols = columns or ["text"]
        with _open_text(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{path}:{n}: not valid JSON: {exc}") from exc
                missing = [c for c in cols if not isinstance(obj, dict) or c not in obj]
                if missing:
                    raise InvalidInputError(f"{path}:{n}: no field {missing[0]!r} (fields: {list(obj)})")
                texts.append(joiner.join(str(obj[c]) for c in cols))
    elif kind in (".tsv", ".csv"):
        delimiter = "\t" if kind == ".tsv" else ","
        with _open_text(path) as fh:
            if kind == ".tsv":
                reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
            try:
                header = next(reader)
            except StopIteration as exc:
                raise InvalidInputError(f"{path} is empty") from exc
            if columns is None:
                guess: list[str] = [c for c in ("sentence", "text") if c in header]
                if not guess:
                    raise InvalidInputError(
                        f"{path}: no 'sentence' or 'text' column; pass text_column (columns: {header})"
                    )
                columns = guess[:1]
            missing = [c for c in columns if c not in header]
            if missing:
                raise InvalidInputError(f"{path}: no column {missing[0]!r} (columns: {header})")
            idx = [header.index(c) for c in columns]
            for n, row in enumerate(reader, 2):
                if len(row) <= max(idx):
                    raise InvalidInputError(f"{path}:{n}: row has {len(row)} fields, expected > {max(idx)}")
                texts.append(joiner.join(row[i] for i in idx))
    else:
        raise InvalidInputError(
            f"{path}: unknown data format {''.join(path.suffixes)!r}; expected .txt, .jsonl, .tsv or .csv "
            "(optionally .gz)"
        )
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InvalidInputError(f"{path} holds no text")
    return texts


def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 (hex) of the texts, each UTF-8 encoded and terminated by a newline, in order."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _as_list(items: str | Sequence[str]) -> list[str]:
    if isinstance(items, str):
        return [t.strip() for t in items.split(",") if t.strip()]
    return [str(t) for t in items]


# ---------------------------------------------------------------------------------------------- result
@dataclass
class LayerID:
    """Intrinsic dimension of one hidden state.

    Attributes
    ----------
    index : int
        Hidden-state index: 0 is the embedding output, ``i + 1`` the output of block ``i``.
    result : IDResult or None
        The estimate; ``None`` when the layer is flagged.
    n_rows : int
        Rows sampled.
    n_unique : int
        Distinct rows among them.
    flag : str or None
        Why the layer has no usable estimate (degenerate representation), else ``None``.
    """

    index: int
    result: IDResult | None
    n_rows: int
    n_unique: int
    flag: str | None = None
    seconds: float = 0.0

    @property
    def dimension(self) -> float | None:
        return None if self.result is None else self.result.dimension

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.result is None else self.result.ci

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": "embeddings" if self.index == 0 else f"block_{self.index - 1}_output",
            "dimension": self.dimension,
            "ci": None if self.ci is None else [float(self.ci[0]), float(self.ci[1])],
            "n_rows": self.n_rows,
            "n_unique": self.n_unique,
            "flag": self.flag,
            "seconds": self.seconds,
            "result": None if self.result is None else self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerID:
        return cls(
            index=int(d["index"]),
            result=None if d.get("result") is None else IDResult.from_dict(d["result"]),
            n_rows=int(d["n_rows"]),
            n_unique=int(d["n_unique"]),
            flag=d.get("flag"),
            seconds=float(d.get("seconds", 0.0)),
        )


@dataclass
class GeLoRARanks:
    """Result of :func:`compute_gelora_ranks` (the content of ``ranks.json``).

    Attributes
    ----------
    model, model_type : str
        Model name/path and ``config.model_type``.
    layers : list of LayerID
        ``n_blocks + 1`` hidden states (index 0 = embedding output).
    gaps : list of float or None
        ``n_blocks`` real gaps (``d_{i+1} - d_i``, or the CI version); ``None`` next to a flagged layer.
    rule_ranks : list of int or None
        Ranks from the rule ``max(gap, 0) + offset`` after rounding.
    ranks : list of int or None
        Final ranks (``rule_ranks`` rescaled when a budget was given); entry ``i`` is block ``i``.
    rule : dict
        ``offset``, ``rounding``, ``use_ci_upper``.
    budget : BudgetAllocation or None
        Budget matching, when requested.
    unit_costs : list of int
        LoRA parameters per unit rank of every block; ``lora_parameters = sum(ranks * unit_costs)``.
    target_layout : dict
        ``layer_template`` and ``modules`` the ranks apply to.
    estimator, estimator_params, sampling, data, versions, timings, device, dtype, created
        Provenance.
    """

    model: str
    model_type: str
    n_blocks: int
    layers: list[LayerID]
    gaps: list[float | None]
    rule_ranks: list[int | None]
    ranks: list[int | None]
    rule: dict[str, Any]
    unit_costs: list[int]
    target_layout: dict[str, Any]
    estimator: str
    estimator_params: dict[str, Any]
    sampling: dict[str, Any]
    data: dict[str, Any]
    budget: BudgetAllocation | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    created: str = ""

    # -- views
    @property
    def dimensions(self) -> list[float | None]:
        """ID of every hidden state (``None`` where flagged)."""
        return [layer.dimension for layer in self.layers]

    @property
    def flagged_layers(self) -> list[int]:
        return [layer.index for layer in self.layers if layer.flag is not None]

    @property
    def lora_parameters(self) -> int | None:
        """Trainable LoRA parameters of the final ranks (``None`` if a block has no rank)."""
        ranks = [r for r in self.ranks if r is not None]
        if len(ranks) != len(self.ranks):
            return None
        return int(sum(int(r) * c for r, c in zip(ranks, self.unit_costs)))

    # -- conversion
    def to_gelora_config(self, **kwargs: Any) -> Any:
        """:class:`gelora.lora.GeLoRAConfig` of the final ranks (kwargs: ``alpha_ratio``, ``task_type``, ...).

        Raises :class:`ConfigError` when a block has no rank (a flagged layer).
        """
        from gelora.lora import GeLoRAConfig

        missing = [i for i, r in enumerate(self.ranks) if r is None]
        if missing:
            raise ConfigError(
                f"blocks {missing} have no rank because hidden states {self.flagged_layers} were flagged "
                "as degenerate; fix the sampling (see the flags) before building a LoRA config"
            )
        kwargs.setdefault("layer_template", self.target_layout.get("layer_template"))
        kwargs.setdefault("target_modules", self.target_layout.get("modules"))
        kwargs.setdefault("fan_in_fan_out", self.target_layout.get("fan_in_fan_out"))
        return GeLoRAConfig(ranks=list(self.ranks), model_type=self.model_type, **kwargs)  # type: ignore[arg-type]

    def to_lora_config(self, *, alpha_ratio: float = 32.0, **kwargs: Any) -> Any:
        """``peft.LoraConfig`` with one rank per block; kwargs go to :class:`GeLoRAConfig`."""
        return self.to_gelora_config(alpha_ratio=alpha_ratio, **kwargs).to_lora_config()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "model_type": self.model_type,
            "n_blocks": self.n_blocks,
            "layer_mapping": (
                "layers[0] is the embedding output (input of block 0); layers[i+1] is the output of block i; "
                "ranks[i] = max(d[i+1] - d[i], 0) + offset belongs to block i"
            ),
            "device": self.device,
            "dtype": self.dtype,
            "created": self.created,
            "data": self.data,
            "sampling": self.sampling,
            "estimator": self.estimator,
            "estimator_params": self.estimator_params,
            "layers": [layer.to_dict() for layer in self.layers],
            "flagged_layers": self.flagged_layers,
            "gaps": self.gaps,
            "rule": self.rule,
            "rule_ranks": self.rule_ranks,
            "ranks": self.ranks,
            "unit_costs": self.unit_costs,
            "lora_parameters": self.lora_parameters,
            "budget": None if self.budget is None else self.budget.to_dict(),
            "target_layout": self.target_layout,
            "versions": self.versions,
            "timings": self.timings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeLoRARanks:
        """Rebuild a result from :meth:`to_dict` output (raises :class:`ResultFileError` when malformed)."""
        try:
            budget = d.get("budget")
            return cls(
                model=d["model"],
                model_type=d["model_type"],
                n_blocks=int(d["n_blocks"]),
                layers=[LayerID.from_dict(x) for x in d["layers"]],
                gaps=list(d["gaps"]),
                rule_ranks=list(d["rule_ranks"]),
                ranks=list(d["ranks"]),
                rule=dict(d["rule"]),
                unit_costs=[int(c) for c in d["unit_costs"]],
                target_layout=dict(d["target_layout"]),
                estimator=d["estimator"],
                estimator_params=dict(d["estimator_params"]),
                sampling=dict(d["sampling"]),
                data=dict(d["data"]),
                budget=None if budget is None else BudgetAllocation(**budget),
                versions=dict(d.get("versions", {})),
                timings=dict(d.get("timings", {})),
                device=d.get("device", "cpu"),
                dtype=d.get("dtype", "float32"),
                created=d.get("created", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFileError(f"not a GeLoRA ranks result: {type(exc).__name__}: {exc}") from exc

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically to ``path`` (JSON)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> GeLoRARanks:
        """Read a ``ranks.json`` written by :meth:`save_json`."""
        return cls.from_dict(read_json(path))

    def format_table(self) -> str:
        """Human-readable table: one row per hidden state and the rank of the block it feeds."""
        lines = [
            f"model {self.model} ({self.model_type}, {self.n_blocks} blocks), {self.estimator}, "
            f"{self.sampling.get('n_rows')} rows/layer from {self.data.get('n_texts')} texts",
            f"{'layer':<22}{'ID':>8}  {'95% CI':<17}{'gap':>7}{'rank':>6}  note",
        ]
        for layer in self.layers:
            i = layer.index
            name = "embeddings" if i == 0 else f"block {i - 1} output"
            dim = "-" if layer.dimension is None else f"{layer.dimension:.2f}"
            ci = "-" if layer.ci is None else f"[{layer.ci[0]:.2f}, {layer.ci[1]:.2f}]"
            note = layer.flag or ""
            lines.append(f"{name:<22}{dim:>8}  {ci:<17}{'':>7}{'':>6}  {note}")
            if i < self.n_blocks:
                gap = self.gaps[i]
                rank = "-" if self.ranks[i] is None else str(self.ranks[i])
                if self.budget is not None:
                    rank = f"{self.rule_ranks[i]}->{rank}"  # rule rank -> budget-matched rank
                lines.append(
                    f"{'  -> block ' + str(i):<22}{'':>8}  {'':<17}"
                    f"{'-' if gap is None else f'{gap:+.2f}':>7}{rank:>6}"
                )
        params = self.lora_parameters
        tail = (
            f"LoRA parameters: {params}"
            if params is not None
            else "LoRA parameters: undefined (flagged layers)"
        )
        if self.budget is not None:
            tail += f" (budget target {self.budget.target}, achieved {self.budget.achieved})"
        lines.append(tail)
        return "\n".join(lines)


# -------------------------------------------------------------------------------------------- pipeline
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("gelora", "torch", "transformers", "peft", "numpy", "scipy"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "unknown"))
        except ImportError:
            out[name] = "not installed"
    return out


def _estimate_fn() -> Any:
    try:
        from gelora.estimators import estimate_id
    except ImportError as exc:  # pragma: no cover - depends on the estimators package being complete
        raise ConfigError(f"gelora.estimators.estimate_id is not available: {exc}") from exc
    return estimate_id


def _check_estimator(name: str, params: dict[str, Any]) -> None:
    from gelora.estimators import ESTIMATORS

    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; choose one of {', '.join(sorted(ESTIMATORS))}")
    try:
        ESTIMATORS[name](**params)
    except TypeError as exc:
        raise ConfigError(f"invalid parameter for estimator {name!r}: {exc}") from exc


def _peak_rss_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(usage) / (1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0)


def _as_numpy(X: Any) -> np.ndarray:
    """A CPU tensor as a NumPy array (no copy for float32/float64; other dtypes upcast to float32)."""
    import torch

    X = X.detach()
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    return X.cpu().numpy()


def _screen_layer(X: Any, min_samples: int, max_duplicate_fraction: float) -> tuple[int, str | None]:
    """Count distinct rows of ``X`` and say why it cannot be estimated (``None`` if it can)."""
    import torch

    n = int(X.shape[0])
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(dim=1).sum())
        return n, f"{bad} of {n} rows contain NaN/inf (overflow in low precision? try dtype fp32)"
    n_unique = int(torch.unique(X, dim=0).shape[0])
    if n_unique == 1:
        return n_unique, f"constant representation: all {n} rows identical"
    dup = 1.0 - n_unique / n
    if dup > max_duplicate_fraction:
        return n_unique, (
            f"{dup:.0%} of the {n} rows are duplicates (> {max_duplicate_fraction:.0%}): padding or a constant "
            "token leaking in? (token_sampling='first' makes the embedding layer constant)"
        )
    if n_unique < min_samples:
        return n_unique, f"only {n_unique} distinct rows, fewer than min_samples={min_samples}"
    return n_unique, None


def compute_gelora_ranks(
    model_or_name: Any = None,
    texts: Sequence[str] | None = None,
    *,
    tokenizer: Any = None,
    estimator: str = "twonn",
    estimator_params: dict[str, Any] | None = None,
    token_sampling: str = "all",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    include_special_tokens: bool = False,
    n_texts: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
    device: Any = None,
    dtype: Any = None,
    offset: int = 1,
    rounding: str = "ceil",
    use_ci_upper: bool = False,
    budget: int | None = None,
    budget_rank: int | None = None,
    layer_template: str | None = None,
    target_modules: str | Sequence[str] | None = None,
    layers: str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    max_duplicate_fraction: float = DEFAULT_MAX_DUPLICATE_FRACTION,
    on_degenerate: str = "raise",
    data_source: str | None = None,
    progress: bool = False,
) -> GeLoRARanks:
    """Compute GeLoRA ranks of a model from the intrinsic dimension of its hidden states.

    Parameters
    ----------
    model_or_name : str, path, transformers model, :class:`gelora.models.LoadedModel` or None
        ``None`` selects the bundled all-MiniLM-L6-v2 encoder (offline). A model object needs
        ``tokenizer`` (or a loadable ``config._name_or_path``).
    texts : sequence of str or None
        Input texts; ``None`` uses :func:`default_texts` (300 GLUE sentences shipped with the package).
    tokenizer : transformers tokenizer, optional
        For a model object.
    estimator : str
        ``"twonn"`` (default), ``"mle"`` or ``"danco"`` (any name :func:`gelora.estimators.estimate_id` knows).
    estimator_params : dict, optional
        Passed to the estimator. Defaults added here: ``duplicates="dedupe"`` (repeated token/position pairs
        give identical embedding rows), ``seed=seed``, and ``device`` = where the hidden states are.
    token_sampling, max_tokens, include_special_tokens, batch_size, max_length
        See :func:`gelora.hidden_states.collect_hidden_states` (defaults: all non-special tokens,
        at most 4096 rows, batches of 32 texts, 128 tokens).
    n_texts : int, optional
        Use a seeded random subset of this many texts (kept in input order).
    seed : int
        Seed of every random choice (text subset, token sample, estimator).
    device : str or torch.device or None
        Model and estimation device (``None``: CUDA when available).
    dtype : {"fp32", "fp16", "bf16"} or torch.dtype or None
        Model dtype (``None``: fp32 when loading; unchanged for a model object). Hidden states are
        stored and estimated in float32 whatever the model dtype.
    offset, rounding, use_ci_upper
        The rank rule (:func:`gelora.ranks.ranks_from_dimensions`; default offset 1, ceil).
    budget : int, optional
        Rescale ranks to at most this many trainable LoRA parameters (:func:`gelora.ranks.match_budget`).
    budget_rank : int, optional
        Same, with the budget of uniform LoRA of this rank on the same modules (e.g. 8).
    target_modules : str, sequence of str or None
        Linears of every block that receive ranks: names, suffixes, ``"attention"``, ``"ffn"``, roles
        (``"query"``, ``"v"``) or ``"all-linear"`` (the default), resolved on the model's discovered blocks
        (:func:`gelora.architecture.resolve_target_modules`).
    layers : str, optional
        Dotted path of the block list, overriding discovery (:func:`gelora.architecture.discover_architecture`).
    layer_template : str, optional
        Legacy explicit layout: block name with ``{i}``; ``target_modules`` are then taken as exact
        block-relative names (no discovery).
    min_samples : int
        Fewest distinct rows per layer (default 100, see :data:`DEFAULT_MIN_SAMPLES`).
    max_duplicate_fraction : float
        Flag a layer with more duplicate rows than this (default 0.5).
    on_degenerate : {"raise", "flag"}
        A degenerate layer raises :class:`DegenerateDataError` (default) or is flagged in the result, its
        neighbouring blocks getting rank ``None``.
    data_source : str, optional
        Description of where the texts came from (recorded).
    progress : bool
        Show progress bars.

    Returns
    -------
    GeLoRARanks

    Raises
    ------
    ModelLoadError
        Unknown model, or a model without hidden states.
    NotEnoughSamplesError
        Fewer than ``min_samples`` rows can be sampled from the texts (the message says how many are needed).
    DegenerateDataError
        A layer's representation is degenerate and ``on_degenerate="raise"``.
    ConfigError
        Inconsistent options.
    """
    import torch

    from gelora.lora import architecture_modules, block_unit_costs, layout_from_model
    from gelora.models import LoadedModel, load_model, parse_dtype, resolve_device, wrap_model

    t_start = time.perf_counter()
    if on_degenerate not in ("raise", "flag"):
        raise ConfigError(f"on_degenerate must be 'raise' or 'flag', got {on_degenerate!r}")
    if budget is not None and budget_rank is not None:
        raise ConfigError("give budget or budget_rank, not both")
    if not isinstance(min_samples, int) or min_samples < 3:
        raise ConfigError(f"min_samples must be an integer >= 3, got {min_samples!r}")
    if not 0.0 <= max_duplicate_fraction < 1.0:
        raise ConfigError(f"max_duplicate_fraction must be in [0, 1), got {max_duplicate_fraction!r}")

    # ---- estimator: check name and parameter names before the (long) forward pass
    params: dict[str, Any] = {"duplicates": "dedupe", "seed": seed}
    params.update(estimator_params or {})
    _check_estimator(estimator, params)

    # ---- texts
    if texts is None:
        texts = default_texts()
        data_source = data_source or f"gelora:{DEFAULT_TEXTS_RESOURCE}"
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    if n_texts is not None:
        if not isinstance(n_texts, int) or n_texts < 1:
            raise ConfigError(f"n_texts must be a positive integer, got {n_texts!r}")
        if n_texts < len(texts):
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(texts), size=n_texts, replace=False))
            texts = [texts[i] for i in keep]

    # ---- model
    t0 = time.perf_counter()
    if isinstance(model_or_name, LoadedModel):
        loaded = model_or_name
    elif model_or_name is None or isinstance(model_or_name, str | Path):
        loaded = load_model(model_or_name, device=device, dtype=dtype)
    else:
        tok = tokenizer
        if tok is None:
            from transformers import AutoTokenizer

            name = getattr(getattr(model_or_name, "config", None), "_name_or_path", "")
            try:
                tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
            except Exception as exc:
                from gelora.errors import ModelLoadError

                raise ModelLoadError(
                    f"a model object needs tokenizer=...; none could be loaded from {name!r}: {exc}"
                ) from exc
        loaded = wrap_model(model_or_name, tok)
        if device is not None:
            loaded.model.to(resolve_device(device))
        if dtype is not None:
            loaded.model.to(parse_dtype(dtype))
    t_load = time.perf_counter() - t0
    model_device = loaded.device
    fan_in_fan_out = loaded.model_type == "gpt2"
    blocks_path = None
    if layer_template is not None:
        modules = None if target_modules is None else _as_list(target_modules)
        layout = architecture_modules(loaded.model_type, layer_template=layer_template, modules=modules)
    else:
        layout, arch = layout_from_model(
            loaded.model, target_modules, layers=layers, n_blocks=loaded.n_blocks
        )
        if arch.n_blocks != loaded.n_blocks:
            raise ConfigError(
                f"layers={layers!r} holds {arch.n_blocks} blocks but the model returns "
                f"{loaded.n_blocks + 1} hidden states ({loaded.n_blocks} blocks)"
            )
        fan_in_fan_out = arch.fan_in_fan_out
        blocks_path = arch.blocks_path
    unit_costs = block_unit_costs(loaded.model, layout, loaded.n_blocks)

    # ---- hidden states
    if model_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model_device)
    t0 = time.perf_counter()
    hs = collect_hidden_states(
        loaded.model,
        loaded.tokenizer,
        texts,
        token_sampling=token_sampling,
        max_tokens=max_tokens,
        include_special_tokens=include_special_tokens,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        progress=progress,
    )
    if model_device.type == "cuda":
        torch.cuda.synchronize(model_device)
    t_forward = time.perf_counter() - t0
    if hs.n_samples < min_samples:
        unit = "tokens" if token_sampling == "all" else "texts"
        raise NotEnoughSamplesError(
            f"only {hs.n_samples} rows per layer ({unit}) could be sampled from {len(texts)} texts; "
            f"the estimate needs at least min_samples={min_samples} (TwoNN's relative error is 1/sqrt(n)); "
            f"give more {'or longer ' if unit == 'tokens' else ''}texts"
            + (f" or raise max_tokens={max_tokens}" if hs.n_candidates > hs.n_samples else "")
        )

    # ---- intrinsic dimensions
    estimate_id = _estimate_fn()
    # on the CPU the NumPy k-NN backend is faster than torch's CPU path (docs/performance.md: 2.5x for
    # TwoNN on 4096 x 384): CPU hidden states go to the estimators as NumPy arrays, unless the caller
    # asked for a device in estimator_params
    to_numpy = model_device.type == "cpu" and "device" not in params
    params.setdefault("device", str(model_device))
    call_params = {k: v for k, v in params.items() if not (to_numpy and k == "device")}
    t0 = time.perf_counter()
    layer_ids: list[LayerID] = []
    iterator: Any = list(enumerate(hs.layers))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"ID ({estimator})", unit="layer", disable=None)
    for j, X in iterator:
        tl = time.perf_counter()
        n_unique, flag = _screen_layer(X, min_samples, max_duplicate_fraction)
        result = None
        if flag is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # dedupe warnings: counted in the result
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result = estimate_id(_as_numpy(X) if to_numpy else X, estimator, **call_params)
            except NotEnoughSamplesError as exc:
                raise NotEnoughSamplesError(
                    f"hidden state {j}: {exc} ({hs.n_samples} rows sampled from {len(texts)} texts; "
                    "give more texts or raise max_tokens)"
                ) from exc
            except DegenerateDataError as exc:
                flag = f"estimator rejected the representation: {exc}"
            if result is not None and not (math.isfinite(result.dimension) and result.dimension > 0):
                flag, result = f"estimator returned a non-positive dimension {result.dimension}", None
        layer_ids.append(LayerID(j, result, int(X.shape[0]), n_unique, flag, time.perf_counter() - tl))
        if flag is not None and on_degenerate == "raise":
            raise DegenerateDataError(
                f"hidden state {j} ({'embeddings' if j == 0 else f'output of block {j - 1}'}) is degenerate: "
                f"{flag}. Change token_sampling/texts, or pass on_degenerate='flag' to keep going"
            )
    if model_device.type == "cuda":
        torch.cuda.synchronize(model_device)
    t_est = time.perf_counter() - t0

    # ---- ranks
    n_blocks = loaded.n_blocks
    gaps: list[float | None] = [None] * n_blocks
    rule_ranks: list[int | None] = [None] * n_blocks
    for i in range(n_blocks):
        a, b = layer_ids[i], layer_ids[i + 1]
        if a.result is None or b.result is None:
            continue
        pair_dims = [a.result.dimension, b.result.dimension]
        pair_cis = [a.result.ci, b.result.ci]
        gaps[i] = float(block_gaps(pair_dims, cis=pair_cis, use_ci_upper=use_ci_upper)[0])
        rule_ranks[i] = ranks_from_dimensions(
            pair_dims, offset=offset, rounding=rounding, cis=pair_cis, use_ci_upper=use_ci_upper
        )[0]
    ranks = list(rule_ranks)
    allocation: BudgetAllocation | None = None
    target = (
        budget
        if budget is not None
        else (uniform_budget(unit_costs, budget_rank) if budget_rank is not None else None)
    )
    if target is not None:
        if any(r is None for r in rule_ranks):
            raise ConfigError("budget matching needs a rank for every block; some layers are flagged")
        allocation = match_budget(rule_ranks, unit_costs, int(target))  # type: ignore[arg-type]
        ranks = list(allocation.ranks)

    timings: dict[str, Any] = {
        "load_s": t_load,
        "forward_s": t_forward,
        "estimation_s": t_est,
        "total_s": time.perf_counter() - t_start,
        "peak_rss_mib": _peak_rss_mib(),
    }
    if model_device.type == "cuda":
        timings["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(model_device) / 2**20
    sampling = dict(hs.params)
    sampling.update(
        {
            "n_rows": hs.n_samples,
            "n_candidates": hs.n_candidates,
            "n_texts_used": len(texts),
            "n_texts_requested": n_texts,
            "n_truncated": hs.n_truncated,
            "min_samples": min_samples,
            "max_duplicate_fraction": max_duplicate_fraction,
        }
    )
    est_params = {
        k: (v if v is None or isinstance(v, bool | int | float | str) else str(v)) for k, v in params.items()
    }
    return GeLoRARanks(
        model=loaded.name,
        model_type=loaded.model_type,
        n_blocks=n_blocks,
        layers=layer_ids,
        gaps=gaps,
        rule_ranks=rule_ranks,
        ranks=ranks,
        rule={"offset": offset, "rounding": rounding, "use_ci_upper": use_ci_upper},
        unit_costs=unit_costs,
        target_layout={
            "layer_template": layout.layer_template,
            "modules": list(layout.modules),
            "fan_in_fan_out": fan_in_fan_out,
            "blocks_path": blocks_path,
            "requested": None if target_modules is None else _as_list(target_modules),
        },
        estimator=estimator,
        estimator_params=est_params,
        sampling=sampling,
        data={"sha256": texts_sha256(texts), "n_texts": len(texts), "source": data_source},
        budget=allocation,
        versions=_versions(),
        timings=timings,
        device=str(model_device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


__all__ = [
    "DEFAULT_MAX_DUPLICATE_FRACTION",
    "DEFAULT_MIN_SAMPLES",
    "GeLoRARanks",
    "LayerID",
    "compute_gelora_ranks",
    "default_texts",
    "load_texts",
    "texts_sha256",
]
