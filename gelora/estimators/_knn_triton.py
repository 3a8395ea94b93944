"""A Triton kernel for one tile of the k-NN screen (:mod:`gelora.estimators._knn_torch`): the product of
the screening factors with the group minima of its rows and columns written by the same kernel.

What it computes
----------------
For rows ``s:e`` of the left factors and rows ``t:f`` of the right factors (the operands
:func:`~gelora.estimators._knn_torch._factors` builds, already rounded to the screen's precision), one
kernel writes

- the tile ``g = left[s:e] @ right[t:f].T`` (float32), with ``inf`` on padding rows (``>= n - s``),
  padding columns (``>= n - t``) and, for a diagonal tile, the diagonal — exactly the masks the torch
  path applies after ``torch.mm``;
- ``row_min`` (e - s, (f - t) / GROUP): the minima of each row's groups of :data:`GROUP` consecutive
  columns of ``g`` (:func:`~gelora.estimators._knn_torch._row_group_min`);
- ``col_min`` ((e - s) / GROUP, f - t), returned as its transpose: the minima of each column's groups of
  GROUP consecutive rows (:func:`~gelora.estimators._knn_torch._column_group_min`).

The minima are taken in the epilogue from the accumulator registers that are stored as ``g``, so they are
the exact minima of the stored values (a minimum rounds nothing). The selection
(:func:`~gelora.estimators._knn_torch._select`) then needs no further pass to find them, only the gather
of the chosen groups' members from ``g``: the tile is still written, because recomputing the members
would have to reproduce the kernel's summation order bit for bit for the floors (the largest chosen
group minimum bounds every member of the groups not chosen) to hold for the values returned; writing it
costs one write, which the torch product makes too, and saves the two reads of the group minima and the
three masking passes.

Error model (the assumptions of :func:`~gelora.estimators._knn_torch.screen_eps`)
---------------------------------------------------------------------------------
``tl.dot`` accumulates in float32 (the accumulator is float32 and so is the stored tile: output roundoff
``2^-24`` for every precision, bf16 included). Operand settings, by screen precision:

- ``"tf32"``: ``input_precision="tf32"``. The operands are already TF32 values (rounded to nearest by
  :func:`~gelora.estimators._knn_torch._round_tf32` before the product), so the tensor cores' own
  conversion to TF32 (truncation on NVIDIA hardware) changes nothing; products of two 11-bit significands
  are exact in float32; the accumulation is the tensor cores' float32 accumulation (Triton issues the
  hardware's MMA instructions, as cuBLAS does for the torch path's TF32 ``torch.mm``), whose per-addition
  error ``2^-22`` relative to the sum of absolute terms the bound already assumes, in any order (Triton's
  K loop adds the blocks of ``BLOCK_K`` terms in turn, each block inside the MMA in the hardware's order;
  the block sizes autotune picks change the order, hence the last bits, not the bound). Not measured
  separately for Triton's instructions: the float64 identity check of the GPU timing command is the
  empirical test. ``"ieee"`` would satisfy the same bound (float32 FMAs, ``2^-24`` per addition) on CUDA
  cores, several times slower, and gains nothing on operands that are TF32 values already.
- ``"fp32"``: ``input_precision="ieee"``: float32 operands are not TF32 values, so the tensor cores'
  conversion would add an operand error the fp32 bound does not have (``OPERAND_U["fp32"] = 0``); an
  IEEE float32 FMA rounds each product-plus-sum once (``2^-24 <= 2^-22`` relative to it, hence to the
  sum of absolute terms).
- ``"bf16"``: bfloat16 operands (8-bit significands: products exact), float32 accumulation; the input
  precision setting applies to float32 operands only (passed as Triton's default, ``"tf32"``).

Under ``TRITON_INTERPRET=1`` (CPU tensors, the unit tests) ``tl.dot`` is NumPy's float32 ``matmul`` of
each K block plus the accumulator: IEEE float32, within the same bound. (The interpreter of Triton 3.9
multiplies bfloat16 blocks as their raw 16-bit patterns, so there the kernel converts them to float32
first, exactly: the products were exact in float32 anyway.)

The summation order differs from ``torch.mm``'s, so ``g`` may differ from the torch path's tile in the
last bits; the certificate holds for either, so the certified neighbours and the float64 re-ranked
distances are the same, while the candidates, floors and re-ranked pairs may differ.

Triton is imported only when a kernel is first needed (:func:`available`, :func:`screen_tile`);
``gelora`` works without it.
"""

from __future__ import annotations

import os
from typing import Any

from gelora.errors import ConfigError

#: columns (rows) per group of the group minima; must equal ``_knn_torch.GROUP``
GROUP = 16

#: (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) that ``triton.autotune`` tries on the GPU, per
#: operand dtype (it times them on the first tile of each width ``K``, input precision and dtype, and
#: skips those that do not fit; :func:`tuned_configs` reports the choice). Untimed so far: a starting set
#: around the usual 128 x 128 Hopper tiles
GPU_CONFIGS = {
    "float32": [
        (128, 128, 32, 4, 3),
        (128, 128, 32, 8, 3),
        (128, 256, 32, 8, 3),
        (256, 128, 32, 8, 3),
        (64, 128, 32, 4, 4),
        (128, 128, 16, 8, 4),
    ],
    "bfloat16": [
        (128, 128, 64, 4, 3),
        (128, 128, 64, 8, 3),
        (128, 256, 64, 8, 3),
        (256, 128, 64, 8, 3),
        (64, 128, 64, 4, 4),
        (128, 128, 32, 8, 4),
    ],
}
#: the one configuration under the interpreter (no timing there): small blocks, so that the unit tests'
#: tiles span several programs and exercise the masks
INTERPRET_BLOCKS = (32, 32, 16, 1, 1)

_KERNELS: dict[tuple[bool, str], Any] = {}

#: (BLOCK_M, BLOCK_N) of :func:`row_group_min` on the GPU (a plain read-reduce-write: 64 x 256 float32 is
#: 64 KiB per program in registers over 8 warps) and under the interpreter (several programs per test tile)
GROUP_MIN_BLOCKS = {"gpu": (64, 256), "interpret": (16, 32)}
_GROUP_MIN_KERNELS: dict[bool, Any] = {}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_version() -> str | None:
    """The installed Triton's version, or ``None`` when it does not import."""
    try:
        import triton  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(triton.__version__)


def available(device: Any, setting: str = "product") -> bool:
    """Whether this module's kernels (:func:`screen_tile`, :func:`row_group_min`) can run on ``device``:
    Triton imports and the device is CUDA, or it is the CPU under ``TRITON_INTERPRET=1``.

    Raises
    ------
    ConfigError
        If Triton is not installed (the caller asked for a Triton kernel explicitly: ``SELECT[setting]``).
    """
    if triton_version() is None:
        default = {"product": "torch", "group_min": "auto"}.get(setting, "its default")
        raise ConfigError(
            f"SELECT['{setting}'] = 'triton' needs the triton package (pip install triton); "
            f"it is not installed. Use SELECT['{setting}'] = '{default}'."
        )
    kind = getattr(device, "type", str(device))
    return kind == "cuda" or (kind == "cpu" and _interpreting())


def _kernel(dtype: str) -> Any:
    """The autotuned kernel for operands of ``dtype`` (``"float32"`` or ``"bfloat16"``), built on first use
    (per interpreter setting: ``triton.jit`` reads ``TRITON_INTERPRET`` when it decorates). Under the
    interpreter it has one configuration (autotune then times nothing), so the tests launch it exactly
    as the GPU does."""
    key = (_interpreting(), dtype)
    if key not in _KERNELS:
        import triton  # type: ignore[import-not-found,unused-ignore]

        from gelora.estimators._knn_triton_kernel import tile_kernel

        blocks = [INTERPRET_BLOCKS] if key[0] else GPU_CONFIGS[dtype]
        configs = [
            triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=st)
            for m, n, k, w, st in blocks
        ]
        _KERNELS[key] = triton.autotune(configs=configs, key=["K", "INPUT_PRECISION"])(
            triton.jit(tile_kernel)
        )
    return _KERNELS[key]


def tuned_configs() -> dict[str, str]:
    """The configuration autotune chose for each kernel built so far in this process (GPU kernels only;
    for the timing script's JSON)."""
    return {
        dtype: str(kernel.best_config)
        for (interp, dtype), kernel in _KERNELS.items()
        if not interp and getattr(kernel, "best_config", None) is not None
    }


def input_precision(precision: str) -> str:
    """``tl.dot``'s ``input_precision`` for a screen precision (module docstring)."""
    if precision not in ("fp32", "tf32", "bf16"):
        raise ConfigError(f"the Triton screen takes fp32, tf32 or bf16 operands, got {precision!r}")
    return (
        "ieee" if precision == "fp32" else "tf32"
    )  # bf16: Triton's default; it applies to fp32 operands only


def screen_tile(
    a: Any, b: Any, rows_valid: int, cols_valid: int, diagonal: bool, precision: str
) -> tuple[Any, Any, Any]:
    """One tile of the screen and its group minima, in one kernel (module docstring).

    Parameters
    ----------
    a : torch.Tensor, shape (M, W)
        Left factors of the tile's rows (float32, or bfloat16 for ``precision="bf16"``), M a multiple
        of :data:`GROUP`.
    b : torch.Tensor, shape (N, W)
        Right factors of its columns, same dtype, N a multiple of :data:`GROUP`.
    rows_valid, cols_valid : int
        Rows (columns) at and beyond these local positions are padding: set to ``inf``.
    diagonal : bool
        Whether the tile is on the diagonal (its diagonal, self pairs, set to ``inf``).
    precision : {"fp32", "tf32", "bf16"}
        The screen's precision (the operands are already rounded to it).

    Returns
    -------
    g : torch.Tensor, shape (M, N), float32
        The screening values, masked.
    row_min : torch.Tensor, shape (M, N / GROUP), float32
        Minima of each row's groups of GROUP consecutive columns of ``g``.
    col_min : torch.Tensor, shape (N, M / GROUP), float32
        Minima of each column's groups of GROUP consecutive rows of ``g`` (a transposed view).
    """
    import torch

    M, W = a.shape
    N = b.shape[0]
    if M % GROUP or N % GROUP or b.shape[1] != W or a.dtype != b.dtype:
        raise ConfigError(f"screen_tile needs (M, W) and (N, W) factors with M, N multiples of {GROUP}")
    prec = input_precision(precision)
    dtype = "bfloat16" if a.dtype == torch.bfloat16 else "float32"
    kernel = _kernel(dtype)
    g = torch.empty((M, N), dtype=torch.float32, device=a.device)
    row_min = torch.empty((M, N // GROUP), dtype=torch.float32, device=a.device)
    col_min = torch.empty((M // GROUP, N), dtype=torch.float32, device=a.device)

    def grid(meta: dict[str, Any]) -> tuple[int, int]:
        return -(-M // meta["BLOCK_M"]), -(-N // meta["BLOCK_N"])

    kernel[grid](
        a,
        b,
        g,
        row_min,
        col_min,
        M,
        N,
        W,
        rows_valid,
        cols_valid,
        0 if diagonal else -(M + N),  # local column - local row of the self pairs (none off the diagonal)
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        GROUP_SIZE=GROUP,
        INPUT_PRECISION=prec,
        UPCAST=_interpreting() and dtype == "bfloat16",
    )
    return g, row_min, col_min.T


def _group_min_kernel() -> Any:
    key = _interpreting()
    if key not in _GROUP_MIN_KERNELS:
        import triton  # type: ignore[import-not-found,unused-ignore]

        from gelora.estimators._knn_triton_kernel import row_group_min_kernel

        _GROUP_MIN_KERNELS[key] = triton.jit(row_group_min_kernel)
    return _GROUP_MIN_KERNELS[key]


def row_group_min(g: Any) -> Any:
    """Minima of each row's groups of :data:`GROUP` consecutive columns of ``g`` (M, N), float32 with unit
    column stride and N a multiple of GROUP, in one read of ``g`` (``SELECT["group_min"] = "triton"``;
    the same values as :func:`~gelora.estimators._knn_torch._row_group_min`'s other kernels: a minimum
    rounds nothing).

    Returns
    -------
    torch.Tensor, shape (M, N / GROUP), float32
    """
    import torch

    M, N = g.shape
    if N % GROUP or g.dtype != torch.float32 or (M > 1 and g.stride(1) != 1):
        raise ConfigError(
            f"row_group_min needs a float32 (M, N) tile with unit column stride, N a multiple of {GROUP}"
        )
    out = torch.empty((M, N // GROUP), dtype=torch.float32, device=g.device)
    bm, bn = GROUP_MIN_BLOCKS["interpret" if _interpreting() else "gpu"]
    _group_min_kernel()[(-(-M // bm), -(-N // bn))](
        g,
        out,
        M,
        N,
        g.stride(0),
        BLOCK_M=bm,
        BLOCK_N=bn,
        GROUP_SIZE=GROUP,
        num_warps=1 if _interpreting() else 8,
    )
    return out
