"""Joint strategies the theory suite needs that ``synthetic.strategies`` does not (yet) provide.

``synthetic.strategies.ranked_maps`` draws a map's input dimension independently of any manifold, so a
map cannot be applied to a drawn manifold sample. :func:`manifold_map_pairs` draws the manifold first
(with ``synthetic.strategies.manifold_params``) and then a map whose ``in_dim`` is the manifold's
ambient dimension, using the same map families and rank ranges as ``ranked_maps``. It belongs in
``synthetic/strategies.py`` (requested from its owner); it lives here until it moves there.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from synthetic.manifolds import SampledManifold
from synthetic.maps import BottleneckMLP, LinearMap, RankedMap, ResidualBlock
from synthetic.strategies import MANIFOLD_KINDS, build_manifold, manifold_params, seeds

MAP_KINDS = ("linear", "mlp", "residual")


@st.composite
def manifold_map_pairs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = MANIFOLD_KINDS,
    map_kinds: tuple[str, ...] = MAP_KINDS,
    max_d: int = 6,
    max_out: int = 16,
    noisy: bool = False,
) -> tuple[SampledManifold, RankedMap, dict[str, Any]]:
    """A noise-free manifold sample and a map of known rank that accepts it.

    Returns
    -------
    (manifold, fmap, params)
        ``fmap.in_dim == manifold.ambient_dim``; ``params`` holds everything drawn (for reports).
    """
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


def build_input_manifold(kind: str, n: int, d: int, D: int, seed: int) -> SampledManifold:
    """A noise-free unit-scale manifold sample of ``kind`` rotated into exactly ``R^D``."""
    from synthetic import manifolds as _m

    if kind == "linear_subspace":
        return _m.linear_subspace(n, d, D, seed=seed)
    return getattr(_m, kind)(n, d, embed_dim=D, seed=seed)


@st.composite
def transformers_with_inputs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = ("hypercube", "hyperball", "linear_subspace", "hypersphere"),
    max_d: int = 5,
    n_range: tuple[int, int] = (500, 1500),
    max_blocks: int = 4,
) -> tuple[Any, SampledManifold, dict[str, Any]]:
    """A ``synthetic.strategies.toy_transformers`` draw and a noise-free input manifold in its input space.

    The manifold's dimension is at most ``min(max_d, D - 1)`` (``D = n_tokens * d_model``) so a sphere
    fits; ``n`` is drawn from ``n_range``.
    """
    from synthetic.strategies import toy_transformers

    tt = draw(toy_transformers(max_blocks=max_blocks))
    D = int(tt.in_dim)
    kind = draw(st.sampled_from(kinds))
    d = draw(st.integers(1, max(1, min(max_d, D - 1))))
    n = draw(st.integers(*n_range))
    seed = draw(seeds())
    M = build_input_manifold(kind, n, d, D, seed)
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
