"""Time knn_distances(backend="torch") on small-dimensional unit-ball samples (DANCo's calibration data).

Usage, from a checkout (the argument is a label printed with the row)::

    PYTHONPATH=. python scripts/knn_small_d.py LABEL

Prints, per dimension d, the minimum of 5 calls (s, two torch threads, n = 4000, k = 11) and the sum of
the distances (equal sums: the same neighbours). Run it in two checkouts to compare code versions.
"""

import sys, time, numpy as np, torch

torch.set_num_threads(2)
from gelora.estimators.knn import knn_distances

rng = np.random.default_rng(0)
res = {}
for d in (2, 10, 30, 100):
    n = 4000
    Y = rng.standard_normal((n, d))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    Y *= rng.random((n, 1)) ** (1 / d)
    T = torch.from_numpy(Y)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        dist, idx = knn_distances(T, 11, device="cpu", backend="torch")
        ts.append(time.perf_counter() - t0)
    res[d] = (min(ts), float(np.asarray(dist).sum()))
print(sys.argv[1], {d: (round(t, 4), s) for d, (t, s) in res.items()})
