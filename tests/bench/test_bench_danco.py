"""DANCo speed: gelora (calibration cached) against scikit-dimension's ``skdim.id.DANCo``.

Run (skipped by the default ``--benchmark-skip``)::

    OMP_NUM_THREADS=1 pytest tests/bench/test_bench_danco.py --benchmark-enable --benchmark-only \
        --benchmark-group-by=param:n,param:D --benchmark-columns=min,mean,max,rounds

Data: ``n`` points uniform in a 10-ball, rotated into ``R^D`` (same array for every contender).
Every contender uses ``k = 10`` and the same largest candidate dimension ``d_max = min(D, 100)`` (our
default; skdim's ``D`` argument), integer output.

Contenders
----------
``gelora``
    ``DANCo(...).fit(X)`` with the default 200-replicate bootstrap, after one untimed fit has written the
    calibration cache (a temporary folder), i.e. the cost of every fit after the first.
``skdim_cold``
    ``skdim.id.DANCo(...).fit(X)`` as normally called: it simulates its calibration on every call. Very
    slow (tens of seconds), hence one round only (``pedantic``).
``skdim_warm``
    skdim given the ``calibration_data_`` of a previous fit (its own form of reuse), one round.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gelora.estimators.danco import DANCo, sample_unit_ball

skdim = pytest.importorskip("skdim")

SIZES = [(1000, 64), (1000, 768), (4000, 64), (4000, 768)]
INTRINSIC = 10

#: skdim calibration tables of the cold runs, reused by the warm runs (saves one cold fit per size)
_SKDIM_CALIBRATION: dict[tuple[int, int], dict] = {}


def _data(n: int, D: int) -> np.ndarray:
    rng = np.random.default_rng(n + D)
    q, _ = np.linalg.qr(rng.standard_normal((D, INTRINSIC)))
    return sample_unit_ball(n, INTRINSIC, rng) @ q.T


@pytest.mark.parametrize(("n", "D"), SIZES)
def test_bench_danco_gelora_cached(benchmark, n: int, D: int, tmp_path) -> None:
    X = _data(n, D)
    first = DANCo(cache_dir=tmp_path).fit(X)  # untimed: writes the calibration cache
    assert first.calibration_cached_ is False
    est = benchmark(lambda: DANCo(cache_dir=tmp_path).fit(X))
    assert est.calibration_cached_ is True
    assert est.dimension_ == INTRINSIC
    benchmark.extra_info["dimension"] = est.dimension_
    benchmark.extra_info["first_fit_calibration_s"] = first.calibration_seconds_


@pytest.mark.parametrize(("n", "D"), SIZES)
def test_bench_danco_skdim_cold(benchmark, n: int, D: int) -> None:
    X = _data(n, D)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return skdim.id.DANCo(k=10, D=min(D, 100), fractal=False, random_state=0).fit(X)

    est = benchmark.pedantic(run, rounds=1, iterations=1)
    _SKDIM_CALIBRATION[(n, D)] = est.calibration_data_
    benchmark.extra_info["dimension"] = float(est.dimension_)
    assert abs(float(est.dimension_) - INTRINSIC) <= 1


@pytest.mark.parametrize(("n", "D"), SIZES)
def test_bench_danco_skdim_warm(benchmark, n: int, D: int) -> None:
    X = _data(n, D)
    cal = _SKDIM_CALIBRATION.get((n, D))
    if cal is None:  # the cold benchmark did not run first (e.g. -k selection)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = skdim.id.DANCo(k=10, D=min(D, 100), fractal=False, random_state=0).fit(X).calibration_data_

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return skdim.id.DANCo(
                k=10, D=min(D, 100), fractal=False, random_state=0, calibration_data=cal
            ).fit(X)

    est = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["dimension"] = float(est.dimension_)
    assert abs(float(est.dimension_) - INTRINSIC) <= 1
