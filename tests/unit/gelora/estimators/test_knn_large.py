"""The NumPy k-NN backend against the independent torch backend at benchmark scale (slow: ~30 s).

Run with ``tox -e slow`` or ``pytest -m slow tests/unit/gelora/estimators/test_knn_large.py``.

At n = 16000 the NumPy backend takes its large-input paths (principal screen chosen by the pilot, first
cut from the subset product, per-thread blocks, the symmetric product for wide screens), which the small
unit tests reach only at n ~ 2000. The torch backend shares none of that code (its own certified
screen over symmetric tiles and its own float64 re-rank, gelora/estimators/_knn_torch.py), so agreement
of every neighbour index and of the distances to float64 summation-order noise is an independent check.
"""

from __future__ import annotations

import numpy as np
import pytest

from gelora.estimators import knn_distances

pytestmark = pytest.mark.slow


def benchmark_manifold(n: int, D: int, seed: int) -> np.ndarray:
    """The data of ``tests/bench/test_bench_estimators.py`` (30-dimensional span plus 1e-3 noise)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(n, 10))
    Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
    return Y @ rng.normal(size=(30, D)) + 1e-3 * rng.normal(size=(n, D))


def hidden_states(layer: int) -> np.ndarray:
    from gelora.hidden_states import collect_hidden_states
    from gelora.models import load_model
    from validation.data.glue import load_glue

    try:
        lm = load_model(None, device="cpu")
        texts = load_glue("sst2", "train").take(4000, seed=0).joined_texts()
    except Exception as exc:  # the model package or the data are not installed
        pytest.skip(f"bundled model or SST-2 data unavailable: {exc}")
    hs = collect_hidden_states(lm.model, lm.tokenizer, texts, max_tokens=16000, batch_size=64, seed=0)
    return np.ascontiguousarray(hs.layers[layer].float().numpy(), dtype=np.float64)


CASES = {
    "manifold-768": lambda: benchmark_manifold(16000, 768, 16768),
    "manifold-64": lambda: benchmark_manifold(16000, 64, 16064),
    "isotropic-768": lambda: np.random.default_rng(0).normal(size=(16000, 768)),
    "minilm-layer-3": lambda: hidden_states(3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_backend_matches_torch_backend_at_scale(case):
    X = CASES[case]()
    d_np, i_np = knn_distances(X, 20, backend="numpy")
    d_t, i_t = knn_distances(X, 20, backend="torch")
    np.testing.assert_array_equal(i_np, i_t)
    np.testing.assert_allclose(d_np, d_t, rtol=1e-13, atol=0)
