"""The screen's two ways of combining tiles (gelora/estimators/_knn_torch.py, ``SELECT``) on the CPU.

``"deferred"`` (contiguous column-group minima, every tile's candidates pooled per row, one reduction at
the end) must give what ``"tilewise"`` (the previous code: a merge per tile and side) gives: the same
neighbours and distances from :func:`knn_distances`, and inside the screen the same kept values, the
same floors and the same certificate; each floor must be a lower bound on every value of its row that
the screen did not keep (the tile values are rebuilt exactly as the screen computes them).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gelora.errors import ConfigError  # noqa: E402
from gelora.estimators import _knn_torch as kt  # noqa: E402
from gelora.estimators import knn_distances  # noqa: E402


def _ties(rng: np.random.Generator) -> np.ndarray:
    # an integer grid: most distances are tied with many others
    return rng.integers(0, 3, size=(333, 7)).astype(np.float64)


def _near_duplicates(rng: np.random.Generator) -> np.ndarray:
    # clusters of points within 1e-9 of each other (and exact duplicates): distances far below the
    # screen's error bound
    base = rng.normal(size=(40, 24))
    X = np.repeat(base, 7, axis=0) + 1e-9 * rng.normal(size=(280, 24))
    X[::5] = base[np.arange(0, 280, 5) // 7]
    return X


def _shells(rng: np.random.Generator) -> np.ndarray:
    # +-e_i at distance exactly 1 from the origin: 96 tied neighbours of the origin, more than the
    # candidates a row keeps (the certificate fails there and the float64 fallback runs)
    E = np.eye(48)
    return np.concatenate([np.zeros((1, 48)), E, -E, 3.0 + rng.normal(size=(60, 48))])


CASES = {
    "shells": _shells,
    "gaussian_f32": lambda rng: rng.normal(size=(517, 40)).astype(np.float32),
    "ties": _ties,
    "near_duplicates": _near_duplicates,
    "tanh": lambda rng: np.tanh(rng.uniform(size=(401, 4)) @ rng.normal(size=(4, 64))),
    "D4096": lambda rng: rng.normal(size=(97, 4096)),
}


def _prepared(X: np.ndarray, precision: str) -> tuple[object, object, int]:
    """The screen's factors, as :func:`kt.knn_torch` builds them."""
    Xt = torch.from_numpy(X)
    n = len(X)
    mean, scale = kt._centre_and_scale(Xt, n)
    left, right, _norm = kt._factors(Xt, mean, scale, precision, -(-n // kt.GROUP) * kt.GROUP, n)
    return left, right, n


def _screen_values(left, right, n: int, tile: int, precision: str) -> np.ndarray:
    """Every ``s^_ij`` as the screen computes it (same tiles, transposed below the diagonal), self = inf."""
    n_pad = left.shape[0]
    S = np.full((n_pad, n_pad), np.inf, dtype=np.float32)
    for s in range(0, n_pad, tile):
        e = min(n_pad, s + tile)
        for t in range(s, n_pad, tile):
            f = min(n_pad, t + tile)
            g = kt._product(left[s:e], right[t:f], precision)[0].numpy()
            S[s:e, t:f] = g
            if t != s:  # a diagonal tile serves its rows only (s^_ij and s^_ji may differ in the last bit)
                S[t:f, s:e] = g.T
    S = S[:n, :n]
    np.fill_diagonal(S, np.inf)
    return S


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_deferred_screen_keeps_the_same_values_and_floors(case, precision):
    X = CASES[case](np.random.default_rng(sorted(CASES).index(case)))
    left, right, n = _prepared(X, precision)
    c = kt.candidates_per_row(10, n)
    for tile in (32, 160, 4096):
        tw = kt._screen(left, right, n, c, tile, precision, mode="tilewise")
        S = _screen_values(left, right, n, tile, precision)
        # pool_bytes=0: two slots, so blocks with more tiles than that are reduced on the way
        for pool_bytes in (2**62, 0):
            de = kt._screen(left, right, n, c, tile, precision, mode="deferred", pool_bytes=pool_bytes)
            np.testing.assert_array_equal(de[2].numpy(), tw[2].numpy())  # floors
            np.testing.assert_array_equal(np.sort(de[0].numpy(), 1), np.sort(tw[0].numpy(), 1))
            assert de[3] == tw[3]
            v, i, floor = de[0].numpy(), de[1].numpy(), de[2].numpy()
            # the kept values are the columns' values, and the columns are distinct
            np.testing.assert_array_equal(np.take_along_axis(S, i, 1), v)
            assert all(len(set(row)) == c for row in i)
            # the floor bounds every value not kept, and the kept set holds every value below it
            dropped = S.copy()
            np.put_along_axis(dropped, i, np.inf, 1)
            assert bool((dropped.min(axis=1) >= floor).all())
            assert bool((v.max(axis=1) >= floor).all())


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_deferred_and_tilewise_knn_are_bit_identical(case, precision):
    X = CASES[case](np.random.default_rng(10 + sorted(CASES).index(case)))
    n = len(X)
    for k, block in ((10, None), (10, 48), (n - 1, 64), (n // 2, None)):
        out = {}
        for mode in kt.SELECT_MODES:
            with kt.select_settings(mode=mode):
                d, i = knn_distances(X, k, backend="torch", precision=precision, block_size=block)
            st = kt.LAST_STATS[0]
            out[mode] = (d, i, st.uncertified_rows, st.reranked_pairs)
        (d0, i0, u0, p0), (d1, i1, u1, p1) = out["tilewise"], out["deferred"]
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_array_equal(d1, d0)
        assert (u1, p1) == (u0, p0)  # the same rows certified, the same pairs re-ranked


@pytest.mark.parametrize("case", sorted(CASES))
def test_sort_finds_the_same_smallest_values_as_topk(case):
    X = CASES[case](np.random.default_rng(20 + sorted(CASES).index(case)))
    left, right, n = _prepared(X, "tf32")
    c = kt.candidates_per_row(10, n)
    ref = kt._screen(left, right, n, c, 64, "tf32", mode="tilewise")
    with kt.select_settings(smallest="sort"):
        got = kt._screen(left, right, n, c, 64, "tf32", mode="deferred", pool_bytes=0)
    np.testing.assert_array_equal(got[2].numpy(), ref[2].numpy())
    np.testing.assert_array_equal(np.sort(got[0].numpy(), 1), np.sort(ref[0].numpy(), 1))


def test_tied_shells_are_uncertified_alike_in_both_modes():
    X = _shells(np.random.default_rng(0))
    counts = []
    for mode in kt.SELECT_MODES:
        with kt.select_settings(mode=mode):
            knn_distances(X, 10, backend="torch", precision="fp32", block_size=32)
        counts.append(kt.LAST_STATS[0].uncertified_rows)
    assert counts[0] == counts[1] >= 1


def test_odd_sizes_and_a_tile_narrower_than_the_candidates():
    # n not a multiple of GROUP or of the tile; tiles of 16 columns (< c): whole-tile selections
    rng = np.random.default_rng(5)
    for n in (17, 50, 131):
        X = rng.normal(size=(n, 5))
        ref = None
        for mode in kt.SELECT_MODES:
            with kt.select_settings(mode=mode):
                # fp32 named: at D = 5 precision="auto" takes the float64 direct path, not the screen
                got = knn_distances(X, min(8, n - 1), backend="torch", precision="fp32", block_size=16)
                assert kt.LAST_STATS[0].precision == "fp32"
            if ref is None:
                ref = got
            np.testing.assert_array_equal(got[1], ref[1])
            np.testing.assert_array_equal(got[0], ref[0])
        d_np, i_np = knn_distances(X, min(8, n - 1), backend="numpy")
        np.testing.assert_array_equal(ref[1], i_np)


def test_select_mode_is_validated():
    left, right, n = _prepared(np.random.default_rng(6).normal(size=(40, 3)), "fp32")
    with pytest.raises(ConfigError, match="select mode"):
        kt._screen(left, right, n, 10, 16, "fp32", mode="fused")
    with kt.select_settings(smallest="heap"), pytest.raises(ConfigError, match="smallest"):
        kt._screen(left, right, n, 10, 16, "fp32")
    with pytest.raises(ConfigError, match="unknown SELECT setting"):
        with kt.select_settings(shape="round"):
            pass
    assert kt.SELECT == {
        "mode": "deferred",
        "smallest": "topk",
        "group_min": "auto",
        "product": "torch",
        "transfer": "pinned32",
    }


def _with_group_min(kind, fn):
    with kt.select_settings(group_min=kind):
        return fn()


def test_halving_group_minima_equal_amin_bit_for_bit():
    rng = np.random.default_rng(7)
    h = torch.from_numpy(rng.normal(size=(37, 160)).astype(np.float32))
    h[3, 5:40] = float("inf")  # padding columns
    h[::7, ::3] = 0.25  # ties inside groups
    ref = _with_group_min("amin", lambda: kt._row_group_min(h))
    got = _with_group_min("halving", lambda: kt._row_group_min(h))
    # a strided view, as the tilewise path passes the transposed tile
    got_t = _with_group_min("halving", lambda: kt._row_group_min(h[:, :32].T.contiguous().T))
    assert torch.equal(got, ref) and got.shape == (37, 10)
    assert torch.equal(got_t, ref[:, :2])


@pytest.mark.parametrize("case", sorted(CASES))
def test_knn_with_halving_group_minima_is_bit_identical(case):
    X = CASES[case](np.random.default_rng(30 + sorted(CASES).index(case)))

    def run():
        d, i = knn_distances(X, 10, backend="torch", precision="tf32", block_size=48)
        return d, i, kt.LAST_STATS[0].uncertified_rows, kt.LAST_STATS[0].reranked_pairs

    ref = _with_group_min("amin", run)
    got = _with_group_min("halving", run)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[2:] == ref[2:]


def test_group_min_is_validated():
    left, right, n = _prepared(np.random.default_rng(8).normal(size=(40, 3)), "fp32")
    with pytest.raises(ConfigError, match="group_min"):
        _with_group_min("tree", lambda: kt._screen(left, right, n, 10, 16, "fp32"))


def test_product_is_validated_and_triton_is_optional(monkeypatch):
    X = np.random.default_rng(9).normal(size=(40, 40))
    with kt.select_settings(product="cutlass"), pytest.raises(ConfigError, match="product"):
        knn_distances(X, 5, backend="torch", precision="fp32")
    monkeypatch.setitem(sys.modules, "triton", None)  # as if triton were not installed: import fails
    with kt.select_settings(product="triton"), pytest.raises(ConfigError, match="needs the triton package"):
        knn_distances(X, 5, backend="torch", precision="fp32")
    d, i = knn_distances(X, 5, backend="torch", precision="fp32")  # the default never imports triton
    assert kt.LAST_STATS[0].product == "torch" and i.shape == (40, 5)
    with kt.select_settings(group_min="triton"), pytest.raises(ConfigError, match=r"SELECT\['group_min'\]"):
        knn_distances(X, 5, backend="torch", precision="fp32")


class _Device:
    def __init__(self, kind):
        self.type = kind


def test_auto_group_minima_use_triton_on_cuda_only_when_it_imports(monkeypatch):
    """The default ``SELECT["group_min"] = "auto"``: the one-read Triton kernel on CUDA when triton imports
    (timed on an H200: reports/gpu/knn_select_transfer_h200.json), the halving kernel otherwise; it never
    raises, where an explicit ``"triton"`` without the package does."""
    from gelora.estimators import _knn_triton

    monkeypatch.setattr(_knn_triton, "triton_version", lambda: "3.6.0")
    assert kt._triton_group_min(_Device("cuda")) and not kt._triton_group_min(_Device("cpu"))
    monkeypatch.setattr(kt, "_TRITON_GROUP_MIN_FAILED", ["RuntimeError: no C compiler"])
    assert not kt._triton_group_min(_Device("cuda"))  # failed once in this process: halving from then on
    monkeypatch.setattr(kt, "_TRITON_GROUP_MIN_FAILED", [])
    monkeypatch.setattr(_knn_triton, "triton_version", lambda: None)
    assert not kt._triton_group_min(_Device("cuda"))
    with kt.select_settings(group_min="halving"):
        monkeypatch.setattr(_knn_triton, "triton_version", lambda: "3.6.0")
        assert not kt._triton_group_min(_Device("cuda"))
    monkeypatch.setattr(_knn_triton, "triton_version", lambda: None)
    with kt.select_settings(group_min="triton"), pytest.raises(ConfigError, match=r"'auto'"):
        kt._triton_group_min(_Device("cuda"))


def test_auto_group_minima_fall_back_to_halving_once_when_triton_fails(monkeypatch):
    """A Triton that imports but cannot build its kernel (e.g. no C compiler): under ``"auto"`` one warning,
    the halving kernel's minima, and no further attempt in this process; an explicit ``"triton"`` raises."""
    from gelora.estimators import _knn_triton

    calls = []

    def broken(h):
        calls.append(h.shape)
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(kt, "_TRITON_GROUP_MIN_FAILED", [])
    monkeypatch.setattr(_knn_triton, "row_group_min", broken)
    monkeypatch.setattr(_knn_triton, "triton_version", lambda: "3.6.0")
    # as _triton_group_min decides on a CUDA device
    monkeypatch.setattr(
        kt,
        "_triton_group_min",
        lambda device: (
            kt.SELECT["group_min"] == "triton"
            or (kt.SELECT["group_min"] == "auto" and not kt._TRITON_GROUP_MIN_FAILED)
        ),
    )
    h = torch.from_numpy(np.random.default_rng(3).normal(size=(8, 64)).astype(np.float32))
    ref = _with_group_min("halving", lambda: kt._row_group_min(h))
    with pytest.warns(RuntimeWarning, match="halving kernel for the rest of this process"):
        assert torch.equal(kt._row_group_min(h), ref)
    assert torch.equal(kt._row_group_min(h), ref) and len(calls) == 1  # not tried again
    with kt.select_settings(group_min="triton"), pytest.raises(RuntimeError, match="C compiler"):
        kt._row_group_min(h)
    # out of memory is not a build failure: raised, and the kernel stays on
    monkeypatch.setattr(kt, "_TRITON_GROUP_MIN_FAILED", [])

    def out_of_memory(h):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(_knn_triton, "row_group_min", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        kt._row_group_min(h)
    assert kt._TRITON_GROUP_MIN_FAILED == []


@pytest.mark.parametrize("narrow", [False, True])
def test_the_staged_transfer_returns_the_same_arrays(monkeypatch, narrow):
    """``SELECT["transfer"]`` "pinned"/"pinned32" (used on CUDA only): staging buffers stand in for the
    page-locked ones here; the arrays must equal ``.cpu()``'s, int64 indices either way, and not share
    memory with the staging buffers (the caller must never hold page-locked memory)."""
    staged = []

    def fake_staging(shape, dtype):
        staged.append(torch.empty(shape, dtype=dtype))
        return staged[-1]

    monkeypatch.setattr(kt, "_staging", fake_staging)
    monkeypatch.setattr(kt, "_wait", lambda device: None)
    rng = np.random.default_rng(0)
    d2 = torch.from_numpy(rng.random((50, 7)))
    idx = torch.from_numpy(rng.integers(0, 2**20, size=(50, 7)))
    got_d, got_i = kt._staged_copy(d2, idx, narrow=narrow)
    assert np.array_equal(got_d, d2.numpy()) and np.array_equal(got_i, idx.numpy())
    assert got_i.dtype == np.int64 and staged[1].dtype == (torch.int32 if narrow else torch.int64)
    assert not any(np.shares_memory(got, s.numpy()) for got in (got_d, got_i) for s in staged)


def test_an_unknown_transfer_is_a_config_error():
    X = np.random.default_rng(1).random((40, 5))
    with kt.select_settings(transfer="dma"), pytest.raises(ConfigError, match="transfer"):
        knn_distances(torch.from_numpy(X), 3, device="cpu")
