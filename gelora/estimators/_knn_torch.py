"""The torch backend of :func:`gelora.estimators.knn.knn_distances`: a reduced-precision tensor-core screen
with a proven error bound, then the exact float64 re-rank of every candidate within that bound.

Algorithm (same code on CPU and CUDA)
-------------------------------------
1. **Centre and scale** in float64: ``c_i = (x_i - mean) 2^-e`` (a power of two, so that the largest norm
   is about 1: no overflow, and scaling changes no rounding), rounded once to float32: ``y_i``.
2. **Screening factors** ``left_i = [y^_i, qh_i, ql_i, 1, 1]`` and ``right_j = [-2 y^_j, 1, 1, qh_j, ql_j]``
   (zero-padded to a multiple of 16 columns) where ``y^`` is ``y`` rounded to the screen's operand
   precision (TF32: 10 mantissa bits, rounded here, before the product, so the operand error is ours and
   known; bf16: 7 bits; fp32: exact) and ``qh + ql`` is ``|y|^2`` (float64) split into two operands, so
   one GEMM gives ``s^_ij ~ |y_i - y_j|^2`` with no separate pass to add the norms.
3. **Symmetric tiles**: only tiles on or above the diagonal are multiplied (half the flops); every tile
   serves its rows and (transposed) its columns. Each side keeps its ``c`` smallest values per row by
   a *group-min* selection: the minima of groups of :data:`GROUP` consecutive columns (one read of
   the tile), the ``c`` groups with the smallest minima (``topk`` on a 16x narrower array), then the
   ``c`` smallest of those groups' members. It also returns a lower bound (the *floor*) on every value
   it did not keep. The column side's group minima are the minima of 16 consecutive *rows* of each
   column (a contiguous read of the tile, not of its transpose). Each tile's ``c`` per row and side go
   into a per-row pool with one slot per column block; once all tiles are done, each row keeps the
   ``c`` smallest of its pool, and its floor is the minimum of its tiles' floors and of the largest
   value kept (a pool narrower than the number of blocks is reduced the same way when it fills). With
   :data:`SELECT` ``"product"`` = ``"triton"`` one kernel writes each tile and both sides' group minima
   (:mod:`gelora.estimators._knn_triton`), saving the passes that read them from the tile. This
   equals merging tile by tile into a running best ``c`` (:data:`SELECT` ``"tilewise"``, the previous
   code): the largest of the best ``c`` of a growing set never increases, so the minimum over the merges
   of that largest value is the final one; values and floors are the same, indices may differ only
   among equal values at the cut, which the certificate below never re-ranks (it needs floor > thr).
4. **Certificate.** With ``E_ij = eps (R_i + R_j)^2 + eps_abs`` (:func:`screen_eps`, ``R_i >= |y_i|``),
   ``|s^_ij - e_ij| <= E_ij`` where ``e_ij`` is the float64 re-rank value (scaled). Let ``T_i`` be the
   k-th smallest ``s^_ij + E_ij`` over the kept columns: k columns have ``e_ij <= T_i``, so the k-th
   smallest ``e`` of the row is ``<= T_i``, and every column j whose ``e_ij`` is at most that has
   ``s^_ij <= e_ij + E_ij <= T_i + eps (R_i + R_max)^2 + eps_abs =: thr_i``. A row is *certified* when
   its floor exceeds ``thr_i``: then every column that can be among its k nearest (ties included) was
   kept. Uncertified rows (near-isotropic data where the screen's error exceeds the gap between the
   k-th and c-th neighbour, or massive ties) are screened again in float64 against all points with the
   same argument and a float64 bound, keeping every column within it (no cap).
5. **Exact re-rank**: every kept column with ``s^_ij <= thr_i`` gets ``sum((x_j - x_i)^2)`` in float64
   from the input values; the k smallest by (distance, index) are returned. The result is therefore
   the one an exhaustive float64 computation of the same re-rank formula gives, ties included.

Small dimensions (:data:`DIRECT64`)
-----------------------------------
With ``precision="auto"`` and ``D <= DIRECT64["max_features"]`` (32; on CUDA ``"max_features_cuda"``,
2), steps 1-3 are replaced by :func:`_direct64`: the centred, scaled rows stay in float64, each block of rows gets
``|y_i|^2 + |y_j|^2 - 2 y_i . y_j`` against all points in one float64 product (the arithmetic of the
fallback screen, so its bound :func:`eps64` applies) and keeps its ``k + max(4, k // 4)`` smallest by
``topk`` over whole rows (on CUDA by the group-min selection of step 3); the floor is the largest value
kept (group-min: the smallest minimum of a group not chosen). Steps 4 and 5 (certificate, re-rank,
fallback for rows with more ties than that) are unchanged, so the neighbours are the same exact ones,
and the distances come from the same re-rank formula. At small D the reduced-precision product is cheap
and the screen's selection passes and wide candidate lists cost more than a float64 product; at d = 1-2
the TF32 bound (relative to ``(R_i + R_j)^2``) is also wider than the k-th neighbour distance of a few
thousand points, so most rows would go to the fallback.

Error model (what ``eps`` assumes)
----------------------------------
Operands are rounded here (TF32 round-to-nearest: unit roundoff ``2^-11``; bf16: ``2^-8``); products of
the rounded operands are exact in float32 (11 x 11 and 8 x 8 significand bits); the accumulation is in
float32 with each addition's error at most ``2^-22`` relative to the sum of the absolute terms so far —
twice float32's unit roundoff, which covers the truncating, block-aligned accumulation measured on NVIDIA
tensor cores (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS
2021): ``|fl(sum p) - sum p| <= gamma_W(2^-22) sum |p|`` for W terms. The output is float32 (or bf16 when
the device cannot return a float32 product of bf16 operands: ``2^-8`` more). Values below float32's
normal range may be flushed to zero (an absolute term ``eps_abs``; the data are scaled to norm ~1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError
from gelora.estimators._checks import is_torch_tensor

#: operand precisions of the screen, and ``"auto"`` (TF32 on CUDA, fp32 elsewhere)
PRECISIONS = ("auto", "fp32", "tf32", "bf16")

#: columns per group of the group-min selection (the topk runs on a GROUP-times narrower array)
GROUP = 16

#: unit roundoff of the operands, by screen precision
OPERAND_U = {"fp32": 0.0, "tf32": 2.0**-11, "bf16": 2.0**-8}

#: per-addition error of the GEMM accumulation, relative to the sum of absolute terms (see module doc)
ACC_U = 2.0**-22

U32 = 2.0**-24
U64 = 2.0**-53

#: absolute allowance for values flushed below float32's normal range (data scaled to norm <= 1)
EPS_ABS_PER_TERM = 2.0**-120

#: memory for the exact re-rank's float64 differences (bytes per chunk of rows, eager kernel)
RERANK_BYTES = 16 * 2**20


def candidates_per_row(k: int, n: int) -> int:
    """Columns kept per row by the screen: ``k + max(32, 4 k)`` (at most ``n - 1``).

    Wider than the old fixed margin because the proven bound is wider than the typical error: on
    isotropic Gaussian data at D = 4096 (the hardest case: every distance within a few per cent of the
    others) the TF32 bound (eps ~ 1.5e-3 of ``(R_i + R_j)^2``, ~3e-3 for the cut) spans about a quarter
    of a standard deviation of the squared distances, i.e. the 60th-80th neighbour at n = 65536-200000
    for k = 20 (Gaussian tail estimate); rows that still fail the certificate go to the float64 fallback.
    """
    return min(n - 1, k + max(32, 4 * k))


def resolve_precision(precision: str, device: Any) -> str:
    """``"auto"`` -> ``"tf32"`` on CUDA, ``"fp32"`` otherwise; others unchanged (validated)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "tf32" if getattr(device, "type", str(device)) == "cuda" else "fp32"
    return precision


def _gamma(m: int, u: float) -> float:
    return m * u / (1.0 - m * u)


def screen_eps(precision: str, n_features: int, width: int, out_u: float) -> float:
    """Relative half-width ``eps`` of the screen: ``|s^_ij - e_ij| <= eps (R_i + R_j)^2 + eps_abs``.

    Parameters
    ----------
    precision : {"fp32", "tf32", "bf16"}
        Operand precision.
    n_features : int
        D (the exact re-rank sums D squared differences).
    width : int
        Columns of the screening factors (terms of each dot product, zero padding included).
    out_u : float
        Unit roundoff of the product's output (``2^-24`` float32, ``2^-8`` bf16).

    Notes
    -----
    Terms (all relative to ``(R_i + R_j)^2``, ``2 R_i R_j <= (R_i + R_j)^2 / 2``,
    ``R_i^2 + R_j^2 <= (R_i + R_j)^2``):

    - operands: ``2 |<y^_i, y^_j> - <y_i, y_j>| <= 2 (2 u + u^2) R_i R_j``;
    - the norms: ``|qh + ql - |y|^2| <= (u^2 (1 + u) + gamma_D(u64)) |y|^2`` (split and float64 sum);
    - accumulation: ``gamma_W(2^-22)`` times the sum of absolute terms, ``<= (1 + u)^2 (R_i + R_j)^2``;
    - output rounding: ``out_u`` times ``|s^| <= 1.01 (R_i + R_j)^2``;
    - centring: ``y_i = c_i (1 + d)`` componentwise with ``|d| <= u_c = u32 + 2 u64``, so
      ``||y_i - y_j| - |c_i - c_j|| <= u_c (|c_i| + |c_j|)`` and the squared distances differ by at most
      ``2.01 u_c (R_i + R_j)^2``;
    - the re-rank's own float64 error ``gamma_{D+3}(u64) |c_i - c_j|^2``.

    The sum is multiplied by 1.05 for the second-order terms dropped above.
    """
    u = OPERAND_U[precision]
    u_c = U32 + 2.0 * U64
    eps = (
        (2.0 * u + u * u) / 2.0
        + u * u * (1.0 + u)
        + _gamma(n_features, U64)
        + _gamma(width, ACC_U) * (1.0 + u) ** 2
        + 1.01 * out_u
        + 2.01 * u_c
        + 1.01 * _gamma(n_features + 3, U64)
    )
    return 1.05 * eps


def eps64(n_features: int) -> float:
    """The same bound for the float64 fallback screen (a generous ``16 (D + 8) u64``, as the NumPy backend)."""
    return _gamma(16 * (n_features + 8), U64)


def _round_tf32(y: Any) -> Any:
    """float32 tensor rounded to TF32 (10 explicit significand bits), to nearest, ties away from zero."""
    import torch

    bits = y.contiguous().view(torch.int32)
    return ((bits + 0x1000) & -0x2000).view(torch.float32)


def _operand(y: Any, precision: str) -> Any:
    import torch

    if precision == "tf32":
        return _round_tf32(y)
    if precision == "bf16":
        return y.to(torch.bfloat16)
    return y


@contextmanager
def _tf32_matmul(device: Any, enabled: bool) -> Iterator[None]:
    """Let CUDA float32 products use TF32 tensor cores (our operands are already TF32-exact)."""
    import torch

    if not enabled or device.type != "cuda":
        yield
        return
    m = torch.backends.cuda.matmul
    if hasattr(m, "fp32_precision"):
        old = m.fp32_precision
        m.fp32_precision = "tf32"
        try:
            yield
        finally:
            m.fp32_precision = old
    else:  # pragma: no cover - older torch
        old_flag = m.allow_tf32
        m.allow_tf32 = True
        try:
            yield
        finally:
            m.allow_tf32 = old_flag


@dataclass
class ScreenStats:
    """What the screen did (for benchmarks and tests): rows certified by the tensor-core screen, rows
    sent to the float64 fallback, re-ranked pairs. ``precision`` is ``"fp64"`` on the small-dimension
    path (:data:`DIRECT64`)."""

    precision: str
    candidates: int
    uncertified_rows: int
    reranked_pairs: int
    #: seconds per phase when :data:`PHASE_TIMING` is on (else empty): prepare, product, select, certify,
    #: rerank, fallback, transfer
    phases: dict[str, float] = field(default_factory=dict)
    #: what computed the screen's tiles and their group minima (:data:`SELECT` ``"product"``, after
    #: :func:`_product_kind`): ``"torch"`` or ``"triton"``
    product: str = "torch"


#: the statistics of the last call in this process (read by validation.gpu_bench and the tests)
LAST_STATS: list[ScreenStats] = []

#: time the phases of each call (``ScreenStats.phases``); synchronises the device after every tile, so
#: it slows the call down a little: for profiling (``validation.estimators.gpu_knn_bench --phases``) only
PHASE_TIMING = {"on": False}

#: how the screen combines its tiles' selections (:func:`_screen`): ``"deferred"`` (default) or
#: ``"tilewise"`` (the previous code, kept for side-by-side timing: ``gpu_knn_bench --compare-select``)
#: ``"smallest"``: how the ``c`` smallest of a row are found, ``"topk"`` (``torch.topk``, default) or
#: ``"sort"`` (a full row sort, then the first ``c``: the same values and floors; for timing)
#: ``"group_min"``: how a row's group minima are taken, ``"auto"`` (default: ``"triton"`` on CUDA when the
#: triton package imports, else ``"halving"``; never raises: a kernel that fails to build warns once and
#: the halving kernel takes over), ``"halving"`` (log2(GROUP) elementwise minima
#: of the two halves) or ``"amin"`` (one reduction over the last 16 values: the same values; on an H200 it
#: took 3.3 ms per 20736^2 tile against 1.5 ms for halving and 0.45 ms for one read of the tile,
#: reports/gpu/knn_select_halving_h200.json) or ``"triton"`` (a Triton kernel reading the tile once; the
#: same values; a :class:`ConfigError` without the triton package). On an H200 (2026-11-30,
#: reports/gpu/knn_select_transfer_h200.json) the Triton kernel took the selection phase from 38.7 to
#: 32.9 ms at 65,536 x 768 and from 314 to 268 ms at 200,000 x 768, and the peak memory from 3.62 to 2.97 GiB
#: ``"product"``: what computes each tile, ``"torch"`` (``torch.mm``, then the masks and the group minima
#: in eager torch; default) or ``"triton"`` (:func:`gelora.estimators._knn_triton.screen_tile`: one kernel
#: writes the masked tile and both sides' group minima; used on CUDA, or on the CPU under
#: ``TRITON_INTERPRET=1``, else the torch product runs; a :class:`ConfigError` if triton is not installed).
#: The same neighbours and distances; the tile's last bits, and so candidates and floors, may differ
#: ``"transfer"``: how the (n, k) results reach the host from a GPU, ``"pageable"`` (``.cpu()``, default),
#: ``"pinned"`` (a non-blocking copy into page-locked staging buffers, then a host copy out of them, so the
#: caller never holds page-locked memory) or ``"pinned32"`` (the same with the indices sent as int32 and
#: widened on the host, for n < 2^31; default). The same arrays; on an H200 the pageable copy of 65,536 x 20
#: results took 14-16 ms (reports/gpu/knn_select_triton_h200.json, phase ``transfer``), about 1.4 GB/s;
#: ``"pinned32"`` took 4.1 ms where the pageable copy took 12.1 ms in the same run (65,536 x 768), 11.7
#: against 20.9 ms at 200,000 x 768, and 3.2 against 1.5 ms at 65,536 x 4096 (the staging buffers'
#: allocation; reports/gpu/knn_select_transfer_h200.json)
PRODUCTS = ("torch", "triton")
SELECT_MODES = ("deferred", "tilewise")
SMALLEST = ("topk", "sort")
GROUP_MINS = ("amin", "auto", "halving", "triton")
TRANSFERS = ("pageable", "pinned", "pinned32")
SELECT = {
    "mode": "deferred",
    "smallest": "topk",
    "group_min": "auto",
    "product": "torch",
    "transfer": "pinned32",
}


@contextmanager
def select_settings(**settings: str) -> Iterator[None]:
    """:data:`SELECT` with ``settings`` (``mode``, ``smallest``, ``group_min``, ``product``, ``transfer``) applied inside the block and
    restored after it: the side-by-side timing (``validation.estimators.gpu_knn_select``) and the tests
    switch variants with it. Values are checked where the screen reads them (:func:`_screen`)."""
    unknown = sorted(set(settings) - set(SELECT))
    if unknown:
        raise ConfigError(f"unknown SELECT setting(s) {unknown}; expected some of {sorted(SELECT)}")
    old = dict(SELECT)
    SELECT.update(settings)
    try:
        yield
    finally:
        SELECT.update(old)


class _PhaseClock:
    """Seconds per named phase, measured between device synchronisations (no-op unless enabled)."""

    def __init__(self, device: Any, enabled: bool) -> None:
        self.device = device
        self.enabled = enabled
        self.phases: dict[str, float] = {}
        self._t = self._now() if enabled else 0.0

    def _now(self) -> float:
        import time

        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap to ``name``."""
        if self.enabled:
            t = self._now()
            self.phases[name] = self.phases.get(name, 0.0) + (t - self._t)
            self._t = t


def _product(a: Any, b: Any, precision: str) -> tuple[Any, float]:
    """``a @ b.T`` with a float32 result where the device can; returns it and its output roundoff."""
    import torch

    if precision == "bf16":
        if a.device.type == "cuda":
            try:
                return torch.mm(a, b.T, out_dtype=torch.float32), U32
            except (TypeError, RuntimeError):  # pragma: no cover - torch without mm(out_dtype)
                pass
        return torch.mm(a, b.T).float(), 2.0**-8
    return torch.mm(a, b.T), U32


def _product_kind(device: Any) -> str:
    """:data:`SELECT` ``"product"`` as it runs on ``device``: ``"triton"`` only where its kernel can run."""
    product = SELECT["product"]
    if product not in PRODUCTS:
        raise ConfigError(f"SELECT['product'] must be one of {PRODUCTS}, got {product!r}")
    if product == "triton":
        from gelora.estimators import _knn_triton

        return "triton" if _knn_triton.available(device) else "torch"
    return "torch"


def _tile(
    left: Any, right: Any, s: int, e: int, t: int, f: int, n: int, precision: str, product: str
) -> tuple[Any, float, Any, Any]:
    """The screen's tile for rows ``s:e`` and columns ``t:f``: values (padding and self set to ``inf``),
    output roundoff, and the row and column group minima when the product wrote them (else ``None``)."""
    if product == "triton":
        from gelora.estimators import _knn_triton

        g, row_min, col_min = _knn_triton.screen_tile(left[s:e], right[t:f], n - s, n - t, t == s, precision)
        return g, U32, row_min, col_min
    g, u_out = _product(left[s:e], right[t:f], precision)
    if f > n:
        g[:, max(0, n - t) :] = float("inf")  # padding columns
    if e > n:
        g[max(0, n - s) :, :] = float("inf")  # padding rows
    if t == s:
        g.fill_diagonal_(float("inf"))  # exclude self by index
    return g, u_out, None, None


def _smallest(x: Any, c: int) -> tuple[Any, Any]:
    """The ``c`` smallest values of each row of ``x`` and their positions, in no particular order."""
    import torch

    if SELECT["smallest"] == "sort":
        v, i = torch.sort(x, dim=1)
        return v[:, :c], i[:, :c]
    return torch.topk(x, c, dim=1, largest=False, sorted=False)


def _select(h: Any, c: int, gmin: Any = None) -> tuple[Any, Any, Any]:
    """The ``c`` smallest values per row of ``h`` (r, w), ``w`` a multiple of :data:`GROUP`.

    ``gmin`` (r, w / GROUP), if given, holds the minima of the row's groups of :data:`GROUP` consecutive
    columns (any layout); otherwise they are computed here. Returns values (r, c'), their column
    indices (r, c') with ``c' = min(c, w)``, and a floor (r,): a lower bound on every value of the row
    that was not returned (``inf`` if all were).
    """
    import torch

    r, w = h.shape
    inf = torch.full((r,), float("inf"), dtype=h.dtype, device=h.device)
    if w <= c:
        cols = torch.arange(w, device=h.device).expand(r, w)
        return h.contiguous(), cols, inf
    if gmin is None:
        gmin = _row_group_min(h)
    cg = min(c, w // GROUP)
    gv, gi = _smallest(gmin, cg)
    # every group not chosen has its minimum >= the largest chosen minimum
    floor = gv.amax(dim=1) if cg < w // GROUP else inf
    cols = (gi[:, :, None] * GROUP + torch.arange(GROUP, device=h.device)).flatten(1)
    vals = torch.gather(h, 1, cols)
    v, j = _smallest(vals, c)
    if c < cols.shape[1]:
        floor = torch.minimum(floor, v.amax(dim=1))
    return v, torch.gather(cols, 1, j), floor


def _triton_group_min(device: Any) -> bool:
    """Whether :func:`_row_group_min` uses the Triton kernel on ``device``: ``SELECT["group_min"]``
    ``"triton"`` where Triton can run (a :class:`ConfigError` without the package), ``"auto"`` on CUDA when
    the triton package imports."""
    from gelora.estimators import _knn_triton

    mode = SELECT["group_min"]
    if mode == "triton":
        return _knn_triton.available(device, "group_min")
    if mode == "auto" and not _TRITON_GROUP_MIN_FAILED:
        return getattr(device, "type", str(device)) == "cuda" and _knn_triton.triton_version() is not None
    return False


#: why the Triton group-minimum kernel failed under ``SELECT["group_min"] = "auto"`` in this process (then
#: the halving kernel runs for the rest of it); empty while it works
_TRITON_GROUP_MIN_FAILED: list[str] = []


def _row_group_min(h: Any) -> Any:
    """Minima of the groups of :data:`GROUP` consecutive columns of each row of ``h`` (r, w): (r, w / GROUP).

    ``SELECT["group_min"]`` picks the kernel; a minimum is exact, so all give the same values. ``"triton"``
    (:func:`gelora.estimators._knn_triton.row_group_min`: one read of ``h``) runs where Triton can (CUDA, or
    the CPU under ``TRITON_INTERPRET=1``) on a float32 ``h`` with unit column stride (the row side of a
    tile); elsewhere the halving kernel does. ``"auto"`` is ``"triton"`` on CUDA when Triton imports
    (:func:`_triton_group_min`).
    """
    import torch

    if h.dtype == torch.float32 and h.stride(1) == 1 and _triton_group_min(h.device):
        from gelora.estimators import _knn_triton

        try:
            return _knn_triton.row_group_min(h)
        except (ConfigError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
            raise  # not a build failure: a misuse, or memory that the halving kernel would need as well
        except Exception as exc:  # noqa: BLE001 - e.g. no C compiler for Triton's launcher
            if SELECT["group_min"] == "triton":
                raise  # asked for explicitly: no fallback
            import warnings

            _TRITON_GROUP_MIN_FAILED.append(f"{type(exc).__name__}: {exc}")
            warnings.warn(
                f"the Triton group-minimum kernel failed ({_TRITON_GROUP_MIN_FAILED[-1][:200]}); the k-NN uses "
                "the halving kernel for the rest of this process (the same results)",
                RuntimeWarning,
                stacklevel=2,
            )
    x = h.unflatten(1, (h.shape[1] // GROUP, GROUP))
    if SELECT["group_min"] == "amin":
        return x.amin(dim=2)
    while x.shape[2] > 1:
        half = x.shape[2] // 2
        x = torch.minimum(x[:, :, :half], x[:, :, half:])
    return x[:, :, 0]


def _column_group_min(g: Any) -> Any:
    """Minima of the groups of :data:`GROUP` consecutive rows of each column of ``g`` (r, w), returned
    as a (w, r / GROUP) view: the group minima of ``g.T``'s rows, from a contiguous read of ``g``."""
    r = g.shape[0]
    return g.unflatten(0, (r // GROUP, GROUP)).amin(dim=1).T


def _merge(best_v: Any, best_i: Any, floor: Any, s: int, e: int, v: Any, j: Any, fl: Any) -> None:
    """Fold (v, j) with its floor into the running best of rows s:e (in place)."""
    import torch

    c = best_v.shape[1]
    all_v = torch.cat([best_v[s:e], v], dim=1)
    all_i = torch.cat([best_i[s:e], j], dim=1)
    top_v, top = torch.topk(all_v, c, dim=1, largest=False, sorted=False)
    best_v[s:e] = top_v
    best_i[s:e] = torch.gather(all_i, 1, top)
    # what the merge dropped is >= the largest value it kept
    floor[s:e] = torch.minimum(torch.minimum(floor[s:e], fl), top_v.amax(dim=1))


class _Pool:
    """Each row's candidates from several tiles, kept side by side and reduced to the best ``c`` once
    (:data:`SELECT` ``"deferred"``): one ``topk`` per row at the end instead of a ``cat`` + ``topk`` +
    ``gather`` per tile and side.

    Row block ``b`` (rows ``starts[b]:starts[b] + tile``) has ``slots`` slots of ``c`` columns. A tile's
    result goes to the block's next free slot; when all are used, the block is reduced to its best
    ``c`` in slot 0 (only when the pool had to be narrower than the number of column blocks). Floors
    are the minimum of the tiles' floors; :meth:`best` lowers them to the largest value kept, exactly
    as the sequential merges do (the best ``c`` of a superset have a largest value no larger).
    """

    def __init__(self, n_pad: int, c: int, tile: int, slots: int, device: Any) -> None:
        import torch

        self.c, self.tile, self.slots = c, tile, slots
        itype = torch.int32 if n_pad < 2**31 else torch.int64
        self.v = torch.full((n_pad, slots * c), float("inf"), dtype=torch.float32, device=device)
        self.i = torch.full((n_pad, slots * c), -1, dtype=itype, device=device)
        self.floor = torch.full((n_pad,), float("inf"), dtype=torch.float32, device=device)
        self.used = [0] * (-(-n_pad // tile))

    def add(self, s: int, e: int, v: Any, j: Any, fl: Any) -> None:
        """Put the candidates ``v`` (e - s, c') at columns ``j`` and their floors ``fl`` into rows s:e."""
        import torch

        b = s // self.tile
        if self.used[b] == self.slots:
            self._reduce(s, e, self.slots)
            self.used[b] = 1
        a = self.used[b] * self.c
        w = v.shape[1]
        self.v[s:e, a : a + w] = v
        self.i[s:e, a : a + w] = j
        if w < self.c:  # a tile narrower than c: clear what an earlier round left in the slot
            self.v[s:e, a + w : a + self.c] = float("inf")
            self.i[s:e, a + w : a + self.c] = -1
        self.used[b] += 1
        self.floor[s:e] = torch.minimum(self.floor[s:e], fl)

    def _reduce(self, s: int, e: int, used: int) -> None:
        import torch

        c = self.c
        top_v, top = _smallest(self.v[s:e, : used * c], c)
        top_i = torch.gather(self.i[s:e, : used * c], 1, top)
        self.v[s:e, :c] = top_v
        self.i[s:e, :c] = top_i
        # what the reduction dropped is >= the largest value it kept
        self.floor[s:e] = torch.minimum(self.floor[s:e], top_v.amax(dim=1))

    def best(self) -> tuple[Any, Any, Any]:
        """The best ``c`` values (float32) and columns (int64) per row, and the floors."""
        import torch

        n_pad = self.v.shape[0]
        for b, used in enumerate(self.used):
            s, e = b * self.tile, min(n_pad, (b + 1) * self.tile)
            self._reduce(s, e, max(1, used))
        return self.v[:, : self.c], self.i[:, : self.c].to(torch.int64), self.floor


def _centre_and_scale(Xe: Any, chunk: int) -> tuple[Any, float]:
    """Step 1 of the module docstring for ``Xe`` (n, D): the float64 mean and the power of two that
    brings the largest centred norm to about 1 (``chunk`` rows are converted to float64 at a time)."""
    import torch

    mean = Xe.mean(dim=0, dtype=torch.float64)
    rmax = 0.0
    for s in range(0, Xe.shape[0], chunk):
        rmax = max(
            rmax, float(torch.linalg.vector_norm(Xe[s : s + chunk].to(torch.float64) - mean, dim=1).max())
        )
    return mean, 2.0 ** -int(np.ceil(np.log2(rmax))) if rmax > 0 else 1.0


def _factors(
    Xe: Any, mean: Any, scale: float, precision: str, n_pad: int, chunk: int
) -> tuple[Any, Any, Any]:
    """Screening factors (n_pad, W) and the float64 norms ``|y_i|`` (n,) of the scaled centred rows."""
    import torch

    n, D = Xe.shape
    width = -(-(D + 4) // 16) * 16
    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    left = torch.zeros((n_pad, width), dtype=dt, device=Xe.device)
    right = torch.zeros((n_pad, width), dtype=dt, device=Xe.device)
    norm = torch.empty(n, dtype=torch.float64, device=Xe.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        y = ((Xe[s:e].to(torch.float64) - mean) * scale).to(torch.float32)
        y64 = y.to(torch.float64)
        q = torch.einsum("ij,ij->i", y64, y64)
        norm[s:e] = torch.sqrt(q)
        qh = _operand(q.to(torch.float32), precision)
        ql = _operand((q - qh.to(torch.float64)).to(torch.float32), precision)
        yo = _operand(y, precision)
        left[s:e, :D] = yo
        right[s:e, :D] = yo * -2.0  # exact
        left[s:e, D], left[s:e, D + 1], left[s:e, D + 2], left[s:e, D + 3] = qh, ql, 1.0, 1.0
        right[s:e, D], right[s:e, D + 1], right[s:e, D + 2], right[s:e, D + 3] = 1.0, 1.0, qh, ql
    return left, right, norm


def _screen(
    left: Any,
    right: Any,
    n: int,
    c: int,
    tile: int,
    precision: str,
    clock: _PhaseClock | None = None,
    mode: str | None = None,
    pool_bytes: int = 2**62,
    product: str | None = None,
) -> tuple[Any, Any, Any, float]:
    """Best ``c`` per row over the symmetric tiles; returns values, indices, floors, output roundoff.

    ``mode`` (default :data:`SELECT`) picks how the tiles' selections are combined: ``"deferred"``
    (column-group minima from a contiguous read, every tile's result pooled per row, one reduction
    at the end; the pool holds at most ``pool_bytes``, at least two slots) or ``"tilewise"`` (the
    previous code: the column side's group minima from the transposed tile, a merge per tile and
    side). Both return the same values and floors (the indices may differ only among equal values).
    ``product`` (default :func:`_product_kind` of :data:`SELECT`) computes the tiles (:func:`_tile`).
    """
    import torch

    mode = SELECT["mode"] if mode is None else mode
    if mode not in SELECT_MODES:
        raise ConfigError(f"select mode must be one of {SELECT_MODES}, got {mode!r}")
    if SELECT["smallest"] not in SMALLEST:
        raise ConfigError(f"SELECT['smallest'] must be one of {SMALLEST}, got {SELECT['smallest']!r}")
    if SELECT["group_min"] not in GROUP_MINS:
        raise ConfigError(f"SELECT['group_min'] must be one of {GROUP_MINS}, got {SELECT['group_min']!r}")
    product = _product_kind(left.device) if product is None else product
    clock = clock or _PhaseClock(left.device, False)
    n_pad = left.shape[0]
    dev = left.device
    if mode == "deferred":
        n_blocks = -(-n_pad // tile)
        slots = max(2, min(n_blocks, pool_bytes // max(1, n_pad * c * 8)))
        pool = _Pool(n_pad, c, tile, slots, dev)
    else:
        best_v = torch.full((n_pad, c), float("inf"), dtype=torch.float32, device=dev)
        best_i = torch.full((n_pad, c), -1, dtype=torch.int64, device=dev)
        floor = torch.full((n_pad,), float("inf"), dtype=torch.float32, device=dev)
    out_u = U32
    with _tf32_matmul(dev, precision == "tf32"):
        for s in range(0, n_pad, tile):
            e = min(n_pad, s + tile)
            for t in range(s, n_pad, tile):
                f = min(n_pad, t + tile)
                g, u_out, row_min, col_min = _tile(left, right, s, e, t, f, n, precision, product)
                clock.lap("product")
                out_u = max(out_u, u_out)
                if mode == "deferred":
                    v, j, fl = _select(g, c, row_min)
                    pool.add(s, e, v, j + t, fl)
                    if t != s:
                        if col_min is None and g.shape[0] > c:
                            col_min = _column_group_min(g)
                        v, j, fl = _select(g.T, c, col_min)
                        pool.add(t, f, v, j + s, fl)
                else:
                    v, j, fl = _select(g, c, row_min)
                    _merge(best_v, best_i, floor, s, e, v, j + t, fl)
                    if t != s:
                        v, j, fl = _select(g.T, c, col_min)
                        _merge(best_v, best_i, floor, t, f, v, j + s, fl)
                clock.lap("select")
                del g
        if mode == "deferred":
            best_v, best_i, floor = pool.best()
            clock.lap("select")
    return best_v[:n], best_i[:n], floor[:n], out_u


def _rows_sq(X: Any, row_ids: Any, cand: Any) -> Any:
    """``sum((x_j - x_i)^2)`` in float64, shape (b, w), for rows ``row_ids`` (b,) and their candidates
    ``cand`` (b, w): the exact re-rank formula (each row's own values gathered once)."""
    import torch

    b, w = cand.shape
    xr = X.index_select(0, row_ids).to(torch.float64)
    out = torch.empty((b, w), dtype=torch.float64, device=X.device)
    for j in range(w):  # one candidate column at a time: the same 2-D row-wise dot whatever the shape
        y = X.index_select(0, cand[:, j]).to(torch.float64)
        y -= xr
        out[:, j] = torch.einsum("ij,ij->i", y, y)
    return out


def _rows_sq_fused(X: Any, row_ids: Any, cand: Any) -> Any:
    """:func:`_rows_sq` as one expression, for ``torch.compile`` to fuse into one kernel (CUDA)."""
    import torch

    diff = X[cand].to(torch.float64) - X[row_ids].to(torch.float64)[:, None, :]
    return (diff * diff).sum(dim=-1)


_COMPILED: dict[str, Any] = {}


def _rows_sq_fn(device: Any) -> Any:
    """The re-rank kernel: on CUDA ``torch.compile`` fuses the gather, the float64 difference and the sum
    into one pass over the candidates' rows (eager torch makes several passes of float64 temporaries,
    as slow as the screen itself at D = 4096); ``GELORA_KNN_COMPILE=0`` or any compile error gives the
    eager function. Same formula either way (the summation order may differ in the last bit)."""
    import os

    if device.type != "cuda" or os.environ.get("GELORA_KNN_COMPILE", "1") == "0":
        return _rows_sq
    if "fn" not in _COMPILED:
        import torch

        try:
            _COMPILED["fn"] = torch.compile(_rows_sq_fused, dynamic=True)
        except Exception:  # pragma: no cover - no compiler backend
            _COMPILED["fn"] = _rows_sq
    return _COMPILED["fn"]


def exact_best_k(Xe: Any, row_ids: Any, rows: Any, cols: Any, k: int, budget: int) -> tuple[Any, Any]:
    """The k nearest of each row among its candidate pairs, by the exact float64 re-rank.

    Parameters
    ----------
    Xe : torch.Tensor, shape (n, D)
        The input values.
    row_ids : torch.Tensor of int64, shape (m,)
        The rows (indices into ``Xe``).
    rows, cols : torch.Tensor of int64, shape (P,)
        Candidate pairs: position in ``row_ids`` (sorted ascending, every position at least k times)
        and column index into ``Xe``.
    k : int
        Neighbours per row.
    budget : int
        Bytes of float64 differences per chunk of rows (eager kernel).

    Returns
    -------
    d2, idx : torch.Tensor, shape (m, k)
        Squared distances (float64) and indices, ordered by (distance, index).
    """
    import torch

    dev = rows.device
    m = row_ids.shape[0]
    D = Xe.shape[1]
    counts = torch.bincount(rows, minlength=m)
    width = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(rows.shape[0], device=dev) - torch.repeat_interleave(starts, counts)
    cand = row_ids[:, None].repeat(1, width)  # padding points at the row itself, masked below
    cand[rows, pos] = cols
    valid = torch.zeros((m, width), dtype=torch.bool, device=dev)
    valid[rows, pos] = True
    fn = _rows_sq_fn(Xe.device)
    # eager torch holds three float64 rows per chunk row; the fused kernel holds none, so its chunks
    # are limited only by 32-bit element indexing of the gathered rows
    per_row = width * D
    step = max(1, budget // (8 * 3 * D)) if fn is _rows_sq else max(1, (2**31 - 1) // (2 * per_row))
    d2 = torch.empty((m, width), dtype=torch.float64, device=dev)
    for s in range(0, m, step):
        e = min(m, s + step)
        try:
            d2[s:e] = fn(Xe, row_ids[s:e], cand[s:e])
        except Exception:  # pragma: no cover - a compile failure surfaces at the first call
            if fn is _rows_sq:
                raise
            import warnings

            warnings.warn(
                "torch.compile of the k-NN re-rank failed; using eager torch", RuntimeWarning, stacklevel=2
            )
            fn = _COMPILED["fn"] = _rows_sq
            d2[s:e] = fn(Xe, row_ids[s:e], cand[s:e])
    d2[~valid] = float("inf")
    idx = torch.where(valid, cand, torch.iinfo(torch.int64).max)
    # order by (distance, index): sort by index, then a stable sort by distance
    ci, perm = torch.sort(idx, dim=1)
    d2 = torch.gather(d2, 1, perm)
    d2s, order = torch.sort(d2, dim=1, stable=True)
    return d2s[:, :k], torch.gather(ci, 1, order[:, :k])


def _fallback64(
    Xe: Any, mean: Any, scale: float, norm: Any, rows: Any, k: int, budget: int
) -> tuple[Any, Any]:
    """Candidate pairs (row position in ``rows``, column) from a float64 screen against all points.

    ``g_ij = |c_i|^2 + |c_j|^2 - 2 c_i . c_j`` of the float64 centred, scaled rows ``c``; every column
    with ``g_ij <= T_i + eps64 (R_i + R_max)^2`` is kept (no cap), ``T_i`` the k-th smallest
    ``g_ij + eps64 (R_i + R_j)^2`` (the argument of the module docstring with the float64 bound). Two
    passes over column chunks (each converted to float64 once per pass, all fallback rows at a time):
    the first finds ``T_i`` by a running top-k, the second collects the pairs.
    """
    import torch

    n, D = Xe.shape
    m = rows.shape[0]
    eps = eps64(D)
    rmax = float(norm.max())
    Yr = (Xe.index_select(0, rows).to(torch.float64) - mean) * scale
    qr = torch.einsum("ij,ij->i", Yr, Yr)
    rn = norm[rows]
    col_chunk = max(k + 1, budget // (8 * (D + 2 * m)))
    arange_m = torch.arange(m, device=Xe.device)

    def blocks() -> Iterator[tuple[int, Any]]:
        for t in range(0, n, col_chunk):
            f = min(n, t + col_chunk)
            Yc = (Xe[t:f].to(torch.float64) - mean) * scale
            g = Yr @ Yc.T
            g *= -2.0
            g += qr[:, None]
            g += torch.einsum("ij,ij->i", Yc, Yc)[None, :]
            own = (rows >= t) & (rows < f)
            g[arange_m[own], rows[own] - t] = float("inf")  # self, by index
            yield t, g

    best = torch.full((m, k), float("inf"), dtype=torch.float64, device=Xe.device)
    for t, g in blocks():
        up = g + eps * (rn[:, None] + norm[None, t : t + g.shape[1]]) ** 2
        both = torch.cat([best, up], dim=1)
        best = torch.topk(both, k, dim=1, largest=False, sorted=False).values
    thr = best.amax(dim=1) + eps * (rn + rmax) ** 2
    out_r, out_c = [], []
    for t, g in blocks():
        r, col = torch.nonzero(g <= thr[:, None], as_tuple=True)
        out_r.append(r)
        out_c.append(col + t)
    r, col = torch.cat(out_r), torch.cat(out_c)
    order = torch.sort(r, stable=True).indices
    return r[order], col[order]


#: the small-dimension rule (issue 20; ``docs/performance.md``, "Small dimensions: the float64 direct
#: path"): with ``precision="auto"`` and at most ``"max_features"`` features, :func:`knn_torch` skips the
#: reduced-precision screen and runs :func:`_direct64` (on the 2-core CPU it was 2.1-2.4x faster than the
#: screen up to d = 32 at n = 4000 and 1.1-3.3x at n = 16000, 1.1-1.5x at d = 64, 0.9x at d = 100, n = 16000).
#: ``"select"``: how :func:`_direct64` keeps a row's candidates, ``"topk"`` (``torch.topk`` of whole
#: rows, as the pre-screen code) or ``"group"`` (the screen's group-min :func:`_select`; the same
#: neighbours). The ``"_cuda"`` keys are CUDA's (H200, n = 16000: the TF32 screen is 1.6-1.8x faster than
#: the float64 path from d = 3 on, the float64 path with group selection 2.9x / 1.8x faster than the screen
#: at d = 1 / 2, where the TF32 bound is wider than the neighbour gaps; ``reports/gpu/knn_small_d_h200.jsonl``).
#: All are read at every call (``scripts/knn_small_d.py`` switches them to time the variants at the same
#: shapes)
DIRECT64: dict[str, Any] = {
    "max_features": 32,
    "select": "topk",
    "max_features_cuda": 2,
    "select_cuda": "group",
}
DIRECT64_SELECTS = ("topk", "group")


def _direct64_setting(key: str, device: Any) -> Any:
    """``DIRECT64[key]`` for ``device``: the ``"<key>_cuda"`` entry on CUDA, ``key``'s elsewhere."""
    return DIRECT64[f"{key}_cuda" if getattr(device, "type", str(device)) == "cuda" else key]


def uses_direct64(n_features: int, device: Any, precision: str) -> bool:
    """Whether :func:`knn_torch` takes the float64 direct path for this shape (never on timing).

    Parameters
    ----------
    n_features : int
        Features (dimension) of the input.
    device : torch.device or str
        Where the search runs: CUDA has its own threshold (:data:`DIRECT64`, ``"max_features_cuda"``).
    precision : str
        The caller's screen precision: an explicit ``"fp32"``, ``"tf32"`` or ``"bf16"`` always gets the
        screen it names; ``"auto"`` gets the direct path when ``n_features`` is at most the device's
        ``max_features``. The crossover measured on either device depends on the dimension only, not on
        ``n`` or ``k`` (docs/performance.md).
    """
    resolve_precision(precision, device)  # validates
    return precision == "auto" and n_features <= int(_direct64_setting("max_features", device))


def direct64_candidates(k: int, n: int) -> int:
    """Columns kept per row by :func:`_direct64`: ``k + max(4, k // 4)`` (at most ``n - 1``).

    The float64 bound is ~1e-14 of ``(R_i + R_j)^2``, so the certificate needs only the columns within
    rounding of the k-th distance (ties); this is the pre-screen code's margin. Rows with more ties than
    it go to the float64 fallback like any uncertified row.
    """
    return min(n - 1, k + max(4, k // 4))


#: bytes of one row block of :func:`_direct64` on the CPU: the block's float64 distances stay in the
#: last-level cache for the ``+=`` and the ``topk`` that read them again (measured: 64-128-row blocks
#: ran 2.8x faster than the 1048-row blocks of the 256 MiB budget at n = 16000, d = 2; docs/performance.md)
DIRECT64_CPU_BLOCK_BYTES = 8 * 2**20


def direct64_rows(n: int, device: Any, budget: int, block_size: int | None = None) -> int:
    """Rows per block of :func:`_direct64`: ``block_size`` if given; on the CPU a block of about
    :data:`DIRECT64_CPU_BLOCK_BYTES` (at least 64 rows), elsewhere what the block's float64 distances and
    its selection fit in ``budget`` bytes (``16 n`` bytes a row); never more than ``budget`` allows."""
    if block_size is not None:
        return block_size
    rows = max(1, budget // (16 * n))
    if getattr(device, "type", str(device)) == "cpu":
        rows = min(rows, max(64, DIRECT64_CPU_BLOCK_BYTES // (8 * n)))
    return rows


def _distances64(Y: Any, q: Any, s: int, e: int) -> Any:
    """``|y_i|^2 + |y_j|^2 - 2 y_i . y_j`` (float64) for rows ``s:e`` of ``Y`` (n, D) against all rows:
    (e - s, n), with ``q`` (n,) the squared norms. Its error is within :func:`eps64` ``(R_i + R_j)^2``
    (float64 dot products and two additions, as in :func:`_fallback64`)."""
    import torch

    g = torch.addmm(q[None, :], Y[s:e], Y.T, beta=1.0, alpha=-2.0)
    g += q[s:e, None]
    return g


def _direct64(
    Xe: Any, mean: Any, scale: float, c: int, budget: int, block_size: int | None, clock: _PhaseClock
) -> tuple[Any, Any, Any, Any]:
    """The float64 screen of the small-dimension rule: best ``c`` per row, floors and norms.

    ``g_ij = |y_i|^2 + |y_j|^2 - 2 y_i . y_j`` for the float64 centred, scaled rows ``y`` (the arithmetic
    of :func:`_fallback64`, so :func:`eps64` bounds its error), by row blocks against all columns (no
    symmetric tiles: each block's ``topk`` then sees whole rows, so no merges, no pool and no group
    minima; at small D the product is cheap next to those passes). Returns values (n, c) float64,
    columns (n, c) int64, floors (n,) (the largest kept value: ``topk`` dropped nothing smaller;
    ``inf`` when ``c = n - 1``) and ``R_i >= |y_i|`` (n,).
    """
    import torch

    n, D = Xe.shape
    dev = Xe.device
    select = _direct64_setting("select", dev)
    if select not in DIRECT64_SELECTS:
        raise ConfigError(f"DIRECT64's select must be one of {DIRECT64_SELECTS}, got {select!r}")
    Y = (Xe.to(torch.float64) - mean) * scale
    q = torch.einsum("ij,ij->i", Y, Y)
    norm = torch.sqrt(q) * (1.0 + 1e-12)
    if select == "group":  # whole groups of columns: padding points with |y|^2 = inf (g = inf there)
        n_pad = -(-n // GROUP) * GROUP
        Y = torch.cat([Y, Y.new_zeros((n_pad - n, D))])
        q = torch.cat([q, q.new_full((n_pad - n,), float("inf"))])
    rows = direct64_rows(n, dev, budget, block_size)
    best_v = torch.empty((n, c), dtype=torch.float64, device=dev)
    best_i = torch.empty((n, c), dtype=torch.int64, device=dev)
    floor = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
    clock.lap("prepare")
    for s in range(0, n, rows):
        e = min(n, s + rows)
        g = _distances64(Y, q, s, e)
        g.diagonal(offset=s).fill_(float("inf"))  # exclude self by index
        clock.lap("product")
        if select == "group":
            best_v[s:e], best_i[s:e], floor[s:e] = _select(g, c)
        else:
            best_v[s:e], best_i[s:e] = torch.topk(g, c, dim=1, largest=False, sorted=False)
            if c < n - 1:  # topk dropped nothing smaller than the largest value it kept
                floor[s:e] = best_v[s:e].amax(dim=1)
        clock.lap("select")
        del g
    return best_v, best_i, floor, norm


def knn_torch(
    X: Any, k: int, metric: str, device: Any, block_size: int | None, precision: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN squared distances and indices (module docstring); float64 NumPy arrays on the host."""
    import torch

    if SELECT["transfer"] not in TRANSFERS:
        raise ConfigError(f"SELECT['transfer'] must be one of {TRANSFERS}, got {SELECT['transfer']!r}")
    if not is_torch_tensor(X):
        X = torch.from_numpy(X)
    dev = torch.device(device) if device is not None else X.device
    direct = uses_direct64(X.shape[1], dev, precision)
    precision = "fp64" if direct else resolve_precision(precision, dev)
    Xe = X.to(dev)  # the exact re-rank uses the input's values (float32 or float64)
    if metric == "cosine":
        norms = torch.linalg.vector_norm(Xe.to(torch.float64), dim=1)
        if bool((norms == 0).any()):
            raise InvalidInputError(
                "metric='cosine' is undefined for zero vectors; X has "
                f"{int((norms == 0).sum())} all-zero rows"
            )
        Xe = Xe.to(torch.float64) / norms[:, None]
    n, D = Xe.shape
    budget = _budget(dev)
    clock = _PhaseClock(dev, bool(PHASE_TIMING["on"]))
    with torch.no_grad():
        chunk = max(1, budget // (16 * D))
        mean, scale = _centre_and_scale(Xe, chunk)
        if direct:
            c = direct64_candidates(k, n)
            best_v, best_i, floor, norm = _direct64(Xe, mean, scale, c, budget, block_size, clock)
            eps, eps_abs = eps64(D), 0.0
            product = "torch"
        else:
            c = candidates_per_row(k, n)
            n_pad = -(-n // GROUP) * GROUP
            left, right, norm = _factors(Xe, mean, scale, precision, n_pad, chunk)
            norm = norm * (1.0 + 1e-12)  # R_i >= |y_i| despite the float64 rounding of the norm
            tile = tile_size(budget, n_pad, block_size)
            product = _product_kind(dev)
            clock.lap("prepare")
            best_v, best_i, floor, out_u = _screen(
                left, right, n, c, tile, precision, clock, pool_bytes=budget, product=product
            )
            del left, right
            eps = screen_eps(precision, D, -(-(D + 4) // 16) * 16, out_u)
            eps_abs = EPS_ABS_PER_TERM * (D + 16)
        rmax_s = float(norm.max())
        valid = best_i >= 0
        bi = best_i.clamp(min=0)
        v64 = best_v.to(torch.float64)
        up = torch.where(valid, v64 + eps * (norm[:, None] + norm[bi]) ** 2 + eps_abs, float("inf"))
        T = torch.kthvalue(up, k, dim=1).values
        thr = T + eps * (norm + rmax_s) ** 2 + eps_abs
        certified = floor.to(torch.float64) > thr
        keep = valid & (v64 <= thr[:, None]) & certified[:, None]
        r, j = torch.nonzero(keep, as_tuple=True)
        cols = bi[r, j]
        bad = torch.nonzero(~certified).flatten()
        d2_out = torch.empty((n, k), dtype=torch.float64, device=dev)
        idx_out = torch.empty((n, k), dtype=torch.int64, device=dev)
        good = torch.nonzero(certified).flatten()
        clock.lap("certify")
        if good.numel():
            # rows renumbered 0..len(good)-1 (``r`` is sorted, ``good`` ascending)
            rank = torch.cumsum(certified.to(torch.int64), 0) - 1
            dk, ik = exact_best_k(Xe, good, rank[r], cols, k, RERANK_BYTES)
            d2_out[good], idx_out[good] = dk, ik
        clock.lap("rerank")
        if bad.numel():
            fr, fc = _fallback64(Xe, mean, scale, norm, bad, k, budget)
            dk, ik = exact_best_k(Xe, bad, fr, fc, k, RERANK_BYTES)
            d2_out[bad], idx_out[bad] = dk, ik
            n_pairs = int(r.numel() + fr.numel())
        else:
            n_pairs = int(r.numel())
        clock.lap("fallback")
        out = _to_host(d2_out, idx_out, n)
        clock.lap("transfer")
        LAST_STATS[:] = [ScreenStats(precision, c, int(bad.numel()), n_pairs, clock.phases, product)]
    return out


def _staging(shape: tuple[int, ...], dtype: Any) -> Any:
    """An empty page-locked host tensor (the CUDA caching host allocator reuses it after the first call)."""
    import torch

    return torch.empty(shape, dtype=dtype, pin_memory=True)


def _wait(device: Any) -> None:
    import torch

    torch.cuda.current_stream(device).synchronize()


def _to_host(d2: Any, idx: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``d2`` (n, k) float64 and ``idx`` (n, k) int64 as NumPy arrays of the host, by
    :data:`SELECT` ``"transfer"``; off CUDA (or ``"pageable"``) plain ``.cpu()``."""
    mode = SELECT["transfer"]  # checked by knn_torch before any work
    if d2.device.type != "cuda" or mode == "pageable":
        return d2.cpu().numpy(), idx.cpu().numpy()
    return _staged_copy(d2, idx, narrow=mode == "pinned32" and n < 2**31)


def _staged_copy(d2: Any, idx: Any, narrow: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``"pinned"`` transfer: non-blocking copies into staging buffers (:func:`_staging`), one wait,
    then host copies out of them (``narrow``: the indices cross as int32 and are widened to int64)."""
    import torch

    send = idx.to(torch.int32) if narrow else idx
    hd, hi = _staging(tuple(d2.shape), d2.dtype), _staging(tuple(send.shape), send.dtype)
    hd.copy_(d2, non_blocking=True)
    hi.copy_(send, non_blocking=True)
    _wait(d2.device)
    return hd.numpy().copy(), hi.numpy().astype(np.int64)


def tile_size(budget: int, n_pad: int, block_size: int | None) -> int:
    """Rows and columns of the screen's square tiles: ``block_size`` if given, else what a tile and its
    selection fit in ``budget`` bytes; a multiple of :data:`GROUP`, at most ``n_pad``."""
    tile = int((budget / (4 * 2.5)) ** 0.5) if block_size is None else block_size
    return max(GROUP, -(-min(tile, n_pad) // GROUP) * GROUP)


def _budget(device: Any) -> int:
    """Working memory of one tile and its selection (bytes): a quarter of free GPU memory up to 4 GiB;
    256 MiB on the CPU."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(min(4 * 2**30, 0.25 * free))
    return 256 * 2**20
