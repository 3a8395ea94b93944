"""Checks of GeLoRA's Theorem 3.2 and Corollary 3.2.1 at scale, with a JSON summary.

Theorem 3.2 says the intrinsic dimension (ID) of a layer's output manifold is at most the rank of the block
that produces it, ``d_{i+1} <= rank(T_i)``; Corollary 3.2.1 turns this into the rank rule
``r_i = max(d_{i+1} - d_i, 0) + offset``. This module holds the logic that ``tests/theory`` checks with
hypothesis at small sizes and that :func:`run_theory_checks` runs at larger sizes:

exact layer
    noise-free data: ``rank(J_f(x) T_x M) <= min(rank f, dim M)`` at sampled points, and the exact local
    rank of linear images of flat manifolds, to floating-point tolerance (:func:`check_exact_layer`,
    :func:`neighbourhood_rank`).
estimated layer
    TwoNN, MLE and DANCo estimates of ``dim f(M)`` stay below ``min(dim M, rank f)`` plus a one-sided
    limit with a stated false-failure rate (:func:`estimate_limits`, :func:`check_upper_bound`); estimates
    above the bound but inside the limit are *overshoots* and are reported, not hidden.
composition
    along the layers of a toy transformer the estimates respect the per-block bounds
    (:func:`check_toy_transformer`); in a frozen random residual network with a planted rank-``k`` update
    (:class:`PlantedUpdateNetwork`) the gap ``d_{i+1} - d_i`` the rule sees never exceeds ``k`` (validity)
    and ``gap / k`` measures tightness (:func:`check_planted_network`).
invariances
    rotation, translation, uniform scaling and permutation of the points leave the estimates unchanged to
    ``1e-9`` relative; duplicated data raise or are de-duplicated as documented.
counter-examples
    noise, too few samples, curvature/folding at small ``n`` and ``ceil`` rounding make the bound or the rule
    fail (``counterexample_*``).

Tolerances (:func:`estimate_limits`)
------------------------------------
TwoNN (censored maximum-likelihood fit)
    For a locally uniform density the ratios ``mu = r2/r1`` are Pareto(d), so ``log mu ~ Exp(rate d)`` and
    the type-II censored total ``T`` of ``m = int(0.9 n)`` kept log-ratios is exactly ``Gamma(m, rate d)``;
    the estimate ``(m - 1) / T`` then has the quantiles of ``d (m - 1) / Gamma(m, 1)``. Neighbouring ratios
    are dependent, which inflates the variance by a factor ``c`` calibrated once; the limits use ``m / c``
    effective ratios and the calibrated finite-``n`` bias bound.
MLE
    No exact law (overlapping neighbourhoods): the same inverse-Gamma shape with ``n / s2`` effective points,
    ``s2 = n Var(d_hat) / d^2`` calibrated, plus the calibrated bias bound.
DANCo
    Integer estimates: the extremes of ``d_hat - d`` over the calibration fits of the cell (at least +-1).

The calibration (:func:`calibrate`, ``validation/theory/calibration.json`` with the command that made it)
is Monte Carlo on uniform samples of the families the suite draws (cube, sphere, Clifford torus). What it
does not cover -- noise, unresolved scales, folding -- is what the counter-examples show.

Run ``python -m validation.theory --profile quick --out theory.json`` for the JSON summary.

Modules: :mod:`~validation.theory.exact_layer`, :mod:`~validation.theory.estimated_layer`,
:mod:`~validation.theory.composition`, :mod:`~validation.theory.invariances`,
:mod:`~validation.theory.counterexamples` (one per property family, as ``tests/theory``),
:mod:`~validation.theory.calibration` (the estimators as the suite runs them, their calibrated error and
limits; ``calibration.json``) and :mod:`~validation.theory.suite` (:func:`run_theory_checks`, ``main``).
"""

from __future__ import annotations

from validation.theory.calibration import (
    ALPHA,
    CALIBRATION_PATH,
    DANCO_D_MAX,
    METHODS,
    NULL_FAMILIES,
    Limits,
    calibrate,
    estimate_limits,
    estimator_params,
    fit_estimate,
    load_calibration,
    summarise_calibration,
)
from validation.theory.composition import (
    PlantedUpdateNetwork,
    check_planted_network,
    check_toy_transformer,
    stack_jacobian,
)
from validation.theory.counterexamples import (
    counterexample_ceil_rounding,
    counterexample_curvature,
    counterexample_local_pca_curvature,
    counterexample_mle_toy_transformer,
    counterexample_noise,
    counterexample_small_n_rule,
)
from validation.theory.estimated_layer import (
    check_upper_bound,
)
from validation.theory.exact_layer import (
    FLAT_KINDS,
    RANK_RTOL,
    TANGENT_KINDS,
    check_exact_layer,
    jacobian_rank,
    layer_bounds,
    neighbourhood_rank,
    numerical_rank,
    tangent_bases,
)
from validation.theory.invariances import (
    INVARIANCE_RTOL,
    check_duplicates,
    check_invariances,
    transformed_copies,
)
from validation.theory.suite import (
    PROFILES,
    main,
    run_theory_checks,
)

__all__ = [
    "ALPHA",
    "CALIBRATION_PATH",
    "DANCO_D_MAX",
    "FLAT_KINDS",
    "INVARIANCE_RTOL",
    "Limits",
    "METHODS",
    "NULL_FAMILIES",
    "PROFILES",
    "PlantedUpdateNetwork",
    "RANK_RTOL",
    "TANGENT_KINDS",
    "calibrate",
    "check_duplicates",
    "check_exact_layer",
    "check_invariances",
    "check_planted_network",
    "check_toy_transformer",
    "check_upper_bound",
    "counterexample_ceil_rounding",
    "counterexample_curvature",
    "counterexample_local_pca_curvature",
    "counterexample_mle_toy_transformer",
    "counterexample_noise",
    "counterexample_small_n_rule",
    "estimate_limits",
    "estimator_params",
    "fit_estimate",
    "jacobian_rank",
    "layer_bounds",
    "load_calibration",
    "main",
    "neighbourhood_rank",
    "numerical_rank",
    "run_theory_checks",
    "stack_jacobian",
    "summarise_calibration",
    "tangent_bases",
    "transformed_copies",
]
