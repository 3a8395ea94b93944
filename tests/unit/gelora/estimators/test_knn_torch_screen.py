"""The torch backend's certified reduced-precision screen (gelora/estimators/_knn_torch.py) on the CPU.

Every precision (fp32, TF32 operands rounded as on the GPU, bf16) must return the neighbours of an
exhaustive float64 computation (the same re-rank formula over all pairs), on data built to break a
screen: near-ties, shells of exactly equal distances (more tied points than the screen keeps per row),
huge offsets, integer grids and D = 4096. A second test checks the error bound itself entry by entry.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gelora.errors import ConfigError  # noqa: E402
from gelora.estimators import _knn_torch as kt  # noqa: E402
from gelora.estimators import knn_distances  # noqa: E402


def _near_ties(rng: np.random.Generator) -> np.ndarray:
    # points at radii 1 + i * 2^-40 around a centre: neighbours of the centre differ by far less than
    # the screen's error, in random directions
    U = rng.normal(size=(300, 48))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    r = 1.0 + rng.permutation(300)[:, None] * 2.0**-40
    return np.concatenate([np.zeros((1, 48)), U * r])


def _shells(rng: np.random.Generator) -> np.ndarray:
    # +-e_i at distance exactly 1 from the origin (and sqrt(2) from each other): 128 tied neighbours of
    # the origin, more than the 30 candidates a row keeps, so the certificate must fail there
    E = np.eye(64)
    return np.concatenate([np.zeros((1, 64)), E, -E, 3.0 + rng.normal(size=(100, 64))])


CASES = {
    "gaussian": lambda rng: rng.normal(size=(400, 128)),
    "near_ties": _near_ties,
    "shells": _shells,
    "offset_1e6": lambda rng: 1e6 + rng.normal(size=(300, 32)),
    "offset_1e8_float32": lambda rng: (1e8 + 64.0 * rng.integers(0, 50, size=(300, 16))).astype(np.float32),
    "integer_grid": lambda rng: rng.integers(0, 3, size=(400, 6)).astype(np.float64),
    "low_rank_tanh": lambda rng: np.tanh(rng.uniform(size=(500, 5)) @ rng.normal(size=(5, 96))),
    "D4096": lambda rng: rng.normal(size=(150, 4096)),
}


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_screen_equals_exhaustive_float64(case, precision, knn_reference):
    rng = np.random.default_rng(sorted(CASES).index(case))
    X = CASES[case](rng)
    k = 10
    d_ref, i_ref = knn_reference(X, k)
    for block in (None, 64):
        d, i = knn_distances(X, k, backend="torch", precision=precision, block_size=block)
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_array_equal(d, d_ref)


def test_tied_shell_goes_through_the_float64_fallback():
    X = _shells(np.random.default_rng(0))
    knn_distances(X, 10, backend="torch", precision="fp32")
    assert kt.LAST_STATS[0].uncertified_rows >= 1
    d, i = knn_distances(X, 10, backend="torch")
    assert np.all(d[0] == 1.0) and list(i[0]) == list(range(1, 11))  # ties by index


def test_bf16_screen_on_isotropic_data_falls_back_and_stays_exact(knn_reference):
    X = np.random.default_rng(1).normal(size=(300, 512))
    d_ref, i_ref = knn_reference(X, 5)
    d, i = knn_distances(X, 5, backend="torch", precision="bf16", block_size=96)
    assert kt.LAST_STATS[0].uncertified_rows > 0
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_error_bound_holds_entrywise(precision):
    """|s^_ij - e_ij| <= eps (R_i + R_j)^2 for every pair (the inequality the certificate rests on)."""
    rng = np.random.default_rng(2)
    X = 50.0 + rng.normal(size=(200, 300)) * rng.uniform(0.1, 10.0, size=(200, 1))
    Xt = torch.from_numpy(X)
    n, D = X.shape
    mean, scale = kt._centre_and_scale(Xt, n)
    left, right, norm = kt._factors(Xt, mean, scale, precision, n, n)
    g, out_u = kt._product(left, right, precision)
    s = g.to(torch.float64)
    e = kt._rows_sq(Xt, torch.arange(n), torch.arange(n).repeat(n, 1)) * scale**2
    eps = kt.screen_eps(precision, D, left.shape[1], out_u)
    R = norm * (1 + 1e-12)
    bound = eps * (R[:, None] + R[None, :]) ** 2
    err = (s - e).abs()
    assert bool((err <= bound).all())
    # and it is not vacuous: the operand rounding of TF32/bf16 comes within ~10x of it (fp32's
    # worst-case accumulation term gamma_W(2^-22) is ~1000x the observed random-walk error)
    assert float((err / bound).max()) > {"fp32": 1e-4, "tf32": 0.05, "bf16": 0.05}[precision]


def test_precision_is_validated():
    X = np.random.default_rng(3).normal(size=(20, 3))
    with pytest.raises(ConfigError, match="precision"):
        knn_distances(X, 2, backend="torch", precision="fp8")


def test_cosine_metric_through_the_screen():
    X = np.random.default_rng(4).normal(size=(200, 40)) + 5.0
    ref = knn_distances(X, 5, metric="cosine", backend="numpy")
    out = knn_distances(X, 5, metric="cosine", backend="torch", precision="bf16")
    np.testing.assert_array_equal(out[1], ref[1])
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-12)
