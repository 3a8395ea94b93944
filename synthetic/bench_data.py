"""Data sets of the speed benchmarks (``tests/bench``): one of low linear rank, one of full linear rank.

``rank30``
    A 10-dimensional curved manifold (sines, cosines and squares of 10 uniform coordinates: 30 features)
    mapped *linearly* into ``R^D``: the points span a 30-dimensional subspace exactly, plus isotropic
    noise of standard deviation 1e-3. A principal-coordinate screen suits it (its leading 30 directions
    hold all but the noise).
``tanh``
    10 uniform coordinates mapped into ``R^D`` by ``tanh(t W + b)`` (``W``: 10 x D standard normal,
    ``b``: standard normal), plus noise 1e-3: still a 10-dimensional manifold, but of full linear rank
    (the nonlinearity spreads its variance over every direction), as hidden states are.
"""

from __future__ import annotations

import numpy as np

from gelora.errors import ConfigError

__all__ = ["BENCH_DATA", "bench_data"]

BENCH_DATA = ("rank30", "tanh")


def bench_data(kind: str, n: int, D: int, seed: int | None = None) -> np.ndarray:
    """float64 array (n, D) of the data set ``kind`` (module docstring); seed defaults to ``n + D``.

    ``rank30`` with the default seed reproduces the benchmark data used before this module existed.
    """
    rng = np.random.default_rng(n + D if seed is None else seed)
    if kind == "rank30":
        t = rng.uniform(size=(n, 10))
        Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
        return Y @ rng.normal(size=(30, D)) + 1e-3 * rng.normal(size=(n, D))
    if kind == "tanh":
        t = rng.uniform(size=(n, 10))
        return np.tanh(t @ rng.normal(size=(10, D)) + rng.normal(size=D)) + 1e-3 * rng.normal(size=(n, D))
    raise ConfigError(f"unknown benchmark data {kind!r}; expected one of {BENCH_DATA}")
