"""What of the paper-protocol campaign (issue 19) the committed run directories hold, as one table.

For every model and adapter rank found in the given run directories, one row per task of the campaign and one
column per method (the six of the protocol, then the two rank ablations): the number of finished cells whose
training converged by the held-out rule, out of the seeds asked for, with the unconverged ones named. It is
computed from the cells themselves (:func:`validation.finetune.grid.summarise`), so the table cannot drift
from the results; ``reports/gpu/COVERAGE.md`` is this module's output for the committed directories, and a
test regenerates it.

A second table (``--rates DIR...``, :func:`collect_rates`) covers the rate check: per adapter whose rate the
protocol selects (LoRA, AdaLoRA, GeLoRA, GeoLoRA), at which factors of its default rate the one-rate
directories hold cells (converged or not), and which (model, rank, task) has every adapter at the same three
or more factors with every seed; ``validation.finetune.rate_merge`` checks the same of the selection runs
before it merges.

Usage::

    python -m validation.finetune.coverage --out reports/gpu/COVERAGE.md \\
        reports/gpu/paper-minilm reports/gpu/paper-minilm-r2 reports/gpu/paper-mpnet reports/gpu/paper-mpnet-r2 \\
        --rates reports/gpu/paper-minilm reports/gpu/paper-minilm-r2 reports/gpu/paper-mpnet \\
        reports/gpu/paper-mpnet-r2 reports/gpu/paper-minilm-rates/{stsb,mrpc,rte}-r{05,2}

(the exact command of the committed file heads it)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_text
from gelora.errors import ConfigError
from validation.finetune.convergence import finite_or_none
from validation.finetune.runner import DEFAULT_MODEL_NAME, PAPER_METHODS, PROFILES
from validation.finetune.verdicts import CAMPAIGN_TASKS, GELORA

#: the tasks with offline data (GLUE train+dev, QNLI dev split, SQuAD dev split by article): C4's campaign
TASKS: tuple[str, ...] = CAMPAIGN_TASKS
#: the protocol's methods, then the two ablations of where the ranks go (of validation.finetune.ablations')
METHODS: tuple[str, ...] = PAPER_METHODS
ABLATIONS: tuple[str, ...] = ("gelora_permuted", "gelora_reversed")


def _summaries(
    run_dirs: Sequence[str | Path],
) -> Iterator[tuple[str | Path, dict[str, Any], tuple[str, int]]]:
    """Each run directory with its :func:`validation.finetune.grid.summarise` and its ``(model, lora_r)``;
    :class:`ConfigError` for a directory without ``grid.json``."""
    from validation.finetune.grid import summarise

    for d in run_dirs:
        if not (Path(d) / "grid.json").is_file():
            raise ConfigError(f"coverage: {d} holds no grid.json (not a run directory)")
        summary = summarise(d)
        profile = summary.get("profile") or {}
        yield d, summary, (str(profile.get("model") or DEFAULT_MODEL_NAME), int(profile.get("lora_r") or 0))


def collect(
    run_dirs: Sequence[str | Path],
) -> dict[tuple[str, int], dict[str, dict[str, dict[str, list[int]]]]]:
    """``{(model, lora_r): {task: {method: {"converged": seeds, "unconverged": seeds, "unrecorded": seeds,
    "no_score": seeds, "failed": seeds}}}}`` (``no_score``: the cell's primary score is missing or not
    finite, whatever its convergence record says; ``failed``: a planned cell with a failure record and no
    result in any of the directories).

    A cell found in several directories counts once (the seeds are a set per group).

    Raises
    ------
    ConfigError
        A directory without a grid plan (``grid.json``).
    """
    out: dict[tuple[str, int], dict[str, dict[str, dict[str, set[int]]]]] = {}
    for _, summary, key in _summaries(run_dirs):
        for task, by in (summary.get("table") or {}).items():
            for method, entry in by.items():
                slot = out.setdefault(key, {}).setdefault(task, {}).setdefault(method, _empty())
                for rec in entry.get("per_seed") or []:
                    state = {True: "converged", False: "unconverged"}.get(rec.get("converged"), "unrecorded")
                    if finite_or_none(rec.get("primary")) is None:
                        state = "no_score"  # as in the verdicts: a NaN or missing score is no result
                    slot[state].add(int(rec["seed"]))
        for miss in summary.get("missing") or []:
            if not str(miss.get("reason", "")).startswith("failed"):
                continue  # not run yet, held, interrupted, no offline data: nothing to name
            slot = out.setdefault(key, {}).setdefault(miss["task"], {}).setdefault(miss["method"], _empty())
            slot["failed"].add(int(miss["seed"]))
    for tasks in out.values():
        for by in tasks.values():
            for e in by.values():  # a failure another directory holds a result for is no failure
                e["failed"] -= set().union(*(v for k, v in e.items() if k != "failed"))
    return {
        k: {t: {m: {s: sorted(v) for s, v in e.items()} for m, e in by.items()} for t, by in tasks.items()}
        for k, tasks in out.items()
    }


#: the adapters whose learning rate the protocol selects among factors of its default (full fine-tuning and
#: head only, the ceiling and the floor, train at one rate)
RATE_METHODS: tuple[str, ...] = tuple(m for m in PAPER_METHODS if m not in ("full", "head_only"))


def collect_rates(
    run_dirs: Sequence[str | Path],
) -> dict[tuple[str, int], dict[str, dict[str, dict[float, list[int]]]]]:
    """``{(model, lora_r): {task: {method: {factor: seeds}}}}`` for :data:`RATE_METHODS`: the seeds of the
    finished cells with a finite score, converged or not, at each factor of the default rate, over
    paper-protocol one-rate run directories (``lr_select`` on, ``lr_grid`` of one factor; a cell found in
    several directories counts once).

    Raises
    ------
    ConfigError
        A directory without ``grid.json``, one that does not select its rate (not the paper protocol: its
        rates are not factors of the protocol's defaults), or one whose plan has several factors (a
        multi-rate or ``rate_merge``-d directory: give the one-rate directories it came from).
    """
    seen: dict[tuple[str, int], dict[str, dict[str, dict[float, set[int]]]]] = {}
    for d, summary, key in _summaries(run_dirs):
        profile = summary.get("profile") or {}
        if not profile.get("lr_select"):
            raise ConfigError(
                f"coverage --rates: {d} does not select its learning rate (not the paper protocol)"
            )
        factors = [float(f) for f in profile.get("lr_grid") or [1.0]]
        if len(factors) != 1:
            raise ConfigError(
                f"coverage --rates: {d} holds rates {factors}; give the one-rate directories it was merged from"
            )
        for task, by in (summary.get("table") or {}).items():
            for method, entry in by.items():
                if method not in RATE_METHODS:
                    continue
                slot = seen.setdefault(key, {}).setdefault(task, {}).setdefault(method, {})
                done = {
                    int(r["seed"])
                    for r in entry.get("per_seed") or []
                    if finite_or_none(r.get("primary")) is not None
                }
                slot.setdefault(factors[0], set()).update(done)
    return {
        k: {
            t: {m: {f: sorted(s) for f, s in sorted(by_f.items()) if s} for m, by_f in by.items()}
            for t, by in tasks.items()
        }
        for k, tasks in seen.items()
    }


def render_rates(
    rates: Mapping[tuple[str, int], Mapping[str, Mapping[str, Mapping[float, Sequence[int]]]]], seeds: int = 5
) -> str:
    """The rate-check table: per (model, rank, task) with a cell, each adapter's factors (``0.5x 1x 2x``; a
    factor with fewer than ``seeds`` cells of seeds ``0 .. seeds-1`` shows its count), and the tasks whose
    rate check has its cells: every adapter at the same three or more factors, each with ``seeds`` cells.
    (``rate_merge`` also needs each factor's finished selection run, which this table does not count.)"""
    lines = [
        "| model | r | task | " + " | ".join(RATE_METHODS) + " |",
        "|---|---|---|" + "---|" * len(RATE_METHODS),
    ]
    complete = []
    for model, r in sorted(rates):
        for task in TASKS:
            row = rates[(model, r)].get(task)
            if not row:
                continue
            # cells of the protocol's seeds per adapter and factor
            counts = [
                {f: sum(1 for s in ss if s < seeds) for f, ss in (row.get(m) or {}).items()}
                for m in RATE_METHODS
            ]
            cells = [
                " ".join(f"{f:g}x" + ("" if n >= seeds else f" ({n}/{seeds})") for f, n in by_f.items())
                or "·"
                for by_f in counts
            ]
            lines.append(f"| {model} | {r} | {task} | " + " | ".join(cells) + " |")
            sets = [{f for f, n in by_f.items() if n >= seeds} for by_f in counts]
            if len(sets[0]) >= 3 and all(s == sets[0] for s in sets):
                complete.append(f"{model} r = {r} {task}")
    lines += [
        "",
        f"Factors of each adapter's default rate with finished cells, converged or not ({seeds} seeds unless "
        "counted; the table above says which converged). Rate check complete (every adapter at the same three "
        "or more factors, all seeds): " + ("; ".join(complete) if complete else "none") + ".",
    ]
    return "\n".join(lines) + "\n"


def _empty() -> dict[str, set[int]]:
    return {"converged": set(), "unconverged": set(), "unrecorded": set(), "no_score": set(), "failed": set()}


def _entry(e: Mapping[str, list[int]] | None, seeds: int) -> str:
    if not e:
        return "·"
    good = [s for s in e["converged"] if s < seeds]
    text = str(len(good)) if len(good) == seeds else f"{len(good)}/{seeds}"
    bad = [s for s in e["unconverged"] if s < seeds]
    if bad:
        text += f" (unconverged: {', '.join(map(str, bad))})"
    if e["unrecorded"]:
        text += f" (convergence not recorded: {len(e['unrecorded'])})"
    bad = [s for s in e.get("no_score", []) if s < seeds]
    if bad:
        text += f" (no finite score: {', '.join(map(str, bad))})"
    bad = [s for s in e.get("failed", []) if s < seeds]
    if bad:
        text += f" (failed: {', '.join(map(str, bad))})"
    return text


#: methods without an adapter: their cells do not depend on the rank (trained once, at the protocol's)
RANK_FREE: tuple[str, ...] = ("full", "head_only")


def render(
    cov: Mapping[tuple[str, int], Mapping[str, Mapping[str, Any]]], seeds: int = 5, main_r: int | None = None
) -> str:
    """The Markdown table (one row per model, rank and task; ``·`` no cell, ``n/a`` a method without adapter
    at another rank) and the number of cells not yet run at the protocol's rank ``main_r`` (default: the
    paper profile's), the campaign of issue 19; a finished unconverged cell, or one without a finite score,
    counts as run. Of those, the ones on a task where GeLoRA has run every seed and kept none (no converged
    cell with a finite score) are counted apart: every GeLoRA pair of such a task is undetermined whatever
    they score."""
    main_r = int(PROFILES["paper"].lora_r) if main_r is None else main_r
    cols = (*METHODS, *ABLATIONS)
    lines = [
        "| model | r | task | " + " | ".join(cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    left = {m: 0 for m in METHODS}
    moot = {m: 0 for m in METHODS}
    for model, r in sorted(cov):
        by = cov[(model, r)]
        for task in TASKS:
            row = by.get(task, {})
            cells = [
                "n/a" if r != main_r and m in RANK_FREE and not row.get(m) else _entry(row.get(m), seeds)
                for m in cols
            ]
            lines.append(f"| {model} | {r} | {task} | " + " | ".join(cells) + " |")
            if r != main_r:
                continue
            # GeLoRA ran every seed and kept none (the paper profile keeps converged cells with a finite score
            # only; collect() files a converged cell without one under no_score): each of the task's pairs is
            # undetermined whatever the other cells score (C4's pair without a common seed)
            gel = row.get(GELORA) or {}
            settled = len(_run_seeds(gel, seeds)) == seeds
            settled = settled and not any(s < seeds for s in gel.get("converged", []))
            for m in METHODS:
                n_left = seeds - len(_run_seeds(row.get(m) or {}, seeds))
                left[m] += n_left
                if settled:
                    moot[m] += n_left
    n_moot = sum(moot.values())
    lines += [
        "",
        f"Cells whose training converged (held-out rule), out of {seeds} seeds. Not yet run at r = {main_r} "
        f"(the protocol's rank) on these models and tasks: {sum(left.values())} cells ("
        + ", ".join(f"{m} {left[m]}" for m in METHODS)
        + "), before their selection runs, the ablations and other ranks"
        + (
            f"; {n_moot} of them ("
            + ", ".join(f"{m} {moot[m]}" for m in METHODS if moot[m])
            + f") on tasks where GeLoRA has run all {seeds} seeds and none converged with a finite score, so "
            "that every GeLoRA pair there stays undetermined whatever they score (C4 keeps such cells only; "
            "full fine-tuning and the head alone still decide whether the task counts as informative)."
            if n_moot
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def _run_seeds(e: Mapping[str, Sequence[int]], seeds: int) -> set[int]:
    """The seeds below ``seeds`` with a finished cell (every bucket but a failure: a failed cell is trained
    again)."""
    return {s for k, seeds_of in e.items() if k != "failed" for s in seeds_of if s < seeds}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="paper-protocol run directories (each with grid.json)")
    p.add_argument("--seeds", type=int, default=5, help="seeds the protocol asks for (default 5)")
    p.add_argument("--out", type=Path, default=None, help="Markdown file to write (default: print)")
    p.add_argument(
        "--rates",
        nargs="+",
        default=None,
        metavar="DIR",
        help="one-rate run directories: add the rate-check table",
    )
    a = p.parse_args(argv)
    try:
        table = render(collect(a.run_dirs), seeds=a.seeds)
        if a.rates:
            table += "\n## Rate check (0.5x and 2x beside the default rate)\n\n" + render_rates(
                collect_rates(a.rates), seeds=a.seeds
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python -m validation.finetune.coverage " + " ".join(
        [
            *(["--seeds", str(a.seeds)] if a.seeds != 5 else []),
            *(str(d) for d in a.run_dirs),
            *(["--rates", *map(str, a.rates)] if a.rates else []),
        ]
    )
    text = f"# Campaign coverage (issue 19)\n\nGenerated by `{command}` (a test regenerates it).\n\n{table}"
    if a.out is None:
        print(text, end="")
    else:
        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
