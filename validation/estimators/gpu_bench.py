"""Time the exact k-NN core against the bare matrix product it is built on.

The k-NN search on ``n`` points of dimension ``D`` needs the Gram matrix, ``2 n^2 D`` flops for the full
product (the torch backend computes only the tiles on or above the diagonal, half of it). This script
times :func:`gelora.estimators.knn_distances` and the bare product ``X @ X.T`` (in row blocks, same
dtype float32, results discarded) on one device and prints both with their ratio as JSON::

    python -m validation.estimators.gpu_bench --device cuda --n 65536 --D 4096 --k 20

A ratio near or below 1 means the selection (top-k), the exact float64 re-rank and the bookkeeping cost
less than the flops saved by symmetry. It runs on the CPU at tiny sizes in the unit tests.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gelora.estimators import knn_distances


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _matmul_seconds(X: torch.Tensor, block: int) -> float:
    n = X.shape[0]
    _sync(X.device)
    t0 = time.perf_counter()
    for s in range(0, n, block):
        torch.mm(X[s : s + block], X.T)
    _sync(X.device)
    return time.perf_counter() - t0


def bench_knn(
    device: str = "cpu",
    n: int = 65536,
    D: int = 4096,
    k: int = 20,
    *,
    seed: int = 0,
    repeats: int = 1,
    block_size: int | None = None,
) -> dict[str, Any]:
    """Time ``knn_distances`` and the bare ``2 n^2 D``-flop product on ``device``.

    Parameters
    ----------
    device : str
        Torch device (``"cpu"``, ``"cuda"``...).
    n, D : int
        Points and features (standard normal float32 data, generated on the device).
    k : int
        Neighbours per point.
    seed : int
        Seed of the data.
    repeats : int
        Timed repetitions after one warm-up; the minimum is reported.
    block_size : int, optional
        Tile side passed to ``knn_distances`` (default: from the memory budget).

    Returns
    -------
    dict
        ``knn_s`` and ``matmul_s`` (seconds, minimum over repeats), ``ratio = knn_s / matmul_s``,
        ``matmul_tflops`` (2 n^2 D / matmul_s / 1e12), the sizes, the device name and torch version,
        ``peak_memory_gib`` on CUDA, and a self-check ``min_nn_distance`` (> 0 for distinct points).
    """
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    X = torch.randn(n, D, generator=gen, device=dev, dtype=torch.float32)
    mm_block = max(1, min(n, (2**30) // (4 * n)))
    knn_times, mm_times = [], []
    dist = None
    for rep in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _sync(dev)
        t0 = time.perf_counter()
        dist, _ = knn_distances(X, k, block_size=block_size)
        _sync(dev)
        t_knn = time.perf_counter() - t0
        t_mm = _matmul_seconds(X, mm_block)
        if rep > 0 or repeats == 0:
            knn_times.append(t_knn)
            mm_times.append(t_mm)
    assert dist is not None
    knn_s, mm_s = min(knn_times), min(mm_times)
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "n": n,
        "D": D,
        "k": k,
        "knn_s": knn_s,
        "matmul_s": mm_s,
        "ratio": knn_s / mm_s,
        "matmul_tflops": 2.0 * n * n * D / mm_s / 1e12,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(dev) / 2**30) if dev.type == "cuda" else None,
        "min_nn_distance": float(np.min(dist[:, 0])),
        "repeats": repeats,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print :func:`bench_knn`'s result as JSON (optionally also to ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=65536)
    p.add_argument("--D", type=int, default=4096)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = bench_knn(args.device, args.n, args.D, args.k, seed=args.seed, repeats=args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from gelora._io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
