"""The estimators against scikit-dimension on real hidden states (the data GeLoRA estimates on).

Run (skipped by the default ``--benchmark-skip``; needs the bundled model and ``GELORA_DATA_DIR``)::

    pytest tests/bench/test_bench_hidden_states.py --benchmark-enable --benchmark-only \
        --benchmark-json=bench_hidden.json
    python -m validation.estimators.bench_ratio bench_hidden.json

Data: token representations (``token_sampling="all"``, special tokens excluded, seed 0) of the bundled
pretrained all-MiniLM-L6-v2 (hidden size 384) on the first 4000 SST-2 training sentences, 16000 rows
per layer; the embedding output (layer 0), a middle block (3) and the last block (6). The synthetic data
of ``test_bench_estimators.py`` span a 30-dimensional subspace exactly; hidden states do not, so this
suite measures how much of the NumPy k-NN backend's principal screen survives on them.

Configurations (and the dadapy peer) as in ``test_bench_estimators.py``; every cell runs three rounds,
minimum reported. Layer 3 is also timed on 1000 and 4000 evenly spaced rows of its 16000.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gelora.estimators import MLE, TwoNN, knn_distances
from validation.estimators.peers_dadapy import load as load_dadapy

skdim = pytest.importorskip("skdim")
from skdim._commonfuncs import get_nn  # noqa: E402

N_ROWS = 16000
LAYERS = (0, 3, 6)
SIZES = (1000, 4000, N_ROWS)

_CACHE: dict[int, np.ndarray] = {}


def hidden(layer: int) -> np.ndarray:
    if not _CACHE:
        from gelora.hidden_states import collect_hidden_states
        from gelora.models import load_model
        from validation.data.glue import load_glue

        try:
            lm = load_model(None, device="cpu")
            texts = load_glue("sst2", "train").take(4000, seed=0).joined_texts()
        except Exception as exc:  # the model package or the data are not installed
            pytest.skip(f"bundled model or SST-2 data unavailable: {exc}")
        hs = collect_hidden_states(lm.model, lm.tokenizer, texts, max_tokens=N_ROWS, batch_size=64, seed=0)
        if hs.n_samples < N_ROWS:
            pytest.skip(f"only {hs.n_samples} token rows")
        for i in LAYERS:
            _CACHE[i] = np.ascontiguousarray(hs.layers[i].float().numpy(), dtype=np.float64)
    return _CACHE[layer]


def quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return wrapped


CONTENDERS: dict[str, dict[str, Callable[[np.ndarray], Any]]] = {
    "knn": {
        "gelora": lambda X: knn_distances(X, 20),
        "skdim": lambda X: get_nn(X, 20),
    },
    "mle": {
        "gelora": lambda X: MLE(k=20).fit(X).dimension_,
        "gelora_point": lambda X: MLE(k=20, n_bootstrap=0).fit(X).dimension_,  # no interval, as the peers
        "skdim": lambda X: skdim.id.MLE().fit(X).dimension_,
    },
    "twonn_mle": {
        "gelora": lambda X: TwoNN(fit="mle").fit(X).dimension_,
        "skdim": lambda X: skdim.id.TwoNN(method="mle").fit(X).dimension_,
    },
}
dadapy = load_dadapy()
if dadapy is not None:  # see test_bench_estimators.py for the configuration
    CONTENDERS["twonn_mle"]["dadapy"] = lambda X: dadapy.IdEstimation(coordinates=X, maxk=3).compute_id_2NN()[
        0
    ]
    CONTENDERS["knn"]["dadapy"] = lambda X: dadapy.compute_nn_distances(X, 20)


# The embedding output (layer 0) has exact duplicate rows (8129 of the 16000 rows have a twin: the
# same token at the same position): our estimators refuse it by default (DuplicatePointsError) and
# skdim's MLE returns NaN on it, so only the k-NN core is timed there.
CELLS = [(e, layer) for e in sorted(CONTENDERS) for layer in LAYERS if e == "knn" or layer != 0]


@pytest.mark.peers
@pytest.mark.parametrize("impl", ["gelora", "gelora_point", "skdim", "dadapy"])
@pytest.mark.parametrize(("estimator", "layer"), CELLS)
@pytest.mark.parametrize("n", SIZES)
def test_bench_hidden_states(benchmark: Any, estimator: str, impl: str, layer: int, n: int) -> None:
    if impl not in CONTENDERS[estimator]:
        pytest.skip(f"{impl} has no {estimator} here")
    if n < N_ROWS and layer != 3:
        pytest.skip("smaller sizes on the middle layer only")
    X = np.ascontiguousarray(hidden(layer)[:: N_ROWS // n][:n])  # evenly spaced tokens
    benchmark.group = f"{estimator}-hidden-L{layer}-n{n}-D{X.shape[1]}"
    benchmark.extra_info.update(data=f"MiniLM L{layer}", estimator=estimator, impl=impl, n=n, D=X.shape[1])
    result = benchmark.pedantic(quiet(lambda: CONTENDERS[estimator][impl](X)), rounds=3, iterations=1)
    assert result is not None
