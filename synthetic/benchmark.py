"""The standard intrinsic-dimension benchmark: Hein & Audibert (2005), extended by Campadelli et al. (2015).

Each manifold is written here from its published definition (the names and conventions follow
scikit-dimension's ``BenchmarkManifolds`` so results can be compared one to one).  Every generator is
split into a *parameter sampler* and a smooth *chart* from parameters to ``R^D``; :func:`benchmark_manifold`
composes them, and :func:`benchmark_patch` samples a tiny neighbourhood of one point through the same
chart, which lets tests check the true dimension by local PCA even where a global sample is far too
sparse (``M10d`` has ``d = 70``).

References
----------
M. Hein and J.-Y. Audibert, "Intrinsic dimensionality estimation of submanifolds in R^d", ICML 2005.
P. Campadelli, E. Casiraghi, C. Ceruti and A. Rozza, "Intrinsic dimension estimation: relevant
techniques and a benchmark framework", Mathematical Problems in Engineering, 2015, article 759567.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gelora.errors import InvalidInputError
from synthetic._validate import check_float, check_int, check_noise, check_seed, child_rngs
from synthetic.manifolds import SampledManifold, _finish

__all__ = ["BENCHMARK_MANIFOLDS", "BenchmarkSpec", "benchmark_manifold", "benchmark_patch", "resolve_name"]

HEIN = "Hein & Audibert (2005)"
CAMPADELLI = "Campadelli et al. (2015)"
DEFAULT_N = 2500  # scikit-dimension's BenchmarkManifolds.generate default


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark manifold.

    Attributes
    ----------
    name : str
        Name as in scikit-dimension (``"M1_Sphere"``); the short alias is the part before ``"_"``.
    intrinsic_dim, ambient_dim : int
        True ``d`` and ``D``.
    default_n : int
        Default sample size.
    description : str
        One line.
    reference : str
        Publication that defines it.
    sample_params : callable ``(rng, n) -> (n, p) array``
        Draws the chart parameters.
    chart : callable ``(params) -> (n, ambient_dim) array``
        Smooth map from parameters to points.
    n_discrete : int
        Leading parameter columns that are discrete labels (not perturbed by :func:`benchmark_patch`).
    """

    name: str
    intrinsic_dim: int
    ambient_dim: int
    default_n: int
    description: str
    reference: str
    sample_params: Callable[[np.random.Generator, int], np.ndarray]
    chart: Callable[[np.ndarray], np.ndarray]
    n_discrete: int = 0

    @property
    def alias(self) -> str:
        """Short name (``"M1"``, ``"M10a"``, ``"Mbeta"``)."""
        return self.name.split("_")[0]


# ----------------------------------------------------------------------------------------------- charts


def _uniform(low: float, high: float, p: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(low, high, (n, p))

    return sample


def _sphere_params(rng: np.random.Generator, n: int, d: int = 10) -> np.ndarray:
    return rng.standard_normal((n, d + 1))


def _sphere_chart(P: np.ndarray) -> np.ndarray:
    return P / np.linalg.norm(P, axis=1, keepdims=True)


_AFFINE_3TO5 = np.array(
    [[1.2, -0.5, 0.0], [0.5, 0.9, 0.0], [-0.5, -0.2, 1.0], [0.4, -0.9, -0.1], [1.1, -0.3, 0.0]]
)
_AFFINE_3TO5_SHIFT = np.array([3.0, -1.0, 0.0, 0.0, 8.0])


def _affine_3to5_chart(P: np.ndarray) -> np.ndarray:
    """M2: ``x = A p + b`` for ``p ~ U[0, 4]^3``."""
    return P @ _AFFINE_3TO5.T + _AFFINE_3TO5_SHIFT


def _concentrated_4to6_chart(P: np.ndarray) -> np.ndarray:
    """M3: the 'concentrated figure', 4 parameters in ``[0, 1]`` mapped nonlinearly to ``R^6``."""
    a, b, c, e = P.T
    return np.column_stack(
        [
            b**2 * np.cos(2 * np.pi * a),
            c**2 * np.sin(2 * np.pi * a),
            b + c + (b - e) ** 2,
            b - 2 * c + (a - e) ** 2,
            -b - 2 * c + (c - e) ** 2,
            a**2 - b**2 + c**2 - e**2,
        ]
    )


def _cyclic_nonlinear_chart(D: int) -> Callable[[np.ndarray], np.ndarray]:
    """M4/M6/M8: for ``p ~ U[0,1]^d`` the ``2d`` functions ``p_{i+1} cos(2 pi p_i), p_{i+1} sin(2 pi p_i)``
    (indices cyclic), repeated ``D / (2d)`` times."""

    def chart(P: np.ndarray) -> np.ndarray:
        n, d = P.shape
        nxt = np.roll(P, -1, axis=1)
        block = np.empty((n, 2 * d))
        block[:, 0::2] = nxt * np.cos(2 * np.pi * P)
        block[:, 1::2] = nxt * np.sin(2 * np.pi * P)
        return np.tile(block, (1, D // (2 * d)))

    return chart


def _helix1d_chart(P: np.ndarray) -> np.ndarray:
    """M5a: ``t -> ((2 + cos 8t) cos t, (2 + cos 8t) sin t, sin 8t)``, a curve winding 8 times round a torus."""
    t = P[:, 0]
    return np.column_stack([(2 + np.cos(8 * t)) * np.cos(t), (2 + np.cos(8 * t)) * np.sin(t), np.sin(8 * t)])


def _helix2d_chart(P: np.ndarray) -> np.ndarray:
    """M5b: helicoid ``(r cos p, r sin p, p / 2)`` with ``r, p ~ U[0, 10 pi]``."""
    r, p = P.T
    return np.column_stack([r * np.cos(p), r * np.sin(p), 0.5 * p])


def _roll_chart(P: np.ndarray) -> np.ndarray:
    """M7: Swiss roll ``(t cos t, h, t sin t)``, ``t ~ U[1.5 pi, 4.5 pi]``, ``h ~ U[0, 21]``."""
    t, h = P.T
    return np.column_stack([t * np.cos(t), h, t * np.sin(t)])


def _identity_chart(P: np.ndarray) -> np.ndarray:
    return np.array(P, dtype=np.float64, copy=True)


def _cube_boundary_params(d: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    """M10: the boundary of ``[0,1]^(d+1)`` (a ``d``-manifold): a face (axis, side) uniformly at random,
    then ``d`` free coordinates uniform in ``[0, 1]``.  Columns: ``[axis, side, u_1..u_d]``."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        axis = rng.integers(0, d + 1, n)
        side = rng.integers(0, 2, n)
        return np.column_stack([axis, side, rng.random((n, d))]).astype(np.float64)

    return sample


def _cube_boundary_chart(P: np.ndarray) -> np.ndarray:
    n, p = P.shape
    d = p - 2
    axis = P[:, 0].astype(np.int64)
    X = np.empty((n, d + 1))
    cols = np.arange(d + 1)
    for i in range(n):
        free = cols != axis[i]
        X[i, free] = P[i, 2:]
        X[i, axis[i]] = P[i, 1]
    return X


def _moebius_chart(P: np.ndarray) -> np.ndarray:
    """M11: band ``((1 + s/2 cos 5phi) cos phi, (1 + s/2 cos 5phi) sin phi, s/2 sin 5phi)``,
    ``phi ~ U[0, 2 pi]``, ``s ~ U[-1, 1]`` (ten half-twists)."""
    phi, s = P.T
    w = 1 + 0.5 * s * np.cos(5 * phi)
    return np.column_stack([w * np.cos(phi), w * np.sin(phi), 0.5 * s * np.sin(5 * phi)])


def _normal_params(p: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, p))

    return sample


def _scurve_chart(P: np.ndarray) -> np.ndarray:
    """M13a: S-curve ``(sin t, h, sign(t)(cos t - 1))``, ``t ~ U[-1.5 pi, 1.5 pi]``, ``h ~ U[0, 2]``."""
    t, h = P.T
    return np.column_stack([np.sin(t), h, np.sign(t) * (np.cos(t) - 1)])


def _spiral_chart(P: np.ndarray) -> np.ndarray:
    """M13b: helix ``(100 cos t, 100 sin t, t)``, ``t ~ U[0, 10 pi]`` (padded to 13 coordinates)."""
    t = P[:, 0]
    return np.column_stack([100 * np.cos(t), 100 * np.sin(t), t])


def _beta_params(d: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.beta(10.0, 0.5, (n, d))

    return sample


def _mbeta_chart(P: np.ndarray) -> np.ndarray:
    """Mbeta: ``x ~ Beta(10, 0.5)^d``; features ``x sin(cos 2 pi x)``, ``x cos(sin 2 pi x)``, each block twice."""
    a = P * np.sin(np.cos(2 * np.pi * P))
    b = P * np.cos(np.sin(2 * np.pi * P))
    return np.hstack([a, b, a, b])


def _mn_chart(P: np.ndarray) -> np.ndarray:
    """Mn1/Mn2: ``x ~ U[0,1]^d``; ``tan(x_i cos x_{d-1-i})`` and ``arctan(x_{d-1-i} sin x_i)``, each block twice."""
    rev = P[:, ::-1]
    a = np.tan(P * np.cos(rev))
    b = np.arctan(rev * np.sin(P))
    return np.hstack([a, b, a, b])


def _burr_params(d: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Mp: multivariate Burr (alpha = 1) law on ``(0, 1)^d``: ``y_i = E_0 / (E_0 + E_i)``, ``E ~ Exp(1)^(d+1)``."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        E = rng.exponential(1.0, (n, d + 1))
        return E[:, :1] / (E[:, :1] + E[:, 1:])

    return sample


def _paraboloid_chart(P: np.ndarray) -> np.ndarray:
    """Mp: ``z = (y, |y|^2)`` on the paraboloid, embedded as ``(z, sin z, z^2)`` in ``3 (d + 1)`` coordinates."""
    z = np.hstack([P, np.sum(P**2, axis=1, keepdims=True)])
    return np.hstack([z, np.sin(z), z**2])


def _spec(
    name: str,
    d: int,
    D: int,
    desc: str,
    ref: str,
    sample: Callable[[np.random.Generator, int], np.ndarray],
    chart: Callable[[np.ndarray], np.ndarray],
    n_discrete: int = 0,
) -> BenchmarkSpec:
    return BenchmarkSpec(name, d, D, DEFAULT_N, desc, ref, sample, chart, n_discrete)


_SPECS = [
    _spec("M1_Sphere", 10, 11, "10-sphere, uniform", HEIN, _sphere_params, _sphere_chart),
    _spec(
        "M2_Affine_3to5",
        3,
        5,
        "3-d affine space in R^5, p ~ U[0,4]^3",
        HEIN,
        _uniform(0, 4, 3),
        _affine_3to5_chart,
    ),
    _spec(
        "M3_Nonlinear_4to6",
        4,
        6,
        "concentrated figure, mistakable for 3-d",
        HEIN,
        _uniform(0, 1, 4),
        _concentrated_4to6_chart,
    ),
    _spec("M4_Nonlinear", 4, 8, "nonlinear manifold", HEIN, _uniform(0, 1, 4), _cyclic_nonlinear_chart(8)),
    _spec("M5a_Helix1d", 1, 3, "1-d helix on a torus", HEIN, _uniform(0, 2 * np.pi, 1), _helix1d_chart),
    _spec("M5b_Helix2d", 2, 3, "2-d helicoid", HEIN, _uniform(0, 10 * np.pi, 2), _helix2d_chart),
    _spec("M6_Nonlinear", 6, 36, "nonlinear manifold", HEIN, _uniform(0, 1, 6), _cyclic_nonlinear_chart(36)),
    _spec(
        "M7_Roll",
        2,
        3,
        "Swiss roll",
        HEIN,
        lambda rng, n: np.column_stack([rng.uniform(1.5 * np.pi, 4.5 * np.pi, n), rng.uniform(0, 21, n)]),
        _roll_chart,
    ),
    _spec(
        "M8_Nonlinear",
        12,
        72,
        "nonlinear (highly curved, sinusoidal) manifold",
        HEIN,
        _uniform(0, 1, 12),
        _cyclic_nonlinear_chart(72),
    ),
    _spec(
        "M9_Affine",
        20,
        20,
        "20-d affine space, U[-2.5, 2.5]^20",
        HEIN,
        _uniform(-2.5, 2.5, 20),
        _identity_chart,
    ),
    *[
        _spec(
            f"M10{letter}_Cubic",
            d,
            d + 1,
            f"boundary of the {d + 1}-cube ({d}-d)",
            HEIN,
            _cube_boundary_params(d),
            _cube_boundary_chart,
            n_discrete=2,
        )
        for letter, d in (("a", 10), ("b", 17), ("c", 24), ("d", 70))
    ],
    _spec(
        "M11_Moebius",
        2,
        3,
        "Moebius-type band, 10 half-twists",
        HEIN,
        lambda rng, n: np.column_stack([rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n)]),
        _moebius_chart,
    ),
    _spec("M12_Norm", 20, 20, "isotropic Gaussian N(0, I_20)", HEIN, _normal_params(20), _identity_chart),
    _spec(
        "M13a_Scurve",
        2,
        3,
        "2-d S-curve",
        HEIN,
        lambda rng, n: np.column_stack([rng.uniform(-1.5 * np.pi, 1.5 * np.pi, n), rng.uniform(0, 2, n)]),
        _scurve_chart,
    ),
    _spec(
        "M13b_Spiral",
        1,
        13,
        "1-d helix (radius 100, 5 turns) in R^13",
        HEIN,
        _uniform(0, 10 * np.pi, 1),
        _spiral_chart,
    ),
    _spec(
        "Mbeta",
        10,
        40,
        "smooth non-uniform Beta(10, 0.5) density, nonlinear embedding",
        CAMPADELLI,
        _beta_params(10),
        _mbeta_chart,
    ),
    _spec(
        "Mn1_Nonlinear",
        18,
        72,
        "high-d nonlinear embedding (tan / arctan)",
        CAMPADELLI,
        _uniform(0, 1, 18),
        _mn_chart,
    ),
    _spec(
        "Mn2_Nonlinear",
        24,
        96,
        "high-d nonlinear embedding (tan / arctan)",
        CAMPADELLI,
        _uniform(0, 1, 24),
        _mn_chart,
    ),
    *[
        _spec(
            f"Mp{i}_Paraboloid",
            d,
            3 * (d + 1),
            f"{d}-d paraboloid, multivariate Burr density",
            CAMPADELLI,
            _burr_params(d),
            _paraboloid_chart,
        )
        for i, d in ((1, 3), (2, 6), (3, 9))
    ],
]

BENCHMARK_MANIFOLDS: dict[str, BenchmarkSpec] = {s.name: s for s in _SPECS}
"""Every benchmark manifold by name (``d``, ``D``, default ``n``, description, reference, generator)."""

_ALIASES = {s.alias.lower(): s.name for s in _SPECS}


def resolve_name(name: str) -> str:
    """Full benchmark name from a full name or short alias (case-insensitive): ``"m10a"`` -> ``"M10a_Cubic"``."""
    if not isinstance(name, str):
        raise InvalidInputError(f"benchmark name must be a string, got {type(name).__name__}")
    if name in BENCHMARK_MANIFOLDS:
        return name
    lower = {k.lower(): k for k in BENCHMARK_MANIFOLDS}
    key = name.lower()
    if key in lower:
        return lower[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise InvalidInputError(f"unknown benchmark manifold {name!r}; known: {', '.join(BENCHMARK_MANIFOLDS)}")


def _padded_chart(spec: BenchmarkSpec, P: np.ndarray) -> np.ndarray:
    X = spec.chart(P)
    if X.shape[1] < spec.ambient_dim:
        X = np.hstack([X, np.zeros((X.shape[0], spec.ambient_dim - X.shape[1]))])
    return X


def benchmark_manifold(
    name: str,
    n: int | None = None,
    *,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Sample one benchmark manifold.

    Parameters
    ----------
    name : str
        Key of :data:`BENCHMARK_MANIFOLDS` or its short alias (``"M7"``, ``"M10d"``, ``"Mp2"``).
    n : int, optional
        Number of points (default: the spec's ``default_n``, 2500).
    noise : float
        Standard deviation of isotropic Gaussian noise (scikit-dimension's default is *uniform* noise of
        width ``noise``; see docs/synthetic.md).
    embed_dim : int, optional
        Random isometric embedding into ``R^embed_dim`` (``>= D``).
    seed : int
        Seed (independent streams for points, embedding and noise).

    Returns
    -------
    SampledManifold
        ``X`` of shape ``(n, D)`` (or ``(n, embed_dim)``), ``intrinsic_dim = d``, ``name`` the full name.
    """
    spec = BENCHMARK_MANIFOLDS[resolve_name(name)]
    n = spec.default_n if n is None else check_int(n, "n")
    noise = check_noise(noise)
    seed = check_seed(seed)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    X = _padded_chart(spec, spec.sample_params(rng, n))
    return _finish(
        X,
        d=spec.intrinsic_dim,
        name=spec.name,
        params={"n": n, "seed": seed, "reference": spec.reference},
        ambient_dim=spec.ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def benchmark_patch(name: str, n: int = 200, *, radius: float = 1e-6, seed: int = 0) -> SampledManifold:
    """Noise-free points from a tiny neighbourhood of one random point of a benchmark manifold.

    A base parameter ``p0`` is drawn from the manifold's own parameter law and the continuous parameters
    are perturbed by ``U[-radius, radius]`` (discrete labels such as the M10 face are kept), then mapped by
    the chart.  At this scale curvature is negligible (relative size ``~ (kappa radius)^2``), so local PCA
    of the patch shows ``d`` exactly: this is how the tests check the true dimension of manifolds where a
    global sample of affordable size is far too sparse.

    Parameters
    ----------
    name : str
        Benchmark name or alias.
    n : int
        Points in the patch (``>= 2``); use ``n > d`` to see all ``d`` directions.
    radius : float
        Half-width of the parameter box (``> 0``).
    seed : int
        Seed of the base point and the perturbations.

    Returns
    -------
    SampledManifold
        ``X`` of shape ``(n, D)`` and the spec's ``intrinsic_dim``.
    """
    spec = BENCHMARK_MANIFOLDS[resolve_name(name)]
    n = check_int(n, "n", minimum=2)
    radius = check_float(radius, "radius", strictly_positive=True)
    seed = check_seed(seed)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    p0 = spec.sample_params(rng, 1)
    P = np.repeat(p0, n, axis=0)
    k = spec.n_discrete
    P[:, k:] += rng.uniform(-radius, radius, (n, P.shape[1] - k))
    return _finish(
        _padded_chart(spec, P),
        d=spec.intrinsic_dim,
        name=f"{spec.name}_patch",
        params={"n": n, "seed": seed, "radius": radius},
        ambient_dim=spec.ambient_dim,
        embed_dim=None,
        noise=0.0,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )
