"""The spread of TwoNN, MLE and DANCo over independent small samples: where each becomes usable.

Usage::

    python -m validation.estimators.min_samples [--estimator twonn|mle|danco] [--reps 200] [--dims 2 5 10]
                                     [--sizes 12 16 20 30] [--seed 0] [--k K]

For every intrinsic dimension ``d`` and sample size ``n`` the estimator is fitted on ``--reps``
independent uniform samples of the round ``d``-sphere (in ``R^20``, no boundary, no noise; sample ``r`` has
seed ``seed + 1000 + r``) with its default parameters (DANCo: ``d_max = 20``, no bootstrap; ``--k`` sets
MLE's or DANCo's neighbourhood size). Prints one
Markdown row per ``(d, n)``: the median of ``d_hat / d``, its 2.5 % and 97.5 % quantiles, their distance
(the spread; an estimate is usable when it is at most 1, i.e. the 95 % range is narrower than ``±50 %``)
and the relative standard deviation. ``docs/estimators.md`` ("Smallest sample") quotes these tables; the
thresholds in :mod:`gelora.estimators` are the smallest ``n`` whose spread is at most 1 for every ``d``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gelora.errors import SmallSampleWarning
from gelora.estimators import MLE, DANCo, TwoNN
from synthetic.manifolds import hypersphere

DEFAULT_SIZES = {
    "twonn": [10, 15, 20, 25, 30, 40, 60],
    "mle": [21, 25, 30, 40, 60, 120],
    "danco": [12, 14, 16, 20, 30, 60],
}


def _estimator(name: str, k: int | None) -> Any:
    if name == "twonn":
        return TwoNN()
    if name == "mle":
        return MLE(k=20 if k is None else k, n_bootstrap=1)  # the interval is not used here
    return DANCo(k=10 if k is None else k, d_max=20, n_bootstrap=0)


def spread(name: str, d: int, n: int, reps: int, seed: int = 0, k: int | None = None) -> dict[str, float]:
    """Quantiles of ``d_hat / d`` over ``reps`` independent ``n``-point samples of the ``d``-sphere.

    Parameters
    ----------
    name : {"twonn", "mle", "danco"}
    d : int
        Intrinsic dimension of the sphere (ambient dimension 20).
    n : int
        Points per sample.
    reps : int
        Independent samples.
    seed : int
        Sample ``r`` uses seed ``seed + 1000 + r``.
    k : int, optional
        Neighbourhood size of MLE or DANCo (their default when None).

    Returns
    -------
    dict
        ``median``, ``q025``, ``q975``, ``spread = q975 - q025`` and ``rel_sd`` of ``d_hat / d``.
    """
    ratios = np.empty(reps, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # small samples are the point here
        for r in range(reps):
            X = hypersphere(n, d, ambient_dim=20, seed=seed + 1000 + r).X
            ratios[r] = _estimator(name, k).fit(X).dimension_ / d
    q025, med, q975 = np.quantile(ratios, [0.025, 0.5, 0.975])
    return {
        "median": float(med),
        "q025": float(q025),
        "q975": float(q975),
        "spread": float(q975 - q025),
        "rel_sd": float(ratios.std() / ratios.mean()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the spread table of one estimator."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--estimator", default="twonn", choices=sorted(DEFAULT_SIZES))
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=None, help="neighbours of MLE or DANCo (default: theirs)")
    args = p.parse_args(argv)
    if args.k is not None and args.estimator == "twonn":
        p.error("--k does not apply to TwoNN")
    sizes = args.sizes or DEFAULT_SIZES[args.estimator]
    k = "" if args.k is None else f" k={args.k}"
    print(f"{args.estimator}{k}, {args.reps} samples per row, uniform d-sphere in R^20, seed {args.seed}\n")
    print("| d | n | median d_hat/d | 2.5 % | 97.5 % | spread | rel. sd | s |")
    print("|---|---|---|---|---|---|---|---|")
    for d in args.dims:
        for n in sizes:
            t0 = time.perf_counter()
            s = spread(args.estimator, d, n, args.reps, args.seed, args.k)
            print(
                f"| {d} | {n} | {s['median']:.3f} | {s['q025']:.3f} | {s['q975']:.3f} | "
                f"{s['spread']:.3f} | {s['rel_sd']:.3f} | {time.perf_counter() - t0:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
