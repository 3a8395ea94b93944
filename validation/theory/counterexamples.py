"""Counter-examples: where the theorem's assumptions break in practice (noise, too few samples,
curvature at small ``n``, ``ceil`` rounding); each returns a record saying why
(``tests/theory/test_counterexamples.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from validation.theory.calibration import ALPHA, METHODS, estimate_limits, fit_estimate
from validation.theory.composition import PlantedUpdateNetwork
from validation.theory.estimated_layer import check_upper_bound


# --------------------------------------------------------------------------------------------------
# counter-examples: where the theorem's assumptions break in practice
# --------------------------------------------------------------------------------------------------
def counterexample_noise(
    n: int = 2000,
    d: int = 2,
    D: int = 20,
    sigma: float = 0.05,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Isotropic noise: a ``d``-plane in ``R^D`` plus Gaussian noise of std ``sigma`` (unit-scale data).

    The nearest-neighbour distance (``~ n^(-1/d)``) is below ``sigma``, so the neighbours see the
    ``D``-dimensional noise: every estimate exceeds ``d`` far beyond its limit. The theorem is about the
    noise-free manifold; the rank rule applied to noisy hidden states inherits the inflation.
    """
    from synthetic.manifolds import linear_subspace

    X = linear_subspace(n, d, D, noise=sigma, seed=seed).X
    recs = check_upper_bound(
        X,
        d,
        methods=methods,
        seed=seed,
        cache_dir=cache_dir,
        context={"case": "noise", "sigma": sigma, "d": d, "D": D},
    )
    return {
        "case": "noise",
        "params": {"n": n, "d": d, "D": D, "sigma": sigma, "seed": seed},
        "records": recs,
        "violated": bool(any(not r["passed"] for r in recs)),
    }


def counterexample_curvature(
    n: int = 300,
    n_turns: float = 40.0,
    pitch: float = 0.05,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Curvature at small ``n``: a tightly wound helix (``d = 1``) whose turns are closer than its samples.

    With ``n`` points on ``n_turns`` turns ``pitch`` apart, a point's nearest neighbours lie on adjacent
    turns, so at the neighbour scale the curve looks like a 2-dimensional cylinder; only at ``n`` large
    enough that the spacing along the curve falls below ``pitch`` does it look 1-dimensional.
    """
    from synthetic.manifolds import helix_curve

    X = helix_curve(n, n_turns=n_turns, pitch=pitch, embed_dim=6, seed=seed).X
    recs = check_upper_bound(
        X,
        1,
        methods=methods,
        seed=seed,
        cache_dir=cache_dir,
        context={"case": "curvature", "n_turns": n_turns, "pitch": pitch},
    )
    return {
        "case": "curvature",
        "params": {"n": n, "n_turns": n_turns, "pitch": pitch, "seed": seed},
        "records": recs,
        "violated": bool(any(not r["passed"] for r in recs)),
    }


def counterexample_local_pca_curvature(n: int = 500, d: int = 3, seed: int = 0) -> dict[str, Any]:
    """Local PCA (the exact-layer proxy) on a round ``d``-sphere at small ``n`` counts the normal direction."""
    from synthetic.local_pca import local_pca_dimension
    from synthetic.manifolds import hypersphere

    X = hypersphere(n, d, embed_dim=d + 1, seed=seed).X
    lp = int(local_pca_dimension(X, seed=seed))
    return {
        "case": "local_pca_curvature",
        "params": {"n": n, "d": d, "seed": seed},
        "local_pca": lp,
        "bound": d,
        "violated": bool(lp > d),
    }


def counterexample_small_n_rule(
    n: int = 1000,
    eps: float = 1e-5,
    seed: int = 0,
    method: str = "twonn",
    alpha: float = ALPHA,
    offset: int = 1,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Too few samples to resolve the data: a frozen full-rank block that needs no update (``k = 0``).

    ``h_0`` is uniform on the thin rectangle ``[0, 1] x [0, eps]`` (rotated into ``R^8``) and the frozen block
    is the linear map ``diag(1, 1/eps)`` (full rank), so ``h_1`` is the unit square: both are exactly
    2-dimensional and the true gap is 0. With ``n`` points the spacing along the strip, ``~ 1/n``, exceeds
    ``eps``: at the scale the sample resolves, ``h_0`` looks 1-dimensional, the estimated gap is ~1 and the
    rule asks for an update of rank 1 (beyond its sampling limit) where none is needed. With ``n >> 1/eps``
    it disappears.
    """
    from gelora.ranks import ranks_from_dimensions

    rng = np.random.default_rng(seed)
    P = rng.random((n, 2)) * np.array([1.0, eps])
    Q, _ = np.linalg.qr(rng.normal(size=(8, 2)))
    h0 = P @ Q.T
    h1 = (P / np.array([1.0, eps])) @ Q.T
    dims = [fit_estimate(h, method, seed=seed, cache_dir=cache_dir) for h in (h0, h1)]
    gap = dims[1] - dims[0]
    hi = estimate_limits(method, n, 2, alpha, calibration).high
    lo = estimate_limits(method, n, 2, alpha, calibration).low
    limit = 0.0 + (hi - 2) + (2 - lo)
    ranks = ranks_from_dimensions(dims, offset=offset)
    return {
        "case": "small_n_rule",
        "params": {"n": n, "eps": eps, "seed": seed, "method": method},
        "dims": dims,
        "gap": gap,
        "gap_limit": limit,
        "ranks": ranks,
        "k": 0,
        "violated": bool(gap > limit),
    }


def counterexample_ceil_rounding(
    n: int = 2000,
    seed: int = 6,
    method: str = "twonn",
    offset: int = 1,
    d_token: int = 2,
    n_blocks: int = 3,
) -> dict[str, Any]:
    """``rounding="ceil"`` (the library default) turns any positive estimator noise into one extra rank.

    A frozen residual network (no update needed, every true gap 0): estimates of consecutive layers differ
    by sampling noise of either sign, and ``ceil`` maps a gap of ``+0.01`` to 1, so ``r_i - offset = 1 > k = 0``
    on roughly half of such blocks at any ``n``; ``rounding="round"`` does not (for gaps below 0.5).
    """
    from gelora.ranks import ranks_from_dimensions

    net = PlantedUpdateNetwork(
        d_token=d_token, d_context=1, k=0, block=0, n_blocks=n_blocks, width=8, seed=seed
    )
    U, Z = net.sample_inputs(n, seed)
    states, _ = net.forward_all(U, Z)
    dims = [fit_estimate(h, method, seed=seed) for h in states]
    ceil_ranks = ranks_from_dimensions(dims, offset=offset, rounding="ceil")
    round_ranks = ranks_from_dimensions(dims, offset=offset, rounding="round")
    return {
        "case": "ceil_rounding",
        "params": {"n": n, "seed": seed, "method": method},
        "dims": dims,
        "ceil_ranks": ceil_ranks,
        "round_ranks": round_ranks,
        "violated": bool(max(ceil_ranks) - offset > 0),
    }


def counterexample_mle_toy_transformer(n: int = 500, seed: int = 0, k: int = 20) -> dict[str, Any]:
    """MLE (``k = 20``) overshoots a deterministic network's bound beyond its tolerance.

    A circle (``d = 1``, 500 points) through three plain (non-residual) blocks of
    ``ToyTransformer(n_tokens=2, d_model=2, attn_ranks=[1, 1, 1], mlp_ranks=[1, 1, 1], seed=0)``: every hidden
    state is a closed curve (exact Jacobian rank 1), but the saturating ``tanh`` blocks stretch it very
    unevenly and bring distant arcs close, so the 20-neighbour balls of the last layer are no longer
    1-dimensional and MLE reads ~1.23, above its limit ~1.07 (TwoNN, with two neighbours, reads ~0.91).
    The calibration on uniform samples of smooth families does not cover such density and folding.
    """
    from synthetic.manifolds import hypersphere
    from synthetic.maps import ToyTransformer

    tt = ToyTransformer(2, 2, [1, 1, 1], [1, 1, 1], residual=False, seed=seed)
    X = hypersphere(n, 1, embed_dim=4, seed=seed).X
    last = tt.forward_all(X)[-1]
    recs = check_upper_bound(
        last, 1, methods=("mle", "twonn"), seed=seed, context={"case": "mle_toy_transformer", "layer": 3}
    )
    return {
        "case": "mle_toy_transformer",
        "params": {"n": n, "seed": seed, "k": k},
        "records": recs,
        "violated": bool(not recs[0]["passed"]),
        "twonn_passed": bool(recs[1]["passed"]),
    }
