"""Estimator cross-comparison on real hidden states (GeLoRA's open question 2).

For one model and one text sample, estimate the intrinsic dimension (ID) of every layer with TwoNN, MLE
and DANCo across sample sizes, token-sampling choices and seeds, then report

* per-layer agreement between estimators: Spearman rank correlation of the ID profiles and absolute
  differences with a confidence interval (the two estimators' CI half-widths combined in quadrature);
* the GeLoRA ranks each estimator implies and how many blocks change rank between estimators;
* the same estimators on synthetic data of known ID with the same ``n`` and ambient dimension, so the
  reader sees which estimator is closest where the truth is known;
* the wall time of the estimation after the forward pass (the issue's target: all layers, all three
  estimators, 16k tokens per layer, under 10 s of GPU time).

Hidden states are collected once per (token sampling, seed) at the largest sample size and nested
subsamples (the first ``n`` rows of one seeded permutation) give the smaller sizes, so differences
between sizes are not confounded with different token draws.

Command line::

    python -m validation.estimators.crosscompare --task stsb --sizes 1000,4000,16000 --seeds 0,1,2 \
        --device cuda --out reports/crosscompare/crosscompare.json
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gelora._io import atomic_write_json
from gelora.errors import ConfigError, DegenerateDataError
from gelora.estimators import estimate_id
from gelora.ranks import ranks_from_dimensions
from validation._cli import add_output_args, render_existing

SCHEMA = "gelora.crosscompare/1"
ESTIMATORS: tuple[str, ...] = ("twonn", "mle", "danco")
#: estimator parameters used throughout (duplicates are dropped: identical tokens at identical positions
#: give identical embedding-layer rows, which would otherwise make every k-NN estimator take log(0))
DEFAULT_ESTIMATOR_PARAMS: dict[str, dict[str, Any]] = {
    "twonn": {"duplicates": "dedupe"},
    "mle": {"duplicates": "dedupe", "k": 20},
    # DANCo calibrates at the data's n; above 16k rows it runs on a seeded 16k-row subset (calibration_n)
    "danco": {"duplicates": "dedupe", "k": 10, "calibration_n": 16000},
}
#: synthetic comparison: intrinsic dimensions that bracket what the estimators see on hidden states
SYNTHETIC_DIMS: tuple[int, ...] = (4, 8, 16)


def _sync(device: Any) -> None:
    import torch

    if device is not None and str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _estimate_layers(
    layers: Sequence[Any], estimator: str, params: dict[str, Any], device: Any, seed: int
) -> tuple[list[dict[str, Any]], float]:
    """Estimate every layer; return per-layer dicts and the wall time in seconds."""
    out: list[dict[str, Any]] = []
    _sync(device)
    t0 = time.perf_counter()
    for X in layers:
        try:
            res = estimate_id(X, method=estimator, device=device, seed=seed, **params)
        except DegenerateDataError as exc:
            # e.g. the embedding output of the first token ([CLS] at position 0) is the same vector for
            # every text: flag the layer instead of inventing a dimension
            out.append({"dimension": None, "ci": None, "degenerate": str(exc)})
            continue
        out.append(
            {
                "dimension": float(res.dimension),
                "ci": [float(res.ci[0]), float(res.ci[1])],
                "n_samples": int(res.n_samples),
                "n_duplicates_removed": int(res.n_duplicates_removed),
            }
        )
    _sync(device)
    return out, time.perf_counter() - t0


def _ranks_or_none(dims: Sequence[float | None], offset: int) -> list[int | None]:
    """The rule's ranks; a block next to a flagged (degenerate) layer gets ``None``."""
    if all(d is not None for d in dims):
        full: list[int | None] = [
            *ranks_from_dimensions([float(d) for d in dims if d is not None], offset=offset)
        ]
        return full
    out: list[int | None] = []
    for a, b in zip(dims[:-1], dims[1:]):
        out.append(None if a is None or b is None else ranks_from_dimensions([a, b], offset=offset)[0])
    return out


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = spearmanr(a, b).statistic
    return None if not math.isfinite(float(rho)) else float(rho)


def agreement(cell_a: dict[str, Any], cell_b: dict[str, Any], ci_level: float = 0.95) -> dict[str, Any]:
    """Agreement of two estimators' ID profiles on the same data.

    Parameters
    ----------
    cell_a, cell_b : dict
        Cells of :func:`run_crosscompare` (``layers``: list of ``{"dimension", "ci"}``, ``ranks``).
    ci_level : float
        Level of the per-layer difference intervals (the estimators' own CIs are at this level).

    Returns
    -------
    dict
        ``spearman`` (None when a profile is constant), per-layer ``abs_diff`` and ``diff_ci`` (the
        difference ± the half-widths combined in quadrature, i.e. treating the two estimates as
        independent normal errors), ``mean_abs_diff``, ``layers_differing`` (CI of the difference
        excludes 0), ``rank_changes`` (blocks whose GeLoRA rank differs) and ``max_rank_change``.
    """
    both = [
        i
        for i, (x, y) in enumerate(zip(cell_a["layers"], cell_b["layers"]))
        if x["dimension"] is not None and y["dimension"] is not None
    ]
    la = [cell_a["layers"][i] for i in both]
    lb = [cell_b["layers"][i] for i in both]
    da = np.array([x["dimension"] for x in la], dtype=np.float64)
    db = np.array([x["dimension"] for x in lb], dtype=np.float64)
    ha = np.array([(x["ci"][1] - x["ci"][0]) / 2 for x in la], dtype=np.float64)
    hb = np.array([(x["ci"][1] - x["ci"][0]) / 2 for x in lb], dtype=np.float64)
    diff = db - da
    half = np.sqrt(ha**2 + hb**2)
    pairs = [(x, y) for x, y in zip(cell_a["ranks"], cell_b["ranks"]) if x is not None and y is not None]
    ra = np.array([p[0] for p in pairs], dtype=np.int64)
    rb = np.array([p[1] for p in pairs], dtype=np.int64)
    return {
        "pair": [cell_a["estimator"], cell_b["estimator"]],
        "layers_compared": both,
        "spearman": _spearman(da.tolist(), db.tolist()),
        "diff": diff.tolist(),
        "abs_diff": np.abs(diff).tolist(),
        "diff_ci": np.stack([diff - half, diff + half], axis=1).tolist(),
        "mean_abs_diff": float(np.mean(np.abs(diff))),
        "layers_differing": int(np.sum((diff - half > 0) | (diff + half < 0))),
        "rank_changes": int(np.sum(ra != rb)),
        "max_rank_change": int(np.max(np.abs(ra - rb))) if ra.size else 0,
    }


def synthetic_comparison(
    sizes: Sequence[int],
    ambient_dim: int,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    dims: Sequence[int] = SYNTHETIC_DIMS,
    noise: float = 0.0,
    seed: int = 0,
    device: Any = None,
    estimator_params: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Estimators on data of known ID with the same ``n`` and ambient dimension as the hidden states.

    Two families per ``d``: a uniformly sampled ``d``-sphere and a Gaussian ``d``-dimensional linear
    subspace, both isometrically embedded in ``R^ambient_dim`` (``synthetic.manifolds``).

    Returns
    -------
    list of dict
        One row per (manifold, d, n, estimator): ``dimension``, ``ci``, ``abs_error``, ``covered``
        (truth inside the CI), ``seconds``.
    """
    import synthetic.manifolds as sm

    params = {**DEFAULT_ESTIMATOR_PARAMS, **(estimator_params or {})}
    rows: list[dict[str, Any]] = []
    for d, n in itertools.product(dims, sizes):
        if d + 1 > ambient_dim:
            continue
        samples = [
            sm.hypersphere(int(n), int(d), embed_dim=int(ambient_dim), noise=noise, seed=seed),
            sm.linear_subspace(int(n), int(d), int(ambient_dim), noise=noise, seed=seed),
        ]
        for s in samples:
            X: Any = s.X
            if device is not None and not str(device).startswith("cpu"):
                import torch

                X = torch.as_tensor(X, dtype=torch.float32, device=device)
            for est in estimators:
                (res,), seconds = _estimate_layers([X], est, params.get(est, {}), device, seed)
                rows.append(
                    {
                        "manifold": s.name,
                        "true_dim": int(s.intrinsic_dim),
                        "n": int(n),
                        "ambient_dim": int(ambient_dim),
                        "noise": float(noise),
                        "estimator": est,
                        "dimension": res["dimension"],
                        "ci": res["ci"],
                        "abs_error": abs(res["dimension"] - s.intrinsic_dim),
                        "covered": bool(res["ci"][0] <= s.intrinsic_dim <= res["ci"][1]),
                        "seconds": seconds,
                    }
                )
    return rows


def run_crosscompare(
    texts: Sequence[str],
    *,
    model: Any = None,
    estimators: Sequence[str] = ESTIMATORS,
    sizes: Sequence[int] = (1000, 4000, 16000),
    token_samplings: Sequence[str] = ("all", "first", "mean"),
    seeds: Sequence[int] = (0,),
    device: Any = "cpu",
    dtype: Any = None,
    max_length: int = 128,
    batch_size: int = 64,
    offset: int = 1,
    estimator_params: dict[str, dict[str, Any]] | None = None,
    synthetic: bool = True,
    data_label: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the cross-comparison and return (and optionally write) its JSON-ready summary.

    Parameters
    ----------
    texts : sequence of str
        The text sample (e.g. a GLUE task's training sentences).
    model : str, path, LoadedModel or None
        Model name/path (``None``: the bundled encoder) or an already loaded :class:`gelora.models.LoadedModel`.
    estimators : sequence of str
        Estimator names (``gelora.estimators.ESTIMATORS``).
    sizes : sequence of int
        Rows per layer; sizes above the available rows of a sampling mode are skipped and listed in
        ``skipped``.
    token_samplings : sequence of str
        ``"all"`` (token representations), ``"first"`` ([CLS]) and/or ``"mean"`` (mean-pooled texts).
    seeds : sequence of int
        One hidden-state draw (token sample and nested subsamples) per value; the estimators' own
        randomness (bootstrap, DANCo calibration) uses seed 0 throughout.
    device, dtype
        Where the model runs and the estimators compute (``"cuda"`` on a GPU); model dtype.
    offset : int
        The rank rule's offset.
    estimator_params : dict, optional
        Per-estimator overrides of :data:`DEFAULT_ESTIMATOR_PARAMS`.
    synthetic : bool
        Add :func:`synthetic_comparison` at the same sizes and the model's hidden size.
    out : path, optional
        Write the summary atomically there.

    Returns
    -------
    dict
        ``schema``, ``params``, ``cells`` (one per sampling × size × seed × estimator, with per-layer
        IDs, CIs, ranks and estimation seconds), ``agreement`` (per pair), ``summary`` (per sampling ×
        size: mean Spearman, mean |ΔID|, rank changes, averaged over seeds), ``synthetic``, ``timing``,
        ``skipped``.
    """
    from tqdm.auto import tqdm

    from gelora.hidden_states import collect_hidden_states
    from gelora.models import LoadedModel, load_model

    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ConfigError(f"unknown estimators {unknown}; choose from {ESTIMATORS}")
    sizes = sorted(int(s) for s in sizes)
    if not sizes or sizes[0] < 50:
        raise ConfigError(f"sizes must be >= 50 rows per layer, got {sizes}")
    params = {
        e: {**DEFAULT_ESTIMATOR_PARAMS.get(e, {}), **(estimator_params or {}).get(e, {})} for e in estimators
    }
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    texts = list(texts)

    cells: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    forward_seconds: dict[str, float] = {}
    combos = list(itertools.product(token_samplings, seeds))
    bar = tqdm(total=len(combos) * len(sizes) * len(estimators), desc="crosscompare", disable=not progress)
    for sampling, seed in combos:
        _sync(device)
        t0 = time.perf_counter()
        hs = collect_hidden_states(
            lm.model,
            lm.tokenizer,
            texts,
            token_sampling=sampling,
            max_tokens=sizes[-1],
            max_length=max_length,
            batch_size=batch_size,
            seed=seed,
        )
        _sync(device)
        forward_seconds[f"{sampling}/seed{seed}"] = time.perf_counter() - t0
        perm = np.random.default_rng(seed).permutation(hs.n_samples)
        for n in sizes:
            if n > hs.n_samples:
                skipped.append(
                    {
                        "token_sampling": sampling,
                        "n": n,
                        "seed": seed,
                        "reason": f"only {hs.n_samples} rows available",
                    }
                )
                bar.update(len(estimators))
                continue
            import torch

            rows = torch.as_tensor(perm[:n], device=hs.layers[0].device)
            layers = [layer.index_select(0, rows) for layer in hs.layers]
            for est in estimators:
                # the seed varies the token draw; estimator randomness (bootstrap, DANCo's calibration)
                # keeps seed 0 so that DANCo's disk-cached calibration is shared by all draws
                per_layer, seconds = _estimate_layers(layers, est, params[est], device, 0)
                dims = [x["dimension"] for x in per_layer]
                cells.append(
                    {
                        "token_sampling": sampling,
                        "n": n,
                        "seed": seed,
                        "estimator": est,
                        "layers": per_layer,
                        "ranks": _ranks_or_none(dims, offset),
                        "seconds": seconds,
                    }
                )
                bar.update(1)
    bar.close()

    agreements: list[dict[str, Any]] = []
    by_key: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for c in cells:
        by_key.setdefault((c["token_sampling"], c["n"], c["seed"]), {})[c["estimator"]] = c
    for (sampling, n, seed), group in by_key.items():
        for a, b in itertools.combinations([e for e in estimators if e in group], 2):
            agreements.append(
                {"token_sampling": sampling, "n": n, "seed": seed, **agreement(group[a], group[b])}
            )

    summary: list[dict[str, Any]] = []
    for sampling, n in itertools.product(token_samplings, sizes):
        for a, b in itertools.combinations(estimators, 2):
            rows_ = [
                g
                for g in agreements
                if g["token_sampling"] == sampling and g["n"] == n and g["pair"] == [a, b]
            ]
            if not rows_:
                continue
            rhos = [g["spearman"] for g in rows_ if g["spearman"] is not None]
            summary.append(
                {
                    "token_sampling": sampling,
                    "n": n,
                    "pair": [a, b],
                    "n_seeds": len(rows_),
                    "spearman_mean": float(np.mean(rhos)) if rhos else None,
                    "mean_abs_diff": float(np.mean([g["mean_abs_diff"] for g in rows_])),
                    "rank_changes_mean": float(np.mean([g["rank_changes"] for g in rows_])),
                    "max_rank_change": int(max(g["max_rank_change"] for g in rows_)),
                }
            )

    # estimation time per (sampling, n, seed) summed over estimators and layers
    est_time: dict[str, float] = {}
    for c in cells:
        key = f"{c['token_sampling']}/n{c['n']}/seed{c['seed']}"
        est_time[key] = est_time.get(key, 0.0) + c["seconds"]
    width = int(hs.layers[0].shape[1])
    syn = (
        synthetic_comparison(sizes, width, estimators=estimators, device=device, estimator_params=params)
        if synthetic
        else []
    )
    result = {
        "schema": SCHEMA,
        "params": {
            "model": lm.name,
            "data": data_label,
            "n_texts": len(texts),
            "estimators": list(estimators),
            "estimator_params": params,
            "sizes": sizes,
            "token_samplings": list(token_samplings),
            "seeds": [int(s) for s in seeds],
            "device": str(device),
            "dtype": str(dtype),
            "max_length": max_length,
            "offset": offset,
            "hidden_size": width,
            "n_hidden_states": len(hs.layers),
        },
        "cells": cells,
        "agreement": agreements,
        "summary": summary,
        "synthetic": syn,
        "timing": {"forward_seconds": forward_seconds, "estimation_seconds_all_estimators": est_time},
        "skipped": skipped,
    }
    if out is not None:
        atomic_write_json(out, result)
    return result


def render_markdown(res: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run_crosscompare` result (agreement, profiles, synthetic truth)."""
    p = res["params"]
    lines = [
        f"Model `{p['model']}`, data: {p['data']}, device {p['device']}, seeds {p['seeds']}.",
        "",
        "**Agreement between estimators** (means over seeds; rank changes out of "
        f"{p['n_hidden_states'] - 1} blocks)",
        "",
        "| sampling | n | pair | Spearman of ID profiles | mean abs ID difference | blocks changing rank | max rank change |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["summary"]:
        rho = "n/a" if r["spearman_mean"] is None else f"{r['spearman_mean']:.2f}"
        lines.append(
            f"| {r['token_sampling']} | {r['n']} | {r['pair'][0]} vs {r['pair'][1]} | {rho} | "
            f"{r['mean_abs_diff']:.2f} | {r['rank_changes_mean']:.1f} | {r['max_rank_change']} |"
        )
    all_cells = [c for c in res["cells"] if c["token_sampling"] == "all" and c["seed"] == p["seeds"][0]]
    if all_cells:
        n_max = max(c["n"] for c in all_cells)
        lines += [
            "",
            f"**ID profiles and GeLoRA ranks** (all tokens, n = {n_max}, seed {p['seeds'][0]}; "
            "hidden state 0 = embedding output)",
            "",
            "| estimator | ID per hidden state (95% CI half-width) | ranks per block |",
            "|---|---|---|",
        ]
        for c in (c for c in all_cells if c["n"] == n_max):
            ids = ", ".join(
                "flagged"
                if x["dimension"] is None
                else f"{x['dimension']:.1f} (±{(x['ci'][1] - x['ci'][0]) / 2:.1f})"
                for x in c["layers"]
            )
            lines.append(f"| {c['estimator']} | {ids} | {c['ranks']} |")
    if res.get("synthetic"):
        lines += [
            "",
            f"**Known truth, same n and ambient dimension ({p['hidden_size']})**: mean absolute error "
            "(CI coverage of the truth)",
            "",
        ]
        ests = list(dict.fromkeys(r["estimator"] for r in res["synthetic"]))
        lines += ["| manifold | d | n | " + " | ".join(ests) + " |", "|---|---|---|" + "---|" * len(ests)]
        keys = list(dict.fromkeys((r["manifold"], r["true_dim"], r["n"]) for r in res["synthetic"]))
        for m, d, n in keys:
            cells = []
            for e in ests:
                rows = [
                    r
                    for r in res["synthetic"]
                    if (r["manifold"], r["true_dim"], r["n"], r["estimator"]) == (m, d, n, e)
                ]
                if rows:
                    err = float(np.mean([r["abs_error"] for r in rows]))
                    cov = sum(r["covered"] for r in rows)
                    cells.append(f"{err:.2f} ({cov}/{len(rows)})")
                else:
                    cells.append("not run")
            lines.append(f"| {m} | {d} | {n} | " + " | ".join(cells) + " |")
    if res.get("skipped"):
        lines += ["", f"Skipped: {len(res['skipped'])} (sampling, n, seed) cells, e.g. {res['skipped'][0]}."]
    return "\n".join(lines) + "\n"


def plot_profiles(
    res: dict[str, Any], path: str | Any, *, token_sampling: str = "all", seed: int | None = None
) -> Any:
    """ID profile per estimator (with 95% CI bands) for every sample size; one panel per size; PNG."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = res["params"]["seeds"][0] if seed is None else seed
    cells = [c for c in res["cells"] if c["token_sampling"] == token_sampling and c["seed"] == seed]
    sizes = sorted({c["n"] for c in cells})
    if not sizes:
        raise ConfigError(f"no cells with token_sampling={token_sampling!r} and seed={seed}")
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.8), squeeze=False, sharey=True)
    colors = {"twonn": "tab:blue", "mle": "tab:orange", "danco": "tab:green"}
    for ax, n in zip(axes[0], sizes):
        for c in (c for c in cells if c["n"] == n):
            xs = [i for i, x in enumerate(c["layers"]) if x["dimension"] is not None]
            ys = [c["layers"][i]["dimension"] for i in xs]
            lo = [c["layers"][i]["ci"][0] for i in xs]
            hi = [c["layers"][i]["ci"][1] for i in xs]
            col = colors.get(c["estimator"])
            ax.plot(xs, ys, marker="o", ms=3, color=col, label=f"{c['estimator']} ranks {c['ranks']}")
            ax.fill_between(xs, lo, hi, color=col, alpha=0.25, linewidth=0)
        ax.set_title(f"n = {n} tokens per layer", fontsize=11)
        ax.set_xlabel("hidden state (0 = embedding output)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("intrinsic dimension (95% CI)")
    fig.suptitle(f"{res['params']['model']}: {token_sampling} tokens, seed {seed}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, metadata={"Software": None})
    plt.close(fig)
    return path


def _texts_for_task(task: str, data_dir: str | None, limit: int | None) -> tuple[list[str], str]:
    from validation.data.glue import load_glue

    split = load_glue(task, "train", data_dir=data_dir).take(limit, seed=0)
    d = split.describe()
    return split.joined_texts(), f"GLUE {d['task']} {d['split']} ({d['n']} texts, {split.source})"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m validation.estimators.crosscompare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--task", default="stsb", help="GLUE task whose training texts are used (default stsb)")
    p.add_argument(
        "--data-dir", default=None, help="GLUE directory (default: $GELORA_DATA_DIR or ../shared/data)"
    )
    p.add_argument("--model", default=None, help="model name or path (default: the bundled encoder)")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--sizes", default="1000,4000,16000")
    p.add_argument("--samplings", default="all,first,mean")
    p.add_argument("--seeds", default="0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--max-texts", type=int, default=None)
    p.add_argument("--no-synthetic", action="store_true")
    add_output_args(p, "tables", "ID-profile plot")
    a = p.parse_args(argv)
    if render_existing(a, render_markdown, plot_profiles):
        return 0
    if not a.out:
        p.error("--out is required")
    texts, label = _texts_for_task(a.task, a.data_dir, a.max_texts)
    res = run_crosscompare(
        texts,
        model=a.model,
        estimators=a.estimators.split(","),
        sizes=[int(s) for s in a.sizes.split(",")],
        token_samplings=a.samplings.split(","),
        seeds=[int(s) for s in a.seeds.split(",")],
        device=a.device,
        dtype=a.dtype,
        synthetic=not a.no_synthetic,
        data_label=label,
        out=a.out,
    )
    for row in res["summary"]:
        print(
            f"{row['token_sampling']:>5} n={row['n']:>6} {row['pair'][0]:>5}-{row['pair'][1]:<5} "
            f"spearman={row['spearman_mean']} |dID|={row['mean_abs_diff']:.2f} "
            f"rank changes={row['rank_changes_mean']:.1f}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
