"""Time knn_distances (torch backend by default) on small-dimensional unit-ball samples (DANCo's calibration data).

Two modes. **Worker** (one process, the ``gelora`` it imports): for every n and d, draws ``n`` points
uniform in the unit d-ball (seed 0), runs ``--repeats`` calls of each variant, alternating the variants
call by call, and prints one JSON line per (n, d) with the minimum and all times (s), the distance sum and
a hash of the neighbour indices and distances (equal hashes: bit-identical results)::

    PYTHONPATH=. python scripts/knn_small_d.py LABEL --n 4000,16000 --d 1,2,5,10,30,100

Variants (``--variants``, new code only; a checkout without the small-dimension rule runs ``rule``):
``rule`` (the default path), ``screen`` (the reduced-precision screen forced,
``_knn_torch.DIRECT64["max_features"] = 0``: the code before the rule) and ``direct`` (the float64 direct
path forced at every d); ``:group`` or ``:topk`` after ``rule`` or ``direct`` sets how the direct path
selects (``DIRECT64["select"]``; without it the device's default). Where the code has per-device keys
(``"max_features_cuda"``, ``"select_cuda"``) a variant sets them too. On the H200, 2026-11-30 (before the
CUDA keys existed, so ``direct`` was ``direct:topk``; ``reports/gpu/knn_small_d_h200.jsonl``)::

    python scripts/knn_small_d.py h200 --device cuda --n 16000 --d 1,2,3,5,10,16,32,50,64,100 \\
        --variants rule,screen,direct,direct:group --repeats 5

**Compare** (``--compare LABEL=CHECKOUT,...``): runs the worker once per round in each checkout
(``PYTHONPATH`` set to it), alternating the order from round to round, and prints, per (n, d), the
minimum over rounds of each checkout's minimum, the spread (largest round minimum / smallest - 1) and
whether the result hashes agree; ``--out`` writes all rounds as JSON::

    python scripts/knn_small_d.py --compare old=../knn-old,head=../knn-head,new=. --rounds 3 \\
        --n 4000,16000 --d 1,2,5,10,30,100 --out knn_small_d.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def unit_ball(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in the unit ``d``-ball, shape (n, d)."""
    y = rng.standard_normal((n, d))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return y * rng.random((n, 1)) ** (1 / d)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _set_variant(variant: str) -> None:
    """Point the small-dimension rule at ``variant`` (no-op where the code has no rule)."""
    try:
        from gelora.estimators import _knn_torch as kt
    except ImportError:  # the pre-screen code
        return
    rule = getattr(kt, "DIRECT64", None)
    if rule is None:
        if variant != "rule":
            raise SystemExit(f"variant {variant!r} needs the small-dimension rule (this code has none)")
        return
    # the device's own keys where the code has them ("max_features_cuda", "select_cuda"); a variant sets both
    keys = [s for s in ("", "_cuda") if f"max_features{s}" in rule]
    if "default" not in rule:
        rule["default"] = {s: (rule[f"max_features{s}"], rule[f"select{s}"]) for s in keys}
    base, _, select = variant.partition(":")
    for s in keys:
        rule[f"max_features{s}"] = {"rule": rule["default"][s][0], "screen": 0, "direct": 10**9}[base]
        rule[f"select{s}"] = select or rule["default"][s][1]


def worker(args: argparse.Namespace) -> None:
    import torch

    from gelora.estimators.knn import knn_distances

    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    for n in _ints(args.n):
        for d in _ints(args.d):
            x: Any = unit_ball(n, d, np.random.default_rng(0))
            kwargs: dict[str, Any] = {"backend": args.backend}
            if args.backend == "torch":
                x, kwargs["device"] = torch.from_numpy(x), args.device
            times: dict[str, list[float]] = {v: [] for v in variants}
            digest: dict[str, str] = {}
            dsum: dict[str, float] = {}
            for _ in range(args.repeats):
                for v in variants:
                    _set_variant(v)
                    t0 = time.perf_counter()
                    dist, idx = knn_distances(x, args.k, **kwargs)
                    times[v].append(time.perf_counter() - t0)
                    digest[v] = hashlib.sha256(
                        np.asarray(idx).tobytes() + np.asarray(dist).tobytes()
                    ).hexdigest()[:16]
                    dsum[v] = float(np.asarray(dist).sum())
            _set_variant("rule")
            for v in variants:
                row = {
                    "label": args.label,
                    "variant": v,
                    "n": n,
                    "d": d,
                    "k": args.k,
                    "device": args.device,
                    "backend": args.backend,
                    "min_s": min(times[v]),
                    "times_s": times[v],
                    "dist_sum": dsum[v],
                    "hash": digest[v],
                }
                print(json.dumps(row), flush=True)


def compare(args: argparse.Namespace) -> None:
    checkouts = dict(item.split("=", 1) for item in args.compare.split(","))
    grid = [
        "--n",
        args.n,
        "--d",
        args.d,
        "--k",
        str(args.k),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--backend",
        args.backend,
        "--threads",
        str(args.threads),
    ]
    rounds: list[list[dict[str, Any]]] = []
    labels = list(checkouts)
    for r in range(args.rounds):
        order = labels if r % 2 == 0 else labels[::-1]
        rows: list[dict[str, Any]] = []
        for label in order:
            env = dict(os.environ, PYTHONPATH=str(Path(checkouts[label]).resolve()))
            out = subprocess.run(
                [sys.executable, __file__, label, *grid], env=env, check=True, capture_output=True, text=True
            ).stdout
            rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        rounds.append(rows)
        print(
            f"round {r + 1}/{args.rounds} done ({time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True
        )
    cells = sorted({(row["n"], row["d"]) for rows in rounds for row in rows})
    head = " | ".join(f"{lab} s (spread)" for lab in labels)
    ratios = " | ".join(f"{lab} / {labels[-1]}" for lab in labels[:-1])
    print(f"| n | d | {head} | {ratios} | same result |")
    print("| ---: | ---: |" + " ---: |" * (2 * len(labels) - 1) + " --- |")
    for n, d in cells:
        best, spread, hashes = {}, {}, set()
        for lab in labels:
            mins = [
                row["min_s"]
                for rows in rounds
                for row in rows
                if row["label"] == lab and (row["n"], row["d"]) == (n, d)
            ]
            best[lab] = min(mins)
            spread[lab] = max(mins) / min(mins) - 1
            hashes |= {
                row["hash"]
                for rows in rounds
                for row in rows
                if row["label"] == lab and (row["n"], row["d"]) == (n, d)
            }
        cols = " | ".join(f"{best[lab]:.4f} ({100 * spread[lab]:.0f} %)" for lab in labels)
        rat = " | ".join(f"{best[lab] / best[labels[-1]]:.2f}" for lab in labels[:-1])
        print(f"| {n} | {d} | {cols} | {rat} | {'yes' if len(hashes) == 1 else 'NO'} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rounds": rounds}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("label", nargs="?", default="")
    ap.add_argument("--n", default="4000")
    ap.add_argument("--d", default="2,10,30,100")
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch", help="torch (default), or auto/numpy/kdtree on NumPy input")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="rule")
    ap.add_argument("--compare", default="")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.compare:
        compare(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
