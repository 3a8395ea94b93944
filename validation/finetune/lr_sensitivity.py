"""Learning-rate sensitivity of the GLUE grid: metric per method and learning rate, and each method's best.

Usage::

    python -m validation.finetune.lr_sensitivity reports/gpu/grid reports/gpu/grid-sst2 ... \
        [--json OUT.json] [--markdown OUT.md]

Each run directory (``validation.finetune.grid``) holds cells at one profile; a method's learning rate there is
``profile.learning_rate * profile.lr_multipliers.get(method, 1)``. The runs are merged into one table
keyed by (method, learning rate), one column per task with the primary metric's mean ± sample std over
seeds; a configuration in which some seed failed (diverged: NaN predictions, or constant ones for which
the Pearson correlation is undefined) shows how many. The second table gives, per method and task, the
best learning rate among those **every** seed finished, judged on the same dev set that reports the
metric: an oracle choice, an upper bound applied to every method alike, not a tuned result.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json, atomic_write_text
from gelora.errors import ConfigError

SCHEMA = "gelora.validation.lr_sensitivity/1"


def collect(run_dirs: Sequence[str | Path], summarise: Any = None) -> list[dict[str, Any]]:
    """One row per (task, method, learning rate) over the run directories.

    Parameters
    ----------
    run_dirs : sequence of path
        Grid run directories (``validation.finetune.grid``). Runs must differ only in learning rates and tasks;
        a (task, method, learning rate) found in two directories raises ``ConfigError``.
    summarise : callable, optional
        ``summarise(run_dir) -> dict`` (default :func:`validation.finetune.grid.summarise`; injectable for tests).

    Returns
    -------
    list of dict
        ``task``, ``method``, ``lr``, ``factor``, ``metric``, ``mean``, ``std``, ``n`` (finished seeds),
        ``failed`` (seeds that failed), ``run`` (directory), sorted by method, lr, task.
    """
    if summarise is None:
        from validation.finetune.grid import summarise
    rows: dict[tuple[str, str, float], dict[str, Any]] = {}
    for run in run_dirs:
        s = summarise(Path(run))
        profile = s["profile"]
        base = float(profile["learning_rate"])
        factors = {m: float(f) for m, f in (profile.get("lr_multipliers") or {}).items()}
        failed: dict[tuple[str, str], int] = {}
        for miss in s.get("missing", []):
            if str(miss.get("reason", "")).startswith("failed"):
                tm = (str(miss["task"]), str(miss["method"]))
                failed[tm] = failed.get(tm, 0) + 1
        tasks_methods = {(t, m) for t, by_m in s["table"].items() for m in by_m} | set(failed)
        for task, method in sorted(tasks_methods):
            if method == "full":
                continue
            factor = factors.get(method, 1.0)
            lr = base * factor
            key = (str(task), str(method), round(lr, 12))
            if key in rows:
                raise ConfigError(
                    f"{task}/{method} at lr {lr:g} appears in both {rows[key]['run']} and {run}"
                )
            metric = s["primary_metric"].get(task)
            stats = s["table"].get(task, {}).get(method, {}).get("metrics", {}).get(metric, {})
            rows[key] = {
                "task": task,
                "method": method,
                "lr": lr,
                "factor": factor,
                "metric": metric,
                "mean": stats.get("mean"),
                "std": stats.get("std"),
                "n": int(stats.get("n", 0)),
                "failed": failed.get((task, method), 0),
                "run": str(run),
            }
    return sorted(rows.values(), key=lambda r: (r["method"], r["lr"], r["task"]))


def best(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, task): the row with the highest mean among those with no failed seed."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["failed"] or r["mean"] is None or r["n"] == 0:
            continue
        key = (r["method"], r["task"])
        if key not in out or r["mean"] > out[key]["mean"]:
            out[key] = r
    return sorted(out.values(), key=lambda r: (r["method"], r["task"]))


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r["mean"] is None:
        return f"diverged {r['failed']}/{r['failed'] + r['n']}"
    text = f"{r['mean']:.3f} ± {r['std']:.3f}" if r["n"] > 1 else f"{r['mean']:.3f}"
    return text + (f" ({r['failed']} of {r['failed'] + r['n']} diverged)" if r["failed"] else "")


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The sensitivity table, then each method's best learning rate per task and their mean."""
    tasks = sorted({r["task"] for r in rows})
    metrics = {r["task"]: r["metric"] for r in rows}
    head = "| method | lr | " + " | ".join(f"{t} ({metrics[t]})" for t in tasks) + " |"
    lines = [head, "|---|---|" + "---|" * len(tasks)]
    configs = sorted({(r["method"], r["lr"]) for r in rows})
    by_key = {(r["method"], r["lr"], r["task"]): r for r in rows}
    for method, lr in configs:
        cells = [_cell(by_key.get((method, lr, t))) for t in tasks]
        lines.append(f"| {method} | {lr:.3g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| method | " + " | ".join(tasks) + " | mean over tasks |",
        "|---|" + "---|" * (len(tasks) + 1),
    ]
    bests = best(rows)
    for method in sorted({r["method"] for r in rows}):
        mine = {r["task"]: r for r in bests if r["method"] == method}
        cells = [f"{mine[t]['mean']:.3f} at {mine[t]['lr']:.3g}" if t in mine else "" for t in tasks]
        means = [mine[t]["mean"] for t in tasks if t in mine]
        avg = f"{sum(means) / len(means):.3f}" if len(means) == len(tasks) else ""
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {avg} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m validation.finetune.lr_sensitivity", description=__doc__.split("\n")[0]
    )
    p.add_argument("runs", nargs="+", help="grid run directories")
    p.add_argument("--json", type=Path, default=None, help="write rows and bests as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    args = p.parse_args(argv)
    rows = collect(args.runs)
    md = render_markdown(rows)
    print(md, end="")
    if args.json is not None:
        atomic_write_json(args.json, {"schema": SCHEMA, "runs": args.runs, "rows": rows, "best": best(rows)})
    if args.markdown is not None:
        atomic_write_text(args.markdown, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
