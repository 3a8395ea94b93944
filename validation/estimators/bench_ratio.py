"""Turn a pytest-benchmark JSON of paired runs into a Markdown table of gelora / skdim time ratios.

Usage::

    python -m validation.estimators.bench_ratio bench_estimators.json [--stat min|mean|median]

Each benchmark group (``"<estimator> n=<n> D=<D>"``) must hold one ``gelora`` and one ``skdim`` member
(``extra_info["impl"]``); groups missing either are listed as incomplete.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import read_json
from gelora.errors import ResultFileError


def ratio_rows(data: dict[str, Any], stat: str = "min") -> list[dict[str, Any]]:
    """One row per complete group: estimator, n, D, both times (s) and ``speedup = skdim / gelora``.

    Parameters
    ----------
    data : dict
        A pytest-benchmark JSON document (``{"benchmarks": [...]}``).
    stat : {"min", "mean", "median"}
        Which timing statistic to compare.

    Returns
    -------
    list of dict
        Sorted by estimator, n, D.
    """
    if "benchmarks" not in data:
        raise ResultFileError("not a pytest-benchmark JSON: no 'benchmarks' list")
    groups: dict[str, dict[str, Any]] = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        impl = info.get("impl")
        if impl not in ("gelora", "skdim"):
            continue
        g = groups.setdefault(b["group"], {"estimator": info["estimator"], "n": info["n"], "D": info["D"]})
        g[impl] = float(b["stats"][stat])
    rows = []
    for g in groups.values():
        if "gelora" in g and "skdim" in g:
            g["speedup"] = g["skdim"] / g["gelora"]
            rows.append(g)
    return sorted(rows, key=lambda r: (r["estimator"], r["n"], r["D"]))


def markdown_table(rows: list[dict[str, Any]], stat: str = "min") -> str:
    """Render :func:`ratio_rows` as a Markdown table."""
    lines = [
        f"| estimator | n | D | gelora {stat} (s) | skdim {stat} (s) | speed-up (skdim / gelora) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['estimator']} | {r['n']} | {r['D']} | {r['gelora']:.3f} | {r['skdim']:.3f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="gelora / skdim ratio table from a pytest-benchmark JSON")
    p.add_argument("json", type=Path)
    p.add_argument("--stat", default="min", choices=["min", "mean", "median"])
    args = p.parse_args(argv)
    print(markdown_table(ratio_rows(read_json(args.json), args.stat), args.stat))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
