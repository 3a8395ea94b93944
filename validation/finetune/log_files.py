"""The logs of committed run directories, stored gzip-compressed.

A run directory on the GPU host writes plain ``logs/<run>.log`` files (the triage reads them while the runs
train). Once merged into the repository (:mod:`validation.finetune.merge_runs`) nothing reads them but people,
and every device call carries the whole working tree within a 64-MiB limit: on 2026-12-02 the 870 committed
logs were 5.5 MiB as a tar, 0.6 MiB gzip-compressed, of a 36.5-MiB tree. So a committed log is stored as
``logs/<run>.log.gz`` (no file name, mtime 0, level 9, the header's OS byte always 3, "Unix": the same text
gives the same bytes with a given zlib, whatever the Python version or system), and :func:`log_text` reads
either form; merges compare logs by text, not by bytes. ``zcat logs/<run>.log.gz`` (or ``zless``) shows one.

Usage (converts every ``logs/*.log`` of the given run directories in place, atomically; a ``.log`` whose
``.log.gz`` already holds the same text is removed, a different one is refused)::

    python -m validation.finetune.log_files compress DIR [DIR ...] [--dry-run]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

from gelora._io import atomic_write_bytes
from gelora.errors import ResultFileError

#: suffix of a committed (compressed) log
GZ_SUFFIX = ".log.gz"
#: suffix of a log as a run writes it
PLAIN_SUFFIX = ".log"


def is_log(path: Path) -> bool:
    """Whether ``path`` is named as a log, plain or compressed."""
    return path.name.endswith(PLAIN_SUFFIX) or path.name.endswith(GZ_SUFFIX)


def log_stem(name: str) -> str:
    """``stsb__lora__seed0`` of ``stsb__lora__seed0.log`` or ``stsb__lora__seed0.log.gz``."""
    for suffix in (GZ_SUFFIX, PLAIN_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"{name!r} is not a log name (.log or .log.gz)")


def log_text(path: str | Path) -> bytes:
    """The text (bytes) of a log, plain or compressed.

    Raises
    ------
    ResultFileError
        A ``.log.gz`` that is not valid gzip data.
    """
    path = Path(path)
    data = path.read_bytes()
    if not path.name.endswith(GZ_SUFFIX):
        return data
    if not data:  # gzip.decompress(b"") is b"": an empty file would read as an empty log
        raise ResultFileError(f"{path} is not a valid gzip file: it is empty")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ResultFileError(f"{path} is not a valid gzip file: {exc}") from exc


#: the gzip header's OS byte of every committed log ("Unix"); Python 3.11-3.12 write zlib's own (3 on Linux,
#: 19 on macOS, 10/11 on Windows), 3.10 and 3.13+ write 255 (CPython gh-112346)
OS_BYTE = 3


def compressed(text: bytes) -> bytes:
    """``text`` as the bytes of a committed ``.log.gz``: the same text gives the same bytes with a given zlib
    (gzip header with no name, mtime 0, level 9's flags and :data:`OS_BYTE`)."""
    out = bytearray(gzip.compress(text, compresslevel=9, mtime=0))
    out[9] = OS_BYTE
    return bytes(out)


def write_log(path: str | Path, text: bytes) -> Path:
    """Write ``text`` atomically to ``path`` (a ``.log.gz`` name: compressed)."""
    path = Path(path)
    if not path.name.endswith(GZ_SUFFIX):
        raise ValueError(f"{path} is not a committed log name (.log.gz)")
    return atomic_write_bytes(path, compressed(text))


def compress_logs(run_dir: str | Path, *, dry_run: bool = False) -> list[str]:
    """Replace every ``logs/*.log`` of ``run_dir`` by its ``.log.gz`` (module docstring).

    The compressed file is written and read back before the plain one is removed, so an interrupted run
    leaves both (the next run removes the plain one). Returns the names converted (or to convert).

    Raises
    ------
    ResultFileError
        A ``.log.gz`` of the same name already holds another text: nothing is converted.
    """
    logs = Path(run_dir) / "logs"
    plain = sorted(p for p in logs.glob(f"*{PLAIN_SUFFIX}") if p.is_file()) if logs.is_dir() else []
    for p in plain:
        gz = p.with_name(log_stem(p.name) + GZ_SUFFIX)
        if gz.exists() and log_text(gz) != p.read_bytes():
            raise ResultFileError(f"{gz} exists with another text than {p}: nothing converted")
    if dry_run:
        return [p.name for p in plain]
    for p in plain:
        gz = p.with_name(log_stem(p.name) + GZ_SUFFIX)
        text = p.read_bytes()
        if not gz.exists():
            write_log(gz, text)
        if log_text(gz) != text:  # pragma: no cover - a write that does not read back
            raise ResultFileError(f"{gz} does not read back as {p}; {p} kept")
        p.unlink()
    return [p.name for p in plain]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.log_files",
        description="Store the logs of committed run directories gzip-compressed (logs/*.log -> *.log.gz).",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compress", help="convert every logs/*.log of the given run directories")
    c.add_argument("run_dirs", type=Path, nargs="+")
    c.add_argument("--dry-run", action="store_true", help="list, write nothing")
    args = ap.parse_args(argv)
    try:
        for d in args.run_dirs:
            if not d.is_dir():
                raise ResultFileError(f"{d} is not a directory")
            done = compress_logs(d, dry_run=args.dry_run)
            print(f"{d}: {'would compress' if args.dry_run else 'compressed'} {len(done)} log(s)")
    except (ResultFileError, OSError) as exc:
        print(f"log_files: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "GZ_SUFFIX",
    "OS_BYTE",
    "PLAIN_SUFFIX",
    "compress_logs",
    "compressed",
    "is_log",
    "log_stem",
    "log_text",
    "main",
    "write_log",
]
