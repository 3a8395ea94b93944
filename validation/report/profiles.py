"""Further models' per-layer ID profiles for claim C3, read from committed ``gelora ranks`` JSON files.

The report's ``model_profile`` section computes the bundled MiniLM's profile itself (minutes, reused from
``raw/``). Profiles of larger models are measured elsewhere (e.g. MPNet-base on an H200:
``reports/gpu/mpnet_h200/ranks_mpnet_*.json``) and enter the report as files: ``gelora report --profiles
FILE ...``. They are read at every assembly (cheap) and attached to the section's data as ``more_models``,
one entry per (model, text source), so the cached MiniLM profile is never recomputed for them. C3 then
holds only if every model's profile is far below its hidden size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import read_json
from gelora.errors import ResultFileError
from validation.report.portable import portable_path

#: ``gelora ranks`` output layout this reader understands
RANKS_SCHEMA_VERSION = 1


def _text_source(d: dict[str, Any]) -> str:
    """The texts' file relative to the data root (``glue/STS-B/train.tsv.gz``), without any machine's prefix."""
    src = str((d.get("data") or {}).get("source") or "unknown texts").split(" [")[0]
    for prefix in ("$GELORA_DATA_DIR/",):
        src = src.removeprefix(prefix)
    return src


def read_profile_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One ``gelora ranks`` JSON file as a profile of :func:`validation.report.build.normalise_profile`'s form.

    Parameters
    ----------
    path : path
        A file written by ``gelora ranks ... --out FILE.json`` (``schema_version`` 1).

    Returns
    -------
    dict
        ``model``, ``estimator``, ``hidden_size`` (features of the hidden states), ``texts`` (file relative
        to the data root), ``n_texts``, ``max_tokens``, ``device``, ``sha256`` of the file and ``profile``
        (``dimension``, ``ci_low``, ``ci_high`` per hidden state, ``ranks``, ...).

    Raises
    ------
    ResultFileError
        The file is not a ``gelora ranks`` result of a known layout, or lacks per-layer dimensions or the
        hidden size.
    """
    from validation.report.build import normalise_profile

    p = Path(path)
    d = read_json(p)
    if not isinstance(d, dict) or d.get("schema_version") != RANKS_SCHEMA_VERSION or "layers" not in d:
        raise ResultFileError(
            f"{p} is not a `gelora ranks` result (schema_version {RANKS_SCHEMA_VERSION} with per-layer results)"
        )
    hidden = {
        int(n)
        for lay in d["layers"]
        if isinstance(lay, dict) and (n := (lay.get("result") or {}).get("n_features")) is not None
    }
    if len(hidden) != 1:
        raise ResultFileError(f"{p}: the hidden size is not one number across layers ({sorted(hidden)})")
    # the file itself is hashed and named; its full record ("raw") stays out of report.json
    prof = {k: v for k, v in normalise_profile(d).items() if k != "raw"}
    if not prof.get("dimension"):
        raise ResultFileError(f"{p}: no per-layer intrinsic dimensions")
    return {
        "model": str(d.get("model") or "unknown model"),
        "estimator": str(d.get("estimator") or "unknown estimator"),
        "hidden_size": hidden.pop(),
        "texts": _text_source(d),
        "n_texts": (d.get("data") or {}).get("n_texts"),
        "max_tokens": (d.get("sampling") or {}).get("max_tokens"),
        "device": d.get("device"),
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        "profile": prof,
    }


def more_models(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Group profile files by (model, texts): one entry each, its estimators in the order given.

    Returns
    -------
    list of dict
        ``model``, ``texts``, ``hidden_size``, ``n_texts``, ``max_tokens``, ``estimators`` (name -> profile)
        and ``files`` (name -> ``{"path", "sha256", "device"}``; paths without any absolute prefix of this
        machine, :func:`validation.report.portable.portable_path`).

    Raises
    ------
    ResultFileError
        A file cannot be read (see :func:`read_profile_file`), two files give the same estimator for the
        same model and texts, or one model's files disagree on its hidden size.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        rec = read_profile_file(path)
        key = (rec["model"], rec["texts"])
        g = groups.setdefault(
            key,
            {
                "model": rec["model"],
                "texts": rec["texts"],
                "hidden_size": rec["hidden_size"],
                "n_texts": rec["n_texts"],
                "max_tokens": rec["max_tokens"],
                "estimators": {},
                "files": {},
            },
        )
        if g["hidden_size"] != rec["hidden_size"]:
            raise ResultFileError(
                f"{path}: hidden size {rec['hidden_size']}, other files of {key[0]} say {g['hidden_size']}"
            )
        if rec["estimator"] in g["estimators"]:
            raise ResultFileError(f"{path}: a second {rec['estimator']} profile of {key[0]} on {key[1]}")
        g["estimators"][rec["estimator"]] = rec["profile"]
        g["files"][rec["estimator"]] = {
            "path": portable_path(Path(path).as_posix()),
            "sha256": rec["sha256"],
            "device": rec["device"],
        }
    return list(groups.values())


__all__ = ["RANKS_SCHEMA_VERSION", "more_models", "read_profile_file"]
