"""The report as a list of blocks (a tiny document model) and its Markdown rendering.

:func:`document` turns a report dictionary into blocks; :func:`render_markdown` and
:func:`validation.report.render_html.render_html` print the same blocks, so the two formats always say the
same thing. Both are pure functions of their input: the same ``report.json`` gives the same bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from validation.report.figures import FIGURES, budget_groups, tasks_at_two_budgets


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    #: link target (``#anchor``) of the heading, for links from the first page
    anchor: str | None = None


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
    #: what the table is (HTML class), e.g. ``"claims"`` for the first page's table
    kind: str | None = None


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


@dataclass(frozen=True)
class Details:
    """A collapsible group (HTML ``<details>``); Markdown prints it as a level-3 heading and its blocks."""

    summary: str
    blocks: tuple[Block, ...]
    anchor: str | None = None


Block = Heading | Para | Bullets | Table | Figure | Code | Notice | Details

#: longest visible text of a cell of the first page's claims table (characters; links count as their text)
PAGE1_CELL_MAX = 120
#: anchors of the sections and of the appendix entries
ANCHORS = {
    "claims": "sec-claims",
    "estimators": "sec-estimators",
    "theory": "sec-theory",
    "model_profile": "sec-profile",
    "grid": "sec-grid",
    "trajectories": "sec-trajectories",
    "ablations": "sec-ablations",
    "environment": "sec-environment",
    "appendix": "appendix",
}
APPENDIX = {
    "estimators": ("A", "app-estimators"),
    "theory": ("B", "app-theory"),
    "model_profile": ("C", "app-profile"),
    "grid": ("D", "app-grid"),
    "trajectories": ("E", "app-trajectories"),
    "ablations": ("F", "app-ablations"),
}


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


def _seconds(x: float | None) -> str:
    """Seconds for the grid table: whole seconds from 100 s up (``1,099``, not ``1.1e+03``), else 3 digits."""
    if isinstance(x, float) and math.isfinite(x) and abs(x) >= 100:
        return f"{x:,.0f}"
    return fmt(x, 3)


def score(x: float | None) -> str:
    """A metric score (correlation, accuracy, F1) to four decimals, so a column lines up; ``None``: a dash."""
    return "—" if x is None else f"{x:.4f}"


def _not_run(name: str, sec: dict[str, Any] | None) -> Notice:
    sec = sec or {}
    status = sec.get("status", "not run")
    return Notice(f"{name}: {status} — {sec.get('reason') or 'no reason recorded'}")


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------


def _claim(report: dict[str, Any], cid: str) -> dict[str, Any] | None:
    return next((c for c in report.get("claims", []) if c.get("id") == cid), None)


def visible(text: str) -> str:
    """Text as a reader sees it: ``[label](#anchor)`` links reduced to their label."""
    return re.sub(r"\[([^\]]+)\]\(#[\w-]+\)", r"\1", text)


def _claims_blocks(report: dict[str, Any]) -> list[Block]:
    """The first page: one row per claim (verdict, key number, setup, exclusions), caveats once."""
    rows = []
    caveats: dict[str, list[str]] = {}
    for c in report.get("claims", []):
        short = c.get("short") or c["claim"]
        label = f"[{c['id']}](#{c['section']})" if c.get("section") else c["id"]
        key = (c.get("key") or {}).get("text") or (c["evidence"][0] if c.get("evidence") else "")
        rows.append(
            (f"{label} {short}", c["verdict"], key, c.get("setup") or "—", c.get("exclusions") or "—")
        )
        for cav in c.get("caveats") or []:
            caveats.setdefault(cav, []).append(c["id"])
    out: list[Block] = [
        Heading(2, "1. The paper's claims at a glance", ANCHORS["claims"]),
        Table(
            (
                "claim (link: its evidence)",
                "verdict",
                "key number [95% CI]",
                "model and protocol",
                "exclusions",
            ),
            tuple(rows),
            kind="claims",
        ),
    ]
    if caveats:
        out.append(Bullets(tuple(f"{', '.join(ids)}: {cav}" for cav, ids in caveats.items())))
    out.append(
        Para(
            "Verdicts: holds / holds within estimator error (only once confidence intervals or seed spread are "
            "counted) / not reproduced / not tested, computed from report.json by validation/report/claims.py. "
            "Sections 2-6 open with their figure; the full tables are in the [appendix](#appendix)."
        )
    )
    return out


def _claim_evidence(report: dict[str, Any], cid: str) -> list[Block]:
    """A claim's verdict line, its short evidence sentences and its small table."""
    c = _claim(report, cid)
    if c is None:
        return []
    out: list[Block] = [Para(f"{c['id']} ({c['claim']}): {c['verdict']}.")]
    out.append(Bullets(tuple(c.get("evidence") or ())))
    table = c.get("table")
    if table and table.get("rows"):
        out.append(Table(tuple(table["headers"]), tuple(tuple(str(x) for x in r) for r in table["rows"])))
    return out


def _appendix_link(name: str) -> Para:
    letter, anchor = APPENDIX[name]
    return Para(f"Full tables: [appendix {letter}](#{anchor}).")


def _estimator_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    sec = report.get("sections", {}).get("estimators")
    out: list[Block] = [
        Heading(
            2,
            "2. Estimator accuracy on benchmark manifolds (ours vs scikit-dimension)",
            ANCHORS["estimators"],
        )
    ]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("estimator accuracy", sec)], []
    data = sec["data"]
    keys = [e["key"] for e in data["estimators"]]
    out.append(Figure("estimator_accuracy", FIGURES["estimator_accuracy"][1]))
    ours = data["summary"].get("gelora/twonn") or {}
    peer = data["summary"].get("skdim/twonn") or {}
    ok_cells = [c for c in data["cells"] if c["estimator"] == "gelora/twonn" and c["status"] == "ok"]
    if ours.get("status") == "ok" and ok_cells:
        first = (
            f"Points on the dashed diagonal are exact; our TwoNN's mean relative error is "
            f"{ours['mean_rel_error']:.3f}"
            + (f" (scikit-dimension: {peer['mean_rel_error']:.3f})" if peer.get("status") == "ok" else "")
            + f" over {ours['n_ok']} samples."
        )
        worst = max(ok_cells, key=lambda c: c["rel_error"])
        second = (
            f"Its largest error is on {worst['manifold']} (d = {worst['true_dim']}, estimate "
            f"{fmt(worst['estimate'], 3)}); the right panel shows which manifolds are over- or under-estimated."
        )
        out.append(Para(f"{first} {second}"))
    out += _claim_evidence(report, "C1")
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
    out.append(_appendix_link("estimators"))
    app: list[Block] = [
        Para(
            f"Manifolds from {data['manifold_source']}; {data['n_replicates']} replicate(s); seed {data['seed']}; "
            f"profile {data['profile']}. Peers: {data['peers']['status']}"
            + (f" ({data['peers']['reason']})" if data["peers"].get("reason") else "")
            + ". Relative error = |estimate - d| / d; wall time in seconds for one fit on one core."
        ),
        Bullets(
            tuple(
                f"{e['key']}: "
                + (", ".join(f"{k}={v}" for k, v in e["params"].items()) or "default parameters")
                for e in data["estimators"]
            )
        ),
    ]
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
    app.append(Para("Per manifold: estimate [95% CI where the estimator gives one] (wall time)."))
    app.append(Table(("manifold", "d", "D", "n", *keys), tuple(rows)))
    errors = sorted(
        {
            f"{c['estimator']} on {c['manifold']}: {c['reason']}"
            for c in data["cells"]
            if c["status"] in ("error", "not run") and c.get("reason")
        }
    )
    if errors:
        app.append(Bullets(tuple(errors)))
    return out, app


def _theory_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    sec = report.get("sections", {}).get("theory")
    out: list[Block] = [Heading(2, "3. Theory properties", ANCHORS["theory"])]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("theory checks", sec)], []
    checks = sec["data"].get("checks", [])
    margins = [c for c in checks if isinstance(c.get("worst_margin"), int | float)]
    if margins:
        out.append(Figure("theory_margins", FIGURES["theory_margins"][1]))
        ran = [c for c in checks if c.get("passed") is not None]
        failed = [c for c in ran if not c["passed"]]
        first = f"{len(ran) - len(failed)} of {len(ran)} checks pass; a bar at or right of 0 means the property held in every case."
        if failed:
            w = min(failed, key=lambda c: c.get("worst_margin") if c.get("worst_margin") is not None else 0.0)
            second = f"{w['name']} fails with worst margin {fmt(w.get('worst_margin'))}; C2 below says whether that is within its stated false-failure rate."
        else:
            w = min(margins, key=lambda c: c["worst_margin"])
            second = f"The tightest check is {w['name']} (worst margin {fmt(w['worst_margin'])})."
        out.append(Para(f"{first} {second}"))
    out += _claim_evidence(report, "C2")
    out.append(_appendix_link("theory"))
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
    app: list[Block] = [
        Para(
            "Worst margin: the smallest slack over all cases tried, in the units the check states (>= 0 means the property held in every case)."
        ),
        Table(("check", "property", "result", "worst margin", "cases", "details"), tuple(rows)),
    ]
    return out, app


def _profile_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    sec = report.get("sections", {}).get("model_profile")
    out: list[Block] = [
        Heading(
            2,
            "4. Per-layer intrinsic dimension of the model and the resulting ranks",
            ANCHORS["model_profile"],
        )
    ]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("model ID profile", sec)], []
    data = sec["data"]
    profs = data.get("estimators", {})
    names = list(profs)
    ok = [n for n in names if profs[n].get("status", "ok") == "ok"]
    notices: list[Block] = [
        Notice(f"estimator {n}: {profs[n].get('status')} — {profs[n].get('reason')}")
        for n in names
        if n not in ok
    ]
    if not ok:
        return out + notices, []
    out.append(Figure("model_id_profile", FIGURES["model_id_profile"][1]))
    hidden = data.get("hidden_size")
    top_name = max(ok, key=lambda n: max(profs[n]["dimension"]))
    top = profs[top_name]
    i_top = top["dimension"].index(max(top["dimension"]))
    top_layer = (top.get("layers") or [str(j) for j in range(len(top["dimension"]))])[i_top]
    first = (
        f"The highest layer ID of any estimator is {fmt(max(top['dimension']), 3)} ({top_name}, {top_layer}), "
        f"against a hidden size of {fmt(hidden)}."
    )
    if data.get("more_models"):
        first = (
            f"For {data.get('model')}, the highest layer ID of any estimator is {fmt(max(top['dimension']), 3)} "
            f"({top_name}, {top_layer}), against a hidden size of {fmt(hidden)}; the further models' profiles "
            "(claim C3) are tabulated in appendix C."
        )
    second = (
        "The ranks (right) follow the ID increase from each layer to the next, scaled to the budget of uniform "
        f"LoRA r = {data.get('budget_rank')}; the estimators disagree on where the ID rises most."
        if data.get("budget_rank")
        else "The ranks (right) follow the ID increase from each layer to the next."
    )
    out.append(Para(f"{first} {second}"))
    out += notices
    out += _claim_evidence(report, "C3")
    out.append(_appendix_link("model_profile"))
    app: list[Block] = [
        Para(
            f"Model: {data.get('model')} ({data.get('model_details') or 'hidden size ' + fmt(hidden)}). "
            f"Texts: {data.get('texts_source')} ({fmt(data.get('n_texts'))} texts). ID with its 95% confidence "
            "interval per hidden-state layer; ranks r_i = max(d_(i+1) - d_i, 0) + offset, scaled to the budget."
        )
    ]
    app.append(_id_table(profs, ok))
    n_blocks = max(len(profs[n].get("ranks") or []) for n in ok)
    if n_blocks:
        rrows = []
        for i in range(n_blocks):
            label = (profs[ok[0]].get("rank_layers") or [str(j) for j in range(n_blocks)])[i]
            rrows.append((label, *(fmt((profs[n].get("ranks") or [None] * n_blocks)[i]) for n in ok)))
        app.append(Table(("block", *(f"rank ({n})" for n in ok)), tuple(rrows)))
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
    app.append(Bullets(tuple(meta)))
    for g in data.get("more_models") or []:
        gp = g.get("estimators") or {}
        gok = [n for n in gp if gp[n].get("dimension")]
        if not gok:
            continue
        files = "; ".join(
            f"{n}: {f.get('path')} (sha256 {str(f.get('sha256'))[:8]}…, {f.get('device') or 'device not recorded'})"
            for n, f in (g.get("files") or {}).items()
        )
        app.append(
            Para(
                f"Further model (claim C3, from `gelora ranks` files): {g.get('model')}, hidden size "
                f"{fmt(g.get('hidden_size'))}; texts {g.get('texts')} ({fmt(g.get('n_texts'))} texts, "
                f"{fmt(g.get('max_tokens'))} tokens per layer). Files: {files or 'not recorded'}."
            )
        )
        app.append(_id_table(gp, gok))
    return out, app


def _id_table(profs: dict[str, Any], ok: list[str]) -> Table:
    """Per-layer ID with its 95% CI (when the estimator gave one) of the estimators ``ok``."""
    from validation.report.claims import profile_intervals

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
            lo, hi = profile_intervals(p)
            ci = f" [{fmt(lo[i], 3)}, {fmt(hi[i], 3)}]" if lo and hi else ""
            row.append(f"{fmt(p['dimension'][i], 3)}{ci}")
        rows.append(tuple(row))
    return Table(("layer", *(f"{n} ID [95% CI]" for n in ok)), tuple(rows))


#: a Pearson correlation below this on STS-B (it explains < 4% of the score variance) is read as the
#: "predict the mean" plateau: the regression head has learnt little beyond the mean similarity
PLATEAU_PEARSON = 0.2


def _epochs(profile: Any) -> list[float]:
    """The epochs of a grid's profile (one profile, or ``{"per_source": [...]}`` of merged grids)."""
    if not isinstance(profile, dict):
        return []
    if "per_source" in profile:
        found = {p.get("profile", {}).get("epochs") for p in profile["per_source"] if isinstance(p, dict)}
        return sorted(float(e) for e in found if isinstance(e, int | float))
    e = profile.get("epochs")
    return [float(e)] if isinstance(e, int | float) else []


def _short_title(data: dict[str, Any]) -> str:
    eps = _epochs(data.get("profile"))
    what = "/".join(fmt(e if not float(e).is_integer() else int(e)) for e in eps) + " epochs; " if eps else ""
    return f"5. Fine-tuning: a short, unconverged schedule ({what}not the paper protocol)"


def _span(xs: list[float]) -> str:
    return f"{min(xs):.3f}" if min(xs) == max(xs) else f"{min(xs):.3f}-{max(xs):.3f}"


def stsb_plateau(rows: list[dict[str, Any]]) -> str | None:
    """Why GeLoRA's STS-B score of a short schedule sits near 0, from the rows' numbers (None when it does
    not): its per-seed Pearson values, the other methods', and the final training losses when recorded."""
    st = [r for r in rows if r["task"] == "stsb" and r.get("mean") is not None]
    g = next((r for r in st if r["method"] == "gelora"), None)
    if g is None:
        return None
    vals = [v for v in (g.get("values") or [g["mean"]]) if isinstance(v, int | float)]
    if not vals or max(vals) >= PLATEAU_PEARSON:
        return None
    others = [r for r in st if r["method"] != "gelora"]
    text = (
        f"STS-B plateau: GeLoRA's Pearson stays at {_span(vals)} over {len(vals)} seed(s), below "
        f"{PLATEAU_PEARSON} (less than 4% of the variance explained): its regression output barely moves from "
        "the mean similarity, the plateau a regression head sits on before it learns the task"
    )
    if others:
        best = max(others, key=lambda r: r["mean"])
        text += f", while {best['method']} reaches {best['mean']:.3f} on the same schedule"
    losses = {r["method"]: [x for x in r.get("train_loss") or [] if x is not None] for r in st}
    if losses.get("gelora"):
        text += f". GeLoRA's final training loss is {_span(losses['gelora'])}" + "".join(
            f", {m}'s {_span(xs)}" for m, xs in sorted(losses.items()) if m != "gelora" and xs
        )
        text += " (train.train_loss of the cells): training stopped before the loss left the plateau."
    else:
        text += (
            ". The cells' training losses are not in report.json; docs/validation.md ('GeLoRA on STS-B' and "
            "'STS-B, 6 epochs') records them and a run with twice the steps."
        )
    return text


def _figure_or_notice(stem: str, drawn: bool, why: str) -> Block:
    """The figure ``stem`` when it has data, else a notice saying why it is not drawn."""
    return Figure(stem, FIGURES[stem][1]) if drawn else Notice(f"figure {stem}: not drawn — {why}")


def _paper_blocks(report: dict[str, Any], data: dict[str, Any]) -> list[Block]:
    """Section 5 under the paper protocol: forest plot, reading, loss curves, ceiling/floor table."""
    from validation.report.claims import _name, _task, paper_protocol
    from validation.report.figures import heldout_curve_series, loss_curve_series

    pp = paper_protocol(report)
    assert pp is not None
    summary, v = pp
    out: list[Block] = []
    has_pairs = any(pd["diff"] is not None for rec in v["tasks"].values() for pd in rec["pairs"].values())
    if has_pairs:
        out.append(Figure("paired_differences", FIGURES["paired_differences"][1]))
    else:
        out.append(Notice("figure paired_differences: not drawn — no task has a GeLoRA-vs-baseline pair"))
    n_inf = sum(rec["informative"] for rec in v["tasks"].values())
    out.append(
        Para(
            f"Under the paper protocol ({summary.get('model')}), {n_inf} of {len(v['tasks'])} task(s) are "
            f"informative (full fine-tuning clearly above the head-only floor); on them GeLoRA is "
            f"{v['line']}. Points right of 0 favour GeLoRA; hollow grey points belong to excluded tasks."
            + "".join(
                f" {_task(r['task'])}: {r['reason']} (planned, listed below, never scored)."
                for r in v.get("not_run") or []
            )
        )
    )
    out.append(
        _figure_or_notice(
            "loss_curves",
            bool(loss_curve_series(report)),
            "no cell of the paper-protocol grid recorded train.loss_curve",
        )
    )
    out.append(
        _figure_or_notice(
            "heldout_curves",
            bool(heldout_curve_series(report)),
            "no cell of the paper-protocol grid carries a selection run's held-out curve",
        )
    )
    out.append(Para("Ceiling (full fine-tuning) and floor (classifier head only) per task:"))
    out.append(_ceiling_floor_table(v))
    sel = []
    for task, by in sorted((summary.get("table") or {}).items()):
        for m, e in sorted(by.items()):
            records = [r["lr_selection"] for r in e.get("per_seed") or [] if r.get("lr_selection")]
            chosen = sorted({str(r.get("chosen")) for r in records})
            grids = sorted({len(r.get("grid") or []) for r in records})
            if chosen:
                how = (
                    "the default rate: a one-rate grid, nothing selected"
                    if grids == [1]
                    else "selected on held-out train from "
                    + ", ".join(sorted({str(g) for r in records for g in r.get("grid") or []}, key=float))
                )
                sel.append(f"{_task(task)} / {_name(m)}: learning rate {', '.join(chosen)} ({how})")
    if sel:
        out.append(Bullets(tuple(sel)))
    return out


def _ceiling_floor_table(v: dict[str, Any]) -> Table:
    """Ceiling, floor, their paired gap and the informative flag per task of one model's verdicts."""
    from validation.report.claims import _task

    rows = []
    for task, rec in v["tasks"].items():
        gap = rec["floor_gap"]
        gap_txt = "—"
        if gap is not None:
            ci = "no CI" if gap["ci"] is None else f"[{gap['ci'][0]:+.3f}, {gap['ci'][1]:+.3f}]"
            gap_txt = f"{gap['diff']:+.3f} {ci} (n={gap['n']})"
        rows.append(
            (
                _task(task),
                str(rec.get("metric") or ""),
                score(rec["ceiling"]),
                score(rec["floor"]),
                gap_txt,
                "informative" if rec["informative"] else str(rec["reason"]),
            )
        )
    for rec in v.get("not_run") or []:  # planned but without data offline (MNLI, QQP): listed, never scored
        rows.append((_task(rec["task"]), "—", "—", "—", "—", str(rec["reason"])))
    return Table(
        ("task", "metric", "ceiling (full)", "floor (head_only)", "full - head_only [95% CI]", "status"),
        tuple(rows),
    )


def _more_model_blocks(report: dict[str, Any]) -> list[Block]:
    """Section 5 for each further model of the paper protocol (``paper_protocol_more``): its verdict line,
    the mean score of every method (GeLoRA's ablations left to the ablation section) with GeLoRA's paired
    difference, and its ceiling/floor table (the figures above label its tasks "task (model)")."""
    from validation.finetune.convergence import finite_or_none
    from validation.finetune.grid import _mean_std
    from validation.finetune.methods import ABLATION_METHODS
    from validation.finetune.verdicts import _usable
    from validation.report.claims import _name, _task, paper_protocol_more

    out: list[Block] = []
    for summary, v in paper_protocol_more(report):
        model = summary.get("model")
        seeds = sorted(
            {s for rec in v["tasks"].values() for pd in rec["pairs"].values() for s in pd["seeds"]}
        )
        out.append(
            Para(
                f"Under the paper protocol on {model} ({', '.join(_task(t) for t in v['tasks'])}; seeds "
                f"{', '.join(str(x) for x in seeds)}): GeLoRA is {v['line']}. Mean dev score over the "
                "converged seeds ± one seed standard deviation, and GeLoRA - method paired over common seeds:"
            )
        )
        rows = []
        for task, by in sorted((summary.get("table") or {}).items()):
            pairs = v["tasks"].get(task, {}).get("pairs", {})
            for m, e in sorted(by.items(), key=lambda kv: (kv[0] != "gelora", kv[0])):
                if m in ABLATION_METHODS:  # compared with GeLoRA in the ablation section, not here
                    continue
                checked = [(r, *_usable(r, True)) for r in e.get("per_seed") or []]
                vals = [float(r["primary"]) for r, ok, _ in checked if ok]
                ms = _mean_std(vals) if vals else {"mean": None, "std": None}
                shown = (
                    "—" if ms["mean"] is None else f"{score(ms['mean'])} ± {score(ms['std'])} (n={len(vals)})"
                )
                if not vals:  # every seed left out: say why, and what they scored (never compared)
                    left = [(r, why) for r, ok, why in checked if not ok]
                    why = sorted({str(w) for _, w in left})
                    finite = (finite_or_none(r.get("primary")) for r, _ in left)
                    scored = [x for x in finite if x is not None]
                    if left:
                        shown = f"— ({len(left)} {', '.join(why)}"
                        if scored:
                            ls = _mean_std(scored)
                            shown += f": {score(ls['mean'])} ± {score(ls['std'])}, not compared"
                        shown += ")"
                pd = pairs.get(m)
                diff = "—"
                if pd and pd["diff"] is not None:
                    ci = "no CI" if pd["ci"] is None else f"[{pd['ci'][0]:+.4f}, {pd['ci'][1]:+.4f}]"
                    diff = f"{pd['diff']:+.4f} {ci} ({pd['verdict']})"
                rows.append((_task(task), _name(m), shown, diff))
        out.append(Table(("task", "method", "score", "GeLoRA - method [95% CI]"), tuple(rows)))
        out.append(Para(f"Ceiling and floor per task on {model}:"))
        out.append(_ceiling_floor_table(v))
    return out


def _budget_blocks(data: dict[str, Any]) -> list[Block]:
    """Score against adapter budget under the paper protocol (only for a model whose grids were collected at
    two or more ``--lora-r``): per model, one row per task and method, one column per budget rank; only the
    tasks trained at two or more ranks (with all their methods, ceiling and floor included)."""
    from validation.report.claims import _name, _task

    groups = budget_groups(data.get("paper_budgets") or [])
    if not groups:
        return []
    out: list[Block] = [Figure("score_vs_budget", FIGURES["score_vs_budget"][1])]
    for model, budgets in groups.items():
        ranks = [b["lora_r"] for b in budgets]
        shown = tasks_at_two_budgets(budgets)
        keys = sorted({(t, m) for b in budgets for t, by in b["scores"].items() for m in by if t in shown})
        rows = []
        for t, m in keys:
            cells = []
            for b in budgets:
                e = (b["scores"].get(t) or {}).get(m)
                if not e or e.get("mean") is None:
                    cells.append("—")
                    continue
                spread = f" ± {fmt(e['std'], 2)}" if e.get("std") is not None else ""
                params = f", {e['budget_params']:,} params" if e.get("budget_params") else ""
                cells.append(f"{fmt(e['mean'], 4)}{spread} (n={e['n']}{params})")
            rows.append((_task(t), _name(m), *cells))
        main_r = _c4_rank(budgets, data)
        on = f" on {model}" if model else ""
        out += [
            Para(
                f"Score against adapter budget{on} (paper protocol; mean ± std of the primary metric over the "
                "converged seeds, budget = uniform LoRA of rank r on every adapted module, the other budgeted "
                f"methods matched to it). C4 uses the r = {main_r} grids only."
            ),
            Table(("task", "method", *(f"r = {r}" for r in ranks)), tuple(rows)),
            *_budget_pair_paras(budgets, shown, main_r),
        ]
    return out + _budget_familywise(groups, _informative_tasks(data), data)


def _partial_of(pd: dict[str, Any]) -> str:
    """``"; AdaLoRA: 3 of 5 seeds run"`` for a pair left undetermined by the whole-seed-set rule, else ``""``."""
    from validation.finetune.verdicts import partial_reason
    from validation.report.claims import _name

    why = partial_reason(pd, {m: _name(m) for m in pd.get("partial") or {}})
    return f"; {why}" if why else ""


def _c4_rank(budgets: list[dict[str, Any]], data: dict[str, Any]) -> Any:
    """C4's budget rank for one model's budget records (their ``c4_lora_r``, else the paper protocol's)."""
    return budgets[0].get("c4_lora_r", (data.get("paper_protocol") or {}).get("lora_r"))


def _supplementary(r: Any, main_r: Any) -> bool:
    """Whether budget rank ``r`` is not C4's; a rank ``None`` (a directory without one, which
    :func:`validation.report.build.protocol_records` files under C4's rank) counts as C4's."""
    return r is not None and r != main_r


def _informative_tasks(data: dict[str, Any]) -> dict[Any, set[str]]:
    """Per model, the tasks whose ceiling and floor make them informative at C4's rank (the grid section's
    merged paper-protocol summaries, :func:`validation.finetune.verdicts.compute_verdicts`, re-derived)."""
    from validation.finetune.verdicts import compute_verdicts

    out: dict[Any, set[str]] = {}
    for s in [data.get("paper_protocol"), *(data.get("paper_protocol_more") or [])]:
        if s and s.get("table"):
            v = compute_verdicts(s)
            out[s.get("model")] = {t for t, rec in v["tasks"].items() if rec["informative"]}
    return out


def _budget_familywise(
    groups: dict[Any, list[dict[str, Any]]],
    informative: dict[Any, set[str]],
    data: dict[str, Any] | None = None,
) -> list[Block]:
    """The supplementary pairs read family-wise: every GeLoRA pair listed at a budget rank other than C4's
    (tasks trained at two or more ranks) whose task is informative at C4's rank (``informative``, per model),
    all models together, Holm at 5 %. Each is tested at 95 % on its own above, so a few of many would read
    decided by chance. A pair waits for its whole seed set at every rank, as C4's do
    (:func:`validation.report.build.whole_seed_sets`: no p-value, so not counted, while a shard is missing)."""
    from validation.finetune.verdicts import familywise
    from validation.report.claims import _name, _task

    pairs = []
    for model, budgets in groups.items():
        main_r = _c4_rank(budgets, data or {})
        listed = tasks_at_two_budgets(budgets) & informative.get(model, set())
        pairs += [
            (f"{_task(t)}, GeLoRA − {_name(m)} at r = {b['lora_r']} on {model}", m, pd)
            for b in budgets
            if _supplementary(b["lora_r"], main_r)
            for t, by in sorted((b.get("pairs") or {}).items())
            if t in listed
            for m, pd in sorted(by.items())
        ]
    tested, kept = familywise(pairs)
    if not tested:
        return []
    alone = [q for q in tested if q[2].get("verdict") in ("better", "worse")]
    n_without = len(pairs) - len(tested)
    without = (
        f" ({n_without} listed without one: fewer than two common seeds, or not every seed run)"
        if n_without
        else ""
    )
    decided = ", ".join(f"{label} ({pd['verdict']}, p = {pd['p']:.2g})" for label, _, pd in alone)
    held = (
        "; ".join(label for label, _, _ in kept) + (" stays decided" if len(kept) == 1 else " stay decided")
        if kept
        else "none stays decided"
    )
    return [
        Para(
            "Read family-wise (Holm's step-down, 5 % family-wise error) over the "
            f"{len(tested)} GeLoRA pair{'s' if len(tested) != 1 else ''} above at a rank other than C4's that "
            f"carry a p-value{without} and whose task is informative at C4's rank, every model together: "
            f"{len(alone)} decided at 95 % alone{': ' + decided if alone else ''}; after Holm {held}."
        )
    ]


def _budget_pair_paras(budgets: list[dict[str, Any]], shown: set[str], main_r: Any) -> list[Block]:
    """One line per task and baseline paired with GeLoRA at a budget rank other than C4's, with its pair at
    every rank of the model ("no pair" where GeLoRA or the baseline did not run the task at that rank, "no
    usable common seed" where both ran but no seed is kept by both, e.g. every baseline cell unconverged, as
    C4's table says), so that every supplementary pair the family-wise line counts is listed."""
    from validation.report.claims import _ci_of, _name, _task

    lines = []
    for t in sorted(shown):
        peers = sorted({m for b in budgets for m in ((b.get("pairs") or {}).get(t) or {})})
        for m in peers:
            at = [(b["lora_r"], ((b.get("pairs") or {}).get(t) or {}).get(m)) for b in budgets]
            if not any(pd is not None and _supplementary(r, main_r) for r, pd in at):
                continue
            parts = [
                f"r = {r}{' (C4)' if r == main_r else ''}: "
                + (
                    "no pair"
                    if pd is None
                    else f"{pd['verdict']} (no usable common seed{_partial_of(pd)})"
                    if pd.get("diff") is None and not pd["n"]
                    else f"{pd['verdict']} (n = {pd['n']}{_partial_of(pd)})"
                    if pd.get("diff") is None
                    else f"{pd['diff']:+.4f} {_ci_of(pd['ci'], pd['n'])}, {pd['verdict']} (n = {pd['n']})"
                )
                for r, pd in at
            ]
            lines.append(f"{_task(t)}, GeLoRA − {_name(m)}: " + "; ".join(parts) + ".")
    if not lines:
        return []
    head = (
        "GeLoRA against each baseline at every budget (paired over the seeds both kept, 95 % t-interval; "
        "the verdict at a rank other than C4's is supplementary):"
    )
    return [Para(" ".join([head, *lines]))]


def _grid_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:

    sec = report.get("sections", {}).get("grid")
    paper = report.get("paper", {})
    data = (sec or {}).get("data") or {}
    has_paper = bool(sec and sec.get("status") == "ok" and (data.get("paper_protocol") or {}).get("table"))
    if has_paper:
        title = "5. Fine-tuning under the paper protocol (GLUE / SQuAD) beside the paper's numbers"
    elif sec and sec.get("status") == "ok" and not data.get("smoke_test"):
        title = _short_title(data)
    else:
        title = "5. Fine-tuning results (GLUE / SQuAD) beside the paper's numbers"
    out: list[Block] = [Heading(2, title, ANCHORS["grid"])]
    avg = paper.get("glue_average") or {}
    glue = paper.get("glue") or {}
    paper_lines = [f"Paper: {paper.get('citation', 'arXiv 2412.09250').rstrip('.')}."]
    if glue.get("tasks"):
        paper_lines.append(
            f"Paper per-task numbers ({paper.get('model')}, {glue.get('table')}) are in the last column of appendix D."
        )
    else:
        paper_lines.append(
            f"Paper per-task numbers: {glue.get('status', 'not available offline')} — {glue.get('reason', '')}."
        )
    if avg.get("value") is not None:
        paper_lines.append(
            f"Paper GLUE average for GeLoRA on {avg.get('model')}: {fmt(avg['value'])} ({avg.get('source')})."
        )
    if not sec or sec.get("status") != "ok":
        return out + [Para(" ".join(paper_lines)), _not_run("fine-tuning grid", sec)], []
    data = sec["data"]
    if has_paper:
        out += _paper_blocks(report, data)
        out += _more_model_blocks(report)
    scored = [
        r
        for r in data.get("rows", [])
        if r.get("mean") is not None and (r.get("profile") == "paper") == has_paper
    ]
    if scored and not has_paper:
        out.append(Figure("grid_scores", FIGURES["grid_scores"][1]))
        tasks = sorted({r["task"] for r in scored})
        n_seeds = sorted({int(r.get("n_seeds") or 0) for r in scored})
        first = (
            f"Bars are mean dev scores of {data.get('model')} over "
            f"{'/'.join(str(n) for n in n_seeds)} seed(s), error bars one seed standard deviation."
        )
        gaps = []
        for t in tasks:
            rs = [r for r in scored if r["task"] == t]
            best = max(rs, key=lambda r: r["mean"])
            g = next((r for r in rs if r["method"] == "gelora"), None)
            if g is not None and best["method"] != "gelora":
                gaps.append((best["mean"] - g["mean"], t, g, best))
        if gaps:
            _, t, g, best = max(gaps, key=lambda q: q[0])
            second = (
                f"GeLoRA is below the best method on {len(gaps)} of {len(tasks)} task(s); the widest gap is on {t} "
                f"({fmt(g['mean'], 3)} vs {best['method']} {fmt(best['mean'], 3)})."
            )
        else:
            second = "GeLoRA has the best mean score on every task with a GeLoRA result."
        out.append(Para(f"{first} {second}"))
        out += _short_schedule_reading(
            report,
            scored,
            "What this short schedule shows (not C4's verdict, which needs the paper protocol): ",
        )
    elif has_paper and any(r.get("profile") != "paper" for r in data.get("rows", [])):
        out.append(
            Para(
                "Grids not trained under the paper protocol (e.g. short schedules) are listed in appendix D "
                "with their profile; they do not enter C4."
            )
        )
    out += _budget_blocks(data)
    for cid in ("C4", "C5", "C6"):
        out += _claim_evidence(report, cid)
    out.append(Para(" ".join(paper_lines)))
    out.append(_appendix_link("grid"))
    tasks_paper = glue.get("tasks", {})
    rows = []
    with_profile = any("profile" in r for r in data.get("rows", []))
    for r in data.get("rows", []):
        if r.get("mean") is None:
            why = str(r.get("reason") or "no result")
            score = why if why.startswith("not run") else f"not run ({why})"
        elif r.get("std") is None:
            score = f"{fmt(r['mean'], 4)} (n={r.get('n_seeds')}; no spread from one seed)"
        else:
            score = f"{fmt(r['mean'], 4)} ± {fmt(r['std'], 2)} (n={r.get('n_seeds')})"
        pv = (tasks_paper.get(r["task"]) or {}).get(r["method"])
        rows.append(
            (
                r["task"],
                r["method"],
                *((str(r.get("profile")),) if with_profile else ()),
                str(r.get("model") or data.get("model")),
                str(r.get("metric") or ""),
                score,
                fmt(r.get("budget")),
                _seconds(r.get("wall_s"))
                + (
                    f" ({r['wall_resumed_cells']} resumed cell(s) left out)"
                    if r.get("wall_resumed_cells")
                    else ""
                )
                + (f" ({r['wall_mps_cells']} under CUDA MPS)" if r.get("wall_mps_cells") else ""),
                "—" if pv is None else f"{fmt(pv)} ({paper.get('model')})",
            )
        )
    app: list[Block] = [
        Para(
            f"This report's runs: model {data.get('model')}; source {data.get('source')}. Scores are on the dev set "
            "(mean ± std over seeds); budget = trainable adapter parameters; wall time = mean seconds per run "
            '(cells resumed from a checkpoint left out; "under CUDA MPS": how many of the timed cells ran '
            "under CUDA MPS, about 1.25x faster than time-shared cells at twelve processes)."
        ),
        Table(
            (
                "task",
                "method",
                *(("profile",) if with_profile else ()),
                "model",
                "metric",
                "score mean ± std",
                "budget (params)",
                "wall time (s)",
                "paper",
            ),
            tuple(rows),
        ),
    ]
    ratios = data.get("ratios") or []
    if ratios:
        with_model = len({q.get("model") for q in ratios}) > 1
        # two budgets of one task and peer (a grid at a second rank) need the budget to tell their rows apart
        with_budget = len({(q["task"], q["peer"], q.get("profile"), q.get("model")) for q in ratios}) < len(
            ratios
        )
        app.append(
            Para(
                "Ratios against peers (GeLoRA / peer; score > 1 is better, time < 1 is faster; a wall-time ratio "
                "only between methods whose cells trained in one run of workers, so under the same load: — "
                "where a directory merges runs of other sessions or waves; claim C5 times methods alone):"
            )
        )
        app.append(
            Table(
                (
                    "task",
                    "peer",
                    *(("profile",) if with_profile else ()),
                    *(("model",) if with_model else ()),
                    *(("budget (params)",) if with_budget else ()),
                    "score ratio",
                    "wall-time ratio",
                    "budget ratio",
                ),
                tuple(
                    (
                        q["task"],
                        q["peer"],
                        *((str(q.get("profile")),) if with_profile else ()),
                        *((str(q.get("model")),) if with_model else ()),
                        *((fmt(q.get("budget")),) if with_budget else ()),
                        fmt(q.get("score_ratio"), 4),
                        fmt(q.get("time_ratio"), 3),
                        fmt(q.get("budget_ratio"), 3),
                    )
                    for q in ratios
                ),
            )
        )
    if has_paper:
        app += _short_schedule_appendix(report, data)
    for note in data.get("notes", []):
        app.append(Notice(note))
    return out, app


def _short_schedule_appendix(report: dict[str, Any], data: dict[str, Any]) -> list[Block]:
    """Appendix D's account of the grids that are not the paper protocol, when a paper grid leads section 5:
    what they are (a short schedule that had not converged), the STS-B plateau, and what they show."""

    short = [r for r in data.get("rows", []) if r.get("mean") is not None and r.get("profile") != "paper"]
    if not short:
        return []
    profiles = sorted({str(r.get("profile")) for r in short})
    out: list[Block] = [
        Para(
            f"**A short, unconverged schedule** (profile {', '.join(profiles)}): these grids ran before the paper protocol, on schedules too short for every method to "
            "converge, and without ceiling and floor runs. They are shown for the record and are not evidence "
            "either way; C4 uses only the paper-protocol grid of section 5."
        )
    ]
    return out + _short_schedule_reading(
        report, short, "What the short schedule shows, paired where seeds are shared: "
    )


def _short_schedule_reading(report: dict[str, Any], rows: list[dict[str, Any]], lead: str) -> list[Block]:
    """The STS-B plateau sentence of ``rows`` and the paired GeLoRA - baseline table of the short grids."""
    from validation.report.claims import short_schedule_comparison

    out: list[Block] = []
    plateau = stsb_plateau(rows)
    if plateau:
        out.append(Para(plateau))
    _, evidence, _, extra = short_schedule_comparison(report)
    if extra.get("table"):
        out.append(Para(lead + " ".join(evidence[:1])))
        t = extra["table"]
        out.append(Table(tuple(t["headers"]), tuple(tuple(str(x) for x in r) for r in t["rows"])))
    return out


def _trajectory_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    sec = report.get("sections", {}).get("trajectories")
    out: list[Block] = [Heading(2, "6. Rank trajectories (GeoLoRA / AdaLoRA)", ANCHORS["trajectories"])]
    if not sec or sec.get("status") != "ok":
        return out + [_not_run("rank trajectories", sec)], []
    series = sec["data"].get("series", {})
    out.append(Figure("rank_trajectories", FIGURES["rank_trajectories"][1]))
    if series:
        starts = [s["total_rank"][0] for s in series.values()]
        ends = [s["total_rank"][-1] for s in series.values()]

        def span(xs: list[Any]) -> str:
            return fmt(min(xs)) if min(xs) == max(xs) else f"{fmt(min(xs))}-{fmt(max(xs))}"

        out.append(
            Para(
                f"Each line is one of {len(series)} recorded runs; the total adapter rank starts at "
                f"{span(starts)} and ends at {span(ends)}. "
                "Runs that record only their final allocation are listed in appendix E."
            )
        )
    out.append(_appendix_link("trajectories"))
    rows = tuple(
        (
            name,
            str(s.get("n_recorded", len(s["steps"]))),
            str(len(s["steps"])),
            fmt(s["total_rank"][0]),
            fmt(s["total_rank"][-1]),
            s.get("source", ""),
        )
        for name, s in sorted(series.items())
    )
    app: list[Block] = [
        Table(
            ("run", "recorded steps", "points kept", "initial total rank", "final total rank", "source"),
            rows,
        )
    ]
    notes = sec["data"].get("notes") or []
    if notes:
        app.append(Bullets(tuple(notes)))
    return out, app


def _ablation_blocks(report: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    from validation.report.ablations import ablation_blocks

    return ablation_blocks(report, ANCHORS["ablations"])


def _environment_blocks(report: dict[str, Any]) -> list[Block]:
    env = report.get("environment") or {}
    out: list[Block] = [Heading(2, "7. Environment and how to reproduce", ANCHORS["environment"])]
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


#: appendix entry titles, by section
APPENDIX_TITLES = {
    "estimators": "Estimator accuracy: settings and every manifold",
    "theory": "Theory checks: every property",
    "model_profile": "Per-layer ID with 95% CIs and ranks per block",
    "grid": "Fine-tuning: every task and method, ratios, notes",
    "trajectories": "Rank trajectories: every run",
    "ablations": "Ablations: every task and comparison",
}


def document(report: dict[str, Any]) -> list[Block]:
    """The report's blocks in reading order: the claims (page 1), one section per kind of evidence (figure
    first, then a two-sentence reading and the claims' evidence), the environment, and the appendix with
    every full table (collapsible in HTML)."""
    sections = report.get("sections", {})
    not_ok = [f"{k}: {v.get('status')}" for k, v in sections.items() if v.get("status") != "ok"]
    blocks: list[Block] = [
        Heading(1, f"GeLoRA validation report — profile {report.get('profile')}"),
        Para(
            f"Generated {report.get('generated_at')} (schema {report.get('schema')}), seed {report.get('seed')}; "
            f"paper arXiv {report.get('paper', {}).get('arxiv', '2412.09250')}. "
            + (f"Sections not run: {', '.join(not_ok)}. " if not_ok else "All sections ran. ")
            + "Every number below is in report.json next to this file."
        ),
    ]
    blocks.extend(_claims_blocks(report))
    appendix: list[Block] = []
    for name, fn in (
        ("estimators", _estimator_blocks),
        ("theory", _theory_blocks),
        ("model_profile", _profile_blocks),
        ("grid", _grid_blocks),
        ("trajectories", _trajectory_blocks),
        ("ablations", _ablation_blocks),
    ):
        body, app = fn(report)
        blocks.extend(body)
        if app:
            letter, anchor = APPENDIX[name]
            appendix.append(Details(f"{letter}. {APPENDIX_TITLES[name]}", tuple(app), anchor))
    blocks.extend(_environment_blocks(report))
    if appendix:
        blocks.append(Heading(2, "Appendix: full tables", ANCHORS["appendix"]))
        blocks.extend(appendix)
    return blocks


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def alt_text(fig: Figure) -> str:
    """Alternative text of a figure (what it plots, for a reader who cannot see it)."""
    return fig.caption.rstrip(".")


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], figures: set[str] | frozenset[str] = frozenset()) -> str:
    """Markdown text of ``blocks``; a :class:`Figure` links ``figures/<stem>.png`` when ``stem`` is in ``figures``."""
    parts: list[str] = []
    for b in blocks:
        if isinstance(b, Details):
            parts.append(render_markdown([Heading(3, b.summary, b.anchor), *b.blocks], figures).rstrip("\n"))
        elif isinstance(b, Heading):
            anchor = f'<a id="{b.anchor}"></a>\n\n' if b.anchor else ""
            parts.append(anchor + "#" * b.level + " " + b.text)
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
                parts.append(f"![{alt_text(b)}](figures/{b.stem}.png)\n\n*{b.caption}*")
            else:
                parts.append(f"> **figure {b.stem}: not drawn (no data)**")
        elif isinstance(b, Code):
            parts.append("```\n" + b.text + "\n```")
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown block {b!r}")
    return "\n\n".join(parts) + "\n"
