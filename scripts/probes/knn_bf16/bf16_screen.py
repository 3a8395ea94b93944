"""Probe (not library code): candidates per row and bound checks of bfloat16 variants of the principal screen.

:func:`study` runs on the module's own screen coordinates (``_screen_basis``: ``w = [z, a]``, scaled by
a power of two so that max |w| is in [1/2, 1)) and, row block by row block against all points, counts
the candidates per row each variant keeps under its a-priori bound (one cut from the exact k-th upper
bound of the row, and the two-stage count: the k smallest plus those within the bound of their largest
exact distance), checks that no true neighbour is lost, measures on ~200 rows x all columns the
largest observed error / bound of each product, and times each variant's screening product over the
module's upper-triangle strips (``block`` rows each, the block threads, one BLAS/torch thread a call).

Variants:

* ``F32``: the module's float32 Gram form (model of its cut; the values are the exact float64 ones).
* ``A32``: Gram form, bf16 operands, hypothetical float32 output (a float64 Gram of the bf16 operands;
  torch on this CPU gives no float32 output).
* ``A16``: Gram form, bf16 operands and output (``torch.mm``); its bound adds ``u |G|``.
* ``B``: distance form, one bf16 GEMM with the norm columns (``knn_bf16.py``), triangle-inequality bound.
* ``C``: hi + lo split (three products in one GEMM of width 3 (p + 1) + 6), distance form.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from gelora.estimators import knn as K

U = 2.0**-8  # bfloat16 unit roundoff
U32 = 2.0**-24
U64 = 2.0**-53
EPS_ABS = 2.0**-100  # flushed subnormal terms


def _bf16(A: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(A, dtype=np.float32)).to(torch.bfloat16)


def _f64(T: torch.Tensor) -> np.ndarray:
    return T.to(torch.float32).numpy().astype(np.float64)


def _split3(q: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """``q`` (float64) as three bfloat16 pieces (float64 values) and the exact residual."""
    pieces, r = [], q.copy()
    for _ in range(3):
        h = _f64(_bf16(r))
        pieces.append(h)
        r = r - h
    return pieces, r


def _dist_form(parts_left: list[np.ndarray], parts_right: list[np.ndarray], q: np.ndarray):
    """bf16 factors [parts_left, q1, q2, q3, 1, 1, 1] and [parts_right, 1, 1, 1, q1, q2, q3], zero-padded
    to a multiple of 16 columns (every entry exact in bf16); also the residual of q and the width used."""
    (q1, q2, q3), rho = _split3(q)
    one = np.ones((q.size, 1))
    col = [q1[:, None], q2[:, None], q3[:, None]]
    L = np.hstack(parts_left + col + [one, one, one])
    R = np.hstack(parts_right + [one, one, one] + col)
    m = L.shape[1]
    width = -(-m // 16) * 16
    Lp, Rp = np.zeros((q.size, width)), np.zeros((q.size, width))
    Lp[:, :m], Rp[:, :m] = L, R
    Lt, Rt = _bf16(Lp), _bf16(Rp)
    assert np.array_equal(_f64(Lt), Lp) and np.array_equal(_f64(Rt), Rp), "factor entries not bf16-exact"
    return Lt, Rt, rho, m


def strip_time(left, right, block: int, repeats: int, full: bool = False) -> float:
    """Wall time (min of ``repeats``) of the products rows s..e x columns s..n (``full``: all columns)."""
    n = left.shape[0]
    if isinstance(left, torch.Tensor):

        def one(s: int) -> None:
            torch.mm(left[s : s + block], right[0 if full else s :].T)
    else:

        def one(s: int) -> None:
            np.matmul(left[s : s + block], right[0 if full else s :].T)

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with K._block_threads(K._n_workers()) as pool:
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                list(pool.map(one, range(0, n, block)))
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(torch_threads)
    return min(times)


def study(X: np.ndarray, ref_dist: np.ndarray, ref_idx: np.ndarray, k: int = 20, repeats: int = 3) -> None:
    n, D = X.shape
    t_start = time.time()
    Xc = X - X.mean(axis=0)
    Z, a = K._screen_basis(Xc, k, np.einsum("ij,ij->i", Xc, Xc))
    p = Z.shape[1]
    W = np.hstack([Z, a[:, None]])
    sc = 2.0 ** (-math.frexp(float(np.sqrt(np.einsum("ij,ij->i", W, W).max())))[1])  # a power of two
    W = W * sc
    a_s = a * sc
    normsW = np.sqrt(np.einsum("ij,ij->i", W, W))
    Rmax = normsW.max()
    eta = K._gamma(16 * (D + 8), U64) * (normsW + Rmax) ** 2  # the module's float64 allowance (scaled)
    print(
        f"n={n} D={D}: p={p}, |w| max {Rmax:.3f} mean {normsW.mean():.3f}; k-th NN distance / |w_i| median "
        f"{np.median(ref_dist[:, -1] * sc / normsW):.3f}; residual a / |w| median {np.median(a_s / normsW):.3f}"
    )

    # B: distance form of w^ = bf16(w)
    What = _f64(_bf16(W))
    delta_B = np.sqrt(np.einsum("ij,ij->i", W - What, W - What)) * (1 + 1e-12)
    qB = np.einsum("ij,ij->i", What, What)
    LB, RB, rhoB, mB = _dist_form([What], [-2.0 * What], qB)
    RhatB = np.sqrt(qB) * (1 + 1e-12)
    # C: w ~ hi + lo, the products hi.hi + hi.lo + lo.hi (lo.lo dropped, bounded by |lo_i| |lo_j|)
    Hi, Lo = What, _f64(_bf16(W - What))
    WhC = Hi + Lo
    delta_C = np.sqrt(np.einsum("ij,ij->i", W - WhC, W - WhC)) * (1 + 1e-12)
    qC = np.einsum("ij,ij->i", WhC, WhC)
    LC, RC, rhoC, mC = _dist_form([Hi, Hi, Lo], [-2.0 * Hi, -2.0 * Lo, -2.0 * Hi], qC)
    lamC = np.sqrt(np.einsum("ij,ij->i", Lo, Lo)) * (1 + 1e-12)
    RhatC = np.sqrt(np.einsum("ij,ij->i", Hi, Hi)) * (1 + 1e-12) + lamC
    print(
        f"max |w - bf16(w)| / |w|: B {np.max(delta_B / normsW):.2e} (mean {np.mean(delta_B / normsW):.2e}, "
        f"u = {U:.2e}), C {np.max(delta_C / normsW):.2e}; widths B {LB.shape[1]} (m = {mB}), "
        f"C {LC.shape[1]} (m = {mC}); max |rho| B {np.abs(rhoB).max():.1e} C {np.abs(rhoC).max():.1e}"
    )

    def row_threshold(S, rows, delta, Rhat, rho, lam, m):
        """Cut on the raw output: out_ij <= thr_i implied by |w^_i - w^_j| <= S_i + delta_i + max delta."""
        Sig = (1 + 2.0**-6) * (Rhat[rows] + Rhat.max()) ** 2
        extra = np.abs(rho)[rows] + np.abs(rho).max() + 2 * lam[rows] * lam.max()
        return (
            (1 + U) * ((S + delta[rows] + delta.max()) ** 2 + extra)
            + (1 + U) * K._gamma(m, U32) * Sig
            + EPS_ABS
        )

    def dist_hi(out, rows, Rhat, rho, lam, m):
        """Upper bound of |w^_i - w^_j|^2 from the bf16 output (b, n)."""
        Sig = (1 + 2.0**-6) * (Rhat[rows, None] + Rhat[None, :]) ** 2
        extra = np.abs(rho)[rows, None] + np.abs(rho)[None, :] + 2 * lam[rows, None] * lam[None, :]
        return np.maximum(out + (1 + U) * K._gamma(m, U32) * Sig + EPS_ABS, 0.0) / (1 - U) + extra

    names = ("F32", "A32", "A16", "B", "C")
    cand = {v: np.zeros(n, np.int64) for v in names}
    two = {v: np.zeros(n, np.int64) for v in names}
    miss = dict.fromkeys(names, 0)
    ratio = dict.fromkeys(("A16 Gram (bound with u|G|)", "A16 Gram (without)", "B", "C"), 0.0)
    check_rows = set(range(0, n, max(1, n // 200)))
    Whalf = _bf16(What)
    sW = np.einsum("ij,ij->i", W, W)
    gam_p = K._gamma(p + 1, U32)
    rel = {
        "F32": 2 * K._gamma(p + 5, U32),  # the module: E_i = gamma_{p+5}(u32) (R_i + Rmax)^2
        "A32": 2 * ((2 * U + U * U) + gam_p * (1 + U) ** 2),
        "A16": 2 * ((2 * U + U * U) + (gam_p * (1 + U) + U) * (1 + U) ** 3),
    }
    B_ROWS = 500
    for s in range(0, n, B_ROWS):
        e = min(n, s + B_ROWS)
        rows = np.arange(s, e)
        selfmask = (np.arange(e - s), rows)
        truth = ref_idx[s:e]
        # Gram forms: g ~ L = |w_i - w_j|^2 (the module's screening value), |g - L| <= E_i
        G64 = W[s:e] @ W.T
        G16 = _f64(torch.mm(Whalf[s:e], Whalf.T))  # bf16 output
        for name, G in (("F32", G64), ("A32", What[s:e] @ What.T), ("A16", G16)):
            g = sW[s:e, None] + sW[None, :] - 2 * G
            g[selfmask] = np.inf
            Ei = rel[name] * (normsW[rows] + Rmax) ** 2 / 2 + eta[rows]
            T = np.partition(g + 4.0 * a_s[rows, None] * a_s[None, :], k - 1, axis=1)[:, k - 1]
            keep = g <= (T + 4 * Ei)[:, None]
            first = np.argpartition(g, k - 1, axis=1)[:, :k]
            dfirst = K._exact_d2_rows(X, rows, first, 16 * 2**20).max(1) * sc * sc
            keep2 = g <= (dfirst + 4 * Ei)[:, None]  # the module's second stage (slack 4 E_i)
            np.put_along_axis(keep2, first, True, 1)
            keep[selfmask] = keep2[selfmask] = False
            cand[name][s:e], two[name][s:e] = keep.sum(1), keep2.sum(1)
            miss[name] += int((~np.take_along_axis(keep, truth, 1)).sum())
        cr = [i - s for i in range(s, e) if i in check_rows]
        if cr:
            Sabs = np.abs(What[s:e][cr]) @ np.abs(What).T
            no_out = (2 * U + U * U) * normsW[s:e][cr, None] * normsW[None, :] + gam_p * Sabs * (1 + 1e-6)
            err = np.abs(G16[cr] - G64[cr])
            ratio["A16 Gram (without)"] = max(ratio["A16 Gram (without)"], float((err / no_out).max()))
            bnd = no_out + U * np.abs(G16[cr]) + U * gam_p * Sabs
            ratio["A16 Gram (bound with u|G|)"] = max(
                ratio["A16 Gram (bound with u|G|)"], float((err / bnd).max())
            )
        # distance forms, bf16 output
        for name, Lt, Rt, delta, Rhat, rho, lam, m, Wh in (
            ("B", LB, RB, delta_B, RhatB, rhoB, np.zeros(n), mB, What),
            ("C", LC, RC, delta_C, RhatC, rhoC, lamC, mC, WhC),
        ):
            out = _f64(torch.mm(Lt[s:e], Rt.T))
            out[selfmask] = np.inf
            ah = Wh[:, p]
            up = (
                np.sqrt(dist_hi(out, rows, Rhat, rho, lam, m) + 4 * np.abs(ah[rows, None] * ah[None, :]))
                + delta[rows, None]
                + delta[None, :]
            ) ** 2 * (1 + 1e-12)
            up[selfmask] = np.inf
            T = np.partition(up, k - 1, axis=1)[:, k - 1] + 2 * eta[rows]
            keep = out <= row_threshold(np.sqrt(T + 2 * eta[rows]), rows, delta, Rhat, rho, lam, m)[:, None]
            first = np.argpartition(out, k - 1, axis=1)[:, :k]
            dfirst = K._exact_d2_rows(X, rows, first, 16 * 2**20).max(1) * sc * sc
            keep2 = (
                out <= row_threshold(np.sqrt(dfirst + 4 * eta[rows]), rows, delta, Rhat, rho, lam, m)[:, None]
            )
            np.put_along_axis(keep2, first, True, 1)
            keep[selfmask] = keep2[selfmask] = False
            cand[name][s:e], two[name][s:e] = keep.sum(1), keep2.sum(1)
            miss[name] += int(
                (~np.take_along_axis(keep, truth, 1)).sum() + (~np.take_along_axis(keep2, truth, 1)).sum()
            )
            if cr:
                V = np.stack([((Wh - Wh[s + c]) ** 2).sum(1) for c in cr])  # exact, by differences
                V -= rho[s:e][cr, None] + rho[None, :]
                if name == "C":
                    V += 2 * (Lo[s:e][cr] @ Lo.T)  # the product omits lo_i . lo_j
                Sabs = np.abs(_f64(Lt[s:e][cr])) @ np.abs(_f64(Rt)).T
                bnd = U * np.abs(V) + (1 + U) * K._gamma(m, U32) * Sabs + EPS_ABS
                o = out[cr].copy()
                o[np.arange(len(cr)), s + np.array(cr)] = V[np.arange(len(cr)), s + np.array(cr)]
                ratio[name] = max(ratio[name], float((np.abs(o - V) / bnd).max()))
    print(f"pass over {n} rows: {time.time() - t_start:.0f} s")
    print(
        "max observed error / bound (~200 rows x all columns): "
        + ", ".join(f"{key} {v:.3f}" for key, v in ratio.items())
    )
    for name in names:
        print(
            f"{name:4s}: one cut: candidates/row mean {cand[name].mean():6.1f} max {cand[name].max():4d} | "
            f"two-stage: exact pairs/row mean {two[name].mean():6.1f} max {two[name].max():4d} | "
            f"true neighbours missed: {miss[name]}"
        )

    # the products alone, over the module's upper-triangle strips
    block = min(max(1, K.SCREEN_BLOCK_BYTES // (4 * n)), -(-n // (2 * K._n_workers())))
    left32, right32 = K._gram_factors(Z, a, np.float32)
    products = {
        f"F32 numpy float32, width {left32.shape[1]}": (left32, right32),
        f"A   torch bf16 Gram, width {Whalf.shape[1]}": (Whalf, Whalf),
        f"B   torch bf16, width {LB.shape[1]}": (LB, RB),
        f"C   torch bf16, width {LC.shape[1]}": (LC, RC),
    }
    print(
        f"screening product over the upper-triangle strips ({block} rows each, {K._n_workers()} threads), "
        f"wall, min of {repeats}:"
    )
    for label, (lt, rt) in products.items():
        print(f"  {label:36s} {strip_time(lt, rt, block, repeats):.3f} s")
    full = strip_time(left32, right32, block, repeats, full=True)
    print(
        f"  F32 numpy float32 over whole rows (the module's path below width {K.SYMMETRIC_MIN_WIDTH}) {full:.3f} s"
    )
