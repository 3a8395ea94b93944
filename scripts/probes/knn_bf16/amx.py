"""Probe (not library code): the bf16 screen on a CPU with AMX-BF16, measured (issue 20).

Run from the repository root (docs/performance.md, "bf16 screen on the CPU (AMX): measured, not
adopted")::

    export OMP_NUM_THREADS=2
    python scripts/probes/knn_bf16/amx.py matmul                # 16000 x p @ p x 16000, p = 768, 128
    python scripts/probes/knn_bf16/amx.py backends tanh         # NumPy default vs torch fp32 / bf16 on CPU
    python scripts/probes/knn_bf16/amx.py backends rank30
    python scripts/probes/knn_bf16/amx.py backends FILE.npy     # any (n, D) float64 array
    python scripts/probes/knn_bf16/amx.py hidden MODEL_DIR FILE.npy --layer 6   # real data, below

``matmul``: the raw product in float32 NumPy (its BLAS), float32 torch and bf16 torch (oneDNN; the
kernel's name is printed from oneDNN's verbose output), two threads, the three alternating call by
call; minimum and all times of ``--repeats`` calls, ratios of the minima.

``backends``: ``knn_distances(X, 20)`` (the default: the NumPy backend) against the torch backend on
the CPU with ``precision="fp32"`` and ``"bf16"`` (``_knn_torch``: Gram-form screen over the full D,
per-row certificate, float64 fallback for uncertified rows, exact float64 re-rank), alternating call
by call after one warm-up call each, which also checks that every result has the default's neighbours
(indices; the distances differ in the last bits, the torch re-rank sums in another order) and that
the default equals a float64 brute force on 200 evenly spaced rows. Prints the
torch screen's statistics (rows without a certificate, re-ranked pairs per row) and, from one extra
call with phase timers, its phase times.

``hidden``: real, full-rank data: the hidden states of one layer of a local encoder (e.g. MPNet-base,
width 768) on 16,000 SST-2 tokens, as ``validation.estimators.knn_profile --hidden`` collects them
(``GELORA_DATA_DIR`` must hold ``glue/SST-2/train.tsv.gz``), saved as a float64 ``.npy`` for
``backends`` and for ``run.py e2e FILE.npy``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
K_NN = 20


def _times(fns: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def _report(times: dict[str, list[float]], base: str) -> None:
    b = min(times[base])
    for name, ts in times.items():
        print(
            f"  {name:34s} min {min(ts):.3f} s  ({base} / this: {b / min(ts):.2f}x)  all "
            + " ".join(f"{t:.3f}" for t in ts)
        )


def cmd_matmul(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(2)
    a = torch.randn(256, 768).bfloat16()
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        torch.mm(a, a.T)  # oneDNN prints the kernel (stdout)
    sys.stdout.flush()
    for p in args.widths:
        L = np.random.default_rng(0).standard_normal((args.n, p)).astype(np.float32)
        LT = np.ascontiguousarray(L.T)
        Lt, Lb = torch.from_numpy(L), torch.from_numpy(L).to(torch.bfloat16)
        Ltt, Lbt = Lt.T.contiguous(), Lb.T.contiguous()
        fns = {
            "numpy float32": lambda L=L, LT=LT: L @ LT,
            "torch float32": lambda Lt=Lt, Ltt=Ltt: torch.mm(Lt, Ltt),
            "torch bf16 (bf16 out)": lambda Lb=Lb, Lbt=Lbt: torch.mm(Lb, Lbt),
        }
        for f in fns.values():
            f()  # warm-up
        print(f"{args.n} x {p} @ {p} x {args.n}, {args.repeats} calls each, alternating:")
        _report(_times(fns, args.repeats), "numpy float32")


def _data(kind: str) -> np.ndarray:
    if kind.endswith(".npy"):
        return np.ascontiguousarray(np.load(kind), dtype=np.float64)
    from synthetic.bench_data import bench_data

    return bench_data(kind, 16000, 768)


def _brute_force_rows(X: np.ndarray, dist: np.ndarray, idx: np.ndarray, rows: int = 200) -> int:
    bad = 0
    for i in np.linspace(0, X.shape[0] - 1, rows).astype(int):
        diff = X - X[i]
        d2 = np.einsum("ij,ij->i", diff, diff)
        d2[i] = np.inf
        order = np.lexsort((np.arange(X.shape[0]), d2))[:K_NN]
        bad += int(not (np.array_equal(order, idx[i]) and np.array_equal(np.sqrt(d2[order]), dist[i])))
    return bad


def cmd_backends(args: argparse.Namespace) -> None:
    import torch

    from gelora.estimators import _knn_torch as KT
    from gelora.estimators.knn import knn_distances

    torch.set_num_threads(2)
    X = _data(args.kind)
    n, D = X.shape

    def torch_knn(prec: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        return lambda: knn_distances(X, K_NN, backend="torch", device="cpu", precision=prec)

    fns: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
        "numpy (default)": lambda: knn_distances(X, K_NN)
    }
    for prec in args.precisions:
        fns[f"torch cpu {prec}"] = torch_knn(prec)
    ref = fns["numpy (default)"]()
    print(
        f"{args.kind}: n={n} D={D}; default vs float64 brute force, rows differing: "
        f"{_brute_force_rows(X, *ref)} of 200"
    )
    stats = {}
    for name, fn in list(fns.items())[1:]:
        t = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t
        s = KT.LAST_STATS[0]
        rows = int(np.sum(np.any(res[1] != ref[1], axis=1)))
        rel = float(np.max(np.abs(res[0] - ref[0]) / np.maximum(ref[0], 1e-300)))
        print(
            f"  {name}: warm-up {dt:.2f} s; rows whose neighbours differ from the default's: {rows} "
            f"of {n}; distances: largest relative difference {rel:.1e} (the re-rank sums in another "
            f"order); "
            f"candidates kept per row c = {s.candidates}, rows without a certificate (float64 "
            f"fallback) {s.uncertified_rows} ({100 * s.uncertified_rows / n:.1f} %), re-ranked pairs "
            f"{s.reranked_pairs} ({s.reranked_pairs / n:.1f} per row)"
        )
        stats[name] = s
    times = _times(fns, args.repeats)
    print(f"{args.repeats} calls each, alternating:")
    _report(times, "numpy (default)")
    KT.PHASE_TIMING["on"] = True
    try:
        for name, fn in list(fns.items())[1:]:
            fn()
            ph = KT.LAST_STATS[0].phases
            print(f"  {name} phases (one call): " + ", ".join(f"{k} {v:.3f}" for k, v in ph.items()))
    finally:
        KT.PHASE_TIMING["on"] = False


def cmd_hidden(args: argparse.Namespace) -> None:
    from gelora.hidden_states import collect_hidden_states
    from gelora.models import load_model
    from validation.data.glue import load_glue

    lm = load_model(args.model, device="cpu")
    texts = load_glue("sst2", "train").take(4000, seed=0).joined_texts()
    hs = collect_hidden_states(lm.model, lm.tokenizer, texts, max_tokens=args.n, batch_size=64, seed=0)
    X = np.ascontiguousarray(hs.layers[args.layer].float().numpy(), dtype=np.float64)
    np.save(args.out, X)
    print(f"{args.out}: layer {args.layer} of {args.model}, shape {X.shape}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("matmul")
    p.add_argument("--n", type=int, default=16000)
    p.add_argument("--widths", type=int, nargs="+", default=[768, 128])
    p.set_defaults(fn=cmd_matmul)
    p = sub.add_parser("backends")
    p.add_argument("kind", help="tanh, rank30 (bench_data at 16000 x 768) or a .npy file")
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    p.set_defaults(fn=cmd_backends)
    p = sub.add_parser("hidden")
    p.add_argument("model", help="a local model directory (load_model)")
    p.add_argument("out", help="the .npy file written")
    p.add_argument("--layer", type=int, default=6)
    p.add_argument("--n", type=int, default=16000, help="tokens")
    p.set_defaults(fn=cmd_hidden)
    args = parser.parse_args(argv)
    import torch

    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    isa = sorted({f for f in flags.split() if f.startswith(("amx", "avx512_bf16"))})
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, NumPy "
        f"{np.__version__}, {os.cpu_count()} CPUs, {' '.join(isa)}; load {os.getloadavg()}",
        flush=True,
    )
    args.fn(args)
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
