"""One exact k-nearest-neighbour core shared by every intrinsic-dimension estimator.

Backends
--------
``"kdtree"``
    :class:`scipy.spatial.cKDTree` queried with all cores (``workers=-1``); fast for low dimension.
``"numpy"``
    Blocked squared distances ``|x|^2 + |y|^2 - 2 x.y`` of the centred data through a float32 BLAS product,
    row blocks sized from a memory budget; per row a threshold from a strided column subset prunes the row
    before ``argpartition`` (see :func:`_smallest_columns`).
``"torch"``
    The same Gram trick in PyTorch on CPU or CUDA, in float32, over square tiles of the symmetric distance
    matrix (only tiles on or above the diagonal are computed, each updating the running ``topk`` of its
    rows and of its columns); the tile side is chosen from a memory budget. The only backend for torch
    tensors or when ``device`` is given.
``"auto"``
    torch when ``X`` is a tensor or ``device`` is set; otherwise kdtree when ``n_features`` is at most
    :data:`KDTREE_MAX_FEATURES`, else numpy (both crossovers measured in ``docs/performance.md``: on the
    2-core CPU the NumPy backend beat torch's CPU path at every size tried).

Exactness
---------
Every backend selects ``k + margin`` candidates per point (``margin = max(4, k // 4)``), then recomputes the
distances of these candidates exactly as ``sqrt(sum((x - y)**2))`` in float64 from the input values and
keeps the ``k`` smallest, ties broken by the smaller index. Distances are therefore accurate to float64
rounding even for near-duplicates (where the Gram trick cancels catastrophically) and all backends
return the same neighbours unless more than ``margin`` points tie or are within the Gram rounding error of
the k-th distance. Data are centred before the Gram product, which keeps that rounding error small.
Self-matches are excluded by index, never by zero distance, so duplicate rows show up as zero distances
(which the estimators detect).

Metrics
-------
``"euclidean"`` or ``"cosine"``. ``"cosine"`` is the chordal distance between the unit-normalised rows,
``||x/|x| - y/|y|||  = sqrt(2 - 2 cos(x, y))``: it ranks neighbours exactly as the cosine distance
``1 - cos`` does but is a true metric that scales linearly with the angle for close points, so distance
ratios (TwoNN, MLE) keep their meaning. (``1 - cos`` equals half the *square* of it, which would halve every
ratio-based estimate.)
"""

from __future__ import annotations

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

#: buffer of the exact re-rank on CPU (bytes)
RERANK_BYTES = 16 * 2**20

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


def _exact_rerank_np(
    X: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 squared distances between X[rows] and X[cand] by differences; keep k best.

    Works in chunks through one reused buffer of at most ``budget`` bytes (fresh large temporaries cost
    more in page faults than the arithmetic).
    """
    b, c = cand.shape
    D = X.shape[1]
    chunk = max(1, min(b, budget // max(1, c * D * 8)))
    buf = np.empty((chunk, c, D), dtype=np.float64)
    out_d = np.empty((b, k), dtype=np.float64)
    out_i = np.empty((b, k), dtype=np.int64)
    for s in range(0, b, chunk):
        e = min(b, s + chunk)
        diff = buf[: e - s]
        np.take(X, cand[s:e], axis=0, out=diff)
        diff -= X[rows[s:e], None, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        out_d[s:e], out_i[s:e] = _sort_candidates(d2, cand[s:e], k)
    return out_d, out_i


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


def _smallest_columns(g: np.ndarray, c: int) -> np.ndarray:
    """Column indices of the c smallest entries of every row of ``g`` (b, n), in no particular order.

    ``argpartition`` over whole rows is the slowest step at large n, so a threshold is found first: the
    c-th smallest value of each row over an evenly strided subset of ``m >= 4c`` columns is at least the
    row's true c-th smallest, so every entry below or at it survives (about ``c n / m`` per row), and the
    exact selection runs over the survivors only.
    """
    b, n = g.shape
    m = min(n, max(4 * (c + 1), n // 16))
    if m >= n or c >= n - 1:
        if c >= n:
            return np.argsort(g, axis=1)[:, :c].astype(np.int64)
        return np.argpartition(g, c - 1, axis=1)[:, :c].astype(np.int64)
    cols = np.unique(np.linspace(0, n - 1, m).astype(np.int64))
    tau = np.partition(g[:, cols], c - 1, axis=1)[:, c - 1]
    r, col = np.nonzero(g <= tau[:, None])
    counts = np.bincount(r, minlength=b)
    width = int(counts.max())
    pos = np.arange(r.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    vals = np.full((b, width), np.inf, dtype=g.dtype)
    cidx = np.zeros((b, width), dtype=np.int64)
    vals[r, pos] = g[r, col]
    cidx[r, pos] = col
    if width > c:
        sel = np.argpartition(vals, c - 1, axis=1)[:, :c]
        return np.take_along_axis(cidx, sel, axis=1)
    return cidx[:, :c]


def _knn_numpy(X: np.ndarray, k: int, block_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[0]
    c = min(n - 1, k + _margin(k))
    # candidates from a float32 Gram of the centred data (float32 BLAS is ~4x faster than float64 here,
    # docs/performance.md); the exact float64 re-rank below restores full precision
    Xc = X - X.mean(axis=0)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    # one GEMM gives the squared distances: [x_i, |x_i|^2, 1] . [-2 x_j, 1, |x_j|^2]
    # (width padded with zeros to a multiple of 16 floats, which BLAS kernels prefer)
    D = X.shape[1]
    width = -(-(D + 2) // 16) * 16
    left = np.zeros((n, width), dtype=np.float32)
    left[:, :D], left[:, D], left[:, D + 1] = Xc, sq, 1.0
    right = np.zeros_like(left)
    right[:, :D], right[:, D], right[:, D + 1] = -2.0 * Xc, 1.0, sq
    del Xc
    if block_size is None:
        block_size = max(1, min(n, CPU_BLOCK_BYTES // (4 * n * 2)))
    dist = np.empty((n, k), dtype=np.float64)
    idx = np.empty((n, k), dtype=np.int64)
    gbuf = np.empty((min(n, block_size), n), dtype=np.float32)  # reused: fresh blocks cost page faults
    for s in range(0, n, block_size):
        e = min(n, s + block_size)
        rows = np.arange(s, e)
        g = np.matmul(left[s:e], right.T, out=gbuf[: e - s])
        g[rows - s, rows] = np.inf  # exclude self by index
        cand = _smallest_columns(g, c)
        dist[s:e], idx[s:e] = _exact_rerank_np(X, rows, cand, k, RERANK_BYTES)
    return dist, idx


def _torch_budget(device: Any) -> int:
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(min(4 * 2**30, 0.25 * free))
    return CPU_BLOCK_BYTES


def _torch_merge(best_d: Any, best_i: Any, s: int, e: int, v: Any, j: Any, c: int) -> None:
    """Fold new candidates (v, j) of rows s:e into the running best c (smallest v)."""
    import torch

    all_d = torch.cat([best_d[s:e], v], dim=1)
    all_i = torch.cat([best_i[s:e], j], dim=1)
    top = torch.topk(all_d, c, dim=1, largest=False, sorted=False).indices
    best_d[s:e] = torch.gather(all_d, 1, top)
    best_i[s:e] = torch.gather(all_i, 1, top)


def _torch_candidates(Xg: Any, c: int, block: int) -> Any:
    """Indices (n, c) of the c nearest other rows by the Gram distances, using symmetry.

    Only the block pairs (I, J) with J >= I are multiplied (half the flops): each block updates the
    running best of its rows (top-k along dim 1) and of its columns (top-k along dim 0).
    """
    import torch

    n = Xg.shape[0]
    sq = (torch.linalg.vector_norm(Xg, dim=1, dtype=torch.float64) ** 2).to(Xg.dtype)
    best_d = torch.full((n, c), float("inf"), dtype=Xg.dtype, device=Xg.device)
    best_i = torch.full((n, c), -1, dtype=torch.int64, device=Xg.device)
    for s in range(0, n, block):
        e = min(n, s + block)
        for t in range(s, n, block):
            f = min(n, t + block)
            g = torch.addmm(sq[None, t:f], Xg[s:e], Xg[t:f].T, beta=1.0, alpha=-2.0)
            g += sq[s:e, None]
            if t == s:
                g.fill_diagonal_(float("inf"))  # exclude self by index
            cc = min(c, f - t)
            v, j = torch.topk(g, cc, dim=1, largest=False, sorted=False)
            _torch_merge(best_d, best_i, s, e, v, j + t, c)
            if t != s:
                cc = min(c, e - s)
                v, j = torch.topk(g.T, cc, dim=1, largest=False, sorted=False)
                _torch_merge(best_d, best_i, t, f, v, j + s, c)
            del g
    return best_i


def _torch_rerank(Xe: Any, cand: Any, k: int, budget: int) -> tuple[Any, Any]:
    """Exact float64 squared distances to the candidates by differences; keep k by (distance, index)."""
    import torch

    n, c = cand.shape
    D = Xe.shape[1]
    rows = max(1, min(n, budget // (3 * D * 8)))
    d2 = torch.empty((n, c), dtype=torch.float64, device=Xe.device)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        xr = Xe[s:e].to(torch.float64)
        for j in range(c):
            y = Xe.index_select(0, cand[s:e, j]).to(torch.float64)
            y -= xr
            d2[s:e, j] = torch.einsum("ij,ij->i", y, y)
    # order by (distance, index): sort by index, then a stable sort by distance
    ci, perm = torch.sort(cand, dim=1)
    d2 = torch.gather(d2, 1, perm)
    d2s, order = torch.sort(d2, dim=1, stable=True)
    return d2s[:, :k], torch.gather(ci, 1, order[:, :k])


def _knn_torch(
    X: Any, k: int, metric: str, device: Any, block_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    if not is_torch_tensor(X):
        X = torch.from_numpy(X)
    dev = torch.device(device) if device is not None else X.device
    Xe = X.to(dev)  # the exact re-rank uses the input's values (float32 or float64)
    if metric == "cosine":
        norms = torch.linalg.vector_norm(Xe.to(torch.float64), dim=1)
        if bool((norms == 0).any()):
            raise InvalidInputError(
                "metric='cosine' is undefined for zero vectors; X has "
                f"{int((norms == 0).sum())} all-zero rows"
            )
        Xe = Xe.to(torch.float64) / norms[:, None]
    n = Xe.shape[0]
    c = min(n - 1, k + _margin(k))
    budget = _torch_budget(dev)
    with torch.no_grad():
        # candidates from a float32 Gram of the centred data (float32 BLAS is 4x faster than float64 on the
        # CPU, docs/performance.md); the exact float64 re-rank restores full precision
        mean = Xe.mean(dim=0, dtype=torch.float64)
        Xg = Xe.to(torch.float32) - mean.to(torch.float32)
        if block_size is None:
            block_size = int(max(1, min(n, (budget // (3 * Xg.element_size())) ** 0.5)))
        cand = _torch_candidates(Xg, c, block_size)
        del Xg
        dist, idx = _torch_rerank(Xe, cand, k, budget)
    return dist.cpu().numpy(), idx.cpu().numpy()


def knn_distances(
    X: Any,
    k: int,
    *,
    metric: str = "euclidean",
    device: Any = None,
    backend: str = "auto",
    block_size: int | None = None,
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
        Rows per distance block (numpy) or tile side (torch); by default chosen from a memory budget
        (256 MiB on CPU, a quarter of free GPU memory up to 4 GiB on CUDA).

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
        d2, idx = _knn_torch(X, k, metric, device, block_size)
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
