"""One exact k-nearest-neighbour core shared by every intrinsic-dimension estimator.

Backends
--------
``"kdtree"``
    :class:`scipy.spatial.cKDTree` queried with all cores (``workers=-1``); fast for low dimension.
``"numpy"``
    A rigorous float32 *screen* followed by the exact float64 re-rank (:func:`_knn_numpy`). The data are
    centred; when a cost model predicts a gain (:func:`_screen_basis`, n >= 2048, n_features >= 15 and
    enough work to pay for the search, :data:`SEARCH_MIN_WORK`),
    they are described by ``p`` leading principal coordinates ``z`` plus the norm ``a`` of the residual
    off that subspace, which bounds every squared distance between ``|z_i - z_j|^2 + (a_i - a_j)^2`` and
    that plus ``4 a_i a_j``. Row blocks of these lower bounds come from one float32 BLAS product (width
    ``p + 3``); per row, every column within a proven tolerance of the k-th smallest bound is kept (float32
    rounding error bounded a priori, residual slack ``4 a_i max(a)``), the rest are discarded, and
    rows for which the float32 tolerance keeps too many candidates are screened again in float64. On
    data with a decaying spectrum (the benchmark's, hidden states) ``p`` is a few dozen and the screen
    keeps about k candidates per row; otherwise ``p = n_features`` (a plain float32 screen). Row blocks
    run on ``OMP_NUM_THREADS`` (default: the usable cores) threads, each block's product, selection and
    re-rank on one thread with a single-threaded BLAS (the BLAS thread limit is process-wide while it runs;
    the threads are one pool per process, kept between calls). Where the screen keeps many more than k
    candidates per row (full-rank data under a principal screen), the exact re-rank runs in two stages
    (:func:`_rerank_two_stage`), with the same result. From :data:`SHARED_MIN_D` features on, the
    blocks only screen, and the re-rank runs once all blocks are screened (:func:`_rerank_shared`):
    each distinct pair is then computed once even when both of its points kept it (a third of a k-NN
    graph's pairs), with the same result bit for bit. Up to :data:`DIRECT_MAX_N` points (and without
    an explicit ``block_size``) the plain screen runs from one symmetric float32 product of the whole
    Gram matrix instead (:func:`_knn_numpy_direct`: half the multiply-adds, a pair kept by both of its
    points re-ranked once), with the same result bit for bit; up to :data:`DIRECT_BASIS_MAX_N` points
    with at least :data:`DIRECT_BASIS_MIN_FEATURES` features too, unless a principal screen of rank
    <= 64 is predicted cheaper.
``"torch"``
    A reduced-precision screen with a proven error bound (TF32 tensor cores on CUDA by default, fp32 on
    the CPU, bf16 on request: ``precision=``) over the tiles on or above the diagonal of the symmetric
    distance matrix, a per-row certificate that every possible neighbour was kept (float64 screen for
    rows without one), and the exact float64 re-rank (:mod:`gelora.estimators._knn_torch`). With
    ``precision="auto"`` and at most ``_knn_torch.DIRECT64["max_features"]`` (32; 2 on CUDA) features the
    screen is float64 over whole rows instead (the small-dimension rule; same neighbours and distances). The only
    backend for torch tensors or when ``device`` is given.
``"auto"``
    torch when ``X`` is a tensor or ``device`` is set; otherwise kdtree when ``n_features`` is at most
    :data:`KDTREE_MAX_FEATURES`, else numpy (both crossovers measured in ``docs/performance.md``: on the
    2-core CPU the NumPy backend beat torch's CPU path at every size tried).

Exactness
---------
The kdtree backend selects ``k + margin`` candidates per point (``margin = max(4, k // 4)``) by its
float64 tree distances; the numpy and torch backends keep every candidate that could be among the k
nearest given a rigorous bound on their screening error (proofs in :func:`_knn_numpy` and
:mod:`gelora.estimators._knn_torch`), so their neighbour sets are exact even for ties and near-ties. All
backends then recompute the distances of the candidates exactly as ``sqrt(sum((x - y)**2))`` in float64
from the input values and keep the ``k`` smallest, ties broken by the smaller index. Distances are
therefore accurate to float64 rounding even for near-duplicates (where the Gram trick cancels
catastrophically); kdtree returns the same neighbours as numpy unless more than ``margin`` points
tie or are within their rounding error of the k-th distance. Self-matches are excluded by index, never by
zero distance, so duplicate rows show up as zero distances (which the estimators detect).

Metrics
-------
``"euclidean"`` or ``"cosine"``. ``"cosine"`` is the chordal distance between the unit-normalised rows,
``||x/|x| - y/|y|||  = sqrt(2 - 2 cos(x, y))``: it ranks neighbours exactly as the cosine distance
``1 - cos`` does but is a true metric that scales linearly with the angle for close points, so distance
ratios (TwoNN, MLE) keep their meaning. (``1 - cos`` equals half the *square* of it, which would halve every
ratio-based estimate.)
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from gelora.errors import ConfigError, DuplicatePointsError, InvalidInputError
from gelora.estimators._checks import check_choice, check_int, check_points, is_torch_tensor

__all__ = [
    "KDTREE_MAX_FEATURES",
    "KNNData",
    "knn_distances",
    "knn_without_duplicates",
]

#: largest n_features for which backend="auto" uses the KD-tree (measured crossover, docs/performance.md)
KDTREE_MAX_FEATURES = 12

#: default working-memory budget of one distance block (bytes) on CPU
CPU_BLOCK_BYTES = 256 * 2**20

#: screening block of the NumPy backend (bytes of float32 values per buffer): blocks of this size stay
#: mostly in cache during the selection passes (measured ~15 % faster than 128 MiB blocks at n = 16000)
SCREEN_BLOCK_BYTES = 32 * 2**20

#: up to this many points the NumPy backend runs one block with a threaded BLAS product; above it,
#: per-thread blocks with a single-threaded BLAS (on the shared 2-core machine under load, n = 1000,
#: k = 20: 32-39 ms against 46-61 ms at D = 64, 106-119 ms against 156-168 ms at D = 768; on a quiet
#: machine the threaded product had measured faster, 0.034 s against 0.049 s at n = 1000, D = 768)
SMALL_N = 256

#: narrowest screening product (columns) for which :func:`_knn_numpy_symmetric` computes each pair once
#: (``python -m validation.knn_profile --hidden``, n = 16000, 2 cores: MiniLM hidden states, width 392,
#: 1.05 s against 1.48 s; the benchmark's width-24 screen 0.61 s either way, 0.64 against 0.58 s in an
#: earlier run: there the product is cheap and the regrouping is not)
SYMMETRIC_MIN_WIDTH = 64

#: most memory (bytes) the symmetric product may hold in first-cut survivors before regrouping them
#: (about 24 k n step bytes: 60 MB at n = 16000, k = 20; beyond ~1e5 points the blockwise product is used)
SYMMETRIC_MAX_BYTES = 2**30

#: buffer of the exact re-rank on CPU (bytes)
RERANK_BYTES = 16 * 2**20

#: differences per chunk of the pairwise exact re-rank (bytes): small enough to stay in the L2 cache
#: (measured 1.3x faster than 16 MiB chunks at D = 768)
PAIR_RERANK_BYTES = 2 * 2**20

U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of float32
U64 = float(np.finfo(np.float64).eps) / 2  # unit roundoff of float64

#: fewest points for which :func:`_screen_basis` looks for a principal subspace
SCREEN_MIN_N = 2048

#: up to this many points (and without an explicit ``block_size``) the NumPy backend screens with one
#: symmetric float32 product of the whole n x n Gram matrix (:func:`_knn_numpy_direct`; 16 MiB at
#: n = 2047); from :data:`SCREEN_MIN_N` points on, the blockwise screen with its principal basis
DIRECT_MAX_N = SCREEN_MIN_N - 1

#: rows per side of a tile of :func:`_knn_numpy_direct`'s Gram product, at most ``workers + 1`` tiles
#: per side (n = 1000, D = 768, two threads: 3 x 3 tiles 7.9 ms, 2 x 2 tiles 9.1 ms, a single
#: two-threaded BLAS call 7.4 ms on the quiet machine; the tiles keep BLAS on one thread per worker,
#: which degrades less under load)
DIRECT_TILE = 256

#: from this many features on, :func:`_knn_numpy_direct` computes a pair kept by both of its points
#: once (about a third of the pairs; n = 1000, D = 768, two threads: the exact distances 9-11 ms against
#: 15-17 ms); below it, finding the shared pairs costs more than it saves (D = 64: 10.4-11.0 ms against
#: 11.2-12.0 ms for the whole k-NN)
DEDUPE_MIN_D = 128

#: from this many features on, the blockwise path of :func:`_knn_numpy` re-ranks once all blocks are
#: screened, a pair kept by both of its points once (:func:`_rerank_shared`)
SHARED_MIN_D = 128

#: share of a k-NN graph's pairs left when the pairs kept by both points are counted once (measured on
#: the benchmark's data at n = 1000, k = 20: 0.65-0.66); cost model of :func:`_direct_cost` only
DEDUPE_SHARE = 0.65

#: from :data:`SCREEN_MIN_N` up to this many points, with at least :data:`DIRECT_BASIS_MIN_FEATURES`
#: features and no explicit ``block_size``, :func:`_knn_numpy` runs the direct path unless a principal
#: screen of rank <= 64 is predicted to cost less (:func:`_screen_basis` with ``plain_cost``): at
#: n = 4000, D = 768 the direct path took 0.24 s on the full-rank tanh data against 0.41-0.45 s for the
#: blockwise path with its rank-125 screen, while rank30 keeps its rank-21 screen (0.18-0.23 s against
#: 0.26 s direct); the n x n float32 Gram matrix holds 64 MiB at 4096 points
DIRECT_BASIS_MAX_N = 4096

#: fewest features for the direct path above :data:`DIRECT_MAX_N` points: at D = 64 and n = 4000 the
#: blockwise path was faster on both benchmark data sets (0.084-0.099 s against 0.094-0.111 s)
DIRECT_BASIS_MIN_FEATURES = 256

#: candidate ranks of the screening basis tried by :func:`_screen_basis` (besides the full dimension):
#: ``p + 3`` is a multiple of 8, so the screening product's width needs no zero padding (at n = 16000,
#: D = 768 the benchmark's data keep 20.2 candidates per row at p = 21, 20.0 at p = 29 and 32)
SCREEN_RANKS = (5, 13, 21, 29, 45, 61, 125, 253)

#: re-rank cost of one candidate coordinate in units of one float32 BLAS multiply-add (cost model of
#: :func:`_screen_basis`; measured order of magnitude on the development machine, affects speed only:
#: n = 1000, D = 768, one thread, 20 candidates per row: re-rank 40 ms, the whole float32 product 25 ms)
RERANK_COST = 80.0

#: cost of one principal coordinate per row and input feature, same unit: the float64 coordinates and
#: residuals (two float64 products, each about twice a float32 one); affects speed only
BASIS_COST = 4.0

#: the re-rank runs in two stages (:func:`_rerank_two_stage`) when the screen kept more than this many
#: candidates per row and neighbour (k): full-rank data under a principal screen keep 30-36 per row for
#: k = 20 (n = 16000, D = 768), of which the second stage re-ranks about 5
TWO_STAGE_MIN_RATIO = 1.25

#: rows whose float32 screen keeps more candidates than ``max(SCREEN_CAP, 4 k)`` are screened again in
#: float64 (the float32 bound is loose when the norms dwarf the neighbour distances)
SCREEN_CAP = 256

#: fewest pairs every row must keep for :func:`_rerank_rows` to gather them row by row (below it, one
#: flat gather of all pairs: n = 1000, D = 64, about 2 pairs per row, 0.25 ms against 0.43 ms)
ROWS_RERANK_MIN = 8

#: up to this k, the plain screen of :func:`_knn_numpy_direct` finds each row's k-th smallest value by
#: k - 1 argmin passes (:func:`_kth_smallest`) instead of a column subset or a partition. A 500 x 1000
#: float32 block (tanh data, D = 64, one thread), whole screen: NumPy 2.4 k = 2 0.59 ms against 1.59 ms
#: (subset), k = 8 1.29 against 1.78 ms (partition), but k = 20 2.45 against 1.91 ms; NumPy 1.26 (whose
#: partition is not vectorised) k = 2 0.56 against 1.92 ms, k = 8 1.25 against 6.49 ms, k = 20 2.56
#: against 6.05 ms (so up to k = 20 there)
MIN_PASSES_MAX_K = 8 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 20

#: fewest entries per row for which :func:`_kth_of_rows` uses the argmin passes (NumPy 1.26, k = 20, one
#: thread: 1000 x 1000 float32 3.4 ms against 11.2 ms for the partition, 64 x 4000 float64 1.2 against
#: 2.6 ms, but 1000 x 100 float64 1.5 against 1.4 ms)
MIN_PASSES_MIN_WIDTH = 256

#: least work of the plain screen (n times its :func:`_screen_cost`, in that unit) for which the blockwise
#: path (outside the direct path's range) looks for a principal screen at all: below it the search (the
#: directions, the pilot) costs more wall time than a principal screen saves. Two threads, inline, min of
#: 6 alternating calls each, plain / with the search: the benchmark's rank30 (rank-21 screen chosen) at
#: D = 64, k = 20: 0.82 (n = 2048), 0.88 (4000), 1.09 (8000, 3.0e9 units); at D = 128: 0.91, 1.02, 1.14;
#: k = 2, D = 64, n = 8000 (2.2e9): 0.87; tanh (plain screen chosen) 0.79-0.86 at D = 64, k = 20
SEARCH_MIN_WORK = 2.5e9

#: pilot rows of :func:`_screen_basis_1` counted at a time: a rank whose partial count already rules
#: it out is abandoned (the benchmark's n = 4000, D = 64 data: ranks 5 and 13 keep 110-2800 candidates
#: per row, where fewer than about 30 would pay)
PILOT_CHUNK = 8

METRICS = ("euclidean", "cosine")
BACKENDS = ("auto", "kdtree", "numpy", "torch")


def _margin(k: int) -> int:
    """Extra candidates selected by the approximate (Gram) distances before the exact re-rank."""
    return max(4, k // 4)


def _normalise_rows_np(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms == 0):
        raise InvalidInputError(
            f"metric='cosine' is undefined for zero vectors; X has {int((norms == 0).sum())} all-zero rows"
        )
    return X / norms[:, None]


def _sort_candidates(d2: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k smallest of each row of (d2, cand) ordered by (distance, index)."""
    order = np.lexsort((cand, d2), axis=-1)[:, :k]
    return np.take_along_axis(d2, order, axis=1), np.take_along_axis(cand, order, axis=1)


def _best_of_pairs(
    r: np.ndarray, col: np.ndarray, d2: np.ndarray, b: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best pairs of each of b rows by (distance, index), from flat pairs (row ``r``, column ``col``,
    squared distance ``d2``; ``r`` sorted, every row at least k times): (b, k) distances and indices."""
    return _sort_candidates(
        _pack_rows(r, d2, b, np.inf), _pack_rows(r, col.astype(np.int64), b, np.iinfo(np.int64).max), k
    )


def _best_of_row_pairs(
    r: np.ndarray, col: np.ndarray, d2: np.ndarray, b: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_best_of_pairs` (the same result) for pairs whose columns ascend within each row.

    The pairs are packed into (b, max count) rows once and sorted by distance with a stable sort, which
    keeps the smaller index first among equal distances (1000 rows of about k = 2 pairs: 0.16 ms against
    0.33 ms for the lexsort of :func:`_best_of_pairs`).
    """
    counts = np.bincount(r, minlength=b)
    m = max(1, int(counts.max()))
    at = r * m + (np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts))
    flat_vals = np.full(b * m, np.inf)
    flat_vals[at] = d2
    flat_cand = np.full(b * m, np.iinfo(np.int64).max, dtype=np.int64)
    flat_cand[at] = col
    vals, cand = flat_vals.reshape(b, m), flat_cand.reshape(b, m)
    order = np.argsort(vals, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cand, order, axis=1)


def _exact_rerank_np(
    X: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 squared distances between X[rows] and X[cand] by differences; keep k best.

    ``cand`` (b, c) holds candidate row indices per row. Works in chunks through one reused buffer of at
    most ``budget`` bytes (fresh large temporaries cost more in page faults than the arithmetic).
    """
    return _sort_candidates(_exact_d2_rows(X, rows, cand, budget), cand, k)


def _knn_kdtree(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    n = X.shape[0]
    c = min(n - 1, k + _margin(k))
    tree = cKDTree(X)
    # query c + 1 to leave room for the point itself, then drop it by index
    _, nb = tree.query(X, k=c + 1, workers=-1)
    nb = np.asarray(nb, dtype=np.int64).reshape(n, c + 1)
    rows = np.arange(n)
    is_self = nb == rows[:, None]
    # rows where self was not returned (more than c + 1 exact duplicates): drop the last column instead
    keep = ~is_self
    no_self = ~is_self.any(axis=1)
    keep[no_self, -1] = False
    cand = nb[keep].reshape(n, c)
    return _exact_rerank_np(X, rows, cand, k, RERANK_BYTES)


def _gamma(m: int, u: float) -> float:
    """Higham's ``gamma_m = m u / (1 - m u)``: relative error bound of an m-term dot product."""
    return m * u / (1.0 - m * u)


def _screen_basis(
    Xc: np.ndarray, k: int, sq: np.ndarray | None = None, plain_cost: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Screening coordinates of centred points: leading principal coordinates and residual norms.

    Parameters
    ----------
    Xc : numpy.ndarray of float64, shape (n, D)
        Centred points.
    k : int
        Neighbours per point.
    sq : numpy.ndarray of float64, shape (n,), optional
        ``|Xc_i|^2`` when the caller has it.
    plain_cost : float, optional
        Cost (same unit as :func:`_screen_cost`) of the plain screen when the caller can run the
        direct path (:func:`_knn_numpy_direct`) instead of the blockwise one; then only the ranks up to
        64 are tried against it (a principal screen that needs more is not worth its pilot there).

    Returns
    -------
    Z : numpy.ndarray of float64, shape (n, p)
        Coordinates ``Xc V`` in p leading principal directions (orthonormal columns ``V``, ``p <= D``).
    a : numpy.ndarray of float64, shape (n,)
        Norms of the residuals ``Xc - Z V^T``.

    Notes
    -----
    For all i, j: ``|z_i - z_j|^2 + (a_i - a_j)^2 <= |x_i - x_j|^2 <= |z_i - z_j|^2 + (a_i + a_j)^2``
    (Pythagoras and the triangle inequality on the residuals), which is all the screen in
    :func:`_knn_numpy` relies on; ``Z = Xc``, ``a = 0`` (``p = D``) is the plain screen. The rank only
    changes the speed, never the result: it minimises the cost model of :func:`_screen_cost` (the
    screening product, halved where the symmetric product applies, the principal basis and
    ``RERANK_COST * D`` per expected candidate of the exact re-rank), the candidate count being
    estimated on 64 evenly spaced pilot rows against all points (with the screen's cut but without its
    rounding tolerance). On data of full linear rank (the benchmark's ``tanh`` data at n = 4000) the
    basis costs more than the narrower product saves, and the plain screen ``p = D`` is kept.
    """
    n, D = Xc.shape
    ranks = [p for p in SCREEN_RANKS if 3 * p <= D]
    if not ranks or n < SCREEN_MIN_N:
        return Xc, np.zeros(n)
    if sq is None:
        sq = np.einsum("ij,ij->i", Xc, Xc)
    # one BLAS thread, the large products split over the block threads: threaded BLAS calls measured
    # about 2x slower in wall time on the shared 2-core machine (tanh data, n = 4000, D = 768: 0.64 s
    # against 0.34 s for this function)
    workers = _n_workers()
    with _block_threads(workers) as pool:
        return _screen_basis_1(Xc, k, sq, ranks, pool, workers, plain_cost)


def _rows_matmul(A: np.ndarray, B: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> np.ndarray:
    """``A @ B`` with the rows of A split over the threads of ``pool`` (BLAS itself on one thread)."""
    out = np.empty((A.shape[0], B.shape[1]), dtype=np.result_type(A, B))
    cuts = np.linspace(0, A.shape[0], workers + 1).astype(int)

    def part(c0: int, c1: int) -> None:
        np.matmul(A[c0:c1], B, out=out[c0:c1])

    for job in [pool.submit(part, c0, c1) for c0, c1 in zip(cuts[:-1], cuts[1:]) if c1 > c0]:
        job.result()
    return out


def _screen_basis_1(
    Xc: np.ndarray,
    k: int,
    sq: np.ndarray,
    ranks: list[int],
    pool: ThreadPoolExecutor,
    workers: int,
    plain_cost: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The body of :func:`_screen_basis` (BLAS limited to one thread, large products on ``pool``)."""
    n, D = Xc.shape
    # directions for the ranks up to ~64 first; again (for the ranks the cost model can still reach)
    # only if the pilot gets that far
    V = _principal_directions(Xc, max(p for p in ranks if p <= max(ranks[0], 64)), pool, workers)
    pilot = np.unique(np.linspace(0, n - 1, 64).astype(np.int64))
    # the pilot rows in one contiguous group per thread (each row's bounds, cut and count are its own)
    cuts = np.linspace(0, pilot.size, workers + 1).astype(int)
    groups = [(int(g0), int(g1)) for g0, g1 in zip(cuts[:-1], cuts[1:]) if g1 > g0]
    best_p, best_cost = D, _screen_cost(n, D, D, k, k)
    if plain_cost is not None:
        best_cost = plain_cost
        ranks = [p for p in ranks if p <= 64]
    coords = np.empty((n, 0))  # Xc V[:, :q], computed a few ranks at a time (each product reads all of Xc)
    zsq = np.zeros(n)  # |z|^2 so far
    dot = np.zeros((pilot.size, n))  # z_pilot . z so far
    done = 0

    # scratch of each group, reused for every rank (fresh arrays of this size cost page faults)
    scratch = {
        g0: (np.empty((PILOT_CHUNK, n)), np.empty((PILOT_CHUNK, n)), np.empty((PILOT_CHUNK, n), bool))
        for g0, _ in groups
    }

    def pilot_count(g0: int, g1: int, Zb: np.ndarray, a: np.ndarray, found: list[int], lost: Any) -> None:
        """Pilot rows g0..g1: add this rank's terms to their products, then count their candidates.

        The counts go to ``found``, :data:`PILOT_CHUNK` rows at a time, and stop once ``lost(sum of
        found)`` says the rank can no longer be chosen (every count is >= 0, so a partial sum is a
        lower bound of the total).
        """
        rows = pilot[g0:g1]
        dot[g0:g1] += Zb[rows] @ Zb.T
        for c0 in range(g0, g1, PILOT_CHUNK):
            if lost(sum(found)):
                return
            c1 = min(g1, c0 + PILOT_CHUNK)
            lb, u, mask = (buf[: c1 - c0] for buf in scratch[g0])
            _pilot_bounds(zsq, a, pilot[c0:c1], dot[c0:c1], lb, u)
            found.append(int(np.count_nonzero(np.less_equal(lb, _kth_of_rows(u, k)[:, None], out=mask))))

    for p in ranks:
        if _screen_cost(n, D, p, k, k) >= best_cost:
            break  # even a perfect screen (k candidates per row) would cost more than the best so far
        if p > V.shape[1]:
            # new directions, up to the largest rank a perfect screen could still pay for; the
            # coordinates so far are recomputed in the new basis (below, in the same pass as this rank's)
            reach = max(q for q in ranks if q >= p and _screen_cost(n, D, q, k, k) < best_cost)
            V = _principal_directions(Xc, reach, pool, workers)
            coords, zsq, done = np.empty((n, 0)), np.zeros(n), 0
            dot[:] = 0.0
        if p > coords.shape[1]:
            # a few ranks per pass over Xc while they are cheap; beyond ~64 only what this rank needs
            ahead = 2 * p + 3 if p <= 64 else p
            upto = max(q for q in ranks if q <= ahead and q <= V.shape[1])
            more = _rows_matmul(Xc, np.ascontiguousarray(V[:, coords.shape[1] : upto]), pool, workers)
            coords = np.concatenate([coords, more], axis=1)
        Zb = np.ascontiguousarray(coords[:, done:p])
        zsq += np.einsum("ij,ij->i", Zb, Zb)
        done = p
        a = np.sqrt(np.maximum(sq - zsq, 0.0))
        found: list[int] = []

        def lost(total: int, p: int = p, best_cost: float = best_cost) -> bool:
            """Whether a partial count ``total`` already rules rank p out (the decision of the full count)."""
            count = total / pilot.size
            return _screen_cost(n, D, p, k, count) >= best_cost and (p < 60 or count > n / 4)

        for job in [pool.submit(pilot_count, g0, g1, Zb, a, found, lost) for g0, g1 in groups]:
            job.result()
        count = sum(found) / pilot.size
        cost = _screen_cost(n, D, p, k, count)
        if cost < best_cost:
            best_p, best_cost = p, cost
        if p >= 60 and count > n / 4:
            break  # hopeless (near-isotropic spectrum): stop spending on the pilot
    if best_p == D:
        return Xc, np.zeros(n)
    Vp = V[:, :best_p]
    Z = np.ascontiguousarray(coords[:, :best_p])
    a = np.empty(n)
    VpT = np.ascontiguousarray(Vp.T)

    def residuals(s: int) -> None:  # explicit residuals (no cancellation), in cache-sized chunks
        resid = Xc[s : s + 1024] - Z[s : s + 1024] @ VpT
        a[s : s + 1024] = np.sqrt(np.einsum("ij,ij->i", resid, resid))

    list(pool.map(residuals, range(0, n, 1024)))
    return Z, a


def _screen_cost(n: int, D: int, p: int, k: int, count: float) -> float:
    """Cost model of :func:`_screen_basis` per row, in float32 multiply-adds (affects speed only).

    The screening product (``n (p + 3)``, halved when the symmetric product of :func:`_knn_numpy` can
    apply), for ``p < D`` the float64 coordinates and residuals (``BASIS_COST * D * p``) and the
    principal directions from at most 2048 rows (three products of width ``p + 16``, shared by the n
    rows), and ``RERANK_COST * D`` per candidate kept (at least k).
    """
    product = n * (p + 3.0)
    if (
        p + 3 >= SYMMETRIC_MIN_WIDTH
        and n > SMALL_N
        and 24 * n * k * _subset_step(n, k) <= SYMMETRIC_MAX_BYTES
    ):
        product /= 2
    basis = 0.0 if p >= D else BASIS_COST * D * p + 3.0 * min(n, 2048) * D * (p + 16) / n
    return product + basis + RERANK_COST * D * max(count, k)


def _direct_cost(n: int, D: int, k: int) -> float:
    """Cost per row of :func:`_knn_numpy_direct` in the unit of :func:`_screen_cost` (speed only).

    Its symmetric product (``n D / 2``) and ``RERANK_COST * D`` per exact distance, of which about
    k per row, times :data:`DEDUPE_SHARE` where shared pairs are computed once.
    """
    share = DEDUPE_SHARE if D >= DEDUPE_MIN_D else 1.0
    return n * D / 2.0 + RERANK_COST * D * k * share


def _principal_directions(
    Xc: np.ndarray, p: int, pool: ThreadPoolExecutor | None = None, workers: int = 1
) -> np.ndarray:
    """Approximate leading principal directions, shape (D, p), orthonormal to float64 precision.

    Randomised range finder with one power iteration on an evenly spaced subset of at most 2048 rows
    (float32 products, seeded sketch), a float64 QR, then the small eigenproblem in that range to order
    the directions by variance. Only the orthonormality matters for exactness; the quality of the
    directions only changes the speed of the screen. With ``pool``, the float32 products are split by
    rows over its ``workers`` threads.
    """
    n, D = Xc.shape
    sub = Xc[:: -(-n // 2048)]
    top = float(np.abs(sub).max())
    if top > 0 and not 2.0**-20 <= top <= 2.0**20:
        # an exact power-of-two rescaling (the directions do not change): the float32 products below
        # overflow from entries of about 1e19 on and underflow below about 1e-19
        sub = sub * 2.0 ** (-math.frexp(top)[1])
    sub = sub.astype(np.float32)
    ell = min(D, p + 16)
    sketch = np.random.default_rng(0).standard_normal((D, ell)).astype(np.float32)

    def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:  # the rows of A over the threads, if any
        return A @ B if pool is None or workers == 1 else _rows_matmul(A, B, pool, workers)

    Y = matmul(sub.T, matmul(sub, sketch)).astype(np.float64)
    # the small factorisations on one thread: threaded LAPACK on these sizes measured 3-7x slower on the
    # shared 2-core machine (QR of 768 x 269: 46 ms against 15 ms; eigh of 269 x 269: 65 ms against 7 ms)
    with _one_blas_thread():
        Q, _ = np.linalg.qr(Y)
    B = matmul(sub, Q.astype(np.float32)).astype(np.float64)
    with _one_blas_thread():
        _, U = np.linalg.eigh(B.T @ B)
    return (Q @ U[:, ::-1])[:, :p]


def _gram_factors(Z: np.ndarray, a: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Left/right factors with ``left_i . right_j = |z_i - z_j|^2 + (a_i - a_j)^2`` (one GEMM).

    Rows ``[z, a, s, 1]`` and ``[-2 z, -2 a, 1, s]`` with ``s = |z|^2 + a^2``, zero-padded to a multiple
    of 8 columns (which BLAS kernels prefer; zero terms add no rounding error).
    """
    n, p = Z.shape
    s = np.einsum("ij,ij->i", Z, Z) + a * a
    width = -(-(p + 3) // 8) * 8
    left = np.empty((n, width), dtype=dtype)
    right = np.empty((n, width), dtype=dtype)
    left[:, :p] = Z
    # written in place: a float64 temporary of -2 Z cost 4 ms of 4.3 at n = 1000, D = 768 (inline
    # timing; same values: -2 z is exact in float64 and rounded once to dtype either way)
    np.multiply(Z, -2.0, out=right[:, :p], casting="same_kind")
    left[:, p], left[:, p + 1], left[:, p + 2] = a, s, 1.0
    right[:, p], right[:, p + 1], right[:, p + 2] = -2.0 * a, 1.0, s
    left[:, p + 3 :] = 0.0
    right[:, p + 3 :] = 0.0
    return left, right


def _screen_slack(Z: np.ndarray, a: np.ndarray, u: float, n_features: int) -> np.ndarray:
    """Per-row tolerance of the screen, shape (n,): see :func:`_knn_numpy` (Exactness) for the proof.

    ``4 E_i`` with ``E_i = (gamma_{p+5}(u) + gamma_{16 (D+8)}(u64)) (|x_i| + max|x|)^2``.
    ``gamma_{p+5}(u)`` bounds the product in precision ``u`` (p + 3 terms, each factor rounded once to
    that precision); the float64 term covers, with a wide margin, the rounding of the basis, of the
    projected coordinates and residuals, and of the exact re-rank itself (each ``O(D u64)``).
    """
    return _slack_from_norms(np.sqrt(np.einsum("ij,ij->i", Z, Z) + a * a), u, Z.shape[1], n_features)


def _slack_from_norms(norms: np.ndarray, u: float, p: int, n_features: int) -> np.ndarray:
    """:func:`_screen_slack` from the norms ``sqrt(|z|^2 + a^2)`` (shape (n,)) and the screen's width p."""
    rel = _gamma(p + 5, u) + _gamma(16 * (n_features + 8), U64)
    return 4.0 * rel * (norms + norms.max()) ** 2


def _pack_rows(r: np.ndarray, vals: np.ndarray, b: int, fill: Any) -> np.ndarray:
    """Scatter the flat per-row values (``r`` sorted) into a (b, max count) array padded with ``fill``."""
    counts = np.bincount(r, minlength=b)
    m = max(1, int(counts.max()))
    # one flat scatter: pair p of row i goes to i m + (p - first pair of row i) (the 2-D scatter
    # ``out[r, pos]`` took 1.3 ms against 0.5 ms for 1000 rows of about 95 pairs, NumPy 1.26)
    at = np.arange(r.size) + np.repeat(np.arange(b) * m - (np.cumsum(counts) - counts), counts)
    out = np.full(b * m, fill, dtype=vals.dtype)
    out[at] = vals
    return out.reshape(b, m)


def _subset_step(n: int, k: int) -> int:
    """Stride of the evenly spaced column subset from which :func:`_screen_block` takes its first cut.

    The subset's partition costs ~m and the survivors ~k n / m per row: ``m ~ 3 sqrt(k n)`` (at least
    ``4 (k + 1)``) balances them.
    """
    m = min(n, max(4 * (k + 1), int(3 * (k * n) ** 0.5)))
    return 1 if m >= n else n // m


def _screen_block(
    g: np.ndarray,
    k: int,
    slack: np.ndarray,
    a_rows: np.ndarray | None,
    a_cols: np.ndarray | None,
    tau: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (row, column) of a screened block: ``g_ij <= T_i + slack_i`` (proof in :func:`_knn_numpy`).

    ``g`` (b, n) holds the screening lower bounds with the self entries set to ``inf``; ``a_rows`` (b,)
    and ``a_cols`` (n,) the residual norms (None when all zero), so that ``u = g + 4 a_i a_j`` bounds
    the distances from above. ``T_i`` is the k-th smallest computed upper bound over any column set:
    first ``tau`` (b,), over the evenly strided subset of :func:`_subset_step` (computed here from ``g``
    unless given), which one comparison pass turns into a small superset of survivors (about ``k n / m``
    per row), then over the survivors, which gives the final cut. Returns flat ``r`` (sorted), ``col``
    and their screening values ``g_ij`` (float64).
    """
    b, n = g.shape
    if tau is None:
        # every step-th column: a strided view is copied twice as fast as a fancy-indexed subset
        step = _subset_step(n, k)
        sub = g[:, ::step]
        if a_rows is not None and a_cols is not None:
            sub = sub + 4.0 * a_rows[:, None] * a_cols[None, ::step]
        tau = _kth_of_rows(sub, k)
    thr_g = _round_up(tau + slack, g.dtype)
    # 1-D nonzero of the flattened mask: about 10x faster than the 2-D np.nonzero
    flat = np.flatnonzero(g <= thr_g[:, None])
    r, col = np.divmod(flat, n)
    return _final_cut(r, col, g.ravel()[flat].astype(np.float64), b, k, slack, a_rows, a_cols)


def _screen_full(g: np.ndarray, k: int, slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (row, column) of a plain screen (no residuals) with ``g_ij <= T_i + slack_i``.

    ``g`` (b, n) holds screening values with the self entries set to ``inf``; ``T_i`` is the k-th
    smallest of the whole row (the final threshold of :func:`_screen_block`, which gets there through a
    column subset; here a partition of the full row, or up to :data:`MIN_PASSES_MAX_K` argmin passes,
    is cheaper). Returns flat ``r`` (sorted) and ``col`` (ascending within each row).
    """
    if k <= MIN_PASSES_MAX_K:
        tau = _kth_smallest(g, k).astype(np.float64)
    else:
        tau = np.partition(g, k - 1, axis=1)[:, k - 1].astype(np.float64)
    flat = np.flatnonzero(g <= _round_up(tau + slack, g.dtype)[:, None])
    return np.divmod(flat, g.shape[1])


def _kth_smallest(g: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest value of each row of ``g`` (b, n), ties counted, by ``k - 1`` argmin passes.

    Each pass sets the row's smallest entry to ``inf``; ``g`` is restored before returning. The same
    values as ``np.partition(g, k - 1, axis=1)[:, k - 1]`` at a fraction of its cost for small k
    (see :data:`MIN_PASSES_MAX_K`).
    """
    rows = np.arange(g.shape[0])
    taken = []
    for _ in range(k - 1):
        a = g.argmin(axis=1)
        taken.append((a, g[rows, a]))
        g[rows, a] = np.inf
    kth = g.min(axis=1)
    for a, v in reversed(taken):  # reversed: an entry taken twice (a row of infs) gets its first value
        g[rows, a] = v
    return kth


def _kth_of_rows(g: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest value of each row of ``g`` (b, m), ties counted (``g`` is left unchanged).

    By :func:`_kth_smallest`'s argmin passes where ``k <= MIN_PASSES_MAX_K`` and the rows have at least
    :data:`MIN_PASSES_MIN_WIDTH` entries, else by a partition: the same values either way.
    """
    if k <= MIN_PASSES_MAX_K and g.shape[1] >= MIN_PASSES_MIN_WIDTH:
        return _kth_smallest(g, k)
    return np.partition(g, k - 1, axis=1)[:, k - 1]


def _pilot_bounds(
    zsq: np.ndarray, a: np.ndarray, rows: np.ndarray, dot: np.ndarray, lb: np.ndarray, u: np.ndarray
) -> None:
    """Lower and upper screening bounds of the pilot rows of :func:`_screen_basis_1` against all points.

    ``zsq`` (n,) holds ``|z|^2``, ``a`` (n,) the residual norms, ``rows`` (r,) the pilot rows and ``dot``
    (r, n) their products ``z_i . z_j``. Writes ``lb = |z_i|^2 + |z_j|^2 - 2 z_i.z_j + (a_i - a_j)^2``
    (self entries ``inf``) and ``u = lb + 4 a_i a_j`` into the given (r, n) float64 arrays, in place in
    the order of ``zsq_i + zsq_j - 2.0 * dot + (a_i - a_j) ** 2`` (the same bits as that expression;
    its fresh temporaries cost more in page faults than the arithmetic: 3.4 ms against 0.9 ms for
    64 x 4000).
    """
    np.add(zsq[rows, None], zsq[None, :], out=lb)
    np.multiply(dot, 2.0, out=u)
    lb -= u
    np.subtract(a[rows, None], a[None, :], out=u)
    u *= u
    lb += u
    lb[np.arange(rows.size), rows] = np.inf
    np.multiply((4.0 * a[rows])[:, None], a[None, :], out=u)
    u += lb


def _round_up(thr: np.ndarray, dtype: Any) -> np.ndarray:
    """``thr`` (float64) in ``dtype``, rounded up, never down (a cut must not lose a candidate)."""
    out = thr.astype(dtype)
    return np.where(out < thr, np.nextafter(out, np.inf), out)


def _final_cut(
    r: np.ndarray,
    col: np.ndarray,
    v: np.ndarray,
    b: int,
    k: int,
    slack: np.ndarray,
    a_rows: np.ndarray | None,
    a_cols: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second cut of :func:`_screen_block` over a superset of each row's candidates.

    ``r`` (sorted, rows 0..b-1 of the block), ``col`` and ``v`` (float64 screening values) list the
    survivors of the first cut; ``T_i`` is now the k-th smallest upper bound ``v + 4 a_i a_j`` over them,
    and the pairs with ``v <= T_i + slack_i`` are returned (rows, columns, values).
    """
    u = v if a_rows is None or a_cols is None else v + 4.0 * a_rows[r] * a_cols[col]
    t = np.partition(_pack_rows(r, u, b, np.inf), k - 1, axis=1)[:, k - 1]
    # indices, not a mask: three boolean selections took 1.9 ms against 0.5 ms (1000 rows, ~95 pairs each)
    keep = np.flatnonzero(v <= (t + slack)[r])
    return r[keep], col[keep], v[keep]


def _rerank_pairs(
    X: np.ndarray, s: int, r: np.ndarray, col: np.ndarray, b: int, k: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 squared distances of the pairs (s + r, col) by differences; the k best per row.

    Works through chunks of at most ``budget`` bytes of differences. Returns (b, k) squared distances
    and indices, ordered by (distance, index).
    """
    D = X.shape[1]
    d2 = np.empty(r.size, dtype=np.float64)
    chunk = max(1, budget // (8 * D))
    for c0 in range(0, r.size, chunk):
        c1 = min(r.size, c0 + chunk)
        diff = X[col[c0:c1]]
        diff -= X[s + r[c0:c1]]
        d2[c0:c1] = np.einsum("ij,ij->i", diff, diff)
    return _best_of_pairs(r, col, d2, b, k)


def _rerank_rows(
    X: np.ndarray, s: int, r: np.ndarray, col: np.ndarray, b: int, k: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rerank_pairs` (same bits) with one gather per pair for most pairs (direct path).

    ``r`` is sorted and ``col`` ascends within each row. Where every row keeps at least
    :data:`ROWS_RERANK_MIN` pairs, the first ``c = min(count)`` pairs of every row go through
    :func:`_exact_d2_rows` (the row's point subtracted by broadcasting, no second gather), the others
    (a few per row after a tight screen) through :func:`_exact_d2`; both give the same bits for a pair.
    Works through chunks of at most ``budget`` bytes of differences. Returns (b, k) squared distances
    and indices, ordered by (distance, index).
    """
    counts = np.bincount(r, minlength=b)
    c = int(counts.min())
    if c < ROWS_RERANK_MIN:
        d2 = _exact_d2_buffered(X, s + r, col, budget)
    else:
        starts = np.cumsum(counts) - counts
        head = (starts[:, None] + np.arange(c)).ravel()
        d2 = np.empty(r.size, dtype=np.float64)
        d2[head] = _exact_d2_rows(X, np.arange(s, s + b), col[head].reshape(b, c), budget).ravel()
        if r.size > head.size:
            tail = np.ones(r.size, dtype=bool)
            tail[head] = False
            d2[tail] = _exact_d2_buffered(X, s + r[tail], col[tail], budget)
    return _best_of_row_pairs(r, col, d2, b, k)


def _exact_d2_rows(X: np.ndarray, rows: np.ndarray, cand: np.ndarray, budget: int) -> np.ndarray:
    """``sum((X[cand[i]] - X[rows[i]])**2)`` in float64, shape (b, c), by differences.

    One gather per pair (the row's own point is broadcast), in chunks of at most ``budget`` bytes of
    differences through one reused buffer; the same arithmetic per pair, hence the same bits, as
    :func:`_exact_d2` (the einsum reduces each pair's contiguous row of differences in the same order).
    """
    b, c = cand.shape
    D = X.shape[1]
    chunk = max(1, min(b, budget // max(1, 8 * c * D)))
    buf = np.empty((chunk, c, D), dtype=np.float64)
    d2 = np.empty((b, c), dtype=np.float64)
    for s in range(0, b, chunk):
        e = min(b, s + chunk)
        diff = buf[: e - s]
        np.take(X, cand[s:e], axis=0, out=diff, mode="clip")  # "clip": no buffering of ``out``
        diff -= X[rows[s:e], None, :]
        np.einsum("ijk,ijk->ij", diff, diff, out=d2[s:e])
    return d2


def _exact_d2(X: np.ndarray, rows: np.ndarray, col: np.ndarray, budget: int) -> np.ndarray:
    """Flat ``sum((X[col] - X[rows])**2)`` in float64, in chunks of at most ``budget`` bytes (the same
    arithmetic, hence the same bits, as :func:`_rerank_pairs`)."""
    D = X.shape[1]
    d2 = np.empty(rows.size, dtype=np.float64)
    chunk = max(1, budget // (8 * D))
    for c0 in range(0, rows.size, chunk):
        c1 = min(rows.size, c0 + chunk)
        diff = X[col[c0:c1]]
        diff -= X[rows[c0:c1]]
        d2[c0:c1] = np.einsum("ij,ij->i", diff, diff)
    return d2


def _exact_d2_buffered(X: np.ndarray, rows: np.ndarray, col: np.ndarray, budget: int) -> np.ndarray:
    """:func:`_exact_d2` (same bits) through two reused gather buffers (direct path)."""
    D = X.shape[1]
    d2 = np.empty(rows.size, dtype=np.float64)
    chunk = max(1, min(rows.size, budget // (16 * D)))
    buf = np.empty((2, chunk, D), dtype=np.float64)  # reused: fresh chunks cost page faults
    for c0 in range(0, rows.size, chunk):
        c1 = min(rows.size, c0 + chunk)
        diff, other = buf[0, : c1 - c0], buf[1, : c1 - c0]
        np.take(X, col[c0:c1], axis=0, out=diff, mode="clip")
        np.take(X, rows[c0:c1], axis=0, out=other, mode="clip")
        diff -= other
        np.einsum("ij,ij->i", diff, diff, out=d2[c0:c1])
    return d2


def _rerank_two_stage(
    X: np.ndarray,
    s: int,
    r: np.ndarray,
    col: np.ndarray,
    v: np.ndarray,
    slack: np.ndarray,
    b: int,
    k: int,
    budget: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rerank_pairs` computing fewer exact distances when the screen kept many candidates.

    ``v`` are the screening values ``g_ij`` of the pairs and ``slack`` (b,) the rows' tolerances
    ``4 E_i`` (:func:`_knn_numpy`). First the exact distances of each row's k candidates of smallest
    ``g``; their largest, ``T'_i``, bounds the k-th smallest exact distance of the row from above. Every
    one of the row's k nearest j then has ``g_ij <= e_ij + 2 E_i <= T'_i + 2 E_i`` (the bounds of
    :func:`_knn_numpy`), so only the remaining candidates with ``g_ij <= T'_i + slack_i`` are re-ranked
    too. The result is that of :func:`_rerank_pairs` on all the pairs, bit for bit (same values of the
    pairs computed, same ordering); it is used where the screen leaves more than
    ``TWO_STAGE_MIN_RATIO * k`` candidates per row. The columns ``col`` ascend within each row (``r``
    sorted): with few candidates per row every pair goes through :func:`_rerank_rows` (the same bits).
    """
    sel = _first_stage(r, v, b, k)
    if sel is None:
        return _rerank_rows(X, s, r, col, b, k, budget)
    d2 = np.empty(r.size, dtype=np.float64)
    d2[sel] = _exact_d2(X, s + r[sel], col[sel], budget)
    rest = _second_stage(sel, d2[sel], r, v, slack, b, k)
    d2[rest] = _exact_d2(X, s + r[rest], col[rest], budget)
    keep = sel | rest
    return _best_of_pairs(r[keep], col[keep], d2[keep], b, k)


def _first_stage(r: np.ndarray, v: np.ndarray, b: int, k: int) -> np.ndarray | None:
    """The pairs :func:`_rerank_two_stage` re-ranks first: a mask of each row's k pairs of smallest
    screening value ``v`` (``r`` sorted: the pairs' rows among b), or None where every pair is re-ranked
    at once (few candidates per row, or a row with fewer than k)."""
    counts = np.bincount(r, minlength=b)
    if r.size <= TWO_STAGE_MIN_RATIO * k * b or int(counts.min()) < k:
        return None
    starts = np.cumsum(counts) - counts
    first = np.argpartition(_pack_rows(r, v, b, np.inf), k - 1, axis=1)[:, :k]
    sel = np.zeros(r.size, dtype=bool)
    sel[(starts[:, None] + first).ravel()] = True
    return sel


def _second_stage(
    sel: np.ndarray, d2_sel: np.ndarray, r: np.ndarray, v: np.ndarray, slack: np.ndarray, b: int, k: int
) -> np.ndarray:
    """The pairs :func:`_rerank_two_stage` re-ranks second: those outside ``sel`` whose screening value is
    within ``slack`` of their row's largest first-stage exact distance (``d2_sel``, k per row)."""
    t = d2_sel.reshape(b, k).max(axis=1)
    return ~sel & (v <= t[r] + slack[r])


def _rerank_shared(
    X: np.ndarray,
    parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]],
    k: int,
    pool: ThreadPoolExecutor,
    workers: int,
    dist: np.ndarray,
    idx: np.ndarray,
) -> None:
    """:func:`_rerank_two_stage` of several blocks at once, a pair kept by both points computed once.

    ``parts`` maps a block's first row s to its screened pairs ``(r, col, v, slack, b)`` as
    :func:`_rerank_two_stage` takes them (``r`` sorted, rows s..s+b-1 of ``X``). Every block selects
    the same pairs as :func:`_rerank_two_stage` would (all of them where :func:`_first_stage` says so, else
    the k of smallest screening value per row, then those within the bound of their largest exact
    distance), but the exact distances of each stage are computed for the distinct pairs ``{i, j}`` of
    all blocks together, once each, as ``x_max - x_min`` by :func:`_exact_d2_buffered`, split over the
    threads of ``pool`` (``x_j - x_i`` is the negated ``x_i - x_j`` exactly, so the squares and their
    sum are the bits computed from either side); a pair of the second stage already computed in the
    first is not computed again. Each block's k best by (distance, index) are written into ``dist``
    and ``idx`` (shape (n, k)): bit for bit what :func:`_rerank_two_stage` returns block by block.
    """
    if not parts:
        return
    n = X.shape[0]
    firsts = sorted(parts)
    known_keys = np.empty(0, dtype=np.int64)
    known_d2 = np.empty(0, dtype=np.float64)

    def keys_of(s: int, m: np.ndarray | None) -> np.ndarray:
        r, col = parts[s][0], parts[s][1]
        if m is not None:
            r, col = r[m], col[m]
        rows, cols = r + s, col.astype(np.int64)
        return np.minimum(rows, cols) * n + np.maximum(rows, cols)

    def exact(keys: np.ndarray) -> np.ndarray:
        """Exact d2 of the pairs ``keys`` (unique, sorted), the pairs split over the threads."""
        d2 = np.empty(keys.size, dtype=np.float64)
        cuts = np.linspace(0, keys.size, workers + 1).astype(int)

        def part(lo: int, hi: int) -> None:
            lo_pt, hi_pt = np.divmod(keys[lo:hi], n)
            d2[lo:hi] = _exact_d2_buffered(X, lo_pt, hi_pt, PAIR_RERANK_BYTES)

        for job in [pool.submit(part, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]:
            job.result()
        return d2

    def lookup(wanted: list[np.ndarray]) -> list[np.ndarray]:
        """d2 of each block's pairs ``wanted`` (canonical keys): the known ones reused, the others computed."""
        nonlocal known_keys, known_d2
        allk = np.concatenate(wanted)
        pos = np.minimum(np.searchsorted(known_keys, allk), max(known_keys.size - 1, 0))
        found = known_keys[pos] == allk if known_keys.size else np.zeros(allk.size, dtype=bool)
        new_keys, where = np.unique(allk[~found], return_inverse=True)
        new_d2 = exact(new_keys)
        d2 = np.empty(allk.size, dtype=np.float64)
        d2[found] = known_d2[pos[found]]
        d2[~found] = new_d2[where]
        if known_keys.size:
            merged = np.concatenate([known_keys, new_keys])
            order = np.argsort(merged, kind="stable")
            known_keys, known_d2 = merged[order], np.concatenate([known_d2, new_d2])[order]
        else:
            known_keys, known_d2 = new_keys, new_d2
        offsets = np.cumsum([0] + [w.size for w in wanted])
        return [d2[o0:o1] for o0, o1 in zip(offsets[:-1], offsets[1:])]

    sels = list(pool.map(lambda s: _first_stage(parts[s][0], parts[s][2], parts[s][4], k), firsts))
    d2s = [np.empty(parts[s][0].size, dtype=np.float64) for s in firsts]
    got = lookup([keys_of(s, sel) for s, sel in zip(firsts, sels)])
    rests: list[np.ndarray | None] = []
    for s, sel, d2, g in zip(firsts, sels, d2s, got):
        if sel is None:
            d2[:] = g
            rests.append(None)
            continue
        r, _, v, sl, b = parts[s]
        d2[sel] = g
        rests.append(_second_stage(sel, g, r, v, sl, b, k))
    second = [(i, rest) for i, rest in enumerate(rests) if rest is not None]
    if second:
        got = lookup([keys_of(firsts[i], rest) for i, rest in second])
        for (i, rest), g in zip(second, got):
            d2s[i][rest] = g

    def select(i: int) -> None:
        s = firsts[i]
        r, col, _, _, b = parts[s]
        d2 = d2s[i]
        sel, rest = sels[i], rests[i]
        if sel is not None and rest is not None:
            keep = sel | rest
            r, col, d2 = r[keep], col[keep], d2[keep]
        dist[s : s + b], idx[s : s + b] = _best_of_pairs(r, col, d2, b, k)

    list(pool.map(select, range(len(firsts))))


@contextmanager
def _reused(buffers: queue.SimpleQueue[np.ndarray], size: int, dtype: Any) -> Iterator[np.ndarray]:
    """A flat buffer of ``size`` values taken from ``buffers`` (or new), put back afterwards.

    At most one buffer per thread exists at a time, and reusing them avoids the page faults of fresh
    blocks.
    """
    try:
        buf = buffers.get_nowait()
    except queue.Empty:
        buf = np.empty(size, dtype=dtype)
    try:
        yield buf
    finally:
        buffers.put(buf)


#: one thread pool per worker count and process, kept between calls (starting the threads cost ~3 ms a
#: call, a quarter of scikit-learn's whole k-NN at n = 1000, D = 64); recreated after a fork
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
#: the threadpoolctl controller, created once: ``threadpool_limits`` scans the loaded libraries on every
#: call (2-6 ms), ``ThreadpoolController.limit`` reuses the scan (0.02 ms)
_BLAS_CONTROLLER: list[Any] = []


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` threads of this process (created on first use)."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="gelora-knn")
    return pool


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread (process-wide) while the context is open."""
    with _POOLS_LOCK:
        if not _BLAS_CONTROLLER:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER.append(ThreadpoolController())
    with _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas"):
        yield


@contextmanager
def _block_threads(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads while BLAS is limited to one thread (process-wide).

    Each thread runs whole blocks (product, selection, re-rank): the selection and re-rank are NumPy
    calls that release the GIL, and a threaded BLAS product alongside them oversubscribes the cores
    (OpenBLAS threads spin between calls). Measured 0.65-0.74 s against 0.85-0.99 s for a threaded
    product at n = 16000, D = 768 on 2 cores. Jobs of the pool must not wait on jobs of the same pool.
    """
    with _one_blas_thread():
        yield _pool(workers)


def _knn_numpy_direct(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy backend up to :data:`DIRECT_MAX_N` points: the plain screen from one symmetric product.

    Parameters
    ----------
    X : numpy.ndarray of float64, shape (n, D)
        The points.
    k : int
        Neighbours per point.

    Returns
    -------
    d2, idx : numpy.ndarray, shape (n, k)
        Squared distances (float64, by differences of the rows of ``X``) and indices, ordered by
        (distance, index): the same bits as the blockwise screen of :func:`_knn_numpy`.

    Notes
    -----
    The points are centred and rounded to float32 in one pass, ``y = fl32(fl64(x - m))``, and
    ``G = Y Y^T`` is computed once in float32 from tiles on or above the diagonal (NumPy's product of a
    block with its own transpose is a symmetric rank-k update, ``syrk``; each off-diagonal tile is
    mirrored): half the multiply-adds of the blockwise ``left right^T`` and no factors to build. The
    screening values are ``g_ij = fl(fl(-2 G_ij + s_i) + s_j)`` with ``s_i = G_ii``. Where the largest
    centred entry is outside ``[2^-30, 2^30]`` the float64 centred points are first scaled by a power of
    two (exact) so that the largest norm lies in [1/2, 1).

    Exactness: write ``y`` for the float64 centred (and scaled) points, ``d_ij = |y_i - y_j|^2``,
    ``M = (|y_i| + |y_j|)^2`` and ``u`` the float32 unit roundoff. Rounding the operands and Higham's
    bound for a dot product in any order give ``|G_ij - y_i.y_j| <= alpha |y_i| |y_j|`` with
    ``alpha = gamma_D(u) (1 + u)^2 + 2u + u^2``, and the same for ``s_i`` against ``|y_i|^2``; as
    ``2 |y_i| |y_j| + |y_i|^2 + |y_j|^2 = M``, the two roundings of the additions bring the total to
    ``|g_ij - d_ij| <= gamma_{D+5}(u) M`` (first order ``(D + 4) u``; the second-order terms are below
    those of ``gamma_{D+5}``). Entries that underflow in float32 (absolute error ``2^-150``) add far less
    than the float64 part of the tolerance, because the largest entry is at least ``2^-30``. With
    ``E_i = (gamma_{D+5}(u) + gamma_{16 (D+8)}(u64)) (|y_i| + max |y|)^2``, evaluated on upper bounds of
    the norms from ``s``, this is the bound ``|g - L| <= E_i`` from which :func:`_knn_numpy` proves
    that the screen (:func:`_screen_block`, and a float64 re-screen of rows that keep more than
    ``max(SCREEN_CAP, 4 k)`` candidates) keeps every neighbour, ties included. The kept pairs are
    re-ranked by differences of the rows of ``X`` (:func:`_exact_d2`), a pair kept by both of its
    points once, and ordered by (distance, index).
    """
    n, D = X.shape
    # any centre keeps the proof; the mean of at most ~256 evenly spaced rows is central enough
    m = X[:: max(1, n // 256)].mean(axis=0)
    Yf = np.empty((n, D), dtype=np.float32)
    G = np.empty((n, n), dtype=np.float32)
    workers = _n_workers()
    side = max(1, min(-(-n // DIRECT_TILE), workers + 1))
    cuts = np.linspace(0, n, side + 1).astype(int)
    # off-diagonal tiles (two syrk halves' worth each) first, so that the threads finish together
    tiles = sorted(((a, b) for a in range(side) for b in range(a, side)), key=lambda ab: ab[0] == ab[1])
    starts = np.linspace(0, n, workers + 1).astype(int) if n > workers else np.array([0, n])
    blocks = [(int(s), int(t)) for s, t in zip(starts[:-1], starts[1:]) if t > s]
    cap = max(SCREEN_CAP, 4 * k)
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    dist = np.empty((n, k), dtype=np.float64)
    idx = np.empty((n, k), dtype=np.int64)

    top = np.zeros(n)

    def centre(s: int, t: int) -> None:
        np.subtract(X[s:t], m, out=Yf[s:t], casting="same_kind")  # one rounding of the float64 difference
        top[s] = max(float(Yf[s:t].max()), -float(Yf[s:t].min()))

    def tile(a: int, b: int) -> None:
        ra, rb = slice(cuts[a], cuts[a + 1]), slice(cuts[b], cuts[b + 1])
        if a == b:
            G[ra, ra] = Yf[ra] @ Yf[ra].T  # syrk
        else:
            G[ra, rb] = Yf[ra] @ Yf[rb].T
            G[rb, ra] = G[ra, rb].T

    def screen(g: np.ndarray, k: int, sl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # small k: argmin passes (MIN_PASSES_MAX_K); beyond, the first cut from a column subset pays
        # where the subset is sparse, the full partition elsewhere (k = 20, 1000 x 500 block: 1.42 ms
        # against 2.61 ms)
        if k > MIN_PASSES_MAX_K and _subset_step(n, k) >= 4:
            return _screen_block(g, k, sl, None, None)[:2]
        return _screen_full(g, k, sl)

    def rows(s: int, t: int) -> None:
        """Screening values, screen and float64 re-screen of too-wide rows of the rows s..t."""
        b = t - s
        g = G[s:t]
        g *= -2.0
        g += sq[s:t, None]
        g += sq[None, :]
        g[np.arange(b), np.arange(s, t)] = np.inf  # exclude self by index
        r, col = screen(g, k, slack[s:t])
        counts = np.bincount(r, minlength=b)
        wide = np.flatnonzero(counts > cap)
        if wide.size:
            # the float32 bound is too loose for these rows: screen them again in float64
            Yc = (X - m) * scale
            sq64 = np.einsum("ij,ij->i", Yc, Yc)
            g64 = Yc[s + wide] @ Yc.T
            g64 *= -2.0
            g64 += sq64[s + wide, None]
            g64 += sq64[None, :]
            g64[np.arange(wide.size), s + wide] = np.inf
            slack64 = _slack_from_norms(np.sqrt(sq64), U64, D, D)
            r64, col64 = screen(g64, k, slack64[s + wide])
            narrow = counts[r] <= cap
            r = np.concatenate([r[narrow], wide[r64]])
            col = np.concatenate([col[narrow], col64])
            order = np.argsort(r, kind="stable")
            r, col = r[order], col[order]
        if D < DEDUPE_MIN_D:
            dist[s:t], idx[s:t] = _rerank_rows(X, s, r, col, b, k, PAIR_RERANK_BYTES)
        else:
            found[s] = (r + s, col)

    def exact(lo: int, hi: int) -> None:
        o = own[lo:hi]
        d2[lo:hi][o] = _exact_d2_buffered(X, R[lo:hi][o], C[lo:hi][o], PAIR_RERANK_BYTES)

    def select(s: int, t: int) -> None:
        lo, hi = np.searchsorted(R, [s, t])
        rr = R[lo:hi] - s
        # each row's candidates are in ascending index order, so a stable sort by distance breaks ties
        # by the smaller index
        cand = _pack_rows(rr, C[lo:hi], t - s, np.iinfo(np.int64).max)
        vals = _pack_rows(rr, d2[lo:hi], t - s, np.inf)
        order = np.argsort(vals, axis=1, kind="stable")[:, :k]
        dist[s:t] = np.take_along_axis(vals, order, axis=1)
        idx[s:t] = np.take_along_axis(cand, order, axis=1)

    with _block_threads(workers) as pool:

        def run(fn: Any, args: list[tuple[int, int]]) -> None:
            if workers == 1:
                for arg in args:
                    fn(*arg)
            else:
                for job in [pool.submit(fn, *arg) for arg in args]:
                    job.result()

        run(centre, blocks)
        scale = 1.0
        if not 2.0**-30 <= top.max() <= 2.0**30:
            Xc = X - m
            tn = float(np.sqrt(np.einsum("ij,ij->i", Xc, Xc).max()))
            scale = 2.0 ** (-math.frexp(tn)[1]) if tn > 0 else 1.0  # largest norm in [1/2, 1)
            np.multiply(Xc, scale, out=Yf, casting="same_kind")  # exact scaling, one rounding to float32
        if workers == 1:
            np.matmul(Yf, Yf.T, out=G)  # syrk
        else:
            run(tile, tiles)
        sq = G.diagonal().copy()
        # upper bounds of the norms |y_i| (G_ii >= (1 - gamma_D) |fl32(y_i)|^2, float32 underflow)
        norms = np.sqrt(sq.astype(np.float64)) * (1.0 + _gamma(D + 4, U32)) + 2.0**-120
        slack = _slack_from_norms(norms, U32, D, D)
        run(rows, blocks)
        if D < DEDUPE_MIN_D:
            return dist, idx
        R = np.concatenate([found[s][0] for s, _ in blocks])
        C = np.concatenate([found[s][1] for s, _ in blocks]).astype(np.int64)
        keys = R * n + C
        if not np.all(keys[1:] > keys[:-1]):
            order = np.argsort(keys)
            R, C, keys = R[order], C[order], keys[order]
        # a pair kept by both of its points is computed once, by the smaller index (x_j - x_i is the
        # negated x_i - x_j exactly, so the squares and their sum are the same bits)
        rev = C * n + R
        # where each pair is, through the n x n screening buffer (no longer needed) as an int32 table:
        # a reversed pair is present if the table's entry for it points back to it
        table = G.reshape(-1).view(np.int32)
        table[keys] = np.arange(keys.size, dtype=np.int32)
        pos = table[rev]
        pos[(pos < 0) | (pos >= keys.size)] = 0
        own = (keys[pos] != rev) | (R < C)
        d2 = np.empty(R.size, dtype=np.float64)
        parts = np.linspace(0, R.size, workers + 1).astype(int)
        run(exact, [(int(lo), int(hi)) for lo, hi in zip(parts[:-1], parts[1:]) if hi > lo])
        d2[~own] = d2[pos[~own]]
        run(select, blocks)
    return dist, idx


def _knn_numpy(X: np.ndarray, k: int, block_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN by a rigorous float32 screen and a float64 re-rank (see the module docstring).

    Exactness: let ``L_ij = |z_i - z_j|^2 + (a_i - a_j)^2`` (:func:`_screen_basis`), ``d_ij`` the true and
    ``e_ij`` the float64 re-rank squared distance, ``g_ij`` the screen's computed ``L_ij``; then
    ``L <= d <= L + 4 a_i a_j``, ``|g - L| <= E_i`` and ``|e - d| <= E_i`` (the bounds of
    :func:`_screen_slack`), so ``e_ij <= u_ij + 2 E_i`` with ``u_ij = g_ij + 4 a_i a_j``; the same holds
    for ``u_ij`` computed by the product with the sign of the a-column flipped (exact value
    ``L_ij + 4 a_i a_j``; same Higham bound, since flipping a sign leaves the sums of absolute terms
    unchanged), which gives the first cut on large inputs. For any k
    columns J (self excluded) the k-th smallest ``e`` of the row is at most ``max_J e <= max_J u + 2 E_i``;
    with ``T_i`` the k-th smallest ``u`` over any column subset, ``e_(k) <= T_i + 2 E_i``. Every j among
    the k nearest by ``e`` then has ``g_ij <= L_ij + E_i <= d_ij + E_i <= e_ij + 2 E_i <= T_i + 4 E_i``.
    Keeping every column with ``g_ij <= T_i + slack_i`` (``slack_i = 4 E_i``, :func:`_screen_slack`)
    therefore keeps all k nearest neighbours, ties included, and the re-rank orders them exactly as an
    exhaustive float64 computation would. ``E_i``'s float32 part is Higham's a-priori bound for the
    product; its float64 part is a deliberately generous allowance (``gamma_{16 (D + 8)}(u64)``) for
    the float64 roundings of the basis, the coordinates and the re-rank, each of order ``D u64``.
    """
    n, D = X.shape
    if n <= DIRECT_MAX_N and block_size is None:
        return _knn_numpy_direct(X, k)
    Xc = X - X.mean(axis=0)
    sq64 = np.einsum("ij,ij->i", Xc, Xc)
    direct = block_size is None and n <= DIRECT_BASIS_MAX_N and D >= DIRECT_BASIS_MIN_FEATURES
    if not direct and n * _screen_cost(n, D, D, k, k) < SEARCH_MIN_WORK:
        Z, a = Xc, np.zeros(n)  # the plain screen: too little work for a principal one to pay its search
    else:
        Z, a = _screen_basis(Xc, k, sq64, _direct_cost(n, D, k) if direct else None)
    if direct and Z.shape[1] == D:
        # no principal screen pays against the direct path's plain screen
        return _knn_numpy_direct(X, k)
    scale = float(np.einsum("ij,ij->i", Z, Z).max() + (a * a).max())
    use32 = scale < 1e30  # float32 would overflow above this
    left, right = _gram_factors(Z, a, np.float32 if use32 else np.float64)
    slack = _screen_slack(Z, a, U32 if use32 else U64, D)
    slack64 = _screen_slack(Xc, np.zeros(n), U64, D)
    a_s = a if a.any() else None
    cap = max(SCREEN_CAP, 4 * k)
    dist = np.empty((n, k), dtype=np.float64)
    idx = np.empty((n, k), dtype=np.int64)

    # The first cut's upper bounds u = g + 4 a_i a_j = |z_i - z_j|^2 + (a_i + a_j)^2 on the strided column
    # subset come from their own small product (the right factor with the sign of its a-column flipped)
    # rather than from the block, whose strided reads and float64 temporaries cost more (measured
    # 0.08-0.12 s against 0.02 s at n = 16000, D = 768, one core). Not worth it for a dense subset.
    step = _subset_step(n, k)
    right_up = None
    if step >= 4:
        right_up = right[::step].copy()
        right_up[:, Z.shape[1]] *= -1.0

    def first_cut(s: int, e: int) -> np.ndarray | None:
        """``tau`` of :func:`_screen_block` for the rows s..e, or None to take it from the block."""
        if right_up is None:
            return None
        usub = np.matmul(left[s:e], right_up.T)
        own = np.arange(s, e)
        on = np.flatnonzero(own % step == 0)
        usub[on, own[on] // step] = np.inf  # exclude self by index
        return _kth_of_rows(usub, k).astype(np.float64)

    def finish(g: np.ndarray, s: int) -> None:
        """Screen, re-screen too-wide rows in float64, re-rank: rows s.. of the block ``g``."""
        b = g.shape[0]
        r, col, v = _screen_block(
            g, k, slack[s : s + b], a_s[s : s + b] if a_s is not None else None, a_s, first_cut(s, s + b)
        )
        finish_pairs(r, col, v, s, b)

    def finish_pairs(r: np.ndarray, col: np.ndarray, v: np.ndarray, s: int, b: int) -> None:
        """Re-screen too-wide rows in float64, then re-rank the candidates (r sorted) of rows s..s+b.

        With ``shared``, the candidates are kept for :func:`_rerank_shared` instead, which re-ranks them
        with the other blocks' once every block is screened.
        """
        counts = np.bincount(r, minlength=b)
        wide = np.flatnonzero(counts > cap)
        sl = slack[s : s + b]
        if use32 and wide.size:
            # the float32 bound is too loose for these rows: screen them again in float64
            g64 = Xc[s + wide] @ Xc.T
            g64 *= -2.0
            g64 += sq64[s + wide, None]
            g64 += sq64[None, :]
            g64[np.arange(wide.size), s + wide] = np.inf
            r64, col64, v64 = _screen_block(g64, k, slack64[s + wide], None, None)
            narrow = counts[r] <= cap
            r = np.concatenate([r[narrow], wide[r64]])
            col = np.concatenate([col[narrow], col64])
            v = np.concatenate([v[narrow], v64])
            order = np.argsort(r, kind="stable")
            r, col, v = r[order], col[order], v[order]
            sl = sl.copy()
            sl[wide] = slack64[s + wide]
        if shared:
            shared_parts[s] = (r, col, v, sl, b)  # re-ranked with the other blocks' pairs (_rerank_shared)
            return
        dist[s : s + b], idx[s : s + b] = _rerank_two_stage(X, s, r, col, v, sl, b, k, PAIR_RERANK_BYTES)

    workers = _n_workers()
    # a pair kept by both of its points is re-ranked once (:func:`_rerank_shared`), where the gain pays
    # for holding every block's candidates (about 40 bytes per pair) until the end
    shared = D >= SHARED_MIN_D and 48 * n * k <= SYMMETRIC_MAX_BYTES
    shared_parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = {}
    if block_size is None:
        block_size = max(1, min(n, SCREEN_BLOCK_BYTES // (left.itemsize * n)))
        if n > SMALL_N:
            # at least two blocks per worker, so that the threads share the work evenly
            block_size = min(block_size, -(-n // (2 * workers)))
    starts = range(0, n, block_size)
    # one reused block buffer per thread (fresh blocks cost page faults)
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def block(s: int, pool: ThreadPoolExecutor | None = None) -> None:
        """Screening product, selection and re-rank of the rows s..s + block_size.

        With ``pool``, the selection and re-rank of the block's rows are split over its threads.
        """
        e = min(n, s + block_size)
        b = e - s
        with _reused(buffers, min(n, block_size) * n, left.dtype) as buf:
            g = np.matmul(left[s:e], right.T, out=buf[: b * n].reshape(b, n))
            g[np.arange(b), np.arange(s, e)] = np.inf  # exclude self by index
            if pool is None or b < 2 * workers:
                finish(g, s)
            else:
                cuts = np.linspace(0, b, workers + 1).astype(int)
                jobs = [pool.submit(finish, g[c0:c1], s + c0) for c0, c1 in zip(cuts[:-1], cuts[1:])]
                for job in jobs:
                    job.result()

    # the symmetric product keeps every first-cut survivor (about k * step per row, 24 bytes each) until
    # the regrouping: only while they fit in SYMMETRIC_MAX_BYTES (memory stays bounded for large n)
    if (
        right_up is not None
        and left.shape[1] >= SYMMETRIC_MIN_WIDTH
        and len(starts) > 1
        and 24 * n * k * step <= SYMMETRIC_MAX_BYTES
    ):
        _knn_numpy_symmetric(left, right, slack, a_s, first_cut, finish_pairs, k, starts, block_size, workers)
    elif workers == 1:
        for s in starts:
            block(s)
    elif len(starts) == 1:
        # one block (small inputs): a threaded BLAS product, then the rows' selection and re-rank split
        block(0, _pool(workers))
    else:
        with _block_threads(workers) as pool:
            for job in [pool.submit(block, s) for s in starts]:
                job.result()
    if shared_parts:
        with _block_threads(workers) as pool:
            _rerank_shared(X, shared_parts, k, pool, workers, dist, idx)
    return dist, idx


def _knn_numpy_symmetric(
    left: np.ndarray,
    right: np.ndarray,
    slack: np.ndarray,
    a_s: np.ndarray | None,
    first_cut: Any,
    finish_pairs: Any,
    k: int,
    starts: range,
    block_size: int,
    workers: int,
) -> None:
    """The screen of :func:`_knn_numpy` computing each pair's screening value once (half the product).

    Three passes over the row blocks, each split over ``workers`` threads with a single-threaded BLAS:
    (0) every row's first-cut threshold ``tau_i + slack_i`` from the subset product (``first_cut``);
    (1) per block of rows s..e, the product with the columns s..n only: its entries at or below the
    row's threshold are the row side, and the entries of the columns e..n at or below the *column's*
    threshold are candidates of those later rows (the column side); (2) per block, its row side plus the
    column sides of the earlier blocks that fall in it, grouped by row, go through the second cut
    (:func:`_final_cut`) and ``finish_pairs``. The exactness argument of :func:`_knn_numpy` holds
    unchanged: a value computed as ``left_j . right_i`` is within the same bound ``E_i`` of ``L_ij``
    as ``left_i . right_j``, because the sums of absolute terms of both products equal
    ``(|x_i| + |x_j|)^2``-bounded quantities that are symmetric in i and j.
    """
    n = left.shape[0]
    dtype = left.dtype
    thr = np.empty(n)
    row_side: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    col_side: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def thresholds(s: int) -> None:
        e = min(n, s + block_size)
        thr[s:e] = first_cut(s, e) + slack[s:e]

    def strip(s: int) -> None:
        e = min(n, s + block_size)
        b, w = e - s, n - s
        with _reused(buffers, block_size * n, dtype) as buf:
            g = buf[: b * w].reshape(b, w)
            np.matmul(left[s:e], right[s:].T, out=g)
            g[np.arange(b), np.arange(b)] = np.inf  # exclude self by index
            flat = np.flatnonzero(g <= thr_g[s:e, None])
            r, c = np.divmod(flat, w)
            row_side[s] = (r, c + s, g.ravel()[flat].astype(np.float64))
            if w > b:
                gc = g[:, b:]
                flat = np.flatnonzero(gc <= thr_g[None, e:])
                i, j = np.divmod(flat, w - b)
                # sorted by column, i.e. by the later row (a stable sort on 16-bit keys is a radix sort;
                # extracting the pairs through the transposed mask instead cost more than its product)
                order = np.argsort(j.astype(np.int16) if w - b <= 2**15 else j, kind="stable")
                i, j = i[order], j[order]
                # the values through their flat index into g (a 1-D gather, cheaper than gc[i, j])
                col_side[s] = (j + e, i + s, g.ravel()[i * w + (j + b)].astype(np.float64))

    def gather(t: int) -> None:
        e = min(n, t + block_size)
        b = e - t
        rs, cs, vs = [], [], []
        for s in starts:
            if s >= t:
                break
            j, i, v = col_side[s]
            lo, hi = np.searchsorted(j, [t, e])
            rs.append(j[lo:hi] - t)
            cs.append(i[lo:hi])
            vs.append(v[lo:hi])
        # the column sides (columns below t, ascending by block and within it) before the row side
        # (columns from t on, ascending): after the stable sort by row, each row's columns ascend
        rs.append(row_side[t][0])
        cs.append(row_side[t][1])
        vs.append(row_side[t][2])
        r = np.concatenate(rs)
        # a stable sort on 16-bit keys is a radix sort
        order = np.argsort(r.astype(np.int16 if b <= 2**15 else np.int64), kind="stable")
        r, col, v = r[order], np.concatenate(cs)[order], np.concatenate(vs)[order]
        a_rows = a_s[t:e] if a_s is not None else None
        r, col, v = _final_cut(r, col, v, b, k, slack[t:e], a_rows, a_s)
        finish_pairs(r, col, v, t, b)

    with _block_threads(workers) as pool:
        list(pool.map(thresholds, starts))
        thr_g = _round_up(thr, dtype)
        list(pool.map(strip, starts))
        list(pool.map(gather, starts))


def _n_workers() -> int:
    """Threads of the NumPy backend's row blocks: ``OMP_NUM_THREADS`` if set, else the usable cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _knn_torch(
    X: Any, k: int, metric: str, device: Any, block_size: int | None, precision: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """The torch backend: :func:`gelora.estimators._knn_torch.knn_torch` (certified tensor-core screen)."""
    from gelora.estimators._knn_torch import knn_torch

    return knn_torch(X, k, metric, device, block_size, precision)


def knn_distances(
    X: Any,
    k: int,
    *,
    metric: str = "euclidean",
    device: Any = None,
    backend: str = "auto",
    block_size: int | None = None,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every point among the other points.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n_samples, n_features)
        The points. A torch tensor is processed on its own device unless ``device`` is given.
    k : int
        Neighbours per point, ``1 <= k <= n_samples - 1``.
    metric : {"euclidean", "cosine"}
        ``"cosine"`` is the chordal distance ``sqrt(2 - 2 cos)`` between unit-normalised rows (see the
        module docstring for why not ``1 - cos``).
    device : str or torch.device, optional
        Run the torch backend on this device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
    backend : {"auto", "kdtree", "numpy", "torch"}
        Algorithm; ``"auto"`` picks by input type and shape (module docstring).
    block_size : int, optional
        Rows per distance block (numpy) or tile side (torch; rows per block on its small-dimension path);
        by default chosen from a memory budget (32 MiB screening blocks for numpy, 256 MiB tiles for
        torch on CPU, a quarter of free GPU memory up to 4 GiB on CUDA; 8 MiB blocks for the torch
        small-dimension path on the CPU).
    precision : {"auto", "fp32", "tf32", "bf16"}
        Operand precision of the torch backend's screening product (``"auto"``: TF32 tensor cores on
        CUDA, fp32 elsewhere). It changes the speed only: the screen's error bound is proven for each
        precision and every candidate within it is re-ranked exactly in float64
        (:mod:`gelora.estimators._knn_torch`). ``"auto"`` with at most 32 features screens in float64
        instead (the small-dimension rule, ``_knn_torch.DIRECT64``). Ignored by the other backends.

    Returns
    -------
    dist : numpy.ndarray of float64, shape (n_samples, k)
        Distances (same unit as ``X``) to the k nearest other points, ascending along each row.
    idx : numpy.ndarray of int64, shape (n_samples, k)
        Their row indices; ties are ordered by index.

    Raises
    ------
    InvalidInputError, NotEnoughSamplesError, DegenerateDataError
        From :func:`gelora.estimators._checks.check_points`, or zero rows with ``metric="cosine"``.
    ConfigError
        Unknown metric or backend, ``k`` out of range, a tensor or device with ``backend`` other than torch.
    """
    metric = check_choice(metric, "metric", METRICS)
    backend = check_choice(backend, "backend", BACKENDS)
    k = check_int(k, "k", minimum=1)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    precision = check_choice(precision, "precision", ("auto", "fp32", "tf32", "bf16"))
    X = check_points(X, min_samples=k + 1)
    tensor = is_torch_tensor(X)
    if backend == "auto":
        if tensor or device is not None:
            backend = "torch"
        else:
            backend = "kdtree" if X.shape[1] <= KDTREE_MAX_FEATURES else "numpy"
    if backend != "torch" and (tensor or device is not None):
        raise ConfigError(
            f"backend={backend!r} works on NumPy arrays on the CPU; use backend='torch' (or 'auto') "
            "for torch tensors or an explicit device"
        )
    if backend == "torch":
        d2, idx = _knn_torch(X, k, metric, device, block_size, precision)
    else:
        Xn = _normalise_rows_np(X) if metric == "cosine" else X
        if backend == "kdtree":
            d2, idx = _knn_kdtree(Xn, k)
        else:
            d2, idx = _knn_numpy(Xn, k, block_size)
    return np.sqrt(d2), idx


@dataclass(frozen=True)
class KNNData:
    """Neighbour distances of a point cloud after duplicate handling.

    Attributes
    ----------
    X : numpy.ndarray or torch.Tensor, shape (n_samples, n_features)
        The points actually used (duplicates removed when ``duplicates="dedupe"``).
    dist : numpy.ndarray of float64, shape (n_samples, k)
        Strictly positive distances to the k nearest other points, ascending.
    idx : numpy.ndarray of int64, shape (n_samples, k)
        Row indices (into ``X``) of those neighbours.
    n_duplicates_removed : int
        Rows dropped as duplicates of an earlier row.
    """

    X: Any
    dist: np.ndarray
    idx: np.ndarray
    n_duplicates_removed: int


def knn_without_duplicates(
    X: Any,
    k: int,
    *,
    metric: str = "euclidean",
    device: Any = None,
    backend: str = "auto",
    block_size: int | None = None,
    duplicates: str = "raise",
    name: str = "X",
) -> KNNData:
    """Neighbour distances with duplicate points (zero distances) refused or removed.

    Parameters
    ----------
    X, k, metric, device, backend, block_size
        As in :func:`knn_distances`.
    duplicates : {"raise", "dedupe"}
        ``"raise"``: a :class:`~gelora.errors.DuplicatePointsError` naming how many points have a
        zero-distance twin. ``"dedupe"``: warn and keep only the first row of each group of coincident
        points (coincident under ``metric``), then recompute the neighbours.
    name : str
        Name of ``X`` in error messages.

    Returns
    -------
    KNNData
        Points used, positive distances, indices and the number of rows removed.
    """
    import warnings

    duplicates = check_choice(duplicates, "duplicates", ("raise", "dedupe"))
    X = check_points(X, min_samples=k + 1, name=name)
    n0 = X.shape[0]
    while True:
        dist, idx = knn_distances(X, k, metric=metric, device=device, backend=backend, block_size=block_size)
        zero = dist[:, 0] == 0.0
        if not zero.any():
            break
        n_zero = int(zero.sum())
        if duplicates == "raise":
            raise DuplicatePointsError(
                f"{name} has {n_zero} of {X.shape[0]} points with an exact duplicate (zero distance to "
                "a neighbour"
                + (" under metric='cosine', i.e. parallel vectors" if metric == "cosine" else "")
                + "), which makes log-distance estimators diverge; pass duplicates='dedupe' to drop them"
            )
        # drop a point when one of its zero-distance neighbours has a smaller index: the smallest index of
        # each coincident group is never dropped and the largest always is, so every pass makes progress
        rows = np.flatnonzero(zero)
        zero_nb = np.where(dist[rows] == 0.0, idx[rows], np.iinfo(np.int64).max)
        drop = rows[zero_nb.min(axis=1) < rows]
        keep = np.ones(X.shape[0], dtype=bool)
        keep[drop] = False
        if is_torch_tensor(X):
            import torch

            X = X[torch.from_numpy(keep).to(X.device)]
        else:
            X = X[keep]
        X = check_points(X, min_samples=k + 1, name=f"{name} (after removing duplicates)")
    removed = n0 - X.shape[0]
    if removed:
        warnings.warn(
            f"removed {removed} duplicate point(s) of {n0} from {name} (duplicates='dedupe')",
            UserWarning,
            stacklevel=2,
        )
    return KNNData(X=X, dist=dist, idx=idx, n_duplicates_removed=removed)
