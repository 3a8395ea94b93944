"""The torch backend's small-dimension rule (gelora/estimators/_knn_torch.py, ``DIRECT64``) on the CPU.

With ``precision="auto"`` and at most ``DIRECT64["max_features"]`` features, :func:`knn_torch` replaces the
reduced-precision screen by a float64 screen of whole rows (:func:`_direct64`). Checked here: where the
rule applies and where not (by shape and precision only, the same answer for a CUDA device), the float64
bound entry by entry, the floors, exactness against an exhaustive float64 computation on small-d data
built with duplicates, lattice ties and near-ties (including rows with more ties than the candidates, which
go to the float64 fallback), and bit-identical results to the screen it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gelora.errors import ConfigError  # noqa: E402
from gelora.estimators import _knn_torch as kt  # noqa: E402
from gelora.estimators import knn_distances  # noqa: E402

MAX_D = kt.DIRECT64["max_features"]


def unit_ball(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    y = rng.standard_normal((n, d))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return y * rng.random((n, 1)) ** (1 / d)


def _duplicates(rng: np.random.Generator, d: int) -> np.ndarray:
    # 40 distinct points, each repeated 1-25 times (exact duplicates: up to 24 neighbours at distance 0,
    # more than the 15 candidates a row keeps at k = 11), shuffled
    base = rng.normal(size=(40, d))
    X = np.repeat(base, rng.integers(1, 26, size=40), axis=0)
    return X[rng.permutation(len(X))]


def _lattice(rng: np.random.Generator, d: int) -> np.ndarray:
    # integer points: in 1-d every interior point has two neighbours at each distance, in 2-d four or
    # eight; many exact ties at the k-th distance
    return rng.integers(0, 12, size=(300, d)).astype(np.float64)


def _near_ties(rng: np.random.Generator, d: int) -> np.ndarray:
    # points on a sphere of radius 1 + i 2^-45 around the origin, far below the float32 screen's error
    U = rng.normal(size=(200, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, d)), U * (1.0 + rng.permutation(200)[:, None] * 2.0**-45)])


def _offset_float32(rng: np.random.Generator, d: int) -> np.ndarray:
    # a huge offset with float32 input: the centring must not lose the small differences
    return (1e6 + 8.0 * rng.integers(0, 20, size=(300, d))).astype(np.float32)


CASES = {
    "unit_ball": lambda rng, d: unit_ball(500, d, rng),
    "duplicates": _duplicates,
    "lattice": _lattice,
    "near_ties": _near_ties,
    "offset_float32": _offset_float32,
}


@pytest.mark.parametrize(("device", "max_d", "select"), [("cpu", MAX_D, "topk"), ("cuda", 2, "group")])
def test_rule_depends_on_dimension_device_and_precision_only(device, max_d, select):
    """The rule's boundary per device (CUDA's from the H200 timing; the GPU path itself is not run here)."""
    dev = torch.device(device)
    assert kt.uses_direct64(1, dev, "auto")
    assert kt.uses_direct64(max_d, dev, "auto")
    assert not kt.uses_direct64(max_d + 1, dev, "auto")
    for precision in ("fp32", "tf32", "bf16"):
        assert not kt.uses_direct64(1, dev, precision)
    assert kt._direct64_setting("select", dev) == select


def test_rule_is_the_path_taken():
    rng = np.random.default_rng(0)
    for d, expected in ((1, "fp64"), (MAX_D, "fp64"), (MAX_D + 1, "fp32")):
        knn_distances(rng.normal(size=(100, d)), 5, backend="torch")
        assert kt.LAST_STATS[0].precision == expected
    knn_distances(rng.normal(size=(100, 2)), 5, backend="torch", precision="tf32")
    assert kt.LAST_STATS[0].precision == "tf32"


def test_block_rows_on_cpu_and_cuda():
    """Cache-sized blocks on the CPU, budget-sized elsewhere (the H200's 4 GiB: one block at n = 16000)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert kt.direct64_rows(4000, cpu, 256 * 2**20) == kt.DIRECT64_CPU_BLOCK_BYTES // (8 * 4000)
    assert kt.direct64_rows(16000, cpu, 256 * 2**20) == 65
    assert kt.direct64_rows(10**6, cpu, 256 * 2**20) == 16  # the budget wins over the 64-row minimum
    assert kt.direct64_rows(16000, cuda, 4 * 2**30) >= 16000
    assert kt.direct64_rows(200_000, cuda, 4 * 2**30) == 4 * 2**30 // (16 * 200_000)
    assert kt.direct64_rows(16000, cuda, 4 * 2**30, block_size=7) == 7
    assert kt.direct64_candidates(11, 4000) == 15 and kt.direct64_candidates(100, 4000) == 125
    assert kt.direct64_candidates(11, 12) == 11


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_path_equals_exhaustive_float64(case, d, knn_reference):
    rng = np.random.default_rng(10 * d + sorted(CASES).index(case))
    X = CASES[case](rng, d)
    for k in (1, 11):
        d_ref, i_ref = knn_reference(X, k)
        for block in (None, 7, 64):
            dist, idx = knn_distances(X, k, backend="torch", block_size=block)
            assert kt.LAST_STATS[0].precision == "fp64"
            np.testing.assert_array_equal(idx, i_ref)
            np.testing.assert_array_equal(dist, d_ref)


def test_more_ties_than_candidates_go_through_the_fallback(knn_reference):
    X = _duplicates(np.random.default_rng(1), 2)
    d_ref, i_ref = knn_reference(X, 11)
    dist, idx = knn_distances(X, 11, backend="torch")
    stats = kt.LAST_STATS[0]
    assert stats.precision == "fp64" and stats.candidates == 15 and stats.uncertified_rows > 0
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_array_equal(dist, d_ref)


def test_error_bound_and_floors_hold_entrywise():
    """|g_ij - e_ij| <= eps64 (R_i + R_j)^2 for every pair, and each floor is at most every value of its
    row that the direct screen did not keep."""
    rng = np.random.default_rng(2)
    X = 1e3 + rng.normal(size=(300, 3)) * rng.uniform(1e-3, 10.0, size=(300, 1))
    Xt = torch.from_numpy(X)
    n, D = X.shape
    mean, scale = kt._centre_and_scale(Xt, n)
    Y = (Xt - mean) * scale
    q = torch.einsum("ij,ij->i", Y, Y)
    g = torch.cat([kt._distances64(Y, q, s, min(n, s + 37)) for s in range(0, n, 37)])  # _direct64's blocks
    e = kt._rows_sq(Xt, torch.arange(n), torch.arange(n).repeat(n, 1)) * scale**2
    R = torch.sqrt(q) * (1 + 1e-12)
    assert bool(((g - e).abs() <= kt.eps64(D) * (R[:, None] + R[None, :]) ** 2).all())
    c = kt.direct64_candidates(5, n)
    clock = kt._PhaseClock(torch.device("cpu"), False)
    v, i, floor, norm = kt._direct64(Xt, mean, scale, c, 2**20, 37, clock)
    torch.testing.assert_close(norm, R, rtol=0, atol=0)
    g.fill_diagonal_(float("inf"))
    assert torch.equal(torch.gather(g, 1, i), v)
    dropped = torch.ones((n, n), dtype=torch.bool)
    dropped[torch.arange(n)[:, None], i] = False
    dropped.fill_diagonal_(False)
    assert bool((torch.where(dropped, g, float("inf")) >= floor[:, None]).all())


@pytest.mark.parametrize("d", [1, 2, 3, 5, MAX_D])
def test_bit_identical_to_the_screen_it_replaces(d, monkeypatch):
    """Same neighbours and the same distances, bit for bit, as the fp32 screen (the code before the rule)."""
    X = unit_ball(700, d, np.random.default_rng(d))
    direct = knn_distances(X, 11, backend="torch")
    assert kt.LAST_STATS[0].precision == "fp64"
    monkeypatch.setitem(kt.DIRECT64, "max_features", 0)
    screen = knn_distances(X, 11, backend="torch")
    assert kt.LAST_STATS[0].precision == "fp32"
    np.testing.assert_array_equal(direct[1], screen[1])
    np.testing.assert_array_equal(direct[0], screen[0])


def test_tf32_screen_fails_where_the_direct_path_certifies():
    """Why the rule matters on the GPU: at d = 1 the TF32 bound (relative to the squared radius) is wider
    than the k-th neighbour distance, so the screen sends rows to the float64 fallback; the float64 path
    certifies every row of the same (continuous) data."""
    X = unit_ball(3000, 1, np.random.default_rng(5))
    tf32 = knn_distances(X, 11, backend="torch", precision="tf32")
    assert kt.LAST_STATS[0].uncertified_rows > 1000
    direct = knn_distances(X, 11, backend="torch")
    assert kt.LAST_STATS[0].uncertified_rows == 0
    np.testing.assert_array_equal(direct[1], tf32[1])
    np.testing.assert_array_equal(direct[0], tf32[0])


def test_cosine_and_float32_tensor_input(knn_reference):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 4)) + 3.0
    ref = knn_distances(X, 5, metric="cosine", backend="numpy")
    out = knn_distances(X, 5, metric="cosine", backend="torch")
    assert kt.LAST_STATS[0].precision == "fp64"
    np.testing.assert_array_equal(out[1], ref[1])
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-12)
    X32 = X.astype(np.float32)
    d_ref, i_ref = knn_reference(X32.astype(np.float64), 7)
    dist, idx = knn_distances(torch.from_numpy(X32), 7, device="cpu")
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_array_equal(dist, d_ref)


@pytest.mark.parametrize("case", ["duplicates", "lattice", "unit_ball"])
def test_group_selection_gives_the_same_result(case, monkeypatch):
    """``DIRECT64["select"] = "group"`` (the screen's group-min selection on padded float64 rows, offered for
    timing on the GPU) returns what ``"topk"`` returns, bit for bit; an unknown value is refused."""
    X = CASES[case](np.random.default_rng(7), 2)
    ref = knn_distances(X, 11, backend="torch", block_size=50)
    monkeypatch.setitem(kt.DIRECT64, "select", "group")
    out = knn_distances(X, 11, backend="torch", block_size=50)
    np.testing.assert_array_equal(out[1], ref[1])
    np.testing.assert_array_equal(out[0], ref[0])
    monkeypatch.setitem(kt.DIRECT64, "select", "sort")
    with pytest.raises(ConfigError, match="select"):
        knn_distances(X, 11, backend="torch")
