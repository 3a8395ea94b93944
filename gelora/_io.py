"""Atomic result files: write to a temporary name in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gelora.errors import ResultFileError


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the process umask, read once at import (os.umask can only be read by setting it)
_UMASK = _current_umask()


def set_default_mode(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Give a ``tempfile.mkstemp`` file (created 0600) the mode a plain ``open(path, "w")`` would give, or a
    ``tempfile.mkdtemp`` folder (created 0700) the mode ``mkdir`` would give (``directory=True``)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(fd, tmp)`` of a new temporary file beside ``path``: the ``with`` body fills it (and closes ``fd``
    where it does not write through it), then ``tmp`` is renamed over ``path``; on any error ``tmp`` is
    removed and the error propagates, ``path`` unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and the file is renamed
    over ``path`` (atomic on POSIX and Windows); the mode is the one ``open(path, "w")`` would give.
    """
    path = Path(path)
    with replacing(path) as (fd, tmp):
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        set_default_mode(tmp)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


#: Indentation of result files written in bulk and committed (grid cells, selection records, report
#: sections, ``report.json``, failure records): one value per line keeps line-wise diffs, no indentation
#: keeps the files at 40 % (report sections) to 73 % (cells) of their 2-space size (measured 2026-12-01). The
#: working tree, results included, travels to the GPU machine within 64 MiB (``scripts/gpu/carry_fits.py``);
#: ``scripts/compact_results.py`` rewrites older files this way.
RESULT_INDENT = 0


def json_indent_of(text: str) -> int | None:
    """The ``indent`` :func:`json.dumps` wrote ``text`` with: ``None`` for one line, else the second line's
    leading spaces (0 for :data:`RESULT_INDENT`, 2 for :func:`atomic_write_json`'s default)."""
    lines = text.split("\n", 2)
    if len(lines) < 2 or not lines[1].strip():
        return None
    return len(lines[1]) - len(lines[1].lstrip(" "))


def same_result_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two result files hold the same result: the same bytes, or, for ``.json`` files, JSON texts that
    differ only in layout (indentation, spacing, escapes): the same keys in the same order and the same values
    of the same types (``1`` and ``1.0``, ``true`` and ``1`` differ). A file that does not parse is the same
    only byte for byte."""
    if filecmp.cmp(a, b, shallow=False):
        return True
    if Path(a).suffix != ".json" or Path(b).suffix != ".json":
        return False
    try:
        return json.dumps(read_json(a)) == json.dumps(read_json(b))
    except ResultFileError:
        return False


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as the JSON text result files hold (NumPy scalars and arrays allowed, NaN/inf refused, keys in
    their order), without a trailing newline; ``indent`` as in :func:`json.dumps` (2 for files people read,
    :data:`RESULT_INDENT` for bulk results)."""
    return json.dumps(data, indent=indent, sort_keys=False, default=_default, allow_nan=False)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> Path:
    """Serialise ``data`` as JSON (:func:`json_text`) and write it atomically, with a final newline."""
    return atomic_write_text(path, json_text(data, indent) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON result file, raising :class:`ResultFileError` with the path when it is corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"result file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"result file {path} is corrupt (not valid JSON): {exc}") from exc
