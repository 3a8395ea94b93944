"""Further models' per-layer ID profiles for claim C3, read from committed ``gelora ranks`` JSON files.

The report's ``model_profile`` section computes the bundled MiniLM's profile itself (minutes, reused from
``raw/``). Profiles of larger models are measured elsewhere (e.g. MPNet-base on an H200:
``reports/gpu/mpnet_h200/ranks_mpnet_*.json``) and enter the report as files: ``gelora report --id-profiles
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


#: folders of the data root a text source may start from (``glue/RTE/train.tsv.gz``)
DATA_FOLDERS: tuple[str, ...] = ("glue", "squad")


def _text_source(d: dict[str, Any]) -> str:
    """The texts' file relative to the data root (``glue/STS-B/train.tsv.gz``): from the first data-root
    folder of the recorded path on (any machine's prefix dropped), else the file's name."""
    src = str((d.get("data") or {}).get("source") or "unknown texts").split(" [")[0]
    parts = Path(src.removeprefix("$GELORA_DATA_DIR/")).parts
    start = next((i for i, part in enumerate(parts) if part in DATA_FOLDERS), None)
    if start is not None:
        return "/".join(parts[start:])
    return parts[-1] if parts else "unknown texts"


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
        (``dimension``, ``ci_low``, ``ci_high`` per hidden state, ``ci_method``, ``ranks``, ...). Layers
        whose estimator computed no interval (``ci_method`` "none", e.g. DANCo without bootstrap) leave
        the profile without intervals, never with zero-width ones.

    Raises
    ------
    ResultFileError
        The file is not a ``gelora ranks`` result of a known layout, a layer has no numeric dimension (a
        layer flagged degenerate: C3 needs every layer), or the hidden size is missing or not one number.
    """
    from validation.report.build import normalise_profile
    from validation.report.claims import is_number

    p = Path(path)
    if not p.is_file():
        raise ResultFileError(f"{p}: no such profile file")
    d = read_json(p)
    if not isinstance(d, dict) or d.get("schema_version") != RANKS_SCHEMA_VERSION or "layers" not in d:
        raise ResultFileError(
            f"{p} is not a `gelora ranks` result (schema_version {RANKS_SCHEMA_VERSION} with per-layer results)"
        )
    layers = [lay for lay in d["layers"] if isinstance(lay, dict)]
    missing = [str(lay.get("name", i)) for i, lay in enumerate(layers) if not is_number(lay.get("dimension"))]
    if not layers or missing:
        raise ResultFileError(
            f"{p}: layer(s) {missing or 'all'} have no intrinsic dimension (flagged or failed); "
            "C3 needs every layer's"
        )
    hidden = {int(n) for lay in layers if (n := (lay.get("result") or {}).get("n_features")) is not None}
    if len(hidden) != 1:
        raise ResultFileError(f"{p}: the hidden size is not one number across layers ({sorted(hidden)})")
    methods = sorted({str((lay.get("result") or {}).get("ci_method") or "unknown") for lay in layers})
    # the file itself is hashed and named; its full record ("raw") stays out of report.json (normalise_profile
    # leaves out intervals the estimator did not compute)
    prof = {k: v for k, v in normalise_profile(d).items() if k != "raw"}
    prof["ci_method"] = methods[0] if len(methods) == 1 else methods
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

    Parameters
    ----------
    paths : sequence of path
        ``gelora ranks`` JSON files (:func:`read_profile_file`).

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
