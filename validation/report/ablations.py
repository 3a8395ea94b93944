"""The report's ablation section: GeLoRA against its ablations (:mod:`validation.finetune.ablation_analysis`).

Three parts, registered in :mod:`validation.report.build` (``section_ablations``),
:mod:`validation.report.render_md` (``ablation_blocks``) and :mod:`validation.report.figures`
(``fig_ablations``). A report without an ``ablations`` section (older ``report.json`` files) renders
exactly as before.
"""

from __future__ import annotations

from typing import Any

#: figure stem of the forest plot
FIGURE_STEM = "ablation_forest"
FIGURE_CAPTION = "GeLoRA minus each ablation, paired over seeds, with 95% t-intervals per task."


def section_ablations(ctx: Any) -> dict[str, Any]:
    """Analyse the ablation cells of the grid directories (``--runs``) or of the report's own grid."""
    from validation.finetune.ablation_analysis import analyse, load_cells
    from validation.finetune.ablations import ABLATIONS
    from validation.report.build import SectionNotRun

    run_dirs = list(ctx.collected_dirs) or [ctx.out_dir / "runs"]
    present = [d for d in run_dirs if (d / "cells").is_dir()]
    if not present:
        raise SectionNotRun(f"no grid cells under {', '.join(str(d) for d in run_dirs)}")
    cells = load_cells(present)
    if not any(c["method"] in ABLATIONS for c in cells):
        raise SectionNotRun(
            "no ablation cells in the grid; run e.g. gelora validate glue --methods "
            "gelora,gelora_permuted,gelora_reversed --seeds 5 --out DIR and pass --runs DIR"
        )
    data = analyse(cells=cells, informative_tasks=_informative_tasks(present))
    data["sources"] = [str(d) for d in present]
    return data


def _informative_tasks(run_dirs: list[Any]) -> list[str] | None:
    """Tasks an informative ceiling/floor separates in the paper-protocol grids among ``run_dirs``
    (:mod:`validation.finetune.verdicts`); None when no grid is of the paper profile (not assessed)."""
    from validation.finetune.verdicts import PAPER_PROFILE, verdicts_from_grid

    found: set[str] | None = None
    for d in run_dirs:
        if not (d / "grid.json").is_file():
            continue
        v = verdicts_from_grid(d)
        if v.get("profile") != PAPER_PROFILE:
            continue
        found = (found or set()) | {t for t, rec in v["tasks"].items() if rec["informative"]}
    return None if found is None else sorted(found)


def fig_ablations(report: dict[str, Any]) -> bytes | None:
    """The forest plot of the section's comparisons (``None`` without an ``ok`` section or intervals)."""
    from validation.finetune.ablation_analysis import forest_plot

    sec = report.get("sections", {}).get("ablations")
    if not sec or sec.get("status") != "ok" or not sec.get("data"):
        return None
    return forest_plot(sec["data"])


def _familywise(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """The family-wise line under ``data[key]`` (:func:`validation.finetune.ablation_analysis.analyse`), to
    follow its verdict lines; nothing when the key (absent from older ``report.json`` files) or its line is
    missing."""
    line = (data.get(key) or {}).get("line")
    return (str(line),) if line else ()


def ablation_blocks(report: dict[str, Any], anchor: str) -> tuple[list[Any], list[Any]]:
    """Body and appendix blocks of the section; both empty when the report has no ``ablations`` section."""
    from validation.finetune.ablation_analysis import forest_alt_text, forest_rows
    from validation.report.render_md import Bullets, Figure, Heading, Notice, Para, Table, fmt

    sections = report.get("sections", {})
    if "ablations" not in sections:
        return [], []
    sec = sections["ablations"]
    out: list[Any] = [
        Heading(
            2, "6a. Ablations: is the ID-based allocation better than another of the same budget?", anchor
        )
    ]
    if not sec or sec.get("status") != "ok":
        reason = (sec or {}).get("reason") or "no reason recorded"
        return out + [Notice(f"ablations: {(sec or {}).get('status', 'not run')} — {reason}")], []
    data = sec["data"]
    if forest_rows(data):
        out.append(Figure(FIGURE_STEM, f"{FIGURE_CAPTION} {forest_alt_text(data)}."))
    out.append(
        Para(
            "Each line compares GeLoRA (or the named reference) with one ablation on every task, by the "
            "paired difference of the primary metric over the same seeds (95% t-interval): better = the "
            "interval lies above zero, worse = below, tie = it holds zero. "
            + (
                "Informativeness not assessed: every task counts."
                if data.get("informativeness") != "assessed"
                else f"Informative tasks: {', '.join(data.get('informative_tasks') or [])}."
            )
        )
    )
    out.append(Bullets(tuple(v["line"] for v in data.get("verdicts", [])) + _familywise(data, "familywise")))
    if data.get("control_verdicts"):
        out.append(
            Para(
                "Controls: the rearrangements of GeLoRA's ranks against uniform LoRA of the same budget (LoRA "
                "minus the rearrangement, the same 95% paired t-interval rule). A deficit that GeLoRA and its rearrangements share is "
                "not one of GeLoRA's block order."
            )
        )
        out.append(
            Bullets(
                tuple(v["line"] for v in data["control_verdicts"]) + _familywise(data, "control_familywise")
            )
        )
    rows = []
    for r in [*data.get("comparisons", []), *data.get("controls", [])]:
        ci = "—" if r.get("ci") is None else f"[{fmt(r['ci'][0], 3)}, {fmt(r['ci'][1], 3)}]"
        ranks = r.get("ablation_ranks") or {}
        first = next(iter(ranks.values()), None) if ranks else None
        rows.append(
            (
                r["task"],
                str(r["model"]),
                f"{r['reference']} − {r['ablation']}",
                str(r.get("metric") or ""),
                fmt(r.get("diff"), 3),
                ci,
                str(r.get("n")),
                r.get("verdict", ""),
                "—" if first is None else str(first) + (" (seed " + next(iter(ranks)) + ")"),
                "; ".join(r.get("notes") or []) or "—",
            )
        )
    app: list[Any] = [
        Para(
            f"Sources: {', '.join(data.get('sources') or [])}. Ranks: the ablation's block ranks of its first seed."
        ),
        Table(
            (
                "task",
                "model",
                "comparison",
                "metric",
                "difference",
                "95% CI",
                "seeds",
                "verdict",
                "ranks",
                "notes",
            ),
            tuple(rows),
        ),
    ]
    for note in data.get("notes", []):
        app.append(Notice(note))
    return out, app


__all__ = ["FIGURE_CAPTION", "FIGURE_STEM", "ablation_blocks", "fig_ablations", "section_ablations"]
