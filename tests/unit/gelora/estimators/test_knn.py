"""The exact k-NN core: every backend against brute force, ties, near-duplicates, duplicates, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gelora.errors import ConfigError, DuplicatePointsError, InvalidInputError, NotEnoughSamplesError
from gelora.estimators import knn_distances, knn_without_duplicates
from gelora.estimators.knn import KDTREE_MAX_FEATURES

BACKENDS = ["kdtree", "numpy", "torch"]


def brute_force(X: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Reference: all pairwise distances by differences in float64, self excluded by index."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D.shape), D), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), order


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n_features", [3, 40])
def test_backends_match_brute_force(backend, metric, n_features):
    rng = np.random.default_rng(n_features)
    X = rng.normal(size=(300, n_features)) + 5.0  # off-centre: the Gram trick must still be exact
    d0, i0 = brute_force(X, 7, metric)
    for block in (None, 23):
        d, i = knn_distances(X, 7, metric=metric, backend=backend, block_size=block)
        assert d.shape == (300, 7) and d.dtype == np.float64 and i.dtype == np.int64
        np.testing.assert_allclose(d, d0, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(i, i0)
        assert np.all(np.diff(d, axis=1) >= 0)


def test_cosine_is_the_chordal_distance():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    d, i = knn_distances(X, 1, metric="cosine", backend="numpy")
    # 45 degrees between rows 0/2 and 1/2: chord 2 sin(22.5 deg)
    np.testing.assert_allclose(d[:, 0], 2 * np.sin(np.pi / 8))
    np.testing.assert_array_equal(i[:, 0], [2, 2, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_on_a_grid_give_the_same_distances_and_lowest_indices(backend):
    g = np.arange(6.0)
    X = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    d0, i0 = brute_force(X, 4)
    d, i = knn_distances(X, 4, backend=backend)
    np.testing.assert_allclose(d, d0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(i, i0)  # ties broken by the smaller index on every backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_duplicates_keep_accurate_distances(backend):
    # pairs 1e-9 apart far from the origin: |x|^2 + |y|^2 - 2xy cancels to noise in float64 and float32
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 20)) * 10 + 1e3
    X = np.concatenate([base, base + 1e-9 * rng.normal(size=base.shape)])
    d0, _ = brute_force(X, 2)
    d, _ = knn_distances(X, 2, backend=backend)
    assert np.all(d[:, 0] > 0)
    np.testing.assert_allclose(d, d0, rtol=1e-6)
    ratio0, ratio = d0[:, 1] / d0[:, 0], d[:, 1] / d[:, 0]
    np.testing.assert_allclose(ratio, ratio0, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_is_excluded_by_index_so_duplicates_show_zero_distance(backend):
    X = np.random.default_rng(2).normal(size=(40, 5))
    X[7] = X[3]
    d, i = knn_distances(X, 2, backend=backend)
    assert d[3, 0] == 0 and i[3, 0] == 7
    assert d[7, 0] == 0 and i[7, 0] == 3
    assert np.all(i != np.arange(40)[:, None])


def test_torch_tensor_path_equals_numpy_path():
    X = np.random.default_rng(3).normal(size=(200, 30)).astype(np.float32)
    d_np, i_np = knn_distances(X, 5, backend="numpy")
    d_t, i_t = knn_distances(torch.from_numpy(X), 5)
    np.testing.assert_allclose(d_t, d_np, rtol=1e-12)
    np.testing.assert_array_equal(i_t, i_np)
    d_dev, _ = knn_distances(X.astype(np.float64), 5, device="cpu")
    np.testing.assert_allclose(d_dev, d_np, rtol=1e-12)


def test_auto_backend_chooses_by_shape(monkeypatch):
    import gelora.estimators.knn as knn

    calls = []
    monkeypatch.setattr(
        knn, "_knn_kdtree", lambda X, k: calls.append("kdtree") or (np.ones((len(X), k)),) * 2
    )
    monkeypatch.setattr(
        knn, "_knn_numpy", lambda X, k, b: calls.append("numpy") or (np.ones((len(X), k)),) * 2
    )
    monkeypatch.setattr(
        knn,
        "_knn_torch",
        lambda X, k, m, d, b, p="auto": calls.append("torch") or (np.ones((len(X), k)),) * 2,
    )
    rng = np.random.default_rng(0)
    knn.knn_distances(rng.normal(size=(20, KDTREE_MAX_FEATURES)), 2)
    knn.knn_distances(rng.normal(size=(20, KDTREE_MAX_FEATURES + 1)), 2)
    knn.knn_distances(torch.randn(20, 2), 2)
    knn.knn_distances(rng.normal(size=(20, 2)), 2, device="cpu")
    assert calls == ["kdtree", "numpy", "torch", "torch"]


def test_memory_bounded_blocks_give_identical_results():
    X = np.random.default_rng(4).normal(size=(257, 16))
    ref = knn_distances(X, 3, backend="torch", block_size=257)
    for block in (1, 16, 100):
        out = knn_distances(X, 3, backend="torch", block_size=block)
        np.testing.assert_array_equal(out[1], ref[1])
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-15)


def test_k_equal_to_n_minus_one():
    X = np.random.default_rng(5).normal(size=(6, 3))
    for backend in BACKENDS:
        d, i = knn_distances(X, 5, backend=backend)
        assert sorted(i[0]) == [1, 2, 3, 4, 5]


def test_errors():
    X = np.random.default_rng(6).normal(size=(10, 3))
    with pytest.raises(NotEnoughSamplesError):
        knn_distances(X, 10)
    with pytest.raises(ConfigError):
        knn_distances(X, 0)
    with pytest.raises(ConfigError, match="metric"):
        knn_distances(X, 2, metric="manhattan")
    with pytest.raises(ConfigError, match="backend"):
        knn_distances(X, 2, backend="faiss")
    with pytest.raises(ConfigError, match="backend='torch'"):
        knn_distances(torch.from_numpy(X), 2, backend="numpy")
    Z = X.copy()
    Z[2] = 0
    with pytest.raises(InvalidInputError, match="zero vectors"):
        knn_distances(Z, 2, metric="cosine")
    with pytest.raises(InvalidInputError, match="zero vectors"):
        knn_distances(Z, 2, metric="cosine", backend="torch")


def test_duplicates_raise_with_their_count():
    X = np.random.default_rng(7).normal(size=(30, 4))
    X[[5, 6, 7]] = X[0]
    with pytest.raises(DuplicatePointsError, match="4 of 30 points"):
        knn_without_duplicates(X, 2)


def test_dedupe_keeps_the_first_of_each_group_even_beyond_k():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 4))
    X[10:25] = X[3]  # a group of 16 coincident rows, larger than k + 1
    X[30] = X[31]
    with pytest.warns(UserWarning, match="removed 16 duplicate"):
        data = knn_without_duplicates(X, 2, duplicates="dedupe")
    assert data.n_duplicates_removed == 16  # 15 copies of row 3, one of row 31
    assert data.X.shape == (24, 4) and np.all(data.dist > 0)
    assert len(np.unique(data.X, axis=0)) == 24


def test_dedupe_on_torch_and_under_cosine():
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    X[4] = 2 * X[1]  # parallel: a duplicate for the cosine metric only
    assert knn_without_duplicates(X, 2).n_duplicates_removed == 0
    with pytest.raises(DuplicatePointsError, match="parallel"):
        knn_without_duplicates(X, 2, metric="cosine")
    with pytest.warns(UserWarning):
        data = knn_without_duplicates(X, 2, metric="cosine", duplicates="dedupe")
    assert data.n_duplicates_removed == 1 and isinstance(data.X, torch.Tensor)


# --- the NumPy backend's rigorous float32 screen (gelora.estimators.knn._knn_numpy) -------------------


def brute_force_chunked(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Same reference as :func:`brute_force` (euclidean), 64 rows at a time to bound memory."""
    n = len(X)
    dist, idx = np.empty((n, k)), np.empty((n, k), dtype=np.int64)
    for s in range(0, n, 64):
        D = np.sqrt(((X[s : s + 64, None, :] - X[None, :, :]) ** 2).sum(-1))
        D[np.arange(D.shape[0]), np.arange(s, s + D.shape[0])] = np.inf
        order = np.lexsort((np.broadcast_to(np.arange(n), D.shape), D), axis=1)[:, :k]
        dist[s : s + 64], idx[s : s + 64] = np.take_along_axis(D, order, axis=1), order
    return dist, idx


def low_rank_cloud(n: int, D: int, seed: int, noise: float = 1e-3) -> np.ndarray:
    """A 6-dimensional curved manifold linearly embedded in R^D plus isotropic noise."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(n, 6))
    Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
    return Y @ rng.normal(size=(18, D)) + noise * rng.normal(size=(n, D))


def test_screen_error_bound_holds_for_the_float32_product():
    # the per-row bound E_i of _screen_slack must dominate the actual float32 error of the screening
    # product |g_ij - L_ij|, L computed exactly (float64 differences of the same coordinates); large
    # offsets before centring and a wide spread of norms make the product's cancellation as bad as it gets
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(size=(150, 40)) * 1e-3, rng.normal(size=(150, 40)) * 1e3]) + 1e7
    Xc = X - X.mean(axis=0)
    for Z, a in [(Xc, np.zeros(len(X))), (Xc[:, :10], np.linalg.norm(Xc[:, 10:], axis=1))]:
        left, right = knn._gram_factors(Z, a, np.float32)
        g = (left @ right.T).astype(np.float64)
        L = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1) + (a[:, None] - a[None, :]) ** 2
        E = knn._screen_slack(Z, a, knn.U32, X.shape[1]) / 4
        assert np.all(np.abs(g - L) <= E[:, None])
        # and the bound is not vacuous: within a factor 1e4 of the largest error seen
        assert E.max() < 1e4 * np.abs(g - L).max()


def test_principal_screen_is_used_on_low_rank_data_and_stays_exact(monkeypatch):
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # look for a principal screen at this small size

    X = low_rank_cloud(2100, 96, seed=12)
    Xc = X - X.mean(axis=0)
    Z, a = knn._screen_basis(Xc, 5)
    assert Z.shape[1] < X.shape[1]  # the cost model picked a proper subspace
    # the screen's inequalities L <= d <= L + 4 a_i a_j on a sample of pairs
    i, j = np.random.default_rng(0).integers(0, len(X), size=(2, 500))
    d2 = ((X[i] - X[j]) ** 2).sum(1)
    L = ((Z[i] - Z[j]) ** 2).sum(1) + (a[i] - a[j]) ** 2
    assert np.all(L <= d2 * (1 + 1e-12)) and np.all(d2 <= (L + 4 * a[i] * a[j]) * (1 + 1e-12))
    d0, i0 = brute_force_chunked(X, 5)
    first_cuts = []
    screen = knn._screen_block
    with pytest.MonkeyPatch.context() as mp:
        # record whether the first cut came from the separate subset product (n / m >= 4 here)
        mp.setattr(knn, "_screen_block", lambda g, *args: first_cuts.append(args[-1]) or screen(g, *args))
        for block in (None, 97):
            d, idx = knn_distances(X, 5, backend="numpy", block_size=block)
            np.testing.assert_array_equal(idx, i0)
            np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)
    assert knn._subset_step(len(X), 5) >= 4 and all(t is not None for t in first_cuts)


def test_principal_screen_beyond_the_first_directions_stays_exact(monkeypatch):
    # a slowly decaying spectrum (scale 50 over 400 features) makes the cost model look past rank 61,
    # which recomputes the principal directions and the coordinates so far; the result must not change
    from scipy.spatial.distance import cdist

    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # look for a principal screen at this small size
    rng = np.random.default_rng(18)
    X = rng.normal(size=(2100, 400)) * np.exp(-np.arange(400) / 50)
    # the cost model before the basis was priced in (it looks further at this small n)
    monkeypatch.setattr(
        knn, "_screen_cost", lambda n, D, p, k, count: n * (p + 3.0) + 50.0 * D * max(count, k)
    )
    ranks = []
    principal = knn._principal_directions
    monkeypatch.setattr(
        knn, "_principal_directions", lambda Xc, p, *a: ranks.append(p) or principal(Xc, p, *a)
    )
    # an explicit block size: the blockwise path (without it, at this size, the pilot stops at rank 64
    # against the direct path's plain screen)
    d, i = knn_distances(X, 5, backend="numpy", block_size=700)
    assert len(ranks) == 2 and ranks[1] > ranks[0]  # the second, larger basis was computed
    D2 = cdist(X, X, "sqeuclidean")  # exact differences in float64
    np.fill_diagonal(D2, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D2.shape), D2), axis=1)[:, :5]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(d, np.sqrt(np.take_along_axis(D2, order, axis=1)), rtol=1e-12, atol=0)


def test_principal_screen_with_outliers_off_the_subspace(monkeypatch):
    # a few points far off the principal subspace have large residual norms, which loosen the screen's
    # upper bounds u = g + 4 a_i a_j; the result must not change
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # look for a principal screen at this small size
    X = low_rank_cloud(2100, 96, seed=13)
    X[::300] += 5.0 * np.random.default_rng(13).normal(size=(7, 96))
    d0, i0 = brute_force_chunked(X, 3)
    d, i = knn_distances(X, 3, backend="numpy")
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("block", [None, 100])  # the direct (small-n) path and the blockwise one
def test_far_apart_clusters_fall_back_to_a_float64_screen(monkeypatch, block):
    # two tight clusters 2e5 apart: after centring every norm is ~1e5, so the float32 bound (~1e4 in
    # squared distance) keeps each whole cluster as candidates (> SCREEN_CAP per row) and those rows are
    # screened again in float64; the neighbours must still be the exact ones
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(14)
    c = rng.normal(size=(1, 20)) * 1e5
    X = np.concatenate([c + rng.normal(size=(300, 20)), -c + rng.normal(size=(300, 20))])
    dtypes = []
    for name in ("_screen_block", "_screen_full"):
        screen = getattr(knn, name)
        monkeypatch.setattr(
            knn, name, lambda g, *args, _screen=screen: dtypes.append(g.dtype) or _screen(g, *args)
        )
    d0, i0 = brute_force_chunked(X, 4)
    d, i = knn_distances(X, 4, backend="numpy", block_size=block)
    assert np.float64 in dtypes  # the fallback ran
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


def test_near_ties_below_float32_resolution():
    # vertices of a regular simplex nudged by 1e-10: every pairwise distance is sqrt(2) to ~1e-10, far
    # below float32 resolution, so the screen must keep all of them and the float64 re-rank decide
    rng = np.random.default_rng(15)
    X = 3.0 * np.eye(120) + 1e-10 * rng.normal(size=(120, 120)) + 50.0
    d0, i0 = brute_force(X, 6)
    for block in (None, 7):
        d, i = knn_distances(X, 6, backend="numpy", block_size=block)
        np.testing.assert_array_equal(i, i0)
        np.testing.assert_allclose(d, d0, rtol=1e-14, atol=0)


def test_duplicates_within_tolerance_in_a_large_offset_cloud():
    # twins 1e-7 apart (relative 1e-13 of the offset): the twin must be the first neighbour, with its
    # float64 distance, and the second neighbour must be exact as well
    rng = np.random.default_rng(16)
    base = rng.normal(size=(400, 50)) + 1e6
    X = np.concatenate([base, base + 1e-7 * rng.normal(size=base.shape)])
    d0, i0 = brute_force_chunked(X, 2)
    d, i = knn_distances(X, 2, backend="numpy")
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)
    assert np.all(i[:400, 0] == np.arange(400, 800))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threaded_blocks_give_identical_results(monkeypatch, workers, symmetric):
    # the per-thread blocks (product, selection, re-rank), with the full or the symmetric (half) product,
    # must not change a single bit
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0 if symmetric else 10**9)
    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # with a principal screen at this small size
    X = low_rank_cloud(2100, 64, seed=17)
    monkeypatch.setattr(knn, "_n_workers", lambda: 1)
    ref = knn_distances(X, 4, backend="numpy", block_size=2100)
    monkeypatch.setattr(knn, "_n_workers", lambda: workers)
    for block in (None, 301, 5):
        d, i = knn_distances(X, 4, backend="numpy", block_size=block)
        np.testing.assert_array_equal(i, ref[1])
        np.testing.assert_array_equal(d, ref[0])


@pytest.mark.parametrize("symmetric", [False, True])
def test_symmetric_product_is_exact_on_near_ties_and_outliers(monkeypatch, symmetric):
    # full-rank data (plain float32 screen) with exact ties on a grid, near-ties below float32 resolution
    # and far outliers; each pair's screening value is computed once, from either side, in the symmetric
    # product, and every row's candidates are regrouped from several blocks
    import gelora.estimators.knn as knn

    calls = []
    sym = knn._knn_numpy_symmetric
    monkeypatch.setattr(knn, "_knn_numpy_symmetric", lambda *a: calls.append(1) or sym(*a))
    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0 if symmetric else 10**9)
    rng = np.random.default_rng(19)
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 4), -1).reshape(-1, 4)  # 256 points, many exact ties
    X = np.concatenate(
        [
            np.pad(grid, ((0, 0), (0, 36))) + 100.0,
            rng.normal(size=(1800, 40)),
            3.0 * np.eye(40) + 1e-10 * rng.normal(size=(40, 40)) + 50.0,
            1e3 * rng.normal(size=(10, 40)),
        ]
    )
    from scipy.spatial.distance import cdist

    D2 = cdist(X, X, "sqeuclidean")
    np.fill_diagonal(D2, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D2.shape), D2), axis=1)[:, :6]
    for block in (None, 129):
        d, i = knn_distances(X, 6, backend="numpy", block_size=block)
        np.testing.assert_array_equal(i, order)
        np.testing.assert_allclose(d, np.sqrt(np.take_along_axis(D2, order, axis=1)), rtol=1e-13, atol=0)
    assert bool(calls) == symmetric


def test_symmetric_product_is_skipped_beyond_its_memory_budget(monkeypatch):
    import gelora.estimators.knn as knn

    calls = []
    sym = knn._knn_numpy_symmetric
    monkeypatch.setattr(knn, "_knn_numpy_symmetric", lambda *a: calls.append(1) or sym(*a))
    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0)
    X = low_rank_cloud(2100, 64, seed=20)
    ref = knn_distances(X, 4, backend="numpy")
    assert calls
    monkeypatch.setattr(knn, "SYMMETRIC_MAX_BYTES", 0)
    d, i = knn_distances(X, 4, backend="numpy")
    assert len(calls) == 1  # the blockwise product ran instead, with the same result
    np.testing.assert_array_equal(i, ref[1])
    np.testing.assert_array_equal(d, ref[0])


def test_worker_count_follows_omp_num_threads(monkeypatch):
    import gelora.estimators.knn as knn

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert knn._n_workers() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert knn._n_workers() >= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_two_stage_rerank_equals_the_one_stage_rerank_with_ties_and_duplicates(seed):
    # the exact re-rank of the first k candidates by screening value, then of the others within the
    # bound, must return bit for bit what re-ranking every candidate returns: grid points (exact ties,
    # broken by index), exact duplicates (zero distances) and screening values perturbed by up to the
    # slack (a worst-case screen)
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3), -1).reshape(-1, 3)  # 27 points
    X = np.concatenate([grid, grid[:5], rng.normal(size=(40, 3))])  # 5 exact duplicates
    n, k = len(X), 4
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D2, np.inf)
    slack = np.full(n, 0.5)
    # every column within the row's k-th distance plus the slack (a superset, as the screen keeps)
    kth = np.sort(D2, axis=1)[:, k - 1]
    r, col = np.nonzero(D2 <= kth[:, None] + slack[:, None])
    v = D2[r, col] + rng.uniform(-0.25, 0.25, size=r.size) * slack[r] / 2  # |g - e| <= 2 E = slack / 2
    ref = knn._rerank_pairs(X, 0, r, col, n, k, 1024)
    assert r.size > knn.TWO_STAGE_MIN_RATIO * k * n  # the two-stage path runs
    got = knn._rerank_two_stage(X, 0, r, col, v, slack, n, k, 1024)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    d0, i0 = brute_force(X, k)
    np.testing.assert_array_equal(got[1], i0)
    np.testing.assert_allclose(np.sqrt(got[0]), d0, rtol=1e-14, atol=0)  # other summation order


@pytest.mark.parametrize("symmetric", [False, True])
def test_two_stage_rerank_in_the_full_search_matches_brute_force(monkeypatch, symmetric):
    # forced on every block (ratio 0): a principal screen with residuals (loose upper bounds), exact ties
    # on a grid, exact duplicates and far outliers; neighbours, tie order and distances as brute force
    import gelora.estimators.knn as knn

    calls = []
    two = knn._rerank_two_stage
    monkeypatch.setattr(knn, "_rerank_two_stage", lambda *a: calls.append(1) or two(*a))
    monkeypatch.setattr(knn, "TWO_STAGE_MIN_RATIO", 0.0)
    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0 if symmetric else 10**9)
    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # with a principal screen at this small size
    X = low_rank_cloud(2100, 96, seed=21)
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 4), -1).reshape(-1, 4)  # 81 points, exact ties
    X[:81] = np.pad(grid, ((0, 0), (0, 92))) + 7.0
    X[81:91] = X[100:110]  # exact duplicates
    X[::500] += 4.0 * np.random.default_rng(21).normal(size=(5, 96))
    d0, i0 = brute_force_chunked(X, 5)
    for block in (None, 301):
        d, i = knn_distances(X, 5, backend="numpy", block_size=block)
        np.testing.assert_array_equal(i, i0)
        np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)
    assert calls
    assert np.all(d[81:91, 0] == 0.0) and np.all(d[100:110, 0] == 0.0)


def test_thread_pool_is_shared_and_renewed_in_a_forked_child(monkeypatch):
    import gelora.estimators.knn as knn

    assert knn._pool(2) is knn._pool(2)
    parent = knn._pool(2)
    monkeypatch.setattr(knn.os, "getpid", lambda: -1)  # as seen from a forked child
    child = knn._pool(2)
    assert child is not parent
    assert child.submit(lambda: 7).result() == 7


def test_cost_model_prices_the_principal_basis():
    # the basis (float64 coordinates and residuals, the principal directions) is part of the cost of a
    # principal screen: at n = 4000, D = 768 a rank-125 screen keeping 40 candidates per row costs more
    # than the plain screen (half product, 20 candidates); at n = 16000 it costs less
    import gelora.estimators.knn as knn

    assert knn._screen_cost(4000, 768, 125, 20, 40.0) > knn._screen_cost(4000, 768, 768, 20, 20.0)
    assert knn._screen_cost(16000, 768, 125, 20, 36.0) < knn._screen_cost(16000, 768, 768, 20, 20.0)
    # and a perfect narrow screen costs more than its product alone
    assert knn._screen_cost(4000, 768, 21, 20, 20.0) > 4000 * 24 + knn.RERANK_COST * 768 * 20


def _direct_cases() -> dict[str, tuple[np.ndarray, int]]:
    """Adversarial inputs for the small-n direct path (each below DIRECT_MAX_N points)."""
    rng = np.random.default_rng(21)
    grid = np.stack(np.meshgrid(*[np.arange(7.0)] * 3), -1).reshape(-1, 3)  # exact ties everywhere
    twins = rng.normal(size=(150, 160))
    cases = {
        # ties on a grid far from the origin, exact duplicates, and a few near-duplicates
        "grid_offset_dups": (np.concatenate([grid, grid[:40], grid[:30] + 1e-9]) + 1e6, 6),
        # float64 cancellation: twins 1e-7 apart at offset 1e6, wide (deduplicated pairs, D >= 128)
        "twins_wide": (np.concatenate([twins, twins + 1e-7 * rng.normal(size=twins.shape)]) + 1e6, 3),
        # one feature with many ties (integers) and a duplicate-heavy column
        "D1": (rng.integers(0, 60, size=(500, 1)).astype(float), 5),
        # regular simplex nudged below float32 resolution (every distance ~sqrt(2))
        "simplex": (3.0 * np.eye(200) + 1e-10 * rng.normal(size=(200, 200)) + 50.0, 6),
        # scales outside float32's comfortable range: the exact power-of-two rescaling
        "huge": (rng.normal(size=(300, 40)) * 1e35, 4),
        "tiny": (rng.normal(size=(300, 40)) * 1e-35, 4),
        "subnormal_mix": (
            np.concatenate([rng.normal(size=(200, 30)), 1e-42 * rng.normal(size=(200, 30))]),
            4,
        ),
    }
    return cases


def _assert_as_blockwise_and_brute_force(X: np.ndarray, k: int, d: np.ndarray, i: np.ndarray) -> None:
    """The direct path's result ``(d, i)``: the blockwise screen's bits and brute force's neighbours."""
    d_blocks, i_blocks = knn_distances(X, k, backend="numpy", block_size=97)
    np.testing.assert_array_equal(i, i_blocks)
    np.testing.assert_array_equal(d, d_blocks)
    d0, i0 = brute_force_chunked(X, k)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("case", list(_direct_cases()))
def test_direct_path_matches_brute_force_and_the_blockwise_screen(monkeypatch, case, workers):
    # the direct path (one symmetric float32 product, pairs kept by both points computed once) must give
    # brute force's neighbours and tie order, and the blockwise screen's distances bit for bit
    import gelora.estimators.knn as knn

    monkeypatch.setenv("OMP_NUM_THREADS", str(workers))
    X, k = _direct_cases()[case]
    assert X.shape[0] <= knn.DIRECT_MAX_N
    calls = []
    direct = knn._knn_numpy_direct
    monkeypatch.setattr(knn, "_knn_numpy_direct", lambda *a: calls.append(1) or direct(*a))
    d, i = knn_distances(X, k, backend="numpy")
    assert calls  # the direct path ran
    _assert_as_blockwise_and_brute_force(X, k, d, i)


def test_direct_path_screen_bound_holds_entrywise():
    # |g - d| <= E_i (the direct path's proof) on data with a large offset, checked against exact
    # float64 distances of the centred points
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(22)
    X = rng.normal(size=(400, 300)) * rng.uniform(0.1, 10.0, size=(400, 1)) + 1e3
    n, D = X.shape
    Yf = (X - X.mean(axis=0)).astype(np.float32)
    G = Yf @ Yf.T
    s = np.diag(G).copy()
    g = (-2.0 * G + s[:, None]) + s[None, :]
    Y = X - X.mean(axis=0)
    d = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    norms = np.sqrt(s.astype(np.float64)) * (1.0 + knn._gamma(D + 4, knn.U32)) + 2.0**-120
    E = knn._slack_from_norms(norms, knn.U32, D, D) / 4.0
    assert np.all(np.abs(g.astype(np.float64) - d) <= E[:, None])
    assert np.all(np.linalg.norm(Y, axis=1) <= norms)


def test_direct_path_computes_a_shared_pair_once(monkeypatch):
    # with D >= DEDUPE_MIN_D the exact distances of the pairs kept by both points are computed once
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(23)
    X = rng.normal(size=(300, knn.DEDUPE_MIN_D))
    sizes = []
    exact = knn._exact_d2_buffered
    monkeypatch.setattr(
        knn, "_exact_d2_buffered", lambda X, r, c, b: sizes.append(r.size) or exact(X, r, c, b)
    )
    d, i = knn_distances(X, 10, backend="numpy")
    kept = 300 * 10  # the screen keeps about k per row on Gaussian data
    assert kept * 0.5 < sum(sizes) < kept  # mutual pairs (most of a k-NN graph's edges) counted once
    d0, i0 = brute_force(X, 10)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("low_rank", [False, True])
def test_direct_path_above_screen_min_n_only_where_no_principal_screen_pays(monkeypatch, low_rank):
    # between SCREEN_MIN_N and DIRECT_BASIS_MAX_N points (wide data) the direct path runs unless the
    # pilot finds a principal screen of rank <= 64 cheaper; either way the result is the blockwise one
    import gelora.estimators.knn as knn

    n, D = knn.SCREEN_MIN_N + 52, knn.DIRECT_BASIS_MIN_FEATURES
    rng = np.random.default_rng(24)
    X = low_rank_cloud(n, D, seed=24) if low_rank else rng.normal(size=(n, D)) + 3.0
    calls = []
    direct = knn._knn_numpy_direct
    monkeypatch.setattr(knn, "_knn_numpy_direct", lambda *a: calls.append(1) or direct(*a))
    d, i = knn_distances(X, 5, backend="numpy")
    assert bool(calls) == (not low_rank)
    d_blocks, i_blocks = knn_distances(X, 5, backend="numpy", block_size=512)
    np.testing.assert_array_equal(i, i_blocks)
    np.testing.assert_array_equal(d, d_blocks)
    d0, i0 = brute_force_chunked(X, 5)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("variant", ["one_stage", "two_stage", "symmetric_two_stage"])
@pytest.mark.parametrize("case", list(_direct_cases()))
def test_shared_rerank_of_the_blockwise_path_is_the_per_block_rerank(monkeypatch, case, variant, workers):
    # _rerank_shared (every block's pairs re-ranked together, a pair kept by both points computed once,
    # forced here on every width and, for "two_stage", with the two-stage selection on every block) must
    # return the per-block re-rank's distances bit for bit and brute force's neighbours and tie order, on
    # ties at a large offset with duplicates and near-duplicates, twins 1e-7 apart at offset 1e6, D = 1,
    # a nudged simplex, data scaled by 1e35 and 1e-35 and subnormal rows
    import gelora.estimators.knn as knn

    X, k = _direct_cases()[case]
    monkeypatch.setattr(knn, "_n_workers", lambda: workers)
    monkeypatch.setattr(knn, "TWO_STAGE_MIN_RATIO", 1.25 if variant == "one_stage" else 0.0)
    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0 if variant.startswith("symmetric") else 10**9)
    monkeypatch.setattr(knn, "SHARED_MIN_D", 10**9)  # the per-block re-rank
    d_ref, i_ref = knn_distances(X, k, backend="numpy", block_size=97)
    calls = []
    shared = knn._rerank_shared
    monkeypatch.setattr(knn, "_rerank_shared", lambda *a: calls.append(1) or shared(*a))
    monkeypatch.setattr(knn, "SHARED_MIN_D", 0)
    d, i = knn_distances(X, k, backend="numpy", block_size=97)
    assert calls
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)
    d0, i0 = brute_force_chunked(X, k)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("two_stage", [False, True])
def test_shared_rerank_computes_a_pair_kept_by_both_points_once(monkeypatch, two_stage):
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "TWO_STAGE_MIN_RATIO", 0.0 if two_stage else 1.25)
    rng = np.random.default_rng(25)
    X = rng.normal(size=(600, max(knn.SHARED_MIN_D, 16)))
    pairs, exact = [], []
    shared, d2 = knn._rerank_shared, knn._exact_d2_buffered
    monkeypatch.setattr(
        knn,
        "_rerank_shared",
        lambda X, parts, *a: pairs.append(sum(p[0].size for p in parts.values())) or shared(X, parts, *a),
    )
    monkeypatch.setattr(knn, "_exact_d2_buffered", lambda X, r, c, b: exact.append(r.size) or d2(X, r, c, b))
    d, i = knn_distances(X, 10, backend="numpy", block_size=97)
    assert pairs and 0.4 * pairs[0] < sum(exact) < 0.9 * pairs[0]  # mutual pairs computed once
    d0, i0 = brute_force(X, 10)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_principal_screen_of_data_at_extreme_scales(monkeypatch, scale):
    # the principal directions come from float32 products of (an exactly rescaled copy of) the data:
    # entries of 1e30 overflowed them before, 1e-30 underflowed; the screen must stay exact either way
    import gelora.estimators.knn as knn

    ranks = []
    basis = knn._screen_basis
    monkeypatch.setattr(
        knn, "_screen_basis", lambda *a: (lambda out: ranks.append(out[0].shape[1]) or out)(basis(*a))
    )
    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)  # look for a principal screen at this small size
    X = low_rank_cloud(knn.SCREEN_MIN_N + 52, 64, seed=26) * scale
    d, i = knn_distances(X, 5, backend="numpy")
    assert ranks and ranks[0] < 64  # a principal screen ran
    d0, i0 = brute_force_chunked(X, 5)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [1, 2, 3, 8, 9])
def test_kth_smallest_by_argmin_passes_is_the_partition_value(k):
    # rows with exact ties (an integer grid of values), an inf per row (the self entry) and a row that
    # is inf beyond its first k entries; the block must come back unchanged
    from gelora.estimators.knn import _kth_smallest

    rng = np.random.default_rng(k)
    g = rng.integers(0, 6, size=(40, 30)).astype(np.float32)
    g[np.arange(30), np.arange(30)] = np.inf
    g[35, k:] = np.inf
    g[36] = np.inf
    before = g.copy()
    np.testing.assert_array_equal(_kth_smallest(g, k), np.partition(g, k - 1, axis=1)[:, k - 1])
    np.testing.assert_array_equal(g, before)


def test_best_of_row_pairs_is_best_of_pairs():
    # flat pairs with ascending columns per row, between k and 9 pairs per row, tied distances
    from gelora.estimators.knn import _best_of_pairs, _best_of_row_pairs

    rng = np.random.default_rng(5)
    b, k = 50, 3
    counts = rng.integers(k, 10, size=b)
    r = np.repeat(np.arange(b), counts)
    col = np.concatenate([np.sort(rng.choice(200, size=c, replace=False)) for c in counts])
    d2 = rng.integers(0, 4, size=r.size).astype(float)
    for got, ref in zip(_best_of_row_pairs(r, col, d2, b, k), _best_of_pairs(r, col, d2, b, k)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", list(_direct_cases()))
def test_direct_path_for_small_k_matches_brute_force_and_the_blockwise_screen(monkeypatch, case, workers):
    # k <= MIN_PASSES_MAX_K: the direct path's k-th smallest screening value by argmin passes, and the
    # flat re-rank of few pairs per row; the same neighbours and bits as the blockwise screen
    import gelora.estimators.knn as knn

    monkeypatch.setenv("OMP_NUM_THREADS", str(workers))
    X, _ = _direct_cases()[case]
    kth = knn._kth_smallest
    calls = []
    monkeypatch.setattr(knn, "_kth_smallest", lambda g, k: calls.append(k) or kth(g, k))
    for k in (1, 2, knn.MIN_PASSES_MAX_K):
        calls.clear()
        d, i = knn_distances(X, k, backend="numpy")
        assert calls and set(calls) == {k}  # the argmin passes ran
        _assert_as_blockwise_and_brute_force(X, k, d, i)


def test_direct_path_with_argmin_passes_up_to_k_20(monkeypatch):
    # under NumPy < 2 the argmin passes run up to k = 20 (MIN_PASSES_MAX_K): the same neighbours and
    # bits as the blockwise screen, and brute force's, on ties at a large offset with duplicates
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "MIN_PASSES_MAX_K", 20)
    X, _ = _direct_cases()["grid_offset_dups"]
    kth = knn._kth_smallest
    calls = []
    monkeypatch.setattr(knn, "_kth_smallest", lambda g, k: calls.append(k) or kth(g, k))
    d, i = knn_distances(X, 20, backend="numpy")
    assert calls and set(calls) == {20}
    _assert_as_blockwise_and_brute_force(X, 20, d, i)


@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_kth_of_rows_is_the_partition_value_and_leaves_the_block(monkeypatch, k):
    # wide rows (argmin passes) and narrow rows (partition), on a strided view as the first cut takes
    # it; tied values, an inf per row; the k-th value is the partition's and the block is unchanged
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "MIN_PASSES_MAX_K", 20)
    rng = np.random.default_rng(k)
    for width in (knn.MIN_PASSES_MIN_WIDTH - 1, 4 * knn.MIN_PASSES_MIN_WIDTH):
        g = rng.integers(0, 9, size=(30, 2 * width)).astype(np.float32)
        g[np.arange(30), np.arange(30)] = np.inf
        before = g.copy()
        sub = g[:, ::2]
        np.testing.assert_array_equal(knn._kth_of_rows(sub, k), np.partition(sub, k - 1, axis=1)[:, k - 1])
        np.testing.assert_array_equal(g, before)


def test_pilot_bounds_are_the_expression_bit_for_bit():
    from gelora.estimators.knn import _pilot_bounds

    rng = np.random.default_rng(3)
    n, rows = 500, np.array([0, 7, 99, 250, 499])
    zsq, a = rng.uniform(0, 5, size=n), rng.uniform(0, 1, size=n)
    dot = rng.normal(size=(rows.size, n))
    lb_ref = zsq[rows, None] + zsq[None, :] - 2.0 * dot + (a[rows, None] - a[None, :]) ** 2
    lb_ref[np.arange(rows.size), rows] = np.inf
    u_ref = lb_ref + 4.0 * a[rows, None] * a[None, :]
    lb, u = np.empty_like(dot), np.empty_like(dot)
    _pilot_bounds(zsq, a, rows, dot, lb, u)
    np.testing.assert_array_equal(lb, lb_ref)
    np.testing.assert_array_equal(u, u_ref)


@pytest.mark.parametrize("low_rank", [True, False])
def test_pilot_abandons_a_rank_without_changing_the_chosen_screen(monkeypatch, low_rank):
    # counted a few rows at a time, the pilot stops on a rank once its partial count rules it out; the
    # chosen rank (hence coordinates and residuals) is the one of the full counts
    import gelora.estimators.knn as knn

    rng = np.random.default_rng(8)
    X = low_rank_cloud(2500, 64, seed=8) if low_rank else np.tanh(rng.normal(size=(2500, 64)))
    Xc = X - X.mean(axis=0)
    counted = []
    bounds = knn._pilot_bounds
    monkeypatch.setattr(
        knn, "_pilot_bounds", lambda z, a, rows, *r: counted.append(rows.size) or bounds(z, a, rows, *r)
    )
    monkeypatch.setattr(knn, "PILOT_CHUNK", 64)  # the whole group at once: no rank abandoned
    Z0, a0 = knn._screen_basis(Xc, 10)
    full = sum(counted)
    counted.clear()
    monkeypatch.setattr(knn, "PILOT_CHUNK", 4)
    Z1, a1 = knn._screen_basis(Xc, 10)
    np.testing.assert_array_equal(Z1, Z0)
    np.testing.assert_array_equal(a1, a0)
    assert sum(counted) < full  # some rank was abandoned early
    assert (Z0.shape[1] < 64) == low_rank


@pytest.mark.parametrize("symmetric", [False, True])
def test_first_cut_by_argmin_passes_matches_brute_force_on_ties(monkeypatch, symmetric):
    # the first cut's k-th value from a sparse column subset (step >= 4) by argmin passes; exact ties on
    # a grid, exact duplicates, near-duplicates; neighbours and tie order as brute force, bits as the
    # partition's screen
    import gelora.estimators.knn as knn

    monkeypatch.setattr(knn, "SYMMETRIC_MIN_WIDTH", 0 if symmetric else 10**9)
    rng = np.random.default_rng(12)
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 4), -1).reshape(-1, 4)  # 625 points
    X = np.concatenate([np.pad(grid, ((0, 0), (0, 28))) + 3.0, rng.normal(size=(2400, 32))])
    X[700:740] = X[:40]  # exact duplicates
    X[740:760] = X[40:60] + 1e-9  # near-duplicates
    assert knn._subset_step(len(X), 20) >= 4
    monkeypatch.setattr(knn, "MIN_PASSES_MAX_K", 0)
    d_ref, i_ref = knn_distances(X, 20, backend="numpy")
    kth = knn._kth_smallest
    calls = []
    monkeypatch.setattr(knn, "_kth_smallest", lambda g, k: calls.append(g.shape[1]) or kth(g, k))
    monkeypatch.setattr(knn, "MIN_PASSES_MAX_K", 20)
    d, i = knn_distances(X, 20, backend="numpy")
    assert calls and min(calls) >= knn.MIN_PASSES_MIN_WIDTH  # the first cut's passes ran
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)
    d0, i0 = brute_force_chunked(X, 20)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_allclose(d, d0, rtol=1e-12, atol=0)


def test_pack_rows_scatters_each_rows_pairs_in_order():
    from gelora.estimators.knn import _pack_rows

    r = np.array([0, 0, 2, 2, 2, 4])  # rows 1 and 3 without pairs
    vals = np.array([5.0, 1.0, 3.0, 2.0, 9.0, 7.0])
    expected = np.full((5, 3), np.inf)
    expected[0, :2], expected[2], expected[4, 0] = [5.0, 1.0], [3.0, 2.0, 9.0], 7.0
    np.testing.assert_array_equal(_pack_rows(r, vals, 5, np.inf), expected)


def test_no_principal_screen_is_searched_below_the_least_work(monkeypatch):
    # below SEARCH_MIN_WORK the blockwise path takes the plain screen without the pilot; the neighbours
    # and distances are the bits of the searched (principal) screen's
    import gelora.estimators.knn as knn

    X = low_rank_cloud(2100, 64, seed=27)
    n, D = X.shape
    assert n * knn._screen_cost(n, D, D, 5, 5) < knn.SEARCH_MIN_WORK
    ranks = []
    basis = knn._screen_basis
    monkeypatch.setattr(
        knn, "_screen_basis", lambda *a: (lambda out: ranks.append(out[0].shape[1]) or out)(basis(*a))
    )
    d, i = knn_distances(X, 5, backend="numpy")
    assert not ranks  # no search
    monkeypatch.setattr(knn, "SEARCH_MIN_WORK", 0.0)
    d1, i1 = knn_distances(X, 5, backend="numpy")
    assert ranks and ranks[0] < D  # searched: a principal screen
    np.testing.assert_array_equal(i, i1)
    np.testing.assert_array_equal(d, d1)
    d0, i0 = brute_force_chunked(X, 5)
    np.testing.assert_array_equal(i, i0)
