"""Time knn_distances(backend="torch") on small-dimensional unit-ball samples (DANCo's calibration data).

Usage, from a checkout (the argument is a label printed with the row)::

    PYTHONPATH=. python scripts/knn_small_d.py LABEL

Prints, per dimension d, the minimum of 5 calls (s, two torch threads, n = 4000, k = 11) and the sum of
the distances (equal sums: the same neighbours). Run it in two checkouts to compare code versions.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from gelora.estimators.knn import knn_distances


def unit_ball(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in the unit ``d``-ball, shape (n, d)."""
    y = rng.standard_normal((n, d))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return y * rng.random((n, 1)) ** (1 / d)


def main(label: str, n: int = 4000, k: int = 11, repeats: int = 5) -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    res = {}
    for d in (2, 10, 30, 100):
        x = torch.from_numpy(unit_ball(n, d, rng))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dist, _ = knn_distances(x, k, device="cpu", backend="torch")
            times.append(time.perf_counter() - t0)
        res[d] = (round(min(times), 4), float(np.asarray(dist).sum()))
    print(label, res)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
