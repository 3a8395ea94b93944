"""Summary of scripts/gpu/pace_bench.sh: the pace of one process against the number of processes on the GPU.

Reads ``N<n>_<i>.jsonl`` (one line per method, scripts/adalora_step_bench.py) and ``N<n>_<i>.rc`` of a
folder. Per method and N: the median over the N copies of each copy's median step time (ms), the pace of a
process (steps/s, 1000 / that), the summed pace of the N copies, and the pace relative to one process alone
(``vs N=1``) beside what processor sharing would give (``1 / N``: the GPU's throughput split equally). A copy
that printed no line for a method (it failed, or the batch's timeout stopped it first) is counted in that
row's ``missing``; the lines a copy printed before it failed or was stopped count (the bench prints each
method's line when that method is done), and ``stopped`` counts the copies of the N that exited non-zero.

Usage: ``python3 scripts/gpu/pace_summary.py FOLDER [--out pace.json] [--mps 1]``
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^N(\d+)_(\d+)\.jsonl$")


def read_folder(folder: str | Path) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(method, N): {"step_ms": [per-copy medians], "missing": int, "stopped": int}}`` of a pace_bench.sh
    folder (``stopped``: the copies of that N whose ``.rc`` is missing or not 0).

    Raises
    ------
    FileNotFoundError
        The folder does not exist or holds no ``N<n>_<i>.jsonl``.
    """
    root = Path(folder)
    files = sorted(p for p in root.glob("N*_*.jsonl") if _NAME.match(p.name)) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no N<n>_<i>.jsonl in {root}")
    copies: dict[int, list[Path]] = {}
    for p in files:
        m = _NAME.match(p.name)
        assert m is not None
        copies.setdefault(int(m.group(1)), []).append(p)
    methods: list[str] = []
    per_copy: dict[Path, dict[str, float]] = {}
    stopped: dict[int, int] = {}
    for n, paths in copies.items():
        for p in paths:
            rc_file = p.with_suffix(".rc")
            if not rc_file.exists() or rc_file.read_text().strip() != "0":
                stopped[n] = stopped.get(n, 0) + 1
            lines: dict[str, float] = {}
            for line in p.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    ms = float(rec["step_ms_median"])
                    method = str(rec["method"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                if math.isfinite(ms) and ms > 0:
                    lines[method] = ms
                    if method not in methods:
                        methods.append(method)
            per_copy[p] = lines
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for n, paths in copies.items():
        for method in methods:
            got = [per_copy[p][method] for p in paths if method in per_copy[p]]
            out[(method, n)] = {
                "step_ms": got,
                "missing": len(paths) - len(got),
                "stopped": stopped.get(n, 0),
            }
    return out


def summarise(data: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method and N (N ascending): ``step_ms`` (median over copies), ``pace`` (steps/s a
    process), ``total`` (N x pace), ``vs_alone`` (pace / pace at N = 1, None without an N = 1 row),
    ``sharing`` (1 / N), ``copies``, ``missing`` and ``stopped``."""
    rows = []
    alone = {m: statistics.median(v["step_ms"]) for (m, n), v in data.items() if n == 1 and v["step_ms"]}
    for method, n in sorted(data, key=lambda k: (k[0], k[1])):
        v = data[(method, n)]
        ms = statistics.median(v["step_ms"]) if v["step_ms"] else None
        pace = None if ms is None else 1000.0 / ms
        rows.append(
            {
                "method": method,
                "n": n,
                "step_ms": ms,
                "pace": pace,
                "total": None if pace is None else n * pace,
                "vs_alone": alone[method] / ms if ms is not None and method in alone else None,
                "sharing": 1 / n,
                "copies": len(v["step_ms"]),
                "missing": v["missing"],
                "stopped": v["stopped"],
            }
        )
    return rows


def _f(x: float | None, fmt: str) -> str:
    """``x`` formatted, or a dash for None."""
    return "—" if x is None else format(x, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    out = [
        "| method | N | step ms (median of copies) | steps/s a process | summed | vs N=1 | 1/N | copies |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        copies = f"{r['copies']}" + (f" ({r['missing']} missing)" if r["missing"] else "")
        out.append(
            f"| {r['method']} | {r['n']} | {_f(r['step_ms'], '.1f')} | {_f(r['pace'], '.2f')} | "
            f"{_f(r['total'], '.1f')} | {_f(r['vs_alone'], '.2f')} | {r['sharing']:.2f} | {copies} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the table of FOLDER (and write ``--out``); 2 without such a folder, 3 when no copy printed a step
    time."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--mps", default=None, help="recorded as is (pace_bench.sh passes MPS)")
    args = p.parse_args(argv)
    try:
        rows = summarise(read_folder(args.folder))
    except FileNotFoundError as exc:
        print(f"pace_summary: {exc}", file=sys.stderr)
        return 2
    if not any(r["step_ms"] is not None for r in rows):
        print(
            f"pace_summary: no copy in {args.folder} printed a step time (see its .log files)",
            file=sys.stderr,
        )
        return 3
    print(table(rows))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"schema": "gelora.pace_bench/1", "mps": args.mps, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
