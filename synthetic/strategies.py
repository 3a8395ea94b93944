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
* Joint draws (a map *applied to* a manifold sample): :func:`ranked_maps` picks a map's input dimension
  independently of any manifold, so :func:`manifold_map_pairs` draws the manifold first and then a map
  with ``in_dim`` equal to its ambient dimension (same map families and rank ranges), and
  :func:`transformers_with_inputs` draws a toy transformer first and then a manifold in its input space
  ``R^(n_tokens * d_model)``.  Both are noise-free by default: Theorem 3.2's exact statement (the Jacobian
  rank bounds the image's dimension) is about points on the manifold.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gelora.errors import InvalidInputError
from synthetic import manifolds as _m
from synthetic.manifolds import SampledManifold
from synthetic.maps import BottleneckMLP, LinearMap, RankedMap, ResidualBlock, ToyTransformer

__all__ = [
    "MANIFOLD_KINDS",
    "MAP_KINDS",
    "MAX_N",
    "MAX_RELIABLE_DIM",
    "MIN_N",
    "TRANSFORMER_INPUT_KINDS",
    "ambient_dims",
    "intrinsic_dims",
    "manifold_map_pairs",
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
    "transformers_with_inputs",
]

MAX_RELIABLE_DIM = 8
MIN_N = 500
MAX_N = 2000
MANIFOLD_KINDS = ("hypersphere", "hyperball", "hypercube", "flat_torus", "linear_subspace")
_NATURAL_CODIM = {"hypersphere": 1, "hyperball": 0, "hypercube": 0, "flat_torus": None, "linear_subspace": 0}
#: map families of :func:`ranked_maps` and :func:`manifold_map_pairs`
MAP_KINDS = ("linear", "mlp", "residual")
#: manifold kinds :func:`transformers_with_inputs` can place in any toy transformer's input space: each needs
#: at most ``d + 1`` ambient coordinates (the flat torus needs ``2 d``, more than ``D`` when ``d > D / 2``)
TRANSFORMER_INPUT_KINDS = ("hypercube", "hyperball", "linear_subspace", "hypersphere")


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
    kind = draw(st.sampled_from(MAP_KINDS))
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


def _check_kinds(given: tuple[str, ...], allowed: tuple[str, ...], name: str) -> None:
    """Raise :class:`InvalidInputError` unless ``given`` is a non-empty subset of ``allowed``."""
    bad = [k for k in given if k not in allowed]
    if not given or bad:
        raise InvalidInputError(f"{name} must be a non-empty subset of {allowed}, got {tuple(given)!r}")


@st.composite
def manifold_map_pairs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = MANIFOLD_KINDS,
    map_kinds: tuple[str, ...] = MAP_KINDS,
    max_d: int = 6,
    max_out: int = 16,
    noisy: bool = False,
) -> tuple[SampledManifold, RankedMap, dict[str, Any]]:
    """A manifold sample and a map of known Jacobian rank whose input space is the sample's ambient space.

    The manifold is drawn first (:func:`manifold_params`), then a map with ``in_dim = D``, the manifold's
    ambient dimension, so ``fmap(manifold.X)`` is defined.

    Parameters
    ----------
    draw : hypothesis.strategies.DrawFn
        Supplied by Hypothesis (:func:`hypothesis.strategies.composite`); callers omit it.
    kinds : tuple of str, default MANIFOLD_KINDS
        Manifold families, a subset of :data:`MANIFOLD_KINDS`.
    map_kinds : tuple of str, default MAP_KINDS
        Map families, a non-empty subset of :data:`MAP_KINDS` (``"linear"``: :class:`LinearMap`,
        ``"mlp"``: :class:`BottleneckMLP`, ``"residual"``: :class:`ResidualBlock`).
    max_d : int, default 6
        Largest intrinsic dimension.  6 (below :data:`MAX_RELIABLE_DIM`) keeps the ambient dimension
        ``D <= 2 * 6 + 4 = 16`` (flat torus, the widest family), i.e. the maps no wider than the default
        ``max_dim = 16`` of :func:`ranked_maps`.
    max_out : int, default 16
        Largest output dimension of a linear or MLP map (``>= 2``); 16 as in :func:`ranked_maps`.
    noisy : bool, default False
        Draw a noise level as :func:`manifold_params` does.  Off by default: the exact statement under test
        (``rank(J_f(x) T_x M) <= min(rank f, dim M)``) is about points on the manifold.

    Returns
    -------
    manifold : SampledManifold
        ``X`` of shape ``(n, D)`` float64 with ``d`` in ``[1, max_d]``, ``n`` in
        ``[min_sample_size(d), MAX_N]`` and ``D`` in ``[natural, natural + 4]`` (see
        :func:`manifold_params`).
    fmap : RankedMap
        ``fmap.in_dim == D``.  ``"residual"``: ``ResidualBlock(D, r)`` with update rank ``r`` in ``[1, D]``,
        ``out_dim = D`` and full Jacobian rank ``D`` (identity plus update).  ``"linear"``/``"mlp"``:
        ``out_dim`` in ``[2, max_out]`` and rank ``r`` in ``[1, min(D, out_dim)]``, every rank the
        constructors accept, so both cases of the bound occur: ``r < d`` (the map's rank binds) and
        ``r >= d`` (the manifold's dimension binds).
    params : dict
        The :func:`manifold_params` dict plus ``"map"`` (the map kind), ``"out_dim"``, ``"map_rank"``
        (``fmap.rank``) and ``"map_seed"``, for reports.  The manifold is rebuilt by
        ``build_manifold(params)``; a residual map's drawn update rank is ``fmap.update_rank`` (not in
        ``params``, whose ``"map_rank"`` is its full rank ``D``).

    Raises
    ------
    InvalidInputError
        If ``map_kinds`` is empty or names an unknown family (raised when an example is drawn).
    """
    _check_kinds(map_kinds, MAP_KINDS, "map_kinds")
    mp = draw(manifold_params(kinds=kinds, max_d=max_d, noisy=noisy))
    M = build_manifold(mp)
    D = M.ambient_dim
    kind = draw(st.sampled_from(map_kinds))
    seed = draw(seeds())
    if kind == "residual":
        r = draw(st.integers(1, D))
        fmap: RankedMap = ResidualBlock(D, r, seed=seed)
        out_dim = D
    else:
        out_dim = draw(st.integers(2, max_out))
        r = draw(st.integers(1, min(D, out_dim)))
        fmap = (
            LinearMap(D, out_dim, r, seed=seed)
            if kind == "linear"
            else BottleneckMLP(D, out_dim, r, seed=seed)
        )
    params = {**mp, "map": kind, "out_dim": out_dim, "map_rank": int(fmap.rank), "map_seed": seed}
    return M, fmap, params


@st.composite
def transformers_with_inputs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = TRANSFORMER_INPUT_KINDS,
    max_d: int = 5,
    n_range: tuple[int, int] = (MIN_N, 1500),
    max_blocks: int = 4,
) -> tuple[ToyTransformer, SampledManifold, dict[str, Any]]:
    """A :func:`toy_transformers` draw and a noise-free manifold sample in its input space.

    The transformer is drawn first; the manifold is then rotated (a random isometry,
    ``synthetic.manifolds`` ``embed_dim``) into exactly ``R^D`` with ``D = n_tokens * d_model``, so
    ``tt.forward_all(manifold.X)`` is defined and the manifold is not aligned with token boundaries.

    Parameters
    ----------
    draw : hypothesis.strategies.DrawFn
        Supplied by Hypothesis (:func:`hypothesis.strategies.composite`); callers omit it.
    kinds : tuple of str, default TRANSFORMER_INPUT_KINDS
        Manifold families, a non-empty subset of :data:`TRANSFORMER_INPUT_KINDS` (those that need at most
        ``d + 1`` ambient coordinates, so every drawn ``d`` fits in every ``D``).
    max_d : int, default 5
        Largest intrinsic dimension (``<= MAX_RELIABLE_DIM``; every hidden state's dimension is at most
        ``d``, so estimates of the hidden states stay in the reliable range).  The drawn ``d`` is in
        ``[1, max(1, min(max_d, D - 1))]``: ``D - 1`` so that a hypersphere (``d + 1`` coordinates) fits.
    n_range : (int, int), default (MIN_N, 1500)
        Inclusive range of the sample size ``n``.  The lower end is :data:`MIN_N` (the TwoNN precision
        argument of the module docstring); unlike :func:`sample_sizes` it is *not* raised to ``150 d``, so
        for ``d`` in ``{4, 5}`` ``n`` may be below :func:`min_sample_size`.  The upper end bounds the cost
        of one example: a forward pass through every block and an estimate per hidden state and method.
    max_blocks : int, default 4
        Passed to :func:`toy_transformers` (1 to ``max_blocks`` blocks, 2-4 tokens of width 2-6, so
        ``D`` in ``[4, 24]``).

    Returns
    -------
    tt : ToyTransformer
        The drawn transformer (``tt.in_dim == D``).
    manifold : SampledManifold
        ``X`` of shape ``(n, D)`` float64, no noise, intrinsic dimension ``d``.
    params : dict
        ``"kind"``, ``"n"``, ``"d"``, ``"D"``, ``"seed"`` (the manifold's) and ``"n_tokens"``,
        ``"d_model"``, ``"block_ranks"``, ``"update_ranks"``, ``"tt_seed"`` (the transformer's).

    Raises
    ------
    InvalidInputError
        If ``kinds`` is empty or names a family outside :data:`TRANSFORMER_INPUT_KINDS` (raised when an
        example is drawn).
    """
    _check_kinds(kinds, TRANSFORMER_INPUT_KINDS, "kinds")
    tt = draw(toy_transformers(max_blocks=max_blocks))
    D = int(tt.in_dim)
    kind = draw(st.sampled_from(kinds))
    d = draw(st.integers(1, max(1, min(max_d, D - 1))))
    n = draw(st.integers(*n_range))
    seed = draw(seeds())
    M = build_manifold({"kind": kind, "n": n, "d": d, "ambient_dim": D, "noise": 0.0, "seed": seed})
    params = {
        "kind": kind,
        "n": n,
        "d": d,
        "D": D,
        "seed": seed,
        "n_tokens": tt.n_tokens,
        "d_model": tt.d_model,
        "block_ranks": tt.block_ranks,
        "update_ranks": tt.update_ranks,
        "tt_seed": tt.seed,
    }
    return tt, M, params
