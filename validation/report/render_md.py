"""The report as a list of blocks (a tiny document model) and its Markdown rendering.

:func:`document` turns a report dictionary into blocks; :func:`render_markdown` and
:func:`validation.report.render_html.render_html` print the same blocks, so the two formats always say the
same thing. Both are pure functions of their input: the same ``report.json`` gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from validation.report.figures import FIGURES


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    stem: str
    caption: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Notice:
    """A section or item that did not run, with the reason."""

    text: str


Block = Heading | Para | Bullets | Table | Figure | Code | Notice


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table cell: ``digits`` significant digits; ``None`` prints as an em dash."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}g}"
    return str(x)


def _not_run(name: str, sec: dict[str, Any] | None) -> Notice:
    sec = sec or {}
    status = sec.get("status", "not run")
    return Notice(f"{name}: {status} — {sec.get('reason') or 'no reason recorded'}")


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------


def _claims_blocks(report: dict[str, Any]) -> list[Block]:
    rows = []
    for c in report.get("claims", []):
        rows.append(
            (
                c["id"],
                c["claim"],
                c["verdict"],
                " ".join(f"{e}." if not e.endswith(".") else e for e in c["evidence"]),
            )
        )
    return [
        Heading(2, "1. The paper's claims and their verdicts here"),
        Para(
            "Verdicts: holds / holds within estimator error (only once confidence intervals or seed spread are "
            "counted) / not reproduced / not tested (the evidence did not run; the reason is given). "
            "Each verdict is computed from the numbers in report.json by validation/report/claims.py."
        ),
        Table(("id", "claim", "verdict", "evidence"), tuple(rows)),
    ]


def _estimator_blocks(report: dict[str, Any]) -> list[Block]:
    sec = report.get("sections", {}).get("estimators")
    out: list[Block] = [Heading(2, "2. Estimator accuracy on benchmark manifolds (ours vs scikit-dimension)")]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("estimator accuracy", sec)]
    data = sec["data"]
    keys = [e["key"] for e in data["estimators"]]
    out.append(
        Para(
            f"Manifolds from {data['manifold_source']}; {data['n_replicates']} replicate(s); seed {data['seed']}; "
            f"profile {data['profile']}. Estimators: "
            + ", ".join(
                f"{e['key']} ({', '.join(f'{k}={v}' for k, v in e['params'].items())})"
                for e in data["estimators"]
            )
            + f". Peers: {data['peers']['status']}"
            + (f" ({data['peers']['reason']})" if data["peers"].get("reason") else "")
            + ". Relative error = |estimate - d| / d; wall time in seconds for one fit on one core."
        )
    )
    srows = []
    for key in keys:
        s = data["summary"][key]
        if s["status"] != "ok":
            srows.append((key, f"0/{s['n_cells']}", "not run", "—", "—", "—", "—", s.get("reason", "")))
            continue
        cov = "—" if s["ci_coverage"] is None else f"{100 * s['ci_coverage']:.0f}% of {s['n_with_ci']}"
        srows.append(
            (
                key,
                f"{s['n_ok']}/{s['n_cells']}",
                fmt(s["mean_rel_error"], 3),
                fmt(s["median_rel_error"], 3),
                fmt(s["max_rel_error"], 3),
                cov,
                fmt(s["total_wall_s"], 3),
                "",
            )
        )
    out.append(
        Table(
            (
                "estimator",
                "cells ok",
                "mean rel. error",
                "median rel. error",
                "max rel. error",
                "95% CI covers d",
                "total wall time (s)",
                "note",
            ),
            tuple(srows),
        )
    )
    by = {(c["manifold"], c["replicate"], c["estimator"]): c for c in data["cells"]}
    rows = []
    for m in data["manifolds"]:
        row = [
            m["name"] + (f" (rep {m['replicate']})" if data["n_replicates"] > 1 else ""),
            str(m["intrinsic_dim"]),
            str(m["ambient_dim"]),
            str(m["n"]),
        ]
        for key in keys:
            c = by.get((m["name"], m["replicate"], key))
            if c is None or c["status"] != "ok":
                row.append("not run" if c is None or c["status"] == "not run" else "error")
                continue
            ci = "" if c.get("ci") is None else f" [{fmt(c['ci'][0], 3)}, {fmt(c['ci'][1], 3)}]"
            row.append(f"{fmt(c['estimate'], 3)}{ci} ({fmt(c['wall_s'], 2)} s)")
        rows.append(tuple(row))
    out.append(Para("Per manifold: estimate [95% CI where the estimator gives one] (wall time)."))
    out.append(Table(("manifold", "d", "D", "n", *keys), tuple(rows)))
    errors = sorted(
        {
            f"{c['estimator']} on {c['manifold']}: {c['reason']}"
            for c in data["cells"]
            if c["status"] == "error"
        }
    )
    if errors:
        out.append(Bullets(tuple(errors)))
    out.append(Figure("estimator_accuracy", FIGURES["estimator_accuracy"][1]))
    return out


def _theory_blocks(report: dict[str, Any]) -> list[Block]:
    sec = report.get("sections", {}).get("theory")
    out: list[Block] = [Heading(2, "3. Theory properties")]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("theory checks", sec)]
    checks = sec["data"].get("checks", [])
    rows = []
    for c in checks:
        result = "not run" if c.get("passed") is None else ("pass" if c["passed"] else "FAIL")
        rows.append(
            (
                c["name"],
                c.get("property") or "",
                result,
                fmt(c.get("worst_margin")),
                fmt(c.get("n_cases")),
                c.get("details") or "",
            )
        )
    out.append(
        Para(
            "Worst margin: the smallest slack over all cases tried, in the units the check states (>= 0 means the property held in every case)."
        )
    )
    out.append(Table(("check", "property", "result", "worst margin", "cases", "details"), tuple(rows)))
    if any(isinstance(c.get("worst_margin"), int | float) for c in checks):
        out.append(Figure("theory_margins", FIGURES["theory_margins"][1]))
    return out


def _profile_blocks(report: dict[str, Any]) -> list[Block]:
    sec = report.get("sections", {}).get("model_profile")
    out: list[Block] = [Heading(2, "4. Per-layer intrinsic dimension of the model and the resulting ranks")]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("model ID profile", sec)]
    data = sec["data"]
    profs = data.get("estimators", {})
    out.append(
        Para(
            f"Model: {data.get('model')} ({data.get('model_details') or 'hidden size ' + fmt(data.get('hidden_size'))}). Texts: {data.get('texts_source')} "
            f"({fmt(data.get('n_texts'))} texts). ID with its 95% confidence interval per hidden-state layer; ranks "
            "r_i = max(d_(i+1) - d_i, 0) + offset, scaled to the budget."
        )
    )
    names = list(profs)
    ok = [n for n in names if profs[n].get("status", "ok") == "ok"]
    for n in names:
        if n not in ok:
            out.append(Notice(f"estimator {n}: {profs[n].get('status')} — {profs[n].get('reason')}"))
    if not ok:
        return out
    n_layers = max(len(profs[n]["dimension"]) for n in ok)
    rows = []
    for i in range(n_layers):
        label = (profs[ok[0]].get("layers") or [str(j) for j in range(n_layers)])[i]
        row = [label]
        for n in ok:
            p = profs[n]
            if i >= len(p["dimension"]):
                row.append("—")
                continue
            ci = f" [{fmt(p['ci_low'][i], 3)}, {fmt(p['ci_high'][i], 3)}]" if p.get("ci_low") else ""
            row.append(f"{fmt(p['dimension'][i], 3)}{ci}")
        rows.append(tuple(row))
    out.append(Table(("layer", *(f"{n} ID [95% CI]" for n in ok)), tuple(rows)))
    n_blocks = max(len(profs[n].get("ranks") or []) for n in ok)
    if n_blocks:
        rrows = []
        for i in range(n_blocks):
            label = (profs[ok[0]].get("rank_layers") or [str(j) for j in range(n_blocks)])[i]
            rrows.append((label, *(fmt((profs[n].get("ranks") or [None] * n_blocks)[i]) for n in ok)))
        out.append(Table(("block", *(f"rank ({n})" for n in ok)), tuple(rrows)))
    meta = []
    for n in ok:
        p = profs[n]
        meta.append(
            f"{n}: total rank {fmt(sum(p.get('ranks') or []))}, {fmt(p.get('budget'))} LoRA parameters"
            + (
                f" (matched to uniform LoRA r = {data['budget_rank']} on the same modules)"
                if data.get("budget_rank")
                else ""
            )
            + f", wall time {fmt(p.get('wall_s'), 3)} s (hidden states + estimation)"
        )
    out.append(Bullets(tuple(meta)))
    out.append(Figure("model_id_profile", FIGURES["model_id_profile"][1]))
    return out


def _grid_blocks(report: dict[str, Any]) -> list[Block]:
    sec = report.get("sections", {}).get("grid")
    paper = report.get("paper", {})
    out: list[Block] = [Heading(2, "5. Fine-tuning results (GLUE / SQuAD) beside the paper's numbers")]
    avg = paper.get("glue_average") or {}
    glue = paper.get("glue") or {}
    paper_lines = [f"Paper: {paper.get('citation', 'arXiv 2412.09250').rstrip('.')}."]
    if glue.get("tasks"):
        paper_lines.append(
            f"Paper per-task numbers ({paper.get('model')}, {glue.get('table')}) are in the last column."
        )
    else:
        paper_lines.append(
            f"Paper per-task numbers: {glue.get('status', 'not available offline')} — {glue.get('reason', '')}."
        )
    if avg.get("value") is not None:
        paper_lines.append(
            f"Paper GLUE average for GeLoRA on {avg.get('model')}: {fmt(avg['value'])} ({avg.get('source')})."
        )
    out.append(Para(" ".join(paper_lines)))
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("fine-tuning grid", sec)]
    data = sec["data"]
    tasks_paper = glue.get("tasks", {})
    rows = []
    for r in data.get("rows", []):
        if r.get("mean") is None:
            score = f"not run ({r.get('reason', 'no result')})"
        else:
            if r.get("std") is None:
                score = f"{fmt(r['mean'], 4)} (n={r.get('n_seeds')}; no spread from one seed)"
            else:
                score = f"{fmt(r['mean'], 4)} ± {fmt(r['std'], 2)} (n={r.get('n_seeds')})"
        pv = (tasks_paper.get(r["task"]) or {}).get(r["method"])
        rows.append(
            (
                r["task"],
                r["method"],
                str(r.get("model") or data.get("model")),
                str(r.get("metric") or ""),
                score,
                fmt(r.get("budget")),
                fmt(r.get("wall_s"), 3),
                "—" if pv is None else f"{fmt(pv)} ({paper.get('model')})",
            )
        )
    out.append(
        Para(
            f"This report's runs: model {data.get('model')}; source {data.get('source')}. Scores are on the dev set "
            "(mean ± std over seeds); budget = trainable adapter parameters; wall time = mean seconds per run."
        )
    )
    out.append(
        Table(
            (
                "task",
                "method",
                "model",
                "metric",
                "score mean ± std",
                "budget (params)",
                "wall time (s)",
                "paper",
            ),
            tuple(rows),
        )
    )
    ratios = data.get("ratios") or []
    if ratios:
        out.append(Para("Ratios against peers (GeLoRA / peer; score > 1 is better, time < 1 is faster):"))
        out.append(
            Table(
                ("task", "peer", "score ratio", "wall-time ratio", "budget ratio"),
                tuple(
                    (
                        q["task"],
                        q["peer"],
                        fmt(q.get("score_ratio"), 4),
                        fmt(q.get("time_ratio"), 3),
                        fmt(q.get("budget_ratio"), 3),
                    )
                    for q in ratios
                ),
            )
        )
    for note in data.get("notes", []):
        out.append(Notice(note))
    out.append(Figure("grid_scores", FIGURES["grid_scores"][1]))
    return out


def _trajectory_blocks(report: dict[str, Any]) -> list[Block]:
    sec = report.get("sections", {}).get("trajectories")
    out: list[Block] = [Heading(2, "6. Rank trajectories (GeoLoRA / AdaLoRA)")]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("rank trajectories", sec)]
    series = sec["data"].get("series", {})
    rows = tuple(
        (name, str(len(s["steps"])), fmt(s["total_rank"][0]), fmt(s["total_rank"][-1]), s.get("source", ""))
        for name, s in sorted(series.items())
    )
    out.append(Table(("run", "points", "initial total rank", "final total rank", "source"), rows))
    out.append(Figure("rank_trajectories", FIGURES["rank_trajectories"][1]))
    return out


def _environment_blocks(report: dict[str, Any]) -> list[Block]:
    env = report.get("environment") or {}
    out: list[Block] = [Heading(2, "7. Environment and how to reproduce")]
    if not env:
        return out + [Notice("environment: not recorded")]
    gpu = env.get("gpu") or {}
    git = env.get("git") or {}
    gpu_txt = ", ".join(gpu.get("devices") or []) or "none"
    if gpu.get("available"):
        gpu_txt += f" (driver {gpu.get('driver')}, CUDA {gpu.get('cuda')})"
    lines = [
        f"python        {env.get('python')} ({env.get('python_implementation')})",
        f"os            {env.get('platform')}",
        f"cpu           {env.get('cpu')} x {env.get('cpu_count')} (OMP_NUM_THREADS={env.get('omp_num_threads')})",
        f"gpu           {gpu_txt}",
        f"git commit    {git.get('commit') or 'none'}" + (f" ({git['note']})" if git.get("note") else ""),
        f"git dirty     {fmt(git.get('dirty'))}",
        f"source digest {env.get('source_digest') or 'not recorded'}"
        " (python -m validation.report.environment prints a checkout's)",
        "seeds         " + ", ".join(f"{k}={v}" for k, v in (env.get("seeds") or {}).items()),
        "packages",
    ]
    lines += [f"  {k:24s}{v}" for k, v in (env.get("packages") or {}).items()]
    lines.append("files (sha256)")
    for label, f in (env.get("files") or {}).items():
        lines.append(f"  {label}: {f.get('sha256') or f.get('note')}  {f.get('path')}")
    out.append(Code("\n".join(lines)))
    where = []
    for name, sec in (report.get("sections") or {}).items():
        host = sec.get("computed_on")
        if sec.get("status") != "ok":
            continue
        if not host:
            where.append((name, "not recorded", "", "", "", ""))
            continue
        pk = host.get("packages") or {}
        same = host.get("source_digest") == env.get("source_digest")
        where.append(
            (
                name,
                str(host.get("computed_at")),
                f"{host.get('cpu')} x {host.get('cpu_count')}",
                ", ".join(host.get("gpu") or []) or "none",
                f"torch {pk.get('torch', '?')}; scikit-dimension {pk.get('scikit-dimension', '?')}",
                "same as above"
                if same
                else (str(host.get("source_digest"))[:12] if host.get("source_digest") else "not recorded"),
            )
        )
    if where:
        out.append(
            Para(
                "Where each section was computed (a section finished earlier is reused from raw/, possibly from "
                "another machine; the block above describes the machine that assembled the report):"
            )
        )
        out.append(
            Table(("section", "computed at (UTC)", "cpu", "gpu", "packages", "source digest"), tuple(where))
        )
    out.append(Para("Commands that produced this report:"))
    out.append(Code("\n".join(env.get("commands") or [])))
    out.append(
        Para(
            "Re-render this document from its data with `gelora report --from report.json --out DIR`; "
            "the output is byte-identical (figures included)."
        )
    )
    return out


def document(report: dict[str, Any]) -> list[Block]:
    """The report's blocks, in reading order, from a report dictionary (``report.json``)."""
    sections = report.get("sections", {})
    status = ", ".join(f"{k}: {v.get('status')}" for k, v in sections.items())
    blocks: list[Block] = [
        Heading(1, f"GeLoRA validation report — profile {report.get('profile')}"),
        Para(
            f"Generated at {report.get('generated_at')} (schema {report.get('schema')}); seed {report.get('seed')}. "
            f"Sections: {status}. Reference paper: arXiv {report.get('paper', {}).get('arxiv', '2412.09250')}. "
            "Every number below is in report.json next to this file."
        ),
    ]
    for fn in (
        _claims_blocks,
        _estimator_blocks,
        _theory_blocks,
        _profile_blocks,
        _grid_blocks,
        _trajectory_blocks,
        _environment_blocks,
    ):
        blocks.extend(fn(report))
    return blocks


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], figures: set[str] | frozenset[str] = frozenset()) -> str:
    """Markdown text of ``blocks``; a :class:`Figure` links ``figures/<stem>.png`` when ``stem`` is in ``figures``."""
    parts: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Notice):
            parts.append(f"> **{b.text}**")
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {it}" for it in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |", "|" + "---|" * len(b.headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            parts.append("\n".join(lines))
        elif isinstance(b, Figure):
            if b.stem in figures:
                parts.append(f"![{b.caption}](figures/{b.stem}.png)\n\n*{b.caption}*")
            else:
                parts.append(f"> **figure {b.stem}: not drawn (no data)**")
        elif isinstance(b, Code):
            parts.append("```\n" + b.text + "\n```")
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown block {b!r}")
    return "\n\n".join(parts) + "\n"
