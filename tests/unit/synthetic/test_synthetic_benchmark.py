"""Tests of synthetic.benchmark: table, true dimensions, reproducibility and agreement with scikit-dimension."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gelora.errors import InvalidInputError
from synthetic.benchmark import BENCHMARK_MANIFOLDS, benchmark_manifold, benchmark_patch, resolve_name
from synthetic.local_pca import local_pca_dimension

NAMES = list(BENCHMARK_MANIFOLDS)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dimension_and_reproducibility(name: str) -> None:
    spec = BENCHMARK_MANIFOLDS[name]
    m = benchmark_manifold(name, 300, seed=4)
    assert m.X.shape == (300, spec.ambient_dim) and m.X.dtype == np.float64
    assert np.all(np.isfinite(m.X))
    assert m.intrinsic_dim == spec.intrinsic_dim and m.name == name
    np.testing.assert_array_equal(m.X, benchmark_manifold(name, 300, seed=4).X)
    assert not np.array_equal(m.X, benchmark_manifold(name, 300, seed=5).X)
    assert spec.default_n == 2500 and benchmark_manifold(name, seed=0).n_samples == 2500


@pytest.mark.parametrize("name", NAMES)
def test_true_dimension_on_small_patches(name: str) -> None:
    # a patch of radius 1e-6 in parameter space: measured on these patches, normal (curvature) eigenvalues
    # are <= 3.3e-12 * l_1, far below tol = 1e-9, and tangent ones >= 1.3e-4 * l_1, far above it
    d = BENCHMARK_MANIFOLDS[name].intrinsic_dim
    for seed in range(3):
        p = benchmark_patch(name, n=2 * d + 10, seed=seed)
        assert local_pca_dimension(p.X, k=p.n_samples - 1, n_centers=1, tol=1e-9) == d


# low-dimensional manifolds where a global sample of 2000 points is dense enough for local PCA
# (also checked by hand for seeds 0..4)
@pytest.mark.parametrize(
    "name",
    ["M2_Affine_3to5", "M5a_Helix1d", "M7_Roll", "M9_Affine", "M11_Moebius", "M13a_Scurve", "M12_Norm"],
)
def test_true_dimension_on_global_samples(name: str) -> None:
    m = benchmark_manifold(name, 2000, seed=0)
    assert local_pca_dimension(m.X, n_centers=50) == m.intrinsic_dim


def test_aliases_and_embedding() -> None:
    assert resolve_name("m10a") == "M10a_Cubic" and resolve_name("Mp2") == "Mp2_Paraboloid"
    assert resolve_name("m1_sphere") == "M1_Sphere"
    m = benchmark_manifold("M7", 100, embed_dim=10, noise=0.0, seed=1)
    assert m.X.shape == (100, 10) and m.name == "M7_Roll"
    base = benchmark_manifold("M7", 100, seed=1).X
    dist = lambda A: np.linalg.norm(A[:, None] - A[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(m.X), dist(base), atol=1e-10)


def test_cube_boundary_points_lie_on_a_face() -> None:
    X = benchmark_manifold("M10b", 500, seed=0).X
    on_face = np.any((X == 0.0) | (X == 1.0), axis=1)
    assert on_face.all() and X.min() >= 0 and X.max() <= 1


@pytest.mark.parametrize(
    "call",
    [
        lambda: benchmark_manifold("M99"),
        lambda: benchmark_manifold(3),  # type: ignore[arg-type]
        lambda: benchmark_manifold("M1", 0),
        lambda: benchmark_manifold("M1", 10, noise=-1.0),
        lambda: benchmark_manifold("M1", 10, embed_dim=5),
        lambda: benchmark_patch("M1", n=1),
        lambda: benchmark_patch("M1", radius=0.0),
    ],
)
def test_bad_input(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError):
        call()


# ------------------------------------------------------------------------------------ scikit-dimension

SKDIM_METHODS = {
    "M1_Sphere": "_gen_sphere_data",
    "M2_Affine_3to5": "_gen_affine3_5_data",
    "M3_Nonlinear_4to6": "_gen_nonlinear4_6_data",
    "M4_Nonlinear": "_gen_nonlinear_data",
    "M5a_Helix1d": "_gen_helix1_data",
    "M5b_Helix2d": "_gen_helix2_data",
    "M6_Nonlinear": "_gen_nonlinear_data",
    "M7_Roll": "_gen_roll_data",
    "M8_Nonlinear": "_gen_nonlinear_data",
    "M9_Affine": "_gen_affine_data",
    "M10a_Cubic": "_gen_cubic_data",
    "M10b_Cubic": "_gen_cubic_data",
    "M10c_Cubic": "_gen_cubic_data",
    "M10d_Cubic": "_gen_cubic_data",
    "M11_Moebius": "_gen_moebius_data",
    "M12_Norm": "_gen_norm_data",
    "M13a_Scurve": "_gen_scurve_data",
    "M13b_Spiral": "_gen_spiral_data",
    "Mbeta": "_gen_campadelli_beta_data",
    "Mn1_Nonlinear": "_gen_campadelli_n_data",
    "Mn2_Nonlinear": "_gen_campadelli_n_data",
    "Mp1_Paraboloid": "_gen_paraboloid_data",
    "Mp2_Paraboloid": "_gen_paraboloid_data",
    "Mp3_Paraboloid": "_gen_paraboloid_data",
}
N_COMPARE = 3000
FAMILY_ALPHA = 1e-3  # probability that the whole comparison fails although the distributions are equal


def _skdim_generator(seed: int):  # type: ignore[no-untyped-def]
    """skdim's BenchmarkManifolds without its optional pandas table (only the generators are used)."""
    skdim_datasets = pytest.importorskip("skdim.datasets")
    cls = skdim_datasets.BenchmarkManifolds
    try:
        return cls(random_state=seed)
    except ImportError:  # pandas missing: __init__ sets random_state and _dict_truth before importing it
        obj = cls.__new__(cls)
        try:
            cls.__init__(obj, random_state=seed)
        except ImportError:
            pass
        return obj


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-coordinate mean, its variance, sample variance and the variance of the sample variance."""
    n = X.shape[0]
    mean = X.mean(0)
    c = X - mean
    var = (c**2).mean(0)
    m4 = (c**4).mean(0)
    return mean, var / n, var, np.maximum(m4 - var**2, 0.0) / n


@pytest.mark.peers
def test_distributions_match_scikit_dimension() -> None:
    """Per-coordinate means and variances agree with skdim's generators for every benchmark manifold.

    Two independent samples of N_COMPARE points.  For each coordinate, z = (a - b) / sqrt(se_a^2 + se_b^2) for
    the mean (se^2 = var / n) and for the variance (se^2 = (m4 - var^2) / n, the CLT variance of the sample
    variance).  All coordinates here are bounded, so both statistics are asymptotically normal.  The threshold
    is Bonferroni over every comparison, so the probability of a false failure is at most FAMILY_ALPHA = 1e-3.
    Identically-zero (padding) coordinates must be zero in both.  With N_COMPARE = 3000 a difference of about
    0.14 standard deviations in a mean is detected (z threshold ~5.3 at ~1200 comparisons).
    """
    sk = _skdim_generator(12345)
    truth = sk._dict_truth
    assert set(truth) == set(BENCHMARK_MANIFOLDS)
    z_mean: list[float] = []
    z_var: list[float] = []
    labels: list[str] = []
    for name, spec in BENCHMARK_MANIFOLDS.items():
        d, D, _ = truth[name]
        assert (d, D) == (spec.intrinsic_dim, spec.ambient_dim), name
        theirs = getattr(sk, SKDIM_METHODS[name])(n=N_COMPARE, dim=D, d=d)
        ours = benchmark_manifold(name, N_COMPARE, seed=2024).X
        assert theirs.shape == ours.shape
        zero_t, zero_o = np.all(theirs == 0, axis=0), np.all(ours == 0, axis=0)
        np.testing.assert_array_equal(zero_t, zero_o, err_msg=name)
        live = ~zero_o
        ma, sa, va, sva = _moments(ours[:, live])
        mb, sb, vb, svb = _moments(theirs[:, live])
        z_mean.extend(np.abs(ma - mb) / np.sqrt(sa + sb))
        z_var.extend(np.abs(va - vb) / np.sqrt(sva + svb))
        labels.extend(f"{name}[{j}]" for j in np.flatnonzero(live))
    n_tests = 2 * len(labels)
    threshold = stats.norm.isf(FAMILY_ALPHA / (2 * n_tests))
    worst_mean, worst_var = int(np.argmax(z_mean)), int(np.argmax(z_var))
    assert z_mean[worst_mean] < threshold, (labels[worst_mean], z_mean[worst_mean], threshold)
    assert z_var[worst_var] < threshold, (labels[worst_var], z_var[worst_var], threshold)


# Charts checked point by point: draw skdim's parameters with the same RandomState calls it makes, map them
# with our chart and compare to skdim's points.  This pins every formula exactly (mean/variance tests cannot
# see, e.g., the number of twists of M11).  Each entry turns skdim's draws into our parameter layout.
_TWO_PI = 2 * np.pi
CHART_PARAMS = {
    "M1_Sphere": lambda rs, n: rs.randn(n, 11),
    "M2_Affine_3to5": lambda rs, n: (4 * rs.rand(3, n)).T,
    "M3_Nonlinear_4to6": lambda rs, n: rs.rand(4, n).T,
    "M4_Nonlinear": lambda rs, n: rs.rand(4, n).T,
    "M5a_Helix1d": lambda rs, n: (_TWO_PI / n + rs.rand(n) * _TWO_PI)[:, None],
    "M5b_Helix2d": lambda rs, n: np.column_stack([10 * np.pi * rs.rand(n), 10 * np.pi * rs.rand(n)]),
    "M6_Nonlinear": lambda rs, n: rs.rand(6, n).T,
    "M7_Roll": lambda rs, n: np.column_stack([1.5 * np.pi * (1 + 2 * rs.rand(n)), 21 * rs.rand(n)]),
    "M8_Nonlinear": lambda rs, n: rs.rand(12, n).T,
    "M9_Affine": lambda rs, n: (rs.rand(20, n) * 5 - 2.5).T,
    "M11_Moebius": lambda rs, n: np.column_stack([rs.rand(n) * _TWO_PI, rs.rand(n) * 2 - 1]),
    "M13a_Scurve": lambda rs, n: np.column_stack([3 * np.pi * (rs.rand(n) - 0.5), 2.0 * rs.rand(n)]),
    "M13b_Spiral": lambda rs, n: (10 * np.pi * rs.rand(n))[:, None],
    "Mbeta": lambda rs, n: rs.beta(a=10, b=0.5, size=(n, 10)),
    "Mn1_Nonlinear": lambda rs, n: rs.random(size=(n, 18)),
    "Mn2_Nonlinear": lambda rs, n: rs.random(size=(n, 24)),
    "Mp1_Paraboloid": lambda rs, n: (lambda E: 1.0 / (1.0 + E[1:] / E[0]))(rs.exponential(1, (4, n))).T,
    "Mp2_Paraboloid": lambda rs, n: (lambda E: 1.0 / (1.0 + E[1:] / E[0]))(rs.exponential(1, (7, n))).T,
    "Mp3_Paraboloid": lambda rs, n: (lambda E: 1.0 / (1.0 + E[1:] / E[0]))(rs.exponential(1, (10, n))).T,
}


@pytest.mark.peers
@pytest.mark.parametrize("name", sorted(CHART_PARAMS))
def test_charts_match_scikit_dimension_pointwise(name: str) -> None:
    spec = BENCHMARK_MANIFOLDS[name]
    n = 200
    theirs = getattr(_skdim_generator(77), SKDIM_METHODS[name])(
        n=n, dim=spec.ambient_dim, d=spec.intrinsic_dim
    )
    P = CHART_PARAMS[name](np.random.RandomState(77), n)
    ours = spec.chart(P)
    ours = np.hstack([ours, np.zeros((n, spec.ambient_dim - ours.shape[1]))])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_docs_table_lists_every_benchmark_manifold() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "synthetic.md"
    if not doc.exists():
        pytest.skip("docs/synthetic.md not shipped with this checkout")
    text = doc.read_text(encoding="utf-8")
    for s in BENCHMARK_MANIFOLDS.values():
        row = f"| `{s.name}` | `{s.alias}` | {s.intrinsic_dim} | {s.ambient_dim} | {s.default_n} |"
        assert row in text, row
