"""Ground truth for gelora: data of known intrinsic dimension and maps of known Jacobian rank.

Modules
-------
manifolds
    Generators returning :class:`~synthetic.manifolds.SampledManifold` (hyperspheres, balls, cubes, flat
    tori, subspaces, non-uniform densities, products and unions).
benchmark
    The Hein & Audibert (2005) / Campadelli et al. (2015) benchmark ``M1 ... M13`` and the Campadelli
    extensions (``benchmark_manifold``, ``BENCHMARK_MANIFOLDS``).
maps
    Linear maps, bottleneck MLPs, residual blocks and a toy transformer with exact Jacobian ranks.
local_pca
    Local PCA reference dimension for noise-free samples.
strategies
    Hypothesis strategies (import explicitly: ``from synthetic import strategies``; needs hypothesis).
"""

from synthetic.benchmark import BENCHMARK_MANIFOLDS, benchmark_manifold
from synthetic.local_pca import local_pca_dimension
from synthetic.manifolds import SampledManifold, embed_isometric

__all__ = [
    "BENCHMARK_MANIFOLDS",
    "SampledManifold",
    "benchmark_manifold",
    "embed_isometric",
    "local_pca_dimension",
]
