"""How much dev score the single-run held-out learning-rate selection gives away (issue 19, rate checks).

For each (task, method) trained at several rates, each rate in its own one-rate run directory (as
``validation.finetune.rate_merge`` takes them), this compares the rate the held-out selection picks
(:func:`validation.finetune.lr_select.choose` over every rate's held-out score, as the merged grid does)
with the rate whose cells score best on the dev set (mean over the seeds every rate has; ties: the smaller
rate), and prints the dev mean at each rate, the two choices and the regret: dev mean at the dev-best rate
minus dev mean at the chosen rate, with a paired 95 % t-interval over those seeds. Every cell counts, also
one whose seed a verdict drops as unconverged (the table marks a rate whose selection run did not
converge).

The dev-best rate is picked after seeing the dev scores, as the best of several noisy means, so the regret
is an upward-biased estimate of what a better selection rule could recover, and its interval, built after
that choice, is optimistic; with several (task, method) pairs no correction for multiplicity is applied.
Descriptive only: no verdict uses it.

Usage (repository root)::

    python scripts/selection_regret.py --tasks stsb,mrpc,rte --methods lora,gelora,adalora,geolora \\
        reports/gpu/paper-minilm reports/gpu/paper-minilm-rates/{stsb,mrpc,rte}-r05 \\
        reports/gpu/paper-minilm-rates/{stsb,mrpc,rte}-r2

Exit status: 0 with a table, 1 when no (task, method) has dev cells at two or more rates, 2 on input that
is not a set of one-rate run directories (a directory whose selection holds several rates or is unfinished,
a rate found in two directories).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import read_json
from gelora.errors import ConfigError
from validation.finetune.grid import _finite_or_none, summarise
from validation.finetune.lr_select import choose, selection_path
from validation.finetune.stats import paired_difference


@functools.cache
def _table(run_dir: Path) -> dict[str, Any]:
    """``summarise(run_dir)["table"]``, read once per directory (every (task, method) looks it up)."""
    return summarise(run_dir).get("table") or {}


def _cells(run_dir: Path, task: str, method: str) -> dict[int, float]:
    """``{seed: primary}`` of the finished cells of ``method`` on ``task`` in ``run_dir`` (finite scores), as
    the report's summary reads them."""
    entry = (_table(run_dir).get(task) or {}).get(method) or {}
    return {int(r["seed"]): r["primary"] for r in entry.get("per_seed") or [] if r.get("primary") is not None}


def collect(dirs: Sequence[Path], task: str, method: str) -> dict[str, dict[str, Any]]:
    """``{rate key: {"heldout": score | None, "converged": bool | None, "dev": {seed: score}, "dir": str}}``.

    Raises
    ------
    ConfigError
        A directory's selection record of ``task``/``method`` holds more than one rate or is unfinished, or a
        rate is found in two directories (not a set of one-rate runs).
    """
    rates: dict[str, dict[str, Any]] = {}
    for d in dirs:
        path = selection_path(d, task, method)
        if not path.exists():
            continue
        sel = read_json(path)
        grid = sel.get("grid") or []
        if len(grid) != 1 or not sel.get("done", True):
            raise ConfigError(
                f"{path}: a one-rate, finished selection is expected (grid {grid}, done {sel.get('done')}); "
                "pass the one-rate run directories, not a merged one"
            )
        scores = sel.get("scores") or {}
        for key, score in scores.items():
            if key in rates:
                raise ConfigError(f"{task}/{method}: rate {key} in both {rates[key]['dir']} and {d}")
            run = (sel.get("runs") or {}).get(key) or {}
            rates[key] = {
                "heldout": _finite_or_none(score),
                "converged": (run.get("convergence") or {}).get("converged"),
                "dev": _cells(d, task, method),
                "dir": str(d),
            }
    return rates


def _mean(xs: dict[int, float], seeds: Sequence[int]) -> float:
    return math.fsum(xs[s] for s in seeds) / len(seeds)


def row(task: str, method: str, rates: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The selection's outcome for one (task, method), or ``(None, why)`` when it cannot be compared.

    Returns
    -------
    (dict or None, str)
        ``{"task", "method", "rates", "heldout", "unconverged", "dev", "seeds", "chosen", "dev_best",
        "regret"}`` (``regret``: :func:`validation.finetune.stats.paired_difference` of the dev-best rate's
        cells minus the chosen rate's, over ``seeds``) and ``""``; or ``None`` and the reason.
    """
    if len(rates) < 2:
        return None, f"{len(rates)} rate(s)"
    if any(not v["dev"] for v in rates.values()):
        return None, "a rate without dev cells: " + ", ".join(k for k, v in rates.items() if not v["dev"])
    try:
        chosen = choose({k: v["heldout"] for k, v in rates.items()})  # over every rate, as the merge does
    except ConfigError as e:
        return None, str(e)
    seeds = sorted(set.intersection(*(set(v["dev"]) for v in rates.values())))
    if not seeds:
        return None, "no seed common to every rate"
    dev = {k: _mean(v["dev"], seeds) for k, v in rates.items()}
    dev_best = max(dev, key=lambda k: (dev[k], -float(k)))  # ties: the smaller rate
    pd = paired_difference(
        {s: rates[dev_best]["dev"][s] for s in seeds}, {s: rates[chosen]["dev"][s] for s in seeds}, 0.95
    )
    return {
        "task": task,
        "method": method,
        "rates": sorted(rates, key=float),
        "heldout": {k: v["heldout"] for k, v in rates.items()},
        "unconverged": sorted((k for k, v in rates.items() if v["converged"] is False), key=float),
        "dev": dev,
        "seeds": seeds,
        "chosen": chosen,
        "dev_best": dev_best,
        "regret": pd,
    }, ""


def _fmt(r: dict[str, Any]) -> str:
    """One Markdown table row of :func:`row`'s record."""
    cells = []
    for k in r["rates"]:
        h = r["heldout"][k]
        mark = "*" if k == r["chosen"] else ""
        unconv = " (unconverged)" if k in r["unconverged"] else ""
        cells.append(f"{k}: {'none' if h is None else f'{h:.4f}'} / {r['dev'][k]:.4f}{mark}{unconv}")
    pd = r["regret"]
    if r["chosen"] == r["dev_best"]:
        regret = "0 (the dev-best rate)"
    elif pd is None or pd["ci"] is None:
        regret = f"{pd['diff']:+.4f}, no CI (n = {pd['n']})" if pd else "no common seed"
    else:
        regret = f"{pd['diff']:+.4f} [{pd['ci'][0]:+.4f}, {pd['ci'][1]:+.4f}] (n = {pd['n']})"
    return (
        f"| {r['task']} | {r['method']} | {'; '.join(cells)} | {r['chosen']} | {r['dev_best']} | {regret} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path, help="one-rate run directories (one rate each)")
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--methods", required=True)
    args = ap.parse_args(argv)
    rows = []
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            try:
                rates = collect(args.run_dirs, task, method)
            except ConfigError as e:
                print(f"selection_regret: {e}", file=sys.stderr)
                return 2
            r, why = row(task, method, rates)
            if r is None:
                if rates:
                    print(f"{task}/{method}: left out ({why})", file=sys.stderr)
                continue
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
        f"the regret's interval lies above 0 in {len(decided)}"
        + (" (" + ", ".join(f"{r['task']}/{r['method']}" for r in decided) + ")." if decided else ".")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
