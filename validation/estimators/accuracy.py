"""Accuracy of the intrinsic-dimension estimators on manifolds of known dimension.

For every benchmark manifold (``synthetic.benchmark`` when it is installed, otherwise the manifolds of
``synthetic.manifolds``, otherwise a small inline set of spheres and linear subspaces) and every estimator
(ours: ``gelora.estimators`` TwoNN / MLE / DANCo; peers: ``skdim.id`` TwoNN / MLE / DANCo) this module
records the estimate, its confidence interval when the estimator gives one, the absolute and relative
error against the true dimension and the wall time of the fit. A cell that could not run carries
``status="not run"`` and the reason; it never carries a made-up number.

Command line::

    python -m validation.estimators.accuracy --profile quick --out FILE.json
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gelora._io import atomic_write_json
from gelora.errors import ConfigError

#: schema tag of the dictionary returned by :func:`run_estimator_accuracy`
SCHEMA = "gelora.estimator_accuracy/1"

#: estimator keys in table order: ``impl/method``
OUR_METHODS: tuple[str, ...] = ("twonn", "mle", "danco")
PEER_METHODS: tuple[str, ...] = ("twonn", "mle", "danco")

#: per-profile settings: points per manifold, replicates (independent samples), at most this many manifolds
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"n": 1000, "replicates": 1, "max_manifolds": 6, "max_ambient": 100},
    "full": {"n": None, "replicates": 3, "max_manifolds": None, "max_ambient": None},
}

#: neighbourhood sizes shared by ours and the peers so that the comparison is like for like
MLE_K = 20
DANCO_K = 10


@dataclass
class Sample:
    """One manifold sample with its ground truth.

    Attributes
    ----------
    name : str
        Manifold name (``M1`` .. ``M13`` for the benchmark, descriptive otherwise).
    X : (n, D) float64 array
        The points.
    intrinsic_dim : int
        True intrinsic dimension ``d``.
    params : dict
        How the sample was drawn (JSON-serialisable).
    """

    name: str
    X: np.ndarray
    intrinsic_dim: int
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# manifold sources
# --------------------------------------------------------------------------------------------------


def _random_rotation(D: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((D, D)))
    return q * np.sign(np.diag(r))


def _inline_sphere(d: int, D: int, n: int, seed: int) -> Sample:
    """Uniform sample of the unit sphere S^d (intrinsic dimension d) rotated into R^D, D >= d + 1."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d + 1))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    X = np.zeros((n, D))
    X[:, : d + 1] = Z
    X = X @ _random_rotation(D, rng).T
    return Sample(f"sphere S^{d} in R^{D}", X, d, {"kind": "sphere", "d": d, "D": D, "n": n, "seed": seed})


def _inline_linear(d: int, D: int, n: int, seed: int) -> Sample:
    """Uniform sample of the cube [0, 1]^d embedded linearly (random isometry) in R^D."""
    rng = np.random.default_rng(seed)
    Z = rng.uniform(0.0, 1.0, size=(n, d))
    basis = _random_rotation(D, rng)[:, :d]
    X = Z @ basis.T
    return Sample(
        f"linear cube [0,1]^{d} in R^{D}", X, d, {"kind": "linear", "d": d, "D": D, "n": n, "seed": seed}
    )


#: the fallback set used when neither synthetic.benchmark nor synthetic.manifolds is importable
_INLINE_SPECS: tuple[tuple[str, int, int], ...] = (
    ("sphere", 1, 5),
    ("sphere", 2, 3),
    ("linear", 3, 10),
    ("sphere", 5, 20),
    ("linear", 10, 30),
    ("sphere", 10, 40),
)


def _to_sample(obj: Any, fallback_name: str, extra: dict[str, Any]) -> Sample:
    """Convert a ``SampledManifold``-like object (X, intrinsic_dim, name, params) into a :class:`Sample`."""
    X = np.asarray(obj.X, dtype=np.float64)
    d = int(obj.intrinsic_dim)
    name = str(getattr(obj, "name", fallback_name) or fallback_name)
    params = dict(getattr(obj, "params", {}) or {})
    params.update(extra)
    return Sample(name, X, d, _jsonable(params))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return repr(obj)


def _benchmark_entries(module: Any) -> list[tuple[str, dict[str, Any]]]:
    """Read ``BENCHMARK_MANIFOLDS`` (a mapping name -> spec, or a sequence of specs) as (name, spec dict)."""
    table = module.BENCHMARK_MANIFOLDS
    items: list[tuple[str, Any]]
    if isinstance(table, dict):
        items = list(table.items())
    else:
        items = [(str(getattr(s, "name", None) or s["name"]), s) for s in table]
    out = []
    for name, spec in items:
        if isinstance(spec, dict):
            d = dict(spec)
        elif hasattr(spec, "_asdict"):
            d = dict(spec._asdict())
        elif hasattr(spec, "__dataclass_fields__"):
            d = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
        else:
            d = {k: getattr(spec, k) for k in dir(spec) if not k.startswith("_")}
        out.append((str(name), d))
    return out


def _spec_int(spec: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = spec.get(k)
        if isinstance(v, int | np.integer) and not isinstance(v, bool):
            return int(v)
    return None


def benchmark_samples(profile: str, seed: int, replicate: int = 0) -> tuple[str, list[Sample]]:
    """Draw the manifold samples of one replicate.

    Parameters
    ----------
    profile : {"quick", "full"}
        ``quick`` draws at most ``PROFILES["quick"]["max_manifolds"]`` manifolds of ``n`` points each
        (ambient dimension at most ``max_ambient``); ``full`` draws every manifold at its default size.
    seed : int
        Base seed; replicate ``r`` of manifold ``j`` uses ``seed + 1000 * r + j``.
    replicate : int
        Replicate number (0-based).

    Returns
    -------
    source : str
        ``"synthetic.benchmark"``, ``"synthetic.manifolds"`` or ``"inline"``.
    samples : list of Sample
    """
    cfg = _profile(profile)
    n_quick = cfg["n"]
    try:
        bench = importlib.import_module("synthetic.benchmark")
        entries = _benchmark_entries(bench)
    except (ImportError, AttributeError):
        bench = None
        entries = []
    if bench is not None and entries:
        if cfg["max_ambient"] is not None:
            entries = [e for e in entries if (_spec_int(e[1], "D", "ambient_dim") or 0) <= cfg["max_ambient"]]
        if cfg["max_manifolds"] is not None:
            entries = _spread(entries, cfg["max_manifolds"])
        samples = []
        for j, (name, spec) in enumerate(entries):
            n = n_quick if n_quick is not None else _spec_int(spec, "n", "n_default", "default_n")
            s = seed + 1000 * replicate + j
            kwargs: dict[str, Any] = {"seed": s}
            if n is not None:
                kwargs["n"] = n
            obj = bench.benchmark_manifold(name, **kwargs)
            samples.append(_to_sample(obj, name, {"benchmark": name, "seed": s, "n": int(obj.X.shape[0])}))
        return "synthetic.benchmark", samples

    n = n_quick if n_quick is not None else 2500
    try:
        samples = _manifolds_module_samples(n, seed, replicate, cfg["max_manifolds"])
        return "synthetic.manifolds", samples
    except (ImportError, AttributeError, TypeError):
        pass
    specs = list(_INLINE_SPECS)
    if cfg["max_manifolds"] is not None:
        specs = specs[: cfg["max_manifolds"]]
    samples = []
    for j, (kind, d, D) in enumerate(specs):
        s = seed + 1000 * replicate + j
        samples.append(_inline_sphere(d, D, n, s) if kind == "sphere" else _inline_linear(d, D, n, s))
    return "inline", samples


#: (generator name in synthetic.manifolds, keyword arguments besides n and seed) of the fallback set
_MANIFOLDS_SPECS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("hypersphere", {"d": 1, "embed_dim": 5}),
    ("hypersphere", {"d": 2}),
    ("hypercube", {"d": 3, "embed_dim": 10}),
    ("linear_subspace", {"d": 5, "ambient_dim": 20}),
    ("hypersphere", {"d": 5, "embed_dim": 20}),
    ("flat_torus", {"d": 2, "embed_dim": 10}),
    ("hypercube", {"d": 10, "embed_dim": 30}),
)


def _manifolds_module_samples(n: int, seed: int, replicate: int, max_manifolds: int | None) -> list[Sample]:
    mod = importlib.import_module("synthetic.manifolds")
    specs = list(_MANIFOLDS_SPECS)
    if max_manifolds is not None:
        specs = _spread(specs, max_manifolds)
    samples = []
    for j, (fn_name, kwargs) in enumerate(specs):
        s = seed + 1000 * replicate + j
        obj = getattr(mod, fn_name)(n, seed=s, **kwargs)
        label = f"{fn_name}(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
        samples.append(_to_sample(obj, label, {"generator": fn_name, "seed": s, "n": n, **kwargs}))
        samples[-1].name = label
    return samples


def _spread(entries: list[Any], k: int) -> list[Any]:
    """``k`` entries evenly spread over the list (keeps first and last), in order."""
    if len(entries) <= k:
        return entries
    idx = sorted({round(i * (len(entries) - 1) / (k - 1)) for i in range(k)})
    return [entries[i] for i in idx]


def _profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[profile]


# --------------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------------

FitFn = Callable[[np.ndarray, int], tuple[float, tuple[float, float] | None]]


def _our_fitters() -> tuple[dict[str, FitFn], str | None]:
    try:
        est = importlib.import_module("gelora.estimators")
        registry = est.ESTIMATORS
    except (ImportError, AttributeError) as exc:
        return {}, f"gelora.estimators not available ({type(exc).__name__}: {exc})"
    params = {"twonn": {}, "mle": {"k": MLE_K}, "danco": {"k": DANCO_K}}

    def make(method: str) -> FitFn:
        def fit(X: np.ndarray, seed: int) -> tuple[float, tuple[float, float] | None]:
            model = registry[method](seed=seed, duplicates="dedupe", **params[method]).fit(X)
            ci = getattr(model, "ci_", None)
            return float(model.dimension_), (None if ci is None else (float(ci[0]), float(ci[1])))

        return fit

    return {m: make(m) for m in OUR_METHODS if m in registry}, None


def _peer_fitters() -> tuple[dict[str, FitFn], str | None]:
    try:
        skid = importlib.import_module("skdim.id")
    except ImportError as exc:
        return {}, f"skdim not installed ({exc})"

    def twonn(X: np.ndarray, seed: int) -> tuple[float, tuple[float, float] | None]:
        return float(skid.TwoNN().fit(X).dimension_), None

    def mle(X: np.ndarray, seed: int) -> tuple[float, tuple[float, float] | None]:
        return float(skid.MLE().fit(X, n_neighbors=MLE_K).dimension_), None

    def danco(X: np.ndarray, seed: int) -> tuple[float, tuple[float, float] | None]:
        return float(skid.DANCo(k=DANCO_K, random_state=seed).fit(X).dimension_), None

    return {"twonn": twonn, "mle": mle, "danco": danco}, None


def _run_cell(fit: FitFn, sample: Sample, seed: int) -> dict[str, Any]:
    d = sample.intrinsic_dim
    t0 = time.perf_counter()
    try:
        with np.errstate(all="ignore"):
            est, ci = fit(sample.X, seed)
    except Exception as exc:  # every failure is recorded with its reason, never as a number
        return {
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}",
            "wall_s": time.perf_counter() - t0,
        }
    wall = time.perf_counter() - t0
    if not math.isfinite(est):
        return {"status": "error", "reason": f"non-finite estimate {est!r}", "wall_s": wall}
    cell: dict[str, Any] = {
        "status": "ok",
        "estimate": est,
        "ci": None if ci is None else [ci[0], ci[1]],
        "abs_error": abs(est - d),
        "rel_error": abs(est - d) / d,
        "signed_error": est - d,
        "ci_covers_true": None if ci is None else bool(ci[0] <= d <= ci[1]),
        "wall_s": wall,
    }
    return cell


def _summarise(cells: list[dict[str, Any]], estimator_keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in estimator_keys:
        mine = [c for c in cells if c["estimator"] == key]
        ok = [c for c in mine if c["status"] == "ok"]
        if not ok:
            reasons = sorted({c.get("reason", "") for c in mine})
            out[key] = {"n_ok": 0, "n_cells": len(mine), "status": "not run", "reason": "; ".join(reasons)}
            continue
        rel = np.array([c["rel_error"] for c in ok])
        ab = np.array([c["abs_error"] for c in ok])
        cov = [c["ci_covers_true"] for c in ok if c["ci_covers_true"] is not None]
        out[key] = {
            "status": "ok",
            "n_ok": len(ok),
            "n_cells": len(mine),
            "mean_abs_error": float(ab.mean()),
            "mean_rel_error": float(rel.mean()),
            "median_rel_error": float(np.median(rel)),
            "max_rel_error": float(rel.max()),
            "ci_coverage": (float(np.mean(cov)) if cov else None),
            "n_with_ci": len(cov),
            "total_wall_s": float(sum(c["wall_s"] for c in ok)),
        }
    return out


def run_estimator_accuracy(
    profile: str = "quick",
    seed: int = 0,
    include_peers: bool = True,
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Estimate the intrinsic dimension of every benchmark manifold with every estimator.

    Parameters
    ----------
    profile : {"quick", "full"}
        ``quick``: at most 6 manifolds, 1000 points each, one replicate (about a minute on one core).
        ``full``: every benchmark manifold at its default size, 3 independent replicates.
    seed : int
        Base seed of the samples and of every estimator's random choices (recorded in the result).
    include_peers : bool
        Also run scikit-dimension's TwoNN / MLE / DANCo (``skdim.id``). When skdim is missing their
        cells read ``"not run: skdim not installed"``.
    progress : bool or None
        Show a tqdm bar (``None``: only on a terminal).

    Returns
    -------
    dict
        JSON-serialisable: ``schema``, ``profile``, ``seed``, ``manifold_source``, ``manifolds`` (name, d,
        D, n, params per replicate), ``estimators`` (key, implementation, method, params), ``cells`` (one
        per manifold x estimator x replicate: estimate, ci, abs/rel error, ci_covers_true, wall_s, status,
        reason) and ``summary`` per estimator (mean/median/max relative error, CI coverage, wall time).
    """
    from tqdm.auto import tqdm

    cfg = _profile(profile)
    ours, ours_reason = _our_fitters()
    peers: dict[str, FitFn] = {}
    peers_reason: str | None = "not requested (include_peers=False)"
    if include_peers:
        peers, peers_reason = _peer_fitters()

    estimators: list[dict[str, Any]] = []
    fitters: dict[str, FitFn | None] = {}
    reasons: dict[str, str] = {}
    for m in OUR_METHODS:
        key = f"gelora/{m}"
        estimators.append({"key": key, "implementation": "gelora", "method": m, "params": _params_of(m)})
        fitters[key] = ours.get(m)
        if key not in reasons and fitters[key] is None:
            reasons[key] = ours_reason or f"gelora.estimators has no {m!r}"
    for m in PEER_METHODS:
        key = f"skdim/{m}"
        estimators.append({"key": key, "implementation": "skdim", "method": m, "params": _params_of(m)})
        fitters[key] = peers.get(m)
        if fitters[key] is None:
            reasons[key] = peers_reason or f"skdim has no {m!r}"

    manifolds: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    source = "inline"
    t_start = time.perf_counter()
    replicate_samples = []
    for r in range(cfg["replicates"]):
        source, samples = benchmark_samples(profile, seed, r)
        replicate_samples.append(samples)
    total = sum(len(s) for s in replicate_samples) * len(estimators)
    bar = tqdm(total=total, desc="estimator accuracy", disable=(None if progress is None else not progress))
    for r, samples in enumerate(replicate_samples):
        for sample in samples:
            n, D = sample.X.shape
            manifolds.append(
                {
                    "name": sample.name,
                    "replicate": r,
                    "intrinsic_dim": sample.intrinsic_dim,
                    "ambient_dim": int(D),
                    "n": int(n),
                    "params": sample.params,
                }
            )
            cell_seed = int(sample.params.get("seed", seed))
            for est in estimators:
                key = est["key"]
                fit = fitters[key]
                base = {
                    "manifold": sample.name,
                    "replicate": r,
                    "estimator": key,
                    "true_dim": sample.intrinsic_dim,
                    "seed": cell_seed,
                }
                if fit is None:
                    cell = {"status": "not run", "reason": reasons[key]}
                else:
                    cell = _run_cell(fit, sample, cell_seed)
                cells.append({**base, **cell})
                bar.update(1)
    bar.close()
    keys = [e["key"] for e in estimators]
    return {
        "schema": SCHEMA,
        "profile": profile,
        "seed": seed,
        "n_replicates": cfg["replicates"],
        "manifold_source": source,
        "manifolds": manifolds,
        "estimators": estimators,
        "peers": {"requested": include_peers, "status": "ok" if peers else "not run", "reason": peers_reason},
        "cells": cells,
        "summary": _summarise(cells, keys),
        "wall_s": time.perf_counter() - t_start,
    }


def _params_of(method: str) -> dict[str, Any]:
    if method == "mle":
        return {"k": MLE_K}
    if method == "danco":
        return {"k": DANCO_K}
    return {"discard_fraction": 0.1}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.estimators.accuracy --profile quick --out FILE.json``."""
    parser = argparse.ArgumentParser(prog="python -m validation.estimators.accuracy", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peers", action="store_true", help="skip scikit-dimension")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write (atomically)")
    args = parser.parse_args(argv)
    result = run_estimator_accuracy(args.profile, seed=args.seed, include_peers=not args.no_peers)
    atomic_write_json(args.out, result)
    for key, s in result["summary"].items():
        if s["status"] == "ok":
            print(
                f"{key:14s} mean rel. error {s['mean_rel_error']:.3f}  max {s['max_rel_error']:.3f}  "
                f"wall {s['total_wall_s']:.2f} s  ({s['n_ok']}/{s['n_cells']} cells)"
            )
        else:
            print(f"{key:14s} not run: {s['reason']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
