"""Where the NumPy k-NN backend spends its time, and the symmetric against the blockwise product.

Usage::

    python -m validation.estimators.knn_profile [--n 16000] [--repeats 3] [--hidden]

For each data set (the benchmark manifold of ``tests/bench/test_bench_estimators.py`` at D = 768 and 64,
its full-rank ``tanh`` data set at D = 768 and 64, isotropic Gaussian data at D = 768 and, with
``--hidden``, MiniLM layer-3 hidden states on SST-2):
the wall time of ``knn_distances(X, 20, backend="numpy")`` with the symmetric product allowed and
forbidden (minimum over ``--repeats``), the screening width chosen, and the summed thread time of the
principal basis, the screen's selection and the exact re-rank (one or two stages) in one run. With ``--skdim`` also
scikit-dimension's ``get_nn`` on the same array. Prints one JSON object per data set.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gelora.estimators import knn as K
from synthetic.bench_data import bench_data


def manifold(n: int, D: int, seed: int) -> np.ndarray:
    """The benchmark data (10-dimensional curved manifold spanning 30 directions, noise 1e-3)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(n, 10))
    Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
    return Y @ rng.normal(size=(30, D)) + 1e-3 * rng.normal(size=(n, D))


def hidden_states(n: int, layer: int = 3) -> np.ndarray:
    from gelora.hidden_states import collect_hidden_states
    from gelora.models import load_model
    from validation.data.glue import load_glue

    lm = load_model(None, device="cpu")
    texts = load_glue("sst2", "train").take(4000, seed=0).joined_texts()
    hs = collect_hidden_states(lm.model, lm.tokenizer, texts, max_tokens=n, batch_size=64, seed=0)
    return np.ascontiguousarray(hs.layers[layer].float().numpy(), dtype=np.float64)


def _min_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def phases(X: np.ndarray, k: int = 20) -> dict[str, float]:
    """Summed thread seconds of the basis, the screen's selection and the re-rank in one call.

    ``screen_block`` includes the ``final_cut`` it calls; the symmetric path calls ``final_cut`` alone;
    ``rerank_two_stage`` includes the ``rerank_pairs`` it falls back to.
    """
    spent: dict[str, float] = {}
    lock = threading.Lock()
    names = ("_screen_basis", "_screen_block", "_final_cut", "_rerank_pairs", "_rerank_two_stage")
    originals = {name: getattr(K, name) for name in names}

    def timed(name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = originals[name](*args, **kwargs)
            with lock:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
            return out

        return wrapper

    try:
        for name in names:
            setattr(K, name, timed(name))
        K.knn_distances(X, k, backend="numpy")
    finally:
        for name, fn in originals.items():
            setattr(K, name, fn)
    return {name.lstrip("_"): round(v, 4) for name, v in spent.items()}


def profile(name: str, X: np.ndarray, repeats: int, skdim: bool) -> dict[str, Any]:
    Xc = X - X.mean(axis=0)
    Z, _ = K._screen_basis(Xc, 20)
    out: dict[str, Any] = {"data": name, "n": X.shape[0], "D": X.shape[1], "screen_rank": Z.shape[1]}
    saved = K.SYMMETRIC_MIN_WIDTH
    try:
        for label, width in (("symmetric_allowed_s", saved), ("blockwise_only_s", 10**9)):
            K.SYMMETRIC_MIN_WIDTH = width
            out[label] = round(_min_time(lambda: K.knn_distances(X, 20, backend="numpy"), repeats), 4)
    finally:
        K.SYMMETRIC_MIN_WIDTH = saved
    out["phases_thread_s"] = phases(X)
    if skdim:
        from skdim._commonfuncs import get_nn

        out["skdim_get_nn_s"] = round(_min_time(lambda: get_nn(X, 20), repeats), 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m validation.estimators.knn_profile", description=__doc__.split("\n")[0]
    )
    p.add_argument("--n", type=int, default=16000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", action="store_true", help="also MiniLM layer-3 hidden states (model + data)")
    p.add_argument("--skdim", action="store_true", help="also time scikit-dimension's get_nn")
    a = p.parse_args(argv)
    cases: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("manifold-768", lambda: manifold(a.n, 768, a.n + 768)),
        ("manifold-64", lambda: manifold(a.n, 64, a.n + 64)),
        ("tanh-768", lambda: bench_data("tanh", a.n, 768)),
        ("tanh-64", lambda: bench_data("tanh", a.n, 64)),
        ("isotropic-768", lambda: np.random.default_rng(0).normal(size=(a.n, 768))),
    ]
    if a.hidden:
        cases.append(("minilm-layer-3", lambda: hidden_states(a.n)))
    for name, make in cases:
        print(json.dumps(profile(name, make(), a.repeats, a.skdim)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
