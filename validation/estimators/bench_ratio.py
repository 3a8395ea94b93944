"""Turn a pytest-benchmark JSON of paired runs into a Markdown table of peer / gelora time ratios.

Usage::

    python -m validation.estimators.bench_ratio bench_estimators.json [--stat min|mean|median]

Each benchmark group (one data set, estimator, n and D) holds a ``gelora`` member and one or more peers
(``extra_info["impl"]``: ``skdim``, ``dadapy``); groups without ``gelora`` or without any peer are left
out. A speed-up is ``peer time / gelora time`` (above 1: we are faster); a peer that has no such
estimator shows "–". A group may also hold ``gelora_point``, ours without the confidence interval
(``n_bootstrap=0``: the point estimate the peers return); it gets a row of its own, estimator
"<name>, point estimate", against the same peer timings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import read_json
from gelora.errors import ResultFileError

PEERS = ("skdim", "dadapy")
#: our members of a group and the estimator label of their rows
OURS = {"gelora": "", "gelora_point": ", point estimate"}


def ratio_rows(data: dict[str, Any], stat: str = "min") -> list[dict[str, Any]]:
    """One row per group with gelora and at least one peer: data, estimator, n, D, times (s), speed-ups.

    Parameters
    ----------
    data : dict
        A pytest-benchmark JSON document (``{"benchmarks": [...]}``).
    stat : {"min", "mean", "median"}
        Which timing statistic to compare.

    Returns
    -------
    list of dict
        Keys ``data`` (``extra_info["data"]``, "" if absent), ``estimator``, ``n``, ``D``, ``gelora`` and,
        per peer present, its time and ``speedup`` (skdim) / ``speedup_<peer>``; sorted by data,
        estimator, n, D. A ``gelora_point`` member gives a second row ("<estimator>, point estimate")
        whose ``gelora`` is that member's time.
    """
    if "benchmarks" not in data:
        raise ResultFileError("not a pytest-benchmark JSON: no 'benchmarks' list")
    groups: dict[str, dict[str, Any]] = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        impl = info.get("impl")
        if impl not in (*OURS, *PEERS):
            continue
        g = groups.setdefault(
            b["group"],
            {"data": info.get("data", ""), "estimator": info["estimator"], "n": info["n"], "D": info["D"]},
        )
        g[impl] = float(b["stats"][stat])
    rows = []
    for g in groups.values():
        peers = {p: g[p] for p in PEERS if p in g}
        if not peers:
            continue
        for ours, suffix in OURS.items():
            if ours not in g:
                continue
            row = {k: g[k] for k in ("data", "n", "D")}
            row["estimator"] = g["estimator"] + suffix
            row["gelora"] = g[ours]
            for p, t in peers.items():
                row[p] = t
                row["speedup" if p == "skdim" else f"speedup_{p}"] = t / g[ours]
            rows.append(row)
    return sorted(rows, key=lambda r: (r["data"], r["estimator"], r["n"], r["D"]))


def markdown_table(rows: list[dict[str, Any]], stat: str = "min") -> str:
    """Render :func:`ratio_rows` as a Markdown table (a ``data`` column when any row names its data)."""
    with_data = any(r["data"] for r in rows)
    head = ["data"] if with_data else []
    head += ["estimator", "n", "D", f"gelora {stat} (s)", f"skdim {stat} (s)", "speed-up (skdim / gelora)"]
    with_dadapy = any("dadapy" in r for r in rows)
    if with_dadapy:
        head += [f"dadapy {stat} (s)", "speed-up (dadapy / gelora)"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] * (1 + with_data) + ["---:"] * (len(head) - 1 - with_data)) + " |",
    ]
    for r in rows:
        cells = [r["data"]] if with_data else []
        cells += [r["estimator"], str(r["n"]), str(r["D"]), f"{r['gelora']:.3f}"]
        cells += [f"{r['skdim']:.3f}", f"{r['speedup']:.2f}x"] if "skdim" in r else ["–", "–"]
        if with_dadapy:
            cells += [f"{r['dadapy']:.3f}", f"{r['speedup_dadapy']:.2f}x"] if "dadapy" in r else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="peer / gelora ratio table from a pytest-benchmark JSON")
    p.add_argument("json", type=Path)
    p.add_argument("--stat", default="min", choices=["min", "mean", "median"])
    args = p.parse_args(argv)
    print(markdown_table(ratio_rows(read_json(args.json), args.stat), args.stat))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
