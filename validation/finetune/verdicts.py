"""Verdicts of a fine-tuning grid: informative tasks, paired GeLoRA - baseline differences, exclusions.

The rules, in the order they apply (docs/validation.md, "How a verdict is reached"):

1. **Usable seeds.** A cell whose convergence record says ``converged: False`` is never used: the seed is
   dropped from every pair that cell is part of and listed ("unconverged"). A cell without a convergence
   record (``converged`` missing or ``None``: grids from before the paper protocol) is listed as
   "convergence not recorded"; under the ``paper`` profile it is excluded like an unconverged one (the
   paper protocol always records convergence, so a missing record means the cell did not follow it),
   under any other profile it is kept. A cell without a primary score, or with a non-finite one (a NaN
   Pearson of a constant prediction), is dropped and listed the same way ("no primary score",
   "non-finite primary score").
2. **Informative tasks.** A task can tell methods apart only if fine-tuning moves the model at all. Its
   ceiling is full fine-tuning (``full``), its floor training the classifier head only (``head_only``). The
   task is *informative* when the ceiling is **clearly** above the floor: the paired difference
   full - head_only over their common usable seeds has a two-sided 95% Student-t interval lying entirely
   above 0 (equivalently, a one-sided test at the 2.5% level rejects "full <= head_only"; no minimum
   effect size is imposed). A task without a ``full`` or a ``head_only`` run is uninformative ("no
   ceiling run (full)", "no floor run (head_only)" or, both missing, "no ceiling/floor run"); one with fewer than two common usable seeds cannot show "clearly" and is
   uninformative too. Uninformative tasks are excluded from the verdict and listed with their reason.
3. **Pairs.** For every task and baseline (``lora``, ``adalora``, ``geolora`` and any other method present
   except ``gelora``, ``full`` and ``head_only``), GeLoRA - baseline over the common usable seeds with a
   95% t-interval (:func:`validation.finetune.stats.paired_difference`): "better" when the interval is
   above 0, "worse" below, "tie" when it holds 0, "undetermined" with fewer than two seeds. Under the
   ``paper`` profile a pair is also "undetermined" while either method has not run every seed of its task
   (:func:`planned_seeds`: the seeds GeLoRA, a baseline, the ceiling or the floor ran or planned, its cells
   and the summary's ``missing`` ones; the ablations' seeds do not count; a seed dropped as unconverged has
   run): a pair is decided on the protocol's whole seed set or not at all, never on the part that has run so
   far (a grid run in shards, a failed cell not yet rerun). Such a pair records ``partial`` (``{method:
   {"ran", "of", "missing"}}``) and no difference or interval; the count lines name it ("not every seed
   run").
4. **Average.** A GLUE-style average per method: the mean over tasks of each task's mean primary score
   (usable seeds), over the GLUE tasks where every compared method has a result (under the ``paper``
   profile: on every seed of the task); the tasks that entered and those left out (with the reason) are
   named.

Every function is pure: the same summary gives the same verdicts, so the report re-derives them from
``report.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from validation.finetune.convergence import finite_or_none
from validation.finetune.stats import holm, paired_difference

GELORA = "gelora"
CEILING = "full"
FLOOR = "head_only"
#: the profile whose cells must record convergence
PAPER_PROFILE = "paper"
#: baselines listed first (others follow alphabetically)
CORE_BASELINES: tuple[str, ...] = ("lora", "adalora", "geolora")
#: tasks that enter a GLUE-style average (SQuAD scores are percentages of another benchmark)
GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")

UNINFORMATIVE_NO_REFERENCE = "uninformative: no ceiling/floor run"
#: the reason when only one of the two reference runs is missing (names the one to run)
UNINFORMATIVE_NO_CEILING = "uninformative: no ceiling run (full)"
UNINFORMATIVE_NO_FLOOR = "uninformative: no floor run (head_only)"


def _per_seed(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-seed records of a summary entry (``per_seed``; none in summaries of an older layout)."""
    recs = entry.get("per_seed")
    if isinstance(recs, list):
        return [dict(r) for r in recs]
    return []


def _usable(rec: Mapping[str, Any], paper: bool) -> tuple[bool, str | None]:
    """Whether one cell may enter a comparison, and why not / what to list."""
    if rec.get("primary") is None:
        return False, "no primary score"
    if finite_or_none(rec["primary"]) is None:
        return False, "non-finite primary score"
    conv = rec.get("converged")
    if conv is False:
        return False, "unconverged"
    if conv is None:
        return (not paper), "convergence not recorded"
    return True, None


def _profile_name(summary: Mapping[str, Any]) -> Any:
    """A grid summary's profile name (flat, or inside its ``profile`` mapping; None without one)."""
    profile = summary.get("profile_name")
    if profile is None and isinstance(summary.get("profile"), Mapping):
        profile = summary["profile"].get("name")
    return profile


def usable_scores(entry: Mapping[str, Any] | None, paper: bool = True) -> dict[int, float]:
    """``{seed: primary}`` of the cells of one summary entry that may enter a comparison (converged, or
    convergence not recorded outside the paper protocol) and have a finite score: the seeds a task's
    ceiling, floor and pairs are computed from. Empty for ``None`` or an entry without such cells."""
    return {
        int(rec["seed"]): float(rec["primary"])
        for rec in _per_seed(entry or {})
        if rec.get("seed") is not None and _usable(rec, paper)[0]
    }


def usable_mean(entry: Mapping[str, Any] | None, paper: bool = True) -> float | None:
    """Mean of :func:`usable_scores` as the verdicts take a ceiling's or floor's mean (None without a
    usable cell)."""
    return _mean(list(usable_scores(entry, paper).values()))


def _scores(
    summary: Mapping[str, Any], task: str, method: str, paper: bool, exclusions: list[dict[str, Any]]
) -> dict[int, float] | None:
    """``{seed: primary}`` of the usable cells of ``task``/``method`` (``None`` when the method was not run);
    each unusable or not-recorded cell is appended to ``exclusions`` once."""
    entry = ((summary.get("table") or {}).get(task) or {}).get(method)
    if entry is None:
        return None
    for rec in _per_seed(entry):
        ok, why = _usable(rec, paper)
        if why is not None:
            item = {
                "task": task,
                "method": method,
                "seed": int(rec["seed"]),
                "reason": why,
                "excluded": not ok,
            }
            if item not in exclusions:
                exclusions.append(item)
    return usable_scores(entry, paper)


def _mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def has_score(entry: Mapping[str, Any]) -> bool:
    """Whether a summary entry has a cell with a score (usable or not): the rule by which a later directory
    wins a task and method when summaries are merged (:func:`merge_summaries`)."""
    return any(r.get("primary") is not None for r in _per_seed(entry))


def no_common_seed() -> dict[str, Any]:
    """The pair of two methods that both ran a task but share no usable seed (every cell of one dropped, or
    their usable seeds disjoint): undetermined, ``n`` 0, no difference or interval."""
    return {"diff": None, "ci": None, "n": 0, "seeds": [], "verdict": "undetermined"}


def undetermined_partial(pair: Mapping[str, Any], short: Mapping[str, Any]) -> dict[str, Any]:
    """``pair`` left undetermined because a method has not run every seed of its task: no difference or
    interval over the part run so far, its common seeds kept, ``partial`` = ``short`` (:func:`_shortfall`)."""
    return {
        "diff": None,
        "ci": None,
        "n": pair["n"],
        "seeds": pair["seeds"],
        "verdict": "undetermined",
        "partial": dict(short),
    }


def _seeds_of(entry: Mapping[str, Any]) -> set[int]:
    """The seeds a summary entry has a cell for (usable or not)."""
    return {int(r["seed"]) for r in _per_seed(entry) if r.get("seed") is not None}


def planned_seeds(summary: Mapping[str, Any], task: str) -> set[int]:
    """Every seed of ``task`` that GeLoRA, a baseline, the ceiling or the floor ran (a cell, usable or not)
    or planned without a result yet (the summary's ``missing``): the task's seed set, against which a
    method's seeds count as complete. GeLoRA's ablations (their own section) do not add seeds."""
    from validation.finetune.methods import ABLATION_METHODS

    by = (summary.get("table") or {}).get(task) or {}
    seeds = {s for m, e in by.items() if m not in ABLATION_METHODS for s in _seeds_of(e)}
    seeds |= {
        int(x["seed"])
        for x in summary.get("missing") or []
        if x.get("task") == task and x.get("method") not in ABLATION_METHODS and x.get("seed") is not None
    }
    return seeds


def _shortfall(summary: Mapping[str, Any], task: str, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{method: {"ran", "of", "missing"}}`` for each of ``methods`` that has not run every seed of
    :func:`planned_seeds` (empty: all have)."""
    planned = planned_seeds(summary, task)
    by = (summary.get("table") or {}).get(task) or {}
    out = {}
    for m in methods:
        ran = _seeds_of(by.get(m) or {})
        if planned - ran:
            out[m] = {"ran": len(ran & planned), "of": len(planned), "missing": sorted(planned - ran)}
    return out


def partial_reason(pair: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str | None:
    """``"AdaLoRA: 3 of 5 seeds run"`` for a pair left undetermined because a method has not run every seed
    of its task (:func:`compute_verdicts`' ``partial``); None for any other pair. ``labels`` maps a method
    to the name to print (default: the method)."""
    partial = pair.get("partial") or {}
    if not partial:
        return None
    names = labels or {}
    return "; ".join(
        f"{names.get(m, m)}: {rec['ran']} of {rec['of']} seeds run" for m, rec in partial.items()
    )


def baselines_of(methods: Sequence[str]) -> list[str]:
    """The baselines GeLoRA is compared with among ``methods`` (core ones first, then the rest sorted).

    GeLoRA's ablations (:data:`validation.finetune.methods.ABLATION_METHODS`) are not baselines: C4 is
    about LoRA and adaptive LoRA methods; the ablations have their own section
    (:mod:`validation.finetune.ablation_analysis`)."""
    from validation.finetune.methods import ABLATION_METHODS

    skip = {GELORA, CEILING, FLOOR, *ABLATION_METHODS}
    rest = sorted(m for m in methods if m not in skip and m not in CORE_BASELINES)
    return [m for m in CORE_BASELINES if m in methods] + rest


def compute_verdicts(summary: Mapping[str, Any], level: float = 0.95) -> dict[str, Any]:
    """Per-task ceiling/floor, informative flag, GeLoRA - baseline pairs, exclusions and the average.

    Parameters
    ----------
    summary : mapping
        :func:`validation.finetune.grid.summarise`'s output (or :func:`compact_summary` of it): ``table``
        ``[task][method]["per_seed"]`` (records with ``seed``, ``primary``, ``converged``), ``profile_name``
        (or ``profile["name"]``), ``primary_metric``.
    level : float
        Confidence level of every interval (default 0.95).

    Returns
    -------
    dict
        ``profile``, ``paper`` (bool), ``tasks[task]`` = ``{"metric", "ceiling", "floor"`` (mean primary
        score over usable seeds or None), ``"floor_gap"`` (the paired full - head_only record or None),
        ``"informative"`` (bool), ``"reason"`` (why not; None when informative), ``"pairs"``
        ``{baseline: paired record + "excluded" (task uninformative)}}``; ``baselines``; ``not_run``
        (``{"task", "reason"}`` of planned tasks without any result because their data is not available
        offline, :func:`not_run_tasks`); ``exclusions``
        (cells: ``task``, ``method``, ``seed``, ``reason`` ("unconverged", "convergence not recorded", "no
        primary score", "non-finite primary score") and ``excluded`` (whether the cell was dropped));
        ``uninformative`` (``{"task", "reason"}``); ``counts[baseline]`` (``better``/``tie``/``worse``/``undetermined`` over
        informative tasks, ``n``, ``line``); ``line`` (all baselines together); ``average``.
    """
    table = summary.get("table") or {}
    profile = _profile_name(summary)
    paper = profile == PAPER_PROFILE
    metrics = summary.get("primary_metric") or {}
    methods_present = sorted({m for by in table.values() for m in by})
    baselines = baselines_of(methods_present)
    exclusions: list[dict[str, Any]] = []
    tasks: dict[str, Any] = {}
    uninformative: list[dict[str, str]] = []
    for task in sorted(table):
        full = _scores(summary, task, CEILING, paper, exclusions)
        floor = _scores(summary, task, FLOOR, paper, exclusions)
        gel = _scores(summary, task, GELORA, paper, exclusions)
        rec: dict[str, Any] = {
            "metric": metrics.get(task),
            "ceiling": None if not full else _mean(list(full.values())),
            "floor": None if not floor else _mean(list(floor.values())),
            "floor_gap": None,
            "informative": False,
            "reason": None,
            "pairs": {},
        }
        if full is None or floor is None:
            rec["reason"] = (
                UNINFORMATIVE_NO_REFERENCE
                if full is None and floor is None
                else UNINFORMATIVE_NO_CEILING
                if full is None
                else UNINFORMATIVE_NO_FLOOR
            )
        else:
            gap = paired_difference(full, floor, level)
            rec["floor_gap"] = gap
            if gap is None or gap["ci"] is None:
                n = 0 if gap is None else gap["n"]
                rec["reason"] = f"uninformative: {n} common usable ceiling/floor seed(s), 2 needed for a CI"
            elif gap["ci"][0] > 0:
                rec["informative"] = True
            else:
                rec["reason"] = (
                    f"uninformative: ceiling not clearly above floor (full - head_only {gap['diff']:+.3f}, "
                    f"95% CI [{gap['ci'][0]:+.3f}, {gap['ci'][1]:+.3f}])"
                )
        if rec["reason"]:
            uninformative.append({"task": task, "reason": rec["reason"]})
        # the methods of this task's pairs that have not run every seed of it (paper profile only)
        short_of_seeds = _shortfall(summary, task, [GELORA, *baselines]) if paper else {}
        for b in baselines:
            base = _scores(summary, task, b, paper, exclusions)
            if gel is None or base is None:
                continue
            pd = paired_difference(gel, base, level)
            if pd is None:
                pd = no_common_seed()
            short = {m: short_of_seeds[m] for m in (GELORA, b) if m in short_of_seeds}
            if short:
                # decided on the whole seed set or not at all: no difference over the part run so far
                pd = undetermined_partial(pd, short)
            pd["excluded"] = not rec["informative"]
            rec["pairs"][b] = pd
        tasks[task] = rec
    counts: dict[str, Any] = {}
    for b in baselines:
        c: dict[str, Any] = {"better": 0, "tie": 0, "worse": 0, "undetermined": 0, "partial": 0}
        for rec in tasks.values():
            pd = rec["pairs"].get(b)
            if rec["informative"] and pd is not None:
                c[pd["verdict"]] += 1
                c["partial"] += bool(pd.get("partial"))
        # "partial" is a kind of "undetermined", not a fifth outcome
        n = sum(c[k] for k in ("better", "tie", "worse", "undetermined"))
        c["n"] = n
        c["line"] = claim_line(c, b)
        counts[b] = c
    out = {
        "profile": profile,
        "paper": paper,
        "level": level,
        "baselines": baselines,
        "tasks": tasks,
        "not_run": not_run_tasks(summary),
        "exclusions": exclusions,
        "uninformative": uninformative,
        "counts": counts,
        "average": glue_average(summary, [GELORA, *baselines], exclusions=None),
    }
    total: dict[str, Any] = {
        k: sum(counts[b][k] for b in baselines) for k in ("better", "tie", "worse", "undetermined", "partial")
    }
    total["n"] = sum(counts[b]["n"] for b in baselines)
    out["line"] = claim_line(total, None)
    return out


def not_run_tasks(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{"task", "reason"}]``: planned tasks the grid could not run (no offline data: MNLI, QQP), from the
    summary's ``not_run_tasks``; a task with a result in ``table`` is never listed."""
    table = summary.get("table") or {}
    out: list[dict[str, str]] = []
    for rec in summary.get("not_run_tasks") or []:
        task = rec.get("task")
        if task and task not in table and all(x["task"] != task for x in out):
            out.append({"task": str(task), "reason": str(rec.get("reason") or "not run")})
    return out


#: the tasks the paper-protocol campaign runs on each model: every task with offline data (GLUE train+dev,
#: QNLI's dev split, SQuAD's dev split by article; validation/finetune/coverage.py's table has the same rows)
CAMPAIGN_TASKS: tuple[str, ...] = ("cola", "sst2", "mrpc", "stsb", "rte", "qnli", "squad_v1", "squad_v2")


def campaign_gaps(summary: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """``[(task, methods)]``: the methods of C4 (GeLoRA, the core baselines, the ceiling and the floor) that
    have no cell at all on a campaign task (:data:`CAMPAIGN_TASKS`) in a merged paper-protocol summary,
    neither run nor planned; every method when the task has none. A planned cell without a result is in
    ``summary["missing"]`` instead, and a task without offline data in :func:`not_run_tasks`."""
    table = summary.get("table") or {}
    planned = {(m["task"], m["method"]) for m in summary.get("missing") or []}
    wanted = (GELORA, *CORE_BASELINES, CEILING, FLOOR)
    out = []
    for task in CAMPAIGN_TASKS:
        by = table.get(task) or {}
        gone = [m for m in wanted if m not in by and (task, m) not in planned]
        if gone:
            out.append((task, gone))
    return out


def claim_line(c: Mapping[str, int], baseline: str | None) -> str:
    """``"better on k, tie on m, worse on j of n informative tasks"`` (``baseline`` named when given)."""
    head = f"GeLoRA vs {baseline}: " if baseline else ""
    unit = "informative tasks" if baseline else "informative task/baseline pairs"
    text = f"{head}better on {c['better']}, tie on {c['tie']}, worse on {c['worse']} of {c['n']} {unit}"
    k = int(c.get("undetermined") or 0)
    short = int(c.get("partial") or 0)
    why = (
        [f"{k - short} fewer than 2 usable seeds" if short else "fewer than 2 usable seeds"]
        if k > short
        else []
    )
    if short:
        why.append(f"{short} not every seed run" if k > short else "not every seed run")
    if k:
        text += f" ({k} undetermined: {', '.join(why)})"
    return text


def glue_average(
    summary: Mapping[str, Any], methods: Sequence[str], exclusions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """GLUE-style average per method over the GLUE tasks where every method in ``methods`` has a result.

    Each task enters with each method's mean primary score over its usable seeds (the rule of
    :func:`compute_verdicts`). Returns ``{"methods": {method: average}, "tasks": [tasks that entered],
    "left_out": {task: reason}}`` (a GLUE task the grid could not run for lack of offline data is left out
    with that reason, and under the paper profile one where a method has not run every seed of the task; a
    method without any cell on the task, neither run nor planned, is named "not run: ...", one whose cells are
    all unusable "no usable result for ...");
    ``methods`` maps to an empty dict when no task qualifies.
    """
    table = summary.get("table") or {}
    profile = summary.get("profile_name")
    if profile is None and isinstance(summary.get("profile"), Mapping):
        profile = summary["profile"].get("name")
    paper = profile == PAPER_PROFILE
    scratch: list[dict[str, Any]] = [] if exclusions is None else exclusions
    entered: list[str] = []
    left_out: dict[str, str] = {}
    per_task: dict[str, dict[str, float]] = {}
    planned = summary.get("missing") or []
    for task in sorted(table):
        if task not in GLUE_TASKS:
            left_out[task] = "not a GLUE task"
            continue
        means: dict[str, float] = {}
        lacking = []
        absent = []
        for m in methods:
            sc = _scores(summary, task, m, paper, scratch)
            mu = _mean(list(sc.values())) if sc else None
            if sc is None and not any(x["task"] == task and x["method"] == m for x in planned):
                absent.append(m)  # no cell at all, neither run nor planned
            elif mu is None:
                lacking.append(m)
            else:
                means[m] = mu
        if lacking or absent:
            left_out[task] = "; ".join(
                [f"not run: {', '.join(absent)}"] * bool(absent)
                + [f"no usable result for {', '.join(lacking)}"] * bool(lacking)
            )
            continue
        short = _shortfall(summary, task, methods) if paper else {}
        if short:
            # a mean over the seeds run so far would sit beside means over the whole seed set
            left_out[task] = f"not every seed run ({partial_reason({'partial': short})})"
            continue
        entered.append(task)
        per_task[task] = means
    for rec in not_run_tasks(summary):
        if rec["task"] in GLUE_TASKS:
            left_out[rec["task"]] = rec["reason"]
    avg = {m: math.fsum(per_task[t][m] for t in entered) / len(entered) for m in methods} if entered else {}
    return {"methods": avg, "tasks": entered, "left_out": left_out, "per_task": per_task}


def compact_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`compute_verdicts` and the report's figures need from a summary (``report.json`` size).

    Keeps ``profile_name``, ``primary_metric``, ``run_dir``, ``not_run_tasks``, ``missing`` (planned cells
    without a result: they belong to the task's seed set, :func:`planned_seeds`) and per task x method
    ``per_seed`` (seed, primary, converged, convergence rule, train/eval loss, learning rate, lr_selection,
    mean adapter parameters), ``loss_curve`` and ``budget_params``.
    """
    profile = summary.get("profile_name")
    if profile is None and isinstance(summary.get("profile"), Mapping):
        profile = summary["profile"].get("name")
    table: dict[str, dict[str, Any]] = {}
    for t, by in (summary.get("table") or {}).items():
        for m, e in by.items():
            recs = []
            for r in _per_seed(e):
                conv = r.get("convergence") or {}
                recs.append(
                    {
                        "seed": r.get("seed"),
                        "primary": r.get("primary"),
                        "converged": r.get("converged"),
                        "rule": conv.get("rule") if isinstance(conv, Mapping) else None,
                        "train_loss": r.get("train_loss"),
                        "eval_loss": r.get("eval_loss"),
                        "learning_rate": r.get("learning_rate"),
                        "lr_selection": r.get("lr_selection"),
                        "mean_adapter_params": r.get("mean_adapter_params"),
                    }
                )
            table.setdefault(t, {})[m] = {
                "per_seed": recs,
                "loss_curve": e.get("loss_curve"),
                "budget_params": e.get("budget_params"),
            }
    return {
        "profile_name": profile,
        "primary_metric": dict(summary.get("primary_metric") or {}),
        "run_dir": summary.get("run_dir"),
        "table": table,
        "not_run_tasks": [dict(x) for x in summary.get("not_run_tasks") or []],
        "missing": [dict(x) for x in summary.get("missing") or []],
    }


def merge_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge (compact) summaries of several run directories of one protocol: per task x method the last
    directory with a result wins (as :func:`validation.report.build.merge_grids` does for rows).

    ``sources`` names each directory; ``origin[task][method]`` the one a pair came from; ``not_run_tasks``
    the tasks no directory could run (no offline data); ``missing`` the planned cells no directory has.
    """
    table: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, Any]] = {}
    metrics: dict[str, Any] = {}
    names = {s.get("profile_name") for s in summaries}
    not_run: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for rec in s.get("not_run_tasks") or []:
            not_run.setdefault(rec["task"], dict(rec))
        metrics.update(s.get("primary_metric") or {})
        for t, by in (s.get("table") or {}).items():
            for m, e in by.items():
                if has_score(e) or m not in table.get(t, {}):
                    table.setdefault(t, {})[m] = e
                    origin.setdefault(t, {})[m] = s.get("run_dir")
    # planned cells without a result in any directory (a later directory may hold what an earlier one lacks)
    have = {(t, m, s) for t, by in table.items() for m, e in by.items() for s in _seeds_of(e)}
    missing = {
        (x["task"], x["method"], int(x["seed"])): dict(x)
        for s in summaries
        for x in s.get("missing") or []
        if (x["task"], x["method"], int(x["seed"])) not in have
    }
    return {
        "profile_name": names.pop() if len(names) == 1 else None,
        "primary_metric": metrics,
        "sources": [s.get("run_dir") for s in summaries],
        "origin": origin,
        "table": table,
        # a task not run in one directory but trained in another is not "not run"
        "not_run_tasks": [rec for task, rec in not_run.items() if task not in table],
        "missing": [missing[k] for k in sorted(missing)],
    }


def verdicts_from_grid(run_dir: str | Path, level: float = 0.95) -> dict[str, Any]:
    """:func:`compute_verdicts` of one run directory (reads it with
    :func:`validation.finetune.grid.summarise`; :class:`gelora.errors.ResultFileError` when corrupt)."""
    from validation.finetune.grid import summarise

    return compute_verdicts(summarise(run_dir), level)


def familywise(
    decided: Sequence[tuple[str, str, Mapping[str, Any]]], alpha: float = 0.05
) -> tuple[list[tuple[str, str, Mapping[str, Any]]], list[tuple[str, str, Mapping[str, Any]]]]:
    """Decided pairs ``(task label, baseline, paired record)`` read family-wise.

    Returns the pairs that carry a p-value (``tested``) and those of them that stay decided under Holm's
    step-down with family-wise error ``alpha`` (``kept``, :func:`validation.finetune.stats.holm`), both in
    input order.
    """
    tested = [q for q in decided if q[2].get("p") is not None]
    keep = holm([float(q[2]["p"]) for q in tested], alpha)
    return tested, [q for q, k in zip(tested, keep, strict=True) if k]


def format_verdicts(v: Mapping[str, Any]) -> str:
    """Plain-text account: per task ceiling/floor and pairs, the per-baseline lines, exclusions, average."""
    lines = [
        f"profile {v.get('profile')} ({'paper protocol' if v.get('paper') else 'not the paper protocol'})"
    ]
    for t, rec in v["tasks"].items():
        state = "informative" if rec["informative"] else rec["reason"]
        lines.append(f"  {t}: ceiling {rec['ceiling']}, floor {rec['floor']}: {state}")
        for b, pd in rec["pairs"].items():
            ci = "no CI" if pd["ci"] is None else f"[{pd['ci'][0]:+.4f}, {pd['ci'][1]:+.4f}]"
            diff = "n/a" if pd["diff"] is None else f"{pd['diff']:+.4f}"
            p = "" if pd.get("p") is None else f" p={pd['p']:.2g}"
            partial = partial_reason(pd)
            lines.append(
                f"    gelora - {b}: {diff} {ci} n={pd['n']}{p} {pd['verdict']}"
                + (f" ({partial})" if partial else "")
                + (" (excluded: task uninformative)" if pd["excluded"] else "")
            )
    for rec in v.get("not_run") or []:
        lines.append(f"  {rec['task']}: {rec['reason']}")
    lines += [f"  {c['line']}" for c in v["counts"].values()]
    decided = [
        (t, b, pd)
        for t, rec in v["tasks"].items()
        for b, pd in rec["pairs"].items()
        if rec["informative"] and pd["verdict"] != "undetermined"
    ]
    tested, kept = familywise(decided)
    if tested:
        lines.append(
            f"  family-wise (Holm, 5% over these {len(tested)} decided pairs): "
            + (", ".join(f"{t}/{b} {pd['verdict']}" for t, b, pd in kept) if kept else "none stays decided")
        )
    for e in v["exclusions"]:
        lines.append(
            f"  {'excluded' if e['excluded'] else 'listed'}: {e['task']}/{e['method']}/seed {e['seed']}: "
            f"{e['reason']}"
        )
    avg = v["average"]
    if avg["tasks"]:
        lines.append(
            "  average over "
            + ", ".join(avg["tasks"])
            + ": "
            + ", ".join(f"{m} {x:.4f}" for m, x in avg["methods"].items())
        )
    for t, why in avg["left_out"].items():
        lines.append(f"  average leaves out {t}: {why}")
    return "\n".join(lines)


def pair_lines(summary: Mapping[str, Any], a: str, b: str, level: float = 0.95) -> list[str]:
    """``a - b`` paired over the usable common seeds of every task where both methods ran, one line each
    (for comparisons the verdicts do not make, e.g. an adapter against full fine-tuning).

    Parameters
    ----------
    summary : mapping
        A grid summary (:func:`validation.finetune.grid.summarise`).
    a, b : str
        Method names (``lora``, ``full``, ...).
    level : float
        Confidence level of the paired t-interval.

    Returns
    -------
    list of str
        ``"<task>: <a> - <b> <diff> [<lo>, <hi>] n=<n> p=<p> <verdict>; <a> lower on <k> of <n> seeds"``
        per task, in task order; a task where the two share fewer than two usable seeds says so, and under
        the paper profile one where either has not run every seed of the task (:func:`planned_seeds`) says
        "undetermined" and how many seeds each has run, as :func:`compute_verdicts` does (not for a GeLoRA
        ablation, which its section compares on the seeds present).
    """
    from validation.finetune.methods import ABLATION_METHODS

    paper = _profile_name(summary) == PAPER_PROFILE
    out = []
    for task, by in (summary.get("table") or {}).items():
        if a not in by or b not in by:
            continue
        # C4's rule; the ablation section compares on the seeds present, and so does --pair for an ablation
        ablation = a in ABLATION_METHODS or b in ABLATION_METHODS
        short = _shortfall(summary, task, [a, b]) if paper and not ablation else {}
        if short:
            out.append(f"{task}: {a} - {b}: undetermined ({partial_reason({'partial': short})})")
            continue
        x, y = usable_scores(by[a], paper), usable_scores(by[b], paper)
        pd = paired_difference(x, y, level)
        if pd is None or pd["ci"] is None:
            out.append(f"{task}: {a} - {b}: fewer than two usable common seeds")
            continue
        lower = sum(x[s] < y[s] for s in pd["seeds"])
        p = "n/a" if pd["p"] is None else f"{pd['p']:.2g}"
        out.append(
            f"{task}: {a} - {b} {pd['diff']:+.4f} [{pd['ci'][0]:+.4f}, {pd['ci'][1]:+.4f}] n={pd['n']} p={p} "
            f"{pd['verdict']}; {a} lower on {lower} of {pd['n']} seeds"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.finetune.verdicts RUN_DIR [--pair A-B ...]``: print the verdicts of a grid
    directory, then each requested pair ``A - B`` per task (:func:`pair_lines`)."""
    import argparse

    from gelora.errors import GeLoRAError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("run_dir")
    ap.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="A-B",
        help="also print method A - method B per task, paired over usable seeds (e.g. lora-full; split at "
        "the first '-'); repeatable",
    )
    args = ap.parse_args(argv)
    pairs = []
    for item in args.pair:
        a, sep, b = item.partition("-")
        if not (sep and a and b):
            ap.error(f"--pair takes two method names joined by '-', e.g. lora-full; got {item!r}")
        pairs.append((a, b))
    try:
        from validation.finetune.grid import summarise

        summary = summarise(args.run_dir)
    except GeLoRAError as exc:
        print(f"error: {exc}")
        return 2
    known = sorted({m for by in (summary.get("table") or {}).values() for m in by})
    unknown = sorted({m for pair in pairs for m in pair if m not in known})
    if unknown:
        print(
            f"error: --pair names method(s) {', '.join(unknown)} not in {args.run_dir} (it has {', '.join(known)})"
        )
        return 2
    print(format_verdicts(compute_verdicts(summary)))
    for a, b in pairs:
        lines = pair_lines(summary, a, b)
        print("\n".join(lines) if lines else f"{a} - {b}: no task has both methods")
    return 0


__all__ = [
    "CAMPAIGN_TASKS",
    "CEILING",
    "FLOOR",
    "GELORA",
    "PAPER_PROFILE",
    "baselines_of",
    "campaign_gaps",
    "claim_line",
    "compact_summary",
    "compute_verdicts",
    "familywise",
    "format_verdicts",
    "glue_average",
    "has_score",
    "merge_summaries",
    "no_common_seed",
    "not_run_tasks",
    "pair_lines",
    "partial_reason",
    "planned_seeds",
    "undetermined_partial",
    "usable_mean",
    "usable_scores",
    "verdicts_from_grid",
]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
