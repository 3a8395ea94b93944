"""Old against new selection of the torch k-NN screen (issue 20), side by side in one process.

For each data set and shape it runs :func:`gelora.estimators.knn_distances` (torch backend) once per
*variant* — a selection mode of :data:`gelora.estimators._knn_torch.SELECT` (``tilewise``: the previous
code; ``deferred``: the new one), optionally with a given ``block_size`` and a given tile product
(``/triton``: the fused Triton kernel of :mod:`gelora.estimators._knn_triton`) — on the same data, and
records:

- ``identical``: every variant's distances and indices equal the first variant's, all ``n`` rows, bit for
  bit; the command exits with status 1 if any cell differs. ``same_stats``: the same uncertified rows and
  re-ranked pairs (the select modes share their certificate; another block size or product may change
  the screen's last bits through the GEMM shapes or summation order, so not necessarily its statistics);
- ``products``: the product each variant actually ran (``LAST_STATS``: a ``/triton`` variant runs the
  torch product where Triton cannot run), ``triton_version`` and ``triton_configs`` (the block sizes
  autotune chose on the GPU);
- ``seconds``: per variant, the minimum over ``--repeats`` synchronised calls, the variants alternating
  within each repeat (after one warm-up call each, which also compiles the fused re-rank);
- ``phases``: one more call per variant with :data:`~gelora.estimators._knn_torch.PHASE_TIMING` on;
- ``gram_tf32_s``: the full TF32 Gram product (the target: ``knn <= 1.5 x`` that);
- ``rows_identical``: ``--check-rows`` rows against the independent float64 reference of
  :mod:`validation.estimators.gpu_knn_bench`;
- with ``--profile``, ``select_ops``: seconds of each step of one off-diagonal tile's selection at the
  default tile size (synchronised, minimum of 3), to show where the select phase goes; ``read_tile`` (a
  full reduction of the tile) is the cost of one read of it, the floor of any eager-torch pass over it.

    python -m validation.estimators.gpu_knn_select --device cuda --shapes 65536x768 --out sel.json
    python -m validation.estimators.gpu_knn_select --device cuda --data gaussian \
        --variants deferred+halving,deferred+halving/triton --out sel_triton.json

Runs on the CPU at small sizes (unit tests). Each finished cell is written at once (atomically); a rerun
skips finished cells.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from gelora._io import atomic_write_json
from gelora.estimators import _knn_torch as kt
from gelora.estimators import _knn_triton, knn_distances
from validation.estimators.gpu_knn_bench import (
    _sync,
    _timed,
    add_cli_arguments,
    gram_seconds,
    load_doc,
    make_data,
    parse_shapes,
    peak_gib,
    phases_of,
    reference_rows,
    reset_peak,
)

#: variants timed by default: ``MODE[:SMALLEST][+GROUP_MIN][/PRODUCT][@BLOCK][~TRANSFER]`` (see
#: :func:`parse_variant`, :func:`transfer_of`)
VARIANTS = "tilewise,deferred,deferred+halving"


def parse_variant(spec: str) -> tuple[str, str, int | None, str, str]:
    """``"deferred:sort+halving/triton@32768"`` -> (``SELECT["mode"]``, ``SELECT["smallest"]``,
    ``block_size``, ``SELECT["group_min"]``, ``SELECT["product"]``); a part left out of the name means
    ``topk``, ``amin``, ``torch`` and the module's own block size (names fixed when the variants were
    first timed; the library's defaults since 2026-11-30 are ``+auto~pinned32``). A trailing ``~TRANSFER`` (``SELECT["transfer"]``: :func:`transfer_of`) is not part of it."""
    spec = spec.partition("~")[0]
    head, _, block = spec.partition("@")
    head, _, product = head.partition("/")
    head, _, group_min = head.partition("+")
    mode, _, smallest = head.partition(":")
    if (
        mode not in kt.SELECT_MODES
        or (smallest or "topk") not in kt.SMALLEST
        or (group_min or "amin") not in kt.GROUP_MINS
        or (product or "torch") not in kt.PRODUCTS
    ):
        raise ValueError(
            f"bad variant {spec!r}: MODE[:SMALLEST][+GROUP_MIN][/PRODUCT][@BLOCK], MODE in "
            f"{kt.SELECT_MODES}, SMALLEST in {kt.SMALLEST}, GROUP_MIN in {kt.GROUP_MINS}, "
            f"PRODUCT in {kt.PRODUCTS}"
        )
    return mode, smallest or "topk", int(block) if block else None, group_min or "amin", product or "torch"


def transfer_of(spec: str) -> str:
    """``"deferred+halving~pinned"`` -> ``"pinned"`` (``SELECT["transfer"]``; without ``~``, ``"pageable"``,
    the library's default until 2026-11-30, now ``"pinned32"``)."""
    transfer = spec.partition("~")[2] or "pageable"
    if transfer not in kt.TRANSFERS:
        raise ValueError(f"bad variant {spec!r}: ~TRANSFER in {kt.TRANSFERS}")
    return transfer


def _knn(X: torch.Tensor, k: int, precision: str, spec: str) -> tuple[Any, Any]:
    mode, smallest, block, group_min, product = parse_variant(spec)
    transfer = transfer_of(spec)
    with kt.select_settings(
        mode=mode, smallest=smallest, group_min=group_min, product=product, transfer=transfer
    ):
        return knn_distances(X, k, precision=precision, block_size=block)


def _halving(g: torch.Tensor) -> Any:
    with kt.select_settings(group_min="halving"):
        return kt._row_group_min(g)


def _min_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Minimum synchronised seconds of ``repeats`` calls after a warm-up (:func:`gpu_knn_bench._timed`)."""
    return _timed(fn, device, repeats)[0]


def select_profile(X: torch.Tensor, k: int, precision: str, repeats: int = 3) -> dict[str, Any]:
    """Seconds of each step of one tile's selection at the default tile size (an off-diagonal tile when
    there are two or more), both sides, both modes; synchronised, the minimum of ``repeats``."""
    dev = X.device
    n, D = X.shape
    prec = kt.resolve_precision(precision, dev)
    c = kt.candidates_per_row(k, n)
    n_pad = -(-n // kt.GROUP) * kt.GROUP
    budget = kt._budget(dev)
    tile = kt.tile_size(budget, n_pad, None)
    chunk = max(1, budget // (16 * D))
    mean, scale = kt._centre_and_scale(X, chunk)
    left, right, _ = kt._factors(X, mean, scale, prec, n_pad, chunk)
    t = tile if n_pad > tile else 0
    rows, cols = slice(0, tile), slice(t, min(n_pad, t + tile))
    G = kt.GROUP
    with kt._tf32_matmul(dev, prec == "tf32"):
        g = kt._product(left[rows], right[cols], prec)[0]
        r, w = g.shape
        gmin = g.unflatten(1, (w // G, G)).amin(dim=2)
        gv, gi = torch.topk(gmin, min(c, w // G), dim=1, largest=False, sorted=False)
        members = (gi[:, :, None] * G + torch.arange(G, device=dev)).flatten(1)
        vals = torch.gather(g, 1, members)
        best_v = torch.full((r, c), float("inf"), device=dev)
        best_i = torch.full((r, c), -1, dtype=torch.int64, device=dev)
        floor = torch.full((r,), float("inf"), device=dev)
        v, j, fl = kt._select(g, c)
        pool = kt._Pool(r, c, r, max(2, -(-n_pad // tile)), dev)
        ops: dict[str, Callable[[], Any]] = {
            "product": lambda: kt._product(left[rows], right[cols], prec),
            "read_tile": lambda: torch.amax(g),  # one read of the tile: the memory-bandwidth yardstick
            "row_group_min": lambda: g.unflatten(1, (w // G, G)).amin(dim=2),
            "row_group_min_halving": lambda: _halving(g),
            "col_group_min_transposed": lambda: g.T.unflatten(1, (r // G, G)).amin(dim=2),
            "col_group_min_contiguous": lambda: kt._column_group_min(g),
            "group_topk": lambda: torch.topk(gmin, min(c, w // G), dim=1, largest=False, sorted=False),
            "member_gather": lambda: torch.gather(g, 1, members),
            "member_topk": lambda: torch.topk(vals, c, dim=1, largest=False, sorted=False),
            "row_select": lambda: kt._select(g, c),
            "col_select_tilewise": lambda: kt._select(g.T, c),
            "col_select_deferred": lambda: kt._select(g.T, c, kt._column_group_min(g)),
            "merge_tilewise": lambda: kt._merge(best_v, best_i, floor, 0, r, v, j, fl),
            "pool_add_deferred": lambda: pool.add(0, r, v, j, fl),
            "pool_reduce_deferred": lambda: pool._reduce(0, r, pool.slots),
            "group_sort": lambda: torch.sort(gmin, dim=1),
            "member_sort": lambda: torch.sort(vals, dim=1),
        }
        if _knn_triton.triton_version() is not None and _knn_triton.available(dev):
            # the fused product: tile, masks and both sides' group minima in one kernel
            ops["triton_tile"] = lambda: _knn_triton.screen_tile(
                left[rows], right[cols], n - rows.start, n - cols.start, t == 0, prec
            )
            # the row side's group minima alone, in one read of the tile (SELECT["group_min"] = "triton")
            ops["row_group_min_triton"] = lambda: _knn_triton.row_group_min(g)
        out = {name: _min_time(fn, dev, repeats) for name, fn in ops.items()}
        with kt.select_settings(smallest="sort"):
            out["row_select_sort"] = _min_time(lambda: kt._select(g, c), dev, repeats)
            out["col_select_deferred_sort"] = _min_time(
                lambda: kt._select(g.T, c, kt._column_group_min(g)), dev, repeats
            )
    n_tiles = sum(1 for s in range(0, n_pad, tile) for _ in range(s, n_pad, tile))
    return {"tile": tile, "tile_shape": [r, w], "tiles": n_tiles, "candidates": c, "seconds": out}


def compare_cell(
    kind: str,
    n: int,
    D: int,
    *,
    device: str = "cuda",
    k: int = 20,
    precision: str = "auto",
    repeats: int = 3,
    check_rows: int = 1024,
    seed: int = 0,
    variants: Sequence[str] = tuple(VARIANTS.split(",")),
    profile: bool = False,
) -> dict[str, Any]:
    """Time the variants on one data set and shape and check that they agree (module docstring)."""
    dev = torch.device(device)
    X = make_data(kind, n, D, dev, seed)
    results, stats = {}, {}
    peak: dict[str, float | None] = {}
    products = {}
    for name in variants:  # warm-up (which also compiles the Triton kernel), and the outputs compared
        reset_peak(dev)
        results[name] = _knn(X, k, precision, name)
        peak[name] = peak_gib(dev)  # of the call, input included
        st = kt.LAST_STATS[0]
        stats[name] = {"uncertified_rows": st.uncertified_rows, "reranked_pairs": st.reranked_pairs}
        products[name] = st.product
    first = variants[0]
    d0, i0 = results[first]
    identical = {
        name: bool(np.array_equal(d, d0) and np.array_equal(i, i0)) for name, (d, i) in results.items()
    }
    # the select modes share their certificate exactly; another block size changes the tiles' GEMM shapes
    # and so may change the screen's last bits (not the neighbours)
    same_stats = {name: st == stats[first] for name, st in stats.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats)):
        for name in variants:
            _sync(dev)
            t0 = time.perf_counter()
            _knn(X, k, precision, name)
            _sync(dev)
            times[name].append(time.perf_counter() - t0)
    phases = {name: phases_of(partial(_knn, X, k, precision, name)) for name in variants}
    gram = gram_seconds(X, "tf32", repeats)
    rows_np, _, i_ref = reference_rows(X, k, check_rows, seed)
    seconds = {name: min(ts) for name, ts in times.items()}
    cell: dict[str, Any] = {
        "data": kind,
        "n": n,
        "D": D,
        "k": k,
        "precision": kt.resolve_precision(precision, dev),
        "variants": list(variants),
        "identical": identical,
        "same_stats": same_stats,
        "products": products,
        "triton_version": _knn_triton.triton_version(),
        "triton_configs": _knn_triton.tuned_configs(),
        "stats": stats,
        "seconds": seconds,
        "all_seconds": times,
        "gram_tf32_s": gram,
        "ratio_to_tf32_gram": {name: s / gram for name, s in seconds.items()},
        "speedup_vs_first": {name: seconds[first] / s for name, s in seconds.items()},
        "phases": phases,
        "peak_gib": peak,
        "check_rows": int(rows_np.size),
        "rows_identical": int(np.all(i0[rows_np] == i_ref, axis=1).sum()),
        "repeats": repeats,
        "seed": seed,
    }
    if profile:
        cell["select_ops"] = select_profile(X, k, precision)
    return cell


def markdown(cells: list[dict[str, Any]]) -> str:
    names = list(cells[0]["variants"]) if cells else []
    lines = [
        "| data | n | D | "
        + " | ".join(f"{m} s" for m in names)
        + " | TF32 Gram s | "
        + " | ".join(f"{m} / Gram" for m in names)
        + " | identical | reference rows |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in names * 2) + " | ---: | --- | ---: |",
    ]
    for c in cells:
        lines.append(
            f"| {c['data']} | {c['n']} | {c['D']} | "
            + " | ".join(f"{c['seconds'][m]:.4f}" for m in names)
            + f" | {c['gram_tf32_s']:.4f} | "
            + " | ".join(f"{c['ratio_to_tf32_gram'][m]:.2f}" for m in names)
            + f" | {all(c['identical'].values())} | {c['rows_identical']}/{c['check_rows']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: every (data, shape) cell, resumable JSON, Markdown on stdout; 1 if outputs differ."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_arguments(p, repeats=3, out="gpu_knn_select.json")
    p.add_argument("--shapes", default="65536x768,65536x4096,200000x768")
    p.add_argument("--data", default="gaussian,tanh")
    p.add_argument(
        "--variants",
        default=VARIANTS,
        help="MODE[:SMALLEST][+GROUP_MIN][/PRODUCT][@BLOCK],...; the first is the reference",
    )
    p.add_argument("--profile", action="store_true", help="per-step seconds of one tile's selection")
    args = p.parse_args(argv)
    shapes = parse_shapes(args.shapes)
    variants = args.variants.split(",")
    if len(set(variants)) != len(variants):
        p.error(f"--variants names a variant twice: {args.variants}")
    for v in variants:
        parse_variant(v)
    doc = load_doc(args.out, args.device)
    done = {(c["data"], c["n"], c["D"], c["k"]) for c in doc["cells"]}
    for n, D in shapes:  # every shape for the first data set before the second (the slowest come last)
        for kind in args.data.split(","):
            if (kind, n, D, args.k) in done:
                continue
            cell = compare_cell(
                kind,
                n,
                D,
                device=args.device,
                k=args.k,
                precision=args.precision,
                repeats=args.repeats,
                check_rows=args.check_rows,
                seed=args.seed,
                variants=variants,
                profile=args.profile,
            )
            doc["cells"].append(cell)
            atomic_write_json(args.out, doc)
            print(markdown([cell]).splitlines()[-1], flush=True)
    print(markdown(doc["cells"]))
    return 0 if all(all(c["identical"].values()) for c in doc["cells"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
