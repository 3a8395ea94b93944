"""The Triton source of :func:`gelora.estimators._knn_triton.screen_tile`'s kernel (imports triton: load
it only through :func:`gelora.estimators._knn_triton._kernel`, which jits it on first use).

One program computes a ``BLOCK_M x BLOCK_N`` block of ``a @ b.T`` with ``tl.dot`` (float32 accumulator),
sets padding rows and columns and the self pairs (local column - local row == ``self_offset``: 0 on a
diagonal tile, a difference no pair has elsewhere) to ``inf``, stores the block, and
from the same registers the minima of its groups of ``GROUP_SIZE`` consecutive columns per row and of
``GROUP_SIZE`` consecutive rows per column. Every size is a multiple of ``GROUP_SIZE``, so no group
straddles a block or the tile's edge.
"""

import triton.language as tl  # type: ignore[import-not-found,unused-ignore]


def tile_kernel(
    a_ptr,
    b_ptr,
    g_ptr,
    rmin_ptr,
    cmin_ptr,
    M,
    N,
    K,
    rows_valid,
    cols_valid,
    self_offset,
    stride_am,
    stride_ak,
    stride_bn,
    stride_bk,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_SIZE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    om = offs_m.to(tl.int64)
    on = offs_n.to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        a = tl.load(
            a_ptr + om[:, None] * stride_am + kk[None, :] * stride_ak,
            mask=(offs_m[:, None] < M) & (kk[None, :] < K),
            other=0.0,
        )
        b = tl.load(
            b_ptr + on[None, :] * stride_bn + kk[:, None] * stride_bk,
            mask=(offs_n[None, :] < N) & (kk[:, None] < K),
            other=0.0,
        )
        if UPCAST:  # the interpreter multiplies bfloat16 as raw 16-bit integers; products are exact in fp32
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    bad = (offs_m[:, None] >= rows_valid) | (offs_n[None, :] >= cols_valid)
    bad = bad | ((offs_n[None, :] - offs_m[:, None]) == self_offset)
    acc = tl.where(bad, float("inf"), acc)
    inside = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(g_ptr + om[:, None] * N + on[None, :], acc, mask=inside)
    # the group minima of the stored values; rows (columns) beyond the tile fill whole groups, not stored
    rmin = tl.min(tl.reshape(acc, (BLOCK_M, BLOCK_N // GROUP_SIZE, GROUP_SIZE)), axis=2)
    gn = pid_n * (BLOCK_N // GROUP_SIZE) + tl.arange(0, BLOCK_N // GROUP_SIZE)
    NG = N // GROUP_SIZE
    tl.store(
        rmin_ptr + om[:, None] * NG + gn.to(tl.int64)[None, :],
        rmin,
        mask=(offs_m[:, None] < M) & (gn[None, :] < NG),
    )
    cmin = tl.min(tl.reshape(acc, (BLOCK_M // GROUP_SIZE, GROUP_SIZE, BLOCK_N)), axis=1)
    gm = pid_m * (BLOCK_M // GROUP_SIZE) + tl.arange(0, BLOCK_M // GROUP_SIZE)
    tl.store(
        cmin_ptr + gm.to(tl.int64)[:, None] * N + on[None, :],
        cmin,
        mask=(gm[:, None] < M // GROUP_SIZE) & (offs_n[None, :] < N),
    )


def row_group_min_kernel(
    g_ptr,
    out_ptr,
    M,
    N,
    stride_gm,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP_SIZE: tl.constexpr,
):
    """The minima of each row's groups of GROUP_SIZE consecutive columns of a row-major (M, N) tile (unit
    column stride, N a multiple of GROUP_SIZE), in one read of the tile: out (M, N / GROUP_SIZE)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    om = offs_m.to(tl.int64)
    on = offs_n.to(tl.int64)
    x = tl.load(
        g_ptr + om[:, None] * stride_gm + on[None, :],
        mask=(offs_m[:, None] < M) & (offs_n[None, :] < N),
        other=float("inf"),
    )
    rmin = tl.min(tl.reshape(x, (BLOCK_M, BLOCK_N // GROUP_SIZE, GROUP_SIZE)), axis=2)
    gn = pid_n * (BLOCK_N // GROUP_SIZE) + tl.arange(0, BLOCK_N // GROUP_SIZE)
    NG = N // GROUP_SIZE
    tl.store(
        out_ptr + om[:, None] * NG + gn.to(tl.int64)[None, :],
        rmin,
        mask=(offs_m[:, None] < M) & (gn[None, :] < NG),
    )
