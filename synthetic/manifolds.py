"""Point samples of manifolds whose intrinsic dimension is known exactly.

Every generator returns a :class:`SampledManifold`: points ``X`` of shape ``(n, D)`` (float64), the true
intrinsic dimension, a name and the parameters (including the seed) that reproduce the sample.

Common keyword arguments
------------------------
ambient_dim : int, optional
    Pad the natural coordinates with zero columns up to this dimension (the manifold stays in a coordinate
    subspace).
embed_dim : int, optional
    After padding, map the points into ``R^embed_dim`` with a random isometry (:func:`embed_isometric`),
    so that the manifold is no longer aligned with the coordinate axes.  Distances are preserved exactly
    (up to float64 rounding).
noise : float
    Standard deviation of isotropic Gaussian noise added in the final ambient space (after embedding), so
    the noise also leaves the span of the manifold.  ``noise=0`` gives points exactly on the manifold.
seed : int
    Non-negative seed.  Clean points, the embedding and the noise use independent streams derived from it
    (:func:`numpy.random.SeedSequence.spawn`), so ``X(noise=s) - X(noise=0)`` is pure noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gelora.errors import InvalidInputError
from synthetic._validate import (
    check_float,
    check_int,
    check_intrinsic_ambient,
    check_noise,
    check_points,
    check_seed,
    child_rngs,
)

__all__ = [
    "SampledManifold",
    "embed_isometric",
    "flat_torus",
    "helix_curve",
    "hyperball",
    "hypercube",
    "hypersphere",
    "linear_subspace",
    "nonuniform_hypercube",
    "product_manifold",
    "random_orthonormal",
    "union_of_manifolds",
]


@dataclass(frozen=True)
class SampledManifold:
    """A sample of points from a manifold of known intrinsic dimension.

    Attributes
    ----------
    X : numpy.ndarray, shape (n, D), float64
        The points (one per row).
    intrinsic_dim : int
        The true intrinsic dimension ``d``.  For a union of manifolds of different dimensions this is the
        largest component dimension (the dimension of the union as a set); see :func:`union_of_manifolds`
        for the other summaries stored in ``params``.
    name : str
        Short name of the generator (``"hypersphere"``, ``"M1_Sphere"``, ...).
    params : dict
        Everything needed to reproduce ``X`` (including ``"seed"``), plus derived facts.
    pointwise_dim : numpy.ndarray of shape (n,), int64, optional
        True local dimension at each point; set for unions (``None`` means ``intrinsic_dim`` everywhere).
    """

    X: np.ndarray
    intrinsic_dim: int
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    pointwise_dim: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        """Number of points ``n``."""
        return int(self.X.shape[0])

    @property
    def ambient_dim(self) -> int:
        """Ambient dimension ``D`` (number of columns of ``X``)."""
        return int(self.X.shape[1])

    def local_dims(self) -> np.ndarray:
        """True local dimension of every point, shape ``(n,)`` int64."""
        if self.pointwise_dim is not None:
            return np.asarray(self.pointwise_dim, dtype=np.int64)
        return np.full(self.n_samples, self.intrinsic_dim, dtype=np.int64)


def random_orthonormal(n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random ``(n_rows, n_cols)`` matrix with orthonormal columns (``n_rows >= n_cols``).

    QR of a Gaussian matrix with the signs of ``diag(R)`` fixed, which makes the distribution Haar.
    """
    if n_cols > n_rows:
        raise InvalidInputError(f"cannot have {n_cols} orthonormal columns in dimension {n_rows}")
    G = rng.standard_normal((n_rows, n_cols))
    Q, R = np.linalg.qr(G)
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs


def embed_isometric(X: np.ndarray, D_new: int, seed: int = 0) -> np.ndarray:
    """Map points into a higher dimension with a random linear isometry.

    Parameters
    ----------
    X : array_like, shape (n, D)
        Points.
    D_new : int
        Target dimension, ``D_new >= D``.
    seed : int
        Seed of the random orthonormal matrix.

    Returns
    -------
    numpy.ndarray, shape (n, D_new), float64
        ``X @ Q.T`` with ``Q`` of shape ``(D_new, D)`` having Haar-random orthonormal columns, so all
        pairwise distances (and the intrinsic dimension) are preserved.
    """
    X = check_points(X)
    D = X.shape[1]
    D_new = check_int(D_new, "D_new", minimum=D)
    seed = check_seed(seed)
    Q = random_orthonormal(D_new, D, np.random.default_rng(seed))
    return X @ Q.T


def _pad(X: np.ndarray, ambient_dim: int) -> np.ndarray:
    if ambient_dim == X.shape[1]:
        return X
    return np.hstack([X, np.zeros((X.shape[0], ambient_dim - X.shape[1]))])


def _finish(
    X: np.ndarray,
    *,
    d: int,
    name: str,
    params: dict[str, Any],
    ambient_dim: int | None,
    embed_dim: int | None,
    noise: float,
    rng_embed: np.random.Generator,
    rng_noise: np.random.Generator,
    pointwise_dim: np.ndarray | None = None,
) -> SampledManifold:
    """Pad, embed, add noise and wrap the result (shared by all generators)."""
    natural = X.shape[1]
    D = natural if ambient_dim is None else check_int(ambient_dim, "ambient_dim", minimum=natural)
    X = _pad(np.asarray(X, dtype=np.float64), D)
    if embed_dim is not None:
        embed_dim = check_int(embed_dim, "embed_dim", minimum=D)
        X = X @ random_orthonormal(embed_dim, D, rng_embed).T
    if noise > 0:
        X = X + noise * rng_noise.standard_normal(X.shape)
    full = dict(params)
    full.update(ambient_dim=D, embed_dim=embed_dim, noise=noise)
    return SampledManifold(
        X=np.ascontiguousarray(X, dtype=np.float64),
        intrinsic_dim=int(d),
        name=name,
        params=full,
        pointwise_dim=pointwise_dim,
    )


def _common(
    n: object, d: object, noise: object, seed: object, *, d_min: int = 1
) -> tuple[int, int, float, int]:
    return (
        check_int(n, "n", minimum=1),
        check_int(d, "d", minimum=d_min),
        check_noise(noise),
        check_seed(seed),
    )


def _gaussian_directions(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` uniform unit vectors in ``R^k`` (normalised Gaussians, resampling exact zeros)."""
    V = rng.standard_normal((n, k))
    norms = np.linalg.norm(V, axis=1)
    while np.any(norms == 0):  # probability 0 in float64, kept for correctness
        bad = norms == 0
        V[bad] = rng.standard_normal((int(bad.sum()), k))
        norms = np.linalg.norm(V, axis=1)
    return V / norms[:, None]


def hypersphere(
    n: int,
    d: int,
    *,
    radius: float = 1.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Uniform sample of the round ``d``-sphere of radius ``radius`` in ``R^(d+1)``.

    Parameters
    ----------
    n : int
        Number of points (``>= 1``).
    d : int
        Intrinsic dimension (``>= 1``); natural ambient dimension ``d + 1``.
    radius : float
        Sphere radius (``> 0``).
    ambient_dim, noise, embed_dim, seed
        See the module docstring; ``ambient_dim >= d + 1``.

    Returns
    -------
    SampledManifold
        ``X`` of shape ``(n, D)``, ``intrinsic_dim = d``.
    """
    n, d, noise, seed = _common(n, d, noise, seed)
    radius = check_float(radius, "radius", strictly_positive=True)
    if ambient_dim is not None:
        check_intrinsic_ambient(d, check_int(ambient_dim, "ambient_dim"), min_codim=1)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    X = radius * _gaussian_directions(rng, n, d + 1)
    return _finish(
        X,
        d=d,
        name="hypersphere",
        params={"n": n, "d": d, "radius": radius, "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def hyperball(
    n: int,
    d: int,
    *,
    radius: float = 1.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Uniform sample of the solid ``d``-ball of radius ``radius`` in ``R^d``.

    A direction uniform on the sphere times a radius ``radius * U^(1/d)`` (``U`` uniform on [0, 1]),
    which is the uniform law on the ball.  See :func:`hypersphere` for the parameters
    (``ambient_dim >= d``).
    """
    n, d, noise, seed = _common(n, d, noise, seed)
    radius = check_float(radius, "radius", strictly_positive=True)
    if ambient_dim is not None:
        check_intrinsic_ambient(d, check_int(ambient_dim, "ambient_dim"))
    rng, rng_e, rng_n = child_rngs(seed, 3)
    directions = _gaussian_directions(rng, n, d)
    radii = radius * rng.random(n) ** (1.0 / d)
    return _finish(
        directions * radii[:, None],
        d=d,
        name="hyperball",
        params={"n": n, "d": d, "radius": radius, "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def hypercube(
    n: int,
    d: int,
    *,
    side: float = 1.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Uniform sample of the solid cube ``[0, side]^d`` (``ambient_dim >= d``)."""
    n, d, noise, seed = _common(n, d, noise, seed)
    side = check_float(side, "side", strictly_positive=True)
    if ambient_dim is not None:
        check_intrinsic_ambient(d, check_int(ambient_dim, "ambient_dim"))
    rng, rng_e, rng_n = child_rngs(seed, 3)
    return _finish(
        side * rng.random((n, d)),
        d=d,
        name="hypercube",
        params={"n": n, "d": d, "side": side, "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def flat_torus(
    n: int,
    d: int,
    *,
    radii: float | Sequence[float] = 1.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Uniform sample of the flat torus ``S^1(r_1) x ... x S^1(r_d)`` in ``R^(2d)`` (Clifford embedding).

    Point ``i`` is ``(r_1 cos t_1, r_1 sin t_1, ..., r_d cos t_d, r_d sin t_d)`` with independent angles
    ``t_j ~ U[0, 2 pi)``.  The induced metric is flat (zero Gaussian curvature), unlike the doughnut
    torus in ``R^3``.  ``radii`` is one radius or one per circle; ``ambient_dim >= 2d``.
    """
    n, d, noise, seed = _common(n, d, noise, seed)
    radii_list = [radii] if np.ndim(radii) == 0 else list(radii)  # type: ignore[arg-type]
    if len(radii_list) not in (1, d):
        raise InvalidInputError(f"radii must be one number or {d} numbers, got {len(radii_list)}")
    r = np.array([check_float(v, "radii", strictly_positive=True) for v in radii_list], dtype=np.float64)
    r = np.broadcast_to(r, (d,)).copy()
    if ambient_dim is not None:
        check_intrinsic_ambient(d, check_int(ambient_dim, "ambient_dim"), min_codim=d)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    t = 2.0 * np.pi * rng.random((n, d))
    X = np.empty((n, 2 * d))
    X[:, 0::2] = r * np.cos(t)
    X[:, 1::2] = r * np.sin(t)
    return _finish(
        X,
        d=d,
        name="flat_torus",
        params={"n": n, "d": d, "radii": [float(v) for v in r], "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def linear_subspace(
    n: int,
    d: int,
    ambient_dim: int,
    *,
    distribution: str = "gaussian",
    scale: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
) -> SampledManifold:
    """Points spanning a random ``d``-dimensional linear subspace of ``R^ambient_dim`` (rank exactly ``d``).

    Coordinates in the subspace are i.i.d. ``N(0, scale^2)`` (``distribution="gaussian"``) or
    ``U[-scale, scale]`` (``"uniform"``); the subspace basis is Haar-random orthonormal (stored neither in
    ``params`` nor needed: it is reproduced by the seed).  The centred data matrix has rank ``min(d, n)``.
    """
    n, d, noise, seed = _common(n, d, noise, seed)
    D = check_int(ambient_dim, "ambient_dim")
    check_intrinsic_ambient(d, D)
    scale = check_float(scale, "scale", strictly_positive=True)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    if distribution == "gaussian":
        Z = scale * rng.standard_normal((n, d))
    elif distribution == "uniform":
        Z = scale * rng.uniform(-1.0, 1.0, (n, d))
    else:
        raise InvalidInputError(f"distribution must be 'gaussian' or 'uniform', got {distribution!r}")
    return _finish(
        Z,
        d=d,
        name="linear_subspace",
        params={"n": n, "d": d, "distribution": distribution, "scale": scale, "seed": seed},
        ambient_dim=None,
        embed_dim=D,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def nonuniform_hypercube(
    n: int,
    d: int,
    *,
    a: float = 0.5,
    b: float = 3.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """The cube ``[0, 1]^d`` sampled with a strongly non-uniform density: i.i.d. ``Beta(a, b)`` coordinates.

    With the defaults ``a = 0.5, b = 3`` the density diverges at the face ``x_j = 0`` and vanishes at
    ``x_j = 1``, so local densities differ by orders of magnitude across the sample -- a stress test for
    estimators that assume locally uniform density (TwoNN and MLE assume it only within a neighbourhood).
    The support, and therefore the intrinsic dimension ``d``, does not depend on ``a, b``.
    """
    n, d, noise, seed = _common(n, d, noise, seed)
    a = check_float(a, "a", strictly_positive=True)
    b = check_float(b, "b", strictly_positive=True)
    if ambient_dim is not None:
        check_intrinsic_ambient(d, check_int(ambient_dim, "ambient_dim"))
    rng, rng_e, rng_n = child_rngs(seed, 3)
    return _finish(
        rng.beta(a, b, size=(n, d)),
        d=d,
        name="nonuniform_hypercube",
        params={"n": n, "d": d, "a": a, "b": b, "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def helix_curve(
    n: int,
    *,
    n_turns: float = 5.0,
    radius: float = 1.0,
    pitch: float = 1.0,
    ambient_dim: int | None = None,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """A circular helix ``(radius cos t, radius sin t, pitch t / (2 pi))``, ``t ~ U[0, 2 pi n_turns]``.

    A one-dimensional curve in ``R^3`` (the family of M5a/M13b in the benchmark).  Its curvature is
    ``radius / (radius^2 + (pitch / 2 pi)^2)``; estimators see ``d = 1`` only at scales below ``1/curvature``
    and below the distance between turns (``pitch``).
    """
    n = check_int(n, "n")
    noise = check_noise(noise)
    seed = check_seed(seed)
    n_turns = check_float(n_turns, "n_turns", strictly_positive=True)
    radius = check_float(radius, "radius", strictly_positive=True)
    pitch = check_float(pitch, "pitch", strictly_positive=True)
    rng, rng_e, rng_n = child_rngs(seed, 3)
    t = 2.0 * np.pi * n_turns * rng.random(n)
    X = np.column_stack([radius * np.cos(t), radius * np.sin(t), pitch * t / (2.0 * np.pi)])
    return _finish(
        X,
        d=1,
        name="helix_curve",
        params={"n": n, "n_turns": n_turns, "radius": radius, "pitch": pitch, "seed": seed},
        ambient_dim=ambient_dim,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def product_manifold(
    factors: Sequence[SampledManifold],
    *,
    noise: float = 0.0,
    embed_dim: int | None = None,
    seed: int = 0,
) -> SampledManifold:
    """Cartesian product of manifolds: row ``i`` is the concatenation of row ``i`` of every factor.

    The factors must have the same number of points and be independent samples (different seeds), so
    the rows are a sample of the product measure.  The intrinsic dimension is the sum of the factors'
    dimensions and the ambient dimension the sum of theirs.

    Parameters
    ----------
    factors : sequence of SampledManifold
        At least one factor; all with the same ``n`` and no ``pointwise_dim`` (unions are not allowed).
    noise, embed_dim, seed
        Applied to the concatenated points (see the module docstring).
    """
    if len(factors) < 1:
        raise InvalidInputError("product_manifold needs at least one factor")
    n = factors[0].n_samples
    for f in factors:
        if not isinstance(f, SampledManifold):
            raise InvalidInputError(f"factors must be SampledManifold objects, got {type(f).__name__}")
        if f.n_samples != n:
            raise InvalidInputError(f"all factors must have the same n; got {[g.n_samples for g in factors]}")
        if f.pointwise_dim is not None:
            raise InvalidInputError(
                "a union of manifolds has no single dimension; it cannot be a product factor"
            )
    noise = check_noise(noise)
    seed = check_seed(seed)
    _, rng_e, rng_n = child_rngs(seed, 3)
    d = sum(f.intrinsic_dim for f in factors)
    return _finish(
        np.hstack([f.X for f in factors]),
        d=d,
        name="product(" + ",".join(f.name for f in factors) + ")",
        params={"factors": [{"name": f.name, **f.params} for f in factors], "n": n, "seed": seed},
        ambient_dim=None,
        embed_dim=embed_dim,
        noise=noise,
        rng_embed=rng_e,
        rng_noise=rng_n,
    )


def union_of_manifolds(
    components: Sequence[SampledManifold],
    *,
    separation: float = 0.0,
    seed: int = 0,
) -> SampledManifold:
    """Union of manifolds of possibly different dimensions, with the true dimension of every point.

    Components are zero-padded to a common ambient dimension, component ``j`` is translated by
    ``j * separation`` along a random unit vector, and the rows are shuffled (seeded).

    What is the "true" dimension of a union?  There is no single answer, so three are recorded
    (``w_j = n_j / n`` are the mixture weights, ``d_j`` the component dimensions):

    * ``intrinsic_dim = params["dim_max"] = max_j d_j`` -- the dimension of the union as a set (its Hausdorff
      and topological dimension).  This is "true" for the question the rank rule asks (how many directions
      the representation occupies) and is what a *correct* global estimator should not exceed.
    * ``params["dim_mean"] = sum_j w_j d_j`` -- the mean of the pointwise dimensions
      (``pointwise_dim.mean()``).  This is the target of estimators that average pointwise estimates
      (the Levina-Bickel MLE averaged over points) when components are well separated.
    * ``params["dim_harmonic"] = 1 / sum_j (w_j / d_j)`` -- the target of the TwoNN maximum-likelihood fit
      ``d = n / sum_i log(mu_i)`` when every point's two nearest neighbours lie in its own component:
      ``log mu_i`` is exponential with mean ``1 / d_j`` there, so the fit converges to the weighted harmonic
      mean.  It is also the target of MLE with the MacKay-Ghahramani average of inverse estimates.

    ``pointwise_dim`` holds ``d_j`` for every row, so pointwise estimators can be scored per point.

    Parameters
    ----------
    components : sequence of SampledManifold
        At least one component.
    separation : float
        Translation step between components (``>= 0``); use a value larger than the components' diameters
        to keep every nearest neighbour inside its own component.
    seed : int
        Seed of the translation direction and of the row shuffle.
    """
    if len(components) < 1:
        raise InvalidInputError("union_of_manifolds needs at least one component")
    for c in components:
        if not isinstance(c, SampledManifold):
            raise InvalidInputError(f"components must be SampledManifold objects, got {type(c).__name__}")
    separation = check_float(separation, "separation", minimum=0.0)
    seed = check_seed(seed)
    rng_dir, rng_perm = child_rngs(seed, 2)
    D = max(c.ambient_dim for c in components)
    direction = _gaussian_directions(rng_dir, 1, D)[0]
    blocks = [_pad(c.X, D) + j * separation * direction for j, c in enumerate(components)]
    dims = np.concatenate([c.local_dims() for c in components])
    X = np.vstack(blocks)
    perm = rng_perm.permutation(X.shape[0])
    X, dims = X[perm], dims[perm]
    weights = np.array([c.n_samples for c in components], dtype=np.float64)
    weights /= weights.sum()
    cdims = np.array([c.intrinsic_dim for c in components], dtype=np.float64)
    params = {
        "components": [{"name": c.name, "intrinsic_dim": c.intrinsic_dim, **c.params} for c in components],
        "separation": separation,
        "seed": seed,
        "weights": [float(w) for w in weights],
        "dim_max": int(dims.max()),
        "dim_mean": float(dims.mean()),
        "dim_harmonic": float(1.0 / np.mean(1.0 / dims)),
        "component_dims": [int(v) for v in cdims],
        "ambient_dim": D,
        "n": int(X.shape[0]),
    }
    return SampledManifold(
        X=np.ascontiguousarray(X),
        intrinsic_dim=int(dims.max()),
        name="union(" + ",".join(c.name for c in components) + ")",
        params=params,
        pointwise_dim=dims.astype(np.int64),
    )
