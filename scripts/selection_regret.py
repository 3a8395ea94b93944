"""How much dev score the single-run held-out learning-rate selection gives away (issue 19, rate checks).

For each (task, method) trained at several rates, each rate in its own one-rate run directory (as
``validation.finetune.rate_merge`` takes them), this compares the rate the held-out selection picks
(:func:`validation.finetune.lr_select.choose` on the selection runs' held-out scores, exactly as the merged
grid does) with the rate whose cells score best on the dev set, and prints the dev mean at each rate, the
two choices and the regret: dev mean at the dev-best rate minus dev mean at the chosen rate, with a paired
95 % t-interval over the seeds both rates have. The dev-best rate is chosen after seeing the dev scores, so
the regret is an upper bound on what a better selection rule could recover, not an estimate of it.

Usage (repository root)::

    python scripts/selection_regret.py --tasks stsb,mrpc,rte --methods lora,gelora,adalora,geolora \\
        reports/gpu/paper-minilm reports/gpu/paper-minilm-rates/{stsb,mrpc,rte}-r05 \\
        reports/gpu/paper-minilm-rates/{stsb,mrpc,rte}-r2

Descriptive only: no verdict uses it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import read_json
from validation.finetune.lr_select import choose, selection_path
from validation.finetune.stats import paired_difference


def _cells(run_dir: Path, task: str, method: str) -> dict[int, float]:
    out = {}
    for f in sorted((run_dir / "cells").glob(f"{task}__{method}__seed*.json")):
        rec = read_json(f)
        if rec.get("primary") is not None and math.isfinite(float(rec["primary"])):
            out[int(rec["seed"])] = float(rec["primary"])
    return out


def collect(dirs: Sequence[Path], task: str, method: str) -> dict[str, dict[str, Any]]:
    """``{rate key: {"heldout": score, "converged": bool | None, "dev": {seed: score}}}`` over ``dirs``."""
    rates: dict[str, dict[str, Any]] = {}
    for d in dirs:
        path = selection_path(d, task, method)
        if not path.exists():
            continue
        sel = read_json(path)
        dev = _cells(d, task, method)
        for key, score in (sel.get("scores") or {}).items():
            run = (sel.get("runs") or {}).get(key) or {}
            conv = (run.get("convergence") or {}).get("converged")
            rates[key] = {"heldout": score, "converged": conv, "dev": dev}
    return rates


def _mean(xs: dict[int, float]) -> float:
    return math.fsum(xs.values()) / len(xs)


def row(task: str, method: str, rates: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The selection's outcome for one (task, method), or None with fewer than two rates with dev cells."""
    usable = {k: v for k, v in rates.items() if v["dev"]}
    if len(usable) < 2:
        return None
    chosen = choose({k: v["heldout"] for k, v in usable.items()})
    dev_best = max(usable, key=lambda k: (_mean(usable[k]["dev"]), -float(k)))
    pd = paired_difference(usable[dev_best]["dev"], usable[chosen]["dev"], 0.95)
    return {
        "task": task,
        "method": method,
        "rates": sorted(usable, key=float),
        "heldout": {k: usable[k]["heldout"] for k in usable},
        "unconverged": sorted((k for k in usable if usable[k]["converged"] is False), key=float),
        "dev": {k: _mean(usable[k]["dev"]) for k in usable},
        "chosen": chosen,
        "dev_best": dev_best,
        "regret": pd,
    }


def _fmt(r: dict[str, Any]) -> str:
    cells = []
    for k in r["rates"]:
        mark = "*" if k == r["chosen"] else ""
        unconv = " (unconverged)" if k in r["unconverged"] else ""
        cells.append(f"{k}: {r['heldout'][k]:.4f} / {r['dev'][k]:.4f}{mark}{unconv}")
    pd = r["regret"]
    if r["chosen"] == r["dev_best"]:
        regret = "0 (the dev-best rate)"
    elif pd is None or pd["ci"] is None:
        regret = "no CI"
    else:
        regret = f"{pd['diff']:+.4f} [{pd['ci'][0]:+.4f}, {pd['ci'][1]:+.4f}] (n = {pd['n']})"
    return (
        f"| {r['task']} | {r['method']} | {'; '.join(cells)} | {r['chosen']} | {r['dev_best']} | {regret} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path, help="one-rate run directories (one rate each)")
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--methods", required=True)
    args = ap.parse_args(argv)
    rows = []
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            r = row(task, method, collect(args.run_dirs, task, method))
            if r is not None:
                rows.append(r)
    if not rows:
        print("no (task, method) with dev cells at two or more rates", file=sys.stderr)
        return 1
    print("| task | method | rate: held-out score / dev mean (* chosen) | chosen | dev-best | regret (dev) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(_fmt(r))
    hit = sum(r["chosen"] == r["dev_best"] for r in rows)
    decided = [
        r
        for r in rows
        if r["chosen"] != r["dev_best"] and r["regret"] and r["regret"]["ci"] and r["regret"]["ci"][0] > 0
    ]
    print(
        f"\nThe held-out selection picked the dev-best rate in {hit} of {len(rows)} (task, method) pairs; "
        f"the regret's interval excludes 0 in {len(decided)}"
        + (" (" + ", ".join(f"{r['task']}/{r['method']}" for r in decided) + ")." if decided else ".")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
