"""Probe (not library code): a bfloat16 screening product for the NumPy k-NN (issue 20), measured.

Measures, on the benchmark's data at n = 16,000, D = 768 (``synthetic.bench_data``), what a bfloat16
product could do for ``knn_distances(X, 20, backend="numpy")``: where today's float32 module spends its
time, how many candidates per row bfloat16 screens keep under a rigorous bound, and an end-to-end
prototype against the module in the same run (docs/performance.md, "The bfloat16 screen, measured").
Run from the repository root; every timing is the minimum over ``--repeats`` calls (module and probe
alternating), after one warm-up call that also checks that the results are bit-identical::

    export OMP_NUM_THREADS=2
    python scripts/probes/knn_bf16/run.py phases tanh        # phase times of the float32 module
    python scripts/probes/knn_bf16/run.py screen tanh        # variants A/B/C: candidates, error/bound
    python scripts/probes/knn_bf16/run.py e2e tanh           # prototype B against the module
    python scripts/probes/knn_bf16/run.py ranks tanh 93      # both at a fixed screen rank
    python scripts/probes/knn_bf16/run.py accum              # oneDNN's bf16 accumulation model
    python scripts/probes/knn_bf16/run.py rerank tanh        # exact re-rank cost per pair
    python scripts/probes/knn_bf16/run.py verify tanh        # cached reference against brute force
    python scripts/probes/knn_bf16/run.py e2e FILE.npy       # any (n, D) array (amx.py hidden writes one)

The phase timers come from ``knn_instr.patch`` (a unified diff against gelora/estimators/knn.py),
applied here to a copy of the installed module in the work directory (``--work``, default a folder
under the system temp dir), which also caches the reference answers (the module's own result).
A command waits (up to ``--wait`` s) until the 1-minute load is below ``--max-load`` before it starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PATCH = HERE / "knn_instr.patch"
K_NN = 20
for _path in (str(ROOT), str(HERE)):  # the repository's packages, then this probe's modules
    if _path not in sys.path:
        sys.path.insert(0, _path)


# ------------------------------------------------------------------ the instrumented module


class PatchError(RuntimeError):
    pass


def apply_patch(text: str, patch: str) -> str:
    """``text`` with the unified diff ``patch`` applied; hunks must match exactly (any line offset)."""
    lines = text.splitlines(keepends=True)
    plines = patch.splitlines(keepends=True)
    i = next((j for j, line in enumerate(plines) if line.startswith("--- ")), None)
    if i is None or not plines[i + 1].startswith("+++ "):
        raise PatchError("no unified diff header in the patch")
    out: list[str] = []
    pos = 0  # next unconsumed line of text
    i += 2
    while i < len(plines):
        head = plines[i]
        if not head.startswith("@@"):
            raise PatchError(f"patch line {i + 1}: expected a hunk header, got {head!r}")
        start = int(head.split()[1].lstrip("-").split(",")[0]) - 1
        old: list[str] = []
        new: list[str] = []
        i += 1
        while i < len(plines) and not plines[i].startswith("@@"):
            tag, body = plines[i][:1], plines[i][1:]
            if tag == "\n":  # a blank context line whose leading space an editor stripped
                tag, body = " ", "\n"
            if tag == " ":
                old.append(body)
                new.append(body)
            elif tag == "-":
                old.append(body)
            elif tag == "+":
                new.append(body)
            elif tag != "\\":
                raise PatchError(f"patch line {i + 1}: unexpected {plines[i]!r}")
            i += 1
        hits = [s for s in range(pos, len(lines) - len(old) + 1) if lines[s : s + len(old)] == old]
        if not hits:
            raise PatchError(f"the hunk {head.strip()} does not match (its context changed)")
        at = min(hits, key=lambda s: abs(s - start))
        out += lines[pos:at] + new
        pos = at + len(old)
    return "".join(out + lines[pos:])


def instrumented(work: Path) -> ModuleType:
    """gelora.estimators.knn with the patch's timers, built in ``work`` and imported as ``knn_instr``."""
    from gelora.estimators import knn

    source = Path(knn.__file__)
    try:
        text = apply_patch(source.read_text(), PATCH.read_text())
    except PatchError as err:
        sys.exit(
            f"{PATCH.name} no longer applies to {source}: {err}.\nknn.py changed since the patch was"
            " made (1e2df4e); re-instrument a fresh copy and rewrite the patch with 'run.py diff FILE'."
        )
    work.mkdir(parents=True, exist_ok=True)
    path = work / "knn_instr.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("knn_instr", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["knn_instr"] = module
    spec.loader.exec_module(module)
    return module


def rewrite_patch(edited: Path) -> None:
    """Rewrite knn_instr.patch as the diff from gelora/estimators/knn.py to ``edited`` (header kept)."""
    import difflib

    from gelora.estimators import knn

    old = PATCH.read_text().splitlines(keepends=True)
    header = old[: next(i for i, line in enumerate(old) if line.startswith("--- "))]
    name = "gelora/estimators/knn.py"
    diff = difflib.unified_diff(
        Path(knn.__file__).read_text().splitlines(keepends=True),
        edited.read_text().splitlines(keepends=True),
        f"a/{name}",
        f"b/{name}",
    )
    PATCH.write_text("".join(header) + "".join(diff))
    print(f"wrote {PATCH.relative_to(ROOT)}")


# ------------------------------------------------------------------ data, references, timing


def data(kind: str, n: int, dim: int) -> np.ndarray:
    if kind.endswith(".npy"):  # any (n, D) array, e.g. hidden states (--n and --dim are ignored)
        return np.ascontiguousarray(np.load(kind), dtype=np.float64)
    from synthetic.bench_data import bench_data

    return bench_data(kind, n, dim)


def reference(args: argparse.Namespace, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The module's own (dist, idx) for the data set, cached in the work directory."""
    path = args.work / f"ref_{Path(args.kind).stem}_{args.n}_{args.dim}.npz"
    if path.exists():
        ref = np.load(path)
        return ref["dist"], ref["idx"]
    from gelora.estimators.knn import knn_distances

    dist, idx = knn_distances(X, K_NN, backend="numpy")
    args.work.mkdir(parents=True, exist_ok=True)
    np.savez(path, dist=dist, idx=idx)
    return dist, idx


def same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def wait_quiet(max_load: float, wait: float) -> None:
    t0 = time.time()
    while os.getloadavg()[0] >= max_load and time.time() - t0 < wait:
        time.sleep(5)
    print(f"load average at start: {load()} (waited {time.time() - t0:.0f} s)", flush=True)


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def print_times(runs: list[dict[str, float]]) -> None:
    for key in sorted({k for r in runs for k in r}):
        vals = [r.get(key, 0.0) for r in runs]
        print(f"  {key:56s} min {min(vals):.3f}  all " + " ".join(f"{v:.3f}" for v in vals))


def spread(times: list[float]) -> str:
    return f"min {min(times):.3f} s (all " + " ".join(f"{t:.3f}" for t in times) + ")"


def counts(stats: dict[str, Any]) -> str:
    if "counts" not in stats:
        return "no candidate counts (the direct path, not instrumented)"
    c = np.concatenate(stats["counts"])
    return f"candidates/row mean {c.mean():.1f} max {c.max()}, exact pairs {stats.get('exact_pairs', 0)}"


# ------------------------------------------------------------------ commands


def cmd_phases(args: argparse.Namespace) -> None:
    """Phase times of the float32 module (instrumented copy) next to the unmodified module."""
    from gelora.estimators.knn import knn_distances

    K = instrumented(args.work)
    X = data(args.kind, args.n, args.dim)
    ref = reference(args, X)
    print(
        f"identical to the reference: module {same(ref, knn_distances(X, K_NN, backend='numpy'))}, "
        f"instrumented copy {same(ref, K.knn_distances(X, K_NN, backend='numpy'))}"
    )
    plain, total, runs, stats = [], [], [], {}
    for _ in range(args.repeats):
        plain.append(timed(lambda: knn_distances(X, K_NN, backend="numpy")))
        K.TIMES.clear()
        K.STATS.clear()
        total.append(timed(lambda: K.knn_distances(X, K_NN, backend="numpy")))
        runs.append(dict(K.TIMES))
        stats = stats or dict(K.STATS)
    print(f"{args.kind} n={args.n} D={args.dim}, p={stats.get('p')}: module {spread(plain)}")
    print(f"  instrumented copy {spread(total)}")
    print_times(runs)
    print(
        f"  {counts(stats)}, first-cut survivors {stats.get('first_survivors', 0)}, "
        f"rows re-screened in float64 {stats.get('wide_rows', 0)}"
    )


def run_pair(args: argparse.Namespace, K: ModuleType, label: str) -> None:
    """The module as installed, its instrumented copy (``K``) and prototype B, alternating in one run."""
    import knn_bf16

    from gelora.estimators.knn import knn_distances

    X = data(args.kind, args.n, args.dim)
    ref = reference(args, X)
    print(
        "identical to the reference: module "
        f"{same(ref, knn_distances(X, K_NN, backend='numpy'))}, instrumented copy "
        f"{same(ref, K.knn_distances(X, K_NN, backend='numpy'))}, bf16 prototype "
        f"{same(ref, knn_bf16.knn_bf16(K, X, K_NN, args.block_size))}"
    )
    plain, t32, t16, r32, r16, s32, s16 = [], [], [], [], [], {}, {}
    for _ in range(args.repeats):
        plain.append(timed(lambda: knn_distances(X, K_NN, backend="numpy")))
        K.TIMES.clear()
        K.STATS.clear()
        t32.append(timed(lambda: K.knn_distances(X, K_NN, backend="numpy")))
        r32.append(dict(K.TIMES))
        s32 = s32 or dict(K.STATS)
        knn_bf16.TIMES.clear()
        knn_bf16.STATS.clear()
        t16.append(timed(lambda: knn_bf16.knn_bf16(K, X, K_NN, args.block_size)))
        r16.append(dict(knn_bf16.TIMES))
        s16 = s16 or dict(knn_bf16.STATS)
    print(f"{args.kind}, {label}")
    print(f"module as installed (its own rank): {spread(plain)}")
    for name, t, r, s in (
        ("float32 module (instrumented)", t32, r32, s32),
        ("bf16 prototype B", t16, r16, s16),
    ):
        print(f"{name}: p={s.get('p')} {spread(t)}; {counts(s)}")
        print_times(r)
    print(
        f"  prototype: factor width {s16['width']}, max |w - bf16(w)| / |w| {s16['delta_rel_max']:.2e}, "
        f"first-cut survivors {s16['first_survivors']}, rows above the module's cap "
        f"{s16.get('rows_over_cap', 0)}, block size {args.block_size or 'default'}"
    )


def cmd_e2e(args: argparse.Namespace) -> None:
    """Prototype B against the module, the rank chosen by the module's cost model."""
    run_pair(args, instrumented(args.work), "rank chosen by the module")


def cmd_ranks(args: argparse.Namespace) -> None:
    """Prototype B against the module, both at the screen ranks given (SCREEN_RANKS of the copy)."""
    K = instrumented(args.work)
    K.SCREEN_RANKS = tuple(int(r) for r in args.ranks.split(","))
    run_pair(args, K, f"SCREEN_RANKS = {K.SCREEN_RANKS}")


def cmd_screen(args: argparse.Namespace) -> None:
    """Variants A/B/C of a bf16 screen: candidates per row, error / bound, product times."""
    import bf16_screen

    X = data(args.kind, args.n, args.dim)
    bf16_screen.study(X, *reference(args, X), k=K_NN, repeats=args.repeats)


def cmd_accum(args: argparse.Namespace) -> None:
    """Is torch.mm(bf16, bf16) 'exact products, float32 sums (any order), one rounding to bf16'?

    Max over random and cancelling inputs of |out - exact| / (u |exact| + (1 + u) gamma_K(2^-24)
    sum |a_k b_k|); above 1 would refute the model (e.g. partial sums stored in bf16 between K blocks).
    """
    import torch

    torch.set_num_threads(2)
    a = torch.randn(64, 64).bfloat16()
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):  # prints the kernel's name
        torch.mm(a, a)
    for name, fn in (
        ("mm(out_dtype=float32)", lambda: torch.mm(a, a, out_dtype=torch.float32)),
        ("mm(out=float32 tensor)", lambda: torch.mm(a, a, out=torch.empty(64, 64))),
        ("addmm(float32, bf16, bf16)", lambda: torch.addmm(torch.zeros(64, 64), a, a)),
    ):
        try:
            print(f"{name}: returns {fn().dtype}")
        except (RuntimeError, NotImplementedError) as err:
            print(f"{name}: fails ({type(err).__name__}: {str(err).splitlines()[0][:90]})")
    u, u32 = 2.0**-8, 2.0**-24
    rng = np.random.default_rng(1)

    def check(A: np.ndarray, B: np.ndarray, label: str) -> float:
        At, Bt = (
            torch.from_numpy(A.astype(np.float32)).bfloat16(),
            torch.from_numpy(B.astype(np.float32)).bfloat16(),
        )
        a64, b64 = At.double().numpy(), Bt.double().numpy()
        exact = a64 @ b64.T  # the products have 16 significant bits: exact up to float64's rounding
        out = torch.mm(At, Bt.T).double().numpy()
        m = A.shape[1]
        bound = u * np.abs(exact) + (1 + u) * m * u32 / (1 - m * u32) * (np.abs(a64) @ np.abs(b64).T) + 1e-300
        r = float((np.abs(out - exact) / bound).max())
        rel = float((np.abs(out - exact) / (u * np.abs(exact) + 1e-300)).max())
        print(f"  {label:48s} max err/bound {r:.3f}   max err/(u |exact|) {rel:.3g}")
        return r

    worst = 0.0
    for m in (32, 144, 384, 768, 2048):
        A, B = rng.standard_normal((300, m)), rng.standard_normal((400, m))
        worst = max(worst, check(A, B, f"random normal, K={m}"))
        # cancellation: +-15 terms in two columns against a small rest (exact result small)
        for where, cols in (
            ("first", [0, 1]),
            ("last", [m - 2, m - 1]),
            ("middle", [m // 2, m // 2 + 1]),
            ("split", [0, m - 1]),
        ):
            A2, B2 = 1e-2 * A, 1e-2 * B
            A2[:, cols] = 3.0
            B2[:, cols[0]], B2[:, cols[1]] = 5.0, -5.0
            worst = max(worst, check(A2, B2, f"cancelling +-15 terms, {where} columns, K={m}"))
        # the distance form of the screen, [w, q, 1] . [-2 w, 1, q], between near neighbours
        w = rng.standard_normal((1, m - 2)) / np.sqrt(m)
        W = w + 1e-2 * rng.standard_normal((400, m - 2)) / np.sqrt(m)
        q = (torch.from_numpy(W).bfloat16().double().numpy() ** 2).sum(1)[:, None]
        one = np.ones((400, 1))
        worst = max(
            worst, check(np.hstack([W, q, one]), np.hstack([-2 * W, one, q]), f"distance form, K={m}")
        )
    print(f"worst ratio {worst:.3f} (<= 1: consistent with float32 accumulation, one rounding to bf16)")


def cmd_rerank(args: argparse.Namespace) -> None:
    """Exact float64 re-rank cost per pair (the module's _exact_d2_buffered over the block threads)."""
    from gelora.estimators import knn as K

    X = data(args.kind, args.n, args.dim)
    _, idx = reference(args, X)
    n = X.shape[0]
    rng = np.random.default_rng(0)
    workers = K._n_workers()

    def exact(keys: np.ndarray) -> float:
        lo, hi = np.divmod(keys, n)
        cuts = np.linspace(0, keys.size, workers + 1).astype(int)

        def part(c: tuple[int, int]) -> None:
            K._exact_d2_buffered(X, lo[c[0] : c[1]], hi[c[0] : c[1]], K.PAIR_RERANK_BYTES)

        with K._block_threads(workers) as pool:
            return min(
                timed(lambda: list(pool.map(part, zip(cuts[:-1], cuts[1:], strict=True))))
                for _ in range(args.repeats)
            )

    rows = np.repeat(np.arange(n), K_NN)
    graph = np.unique(np.minimum(rows, idx.ravel()) * n + np.maximum(rows, idx.ravel()))
    t = exact(graph)
    print(
        f"{args.kind}: the true {K_NN}-NN graph, {graph.size} distinct pairs ({graph.size / n:.1f}/row): "
        f"{t:.3f} s ({t / graph.size * 1e6:.3f} us/pair)"
    )
    for per_row in (16, 40, 75, 135):
        rows = np.repeat(np.arange(n), per_row)
        cols = rng.integers(0, n, size=rows.size)
        keys = np.unique(np.minimum(rows, cols) * n + np.maximum(rows, cols))
        keys = keys[keys // n != keys % n]
        t = exact(keys)
        print(
            f"  random pairs, {keys.size} distinct ({keys.size / n:.1f}/row): {t:.3f} s "
            f"({t / keys.size * 1e6:.3f} us/pair)"
        )


def cmd_verify(args: argparse.Namespace) -> None:
    """The cached reference against a plain float64 brute force on 200 evenly spaced rows."""
    X = data(args.kind, args.n, args.dim)
    dist, idx = reference(args, X)
    bad = 0
    for i in np.linspace(0, X.shape[0] - 1, 200).astype(int):
        diff = X - X[i]
        d2 = np.einsum("ij,ij->i", diff, diff)
        d2[i] = np.inf
        order = np.lexsort((np.arange(X.shape[0]), d2))[:K_NN]
        bad += int(not (np.array_equal(order, idx[i]) and np.array_equal(np.sqrt(d2[order]), dist[i])))
    print(f"{args.kind}: rows differing from brute force: {bad} of 200")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "gelora-knn-bf16",
        help="instrumented module and cached references (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=16000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--max-load", type=float, default=0.8, help="start below this 1-minute load")
    parser.add_argument("--wait", type=float, default=600, help="longest wait for --max-load (s)")
    sub = parser.add_subparsers(dest="command", required=True)
    kinds = ("tanh", "rank30")
    for name, fn in (
        ("phases", cmd_phases),
        ("screen", cmd_screen),
        ("e2e", cmd_e2e),
        ("ranks", cmd_ranks),
        ("rerank", cmd_rerank),
        ("verify", cmd_verify),
        ("accum", cmd_accum),
    ):
        p = sub.add_parser(name, help=(fn.__doc__ or name).splitlines()[0])
        p.set_defaults(fn=fn)
        if name != "accum":
            p.add_argument("kind", help=f"{' or '.join(kinds)} (bench_data), or a .npy file")
        if name == "ranks":
            p.add_argument("ranks", help="screen ranks tried, e.g. 93 or 61,93")
        if name in ("e2e", "ranks"):
            p.add_argument("--block-size", type=int, default=None, help="prototype's strip height")
    p = sub.add_parser("diff", help="rewrite knn_instr.patch from an edited copy of knn.py")
    p.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "diff":
        rewrite_patch(args.file)
        return
    if args.command not in ("verify", "diff"):
        wait_quiet(args.max_load, args.wait)
    import torch

    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, "
        f"NumPy {np.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    args.fn(args)
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
