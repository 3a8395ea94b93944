"""The fused screen tile (gelora/estimators/_knn_triton.py, ``SELECT["product"] = "triton"``); skipped where
triton is not installed. Without CUDA the kernel runs on the CPU under Triton's interpreter
(``TRITON_INTERPRET=1``, set here before triton is first imported: triton reads it at import); with CUDA
(and no ``TRITON_INTERPRET``) on the GPU, compiled.

The kernel's group minima must equal :func:`kt._row_group_min` / :func:`kt._column_group_min` of the tile
it wrote, its tile must be within the accumulation bound the certificate assumes, the selection must be
bit-identical to the torch path's when both see the same tile values, and the whole ``knn_distances``
must return the same neighbours and distances as the default path and the exhaustive float64 reference
(the tile's last bits may differ from ``torch.mm``'s, so candidates and floors may differ).

    tox -e triton        (or: pip install triton; python -m pytest tests/unit/gelora/estimators/test_knn_triton.py)
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
DEVICE = "cuda" if torch.cuda.is_available() and not os.environ.get("TRITON_INTERPRET") else "cpu"
if DEVICE == "cpu":
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported without TRITON_INTERPRET=1", allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from gelora.estimators import _knn_torch as kt  # noqa: E402
from gelora.estimators import _knn_triton as ktr  # noqa: E402
from gelora.estimators import knn_distances  # noqa: E402


def _ties(rng):
    return rng.integers(0, 3, size=(150, 7)).astype(np.float64)  # an integer grid: many tied distances


def _duplicated(rng):
    base = rng.normal(size=(30, 24))  # exact duplicates and points within 1e-9 of each other
    X = np.repeat(base, 5, axis=0) + 1e-9 * rng.normal(size=(150, 24))
    X[::3] = base[np.arange(0, 150, 3) // 5]
    return X


CASES = {
    "gaussian_f32": lambda rng: rng.normal(size=(181, 40)).astype(np.float32),
    "duplicated": _duplicated,
    "ties": _ties,
    "low_rank": lambda rng: np.tanh(rng.uniform(size=(170, 3)) @ rng.normal(size=(3, 48))),
}


def _factors(X, precision):
    Xt = torch.from_numpy(X).to(DEVICE)
    n = len(X)
    mean, scale = kt._centre_and_scale(Xt, n)
    left, right, _ = kt._factors(Xt, mean, scale, precision, -(-n // kt.GROUP) * kt.GROUP, n)
    return left, right, n


def test_group_size_matches_the_screen():
    assert ktr.GROUP == kt.GROUP


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_kernel_group_minima_are_those_of_its_tile(precision):
    left, right, n = _factors(CASES["ties"](np.random.default_rng(0)), precision)
    n_pad = left.shape[0]  # 160: tiles with padding rows and columns, blocks of 32 inside
    for s, e, t, f in ((0, 96, 0, 96), (0, 96, 96, n_pad), (96, n_pad, 96, n_pad), (16, 48, 64, 160)):
        g, row_min, col_min = ktr.screen_tile(left[s:e], right[t:f], n - s, n - t, s == t, precision)
        assert g.dtype == torch.float32 and g.shape == (e - s, f - t)
        for kind in kt.GROUP_MINS:
            with kt.select_settings(group_min=kind):
                assert torch.equal(row_min, kt._row_group_min(g))
        assert torch.equal(col_min, kt._column_group_min(g)) and col_min.shape == (f - t, (e - s) // 16)
        # the torch path's masks, at the same places
        ref, _ = kt._product(left[s:e], right[t:f], precision)
        if f > n:
            ref[:, max(0, n - t) :] = float("inf")
        if e > n:
            ref[max(0, n - s) :, :] = float("inf")
        if s == t:
            ref.fill_diagonal_(float("inf"))
        assert torch.equal(torch.isinf(g), torch.isinf(ref))
        # the accumulation bound screen_eps assumes: gamma_W(2^-22) times the sum of absolute terms
        a64, b64 = left[s:e].double().cpu(), right[t:f].double().cpu()
        g, ref = g.cpu(), ref.cpu()
        W = a64.shape[1]
        bound = kt._gamma(W, kt.ACC_U) * (a64.abs() @ b64.abs().T) + kt.U32 * (a64 @ b64.T).abs()
        fin = torch.isfinite(ref)
        assert bool(((g.double() - a64 @ b64.T).abs() <= bound)[fin].all())


@pytest.mark.parametrize("mode", kt.SELECT_MODES)
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_selection_is_bit_identical_given_the_same_tile_values(monkeypatch, mode, precision):
    """The torch path fed the kernel's own (unmasked) tile values selects exactly what the fused path
    selects: the kernel's group minima are the minima of the values the selection gathers."""
    left, right, n = _factors(CASES["low_rank"](np.random.default_rng(1)), precision)
    c = kt.candidates_per_row(10, n)
    fused = {
        tile: kt._screen(left, right, n, c, tile, precision, mode=mode, pool_bytes=0, product="triton")
        for tile in (48, 176)
    }

    def kernel_values(a, b, prec):
        big = 2**30  # no padding, no diagonal: the torch path masks as usual
        return ktr.screen_tile(a, b, big, big, False, prec)[0], kt.U32

    monkeypatch.setattr(kt, "_product", kernel_values)
    for tile, got in fused.items():
        ref = kt._screen(left, right, n, c, tile, precision, mode=mode, pool_bytes=0, product="torch")
        for x, y in zip(got[:3], ref[:3], strict=True):
            assert torch.equal(x, y)
        assert got[3] == ref[3] == kt.U32


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_knn_with_the_fused_product_equals_the_default_path(case, precision, knn_reference):
    X = CASES[case](np.random.default_rng(10 + sorted(CASES).index(case)))
    for k, block in ((10, None), (7, 48)):
        kw = {"backend": "torch", "precision": precision, "block_size": block, "device": DEVICE}
        ref = knn_distances(X, k, **kw)
        assert kt.LAST_STATS[0].product == "torch"
        with kt.select_settings(product="triton"):
            got = knn_distances(X, k, **kw)
        assert kt.LAST_STATS[0].product == "triton" and kt.LAST_STATS[0].precision == precision
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
        d_ex, i_ex = knn_reference(X.astype(np.float64), k)
        np.testing.assert_array_equal(got[1], i_ex)
        np.testing.assert_array_equal(got[0], d_ex)
    assert kt.SELECT["product"] == "torch"


def test_the_torch_product_runs_where_the_kernel_cannot(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the CPU without the interpreter: no Triton
    X = np.random.default_rng(3).normal(size=(60, 40))
    ref = knn_distances(X, 5, backend="torch", precision="tf32")
    with kt.select_settings(product="triton"):
        got = knn_distances(X, 5, backend="torch", precision="tf32")
    assert kt.LAST_STATS[0].product == "torch"
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("shape", [(16, 32), (45, 96), (130, 1024), (1, 48)])
def test_the_group_min_kernel_equals_halving(shape):
    """``SELECT["group_min"] = "triton"``: one read of the tile, the same minima as the halving kernel
    (inf entries, ties and row counts that are not multiples of the block included)."""
    rng = np.random.default_rng(shape[0])
    g = torch.from_numpy(rng.integers(-5, 5, size=shape).astype(np.float32)).to(DEVICE)
    g[rng.random(shape) < 0.2] = float("inf")
    with kt.select_settings(group_min="halving"):
        ref = kt._row_group_min(g)
    got = ktr.row_group_min(g)
    assert got.shape == (shape[0], shape[1] // kt.GROUP) and torch.equal(got, ref)
    with kt.select_settings(group_min="triton"):
        assert torch.equal(kt._row_group_min(g), ref)
        assert torch.equal(kt._row_group_min(g.T.contiguous().T[:, :32]), ref[:, :2])  # strided: halving


@pytest.mark.parametrize("case", sorted(CASES))
def test_knn_with_the_group_min_kernel_equals_the_default_path(case):
    X = CASES[case](np.random.default_rng(20 + sorted(CASES).index(case)))
    kw = {"backend": "torch", "precision": "tf32", "block_size": 48, "device": DEVICE}
    with kt.select_settings(group_min="halving"):  # the default ("auto") is the Triton kernel on CUDA
        ref = knn_distances(X, 7, **kw)
    stats = kt.LAST_STATS[0]
    with kt.select_settings(group_min="triton"):
        got = knn_distances(X, 7, **kw)
    assert kt.LAST_STATS[0] == stats  # the same minima: the same candidates, floors and pairs
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
