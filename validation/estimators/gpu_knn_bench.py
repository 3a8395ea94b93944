"""One command for issue 20's GPU target: the exact k-NN against the TF32 and bf16 Gram products.

For each shape ``(n, D)`` and data set it measures, in the same process on one device:

- ``knn_s``: :func:`gelora.estimators.knn_distances` (torch backend, screen precision ``--precision``,
  default TF32 on CUDA), the whole call including the exact float64 re-rank and the copy to the host;
- ``gram_tf32_s`` / ``gram_bf16_s``: the full Gram product ``X X^T`` (``2 n^2 D`` flops) in row blocks of
  at most 1 GiB of output, TF32 tensor cores on float32 operands and bf16 operands (bf16 output);
- exactness: on ``--check-rows`` seeded query rows, the k nearest neighbours from an independent float64
  reference (float64 Gram distances of the centred data pick 8 k candidates, whose exact distances by
  differences give the k nearest; the reference certifies itself: the 8k-th float64 distance must exceed the
  k-th by more than the float64 error bound) must equal ours, indices and distances.

Every timing is the minimum over ``--repeats`` runs after one warm-up (the warm-up also compiles the fused
re-rank kernel). Each finished cell is written at once (atomically) to ``--out``; a rerun skips them.

    python -m validation.estimators.gpu_knn_bench --device cuda --out gpu_knn_bench.json

Data: ``gaussian`` (standard normal float32: every distance within a few per cent of the others, the hardest
case for a screen) and ``tanh`` (a 10-dimensional manifold pushed through tanh into R^D plus noise 1e-3:
full linear rank, like hidden states). It also runs on the CPU at tiny sizes (unit tests).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gelora._io import atomic_write_json, read_json
from gelora.estimators import _knn_torch, knn_distances

SHAPES = ((65536, 768), (65536, 4096), (200000, 768), (200000, 4096))
DATA = ("gaussian", "tanh")


def make_data(kind: str, n: int, D: int, device: torch.device, seed: int) -> torch.Tensor:
    """float32 data (n, D) generated on ``device`` (see the module docstring)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(n, D, generator=gen, device=device, dtype=torch.float32)
    if kind == "tanh":
        t = torch.rand(n, 10, generator=gen, device=device, dtype=torch.float32)
        W = torch.randn(10, D, generator=gen, device=device, dtype=torch.float32)
        b = torch.randn(D, generator=gen, device=device, dtype=torch.float32)
        X = torch.tanh(t @ W + b)
        X += 1e-3 * torch.randn(n, D, generator=gen, device=device, dtype=torch.float32)
        return X
    raise ValueError(f"unknown data {kind!r}; expected one of {DATA}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Minimum wall time of ``repeats`` calls after one warm-up, and the last result."""
    out = fn()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), out


def _gram(X: torch.Tensor, block: int, precision: str) -> None:
    """``X X^T`` in row blocks (results discarded); float32 operands use TF32 tensor cores on CUDA."""
    with _knn_torch._tf32_matmul(X.device, precision == "tf32"):
        for s in range(0, X.shape[0], block):
            torch.mm(X[s : s + block], X.T)


def gram_seconds(X: torch.Tensor, precision: str, repeats: int) -> float:
    """Minimum seconds of the full Gram product ``X X^T`` (row blocks of at most 1 GiB of output), with
    TF32 tensor cores (``"tf32"``) or bfloat16 operands (``"bf16"``): the yardstick of the k-NN."""
    n = X.shape[0]
    block = max(1, min(n, 2**30 // (4 * n)))
    Xp = X.to(torch.bfloat16) if precision == "bf16" else X
    seconds, _ = _timed(lambda: _gram(Xp, block, precision), X.device, repeats)
    return seconds


def reset_peak(device: torch.device) -> None:
    """Start a peak-memory measurement (CUDA; nothing elsewhere)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since :func:`reset_peak` (GiB, inputs included); None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def add_cli_arguments(p: argparse.ArgumentParser, *, repeats: int, out: str) -> None:
    """The command-line options the GPU k-NN benchmarks share (``--shapes``, ``--data`` are each's own)."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--precision", default="auto", choices=list(_knn_torch.PRECISIONS))
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--check-rows", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(out))


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``"65536x768,200000x4096"`` -> ``[(65536, 768), (200000, 4096)]``."""
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]


def load_doc(path: Path, device: str) -> dict[str, Any]:
    """The results file to resume (``{"cells": [...]}``), stamped with this run's device and torch."""
    doc: dict[str, Any] = read_json(path) if path.exists() else {"cells": []}
    doc["device"] = torch.cuda.get_device_name() if device.startswith("cuda") else device
    doc["torch"] = torch.__version__
    return doc


def phases_of(fn: Callable[[], Any]) -> dict[str, float]:
    """Seconds per phase of one ``knn_distances`` call ``fn()`` made with the device synchronised between
    phases (:data:`~gelora.estimators._knn_torch.PHASE_TIMING`)."""
    _knn_torch.PHASE_TIMING["on"] = True
    try:
        fn()
        return dict(_knn_torch.LAST_STATS[0].phases)
    finally:
        _knn_torch.PHASE_TIMING["on"] = False


def reference_rows(
    X: torch.Tensor, k: int, check_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded sorted sample of ``check_rows`` row indices and their :func:`reference_knn` distances and
    indices (each (rows, k))."""
    rng = np.random.default_rng(seed)
    rows_np = np.sort(rng.choice(X.shape[0], size=min(X.shape[0], check_rows), replace=False))
    d_ref, i_ref = reference_knn(X, torch.from_numpy(rows_np).to(X.device), k)
    return rows_np, d_ref, i_ref


def reference_knn(X: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 k nearest neighbours of ``rows`` among all points (self excluded), independently of the
    screen: float64 Gram distances of the centred data choose 8k candidates, exact differences rank them.

    Raises RuntimeError if the 8k-th float64 Gram distance is not beyond the k-th by the float64 error
    bound ``16 (D + 8) u64 (|c_i| + max |c|)^2`` (the candidates would not provably contain the answer).
    """
    n, D = X.shape
    mean = X.mean(dim=0, dtype=torch.float64)
    c = min(n - 1, 8 * k)
    sq = torch.empty(n, dtype=torch.float64, device=X.device)
    G = torch.empty((rows.shape[0], n), dtype=torch.float64, device=X.device)
    Yr = X[rows].double() - mean
    step = max(1, 2**28 // (8 * D))
    for t in range(0, n, step):
        Yc = X[t : t + step].double() - mean
        sq[t : t + step] = torch.einsum("ij,ij->i", Yc, Yc)
        G[:, t : t + step] = Yr @ Yc.T
    d2 = sq[rows, None] + sq[None, :] - 2.0 * G
    d2[torch.arange(rows.shape[0], device=X.device), rows] = float("inf")
    v, cand = torch.topk(d2, c, dim=1, largest=False, sorted=True)
    bound = 16 * (D + 8) * 2.0**-53 * (sq[rows].sqrt() + sq.sqrt().max()) ** 2
    if c < n - 1 and not bool((v[:, -1] > v[:, k - 1] + 2 * bound).all()):
        raise RuntimeError("reference candidates not certified (ties beyond 8k neighbours)")
    diff = X[cand].double() - X[rows].double()[:, None, :]
    e = torch.einsum("ijk,ijk->ij", diff, diff)
    ci, perm = torch.sort(cand, dim=1)
    e = torch.gather(e, 1, perm)
    es, order = torch.sort(e, dim=1, stable=True)
    return es[:, :k].sqrt().cpu().numpy(), torch.gather(ci, 1, order[:, :k]).cpu().numpy()


def bench_cell(
    kind: str,
    n: int,
    D: int,
    *,
    device: str = "cuda",
    k: int = 20,
    precision: str = "auto",
    repeats: int = 2,
    check_rows: int = 1024,
    seed: int = 0,
    phases: bool = False,
) -> dict[str, Any]:
    """Time ours and both Gram products on one data set and shape; check exactness (module docstring).

    With ``phases`` one more call runs with the device synchronised between phases and records the seconds
    of each (``phases``: prepare, product, select, certify, rerank, fallback, transfer; ``phases_total_s``
    their sum, slightly above ``knn_s`` because of the synchronisations).
    """
    dev = torch.device(device)
    X = make_data(kind, n, D, dev, seed)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak(dev)
    knn_s, (dist, idx) = _timed(lambda: knn_distances(X, k, precision=precision), dev, repeats)
    stats = _knn_torch.LAST_STATS[0]
    peak = peak_gib(dev)
    phase_s = phases_of(lambda: knn_distances(X, k, precision=precision)) if phases else {}
    tf32_s = gram_seconds(X, "tf32", repeats)
    bf16_s = gram_seconds(X, "bf16", repeats)
    rows_np, d_ref, i_ref = reference_rows(X, k, check_rows, seed)
    same_idx = np.all(idx[rows_np] == i_ref, axis=1)
    rel = np.abs(dist[rows_np] - d_ref) / np.maximum(d_ref, np.finfo(np.float64).tiny)
    flops = 2.0 * n * n * D
    return {
        "data": kind,
        "n": n,
        "D": D,
        "k": k,
        "precision": stats.precision,
        "candidates_per_row": stats.candidates,
        "uncertified_rows": stats.uncertified_rows,
        "reranked_pairs_per_row": stats.reranked_pairs / n,
        "knn_s": knn_s,
        "gram_tf32_s": tf32_s,
        "gram_bf16_s": bf16_s,
        "ratio_knn_tf32": knn_s / tf32_s,
        "ratio_knn_bf16": knn_s / bf16_s,
        "tf32_tflops": flops / tf32_s / 1e12,
        "bf16_tflops": flops / bf16_s / 1e12,
        "peak_memory_gib": peak,
        "check_rows": int(rows_np.size),
        "rows_identical": int(same_idx.sum()),
        "max_rel_distance_diff": float(rel.max()),
        "repeats": repeats,
        "seed": seed,
        **({"phases": phase_s, "phases_total_s": sum(phase_s.values())} if phases else {}),
    }


def markdown(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| data | n | D | knn s | TF32 Gram s | bf16 Gram s | knn / TF32 | knn / bf16 | uncertified rows "
        "| identical rows | peak GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        peak = "–" if c["peak_memory_gib"] is None else f"{c['peak_memory_gib']:.1f}"
        lines.append(
            f"| {c['data']} | {c['n']} | {c['D']} | {c['knn_s']:.4f} | {c['gram_tf32_s']:.4f} | "
            f"{c['gram_bf16_s']:.4f} | {c['ratio_knn_tf32']:.2f} | {c['ratio_knn_bf16']:.2f} | "
            f"{c['uncertified_rows']} | {c['rows_identical']}/{c['check_rows']} | {peak} |"
        )
    return "\n".join(lines)


def phase_markdown(cells: list[dict[str, Any]]) -> str:
    """Seconds per phase of the cells that were profiled (``--phases``)."""
    names = ["prepare", "product", "select", "certify", "rerank", "fallback", "transfer"]
    lines = [
        "| data | n | D | " + " | ".join(names) + " | sum | knn s |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |",
    ]
    for c in cells:
        if "phases" not in c:
            continue
        ph = c["phases"]
        lines.append(
            f"| {c['data']} | {c['n']} | {c['D']} | "
            + " | ".join(f"{ph.get(m, 0.0):.4f}" for m in names)
            + f" | {c['phases_total_s']:.4f} | {c['knn_s']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: every (data, shape) cell, resumable JSON, Markdown table on stdout."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_arguments(p, repeats=2, out="gpu_knn_bench.json")
    p.add_argument(
        "--shapes", default=",".join(f"{n}x{D}" for n, D in SHAPES), help="e.g. 65536x768,200000x4096"
    )
    p.add_argument("--data", default=",".join(DATA))
    p.add_argument(
        "--phases", action="store_true", help="one more call per cell, timing its phases (synchronised)"
    )
    args = p.parse_args(argv)
    shapes = parse_shapes(args.shapes)
    doc = load_doc(args.out, args.device)
    done = {(c["data"], c["n"], c["D"], c["k"], c["precision"]) for c in doc["cells"]}
    for kind in args.data.split(","):
        for n, D in shapes:
            dev = torch.device(args.device)
            # what the cell records (LAST_STATS): "fp64" where the small-dimension rule applies
            direct = _knn_torch.uses_direct64(D, dev, args.precision)
            prec = "fp64" if direct else _knn_torch.resolve_precision(args.precision, dev)
            if (kind, n, D, args.k, prec) in done:
                continue
            cell = bench_cell(
                kind,
                n,
                D,
                device=args.device,
                k=args.k,
                precision=args.precision,
                repeats=args.repeats,
                check_rows=args.check_rows,
                seed=args.seed,
                phases=args.phases,
            )
            doc["cells"].append(cell)
            atomic_write_json(args.out, doc)
            print(markdown([cell]).splitlines()[-1], flush=True)
    print(markdown(doc["cells"]))
    if any("phases" in c for c in doc["cells"]):
        print()
        print(phase_markdown(doc["cells"]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
