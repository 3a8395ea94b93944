r"""Rewrite committed JSON result files at :data:`gelora._io.RESULT_INDENT` (lossless).

Grid cells, selection records and report files were written with a 2-space indentation until 2026-12-01;
the whitespace was 27-60 % of their bytes, and the working tree, results included, travels to the GPU
machine within 64 MiB. This script re-serialises each ``*.json`` file found under the given folders (or
given directly) with the same keys, order and values, one value per line without indentation, checks that
the new text parses back to the same object, and leaves every other file alone. Files already in that form,
and one-line files, are skipped; the run prints how many it rewrote and the bytes saved.

Give it only what the code writes at ``RESULT_INDENT`` (else the next write puts the old form back): the
``cells`` and ``lr_select`` folders of committed run directories, ``reports/full/report.json`` and the
report's section files. Not a run directory on the GPU machine (its checkpoint manifests are hashed by
``ckpt_carry``), not the ID-profile files whose SHA-256 the report records::

    python scripts/compact_results.py $(find reports/gpu -type d \( -name cells -o -name lr_select \)) \
        reports/full/report.json reports/full/raw/{ablations,estimators,grid,model_profile,theory,trajectories}.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from gelora._io import RESULT_INDENT, atomic_write_text, json_indent_of, json_text
from gelora.errors import ResultFileError


def json_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``*.json`` file under the given folders (sorted), plus the given files themselves."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.rglob("*.json")))
        elif p.suffix == ".json" and p.is_file():
            out.append(p)
        else:
            raise ResultFileError(f"{p} is neither a folder nor a JSON file")
    return out


def compact_text(text: str) -> str:
    """``text`` re-serialised at :data:`RESULT_INDENT` (same object; the trailing newline kept as it was)."""
    obj = json.loads(text)
    new = json_text(obj, RESULT_INDENT) + ("\n" if text.endswith("\n") else "")
    if json.loads(new) != obj:  # pragma: no cover - json round-trips its own output
        raise ResultFileError("re-serialised JSON does not parse back to the same object")
    return new


def compact(path: Path, dry_run: bool = False) -> int:
    """Rewrite one file; the number of bytes saved (0: already compact or one line, nothing written)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path} cannot be read as UTF-8 text: {exc}") from exc
    try:
        if json_indent_of(text) is None:
            json.loads(text)  # one line: no indentation to take out, only checked
            return 0
        new = compact_text(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path} is not valid JSON: {exc}") from exc
    except ValueError as exc:  # NaN or infinity, which result files never hold (allow_nan=False)
        raise ResultFileError(f"{path} holds a value strict JSON cannot write (NaN/inf): {exc}") from exc
    if new == text:
        return 0
    if not dry_run:
        atomic_write_text(path, new)
    return len(text.encode("utf-8")) - len(new.encode("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python scripts/compact_results.py", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("paths", nargs="+", type=Path, help="folders (searched recursively) or JSON files")
    ap.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    a = ap.parse_args(argv)
    try:
        files = json_files(a.paths)
        saved = [compact(f, a.dry_run) for f in files]
    except ResultFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = sum(1 for s in saved if s)
    verb = "would rewrite" if a.dry_run else "rewrote"
    print(f"{verb} {n} of {len(files)} JSON file(s), {sum(saved) / 2**20:.2f} MiB saved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
