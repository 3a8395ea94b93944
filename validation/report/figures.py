"""Figures of the report, drawn deterministically from ``report.json``.

Every figure is a pure function of the report dictionary and returns PNG bytes. Matplotlib runs on the Agg
backend with fixed style settings and without the ``Software`` metadata entry, so the same report gives
byte-identical PNGs (which keeps the self-contained HTML byte-identical too).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: style shared by every figure (readable at 100% zoom in a browser: >= 10 pt text at 110 dpi)
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "path.simplify": False,
    "svg.hashsalt": "gelora",
}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buf.getvalue()


def _ok(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    sec = report.get("sections", {}).get(name)
    if not sec or sec.get("status") != "ok":
        return None
    return sec.get("data")


def fig_estimator_accuracy(report: dict[str, Any]) -> bytes | None:
    """Estimated vs true intrinsic dimension for every estimator (one marker per cell)."""
    data = _ok(report, "estimators")
    if not data:
        return None
    keys = [e["key"] for e in data["estimators"]]
    cells = [c for c in data["cells"] if c["status"] == "ok"]
    if not cells:
        return None
    manifolds = sorted({(c["true_dim"], c["manifold"]) for c in cells})
    # manifolds down the right panel's y axis (horizontal bars): readable labels for any number of them
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(12, max(4.4, 0.34 * len(manifolds) + 1.4)), gridspec_kw={"width_ratios": [1, 1.15]}
    )
    dmax = max(max(c["true_dim"] for c in cells), max(c["estimate"] for c in cells))
    ax1.plot([0, dmax * 1.05], [0, dmax * 1.05], color="0.4", lw=1, ls="--", label="exact")
    ypos = {m: i for i, (_, m) in enumerate(manifolds)}
    width = 0.8 / max(len(keys), 1)
    for j, key in enumerate(keys):
        mine = [c for c in cells if c["estimator"] == key]
        if not mine:
            continue
        jitter = (j - (len(keys) - 1) / 2) * 0.06 * max(1.0, dmax / 10)
        ax1.scatter(
            [c["true_dim"] + jitter for c in mine],
            [c["estimate"] for c in mine],
            marker=MARKERS[j % len(MARKERS)],
            color=COLORS[j % len(COLORS)],
            s=30,
            label=key,
            zorder=3,
        )
        rel: dict[str, list[float]] = {}
        for c in mine:
            rel.setdefault(c["manifold"], []).append(100 * c["signed_error"] / c["true_dim"])
        ys = [ypos[m] + (j - (len(keys) - 1) / 2) * width for m in rel]
        ax2.barh(
            ys,
            [float(np.mean(v)) for v in rel.values()],
            height=width,
            color=COLORS[j % len(COLORS)],
            label=key,
        )
    ax1.set_xlabel("true intrinsic dimension d")
    ax1.set_ylabel("estimated dimension")
    ax1.set_title("Estimate vs truth (benchmark manifolds)")
    ax1.legend(loc="upper left", ncol=2)
    ax2.axvline(0, color="0.3", lw=1)
    ax2.set_yticks(range(len(manifolds)))
    ax2.set_yticklabels([f"{m} (d={d})" for d, m in manifolds], fontsize=8)
    ax2.set_ylim(-0.6, len(manifolds) - 0.4)
    ax2.invert_yaxis()  # lowest true dimension on top
    ax2.set_xlabel("signed relative error (%), mean over replicates")
    ax2.set_title("Relative error per manifold")
    fig.tight_layout()
    return _png(fig)


def fig_model_profile(report: dict[str, Any]) -> bytes | None:
    """Per-layer ID with 95% confidence bands (one line per estimator) and the resulting LoRA ranks."""
    data = _ok(report, "model_profile")
    if not data:
        return None
    profs = {k: v for k, v in data.get("estimators", {}).items() if v.get("status", "ok") == "ok"}
    if not profs:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.8 / len(profs)
    for j, (name, p) in enumerate(profs.items()):
        x = np.arange(len(p["dimension"]))
        col = COLORS[j % len(COLORS)]
        ax1.plot(x, p["dimension"], marker=MARKERS[j % len(MARKERS)], color=col, label=name)
        if p.get("ci_low") and p.get("ci_high"):
            ax1.fill_between(x, p["ci_low"], p["ci_high"], color=col, alpha=0.2, lw=0)
        if p.get("ranks"):
            xr = np.arange(len(p["ranks"])) + (j - (len(profs) - 1) / 2) * width
            ax2.bar(xr, p["ranks"], width=width, color=col, label=name)
    first = next(iter(profs.values()))
    labels = first.get("layers") or [str(i) for i in range(len(first["dimension"]))]
    ax1.set_xticks(range(len(labels)))
    ax1.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax1.set_xlabel("layer (hidden-state index)")
    ax1.set_ylabel("intrinsic dimension (95% CI band)")
    ax1.set_title(f"ID profile: {data.get('model')}")
    ax1.legend()
    rank_labels = first.get("rank_layers") or [str(i) for i in range(len(first.get("ranks") or []))]
    ax2.set_xticks(range(len(rank_labels)))
    ax2.set_xticklabels(rank_labels, rotation=45, ha="right", fontsize=8)
    ax2.set_xlabel("transformer block")
    ax2.set_ylabel("LoRA rank")
    ax2.set_title("GeLoRA ranks per estimator")
    ax2.legend()
    fig.tight_layout()
    return _png(fig)


def fig_grid(report: dict[str, Any]) -> bytes | None:
    """Mean score +- std over seeds per task and method, with the paper's numbers where known."""
    data = _ok(report, "grid")
    if not data or _paper(report) is not None:  # the paper protocol is drawn by the forest plot instead
        return None
    rows = [r for r in data.get("rows", []) if r.get("mean") is not None]
    if not rows:
        return None
    tasks = sorted({r["task"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) * max(1, len(methods)) / 2), 4.2))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs, ys, es = [], [], []
        for i, t in enumerate(tasks):
            r = next((r for r in rows if r["task"] == t and r["method"] == m), None)
            if r is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(r["mean"])
            es.append(r.get("std") or 0.0)
        bars = ax.bar(xs, ys, width=width, yerr=es, capsize=3, color=COLORS[j % len(COLORS)], label=m)
        ax.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    metric = ", ".join(sorted({str(r.get("metric") or "score") for r in rows}))
    ax.set_ylabel(f"dev score ({metric}; 1 = perfect)")
    ax.set_title(f"Fine-tuning: {data.get('model')} (mean ± std over seeds)")
    ax.axhline(0, color="0.3", lw=1)
    ax.legend(loc="best", framealpha=0.9)
    fig.tight_layout()
    return _png(fig)


def fig_trajectories(report: dict[str, Any]) -> bytes | None:
    """Total adapter rank over training steps for the rank-adaptive methods (AdaLoRA, GeoLoRA)."""
    data = _ok(report, "trajectories")
    if not data:
        return None
    series = data.get("series", {})
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for j, (name, s) in enumerate(sorted(series.items())):
        ax.plot(
            s["steps"],
            s["total_rank"],
            color=COLORS[j % len(COLORS)],
            marker=MARKERS[j % len(MARKERS)],
            ms=3,
            drawstyle="steps-post",  # a rank holds until the next recorded change
            label=name,
        )
    # the ranks settle within the first tens of steps of runs thousands of steps long
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training step (linear below 1, logarithmic above)")
    ax.set_ylabel("total adapter rank (sum over layers)")
    ax.set_title("Rank trajectories")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _png(fig)


def fig_theory(report: dict[str, Any]) -> bytes | None:
    """Worst margin of each theory check (positive = property holds with room to spare)."""
    data = _ok(report, "theory")
    if not data:
        return None
    checks = [c for c in data.get("checks", []) if isinstance(c.get("worst_margin"), int | float)]
    if not checks:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(checks) + 1.6))
    y = np.arange(len(checks))
    vals = [c["worst_margin"] for c in checks]
    bars = ax.barh(y, vals, color=[COLORS[2] if c.get("passed") else COLORS[1] for c in checks])
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=9, padding=3)
    ax.margins(x=0.15)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([c["name"] for c in checks], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("worst margin (each check's own units; >= 0 passes)")
    ax.set_title("Theory checks: worst margins (green pass, red fail)")
    fig.tight_layout()
    return _png(fig)


def _paper(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    from validation.report.claims import paper_protocol

    return paper_protocol(report)


def _paper_models(report: dict[str, Any]) -> list[tuple[str | None, dict[str, Any], dict[str, Any]]]:
    """``(model, summary, verdicts)`` of every model's paper-protocol runs, the report's first model first;
    ``model`` is None when there is only one (labels stay task names), so every figure labels its tasks the
    same way: with several models every label names its model (a figure has no other key)."""
    from validation.report.claims import paper_protocol_more

    pp = _paper(report)
    if pp is None:
        return []
    more = [(s.get("model"), s, v) for s, v in paper_protocol_more(report)]
    return [(pp[0].get("model") if more else None, pp[0], pp[1]), *more]


def _label(task: str, model: str | None) -> str:
    """A task's label in a figure: the task alone, or ``"task (model)"`` when the report has several models."""
    return task if model is None else f"{task} ({model})"


def paired_difference_items(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(task label, baseline, pair)`` of every GeLoRA - baseline pair with a difference, of every model's
    paper-protocol runs, so C4's pairs of all models are drawn: with one model under their task names, with
    several as ``"task (model)"``."""
    return [
        (_label(task, model), b, pd)
        for model, _, v in _paper_models(report)
        for task, rec in v["tasks"].items()
        for b, pd in rec["pairs"].items()
        if pd["diff"] is not None
    ]


def fig_paired_differences(report: dict[str, Any]) -> bytes | None:
    """Forest plot of the paper protocol: GeLoRA - baseline per task (and model) with its 95% paired CI."""
    items = paired_difference_items(report)
    if not items:
        return None
    colour = {"better": COLORS[2], "worse": COLORS[1], "tie": COLORS[0], "undetermined": "0.5"}
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(items) + 1.6))
    for i, (_, _, pd) in enumerate(items):
        col = "0.65" if pd["excluded"] else colour[pd["verdict"]]
        if pd["ci"] is not None:
            ax.plot(pd["ci"], [i, i], color=col, lw=2)
        ax.plot(
            [pd["diff"]],
            [i],
            marker="o",
            ms=7,
            color=col,
            markerfacecolor="white" if pd["excluded"] else col,
        )
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(
        [f"{t} vs {b} (n={pd['n']})" + (" excluded" if pd["excluded"] else "") for t, b, pd in items],
        fontsize=9,
    )
    ax.invert_yaxis()
    ax.set_xlabel("GeLoRA - baseline, primary metric (95% paired CI over seeds)")
    ax.set_title("Paper protocol: paired differences (green better, red worse, blue tie; hollow excluded)")
    fig.tight_layout()
    return _png(fig)


def _paper_entries(report: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(task label, method, entry)`` of the paper-protocol summary tables, sorted (nothing without one),
    labelled as :func:`paired_difference_items` labels them."""
    for model, summary, _ in _paper_models(report):
        for task, by in sorted((summary.get("table") or {}).items()):
            for m, e in sorted(by.items()):
                yield _label(task, model), m, e


def loss_curve_series(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {method: {"seed", "points"}}}`` of the paper-protocol cells that recorded a loss curve."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task, m, e in _paper_entries(report):
        lc = e.get("loss_curve")
        if lc and lc.get("points"):
            out.setdefault(task, {})[m] = lc
    return out


def _task_panels(series: dict[str, dict[str, Any]]) -> tuple[Any, list[Any], Callable[[str], str]]:
    """A figure with one panel per task of ``series`` (``{task: {method: ...}}``, up to three panels per
    row, the unused ones hidden), the panels in task order, and each method's colour (the same in every
    panel)."""
    n = len(series)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    flat = [axes[k // cols][k % cols] for k in range(rows * cols)]
    for ax in flat[n:]:
        ax.set_visible(False)
    methods = sorted({m for by in series.values() for m in by})
    return fig, flat[:n], lambda m: COLORS[methods.index(m) % len(COLORS)]


def fig_loss_curves(report: dict[str, Any]) -> bytes | None:
    """Training loss against step of one seed per method, one panel per task (paper protocol)."""
    series = loss_curve_series(report)
    if not series:
        return None
    fig, panels, colour = _task_panels(series)
    for ax, (task, by) in zip(panels, series.items(), strict=True):
        for m, lc in by.items():
            pts = np.asarray(lc["points"], dtype=float)
            ax.plot(pts[:, 0], pts[:, 1], color=colour(m), lw=1.2, label=f"{m} (seed {lc['seed']})")
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _chosen_run(sel: dict[str, Any]) -> dict[str, Any] | None:
    """The selection record's run at its chosen rate (``runs`` is keyed by the rate as text)."""
    chosen = sel.get("chosen")
    for rate, run in (sel.get("runs") or {}).items():
        try:
            if chosen is not None and float(rate) == float(chosen):
                return run  # type: ignore[no-any-return]
        except (TypeError, ValueError):
            continue
    return None


def heldout_curve_series(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {method: {"points", "converged", "tail", "tol", "metric", "rate"}}}``: the held-out curve of
    each paper-protocol method's selection run at its chosen rate, the record the convergence flag of its
    cells comes from (first seed that carries one)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task, m, e in _paper_entries(report):
        for r in e.get("per_seed") or []:
            sel = r.get("lr_selection") or {}
            conv = (_chosen_run(sel) or {}).get("convergence") or {}
            if conv.get("curve"):
                out.setdefault(task, {})[m] = {
                    "points": conv["curve"],
                    "converged": conv.get("converged"),
                    "tail": conv.get("tail"),
                    "tol": conv.get("tol"),
                    "metric": conv.get("metric") or sel.get("metric"),
                    "rate": sel.get("chosen"),
                }
                break
    return out


def fig_heldout_curves(report: dict[str, Any]) -> bytes | None:
    """Held-out score against step of every method's selection run, one panel per task (paper protocol);
    the steps the convergence rule reads shaded, unconverged runs dashed."""
    series = heldout_curve_series(report)
    if not series:
        return None
    fig, panels, colour = _task_panels(series)
    for ax, (task, by) in zip(panels, series.items(), strict=True):
        last = max(p[0] for c in by.values() for p in c["points"])
        tails = {c["tail"] for c in by.values() if c["tail"] is not None}
        if len(tails) == 1:
            ax.axvspan((1.0 - tails.pop()) * last, last, color="0.92", lw=0)
        for m, c in by.items():
            pts = np.asarray(c["points"], dtype=float)
            bad = c["converged"] is False
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                color=colour(m),
                lw=1.2,
                ls="--" if bad else "-",
                marker="o",
                ms=3,
                label=f"{m} ({c['rate']:g})" + (" unconverged" if bad else ""),
            )
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"held-out {next(iter(by.values()))['metric']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def tasks_at_two_budgets(budgets: list[dict[str, Any]]) -> set[str]:
    """Tasks where some method has a score at two or more of ``budgets``' ranks (one model's records)."""
    seen: dict[tuple[str, str], int] = {}
    for b in budgets:
        for t, by in b["scores"].items():
            for m, e in by.items():
                if e and e.get("mean") is not None:
                    seen[(t, m)] = seen.get((t, m), 0) + 1
    return {t for (t, _), n in seen.items() if n >= 2}


def budget_groups(budgets: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """``paper_budgets`` records grouped by model (in order), keeping the models with two or more ranks and
    a task trained at two of them: the models the score-vs-budget table and figure show."""
    by_model: dict[Any, list[dict[str, Any]]] = {}
    for b in budgets:
        by_model.setdefault(b.get("model"), []).append(b)
    return {m: bs for m, bs in by_model.items() if len(bs) >= 2 and tasks_at_two_budgets(bs)}


def budget_series(report: dict[str, Any]) -> dict[str, dict[str, list[tuple[int, float, float | None]]]]:
    """``{panel: {method: [(r, mean, std), ...]}}`` of the paper-protocol grids at two or more budget ranks
    (``paper_budgets`` of the grid section, :func:`budget_groups`), ranks ascending; methods without a
    score at a rank skip it. A panel is a task trained at two or more ranks, or ``"task, model"`` when
    several models are shown."""
    groups = budget_groups((_ok(report, "grid") or {}).get("paper_budgets") or [])
    out: dict[str, dict[str, list[tuple[int, float, float | None]]]] = {}
    for model, budgets in groups.items():
        shown = tasks_at_two_budgets(budgets)
        for b in sorted(budgets, key=lambda b: -1 if b["lora_r"] is None else b["lora_r"]):
            if b["lora_r"] is None:
                continue
            for task, by in sorted(b["scores"].items()):
                if task not in shown:
                    continue
                panel = task if len(groups) == 1 else f"{task}, {model}"
                for m, e in sorted(by.items()):
                    if e.get("mean") is not None:
                        out.setdefault(panel, {}).setdefault(m, []).append(
                            (int(b["lora_r"]), e["mean"], e.get("std"))
                        )
    return out


def _budget_model(report: dict[str, Any]) -> str | None:
    """The model of the score-vs-budget figure when it shows one model (:func:`budget_groups`)."""
    models = list(budget_groups((_ok(report, "grid") or {}).get("paper_budgets") or []))
    return str(models[0]) if len(models) == 1 and models[0] is not None else None


def fig_score_vs_budget(report: dict[str, Any]) -> bytes | None:
    """Primary score (mean ± std over converged seeds) against the adapter budget rank, one panel per task;
    full fine-tuning and the head alone as horizontal lines (they have no adapter budget)."""
    series = budget_series(report)
    if not series:
        return None
    metrics = ((_ok(report, "grid") or {}).get("paper_protocol") or {}).get("primary_metric") or {}
    metrics = {**metrics, **{p: metrics.get(p.split(", ")[0]) for p in series}}
    fig, panels, colour_of = _task_panels(series)
    refs = {"full": ("--", "full (ceiling)"), "head_only": (":", "head only (floor)")}
    model = _budget_model(report)
    for ax, (task, by) in zip(panels, series.items(), strict=True):
        ranks = sorted({r for pts in by.values() for r, _, _ in pts})
        for m, pts in by.items():
            colour = colour_of(m)
            if m in refs:
                ls, label = refs[m]
                ax.axhline(float(np.mean([y for _, y, _ in pts])), color=colour, ls=ls, lw=1, label=label)
                continue
            x = [r for r, _, _ in pts]
            y = [v for _, v, _ in pts]
            err = [0.0 if sd is None else sd for _, _, sd in pts]
            ax.errorbar(x, y, yerr=err, color=colour, marker="o", ms=4, lw=1.2, capsize=3, label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks)
        ax.set_xticklabels([str(r) for r in ranks])
        ax.set_title(_label(task, model or None))
        ax.set_xlabel("adapter budget (uniform LoRA rank r)")
        ax.set_ylabel(str(metrics.get(task) or "primary metric"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def fig_ablations(report: dict[str, Any]) -> bytes | None:
    """Forest plot of GeLoRA against its ablations (:mod:`validation.report.ablations`)."""
    from validation.report.ablations import fig_ablations as draw

    return draw(report)


#: figure file stem -> (function, caption)
FIGURES: dict[str, tuple[Callable[[dict[str, Any]], bytes | None], str]] = {
    "estimator_accuracy": (
        fig_estimator_accuracy,
        "Estimated vs true intrinsic dimension on the benchmark manifolds (left) and signed relative error per manifold (right).",
    ),
    "theory_margins": (fig_theory, "Worst margin of each theory check."),
    "model_id_profile": (
        fig_model_profile,
        "Per-layer intrinsic dimension with 95% confidence bands per estimator (left) and the resulting GeLoRA ranks (right).",
    ),
    "paired_differences": (
        fig_paired_differences,
        "Paper protocol: GeLoRA minus each baseline per task, point = mean paired difference over seeds, bar = "
        "its 95% t-interval; right of 0 favours GeLoRA; hollow grey points are tasks excluded as uninformative; "
        "with several models each task is labelled task (model).",
    ),
    "loss_curves": (
        fig_loss_curves,
        "Paper protocol: training loss against optimizer step for one seed per method, one panel per task.",
    ),
    "heldout_curves": (
        fig_heldout_curves,
        "Paper protocol: held-out score of each method's learning-rate selection run at its chosen rate "
        "(legend), the curve its cells' convergence flag comes from; shaded: the rule's tail (a run has "
        "converged when its final score is at most the tolerance above its best score before the tail); "
        "dashed: not converged.",
    ),
    "score_vs_budget": (
        fig_score_vs_budget,
        "Paper protocol: dev-set score (mean ± std over converged seeds) against the adapter budget, one "
        "panel per task; every budgeted method matched to uniform LoRA of rank r; full fine-tuning and the "
        "classifier head alone as horizontal lines.",
    ),
    "grid_scores": (fig_grid, "Dev-set scores, mean ± std over seeds, per task and method."),
    "rank_trajectories": (fig_trajectories, "Total adapter rank during training for rank-adaptive methods."),
    "ablation_forest": (
        fig_ablations,
        "GeLoRA minus each ablation, paired over seeds, with 95% t-intervals per task.",
    ),
}


def make_figures(report: dict[str, Any]) -> dict[str, bytes]:
    """All figures the report's data supports, as ``{stem: png_bytes}`` in :data:`FIGURES` order."""
    out = {}
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        for stem, (fn, _) in FIGURES.items():
            png = fn(report)
            if png is not None:
                out[stem] = png
    return out
