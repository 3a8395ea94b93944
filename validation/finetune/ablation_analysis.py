"""Paired analysis of GeLoRA's ablations in a grid directory: GeLoRA minus each ablation, per task and model.

Every ablation of :data:`validation.finetune.ablations.ABLATIONS` is compared with its reference
(``gelora``; ``gelora_literal`` for ``lora_literal``) by the per-seed difference of the primary metric
(:func:`validation.finetune.stats.paired_difference`: same seeds, 95 % Student-t interval), per
(model, task). A positive difference means the reference (GeLoRA) scored higher. Each question then gets a
one-line verdict: on how many of the informative tasks the reference is better, tied or worse. The
rearrangements of GeLoRA's ranks are also paired with uniform LoRA of the same budget (``Ablation.controls``:
``controls`` and ``control_verdicts``, LoRA − rearrangement).
Both groups are also read family-wise, as C4's pairs are: Holm's step-down at 5 % over the pairs that
enter the verdict counts (``familywise``, ``control_familywise``).

Informativeness (whether a task separates methods at all, e.g. not every method at chance) is not
computed here: pass ``informative_tasks`` (``--informative rte,mrpc``); without it every task counts and
the verdict says "informativeness not assessed".

Command line::

    python -m validation.finetune.ablation_analysis RUN_DIR [RUN_DIR ...] [--out JSON] [--figure PNG]
        [--informative TASK,TASK]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gelora.errors import ConfigError, ResultFileError

SCHEMA = "gelora.validation.ablations/1"
#: family-wise error of the Holm reading over the verdicts' pairs (as C4's)
FAMILYWISE_ALPHA = 0.05


def _profile_key(cell: dict[str, Any]) -> str:
    """The cell's profile as a pairing key: the settings that change results
    (:func:`validation.finetune.grid.profile_key`, its name aside), with only its own task's overrides
    (another task's schedule does not change this cell's training)."""
    from validation.finetune.grid import profile_key

    prof = ((cell.get("config") or {}).get("profile")) or {}
    key = profile_key({k: v for k, v in prof.items() if k != "name"}, [str(cell.get("task"))])
    return json.dumps(key, sort_keys=True, default=str)


def _finite_score(cell: dict[str, Any]) -> bool:
    """The cell has a finite primary score (a NaN Pearson of a constant prediction is not one)."""
    from validation.finetune.convergence import finite_or_none

    return finite_or_none(cell.get("primary")) is not None


def _usable(cell: dict[str, Any]) -> bool:
    """A finite primary score and no ``converged: False`` in the cell's convergence record (as in
    :func:`validation.finetune.verdicts.usable_scores`)."""
    conv = ((cell.get("train") or {}).get("convergence") or {}).get("converged")
    return _finite_score(cell) and conv is not False


def load_cells(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every finished cell of the grid directories (``cells/*.json``, failure records skipped).

    Raises
    ------
    ResultFileError
        A directory without ``cells/`` or a corrupt cell file.
    """
    from validation.finetune.runner import read_cell

    cells = []
    for d in run_dirs:
        cdir = Path(d) / "cells"
        if not cdir.is_dir():
            raise ResultFileError(f"{d} is not a grid directory (no cells/ folder)")
        for p in sorted(cdir.glob("*.json")):
            if not p.name.endswith(".failed.json"):
                cell = read_cell(p)
                cell["_source"] = str(d)
                cells.append(cell)
    return cells


def _who(reference: str) -> str:
    """The reference as the verdict lines name it (``GeLoRA``, ``LoRA``, else its method name)."""
    return {"gelora": "GeLoRA", "lora": "LoRA"}.get(reference, reference)


def _verdict_line(question: str, reference: str, counts: dict[str, int], n: int, assessed: bool) -> str:
    """ "<question>: <reference> better on a, tie on b, worse on c [, undetermined on d] of n ... task(s)"."""
    who = _who(reference)
    parts = [f"better on {counts['better']}", f"tie on {counts['tie']}", f"worse on {counts['worse']}"]
    if counts["undetermined"]:
        parts.append(f"undetermined (fewer than 2 paired seeds) on {counts['undetermined']}")
    scope = f"of {n} informative task(s)" if assessed else f"of {n} task(s) (informativeness not assessed)"
    return f"{question}: {who} {', '.join(parts)} {scope}"


def _model_label(cell: Mapping[str, Any]) -> str:
    """The model a cell names, as the grid summaries name it: the profile's model, the runner's default
    model when the profile names none (its ``config.model`` then reads ``bundled:...``), else
    ``config.model``."""
    from validation.finetune.runner import DEFAULT_MODEL_NAME

    cfg = cell.get("config") or {}
    prof = cfg.get("profile")
    if isinstance(prof, Mapping) and "model" in prof:
        return str(prof["model"] or DEFAULT_MODEL_NAME)
    return str(cfg.get("model") or "unknown model")


def _pair_row(
    head: dict[str, Any],
    question: str,
    reference: str,
    name: str,
    by_method: dict[str, dict[int, dict[str, Any]]],
    level: float,
) -> dict[str, Any]:
    """One comparison of (model, task): ``reference`` minus the ablation ``name`` over their common seeds.

    Parameters
    ----------
    head : dict
        ``model``, ``task``, ``profile`` (index among the cells' profiles, or None) and ``informative``.
    question : str
        The question the comparison answers (verdict line).
    reference, name : str
        Method names: the reference (``gelora``, or a control such as ``lora``) and the ablation.
    by_method : dict
        ``by_method[method][seed]`` = cell of this (model, task, profile).
    level : float
        Confidence level of the paired t-interval.

    Returns
    -------
    dict
        The row: scores and ranks per seed, ``diff`` (reference − ablation), ``ci``, ``p`` (two-sided
        paired t-test, None below two seeds), ``n``, ``seeds``, ``verdict`` (``undetermined`` without two
        usable common seeds), ``notes`` and ``unconverged`` (``{method: seeds}`` left out as unconverged, for
        the reference and the ablation).
    """
    from validation.finetune.stats import paired_difference

    abl = by_method[name]
    ref = by_method.get(reference, {})
    # a cell whose schedule had not converged is no evidence either way (as in the C4 verdicts)
    a = {s: float(c["primary"]) for s, c in ref.items() if _usable(c)}
    b = {s: float(c["primary"]) for s, c in abl.items() if _usable(c)}
    pd = paired_difference(a, b, level) if a and b else None
    row: dict[str, Any] = {
        "model": head["model"],
        "task": head["task"],
        "profile": head["profile"],
        "metric": next((c.get("primary_metric") for c in abl.values()), None),
        "question": question,
        "reference": reference,
        "ablation": name,
        "reference_scores": {str(s): v for s, v in sorted(a.items())},
        "ablation_scores": {str(s): v for s, v in sorted(b.items())},
        "reference_ranks": {
            str(s): (c.get("method_info") or {}).get("block_ranks") for s, c in sorted(ref.items())
        },
        "ablation_ranks": {
            str(s): (c.get("method_info") or {}).get("block_ranks") for s, c in sorted(abl.items())
        },
        "ablation_alphas": {
            str(s): (c.get("method_info") or {}).get("block_alphas") for s, c in sorted(abl.items())
        },
        "informative": head["informative"],
        "diff": None,
        "ci": None,
        "p": None,
        "n": 0,
        "seeds": [],
        "verdict": "undetermined",
        "notes": [],
        "unconverged": {},
    }
    if pd is not None:
        row.update({k: pd[k] for k in ("diff", "ci", "p", "n", "seeds", "verdict")})
    unpaired = sorted(set(abl) ^ set(ref))
    if not ref:
        row["notes"].append(f"no {reference} cell to compare with")
    elif unpaired:
        row["notes"].append(f"seeds without a partner: {unpaired}")
    for s, c in sorted(abl.items()):
        rec = (c.get("method_info") or {}).get("ablation") or {}
        if rec.get("degenerate"):
            row["notes"].append(f"seed {s}: degenerate (all ranks equal or symmetric: GeLoRA itself)")
        if rec.get("repeat"):
            row["notes"].append(f"seed {s}: fewer distinct rearrangements than seeds; an arrangement repeats")
    for label, cs in ((reference, ref), (name, abl)):
        for s, c in sorted(cs.items()):
            if c.get("primary") is None:
                row["notes"].append(f"{label} seed {s}: no value of the primary metric")
            elif not _finite_score(c):
                row["notes"].append(f"{label} seed {s}: non-finite primary score, left out of the pair")
        dropped = sorted(s for s, c in cs.items() if _finite_score(c) and not _usable(c))
        row["unconverged"][label] = dropped
        if dropped:
            row["notes"].append(f"{label} seed(s) {dropped}: unconverged, left out of the pair")
    return row


def _verdicts(
    rows: list[dict[str, Any]], questions: list[tuple[str, str, str]], assessed: bool
) -> list[dict[str, Any]]:
    """One verdict line per (ablation, reference, question) that has at least one row."""
    out = []
    for name, reference, question in questions:
        mine = [r for r in rows if r["ablation"] == name and r["reference"] == reference]
        if not mine:
            continue
        counted = [r for r in mine if not assessed or r["informative"]]
        counts = {"better": 0, "tie": 0, "worse": 0, "undetermined": 0}
        for r in counted:
            counts[r["verdict"]] += 1
        out.append(
            {
                "ablation": name,
                "reference": reference,
                "question": question,
                "counts": counts,
                "n": len(counted),
                "line": _verdict_line(question, reference, counts, len(counted), assessed),
            }
        )
    return out


def _pairs(n: int) -> str:
    """``"1 pair"``, ``"2 pairs"``."""
    return f"{n} pair" if n == 1 else f"{n} pairs"


def _familywise_line(
    tested: Sequence[Mapping[str, Any]],
    kept: Sequence[Mapping[str, Any]],
    family: str,
    alpha: float,
    level: float,
) -> str | None:
    """The family-wise reading in the words of C4's (:func:`validation.report.claims.familywise_line`).

    Parameters
    ----------
    tested, kept : sequence of mapping
        The family's rows that carry a p-value, and those of them that stay decided under Holm.
    family : str
        What the pairs are (``"GeLoRA − ablation"``, ``"LoRA − rearrangement"``).
    alpha, level : float
        Family-wise error of Holm's step-down; confidence level of the per-pair verdicts.

    Returns
    -------
    str or None
        The line; None when no pair carries a p-value.
    """
    if not tested:
        return None
    per_pair = sum(1 for r in tested if r["verdict"] in ("better", "worse"))
    head = (
        f"Family-wise (Holm over the {len(tested)} decided {family} pairs, {100 * alpha:.0f}% chance of any "
        "false 'better' or 'worse'): "
    )
    each = f"{100 * level:.0f}%"
    if not per_pair:
        return head + f"no pair is decided at {each} on its own, so none stays decided."
    if not kept:
        if per_pair == 1:
            return (
                head + f"of the 1 pair decided at {each} on its own, none stays decided; it reads as a tie."
            )
        return head + f"of the {per_pair} pairs decided at {each} each, none stays decided; all read as ties."
    names = [
        f"{_who(r['reference'])} − {r['ablation']} on {r['task']} ({r['model']}) {r['verdict']} (p = {r['p']:.2g})"
        for r in kept
    ]
    return (
        head
        + f"{len(kept)} of the {_pairs(per_pair)} decided at {each} each {'stays' if len(kept) == 1 else 'stay'} "
        + f"decided: {'; '.join(names)}; "
        "the rest read as ties at that level."
    )


def _familywise(
    rows: list[dict[str, Any]], assessed: bool, family: str, level: float, alpha: float = FAMILYWISE_ALPHA
) -> dict[str, Any]:
    """The rows that enter the verdict counts, read family-wise (as C4's decided pairs,
    :func:`validation.finetune.verdicts.familywise`).

    The family is every counted row (informative, when informativeness is assessed) with a verdict other
    than ``undetermined``; those with a p-value are tested by Holm's step-down at family-wise error
    ``alpha``. Each pair is decided at ``level`` on its own, so over m pairs without a true difference about
    ``(1 - level) m`` would read "better" or "worse" by chance; the reading is reported beside the per-pair
    verdicts, not instead of them.

    Returns
    -------
    dict
        ``alpha``, ``tested`` (how many pairs Holm read), ``decided`` (how many of them are better or worse
        at ``level`` on their own), ``kept`` (``model``, ``task``, ``profile``, ``reference``, ``ablation``,
        ``verdict``, ``diff``, ``p`` of each pair that stays decided) and ``line`` (None without a tested
        pair).
    """
    from validation.finetune.verdicts import familywise

    decided = [
        (r["task"], r["ablation"], r)
        for r in rows
        if (not assessed or r["informative"]) and r["verdict"] != "undetermined"
    ]
    tested, kept = familywise(decided, alpha)
    tested_rows = [r for *_, r in tested]
    kept_rows = [r for *_, r in kept]
    keys = ("model", "task", "profile", "reference", "ablation", "verdict", "diff", "p")
    return {
        "alpha": alpha,
        "tested": len(tested_rows),
        "decided": sum(1 for r in tested_rows if r["verdict"] in ("better", "worse")),
        "kept": [{k: r[k] for k in keys} for r in kept_rows],
        "line": _familywise_line(tested_rows, kept_rows, family, alpha, level),
    }


def analyse(
    run_dirs: Sequence[str | Path] | None = None,
    *,
    cells: Sequence[dict[str, Any]] | None = None,
    informative_tasks: Iterable[str] | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """Paired differences of every ablation against its reference, and a verdict per question.

    Parameters
    ----------
    run_dirs : sequence of path, optional
        Grid directories (:func:`load_cells`); cells of several directories are paired when their
        profiles agree (except for names and evaluation batch sizes).
    cells : sequence of dict, optional
        Cell results instead of ``run_dirs``.
    informative_tasks : iterable of str, optional
        Tasks on which methods are distinguishable; only they enter the verdicts. ``None``: every task,
        "informativeness not assessed".
    level : float
        Confidence level of the paired t-intervals.

    Returns
    -------
    dict
        ``schema``, ``sources``, ``informativeness`` (``"assessed"`` / ``"not assessed"``),
        ``informative_tasks``, ``comparisons`` (one per model, task and ablation: ``diff`` = reference -
        ablation, ``ci``, ``n``, ``seeds``, ``verdict``, the per-seed scores and ranks, notes),
        ``verdicts`` (one per ablation: counts and the one-line ``line``), ``controls`` and
        ``control_verdicts`` (the same for each ablation's further references, ``Ablation.controls``: uniform
        LoRA minus a rearrangement of GeLoRA's ranks), ``familywise`` and ``control_familywise`` (the
        pairs that enter the verdict counts, and those of the controls, read family-wise by Holm's
        step-down: :func:`_familywise`), ``notes``.
    """
    from validation.finetune.ablations import ABLATIONS

    if cells is None:
        if not run_dirs:
            raise ConfigError("give at least one grid directory")
        cells = load_cells(run_dirs)
    assessed = informative_tasks is not None
    informative = None if informative_tasks is None else sorted({str(t) for t in informative_tasks})
    groups: dict[tuple[str, str, str], dict[str, dict[int, dict[str, Any]]]] = {}
    for c in cells:
        model = _model_label(c)
        key = (model, str(c["task"]), _profile_key(c))
        groups.setdefault(key, {}).setdefault(str(c["method"]), {})[int(c["seed"])] = c
    profiles = sorted({k[2] for k in groups})
    comparisons: list[dict[str, Any]] = []
    notes: list[str] = []
    controls: list[dict[str, Any]] = []
    for (model, task, pkey), by_method in sorted(groups.items()):
        for name, ab in ABLATIONS.items():
            if name not in by_method:
                continue
            head = {
                "model": model,
                "task": task,
                "profile": None if len(profiles) == 1 else profiles.index(pkey),
                "informative": None if informative is None else task in informative,
            }
            comparisons.append(_pair_row(head, ab.question, ab.reference, name, by_method, level))
            for ctrl, question in ab.controls:
                if ctrl in by_method:
                    controls.append(_pair_row(head, question, ctrl, name, by_method, level))
    verdicts = _verdicts(
        comparisons, [(n, ab.reference, ab.question) for n, ab in ABLATIONS.items()], assessed
    )
    control_verdicts = _verdicts(
        controls, [(n, c, q) for n, ab in ABLATIONS.items() for c, q in ab.controls], assessed
    )
    if len(profiles) > 1:
        notes.append(
            f"{len(profiles)} different profiles among the cells: only cells of the same profile are paired "
            "(column 'profile' numbers them)"
        )
    return {
        "schema": SCHEMA,
        "sources": sorted({str(c.get("_source")) for c in cells if c.get("_source")}),
        "level": level,
        "informativeness": "assessed" if assessed else "not assessed",
        "informative_tasks": informative,
        "comparisons": comparisons,
        "verdicts": verdicts,
        "controls": controls,
        "control_verdicts": control_verdicts,
        "familywise": _familywise(comparisons, assessed, "GeLoRA − ablation", level),
        "control_familywise": _familywise(controls, assessed, "LoRA − rearrangement", level),
        "notes": notes,
    }


def forest_rows(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparisons with an interval, in plotting order (task, then ablation)."""
    return [r for r in analysis.get("comparisons", []) if r.get("ci") is not None]


def forest_alt_text(analysis: dict[str, Any]) -> str:
    """Alternative text of the forest plot: what it shows and how many intervals exclude zero."""
    rows = forest_rows(analysis)
    if not rows:
        return "No ablation has two or more paired seeds: no interval to plot."
    better = sum(r["verdict"] == "better" for r in rows)
    worse = sum(r["verdict"] == "worse" for r in rows)
    return (
        f"Forest plot of GeLoRA minus each ablation (primary metric, paired over seeds, "
        f"{int(100 * analysis.get('level', 0.95))}% interval) for {len(rows)} task-ablation pairs; "
        f"{better} intervals lie above zero (GeLoRA better), {worse} below, {len(rows) - better - worse} contain zero"
    )


def forest_plot(analysis: dict[str, Any]) -> bytes | None:
    """PNG of the paired differences with their intervals, one row per (model, task, ablation).

    Returns ``None`` when no comparison has an interval (fewer than two paired seeds everywhere).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = forest_rows(analysis)
    if not rows:
        return None
    models = sorted({r["model"] for r in rows})
    labels = [
        (f"{r['model']} · " if len(models) > 1 else "") + f"{r['task']}: {r['reference']} − {r['ablation']}"
        for r in rows
    ]
    colors = {"better": "#2ca02c", "worse": "#d62728", "tie": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(8.0, 0.38 * len(rows) + 1.6))
    for i, r in enumerate(rows):
        lo, hi = r["ci"]
        col = colors.get(r["verdict"], "#1f77b4")
        ax.plot([lo, hi], [i, i], color=col, lw=2)
        ax.plot([r["diff"]], [i], marker="o", color=col)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    metrics = ", ".join(sorted({str(r.get("metric")) for r in rows}))
    ax.set_xlabel(f"paired difference of the primary metric ({metrics}); > 0: GeLoRA (reference) better")
    ax.set_title(f"GeLoRA vs its ablations ({int(100 * analysis.get('level', 0.95))}% paired t-intervals)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buf.getvalue()


def format_table(analysis: dict[str, Any]) -> str:
    """Plain-text table of the comparisons and the controls, then their verdict lines, each group followed
    by its family-wise line."""
    lines = []
    for r in [*analysis["comparisons"], *analysis.get("controls", [])]:
        ci = "—" if r["ci"] is None else f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]"
        diff = "—" if r["diff"] is None else f"{r['diff']:+.4f}"
        lines.append(
            f"{r['model']:.30s} {r['task']:6s} {r['reference']:>14s} - {r['ablation']:20s} "
            f"{diff} {ci} n={r['n']} {r['verdict']}" + (f"  ({'; '.join(r['notes'])})" if r["notes"] else "")
        )
    for verdicts, fw in (("verdicts", "familywise"), ("control_verdicts", "control_familywise")):
        lines += [v["line"] for v in analysis.get(verdicts, [])]
        line = (analysis.get(fw) or {}).get("line")
        if line:
            lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.finetune.ablation_analysis RUN_DIR [...] [--out JSON] [--figure PNG]``."""
    from gelora._io import atomic_write_bytes, atomic_write_json

    p = argparse.ArgumentParser(
        prog="python -m validation.finetune.ablation_analysis",
        description="GeLoRA minus each ablation, paired over seeds, per task and model, with 95%% CIs.",
    )
    p.add_argument("run_dirs", nargs="+", help="grid directories (gelora validate glue --out DIR)")
    p.add_argument("--out", default=None, help="write the analysis as JSON here")
    p.add_argument("--figure", default=None, help="write the forest plot (PNG) here")
    p.add_argument(
        "--informative",
        default=None,
        help="comma-separated tasks that separate methods (default: all tasks, informativeness not assessed)",
    )
    args = p.parse_args(argv)
    informative = None if args.informative is None else [t for t in args.informative.split(",") if t.strip()]
    try:
        result = analyse(args.run_dirs, informative_tasks=informative)
    except (ConfigError, ResultFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.out:
        atomic_write_json(args.out, result)
    if args.figure:
        png = forest_plot(result)
        if png is None:
            print("no interval to plot (fewer than two paired seeds everywhere)", file=sys.stderr)
        else:
            atomic_write_bytes(args.figure, png)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "SCHEMA",
    "analyse",
    "forest_alt_text",
    "forest_plot",
    "forest_rows",
    "format_table",
    "load_cells",
    "main",
]
