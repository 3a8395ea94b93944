"""Machine-independent provenance of data files: a path relative to the data root plus the file's sha256.

Result files travel between machines, so they must not name ``/home/<user>/...``: a data file is recorded
as ``{"file": "glue/RTE/train.tsv.gz", "sha256": "<64 hex digits>"}``, the path relative to the data root
(:func:`validation.data.default_data_dir`, or the ``data_dir`` a loader was given) with ``/`` separators.
A file outside every known root is recorded by its name alone, flagged ``"outside_data_root": true``; its
hash still identifies it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (cached per resolved path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _HASH_CACHE[key] = h.hexdigest()
    return digest


def _default_root() -> Path | None:
    from validation.data import default_data_dir

    try:
        return default_data_dir()
    except Exception:  # no data directory configured: nothing to be relative to
        return None


def relative_data_path(path: str | Path, data_dir: str | Path | None = None) -> tuple[str, bool]:
    """``(path relative to the data root with '/' separators, True)``, or ``(file name, False)``.

    ``data_dir`` is tried first, then the default data directory.
    """
    p = Path(path).resolve()
    roots = [Path(data_dir)] if data_dir is not None else []
    default = _default_root()
    if default is not None:
        roots.append(default)
    for root in roots:
        try:
            rel = p.relative_to(root.resolve())
        except ValueError:
            continue
        return rel.as_posix(), True
    return p.name, False


def file_record(path: str | Path, data_dir: str | Path | None = None) -> dict[str, Any]:
    """``{"file": <relative path>, "sha256": <hex>}`` (plus ``"outside_data_root": True`` when it is).

    Parameters
    ----------
    path : str or Path
        An existing data file.
    data_dir : str, Path or None
        The data root the loader was given (default: :func:`validation.data.default_data_dir`).
    """
    rel, inside = relative_data_path(path, data_dir)
    rec: dict[str, Any] = {"file": rel, "sha256": sha256_file(path)}
    if not inside:
        rec["outside_data_root"] = True
    return rec


def has_absolute_path(obj: Any) -> list[str]:
    """Strings inside a JSON-like object that look like absolute paths of a machine (for checks/tests)."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)
        elif isinstance(x, str) and (os.path.isabs(x) or " /" in x or x.startswith("~")):
            found.append(x)

    walk(obj)
    return found


__all__ = ["file_record", "has_absolute_path", "relative_data_path", "sha256_file"]
