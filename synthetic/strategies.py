"""Hypothesis strategies for property tests of intrinsic-dimension estimators and rank bounds.

Every strategy draws *parameters and a seed* (small integers and floats) and builds the data from them in
``.map``, so Hypothesis shrinks towards small, simple cases and a failure is reproducible from the drawn
parameters alone.

Ranges and why
--------------
* Intrinsic dimension ``d`` in ``[1, 8]`` (:data:`MAX_RELIABLE_DIM`).  Above ~8 every k-NN estimator is
  biased downwards at the sample sizes a unit test can afford (the curse of dimensionality: the
  neighbourhood radius ``~ n^(-1/d)`` stops being small).
* Sample size ``n`` in ``[max(MIN_N, 150 d), MAX_N]`` with ``MIN_N = 500`` and ``MAX_N = 2000``.  The
  TwoNN maximum-likelihood estimate has relative standard deviation ``~ 1/sqrt(n)`` (its ``log mu`` are
  i.i.d. exponential), so ``n >= 500`` puts a +/-15 % band at more than 3 standard deviations
  (``3 / sqrt(500) = 13 %``); the extra ``150 d`` keeps the k-NN radius small for the larger ``d``, where
  the curvature and boundary bias grows.  ``MAX_N`` bounds the cost of one example.
* Noise standard deviation ``sigma <= 0.05 * n^(-1/d)`` (:func:`noise_for`): the typical nearest-neighbour
  distance on a unit-scale ``d``-manifold is ``~ n^(-1/d)``, and noise well below it leaves the
  estimators in the regime where the manifold looks ``d``-dimensional at the neighbour scale; larger
  noise makes the data look ``D``-dimensional at small scales, which is a different (documented) regime.
* Manifolds: only the unit-scale, moderately curved families (hypersphere, hyperball, hypercube, flat
  torus, linear subspace), curvature radius >= 1 compared with neighbour distances ``<= n^(-1/d) <= 1``.
* Maps: dimensions in ``[2, 16]`` and ranks in ``[1, min(in, out)]``; toy transformers with 1-4 blocks of
  2-4 tokens and width 2-6, small enough for exact SVDs of every Jacobian in milliseconds.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from synthetic import manifolds as _m
from synthetic.manifolds import SampledManifold
from synthetic.maps import BottleneckMLP, LinearMap, RankedMap, ResidualBlock, ToyTransformer

__all__ = [
    "MANIFOLD_KINDS",
    "MAX_N",
    "MAX_RELIABLE_DIM",
    "MIN_N",
    "ambient_dims",
    "intrinsic_dims",
    "manifold_params",
    "build_manifold",
    "manifolds",
    "min_sample_size",
    "noise_for",
    "noise_levels",
    "ranked_maps",
    "sample_sizes",
    "seeds",
    "toy_transformers",
]

MAX_RELIABLE_DIM = 8
MIN_N = 500
MAX_N = 2000
MANIFOLD_KINDS = ("hypersphere", "hyperball", "hypercube", "flat_torus", "linear_subspace")
_NATURAL_CODIM = {"hypersphere": 1, "hyperball": 0, "hypercube": 0, "flat_torus": None, "linear_subspace": 0}


def seeds() -> st.SearchStrategy[int]:
    """Seeds in ``[0, 2**32 - 1]``."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def intrinsic_dims(min_value: int = 1, max_value: int = MAX_RELIABLE_DIM) -> st.SearchStrategy[int]:
    """Intrinsic dimensions in ``[min_value, max_value]`` (default ``[1, 8]``)."""
    return st.integers(min_value=min_value, max_value=max_value)


def min_sample_size(d: int) -> int:
    """Smallest ``n`` drawn for dimension ``d``: ``max(MIN_N, 150 d)`` (see the module docstring)."""
    return max(MIN_N, 150 * d)


def sample_sizes(d: int = 1, max_value: int = MAX_N) -> st.SearchStrategy[int]:
    """Sample sizes in ``[min_sample_size(d), max(max_value, min_sample_size(d))]``."""
    lo = min_sample_size(d)
    return st.integers(min_value=lo, max_value=max(lo, max_value))


def ambient_dims(d: int, max_extra: int = 8) -> st.SearchStrategy[int]:
    """Ambient dimensions ``D`` in ``[d, d + max_extra]``."""
    return st.integers(min_value=d, max_value=d + max_extra)


def noise_for(n: int, d: int, fraction: float = 0.05) -> float:
    """Largest noise standard deviation in the reliable range: ``fraction * n^(-1/d)``."""
    return float(fraction * n ** (-1.0 / d))


def noise_levels(n: int, d: int) -> st.SearchStrategy[float]:
    """Noise standard deviations in ``[0, noise_for(n, d)]`` (0 included, so shrinking reaches it)."""
    return st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=noise_for(n, d)))


@st.composite
def manifold_params(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = MANIFOLD_KINDS,
    max_d: int = MAX_RELIABLE_DIM,
    noisy: bool = False,
) -> dict[str, Any]:
    """Parameters of one manifold sample: ``{"kind", "n", "d", "ambient_dim", "noise", "seed"}``."""
    kind = draw(st.sampled_from(kinds))
    d = draw(intrinsic_dims(1, max_d))
    n = draw(sample_sizes(d))
    codim = _NATURAL_CODIM[kind]
    natural = 2 * d if codim is None else d + codim
    D = draw(st.integers(min_value=natural, max_value=natural + 4))
    noise = draw(noise_levels(n, d)) if noisy else 0.0
    return {"kind": kind, "n": n, "d": d, "ambient_dim": D, "noise": noise, "seed": draw(seeds())}


def build_manifold(p: dict[str, Any]) -> SampledManifold:
    """Generate the sample described by :func:`manifold_params` output (rotated into ``ambient_dim``)."""
    kind, n, d, D, noise, seed = p["kind"], p["n"], p["d"], p["ambient_dim"], p["noise"], p["seed"]
    if kind == "linear_subspace":
        return _m.linear_subspace(n, d, D, noise=noise, seed=seed)
    gen = getattr(_m, kind)
    return gen(n, d, noise=noise, embed_dim=D, seed=seed)


def manifolds(
    kinds: tuple[str, ...] = MANIFOLD_KINDS, max_d: int = MAX_RELIABLE_DIM, noisy: bool = False
) -> st.SearchStrategy[SampledManifold]:
    """Samples of manifolds of known dimension in the reliable ranges (see the module docstring)."""
    return manifold_params(kinds=kinds, max_d=max_d, noisy=noisy).map(build_manifold)


@st.composite
def ranked_maps(draw: st.DrawFn, max_dim: int = 16) -> RankedMap:
    """A :class:`LinearMap`, :class:`BottleneckMLP` or :class:`ResidualBlock` with dims in ``[2, max_dim]``."""
    kind = draw(st.sampled_from(("linear", "mlp", "residual")))
    seed = draw(seeds())
    if kind == "residual":
        dim = draw(st.integers(2, max_dim))
        return ResidualBlock(dim, draw(st.integers(1, dim)), seed=seed)
    in_dim = draw(st.integers(2, max_dim))
    out_dim = draw(st.integers(2, max_dim))
    rank = draw(st.integers(1, min(in_dim, out_dim)))
    if kind == "linear":
        return LinearMap(in_dim, out_dim, rank, seed=seed)
    return BottleneckMLP(in_dim, out_dim, rank, seed=seed)


@st.composite
def toy_transformers(draw: st.DrawFn, max_blocks: int = 4) -> ToyTransformer:
    """A :class:`ToyTransformer` with 1..max_blocks blocks, 2-4 tokens of width 2-6 and mixed residuals."""
    n_blocks = draw(st.integers(1, max_blocks))
    n_tokens = draw(st.integers(2, 4))
    d_model = draw(st.integers(2, 6))
    attn = draw(st.lists(st.integers(1, d_model), min_size=n_blocks, max_size=n_blocks))
    mlp = draw(st.lists(st.integers(1, d_model), min_size=n_blocks, max_size=n_blocks))
    residual = draw(st.lists(st.booleans(), min_size=n_blocks, max_size=n_blocks))
    return ToyTransformer(n_tokens, d_model, attn, mlp, residual=residual, seed=draw(seeds()))
